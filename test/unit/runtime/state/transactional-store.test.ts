import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RocksDBStore, TransactionalStore } from '../../../../runtime/state/index.js';
import { describeKeyValueStoreConformance } from './conformance.js';
import { b, collectHex, tempDir, text } from './helpers.js';

async function openTxn(dir: string): Promise<TransactionalStore> {
  return new TransactionalStore(await RocksDBStore.open('txn', dir));
}

describeKeyValueStoreConformance(
  'TransactionalStore(RocksDB)',
  async () => {
    const tmp = await tempDir();
    const dir = join(tmp.dir, 'store');
    let store = await openTxn(dir);
    return {
      store,
      cleanup: async () => {
        await store.close();
        await tmp.remove();
      },
      reopen: async () => {
        store.seal();
        await store.commitSealed();
        await store.close();
        return (store = await openTxn(dir));
      },
    };
  },
  { exactCount: false },
);

describe('TransactionalStore: writes reach RocksDB only with their commit', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function fresh() {
    const tmp = await tempDir();
    cleanups.push(tmp.remove);
    const dir = join(tmp.dir, 's');
    let store = await openTxn(dir);
    cleanups.push(() => store.close());
    return {
      get store() {
        return store;
      },
      /** closes without committing (as a crash would leave it) and opens again */
      async crashAndReopen() {
        await store.close();
        store = await openTxn(dir);
        return store;
      },
    };
  }

  it('uncommitted writes are read back but are not on disk after a crash', async () => {
    const s = await fresh();
    await s.store.put(b('a'), b('1'));
    await s.store.delete(b('gone'));
    expect(text(await s.store.get(b('a')))).toBe('1');
    expect(s.store.uncommittedEntries).toBe(2);
    const after = await s.crashAndReopen();
    expect(await after.get(b('a'))).toBeUndefined();
  });

  it('a sealed commit goes down atomically; writes after the seal stay for the next commit', async () => {
    const s = await fresh();
    await s.store.putAll([
      [b('a'), b('1')],
      [b('b'), b('2')],
    ]);
    s.store.seal();
    await s.store.put(b('c'), b('3')); // the next interval
    await s.store.delete(b('a')); // the next interval deletes a committed-to-be key
    // reads see the newest write whichever buffer holds it
    expect(await s.store.get(b('a'))).toBeUndefined();
    expect(await s.store.getAll([b('a'), b('b'), b('c')])).toEqual([undefined, b('2'), b('3')]);
    expect(await s.store.commitSealed()).toBe(2);
    const after = await s.crashAndReopen();
    expect(await collectHex(after.all())).toEqual([
      [b('a').toString('hex'), '1'],
      [b('b').toString('hex'), '2'],
    ]);
  });

  it('abort drops both buffers (a dirty close)', async () => {
    const s = await fresh();
    await s.store.put(b('a'), b('1'));
    s.store.seal();
    await s.store.commitSealed();
    await s.store.put(b('a'), b('2'));
    s.store.seal();
    await s.store.put(b('b'), b('3'));
    s.store.abort();
    expect(text(await s.store.get(b('a')))).toBe('1');
    expect(await s.store.get(b('b'))).toBeUndefined();
  });

  it('a failed commit is merged into the next seal', async () => {
    const s = await fresh();
    await s.store.put(b('a'), b('1'));
    s.store.seal(); // commit 1 never completes
    await s.store.put(b('b'), b('2'));
    s.store.seal(); // commit 2 carries both
    await s.store.commitSealed();
    const after = await s.crashAndReopen();
    expect(await after.getAll([b('a'), b('b')])).toEqual([b('1'), b('2')]);
  });

  it('range and all lay the buffers over RocksDB in key order, without deleted keys', async () => {
    const s = await fresh();
    await s.store.putAll([
      [b('a'), b('1')],
      [b('c'), b('3')],
      [b('e'), b('5')],
    ]);
    s.store.seal();
    await s.store.commitSealed();
    await s.store.put(b('b'), b('2'));
    await s.store.delete(b('c'));
    await s.store.put(b('e'), b('5b'));
    await s.store.put(b('f'), b('6'));
    expect(await collectHex(s.store.all())).toEqual([
      [b('a').toString('hex'), '1'],
      [b('b').toString('hex'), '2'],
      [b('e').toString('hex'), '5b'],
      [b('f').toString('hex'), '6'],
    ]);
    expect(await collectHex(s.store.range(b('b'), b('f')))).toEqual([
      [b('b').toString('hex'), '2'],
      [b('e').toString('hex'), '5b'],
    ]);
  });
});
