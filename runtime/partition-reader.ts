/**
 * Reading topic partitions outside the application's consumer group: changelog restore (a range
 * of offsets per partition), global tables (the whole topic, then follow it) and replay.
 *
 * kafkajs has no manual assignment, so each reader is a consumer in a group of its own (a random
 * id that commits nothing): alone in its group it is given every partition of its topics, seeks
 * the ones it wants and pauses the others. The application's group offsets are never touched.
 */
import { randomBytes } from 'node:crypto';
import type { Admin, Consumer, Kafka, KafkaMessage } from 'kafkajs';
import { withRetries } from './retry.js';
import type { RawRecord } from './task.js';

export interface PartitionRange {
  topic: string;
  partition: number;
  /** first offset to read */
  from: number;
  /** stop before this offset (the end offset when the read began) */
  to: number;
}

export function toRawRecord(m: KafkaMessage): RawRecord {
  const r: RawRecord = {
    key: m.key ?? null,
    value: m.value ?? null,
    timestamp: Number(m.timestamp),
    offset: Number(m.offset),
  };
  if (m.headers && Object.keys(m.headers).length) r.headers = m.headers as RawRecord['headers'];
  return r;
}

function readerGroupId(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/**
 * admin.fetchTopicOffsets, retried: besides the broker's retriable errors, kafkajs throws a
 * TypeError while its metadata for a topic that was just created or moved is still empty.
 */
export async function topicOffsets(
  admin: Admin,
  topic: string,
): Promise<{ partition: number; offset: string; high: string; low: string }[]> {
  return withRetries(`end offsets of ${topic}`, async () => {
    try {
      const r = await admin.fetchTopicOffsets(topic);
      if (!r.length) throw Object.assign(new Error(`no partitions known for ${topic} yet`), { retriable: true });
      return r;
    } catch (e) {
      if (e instanceof TypeError) throw Object.assign(new Error(e.message), { retriable: true, cause: e });
      throw e;
    }
  });
}

/** End offsets (high watermarks) of the given topics' partitions, keyed `topic:partition`. */
export async function endOffsets(client: Kafka | Admin, topics: string[]): Promise<Map<string, number>> {
  const shared = 'fetchTopicOffsets' in client;
  const admin = shared ? client : client.admin();
  if (!shared) await admin.connect();
  try {
    const out = new Map<string, number>();
    for (const topic of topics) {
      for (const p of await topicOffsets(admin, topic)) out.set(`${topic}:${p.partition}`, Number(p.high));
    }
    return out;
  } finally {
    if (!shared) await admin.disconnect();
  }
}

/**
 * The most key + value bytes handed to `readRanges`' `onRecords` at once: a restore writes each
 * call as one RocksDB batch, so this bounds the batch (and the fetches are sized to match).
 */
export const RESTORE_BATCH_MAX_BYTES = 1024 * 1024;

/**
 * Reads every range [from, to) and calls `onRecords` per fetched batch (split so that no call
 * carries more than `RESTORE_BATCH_MAX_BYTES` of keys and values), in offset order per
 * partition. Resolves when all ranges are read.
 */
export async function readRanges(
  kafka: Kafka,
  groupPrefix: string,
  ranges: PartitionRange[],
  onRecords: (range: PartitionRange, records: RawRecord[]) => Promise<void>,
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  const pending = ranges.filter((r) => r.from < r.to);
  if (!pending.length) return;
  opts.signal?.throwIfAborted();
  const want = new Map(pending.map((r) => [`${r.topic}:${r.partition}`, r]));
  const topics = [...new Set(pending.map((r) => r.topic))];
  const consumer: Consumer = kafka.consumer({
    groupId: readerGroupId(groupPrefix),
    sessionTimeout: 30_000,
    // one fetch response holds about two restore batches (each task restores with its own reader)
    maxBytesPerPartition: RESTORE_BATCH_MAX_BYTES,
    maxBytes: 2 * RESTORE_BATCH_MAX_BYTES,
    maxWaitTimeInMs: 200,
    retry: { retries: 10 },
  });
  await consumer.connect();
  const left = new Set(want.keys());
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      if (opts.signal) opts.signal.addEventListener('abort', () => reject(opts.signal!.reason), { once: true });
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        // position every wanted partition; pause the rest of the topics' partitions
        for (const [topic, partitions] of Object.entries(e.payload.memberAssignment)) {
          const unwanted = partitions.filter((p) => !want.has(`${topic}:${p}`) || !left.has(`${topic}:${p}`));
          if (unwanted.length) consumer.pause([{ topic, partitions: unwanted }]);
          for (const p of partitions) {
            const r = want.get(`${topic}:${p}`);
            if (r && left.has(`${topic}:${p}`)) consumer.seek({ topic, partition: p, offset: String(r.from) });
          }
        }
      });
      // kafkajs restarts itself after retriable errors (e.g. the coordinator is loading)
      consumer.on(consumer.events.CRASH, (e) => {
        if (!e.payload.restart) reject(e.payload.error);
      });
      // a range is done once the position passes its end; batches that held only control records
      // (transaction markers) or aborted records reach no eachBatch, only END_BATCH_PROCESS
      const progress = (topic: string, partition: number, next: number) => {
        const k = `${topic}:${partition}`;
        const range = want.get(k);
        if (!range || !left.has(k) || next < range.to) return;
        left.delete(k);
        consumer.pause([{ topic, partitions: [partition] }]);
        if (!left.size) resolve();
      };
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        const b = e.payload as { topic: string; partition: number; lastOffset: string };
        progress(b.topic, b.partition, Number(b.lastOffset) + 1);
      });
      consumer
        .run({
          autoCommit: false,
          partitionsConsumedConcurrently: 4,
          eachBatch: async ({ batch, heartbeat }) => {
            const k = `${batch.topic}:${batch.partition}`;
            const range = want.get(k);
            if (!range || !left.has(k)) return;
            let records: RawRecord[] = [];
            let bytes = 0;
            for (const m of batch.messages) {
              const off = Number(m.offset);
              if (off < range.from || off >= range.to) continue;
              const r = toRawRecord(m);
              const size = (r.key?.length ?? 0) + (r.value?.length ?? 0);
              if (records.length && bytes + size > RESTORE_BATCH_MAX_BYTES) {
                await onRecords(range, records);
                records = [];
                bytes = 0;
              }
              records.push(r);
              bytes += size;
            }
            if (records.length) await onRecords(range, records);
            await heartbeat();
            progress(batch.topic, batch.partition, Number(batch.lastOffset()) + 1);
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect().catch(() => undefined);
  }
}

/**
 * Follows whole topics from the beginning (a global table). `ready` resolves once every partition
 * has been read up to the end offset it had when the reader started.
 */
export async function followTopics(
  kafka: Kafka,
  groupPrefix: string,
  topics: string[],
  onRecords: (topic: string, partition: number, records: RawRecord[]) => void | Promise<void>,
): Promise<{ ready: Promise<void>; stop(): Promise<void> }> {
  const ends = await endOffsets(kafka, topics);
  const behind = new Set([...ends].filter(([, end]) => end > 0).map(([k]) => k));
  let markReady!: () => void;
  let fail!: (e: unknown) => void;
  const ready = new Promise<void>((res, rej) => {
    markReady = res;
    fail = rej;
  });
  if (!behind.size) markReady();
  const consumer = kafka.consumer({
    groupId: readerGroupId(groupPrefix),
    maxWaitTimeInMs: 500,
    retry: { retries: 10 },
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  consumer.on(consumer.events.CRASH, (e) => {
    if (!e.payload.restart) fail(e.payload.error);
  });
  const progress = (topic: string, partition: number, next: number) => {
    const k = `${topic}:${partition}`;
    if (behind.has(k) && next >= (ends.get(k) ?? 0)) {
      behind.delete(k);
      if (!behind.size) markReady();
    }
  };
  // batches of only control records or aborted records reach no eachBatch
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    const b = e.payload as { topic: string; partition: number; lastOffset: string };
    progress(b.topic, b.partition, Number(b.lastOffset) + 1);
  });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      if (batch.messages.length) await onRecords(batch.topic, batch.partition, batch.messages.map(toRawRecord));
      progress(batch.topic, batch.partition, Number(batch.lastOffset()) + 1);
    },
  });
  return {
    ready,
    async stop() {
      await consumer.disconnect().catch(() => undefined);
    },
  };
}
