import { ConfigError } from '../errors.js';
import { CachingStore, type CacheBudget } from './caching-store.js';
import { ChangeLoggingStore, type ChangelogSink } from './changelogging-store.js';
import { InMemoryKeyValueStore } from './memory-store.js';
import { MeteredKeyValueStore, type StoreMetrics } from './metered-store.js';
import { RocksDBStore, type RocksDBStoreOptions } from './rocksdb-store.js';
import type { BytesStore, KeyValueStore, RestorableBytesStore, StoreSerde } from './store.js';
import { TransactionalStore } from './transactional-store.js';

export * from './store.js';
export * from './memory-store.js';
export * from './rocksdb-store.js';
export * from './changelogging-store.js';
export * from './caching-store.js';
export * from './metered-store.js';
export * from './checkpoint.js';
export * from './transactional-store.js';
export * from './memory-budget.js';

export interface StoreStackOptions<K, V> {
  name: string;
  /** the store's own RocksDB directory; undefined => in-memory */
  dir?: string;
  /** 0 => no cache, unless `cacheBudget` bounds it (then 0 => no entry bound) */
  cacheMaxEntries: number;
  /** a byte budget the store's cache keeps within its share of */
  cacheBudget?: CacheBudget;
  /** a cache entry counts as key + value × this + overhead (default 1) */
  cacheValueBytesFactor?: number;
  /** cache serves reads only; every write goes down at once */
  writeThrough?: boolean;
  /** undefined => no changelog */
  sink?: ChangelogSink;
  keySerde: StoreSerde<K>;
  valueSerde: StoreSerde<V>;
  metrics?: StoreMetrics;
  rocksdb?: RocksDBStoreOptions;
}

export interface StoreStack<K, V> {
  /** what processors use */
  store: KeyValueStore<K, V>;
  /** the innermost store, for changelog restore (writes here are neither cached nor logged) */
  inner: RestorableBytesStore;
  /** the write buffer of a persistent store: commits reach disk only through it */
  txn?: TransactionalStore;
}

/**
 * Builds metered(caching(changelogging(transactional(rocksdb) | memory))), leaving out the
 * layers that are not asked for. Closing `store` closes every layer down to `inner`.
 */
export async function buildStoreStack<K, V>(opts: StoreStackOptions<K, V>): Promise<StoreStack<K, V>> {
  if (!Number.isSafeInteger(opts.cacheMaxEntries) || opts.cacheMaxEntries < 0) {
    throw new ConfigError(
      'cacheMaxEntries',
      `must be an integer >= 0 for store "${opts.name}", got ${opts.cacheMaxEntries}`,
    );
  }
  // a persistent store is transactional: a commit's writes reach RocksDB in one atomic batch
  const txn =
    opts.dir === undefined
      ? undefined
      : new TransactionalStore(await RocksDBStore.open(opts.name, opts.dir, opts.rocksdb));
  const inner: RestorableBytesStore = txn ?? new InMemoryKeyValueStore(opts.name);
  try {
    let bytes: BytesStore = inner;
    if (opts.sink !== undefined) bytes = new ChangeLoggingStore(bytes, opts.sink);
    if (opts.cacheMaxEntries > 0 || opts.cacheBudget !== undefined)
      bytes = new CachingStore(bytes, {
        ...(opts.cacheMaxEntries > 0 ? { maxEntries: opts.cacheMaxEntries } : {}),
        ...(opts.cacheBudget ? { budget: opts.cacheBudget } : {}),
        ...(opts.cacheValueBytesFactor !== undefined ? { valueBytesFactor: opts.cacheValueBytesFactor } : {}),
        writeThrough: opts.writeThrough ?? false,
      });
    const store = new MeteredKeyValueStore<K, V>(bytes, opts.keySerde, opts.valueSerde, opts.metrics);
    return txn ? { store, inner, txn } : { store, inner };
  } catch (err) {
    await inner.close().catch(() => undefined);
    throw err;
  }
}
