/**
 * The record collector: every record the runtime produces (sink outputs, changelog writes, dead
 * letters) goes through here. Records are buffered and sent in batches, with at most one produce
 * request in flight, so that records for one partition are written in the order they were
 * collected even when a request is retried (kafkajs does not guarantee order across concurrent
 * requests). `flush()` resolves when every record collected so far is acknowledged (acks=all);
 * the offsets acknowledged per partition feed the changelog checkpoints.
 */
import type { Producer, Message, TopicMessages, RecordMetadata as KafkaRecordMetadata } from 'kafkajs';
import { StreamsError } from './errors.js';
import { tpKey } from './state/checkpoint.js';

export interface OutgoingRecord {
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  /** explicit partition; undefined = the producer's default (murmur2) partitioner */
  partition?: number;
  timestamp: number;
  headers?: Record<string, string | Buffer>;
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
   * Backpressure: resolves when the collector can take more (too many records waiting to be
   * sent otherwise); tasks wait on it between batches.
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
  mark(): number {
    return this.records.length;
  }
  async flushUpTo(): Promise<void> {}
  ackedOffsets(): ReadonlyMap<string, number> {
    return this.offsets;
  }
}

export interface KafkaRecordCollectorOptions {
  producer: Producer;
  /** most records in one produce request */
  maxBatchRecords?: number;
  /**
   * most key + value bytes in one produce request (default 768 KiB): the broker refuses a request
   * whose batch for one partition exceeds message.max.bytes (1 MiB by default)
   */
  maxBatchBytes?: number;
  /** tasks wait when more records than this are waiting to be sent */
  maxBufferedRecords?: number;
  compression?: number;
  onSent?: (count: number, ms: number) => void;
}

export class KafkaRecordCollector implements RecordCollector {
  private buffer: OutgoingRecord[] = [];
  private sending: Promise<void> | undefined;
  private failure: StreamsError | undefined;
  private readonly offsets = new Map<string, number>();
  private readonly maxBatch: number;
  private readonly maxBytes: number;
  private scheduled = false;
  /** records handed to send() so far, and how many of them are acknowledged (in order) */
  private sent = 0;
  private acked = 0;
  private readonly maxBuffered: number;

  constructor(private readonly opts: KafkaRecordCollectorOptions) {
    this.maxBatch = opts.maxBatchRecords ?? 10_000;
    this.maxBytes = opts.maxBatchBytes ?? 768 * 1024;
    this.maxBuffered = opts.maxBufferedRecords ?? 50_000;
  }

  capacity(): Promise<void> | undefined {
    if (this.sent - this.acked <= this.maxBuffered || this.failure) return undefined;
    return (async () => {
      while (this.sent - this.acked > this.maxBuffered && !this.failure) await this.kick();
    })();
  }

  send(record: OutgoingRecord): void {
    if (this.failure) throw this.failure;
    this.buffer.push(record);
    this.sent++;
    if (this.sending || this.scheduled) return;
    // linger until the current macrotask ends, so one processed batch becomes one request
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.kick();
    });
  }

  private kick(): Promise<void> {
    if (!this.sending && this.buffer.length) {
      this.sending = this.drain().finally(() => {
        this.sending = undefined;
      });
      // a failure is kept and reported by the next send or flush
      this.sending.catch(() => undefined);
    }
    return this.sending ?? Promise.resolve();
  }

  /**
   * One request at a time; each takes everything buffered meanwhile (up to maxBatch records),
   * so records for a partition are written in collection order and requests stay large.
   */
  private async drain(): Promise<void> {
    while (this.buffer.length && !this.failure) {
      // up to maxBatch records and maxBytes bytes (at least one record)
      let n = 0;
      let bytes = 0;
      const limit = Math.min(this.buffer.length, this.maxBatch);
      while (n < limit) {
        const r = this.buffer[n]!;
        bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0) + 64;
        if (n > 0 && bytes > this.maxBytes) break;
        n++;
      }
      const batch = n === this.buffer.length ? this.buffer : this.buffer.slice(0, n);
      this.buffer = batch === this.buffer ? [] : this.buffer.slice(n);
      await this.produce(batch);
    }
  }

  private async produce(batch: OutgoingRecord[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    for (const r of batch) {
      let list = byTopic.get(r.topic);
      if (!list) byTopic.set(r.topic, (list = []));
      const m: Message = { key: r.key, value: r.value, timestamp: String(r.timestamp) };
      if (r.partition !== undefined) m.partition = r.partition;
      if (r.headers) m.headers = r.headers;
      list.push(m);
    }
    const topicMessages: TopicMessages[] = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    const t0 = performance.now();
    let result: KafkaRecordMetadata[];
    try {
      result = await this.opts.producer.sendBatch({
        topicMessages,
        acks: -1,
        ...(this.opts.compression !== undefined ? { compression: this.opts.compression } : {}),
      });
    } catch (e) {
      this.failure = new StreamsError(
        'PRODUCE_FAILED',
        `producing ${batch.length} records failed: ${(e as Error).message}`,
        {
          retriable: true,
          cause: e,
        },
      );
      throw this.failure;
    }
    // sendBatch answers one entry per (topic, partition) with the base offset of what it wrote
    const counts = new Map<string, number>();
    for (const r of batch) {
      if (r.partition === undefined) continue;
      const k = tpKey(r.topic, r.partition);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    for (const md of result) {
      const k = tpKey(md.topicName, md.partition);
      const n = counts.get(k);
      if (n === undefined || md.baseOffset === undefined) continue;
      const last = Number(md.baseOffset) + n - 1;
      if (last > (this.offsets.get(k) ?? -1)) this.offsets.set(k, last);
    }
    // one request in flight and batches taken in order: acknowledgements come in send order
    this.acked += batch.length;
    this.opts.onSent?.(batch.length, performance.now() - t0);
  }

  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.buffer.length || this.sending) await this.kick();
    if (this.failure) throw this.failure;
  }

  mark(): number {
    return this.sent;
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
}
