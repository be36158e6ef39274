import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../runtime/errors.js';
import { CachingStore, InMemoryKeyValueStore, RocksDBStore, type BytesStore } from '../../../../runtime/state/index.js';
import { describeKeyValueStoreConformance } from './conformance.js';
import { RecordingStore, b, collectHex, tempDir, text } from './helpers.js';

for (const maxEntries of [1000, 3]) {
  describeKeyValueStoreConformance(
    `CachingStore(InMemory, maxEntries=${maxEntries})`,
    async () => {
      const inner = new InMemoryKeyValueStore('cache-mem');
      let store: BytesStore = new CachingStore(inner, { maxEntries });
      return {
        store,
        cleanup: () => store.close(),
        // a fresh, empty cache over the same inner store: only flushed data is there
        reopen: async () => (store = new CachingStore(inner, { maxEntries })),
      };
    },
    { exactCount: true },
  );
}

describeKeyValueStoreConformance(
  'CachingStore(RocksDB, maxEntries=3)',
  async () => {
    const tmp = await tempDir();
    const dir = join(tmp.dir, 'store');
    let store: BytesStore = new CachingStore(await RocksDBStore.open('cache-rocks', dir), { maxEntries: 3 });
    return {
      store,
      cleanup: async () => {
        await store.close();
        await tmp.remove();
      },
      reopen: async () => {
        await store.close();
        return (store = new CachingStore(await RocksDBStore.open('cache-rocks', dir), { maxEntries: 3 }));
      },
    };
  },
  { exactCount: false },
);

function setup(maxEntries: number) {
  const memory = new InMemoryKeyValueStore('inner');
  const inner = new RecordingStore(memory);
  const cache = new CachingStore(inner, { maxEntries });
  return { memory, inner, cache };
}

describe('CachingStore', () => {
  it('writes nothing to the inner store until flush, then the latest value per key in one putAll', async () => {
    const { inner, memory, cache } = setup(100);
    await cache.put(b('a'), b('a1'));
    await cache.put(b('b'), b('b1'));
    await cache.put(b('a'), b('a2'));
    await cache.delete(b('c'));
    await cache.putAll([
      [b('d'), b('d1')],
      [b('e'), null],
      [b('b'), b('b2')],
    ]);
    expect(text(await cache.get(b('a')))).toBe('a2');
    expect(await cache.get(b('e'))).toBeUndefined();
    expect(inner.writes()).toEqual([]);
    expect(inner.reads()).toEqual([]); // all served from the cache
    expect(await memory.get(b('a'))).toBeUndefined();
    expect(cache.dirtyEntries).toBe(5);

    await cache.flush();
    expect(inner.writes()).toEqual([
      {
        op: 'putAll',
        // last-write order: a was rewritten after b, b after d
        entries: [
          ['a', 'a2'],
          ['c', null],
          ['d', 'd1'],
          ['e', null],
          ['b', 'b2'],
        ],
      },
    ]);
    expect(inner.calls.at(-1)).toEqual({ op: 'flush' });
    expect(cache.dirtyEntries).toBe(0);
    expect(text(await memory.get(b('a')))).toBe('a2');

    // nothing dirty: a second flush writes nothing
    await cache.flush();
    expect(inner.writes().length).toBe(1);
  });

  it('a dirty delete hides the inner value until flushed, then removes it', async () => {
    const { inner, memory, cache } = setup(100);
    await memory.put(b('k'), b('old'));
    await cache.delete(b('k'));
    expect(await cache.get(b('k'))).toBeUndefined();
    expect(inner.reads()).toEqual([]);
    expect(text(await memory.get(b('k')))).toBe('old');
    await cache.flush();
    expect(await memory.get(b('k'))).toBeUndefined();
  });

  it('reads populate the cache; misses are cached too, until the key is written', async () => {
    const { inner, memory, cache } = setup(100);
    await memory.put(b('x'), b('X'));
    expect(text(await cache.get(b('x')))).toBe('X');
    expect(text(await cache.get(b('x')))).toBe('X');
    expect(await cache.get(b('missing'))).toBeUndefined();
    expect(await cache.get(b('missing'))).toBeUndefined();
    expect((await cache.getAll([b('missing')]))[0]).toBeUndefined();
    expect(inner.reads()).toEqual([
      { op: 'get', key: 'x' },
      { op: 'get', key: 'missing' },
    ]);
    expect(inner.writes()).toEqual([]); // a read never writes down
    await cache.put(b('missing'), b('now here'));
    expect(text(await cache.get(b('missing')))).toBe('now here');
    await cache.flush();
    expect(text(await memory.get(b('missing')))).toBe('now here');
  });

  it('getAll fetches every miss with one inner getAll', async () => {
    const { inner, memory, cache } = setup(100);
    await memory.putAll([
      [b('p'), b('P')],
      [b('q'), b('Q')],
      [b('r'), b('R')],
    ]);
    await cache.get(b('p'));
    await cache.put(b('s'), b('S'));
    const got = await cache.getAll([b('p'), b('q'), b('nope'), b('s'), b('r')]);
    expect(got.map(text)).toEqual(['P', 'Q', undefined, 'S', 'R']);
    expect(inner.reads()).toEqual([
      { op: 'get', key: 'p' },
      { op: 'getAll', keys: ['q', 'nope', 'r'] },
    ]);
    // everything is cached now
    await cache.getAll([b('q'), b('r')]);
    expect(inner.reads().length).toBe(2);
  });

  it('evicting a dirty entry flushes all dirty entries first, in one putAll', async () => {
    const { inner, memory, cache } = setup(3);
    await cache.put(b('a'), b('1'));
    await cache.put(b('b'), b('2'));
    await cache.put(b('c'), b('3'));
    expect(inner.writes()).toEqual([]);
    await cache.put(b('d'), b('4')); // over capacity; LRU 'a' is dirty
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
    expect(cache.cachedEntries).toBe(3);
    expect(cache.dirtyEntries).toBe(0);
    expect(text(await memory.get(b('d')))).toBe('4');
    // 'a' was evicted: reading it goes to the inner store
    expect(text(await cache.get(b('a')))).toBe('1');
    expect(inner.reads()).toEqual([{ op: 'get', key: 'a' }]);
    // evicting clean entries writes nothing
    expect(inner.writes().length).toBe(1);
  });

  it('evicts the least recently used entry, where reads count as use', async () => {
    const { inner, cache } = setup(2);
    await cache.put(b('a'), b('1'));
    await cache.put(b('b'), b('2'));
    await cache.flush();
    await cache.get(b('a')); // b is now least recently used
    await cache.put(b('c'), b('3')); // evicts clean b without writing
    expect(inner.writes().length).toBe(1);
    const before = inner.reads().length;
    await cache.get(b('a'));
    expect(inner.reads().length).toBe(before);
    expect(text(await cache.get(b('b')))).toBe('2');
    expect(inner.reads().length).toBe(before + 1);
  });

  it('a read of an entry in the older half moves it to the recent end; eviction takes the oldest first', async () => {
    const { inner, cache } = setup(10);
    for (let i = 0; i < 10; i++) await cache.put(b(`k${i}`), b(`${i}`));
    await cache.flush();
    // k8 and k9 are the newest: reading them again and again leaves the order as it is
    for (let n = 0; n < 5; n++) {
      await cache.get(b('k9'));
      await cache.get(b('k8'));
    }
    await cache.get(b('k0')); // the oldest: moves to the recent end
    await cache.get(b('k1'));
    await cache.put(b('k10'), b('10'));
    await cache.put(b('k11'), b('11')); // evicts k2 and k3, the least recently used
    const before = inner.reads().length;
    for (const k of ['k0', 'k1', 'k4', 'k8', 'k9', 'k10', 'k11']) await cache.get(b(k));
    expect(inner.reads().length).toBe(before);
    expect(text(await cache.get(b('k2')))).toBe('2');
    expect(inner.reads().length).toBe(before + 1);
  });

  it('a value read from the inner store never overwrites a write made while the read was in flight', async () => {
    const memory = new InMemoryKeyValueStore('inner');
    await memory.put(b('k'), b('old'));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: BytesStore = Object.assign(Object.create(memory) as BytesStore, {
      get: async (key: Buffer) => {
        const v = await memory.get(key);
        await gate;
        return v;
      },
    });
    const cache = new CachingStore(slow, { maxEntries: 10 });
    const pending = cache.get(b('k'));
    await cache.put(b('k'), b('new'));
    release();
    expect(text(await pending)).toBe('old');
    expect(text(await cache.get(b('k')))).toBe('new');
    await cache.flush();
    expect(text(await memory.get(b('k')))).toBe('new');
  });

  it('a failed flush keeps the entries dirty so the next flush writes them', async () => {
    const memory = new InMemoryKeyValueStore('inner');
    let fail = true;
    const flaky: BytesStore = Object.assign(Object.create(memory) as BytesStore, {
      putAll: async (entries: readonly (readonly [Buffer, Buffer | null])[]) => {
        if (fail) throw new Error('disk full');
        return memory.putAll(entries);
      },
    });
    const cache = new CachingStore(flaky, { maxEntries: 10 });
    await cache.put(b('a'), b('1'));
    await expect(cache.flush()).rejects.toThrow('disk full');
    expect(cache.dirtyEntries).toBe(1);
    fail = false;
    await cache.flush();
    expect(cache.dirtyEntries).toBe(0);
    expect(text(await memory.get(b('a')))).toBe('1');
  });

  it('range and approximateNumEntries see unflushed writes (by flushing first)', async () => {
    const { inner, cache } = setup(100);
    await cache.put(b('b'), b('2'));
    await cache.put(b('a'), b('1'));
    expect(await cache.approximateNumEntries()).toBe(2);
    await cache.put(b('c'), b('3'));
    expect(await collectHex(cache.range(b('a'), b('c')))).toEqual([
      [b('a').toString('hex'), '1'],
      [b('b').toString('hex'), '2'],
    ]);
    expect(inner.writes().length).toBe(2);
  });

  it('close discards unflushed writes', async () => {
    const { inner, cache } = setup(100);
    await cache.put(b('a'), b('1'));
    await cache.close();
    expect(inner.writes()).toEqual([]);
    expect(inner.calls.at(-1)).toEqual({ op: 'close' });
  });

  it('rejects a maxEntries below 1', () => {
    expect(() => new CachingStore(new InMemoryKeyValueStore('x'), { maxEntries: 0 })).toThrow(ConfigError);
    expect(() => new CachingStore(new InMemoryKeyValueStore('x'), { maxEntries: 1.5 })).toThrow(ConfigError);
  });
});
