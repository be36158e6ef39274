/**
 * The record collector: every record the runtime produces (sink outputs, changelog writes, dead
 * letters) goes through here. Records are buffered and sent in batches, with at most one produce
 * request in flight, so that records for one partition are written in the order they were
 * collected even when a request is retried (kafkajs does not guarantee order across concurrent
 * requests). `flush()` resolves when every record collected so far is acknowledged (acks=all);
 * the offsets acknowledged per partition feed the changelog checkpoints.
 *
 * Limits and errors:
 * - A request is capped by bytes as well as records: every partition's part of it stays within its
 *   topic's `max.message.bytes` (the broker checks each partition's record batch against it), and
 *   the whole request within `maxRequestBytes`. Sizes are upper bounds of the uncompressed record
 *   batch encoding, so the broker never sees a batch bigger than the estimate.
 * - A record that alone exceeds its topic's limit is not sent: a dead letter takes its place (same
 *   key, null value, headers saying why) and `onDeadLetter(topic, 'RECORD_TOO_LARGE')` is called.
 * - If the broker still refuses a request for its data (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE,
 *   INVALID_RECORD, INVALID_TIMESTAMP), the request is split in halves, in order, until the refused
 *   record is alone; that record is dead-lettered.
 * - Retriable errors (leader moves, connection loss, timeouts) are retried with backoff, the same
 *   request again (so the idempotent producer's sequence numbers deduplicate it), until
 *   `deliveryTimeoutMs`; then the collector fails.
 * - Anything else (authorization, a topic that is gone...) fails the collector with a StreamsError
 *   whose code says what happened; `send`, `flush` and `flushUpTo` then throw it.
 */
import type {
  Admin,
  ConfigResourceTypes,
  Producer,
  Message,
  TopicMessages,
  RecordMetadata as KafkaRecordMetadata,
} from 'kafkajs';
import { StreamsError } from './errors.js';
import { tpKey } from './state/checkpoint.js';
import { partitionForKey } from './partitioner.js';
import { isTransactionLost, transactionLostError } from './eos.js';

export interface OutgoingRecord {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  /** explicit partition; undefined = the producer's default (murmur2) partitioner */
  partition?: number;
  timestamp: number;
  headers?: Record<string, string | Buffer>;
  /** the input record this one was computed from, for the headers of a dead letter */
  source?: { topic: string; partition: number; offset: number };
}

export interface RecordCollector {
  send(record: OutgoingRecord): void;
  /** resolves when every record sent before the call is acknowledged; rejects on a send failure */
  flush(): Promise<void>;
  /** a position in the stream of sent records, for `flushUpTo` */
  mark(): number;
  /** resolves when every record sent before `mark()` returned `position` is acknowledged */
  flushUpTo(position: number): Promise<void>;
  /** highest acknowledged offset per `topic:partition` */
  ackedOffsets(): ReadonlyMap<string, number>;
  /**
   * After `flushUpTo(position)`: per `topic:partition`, the offset of the last record sent before
   * `mark()` returned `position` (records sent after the mark, acknowledged or not, are left out).
   * Lets a commit take its changelog positions while processing already goes on. Undefined when
   * the mark is unknown (too old, or not from this collector).
   */
  ackedOffsetsAt?(position: number): ReadonlyMap<string, number> | undefined;
  /**
   * Backpressure: resolves when the collector can take more (too many records or bytes waiting
   * to be sent otherwise); tasks wait on it between batches.
   */
  capacity?(): Promise<void> | undefined;
}

/** Collects into memory: for the test driver. */
export class MemoryRecordCollector implements RecordCollector {
  readonly records: OutgoingRecord[] = [];
  private readonly offsets = new Map<string, number>();
  send(record: OutgoingRecord): void {
    this.records.push(record);
    const k = tpKey(record.topic, record.partition ?? 0);
    this.offsets.set(k, (this.offsets.get(k) ?? -1) + 1);
  }
  async flush(): Promise<void> {}
  private readonly marks = new Map<number, Map<string, number>>();
  mark(): number {
    this.marks.set(this.records.length, new Map(this.offsets));
    return this.records.length;
  }
  async flushUpTo(): Promise<void> {}
  ackedOffsets(): ReadonlyMap<string, number> {
    return this.offsets;
  }
  ackedOffsetsAt(position: number): ReadonlyMap<string, number> | undefined {
    const m = this.marks.get(position);
    this.marks.delete(position);
    return m;
  }
}

// ---------------------------------------------------------------------------------------------
// sizes

// kafkajs' ConfigResourceTypes values (its enum is not a named export Node's ESM loader can see)
const TOPIC_RESOURCE = 2 as ConfigResourceTypes;
const BROKER_RESOURCE = 4 as ConfigResourceTypes;

/** Kafka's default `message.max.bytes` (1 MiB + the 12-byte log overhead). */
export const DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;
/** The record batch header (v2), counted against `max.message.bytes` with the records. */
export const RECORD_BATCH_OVERHEAD = 61;
const VARINT = 5;
const VARLONG = 10;

/**
 * An upper bound of a record's size inside an uncompressed v2 record batch: length, attributes,
 * timestamp and offset deltas, key, value and headers, every varint counted at its widest.
 */
export function recordSizeUpperBound(r: Pick<OutgoingRecord, 'key' | 'value' | 'headers'>): number {
  let n = VARINT + 1 + VARLONG + VARINT + VARINT + (r.key?.length ?? 0) + VARINT + (r.value?.length ?? 0) + VARINT;
  if (r.headers)
    for (const [k, v] of Object.entries(r.headers))
      n += VARINT + Buffer.byteLength(k) + VARINT + (typeof v === 'string' ? Buffer.byteLength(v) : v.length);
  return n;
}

/** What the broker accepts for one topic. */
export interface TopicLimit {
  /** `max.message.bytes`: the largest record batch of one partition */
  maxMessageBytes: number;
  /**
   * With `message.timestamp.type=CreateTime`: how far a record's timestamp may be ahead of / behind
   * the broker's clock (`message.timestamp.after.max.ms`, `message.timestamp.before.max.ms`).
   */
  timestampAfterMaxMs?: number;
  timestampBeforeMaxMs?: number;
  /** the topic's partition count, so the collector can pick every record's partition itself */
  partitions?: number;
}

const LIMIT_CONFIGS = [
  'max.message.bytes',
  'message.timestamp.type',
  'message.timestamp.after.max.ms',
  'message.timestamp.before.max.ms',
];

/**
 * Per-topic limits the broker applies to produced records. `fromAdmin` reads them for the topics
 * the runtime writes (the topic's effective values: the broker's unless the topic overrides them).
 */
export class TopicLimits {
  private readonly byTopic: Map<string, TopicLimit>;
  constructor(
    byTopic: ReadonlyMap<string, number | TopicLimit> = new Map(),
    /** `max.message.bytes` of topics not described */
    public defaultBytes = DEFAULT_MAX_MESSAGE_BYTES,
    private readonly loader?: (topics: string[]) => Promise<ReadonlyMap<string, TopicLimit>>,
  ) {
    this.byTopic = new Map(
      [...byTopic].map(([t, l]) => [t, typeof l === 'number' ? { maxMessageBytes: l } : l] as const),
    );
  }

  /** `max.message.bytes` of the topic */
  get(topic: string): number {
    return this.byTopic.get(topic)?.maxMessageBytes ?? this.defaultBytes;
  }

  /** The topic's partition count, when known. */
  partitions(topic: string): number | undefined {
    return this.byTopic.get(topic)?.partitions;
  }

  /** Whether the broker would refuse this timestamp (INVALID_TIMESTAMP), by our clock. */
  timestampRefused(topic: string, timestamp: number, now = Date.now()): boolean {
    const l = this.byTopic.get(topic);
    if (!l) return false;
    if (l.timestampAfterMaxMs !== undefined && timestamp - now > l.timestampAfterMaxMs) return true;
    return l.timestampBeforeMaxMs !== undefined && now - timestamp > l.timestampBeforeMaxMs;
  }

  /** Reads the limits again (a topic's config may have changed); keeps the old ones on failure. */
  async refresh(topics: string[]): Promise<void> {
    if (!this.loader) return;
    try {
      for (const [t, l] of await this.loader(topics)) this.byTopic.set(t, l);
    } catch {
      // the old limits stay; splitting still gets the request through
    }
  }

  static async fromAdmin(admin: Admin, topics: string[]): Promise<TopicLimits> {
    const load = (ts: string[]) => describeLimits(admin, ts);
    let defaultBytes = DEFAULT_MAX_MESSAGE_BYTES;
    try {
      const { brokers } = await admin.describeCluster();
      const b = brokers[0];
      if (b) {
        const r = await admin.describeConfigs({
          includeSynonyms: false,
          resources: [{ type: BROKER_RESOURCE, name: String(b.nodeId), configNames: ['message.max.bytes'] }],
        });
        const v = Number(r.resources[0]?.configEntries.find((e) => e.configName === 'message.max.bytes')?.configValue);
        if (Number.isFinite(v) && v > 0) defaultBytes = v;
      }
    } catch {
      // not allowed to describe the broker: Kafka's default
    }
    // not allowed to describe the topics: the broker's default; a refused request is split anyway
    const byTopic = topics.length ? await load(topics).catch(() => new Map<string, TopicLimit>()) : new Map();
    return new TopicLimits(byTopic, defaultBytes, load);
  }
}

async function describeLimits(admin: Admin, topics: string[]): Promise<Map<string, TopicLimit>> {
  const r = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [...new Set(topics)].map((name) => ({ type: TOPIC_RESOURCE, name, configNames: LIMIT_CONFIGS })),
  });
  const out = new Map<string, TopicLimit>();
  for (const res of r.resources) {
    if (res.errorCode !== 0) continue;
    const value = (name: string) => res.configEntries.find((e) => e.configName === name)?.configValue;
    const bytes = Number(value('max.message.bytes'));
    if (!Number.isFinite(bytes) || bytes <= 0) continue;
    const l: TopicLimit = { maxMessageBytes: bytes };
    if (value('message.timestamp.type') !== 'LogAppendTime') {
      // Long.MAX_VALUE (no limit) parses to a float above any timestamp difference
      const after = Number(value('message.timestamp.after.max.ms'));
      const before = Number(value('message.timestamp.before.max.ms'));
      if (Number.isFinite(after) && after < Number.MAX_SAFE_INTEGER) l.timestampAfterMaxMs = after;
      if (Number.isFinite(before) && before < Number.MAX_SAFE_INTEGER) l.timestampBeforeMaxMs = before;
    }
    out.set(res.resourceName, l);
  }
  // partition counts: the collector picks each record's partition (murmur2 of the key, as the
  // producer would), so it can check that an answer covers every partition it sent to
  try {
    const md = await admin.fetchTopicMetadata({ topics: [...out.keys()] });
    for (const t of md.topics) {
      const l = out.get(t.name);
      if (l && t.partitions.length > 0) l.partitions = t.partitions.length;
    }
  } catch {
    // unknown partition counts: the producer's partitioner picks, unchecked
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// errors

type Failure =
  | { kind: 'record'; code: string } // the broker refused the data of the request
  | { kind: 'producer-state' } // the idempotent producer's id or sequence is out of step
  | { kind: 'retriable' }
  | { kind: 'fatal'; code: string };

const RECORD_ERRORS: Record<string, string> = {
  MESSAGE_TOO_LARGE: 'RECORD_TOO_LARGE',
  RECORD_LIST_TOO_LARGE: 'RECORD_TOO_LARGE',
  INVALID_RECORD: 'RECORD_INVALID',
  INVALID_TIMESTAMP: 'RECORD_TIMESTAMP_INVALID',
};
const PRODUCER_STATE_ERRORS = new Set([
  'OUT_OF_ORDER_SEQUENCE_NUMBER',
  'UNKNOWN_PRODUCER_ID',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
  'DUPLICATE_SEQUENCE_NUMBER',
]);
const AUTH_ERRORS = new Set([
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'SASL_AUTHENTICATION_FAILED',
]);

interface KafkaJsLike {
  name?: string;
  type?: string;
  message?: string;
  retriable?: boolean;
  cause?: unknown;
}

/** The innermost kafkajs error (KafkaJSNumberOfRetriesExceeded wraps the last attempt's). */
function rootError(e: unknown): KafkaJsLike {
  let cur = e as KafkaJsLike;
  for (let i = 0; i < 5 && cur?.name === 'KafkaJSNumberOfRetriesExceeded' && cur.cause; i++)
    cur = cur.cause as KafkaJsLike;
  return cur ?? {};
}

export function classifyProduceError(e: unknown): Failure {
  const root = rootError(e);
  const type = root.type ?? '';
  if (RECORD_ERRORS[type]) return { kind: 'record', code: RECORD_ERRORS[type] };
  if (PRODUCER_STATE_ERRORS.has(type)) return { kind: 'producer-state' };
  if (AUTH_ERRORS.has(type) || root.name === 'KafkaJSSASLAuthenticationError')
    return { kind: 'fatal', code: 'PRODUCE_NOT_AUTHORIZED' };
  if (/producer is disconnect/i.test(root.message ?? '')) return { kind: 'fatal', code: 'PRODUCER_CLOSED' };
  if (root.retriable === true || (e as KafkaJsLike)?.retriable === true) return { kind: 'retriable' };
  return { kind: 'fatal', code: 'PRODUCE_FAILED' };
}

function describe(e: unknown): string {
  const root = rootError(e);
  return root.type ? `${root.type}: ${root.message}` : (root.message ?? String(e));
}

// ---------------------------------------------------------------------------------------------
// the Kafka collector

export interface KafkaRecordCollectorOptions {
  /** the producer (or, under exactly-once, the task's transaction: anything with `sendBatch`) */
  producer: Pick<Producer, 'sendBatch'>;
  /**
   * Exactly-once: the producer sends inside a transaction. A fenced producer or a transaction the
   * broker ended fails the collector at once (TASK_FENCED / TRANSACTION_LOST), never a reset.
   */
  transactional?: { taskId: string };
  /** most records in one produce request */
  maxBatchRecords?: number;
  /** most bytes (upper bound, uncompressed) in one produce request; a record alone may exceed it */
  maxRequestBytes?: number;
  /** tasks wait when more records than this are waiting to be acknowledged */
  maxBufferedRecords?: number;
  /** tasks wait when more bytes than this are waiting to be acknowledged */
  maxBufferedBytes?: number;
  /** each topic's `max.message.bytes`; default: Kafka's default for every topic */
  limits?: TopicLimits;
  /** where records the broker cannot take go; without it such a record fails the collector */
  dlqTopic?: string;
  /** written into the dead letters' `dlq.application.id` header */
  applicationId?: string;
  /** how long a request is retried on retriable errors before the collector fails */
  deliveryTimeoutMs?: number;
  /** first retry delay, doubled up to `maxRetryBackoffMs` */
  retryBackoffMs?: number;
  maxRetryBackoffMs?: number;
  /**
   * A producer with a new identity (idempotent producer id, sequence numbers from 0), for when
   * the old one's sequence numbers are out of step with the broker's (after a refused request
   * was split, or OUT_OF_ORDER_SEQUENCE_NUMBER / UNKNOWN_PRODUCER_ID). The caller disconnects the
   * old one. Without it the same producer is used again (right for a non-idempotent producer;
   * kafkajs keeps an idempotent producer's id across disconnect/connect).
   */
  resetProducer?: () => Promise<Producer | undefined | void>;
  compression?: number;
  onSent?: (count: number, ms: number) => void;
  /** a record went to the dead-letter topic instead of `topic` */
  onDeadLetter?: (topic: string, code: string) => void;
  /** a dead letter could not be written either (it is dropped, never retried forever) */
  onDropped?: (topic: string, code: string) => void;
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

interface Entry {
  record: OutgoingRecord;
  /** upper bound of its encoded size */
  bytes: number;
  /** bytes counted in `unackedBytes` for this slot (the original record's) */
  accounted: number;
  /** this entry is a dead letter the collector wrote in place of a refused record */
  deadLetter?: boolean;
  /** its index among the records sent to its explicit partition (for marks) */
  seq?: number;
}

/** A commit's mark: per partition, how many records were sent before it, and their last offset once acknowledged. */
interface Mark {
  position: number;
  /** `topic:partition` → records sent to it before the mark */
  before: Map<string, number>;
  /** `topic:partition` → offset of the last acknowledged record sent before the mark */
  offsets: Map<string, number>;
}

/** marks kept for `ackedOffsetsAt` (a commit takes its own; older ones are from failed commits) */
const MAX_MARKS = 4;

/** Records grouped by topic and explicit partition (undefined: one group per topic), in order. */
function byPartition(batch: Entry[]): Entry[][] {
  const groups = new Map<string, Entry[]>();
  for (const e of batch) {
    const k = `${e.record.topic}\u0000${e.record.partition ?? '*'}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(e);
  }
  return [...groups.values()];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class KafkaRecordCollector implements RecordCollector {
  private buffer: Entry[] = [];
  private producer: Pick<Producer, 'sendBatch'>;
  private sending: Promise<void> | undefined;
  private failure: StreamsError | undefined;
  private closed = false;
  private readonly offsets = new Map<string, number>();
  /** per `topic:partition`: records sent to it (explicit partitions only) */
  private readonly sentTo = new Map<string, number>();
  private marks: Mark[] = [];
  private readonly maxBatch: number;
  private readonly maxRequestBytes: number;
  private readonly maxBuffered: number;
  private readonly maxBufferedBytes: number;
  private readonly limits: TopicLimits;
  private scheduled = false;
  /** records handed to send() so far, and how many of them are acknowledged (in order) */
  private sent = 0;
  private acked = 0;
  private unackedBytes = 0;
  /** requests refused and split, producer resets, retries: for tests and logs */
  readonly stats = { requests: 0, splits: 0, resets: 0, retries: 0, deadLetters: 0, dropped: 0, partial: 0 };

  constructor(private readonly opts: KafkaRecordCollectorOptions) {
    this.producer = opts.producer;
    this.maxBatch = opts.maxBatchRecords ?? 10_000;
    this.maxRequestBytes = opts.maxRequestBytes ?? 900 * 1024;
    this.maxBuffered = opts.maxBufferedRecords ?? 50_000;
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 32 * 1024 * 1024;
    this.limits = opts.limits ?? new TopicLimits();
  }

  private full(): boolean {
    return this.sent - this.acked > this.maxBuffered || this.unackedBytes > this.maxBufferedBytes;
  }

  capacity(): Promise<void> | undefined {
    if (!this.full() || this.failure) return undefined;
    return (async () => {
      while (this.full() && !this.failure) await this.kick();
    })();
  }

  send(record: OutgoingRecord): void {
    if (this.failure) throw this.failure;
    if (record.partition === undefined) {
      // the partition the producer's default partitioner would pick, chosen here so that every
      // answer can be checked against the partitions it had to cover
      const n = this.limits.partitions(record.topic);
      if (n !== undefined)
        record.partition = record.key ? partitionForKey(record.key, n) : this.nextUnkeyed(record.topic, n);
    }
    const bytes = recordSizeUpperBound(record);
    let entry: Entry = { record, bytes, accounted: bytes };
    const limit = this.limits.get(record.topic);
    if (bytes + RECORD_BATCH_OVERHEAD > limit) {
      if (this.opts.dlqTopic === undefined)
        throw new StreamsError(
          'RECORD_TOO_LARGE',
          `a record for ${record.topic} has ${bytes} bytes, the topic takes at most ${limit} (and no dead-letter topic is set)`,
        );
      entry = this.deadLetter(entry, 'RECORD_TOO_LARGE', `record of ${bytes} bytes, topic limit ${limit}`, limit);
    } else if (this.opts.dlqTopic !== undefined && this.limits.timestampRefused(record.topic, record.timestamp)) {
      entry = this.deadLetter(
        entry,
        'RECORD_TIMESTAMP_INVALID',
        `timestamp ${record.timestamp} is outside the topic's message.timestamp.after/before.max.ms`,
        limit,
      );
    }
    if (entry.record.partition !== undefined) {
      const k = tpKey(entry.record.topic, entry.record.partition);
      const n = this.sentTo.get(k) ?? 0;
      entry.seq = n;
      this.sentTo.set(k, n + 1);
    }
    this.buffer.push(entry);
    this.sent++;
    this.unackedBytes += entry.accounted;
    if (this.sending || this.scheduled || this.held) return;
    // linger until the current macrotask ends, so one processed batch becomes one request
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.kick();
    });
  }

  /**
   * The dead letter that takes a refused record's place: same key (unless it alone is too big),
   * no value, headers saying where it was going, why, and how big it was.
   */
  private deadLetter(entry: Entry, code: string, reason: string, limit: number): Entry {
    const r = entry.record;
    const dlq = this.opts.dlqTopic!;
    let headers: Record<string, string | Buffer>;
    if (r.topic === dlq) {
      // already a dead letter (of a task): keep its headers, drop the value
      headers = { ...r.headers, 'dlq.value.dropped': code };
    } else {
      headers = { 'dlq.target.topic': r.topic };
      if (r.partition !== undefined) headers['dlq.target.partition'] = String(r.partition);
      if (r.source) {
        headers['dlq.source.topic'] = r.source.topic;
        headers['dlq.source.partition'] = String(r.source.partition);
        headers['dlq.source.offset'] = String(r.source.offset);
      }
      headers['dlq.error.code'] = code;
      headers['dlq.error.message'] = reason;
      headers['dlq.error.kind'] = 'production';
      if (this.opts.applicationId) headers['dlq.application.id'] = this.opts.applicationId;
    }
    headers['dlq.record.bytes'] = String(entry.bytes);
    headers['dlq.record.timestamp'] = String(r.timestamp);
    headers['dlq.limit.bytes'] = String(limit);
    const out: OutgoingRecord = {
      topic: dlq,
      key: r.key,
      value: null,
      // a refused timestamp would be refused again
      timestamp:
        code === 'RECORD_TIMESTAMP_INVALID' || this.limits.timestampRefused(dlq, r.timestamp)
          ? Date.now()
          : r.timestamp,
      headers,
    };
    let bytes = recordSizeUpperBound(out);
    if (bytes + RECORD_BATCH_OVERHEAD > this.limits.get(dlq)) {
      out.key = null;
      headers['dlq.key.dropped'] = 'true';
      bytes = recordSizeUpperBound(out);
    }
    this.stats.deadLetters++;
    this.opts.onDeadLetter?.(r.topic, code);
    return { record: out, bytes, accounted: entry.accounted, deadLetter: true };
  }

  private held: { promise: Promise<void>; release: () => void } | undefined;

  /**
   * Exactly-once: while a transaction commits, records go on being collected but none is sent
   * (they belong to the next transaction); `release()` lets them go.
   */
  hold(): void {
    if (this.held) return;
    let release!: () => void;
    const promise = new Promise<void>((r) => (release = r));
    this.held = { promise, release };
  }

  release(): void {
    const h = this.held;
    this.held = undefined;
    h?.release();
    if (this.buffer.length) void this.kick();
  }

  private kick(): Promise<void> {
    if (this.held && !this.sending) return this.held.promise;
    if (!this.sending && this.buffer.length && !this.failure) {
      this.sending = this.drain().finally(() => {
        this.sending = undefined;
      });
      // a failure is kept and reported by the next send or flush
      this.sending.catch(() => undefined);
    }
    return this.sending ?? Promise.resolve();
  }

  /**
   * One request at a time; each takes what is buffered meanwhile, up to the record and byte caps,
   * so records for a partition are written in collection order and requests stay large.
   */
  private async drain(): Promise<void> {
    while (this.buffer.length && !this.failure && !this.held) {
      const n = this.nextRequestSize();
      const batch = this.buffer.splice(0, n);
      try {
        await this.deliver(batch);
        // counted when the whole batch is through: its parts may be written out of order when a
        // refused request is split by partition (`mark()` positions are in send order)
        this.acked += batch.length;
        for (const e of batch) this.unackedBytes -= e.accounted;
      } catch (e) {
        this.failure ??= e instanceof StreamsError ? e : new StreamsError('PRODUCE_FAILED', describe(e), { cause: e });
        throw this.failure;
      }
    }
  }

  /**
   * How many records from the head of the buffer go into the next request: each topic-partition's
   * share within the topic's limit (records without an explicit partition count against every
   * partition of their topic), the whole within `maxRequestBytes` and `maxBatchRecords`.
   */
  private nextRequestSize(): number {
    let total = 0;
    const known = new Map<string, number>();
    const unknown = new Map<string, number>();
    const maxKnown = new Map<string, number>();
    let n = 0;
    for (const e of this.buffer) {
      if (n >= this.maxBatch) break;
      if (n > 0 && total + e.bytes > this.maxRequestBytes) break;
      const t = e.record.topic;
      const limit = this.limits.get(t) - RECORD_BATCH_OVERHEAD;
      const u = unknown.get(t) ?? 0;
      if (e.record.partition === undefined) {
        if (n > 0 && u + (maxKnown.get(t) ?? 0) + e.bytes > limit) break;
        unknown.set(t, u + e.bytes);
      } else {
        const k = tpKey(t, e.record.partition);
        const now = (known.get(k) ?? 0) + e.bytes;
        if (n > 0 && u + now > limit) break;
        known.set(k, now);
        if (now > (maxKnown.get(t) ?? 0)) maxKnown.set(t, now);
      }
      total += e.bytes;
      n++;
    }
    return Math.max(1, n);
  }

  private readonly unkeyed = new Map<string, number>();
  private nextUnkeyed(topic: string, partitions: number): number {
    const i = (this.unkeyed.get(topic) ?? -1) + 1;
    this.unkeyed.set(topic, i);
    return i % partitions;
  }

  /** Gets a batch written: retries, splits refused requests, dead-letters refused records. */
  private async deliver(batch: Entry[]): Promise<void> {
    const started = Date.now();
    let delay = this.opts.retryBackoffMs ?? 100;
    let attempt = 0;
    let resets = 0;
    for (;;) {
      if (this.closed) throw new StreamsError('PRODUCER_CLOSED', 'the record collector is closed');
      try {
        const missing = await this.produce(batch);
        if (!missing.length) return;
        // an answer without some partitions it had to cover (kafkajs, after a leader moved to a
        // broker that had already answered, reports success for partitions it never re-sent):
        // those partitions' records again, alone; kafkajs rolled their sequence numbers back, so
        // the broker recognises them if they were written after all
        this.stats.partial++;
        this.opts.onRetry?.(new Error(`answer without ${missing.length} of ${batch.length} records`), ++attempt, delay);
        batch = missing;
        continue;
      } catch (e) {
        if (this.opts.transactional && isTransactionLost(e))
          throw transactionLostError(this.opts.transactional.taskId, e);
        const f = classifyProduceError(e);
        if (f.kind === 'record') {
          if (batch.length > 1) {
            this.stats.splits++;
            if (f.code === 'RECORD_TOO_LARGE')
              await this.limits.refresh([...new Set(batch.map((b) => b.record.topic))]);
            const groups = byPartition(batch);
            if (groups.length > 1) {
              // the broker refused some partition's batch and may have written the others, whose
              // sequence numbers kafkajs has rolled back: each partition's records again, alone, are
              // the same batches (same sequence numbers), which the broker recognises as duplicates
              for (const g of groups) await this.deliver(g);
              return;
            }
            // one partition: nothing of it was written, halves keep the sequence numbers in step;
            // records left to the producer's partitioner may span partitions some of which were
            // written: halves would be out of sequence there, so the producer gets a new identity
            if (batch[0]!.record.partition === undefined) await this.reset();
            const mid = Math.ceil(batch.length / 2);
            await this.deliver(batch.slice(0, mid));
            await this.deliver(batch.slice(mid));
            return;
          }
          const only = batch[0]!;
          if (only.deadLetter || this.opts.dlqTopic === undefined) {
            if (this.opts.dlqTopic === undefined)
              throw new StreamsError(f.code, `the broker refused a record for ${only.record.topic}: ${describe(e)}`, {
                cause: e,
              });
            // a dead letter the broker refuses too: dropped, counted, never retried forever
            this.stats.dropped++;
            this.opts.onDropped?.(only.record.topic, f.code);
            return;
          }
          if (f.code === 'RECORD_TOO_LARGE') await this.limits.refresh([only.record.topic]);
          batch = [this.deadLetter(only, f.code, describe(e), this.limits.get(only.record.topic))];
          continue;
        }
        if (f.kind === 'producer-state') {
          if (++resets > 3)
            throw new StreamsError('PRODUCE_FAILED', `producer state out of step: ${describe(e)}`, { cause: e });
          await this.reset();
          continue;
        }
        if (f.kind === 'retriable' && this.opts.transactional)
          // kafkajs gave up on a request that may have been written for some partitions (their
          // sequence numbers moved on): sent again, those would be written twice in the
          // transaction. The transaction is given up instead (aborted; the task starts again
          // from its last commit)
          throw transactionLostError(this.opts.transactional.taskId, e);
        if (f.kind === 'retriable') {
          if (Date.now() - started >= (this.opts.deliveryTimeoutMs ?? 120_000)) {
            const type = rootError(e).type;
            const code = type === 'UNKNOWN_TOPIC_OR_PARTITION' ? 'PRODUCE_TOPIC_UNKNOWN' : 'PRODUCE_TIMEOUT';
            throw new StreamsError(
              code,
              `producing ${batch.length} records failed for ${Date.now() - started} ms: ${describe(e)}`,
              { retriable: true, cause: e },
            );
          }
          attempt++;
          this.stats.retries++;
          this.opts.onRetry?.(e, attempt, delay);
          await sleep(delay);
          delay = Math.min(delay * 2, this.opts.maxRetryBackoffMs ?? 5000);
          continue;
        }
        throw new StreamsError(f.code, `producing ${batch.length} records failed: ${describe(e)}`, {
          retriable: false,
          cause: e,
        });
      }
    }
  }

  private async reset(): Promise<void> {
    this.stats.resets++;
    const p = await this.opts.resetProducer?.();
    if (p) this.producer = p;
  }

  /** Sends a batch; answers the entries whose partitions the answer does not cover (normally none). */
  private async produce(batch: Entry[]): Promise<Entry[]> {
    const byTopic = new Map<string, Message[]>();
    for (const { record: r } of batch) {
      let list = byTopic.get(r.topic);
      if (!list) byTopic.set(r.topic, (list = []));
      const m: Message = { key: r.key, value: r.value, timestamp: String(r.timestamp) };
      if (r.partition !== undefined) m.partition = r.partition;
      if (r.headers) m.headers = r.headers;
      list.push(m);
    }
    const topicMessages: TopicMessages[] = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    const t0 = performance.now();
    this.stats.requests++;
    const result = await this.producer.sendBatch({
      topicMessages,
      acks: -1,
      ...(this.opts.compression !== undefined ? { compression: this.opts.compression } : {}),
    });
    const missing = this.ack(batch, result);
    this.opts.onSent?.(batch.length - missing.length, performance.now() - t0);
    return missing;
  }

  private ack(batch: Entry[], result: KafkaRecordMetadata[]): Entry[] {
    // sendBatch answers one entry per (topic, partition) with the base offset of what it wrote
    const counts = new Map<string, number>();
    for (const { record: r } of batch) {
      if (r.partition === undefined) continue;
      const k = tpKey(r.topic, r.partition);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    // marks whose records are all acknowledged already take nothing from this batch
    const open = this.marks.filter((m) => m.position > this.acked);
    const marks = open.length ? new Map<string, number>() : undefined;
    for (const md of result) {
      const k = tpKey(md.topicName, md.partition);
      const n = counts.get(k);
      if (n === undefined) continue;
      counts.delete(k);
      if (md.baseOffset === undefined) continue;
      const base = Number(md.baseOffset);
      const last = base + n - 1;
      if (last > (this.offsets.get(k) ?? -1)) this.offsets.set(k, last);
      marks?.set(k, base);
    }
    if (marks?.size) {
      // each written record's offset, for the marks whose records it is: the i-th record of a
      // partition in the batch has the partition's base offset + i (one request, in order)
      const index = new Map<string, number>();
      for (const e of batch) {
        const r = e.record;
        if (r.partition === undefined || e.seq === undefined) continue;
        const k = tpKey(r.topic, r.partition);
        const base = marks.get(k);
        if (base === undefined) continue;
        const i = index.get(k) ?? 0;
        index.set(k, i + 1);
        for (const m of open) {
          const before = m.before.get(k);
          if (before !== undefined && e.seq < before && base + i > (m.offsets.get(k) ?? -1)) m.offsets.set(k, base + i);
        }
      }
    }
    if (!counts.size) return [];
    return batch.filter(({ record: r }) => r.partition !== undefined && counts.has(tpKey(r.topic, r.partition)));
  }

  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.buffer.length || this.sending) {
      await this.kick();
      if (this.failure) throw this.failure;
    }
    if (this.failure) throw this.failure;
  }

  mark(): number {
    // what is acknowledged already was sent before the mark
    this.marks.push({ position: this.sent, before: new Map(this.sentTo), offsets: new Map(this.offsets) });
    if (this.marks.length > MAX_MARKS) this.marks.shift();
    return this.sent;
  }

  ackedOffsetsAt(position: number): ReadonlyMap<string, number> | undefined {
    const i = this.marks.findIndex((m) => m.position === position);
    if (i < 0 || this.acked < position) return undefined;
    const m = this.marks[i]!;
    this.marks.splice(i, 1);
    return m.offsets;
  }

  async flushUpTo(position: number): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.acked < position) {
      await this.kick();
      if (this.failure) throw this.failure;
    }
  }

  ackedOffsets(): ReadonlyMap<string, number> {
    return this.offsets;
  }

  /** The failure that stopped the collector, if any. */
  error(): StreamsError | undefined {
    return this.failure;
  }

  /** Stops retrying: a request being retried fails with PRODUCER_CLOSED. */
  close(): void {
    this.closed = true;
  }
}
