/** Shared helpers for integration tests: the broker/registry addresses and unique names. */
import { randomBytes } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { readRanges } from '../../runtime/partition-reader.js';

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

/** Reads a topic from the beginning up to its current end (or until `atLeast` records exist). */
export async function readAll(
  topic: string,
  opts: { atLeast?: number; timeoutMs?: number } = {},
): Promise<ReadRecord[]> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const kafka = kafkaClient();
  for (;;) {
    const ends = await withAdmin((a) => a.fetchTopicOffsets(topic));
    const total = ends.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
    if (opts.atLeast === undefined || total >= opts.atLeast || Date.now() > deadline) {
      const out: ReadRecord[] = [];
      const ranges = ends.map((p) => ({ topic, partition: p.partition, from: Number(p.low), to: Number(p.high) }));
      const read = readRanges(kafka, ranges, async (range, records) => {
        for (const r of records) {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(r.headers ?? {})) if (v !== undefined) headers[k] = String(v);
          out.push({
            topic,
            partition: range.partition,
            offset: r.offset,
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
            headers,
          });
        }
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`readAll(${topic}) timed out`)),
          Math.max(30_000, deadline - Date.now()),
        );
      });
      try {
        await Promise.race([read, timeout]);
      } finally {
        clearTimeout(timer);
      }
      return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
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
