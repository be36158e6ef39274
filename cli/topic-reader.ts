/**
 * Reading topics from the CLI (flags, parity report, replay): offset plans by timestamp, and
 * reads of whole topics or of a time window, decoded with the topic's serde. Reads use consumer
 * groups of their own (random names), so no application group's offsets ever move.
 */
import type { Admin, Kafka } from 'kafkajs';
import { readRanges, type PartitionRange } from '../runtime/partition-reader.js';
import type { Serde } from '../runtime/serdes.js';

export interface PartitionPlan {
  partition: number;
  /** first offset to read */
  from: number;
  /** stop before this offset */
  to: number;
}

async function withAdmin<T>(kafka: Kafka, fn: (a: Admin) => Promise<T>): Promise<T> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Offsets of [fromMs, toMs) per partition: the first offset whose timestamp is >= fromMs (the
 * broker's offsetsForTimes), up to the first offset whose timestamp is >= toMs (or the end).
 */
export async function offsetPlan(
  kafka: Kafka,
  topic: string,
  fromMs: number | undefined,
  toMs: number | undefined,
  partitions?: readonly number[],
): Promise<PartitionPlan[]> {
  return withAdmin(kafka, async (admin) => {
    const ends = await admin.fetchTopicOffsets(topic);
    const high = new Map(ends.map((p) => [p.partition, Number(p.high)]));
    const low = new Map(ends.map((p) => [p.partition, Number(p.low)]));
    const at = async (ts: number | undefined, fallback: Map<number, number>): Promise<Map<number, number>> => {
      if (ts === undefined) return fallback;
      const r = await admin.fetchTopicOffsetsByTimestamp(topic, ts);
      return new Map(r.map((p) => [p.partition, Number(p.offset) < 0 ? high.get(p.partition)! : Number(p.offset)]));
    };
    const from = await at(fromMs, low);
    const to = await at(toMs, high);
    return ends
      .map((p) => p.partition)
      .filter((p) => !partitions || partitions.includes(p))
      .sort((a, b) => a - b)
      .map((p) => ({ partition: p, from: Math.max(from.get(p)!, low.get(p)!), to: to.get(p)! }))
      .map((p) => ({ ...p, to: Math.max(p.from, p.to) }));
  });
}

export interface Decoded<T> {
  partition: number;
  offset: number;
  timestamp: number;
  key: string | null;
  /** null only for a tombstone, when asked for (`tombstones: true`) */
  value: T;
  headers: Record<string, string>;
}

/** Reads the planned ranges, decodes the values (records that do not decode are counted and skipped). */
export async function readDecoded<T>(
  kafka: Kafka,
  topic: string,
  plan: readonly PartitionPlan[],
  serde: Serde<T>,
  onRecords: (records: Decoded<T>[]) => void | Promise<void>,
  opts: {
    signal?: AbortSignal;
    onUndecodable?: (partition: number, offset: number, e: unknown) => void;
    /** pass tombstones on (value null) instead of skipping them */
    tombstones?: boolean;
  } = {},
): Promise<void> {
  const ranges: PartitionRange[] = plan.map((p) => ({ topic, partition: p.partition, from: p.from, to: p.to }));
  await readRanges(
    kafka,
    ranges,
    async (range, records) => {
      await serde.prepare?.(records.map((r) => r.value));
      const out: Decoded<T>[] = [];
      for (const r of records) {
        if (r.value === null && !opts.tombstones) continue;
        try {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(r.headers ?? {})) if (v !== undefined) headers[k] = String(v);
          out.push({
            partition: range.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key ? r.key.toString('utf8') : null,
            value: r.value === null ? (null as T) : serde.deserialize(topic, r.value),
            headers,
          });
        } catch (e) {
          opts.onUndecodable?.(range.partition, r.offset, e);
        }
      }
      if (out.length) await onRecords(out);
    },
    opts.signal ? { signal: opts.signal } : {},
  );
}

/** Reads a whole topic (to its current end) and decodes it. */
export async function readWhole<T>(
  kafka: Kafka,
  topic: string,
  serde: Serde<T>,
  opts: { tombstones?: boolean } = {},
): Promise<Decoded<T | null>[]> {
  const out: Decoded<T | null>[] = [];
  const plan = await offsetPlan(kafka, topic, undefined, undefined);
  await readDecoded<T | null>(kafka, topic, plan, serde as Serde<T | null>, (rs) => void out.push(...rs), opts);
  return out.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
}

/** "2h", "30m", "7d", "90s" → milliseconds; an ISO date or epoch ms → that time. Relative to `now`. */
export function parseTime(s: string, now = Date.now()): number {
  const rel = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(s.trim());
  if (rel) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return now - Number(rel[1]) * unit;
  }
  if (/^\d{10,}$/.test(s.trim())) return Number(s.trim());
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new Error(`cannot read "${s}" as a time (ISO 8601, epoch ms, or an age like 2h, 30m, 7d)`);
  return t;
}
