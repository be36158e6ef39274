/**
 * State store contracts.
 *
 * Stores are built as layers, the way Kafka Streams does it:
 *
 *   MeteredKeyValueStore<K, V>      typed API, serdes, latency metrics
 *     CachingStore                  write-back LRU cache, dedupes writes between flushes
 *       ChangeLoggingStore          mirrors every write to a changelog sink
 *         RocksDBStore | InMemoryKeyValueStore   the bytes
 *
 * Every layer below the metered one works on raw bytes (`BytesStore`), ordered by the
 * unsigned byte order of the key (`Buffer.compare`, which is also RocksDB's default comparator).
 */
import { StoreError } from '../errors.js';

export { StoreError };

export type Entry<K, V> = readonly [K, V];

/** A key-value store. Ordered by the key's bytes. All methods may be called concurrently only by one task (single writer). */
export interface KeyValueStore<K, V> {
  readonly name: string;
  get(key: K): Promise<V | undefined>;
  /** batch read: result[i] belongs to keys[i] */
  getAll(keys: readonly K[]): Promise<(V | undefined)[]>;
  put(key: K, value: V): Promise<void>;
  /** batch write; a null value deletes the key */
  putAll(entries: readonly (readonly [K, V | null])[]): Promise<void>;
  delete(key: K): Promise<void>;
  /** [from, to) in key-byte order; both optional */
  range(from?: K, to?: K): AsyncIterable<Entry<K, V>>;
  all(): AsyncIterable<Entry<K, V>>;
  approximateNumEntries(): Promise<number>;
  /** persist buffered writes to the next layer / disk */
  flush(): Promise<void>;
  /** release resources; only the runtime calls this, never a processor */
  close(): Promise<void>;
}

export type BytesStore = KeyValueStore<Buffer, Buffer>;

/** One change read back from a changelog; `value: null` is a tombstone. */
export interface RestoreRecord {
  readonly key: Buffer;
  readonly value: Buffer | null;
}

/**
 * An innermost store that can take changelog records directly, bypassing every layer
 * above it (no re-logging, no cache). Used by changelog restoration.
 */
export interface BatchRestorable {
  restoreBatch(records: readonly RestoreRecord[]): Promise<void>;
}

export type RestorableBytesStore = BytesStore & BatchRestorable;

export function isBatchRestorable(store: unknown): store is BatchRestorable {
  return (
    typeof store === 'object' &&
    store !== null &&
    typeof (store as { restoreBatch?: unknown }).restoreBatch === 'function'
  );
}

/** Turns a typed value into bytes and back. */
export interface StoreSerde<T> {
  serialize(value: T): Buffer;
  deserialize(bytes: Buffer): T;
}

/**
 * Adapts a record serde whose methods take the topic first (as Kafka serdes do) into a store
 * serde, fixing the topic (typically the store's changelog topic).
 */
export function storeSerdeFor<T>(
  serde: { serialize(topic: string, value: T): Buffer; deserialize(topic: string, data: Buffer): T },
  topic: string,
): StoreSerde<T> {
  return {
    serialize: (value) => serde.serialize(topic, value),
    deserialize: (bytes) => serde.deserialize(topic, bytes),
  };
}

/** Stable `code`s carried by the `StoreError`s this layer raises. */
export const StoreErrorCodes = {
  /** the on-disk store is damaged; wipe it and restore from the changelog */
  CORRUPT: 'STORE_CORRUPT',
  /** the store could not be opened (bad path, permissions, lock held by someone else...) */
  OPEN_FAILED: 'STORE_OPEN_FAILED',
  /** an operation was attempted on a closed store */
  CLOSED: 'STORE_CLOSED',
  READ_FAILED: 'STORE_READ_FAILED',
  WRITE_FAILED: 'STORE_WRITE_FAILED',
  CLOSE_FAILED: 'STORE_CLOSE_FAILED',
  /** the key is not acceptable for the store (e.g. empty key in RocksDB) */
  INVALID_KEY: 'STORE_INVALID_KEY',
  CHECKPOINT_CORRUPT: 'CHECKPOINT_CORRUPT',
  CHECKPOINT_INVALID: 'CHECKPOINT_INVALID',
  CHECKPOINT_WRITE_FAILED: 'CHECKPOINT_WRITE_FAILED',
} as const;

export type StoreErrorCode = (typeof StoreErrorCodes)[keyof typeof StoreErrorCodes];

export function storeClosedError(name: string): StoreError {
  return new StoreError(StoreErrorCodes.CLOSED, `store "${name}" is closed`);
}

/**
 * Map key for byte keys. latin1 maps each byte to one UTF-16 code unit 0..255, so the
 * resulting strings compare (`<`) exactly like `Buffer.compare` compares the bytes.
 */
export function bytesKey(key: Buffer): string {
  return key.toString('latin1');
}

export function keyFromBytesKey(key: string): Buffer {
  return Buffer.from(key, 'latin1');
}
