import { describe, expect, it } from 'vitest';
import { CachingStore } from '../../../../runtime/state/caching-store.js';
import { ChangeLoggingStore } from '../../../../runtime/state/changelogging-store.js';
import { InMemoryKeyValueStore } from '../../../../runtime/state/memory-store.js';

const b = (s: string) => Buffer.from(s);

describe('CachingStore write-through', () => {
  it('logs every write at once and still serves reads from the cache', async () => {
    const logged: [string, string | null][] = [];
    const inner = new InMemoryKeyValueStore('s');
    const logging = new ChangeLoggingStore(inner, {
      log: (k, v) => logged.push([k.toString(), v ? v.toString() : null]),
    });
    const cache = new CachingStore(logging, { maxEntries: 2, writeThrough: true });
    await cache.put(b('a'), b('1'));
    await cache.put(b('a'), b('2'));
    await cache.delete(b('a'));
    await cache.putAll([
      [b('b'), b('x')],
      [b('c'), null],
    ]);
    // nothing collapsed, nothing waits for a flush
    expect(logged).toEqual([
      ['a', '1'],
      ['a', '2'],
      ['a', null],
      ['b', 'x'],
      ['c', null],
    ]);
    expect(cache.dirtyEntries).toBe(0);
    expect((await inner.get(b('b')))?.toString()).toBe('x');
    expect(await cache.get(b('a'))).toBeUndefined();
    expect((await cache.get(b('b')))?.toString()).toBe('x');
    expect(cache.cachedEntries).toBeLessThanOrEqual(2);
  });
});
