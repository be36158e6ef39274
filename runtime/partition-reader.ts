/**
 * Reading topic partitions outside the application's consumer group: changelog restore (a range
 * of offsets per partition), global tables (the whole topic, then follow it) and replay.
 *
 * Every reader here is group-less (assigned-reader.ts): it joins no consumer group (so no
 * rebalance delay) and never touches the application's group offsets.
 */
import type { Admin, Kafka } from 'kafkajs';
import { AssignedReader } from './assigned-reader.js';
import { withRetries } from './retry.js';
import type { RawRecord } from './task.js';

export { toRawRecord } from './assigned-reader.js';

export interface PartitionRange {
  topic: string;
  partition: number;
  /** first offset to read */
  from: number;
  /** stop before this offset (the end offset when the read began) */
  to: number;
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
 * partition. Resolves when all ranges are read. Group-less (see assigned-reader.ts): no group is
 * joined, so no rebalance delay; the application's group offsets are never touched.
 */
export async function readRanges(
  kafka: Kafka,
  ranges: PartitionRange[],
  onRecords: (range: PartitionRange, records: RawRecord[]) => Promise<void>,
  opts: { signal?: AbortSignal; onRetry?: (e: Error, attempt: number) => void } = {},
): Promise<void> {
  const pending = ranges.filter((r) => r.from < r.to);
  if (!pending.length) return;
  opts.signal?.throwIfAborted();
  const want = new Map(pending.map((r) => [`${r.topic}:${r.partition}`, r]));
  const reader = new AssignedReader(kafka, {
    // one fetch response holds about two restore batches (each task restores with its own reader)
    maxBytesPerPartition: RESTORE_BATCH_MAX_BYTES,
    maxBytes: 2 * RESTORE_BATCH_MAX_BYTES,
    maxWaitMs: 200,
    ...(opts.onRetry ? { onRetry: opts.onRetry } : {}),
  });
  try {
    await reader.connect();
    for (const r of pending) await reader.assign(r.topic, r.partition, r.from);
    while (want.size) {
      opts.signal?.throwIfAborted();
      for (const f of await reader.fetch(opts.signal)) {
        const k = `${f.topic}:${f.partition}`;
        const range = want.get(k);
        if (!range) continue;
        let records: RawRecord[] = [];
        let bytes = 0;
        for (const r of f.records) {
          if (r.offset < range.from || r.offset >= range.to) continue;
          const size = (r.key?.length ?? 0) + (r.value?.length ?? 0);
          if (records.length && bytes + size > RESTORE_BATCH_MAX_BYTES) {
            await onRecords(range, records);
            opts.signal?.throwIfAborted();
            records = [];
            bytes = 0;
          }
          records.push(r);
          bytes += size;
        }
        if (records.length) await onRecords(range, records);
        // aborted (by onRecords itself, or meanwhile): the read ends with the abort's reason, never
        // as if complete, and nothing more is handed on
        opts.signal?.throwIfAborted();
        // a range is done once the position passes its end (records, markers or compacted gaps)
        if (f.next >= range.to) {
          want.delete(k);
          reader.unassign(f.topic, f.partition);
        }
      }
    }
  } finally {
    await reader.close();
  }
}

/**
 * Follows whole topics from the beginning (a global table), group-less. `ready` resolves once
 * every partition has been read up to the end offset it had when the reader started. A failure
 * before that rejects `ready`; after it, `onError` hears of it and the reader goes on (a global
 * table must keep following its topic).
 */
export async function followTopics(
  kafka: Kafka,
  topics: string[],
  onRecords: (topic: string, partition: number, records: RawRecord[]) => void | Promise<void>,
  opts: { onError?: (e: unknown) => void } = {},
): Promise<{ ready: Promise<void>; stop(): Promise<void> }> {
  const reader = new AssignedReader(kafka, { maxWaitMs: 500 });
  await reader.connect();
  const admin = kafka.admin();
  await admin.connect();
  const behind = new Map<string, number>();
  try {
    for (const topic of topics)
      for (const p of await topicOffsets(admin, topic)) {
        const low = Number(p.low);
        const high = Number(p.high);
        await reader.assign(topic, p.partition, low);
        if (high > low) behind.set(`${topic}:${p.partition}`, high);
      }
  } catch (e) {
    await reader.close();
    throw e;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  let markReady!: () => void;
  let fail!: (e: unknown) => void;
  let isReady = false;
  const ready = new Promise<void>((res, rej) => {
    markReady = () => {
      isReady = true;
      res();
    };
    fail = rej;
  });
  if (!behind.size) markReady();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        for (const f of await reader.fetch()) {
          if (f.records.length) await onRecords(f.topic, f.partition, f.records);
          const k = `${f.topic}:${f.partition}`;
          const end = behind.get(k);
          if (end !== undefined && f.next >= end) {
            behind.delete(k);
            if (!behind.size) markReady();
          }
        }
      } catch (e) {
        if (stopped) return;
        if (!isReady) {
          fail(e);
          return;
        }
        opts.onError?.(e);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  })();
  return {
    ready,
    async stop() {
      stopped = true;
      await reader.close();
      await loop;
    },
  };
}
