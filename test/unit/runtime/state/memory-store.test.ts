import { describe, expect, it } from 'vitest';
import { InMemoryKeyValueStore, StoreError } from '../../../../runtime/state/index.js';
import { describeKeyValueStoreConformance } from './conformance.js';
import { b, collectHex, text } from './helpers.js';

describeKeyValueStoreConformance(
  'InMemoryKeyValueStore',
  async () => {
    const store = new InMemoryKeyValueStore('mem');
    return { store, cleanup: () => store.close() };
  },
  { exactCount: true },
);

describe('InMemoryKeyValueStore', () => {
  it('copies values on write, so a caller reusing its buffer does not change the store', async () => {
    const store = new InMemoryKeyValueStore('mem');
    const value = b('original');
    await store.put(b('k'), value);
    value.write('XXXXXXXX');
    expect(text(await store.get(b('k')))).toBe('original');
  });

  it('restoreBatch applies puts and tombstones in order', async () => {
    const store = new InMemoryKeyValueStore('mem');
    await store.put(b('old'), b('x'));
    await store.restoreBatch([
      { key: b('a'), value: b('1') },
      { key: b('old'), value: null },
      { key: b('a'), value: b('2') },
    ]);
    expect(await collectHex(store.all())).toEqual([[b('a').toString('hex'), '2']]);
  });

  it('rejects an empty key like RocksDB does', async () => {
    const store = new InMemoryKeyValueStore('mem');
    await expect(store.put(Buffer.alloc(0), b('v'))).rejects.toMatchObject({ code: 'STORE_INVALID_KEY' });
    // a bad entry in a batch leaves the store untouched
    await expect(
      store.putAll([
        [b('fine'), b('1')],
        [Buffer.alloc(0), b('2')],
      ]),
    ).rejects.toBeInstanceOf(StoreError);
    expect(await store.get(b('fine'))).toBeUndefined();
  });

  it('keeps byte order across many random keys', async () => {
    const store = new InMemoryKeyValueStore('mem');
    const keys = Array.from({ length: 300 }, (_, i) => Buffer.from([(i * 97) % 256, (i * 31) % 256, i % 7]));
    await store.putAll(keys.map((k) => [k, b('v')] as const));
    const got = (await collectHex(store.all())).map(([k]) => k);
    const expected = [...new Set(keys.map((k) => k.toString('hex')))].sort((x, y) =>
      Buffer.compare(Buffer.from(x, 'hex'), Buffer.from(y, 'hex')),
    );
    expect(got).toEqual(expected);
  });
});
