import { ConfigError } from '../errors.js';
import { CachingStore } from './caching-store.js';
import { ChangeLoggingStore, type ChangelogSink } from './changelogging-store.js';
import { InMemoryKeyValueStore } from './memory-store.js';
import { MeteredKeyValueStore, type StoreMetrics } from './metered-store.js';
import { RocksDBStore, type RocksDBStoreOptions } from './rocksdb-store.js';
import type { BytesStore, KeyValueStore, RestorableBytesStore, StoreSerde } from './store.js';

export * from './store.js';
export * from './memory-store.js';
export * from './rocksdb-store.js';
export * from './changelogging-store.js';
export * from './caching-store.js';
export * from './metered-store.js';
export * from './checkpoint.js';

export interface StoreStackOptions<K, V> {
  name: string;
  /** the store's own RocksDB directory; undefined => in-memory */
  dir?: string;
  /** 0 => no cache */
  cacheMaxEntries: number;
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
}

/**
 * Builds metered(caching(changelogging(rocksdb | memory))), leaving out the layers that are
 * not asked for. Closing `store` closes every layer down to `inner`.
 */
export async function buildStoreStack<K, V>(opts: StoreStackOptions<K, V>): Promise<StoreStack<K, V>> {
  if (!Number.isSafeInteger(opts.cacheMaxEntries) || opts.cacheMaxEntries < 0) {
    throw new ConfigError(
      'cacheMaxEntries',
      `must be an integer >= 0 for store "${opts.name}", got ${opts.cacheMaxEntries}`,
    );
  }
  const inner: RestorableBytesStore =
    opts.dir === undefined
      ? new InMemoryKeyValueStore(opts.name)
      : await RocksDBStore.open(opts.name, opts.dir, opts.rocksdb);
  try {
    let bytes: BytesStore = inner;
    if (opts.sink !== undefined) bytes = new ChangeLoggingStore(bytes, opts.sink);
    if (opts.cacheMaxEntries > 0)
      bytes = new CachingStore(bytes, { maxEntries: opts.cacheMaxEntries, writeThrough: opts.writeThrough ?? false });
    const store = new MeteredKeyValueStore<K, V>(bytes, opts.keySerde, opts.valueSerde, opts.metrics);
    return { store, inner };
  } catch (err) {
    await inner.close().catch(() => undefined);
    throw err;
  }
}
