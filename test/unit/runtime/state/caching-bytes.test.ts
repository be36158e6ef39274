import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../runtime/errors.js';
import {
  CACHE_ENTRY_OVERHEAD_BYTES,
  CacheBudget,
  CachingStore,
  InMemoryKeyValueStore,
  StoreMemory,
  cacheEntryBytes,
  storeCacheSettings,
  type BytesStore,
} from '../../../../runtime/state/index.js';
import { describeKeyValueStoreConformance } from './conformance.js';
import { RecordingStore, b, text } from './helpers.js';

/** bytes of an entry with a 1-byte key and a 1-byte value */
const E = cacheEntryBytes(b('k'), b('v'));

describeKeyValueStoreConformance(
  'CachingStore(InMemory, maxBytes = 3 small entries)',
  async () => {
    const inner = new InMemoryKeyValueStore('cache-bytes');
    let store: BytesStore = new CachingStore(inner, { maxBytes: 3 * (CACHE_ENTRY_OVERHEAD_BYTES + 16) });
    return {
      store,
      cleanup: () => store.close(),
      reopen: async () => (store = new CachingStore(inner, { maxBytes: 3 * (CACHE_ENTRY_OVERHEAD_BYTES + 16) })),
    };
  },
  { exactCount: true },
);

function setup(opts: ConstructorParameters<typeof CachingStore>[1]) {
  const memory = new InMemoryKeyValueStore('inner');
  const inner = new RecordingStore(memory);
  const cache = new CachingStore(inner, opts);
  return { memory, inner, cache };
}

describe('CachingStore bounded in bytes', () => {
  it('counts an entry as key + value + overhead', () => {
    expect(cacheEntryBytes(b('abc'), b('12345'))).toBe(8 + CACHE_ENTRY_OVERHEAD_BYTES);
    expect(cacheEntryBytes(b('abc'), null)).toBe(3 + CACHE_ENTRY_OVERHEAD_BYTES);
    expect(cacheEntryBytes(b('abc'), b('12345'), 5.5)).toBe(Math.ceil(3 + 27.5) + CACHE_ENTRY_OVERHEAD_BYTES);
  });

  it('evicts least recently used entries once over maxBytes, whatever their number', async () => {
    const { inner, memory, cache } = setup({ maxBytes: 3 * E });
    for (const k of ['a', 'b', 'c', 'd']) await memory.put(b(k), b(k.toUpperCase()));
    await cache.get(b('a'));
    await cache.get(b('b'));
    await cache.get(b('c'));
    expect(cache.cachedEntries).toBe(3);
    expect(cache.cachedBytes).toBe(3 * E);
    await cache.get(b('a')); // b is now least recently used
    await cache.get(b('d')); // over by one entry: b goes
    expect(cache.cachedEntries).toBe(3);
    expect(cache.cachedBytes).toBeLessThanOrEqual(3 * E);
    const reads = inner.reads().length;
    await cache.get(b('a'));
    await cache.get(b('c'));
    expect(inner.reads().length).toBe(reads);
    expect(text(await cache.get(b('b')))).toBe('B');
    expect(inner.reads().length).toBe(reads + 1);
  });

  it('a large value evicts as many small entries as its bytes need', async () => {
    const { cache } = setup({ maxBytes: 4 * E });
    for (const k of ['a', 'b', 'c', 'd']) await cache.put(b(k), b('v'));
    expect(cache.cachedEntries).toBe(4);
    await cache.flush();
    await cache.put(b('big'), Buffer.alloc(2 * E)); // needs room for 2 entries + its own overhead
    expect(cache.cachedBytes).toBeLessThanOrEqual(4 * E);
    expect(cache.cachedEntries).toBe(1);
    expect((await cache.get(b('big')))?.length).toBe(2 * E);
  });

  it('rewriting a key counts its new size, not both', async () => {
    const { cache } = setup({ maxBytes: 100 * E });
    await cache.put(b('k'), Buffer.alloc(1000));
    await cache.put(b('k'), b('v'));
    expect(cache.cachedBytes).toBe(E);
    await cache.delete(b('k'));
    expect(cache.cachedBytes).toBe(cacheEntryBytes(b('k'), null));
  });

  it('flushes every dirty entry, in one putAll, before evicting a dirty one for bytes', async () => {
    const { inner, memory, cache } = setup({ maxBytes: 3 * E });
    await cache.put(b('a'), b('1'));
    await cache.put(b('b'), b('2'));
    await cache.put(b('c'), b('3'));
    expect(inner.writes()).toEqual([]);
    await cache.put(b('d'), b('4')); // over by one entry; LRU 'a' is dirty
    expect(inner.writes()).toEqual([
      {
        op: 'putAll',
        entries: [
          ['a', '1'],
          ['b', '2'],
          ['c', '3'],
          ['d', '4'],
        ],
      },
    ]);
    expect(cache.dirtyEntries).toBe(0);
    expect(cache.cachedEntries).toBe(3);
    expect(text(await memory.get(b('a')))).toBe('1');
    // evicting clean entries for bytes writes nothing more
    await cache.get(b('e'));
    await cache.get(b('f'));
    expect(inner.writes().length).toBe(1);
  });

  it('keeps the entry bound too when both are given', async () => {
    const { cache } = setup({ maxBytes: 1000 * E, maxEntries: 2 });
    for (const k of ['a', 'b', 'c']) await cache.put(b(k), b('v'));
    expect(cache.cachedEntries).toBe(2);
  });

  it('counts values × valueBytesFactor', async () => {
    const { cache } = setup({ maxBytes: 10_000, valueBytesFactor: 4 });
    await cache.put(b('k'), Buffer.alloc(100));
    expect(cache.cachedBytes).toBe(1 + 400 + CACHE_ENTRY_OVERHEAD_BYTES);
  });

  it('caches sharing a budget keep within equal shares; one that joins makes the others shrink', async () => {
    const budget = new CacheBudget(4 * E);
    const one = setup({ budget }).cache;
    for (const k of ['a', 'b', 'c', 'd']) await one.put(b(k), b('v'));
    expect(one.cachedEntries).toBe(4);
    const two = setup({ budget }).cache;
    expect(budget.caches).toBe(2);
    expect(budget.share()).toBe(2 * E);
    await two.put(b('x'), b('v'));
    await one.get(b('d')); // a hit changes nothing
    expect(one.cachedEntries).toBe(4);
    await one.put(b('e'), b('v')); // its next insertion brings it within its share
    expect(one.cachedEntries).toBe(2);
    expect(budget.usedBytes()).toBeLessThanOrEqual(4 * E);
    await two.close();
    expect(budget.caches).toBe(1);
    expect(budget.share()).toBe(4 * E);
  });

  it('needs a bound and refuses bad ones', () => {
    const inner = new InMemoryKeyValueStore('x');
    expect(() => new CachingStore(inner, {})).toThrow(ConfigError);
    expect(() => new CachingStore(inner, { maxBytes: -1 })).toThrow(ConfigError);
    expect(() => new CachingStore(inner, { maxBytes: 10, valueBytesFactor: 0.5 })).toThrow(ConfigError);
    expect(() => new CacheBudget(Number.NaN)).toThrow(ConfigError);
  });
});

describe('StoreMemory', () => {
  it('splits the RocksDB budgets over stores per task × partitions', () => {
    const m = new StoreMemory({ rocksdbCacheBytes: 24 * 1024 ** 2, rocksdbWriteBufferBytes: 96 * 1024 ** 2 }, () => 6);
    // 4 stores × 6 tasks = 24 RocksDB instances; 2 memtables each
    expect(m.rocksdbOptions(4)).toEqual({ cacheSize: 1024 ** 2, writeBufferSize: 2 * 1024 ** 2 });
    // never below the smallest memtable
    expect(new StoreMemory({ rocksdbWriteBufferBytes: 1024 ** 2 }, () => 64).rocksdbOptions(4).writeBufferSize).toBe(
      256 * 1024,
    );
    // unset: the binding's defaults
    expect(new StoreMemory({}, () => 6).rocksdbOptions(4)).toEqual({});
  });

  it('gives a store one cache budget per instance; specs without bytes keep entry bounds', () => {
    const m = new StoreMemory({}, () => 6);
    const a = storeCacheSettings({ name: 'p', cacheMaxBytes: 1000, cacheValueBytesFactor: 2 }, 10, m);
    const b2 = storeCacheSettings({ name: 'p', cacheMaxBytes: 1000 }, 10, m);
    expect(a.cacheBudget).toBe(b2.cacheBudget);
    expect(a).toMatchObject({ cacheMaxEntries: 0, cacheValueBytesFactor: 2 });
    expect(storeCacheSettings({ name: 'p', cacheMaxBytes: 1000, cacheMaxEntries: 5 }, 10, m).cacheMaxEntries).toBe(5);
    expect(storeCacheSettings({ name: 'p', cacheMaxBytes: 0 }, 10, m)).toEqual({ cacheMaxEntries: 0 });
    expect(storeCacheSettings({ name: 'q' }, 10, m)).toEqual({ cacheMaxEntries: 10 });
    expect(storeCacheSettings({ name: 'q', cacheMaxEntries: 3 }, 10, m)).toEqual({ cacheMaxEntries: 3 });
    // without an instance (test driver): a budget of its own per task
    const own = storeCacheSettings({ name: 'p', cacheMaxBytes: 1000 }, 10, undefined);
    expect(own.cacheBudget?.maxBytes).toBe(1000);
  });
});
