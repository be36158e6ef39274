import { describe, expect, it } from 'vitest';
import {
  ChangeLoggingStore,
  InMemoryKeyValueStore,
  type BytesStore,
  type ChangelogSink,
} from '../../../../runtime/state/index.js';
import { describeKeyValueStoreConformance } from './conformance.js';
import { b } from './helpers.js';

class ArraySink implements ChangelogSink {
  readonly records: [string, string | null][] = [];
  log(key: Buffer, value: Buffer | null): void {
    this.records.push([key.toString(), value === null ? null : value.toString()]);
  }
}

describeKeyValueStoreConformance(
  'ChangeLoggingStore(InMemory)',
  async () => {
    const inner = new InMemoryKeyValueStore('cl');
    let store: BytesStore = new ChangeLoggingStore(inner, new ArraySink());
    return {
      store,
      cleanup: () => store.close(),
      // the memory store outlives its wrapper: drop the old wrapper, build a new one over it
      reopen: async () => (store = new ChangeLoggingStore(inner, new ArraySink())),
    };
  },
  { exactCount: true },
);

describe('ChangeLoggingStore', () => {
  it('logs exactly the writes, in order, with null tombstones', async () => {
    const sink = new ArraySink();
    const store = new ChangeLoggingStore(new InMemoryKeyValueStore('cl'), sink);
    await store.put(b('a'), b('1'));
    await store.get(b('a'));
    await store.getAll([b('a'), b('b')]);
    await store.putAll([
      [b('b'), b('2')],
      [b('a'), null],
      [b('c'), b('3')],
    ]);
    for await (const _ of store.all()) {
      // reads are never logged
    }
    await store.delete(b('c'));
    await store.delete(b('never-there'));
    await store.putAll([]);
    await store.flush();
    expect(sink.records).toEqual([
      ['a', '1'],
      ['b', '2'],
      ['a', null],
      ['c', '3'],
      ['c', null],
      ['never-there', null],
    ]);
    expect((await store.get(b('b')))?.toString()).toBe('2');
  });

  it('logs nothing when the inner write fails', async () => {
    const sink = new ArraySink();
    const inner = new InMemoryKeyValueStore('cl');
    const store = new ChangeLoggingStore(inner, sink);
    await store.put(b('ok'), b('1'));
    await inner.close();
    await expect(store.put(b('k'), b('v'))).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await expect(store.putAll([[b('k'), null]])).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    await expect(store.delete(b('k'))).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    expect(sink.records).toEqual([['ok', '1']]);
  });
});
