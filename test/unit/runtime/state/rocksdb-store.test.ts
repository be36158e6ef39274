import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RocksDBStore, StoreError, type BytesStore } from '../../../../runtime/state/index.js';
import { describeKeyValueStoreConformance } from './conformance.js';
import { b, collectHex, tempDir, text } from './helpers.js';

describeKeyValueStoreConformance(
  'RocksDBStore',
  async () => {
    const tmp = await tempDir();
    const dir = join(tmp.dir, 'store');
    let store: BytesStore = await RocksDBStore.open('rocks', dir);
    return {
      store,
      cleanup: async () => {
        await store.close();
        await tmp.remove();
      },
      reopen: async () => {
        await store.close();
        return (store = await RocksDBStore.open('rocks', dir));
      },
    };
  },
  { exactCount: false },
);

async function openError(promise: Promise<unknown>): Promise<StoreError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StoreError);
  return err as StoreError;
}

describe('RocksDBStore', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  async function scratch(): Promise<string> {
    const tmp = await tempDir();
    cleanups.push(tmp.remove);
    return join(tmp.dir, 'nested', 'store');
  }

  it('creates missing parent directories and keeps data across close/reopen', async () => {
    const dir = await scratch();
    const first = await RocksDBStore.open('s', dir);
    await first.putAll([
      [b('a'), b('1')],
      [b('b'), b('2')],
    ]);
    await first.delete(b('b'));
    await first.close();
    expect(first.isOpen).toBe(false);
    expect((await stat(dir)).isDirectory()).toBe(true);

    const second = await RocksDBStore.open('s', dir);
    cleanups.push(() => second.close());
    expect(text(await second.get(b('a')))).toBe('1');
    expect(await second.get(b('b'))).toBeUndefined();
    expect(await collectHex(second.all())).toEqual([[b('a').toString('hex'), '1']]);
  });

  it('destroy wipes the directory; reopening gives an empty store', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    await store.put(b('a'), b('1'));
    await store.close();
    await RocksDBStore.destroy(dir);
    await expect(stat(dir)).rejects.toMatchObject({ code: 'ENOENT' });
    await RocksDBStore.destroy(dir); // idempotent

    const again = await RocksDBStore.open('s', dir);
    cleanups.push(() => again.close());
    expect(await again.get(b('a'))).toBeUndefined();
    expect(await collectHex(again.all())).toEqual([]);
  });

  it('a garbage CURRENT file gives STORE_CORRUPT, and destroy + open recovers', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    await store.put(b('a'), b('1'));
    await store.close();
    await writeFile(join(dir, 'CURRENT'), 'this is not a manifest name\n');

    const err = await openError(RocksDBStore.open('s', dir));
    expect(err.code).toBe('STORE_CORRUPT');
    expect(err.retriable).toBe(false);
    expect(err.message).toContain(dir);

    await RocksDBStore.destroy(dir);
    const fresh = await RocksDBStore.open('s', dir);
    cleanups.push(() => fresh.close());
    expect(await fresh.get(b('a'))).toBeUndefined();
  });

  it('a garbage MANIFEST gives STORE_CORRUPT', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    await store.put(b('a'), b('1'));
    await store.close();
    const manifests = (await readdir(dir)).filter((f) => f.startsWith('MANIFEST-'));
    expect(manifests.length).toBeGreaterThan(0);
    for (const m of manifests) await writeFile(join(dir, m), Buffer.alloc(256, 0xab));

    const err = await openError(RocksDBStore.open('s', dir));
    expect(err.code).toBe('STORE_CORRUPT');
  });

  it('a CURRENT naming a missing MANIFEST is reported as corrupt', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    await store.close();
    await writeFile(join(dir, 'CURRENT'), 'MANIFEST-999999\n');
    const err = await openError(RocksDBStore.open('s', dir));
    expect(err.code).toBe('STORE_CORRUPT');
  });

  it('opening a directory already open elsewhere is a retriable STORE_OPEN_FAILED', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    cleanups.push(() => store.close());
    const err = await openError(RocksDBStore.open('s', dir));
    expect(err.code).toBe('STORE_OPEN_FAILED');
    expect(err.retriable).toBe(true);
  });

  it('a path that cannot be a directory gives STORE_OPEN_FAILED', async () => {
    const dir = await scratch();
    const file = join(dir, '..', 'plain-file');
    await RocksDBStore.open('s', dir).then((s) => s.close());
    await writeFile(file, 'x');
    const err = await openError(RocksDBStore.open('s', join(file, 'store')));
    expect(err.code).toBe('STORE_OPEN_FAILED');
  });

  it('releases the native iterator on completion, break and throw', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    cleanups.push(() => store.close());
    await store.putAll(Array.from({ length: 10 }, (_, i) => [b(`k${i}`), b('v')] as const));
    expect((await collectHex(store.all())).length).toBe(10);
    expect(store.openIteratorCount).toBe(0);
    for await (const _ of store.range(b('k3'))) {
      expect(store.openIteratorCount).toBe(1);
      break;
    }
    expect(store.openIteratorCount).toBe(0);
    await expect(
      (async () => {
        for await (const _ of store.all()) throw new Error('boom');
      })(),
    ).rejects.toThrow('boom');
    expect(store.openIteratorCount).toBe(0);
  });

  it('close does not hang on an iterator that was started and abandoned', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    await store.putAll(Array.from({ length: 50 }, (_, i) => [b(`k${i}`), b('v')] as const));
    const it = store.all()[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done).toBe(false);
    await store.close(); // must end the open native iterator itself
    // the abandoned generator now reports the closed store instead of crashing
    await expect(it.next()).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await it.return?.(undefined);
  });

  it('iterators read a snapshot taken when iteration starts', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    cleanups.push(() => store.close());
    await store.putAll([
      [b('a'), b('1')],
      [b('c'), b('3')],
    ]);
    const seen: string[] = [];
    for await (const [k] of store.all()) {
      seen.push(k.toString());
      if (k.toString() === 'a') await store.put(b('b'), b('2'));
    }
    expect(seen).toEqual(['a', 'c']);
    expect(text(await store.get(b('b')))).toBe('2');
  });

  it('restoreBatch applies puts and tombstones in one batch', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    cleanups.push(() => store.close());
    await store.put(b('old'), b('x'));
    await store.restoreBatch([
      { key: b('a'), value: b('1') },
      { key: b('old'), value: null },
      { key: b('a'), value: b('2') },
      { key: b('z'), value: Buffer.alloc(0) },
    ]);
    await store.restoreBatch([]);
    expect(await collectHex(store.all())).toEqual([
      [b('a').toString('hex'), '2'],
      [b('z').toString('hex'), ''],
    ]);
  });

  it('rejects an empty key with STORE_INVALID_KEY and an empty upper bound yields nothing', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir);
    cleanups.push(() => store.close());
    await store.put(b('a'), b('1'));
    await expect(store.put(Buffer.alloc(0), b('v'))).rejects.toMatchObject({ code: 'STORE_INVALID_KEY' });
    await expect(store.get(Buffer.alloc(0))).rejects.toMatchObject({ code: 'STORE_INVALID_KEY' });
    // the binding treats a zero-length bound as "unbounded"; the store must not
    expect(await collectHex(store.range(undefined, Buffer.alloc(0)))).toEqual([]);
    expect(await collectHex(store.range(Buffer.alloc(0)))).toEqual([[b('a').toString('hex'), '1']]);
  });

  it('sync writes work and the values read back', async () => {
    const dir = await scratch();
    const store = await RocksDBStore.open('s', dir, { sync: true, cacheSize: 1 << 20 });
    cleanups.push(() => store.close());
    await store.put(b('a'), b('1'));
    await store.putAll([[b('b'), b('2')]]);
    expect((await store.getAll([b('a'), b('b')])).map(text)).toEqual(['1', '2']);
  });
});
