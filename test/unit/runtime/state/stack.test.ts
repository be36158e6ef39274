import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Histogram, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../runtime/errors.js';
import {
  CachingStore,
  ChangeLoggingStore,
  InMemoryKeyValueStore,
  MeteredKeyValueStore,
  RocksDBStore,
  StoreError,
  TransactionalStore,
  buildStoreStack,
  type BytesStore,
  type ChangelogSink,
  type StoreSerde,
  type StoreMetrics,
} from '../../../../runtime/state/index.js';
import { describeKeyValueStoreConformance } from './conformance.js';
import { b, collect, tempDir, text } from './helpers.js';

const bytesSerde: StoreSerde<Buffer> = { serialize: (v) => v, deserialize: (v) => v };
const stringSerde: StoreSerde<string> = { serialize: (s) => Buffer.from(s), deserialize: (x) => x.toString() };

class ArraySink implements ChangelogSink {
  readonly records: [string, string | null][] = [];
  log(key: Buffer, value: Buffer | null): void {
    this.records.push([key.toString(), value === null ? null : value.toString()]);
  }
}

function newMetrics(): StoreMetrics {
  return {
    opLatency: new Histogram<'store' | 'op'>({
      name: 'stack_store_op_seconds',
      help: 'x',
      labelNames: ['store', 'op'],
      registers: [new Registry()],
    }),
  };
}

describeKeyValueStoreConformance(
  'buildStoreStack(RocksDB, cache=3, changelog, metrics)',
  async () => {
    const tmp = await tempDir();
    const dir = join(tmp.dir, 'store');
    let txn: TransactionalStore | undefined;
    const build = async () => {
      const stack = await buildStoreStack({
        name: 'stack',
        dir,
        cacheMaxEntries: 3,
        sink: new ArraySink(),
        keySerde: bytesSerde,
        valueSerde: bytesSerde,
        metrics: newMetrics(),
      });
      txn = stack.txn;
      return stack.store;
    };
    let store: BytesStore = await build();
    return {
      store,
      cleanup: async () => {
        await store.close();
        await tmp.remove();
      },
      // what a commit does after the flush: the sealed writes go to RocksDB
      reopen: async () => {
        txn!.seal();
        await txn!.commitSealed();
        await store.close();
        return (store = await build());
      },
    };
  },
  { exactCount: false },
);

describeKeyValueStoreConformance(
  'buildStoreStack(memory, no cache, changelog)',
  async () => {
    const { store } = await buildStoreStack({
      name: 'stack-mem',
      cacheMaxEntries: 0,
      sink: new ArraySink(),
      keySerde: bytesSerde,
      valueSerde: bytesSerde,
    });
    return { store, cleanup: () => store.close() };
  },
  { exactCount: true },
);

describe('buildStoreStack', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('stacks metered(caching(changelogging(transactional(rocksdb))))', async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.remove);
    const { store, inner } = await buildStoreStack({
      name: 'layers',
      dir: join(tmp.dir, 's'),
      cacheMaxEntries: 10,
      sink: new ArraySink(),
      keySerde: stringSerde,
      valueSerde: stringSerde,
    });
    cleanups.push(() => store.close());
    expect(store).toBeInstanceOf(MeteredKeyValueStore);
    const caching = (store as MeteredKeyValueStore<string, string>).inner;
    expect(caching).toBeInstanceOf(CachingStore);
    const logging = (caching as CachingStore).inner;
    expect(logging).toBeInstanceOf(ChangeLoggingStore);
    expect((logging as ChangeLoggingStore).inner).toBe(inner);
    expect(inner).toBeInstanceOf(TransactionalStore);
    expect((inner as TransactionalStore).inner).toBeInstanceOf(RocksDBStore);
  });

  it('leaves out the cache and changelog when not asked for', async () => {
    const { store, inner } = await buildStoreStack({
      name: 'bare',
      cacheMaxEntries: 0,
      keySerde: stringSerde,
      valueSerde: stringSerde,
    });
    expect(inner).toBeInstanceOf(InMemoryKeyValueStore);
    expect((store as MeteredKeyValueStore<string, string>).inner).toBe(inner);
  });

  it('the changelog sees deduplicated writes only when the cache flushes', async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.remove);
    const sink = new ArraySink();
    const { store, inner } = await buildStoreStack({
      name: 'dedupe',
      dir: join(tmp.dir, 's'),
      cacheMaxEntries: 100,
      sink,
      keySerde: stringSerde,
      valueSerde: stringSerde,
    });
    cleanups.push(() => store.close());
    await store.put('sender-1', 'a');
    await store.put('sender-1', 'b');
    await store.put('sender-2', 'x');
    await store.delete('sender-2');
    expect(await store.get('sender-1')).toBe('b');
    expect(sink.records).toEqual([]);
    expect(await inner.get(b('sender-1'))).toBeUndefined();

    await store.flush();
    expect(sink.records).toEqual([
      ['sender-1', 'b'],
      ['sender-2', null],
    ]);
    expect(text(await inner.get(b('sender-1')))).toBe('b');
  });

  it('without a cache every write is logged at once', async () => {
    const sink = new ArraySink();
    const { store } = await buildStoreStack({
      name: 'nocache',
      cacheMaxEntries: 0,
      sink,
      keySerde: stringSerde,
      valueSerde: stringSerde,
    });
    await store.put('k', '1');
    await store.put('k', '2');
    expect(sink.records).toEqual([
      ['k', '1'],
      ['k', '2'],
    ]);
  });

  it('restoring into inner is visible through the store and is not re-logged', async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.remove);
    const sink = new ArraySink();
    const { store, inner } = await buildStoreStack({
      name: 'restore',
      dir: join(tmp.dir, 's'),
      cacheMaxEntries: 10,
      sink,
      keySerde: stringSerde,
      valueSerde: stringSerde,
    });
    cleanups.push(() => store.close());
    await inner.restoreBatch([
      { key: b('u1'), value: b('v1') },
      { key: b('u2'), value: b('v2') },
      { key: b('u1'), value: null },
    ]);
    expect(await store.get('u1')).toBeUndefined();
    expect(await store.get('u2')).toBe('v2');
    expect(await collect(store.all())).toEqual([['u2', 'v2']]);
    expect(sink.records).toEqual([]);
  });

  it('closing the store closes every layer down to RocksDB', async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.remove);
    const { store, inner } = await buildStoreStack({
      name: 'close',
      dir: join(tmp.dir, 's'),
      cacheMaxEntries: 10,
      keySerde: stringSerde,
      valueSerde: stringSerde,
    });
    await store.close();
    expect(((inner as TransactionalStore).inner as RocksDBStore).isOpen).toBe(false);
  });

  it('validates cacheMaxEntries and surfaces open failures as StoreError', async () => {
    await expect(
      buildStoreStack({ name: 'x', cacheMaxEntries: -1, keySerde: stringSerde, valueSerde: stringSerde }),
    ).rejects.toBeInstanceOf(ConfigError);
    const tmp = await tempDir();
    cleanups.push(tmp.remove);
    const dir = join(tmp.dir, 's');
    await RocksDBStore.open('x', dir).then((s) => s.close());
    await writeFile(join(dir, 'CURRENT'), 'junk\n');
    const err = await buildStoreStack({
      name: 'x',
      dir,
      cacheMaxEntries: 10,
      keySerde: stringSerde,
      valueSerde: stringSerde,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('STORE_CORRUPT');
  });
});
