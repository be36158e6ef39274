/**
 * The Processor API (after Kafka Streams'): a processor is a small unit with init/process/close.
 * It receives records, reads and writes the state stores attached to it, and forwards records to
 * its children. It never closes its stores: the runtime owns them.
 */
import type { KeyValueStore } from './state/store.js';

export type Headers = Record<string, string | Buffer>;

export interface StreamRecord<K = unknown, V = unknown> {
  readonly key: K;
  readonly value: V;
  /** event time, epoch milliseconds */
  readonly timestamp: number;
  readonly headers?: Headers;
}

/** Where the record being processed came from. */
export interface RecordMetadata {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
}

export type PunctuationType = 'STREAM_TIME' | 'WALL_CLOCK_TIME';

export interface Cancellable {
  cancel(): void;
}

/** A read-only view of a global table: the whole topic, on every instance, kept current. */
export interface GlobalTableView<K, V> {
  get(key: K): V | undefined;
  size(): number;
  entries(): IterableIterator<[K, V]>;
}

/** A global table held in memory: the latest value per key of the whole topic. */
export class MapGlobalTable<K, V> implements GlobalTableView<K, V> {
  readonly map = new Map<K, V>();
  get(key: K): V | undefined {
    return this.map.get(key);
  }
  size(): number {
    return this.map.size;
  }
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}

export interface ProcessorContext {
  readonly applicationId: string;
  /** the task this processor instance belongs to, e.g. "0_3" */
  readonly taskId: string;
  readonly partition: number;
  /** Forward to every child, or to the named child only. */
  forward<K, V>(record: StreamRecord<K, V>, childName?: string): Promise<void>;
  getStateStore<K, V>(name: string): KeyValueStore<K, V>;
  getGlobalTable<K, V>(name: string): GlobalTableView<K, V>;
  /** Metadata of the input record being processed; undefined inside a punctuation. */
  recordMetadata(): RecordMetadata | undefined;
  /** Highest timestamp seen by the task so far (-1 before the first record). */
  currentStreamTime(): number;
  /**
   * Calls `callback(time)` every `intervalMs` of stream time (driven by record timestamps, so
   * replays behave the same) or of wall-clock time.
   */
  schedule(intervalMs: number, type: PunctuationType, callback: (time: number) => void | Promise<void>): Cancellable;
}

export interface Processor<KIn = unknown, VIn = unknown> {
  init?(context: ProcessorContext): void | Promise<void>;
  process(record: StreamRecord<KIn, VIn>): void | Promise<void>;
  /**
   * Optional, for a processor that reads its stores by keys the source record keys are not
   * (the engine already reads stores declared with `prefetch` by the record keys): called once
   * per processed batch, before any `process` of it, with the batch's records from each source
   * this processor is a direct child of. Read what the batch will need with one `getAll` per
   * store, so that `process` finds it in the store's cache instead of reading RocksDB record by
   * record. Only a warm-up: it must not write or forward, and a failure is ignored (`process`
   * then reads as usual).
   */
  prefetch?(records: readonly StreamRecord<KIn, VIn>[]): void | Promise<unknown>;
  close?(): void | Promise<void>;
}

export type ProcessorSupplier<KIn = unknown, VIn = unknown> = () => Processor<KIn, VIn>;
