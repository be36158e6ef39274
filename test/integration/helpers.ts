/** Shared helpers for integration tests: the broker/registry addresses and unique names. */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';

export function brokers(): string[] {
  const b = process.env.KAFKA_BROKERS;
  if (!b) throw new Error('KAFKA_BROKERS is not set: integration tests run through the vitest global set-up');
  return b.split(',');
}

export function registryUrl(): string {
  const u = process.env.SCHEMA_REGISTRY_URL;
  if (!u) throw new Error('SCHEMA_REGISTRY_URL is not set: integration tests run through the vitest global set-up');
  return u;
}

/** A unique name for a topic, group or application id: tests never share names. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

export function kafkaClient(clientId = uniqueName('test')): Kafka {
  return new Kafka({ clientId, brokers: brokers(), logLevel: logLevel.NOTHING });
}

export async function withAdmin<T>(fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafkaClient().admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

export async function createTopics(topics: { topic: string; partitions?: number; compact?: boolean }[]): Promise<void> {
  await withAdmin((a) =>
    a.createTopics({
      waitForLeaders: true,
      topics: topics.map((t) => ({
        topic: t.topic,
        numPartitions: t.partitions ?? 1,
        configEntries: t.compact ? [{ name: 'cleanup.policy', value: 'compact' }] : [],
      })),
    }),
  );
}

export interface ProducedMessage {
  key: string | Buffer | null;
  value: string | Buffer | null;
  timestamp?: number;
  partition?: number;
  headers?: Record<string, string>;
}

export async function produce(topic: string, messages: ProducedMessage[], kafka: Kafka = kafkaClient()): Promise<void> {
  const producer = kafka.producer();
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 5000) {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.slice(i, i + 5000).map((m) => ({
          key: m.key,
          value: m.value,
          timestamp: m.timestamp === undefined ? undefined : String(m.timestamp),
          partition: m.partition,
          headers: m.headers,
        })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

export interface ReadRecord {
  topic: string;
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  timestamp: number;
  headers: Record<string, string>;
}

/** Reads a topic from the beginning up to its current end (or until `atLeast` records arrive). */
export async function readAll(
  topic: string,
  opts: { atLeast?: number; timeoutMs?: number } = {},
): Promise<ReadRecord[]> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const kafka = kafkaClient();
  const out: ReadRecord[] = [];
  for (;;) {
    const ends = await withAdmin((a) => a.fetchTopicOffsets(topic));
    const total = ends.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
    if (opts.atLeast === undefined || total >= opts.atLeast || Date.now() > deadline) {
      const want = new Map(ends.map((p) => [p.partition, Number(p.high)]));
      const left = new Set([...want].filter(([, h]) => h > 0).map(([p]) => p));
      if (!left.size) return out;
      const consumer = kafka.consumer({ groupId: uniqueName('reader') });
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`readAll(${topic}) timed out`)),
          Math.max(5000, deadline - Date.now()),
        );
        void consumer.run({
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) {
              const headers: Record<string, string> = {};
              for (const [k, v] of Object.entries(m.headers ?? {})) if (v !== undefined) headers[k] = String(v);
              if (Number(m.offset) < want.get(batch.partition)!)
                out.push({
                  topic,
                  partition: batch.partition,
                  offset: Number(m.offset),
                  key: m.key,
                  value: m.value,
                  timestamp: Number(m.timestamp),
                  headers,
                });
            }
            if (Number(batch.lastOffset()) + 1 >= want.get(batch.partition)!) {
              left.delete(batch.partition);
              if (!left.size) {
                clearTimeout(timer);
                resolve();
              }
            }
          },
        });
      });
      await consumer.disconnect();
      return out;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function waitUntil(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
