/**
 * Operator tools that read topics: `um dlq list|show|replay` (dead letters with their headers
 * decoded; replay chosen ones to their source topic) and `um tail <topic>` (decoded Avro as JSON
 * lines, optionally only one key). Both read group-less (runtime/assigned-reader.ts): no consumer
 * group is made, and no group offset is touched.
 */
import type { IHeaders, Kafka } from 'kafkajs';
import { StreamsError } from '../runtime/errors.js';
import { keyHash } from '../runtime/http.js';
import { AssignedReader } from '../runtime/assigned-reader.js';
import { readRanges, topicOffsets } from '../runtime/partition-reader.js';
import type { RawRecord } from '../runtime/task.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { registryFor } from './app.js';
import type { AppConfig } from './config.js';

/** A dead letter as stored: where it came from, why, and the original bytes. */
export interface DeadLetter {
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  /** the original record's headers (dlq.* removed) */
  headers: Record<string, string>;
  source: { topic: string; partition: number; offset: number } | undefined;
  error: { code: string; message: string; kind: string };
}

function headerText(v: IHeaders[string] | undefined): string | undefined {
  const one = Array.isArray(v) ? v[v.length - 1] : v;
  if (one === undefined || one === null) return undefined;
  return Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
}

/** Decodes the dlq.* headers of a dead letter. */
export function decodeDeadLetter(partition: number, r: RawRecord): DeadLetter {
  const h = r.headers ?? {};
  const text = (k: string) => headerText(h[k] as IHeaders[string]);
  const headers: Record<string, string> = {};
  for (const k of Object.keys(h)) if (!k.startsWith('dlq.')) headers[k] = text(k) ?? '';
  const topic = text('dlq.source.topic');
  return {
    partition,
    offset: r.offset,
    timestamp: r.timestamp,
    key: r.key,
    value: r.value,
    headers,
    source: topic
      ? { topic, partition: Number(text('dlq.source.partition')), offset: Number(text('dlq.source.offset')) }
      : undefined,
    error: {
      code: text('dlq.error.code') ?? 'UNKNOWN',
      message: text('dlq.error.message') ?? '',
      kind: text('dlq.error.kind') ?? '',
    },
  };
}

/** One line per dead letter; the key as a hash (keys may be addresses). */
export function deadLetterLine(d: DeadLetter): string {
  const src = d.source ? `${d.source.topic}[${d.source.partition}]@${d.source.offset}` : '(unknown source)';
  return `${d.partition}:${d.offset}  ${new Date(d.timestamp).toISOString()}  ${d.error.code}  ${src}  key#${d.key ? keyHash(d.key.toString('utf8')) : '-'}  ${d.error.message}`;
}

/** Reads a whole topic as it is now (every partition from its start to its current end). */
export async function readTopic(
  kafka: Kafka,
  topic: string,
  onRecord: (partition: number, r: RawRecord) => void | Promise<void>,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  let offsets: { partition: number; low: string; high: string }[];
  try {
    if (!(await admin.listTopics()).includes(topic)) throw new StreamsError('UNKNOWN_TOPIC', `no topic ${topic}`);
    offsets = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  const ranges = offsets.map((o) => ({ topic, partition: o.partition, from: Number(o.low), to: Number(o.high) }));
  await readRanges(kafka, ranges, async (range, records) => {
    for (const r of records) await onRecord(range.partition, r);
  });
}

/** Every dead letter, in partition then offset order; optionally only those with `code`. */
export async function listDeadLetters(kafka: Kafka, dlqTopic: string, code?: string): Promise<DeadLetter[]> {
  const out: DeadLetter[] = [];
  await readTopic(kafka, dlqTopic, (p, r) => {
    const d = decodeDeadLetter(p, r);
    if (!code || d.error.code === code) out.push(d);
  });
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/** Parses `partition:offset` ids. */
export function parseDeadLetterIds(ids: readonly string[]): { partition: number; offset: number }[] {
  return ids.map((id) => {
    const m = /^(\d+):(\d+)$/.exec(id);
    if (!m) throw new StreamsError('BAD_DLQ_ID', `${id}: a dead letter is named partition:offset (see um dlq list)`);
    return { partition: Number(m[1]), offset: Number(m[2]) };
  });
}

/**
 * Sends dead letters back to their source topic: the original key, value, timestamp and headers
 * (plus `dlq.replayed.from`), partitioned by key like any producer. Returns how many were sent.
 */
export async function replayDeadLetters(
  kafka: Kafka,
  letters: readonly DeadLetter[],
  dlqTopic: string,
): Promise<number> {
  const missing = letters.filter((d) => !d.source);
  if (missing.length)
    throw new StreamsError(
      'DLQ_NO_SOURCE',
      `dead letter ${missing[0]!.partition}:${missing[0]!.offset} has no dlq.source.topic header: cannot replay`,
    );
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    for (const d of letters)
      await producer.send({
        topic: d.source!.topic,
        acks: -1,
        messages: [
          {
            key: d.key,
            value: d.value,
            timestamp: String(d.timestamp),
            headers: { ...d.headers, 'dlq.replayed.from': `${dlqTopic}:${d.partition}:${d.offset}` },
          },
        ],
      });
    return letters.length;
  } finally {
    await producer.disconnect();
  }
}

/** A decoder from raw values to JSON for the application's topics (raw text for others). */
export function topicDecoder(cfg: AppConfig, topic: string): (value: Buffer | null) => Promise<unknown> {
  const topics = topicNames(cfg.topicPrefix);
  const entry = Object.entries(topics).find(([, t]) => t === topic);
  if (!entry || !cfg.registry.url) return async (v) => (v === null ? null : v.toString('utf8'));
  const serde = (
    mailSerdes(registryFor(cfg), topics) as unknown as Record<
      string,
      {
        prepare?(d: (Buffer | null)[]): Promise<void>;
        deserialize(t: string, b: Buffer): unknown;
      }
    >
  )[entry[0]]!;
  return async (v) => {
    if (v === null) return null;
    try {
      await serde.prepare?.([v]);
      return serde.deserialize(topic, v);
    } catch (e) {
      return { undecodable: (e as StreamsError).code ?? (e as Error).message, base64: v.toString('base64') };
    }
  };
}

/**
 * `um tail`: prints each record of `topic` as a JSON line `{partition, offset, timestamp, key,
 * value}` (value decoded), from the end (or the beginning), until `signal` aborts or `limit`
 * records are printed. `key` keeps only that key.
 */
export async function tail(
  kafka: Kafka,
  cfg: AppConfig,
  topic: string,
  opts: { key?: string; fromBeginning?: boolean; limit?: number; signal?: AbortSignal; print?: (line: string) => void },
): Promise<number> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const decode = topicDecoder(cfg, topic);
  const reader = new AssignedReader(kafka, { maxWaitMs: 200 });
  let printed = 0;
  try {
    await reader.connect();
    const admin = kafka.admin();
    await admin.connect();
    try {
      for (const p of await topicOffsets(admin, topic))
        await reader.assign(topic, p.partition, Number(opts.fromBeginning ? p.low : p.high));
    } finally {
      await admin.disconnect();
    }
    while (!opts.signal?.aborted && (opts.limit === undefined || printed < opts.limit)) {
      for (const f of await reader.fetch()) {
        for (const r of f.records) {
          if (opts.limit !== undefined && printed >= opts.limit) break;
          const key = r.key?.toString('utf8') ?? null;
          if (opts.key !== undefined && key !== opts.key) continue;
          const value = await decode(r.value);
          print(JSON.stringify({ partition: f.partition, offset: r.offset, timestamp: r.timestamp, key, value }));
          printed++;
        }
      }
    }
  } finally {
    await reader.close();
  }
  return printed;
}
