import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError, type BytesStore } from '../../../../runtime/state/index.js';
import { b, collectHex, hx, text } from './helpers.js';

export interface ConformanceHarness {
  store: BytesStore;
  /** closes whatever store is current (tolerates an already closed one) and removes files */
  cleanup(): Promise<void>;
  /**
   * Closes the store and opens a new one over the same persisted data (for stores that persist).
   * Omitted for pure in-memory stacks.
   */
  reopen?(): Promise<BytesStore>;
}

export interface ConformanceOptions {
  /** approximateNumEntries is exact even after overwrites and deletes (true for memory stores) */
  exactCount: boolean;
}

/**
 * The behaviour every BytesStore layer and stack must share. Each test gets a fresh store.
 */
export function describeKeyValueStoreConformance(
  name: string,
  factory: () => Promise<ConformanceHarness>,
  options: ConformanceOptions,
): void {
  describe(`${name}: KeyValueStore conformance`, () => {
    let h: ConformanceHarness;
    let store: BytesStore;

    beforeEach(async () => {
      h = await factory();
      store = h.store;
    });
    afterEach(async () => {
      await h.cleanup();
    });

    it('get of a missing key is undefined', async () => {
      expect(await store.get(b('nope'))).toBeUndefined();
      expect(await store.getAll([])).toEqual([]);
    });

    it('put then get returns the value, including an empty value', async () => {
      await store.put(b('k1'), b('v1'));
      await store.put(b('empty'), Buffer.alloc(0));
      expect(text(await store.get(b('k1')))).toBe('v1');
      const empty = await store.get(b('empty'));
      expect(empty).toBeInstanceOf(Buffer);
      expect(empty!.length).toBe(0);
    });

    it('put overwrites', async () => {
      await store.put(b('k'), b('one'));
      await store.put(b('k'), b('two'));
      expect(text(await store.get(b('k')))).toBe('two');
      expect(await collectHex(store.all())).toEqual([[b('k').toString('hex'), 'two']]);
    });

    it('delete removes the key and leaves others; deleting a missing key is fine', async () => {
      await store.put(b('a'), b('1'));
      await store.put(b('b'), b('2'));
      await store.delete(b('a'));
      await store.delete(b('never-there'));
      expect(await store.get(b('a'))).toBeUndefined();
      expect(text(await store.get(b('b')))).toBe('2');
      expect((await collectHex(store.all())).map(([, v]) => v)).toEqual(['2']);
    });

    it('putAll applies puts and null deletes in order; the last entry for a key wins', async () => {
      await store.putAll([
        [b('a'), b('a0')],
        [b('b'), b('b0')],
      ]);
      await store.putAll([
        [b('c'), b('c1')],
        [b('a'), null],
        [b('b'), b('b1')],
        [b('d'), b('d1')],
        [b('d'), null],
        [b('e'), null],
        [b('f'), null],
        [b('f'), b('f1')],
      ]);
      expect((await store.getAll([b('a'), b('b'), b('c'), b('d'), b('e'), b('f')])).map(text)).toEqual([
        undefined,
        'b1',
        'c1',
        undefined,
        undefined,
        'f1',
      ]);
      await store.putAll([]);
      expect(text(await store.get(b('c')))).toBe('c1');
    });

    it('getAll keeps the order of the keys, with undefined for misses and repeated keys', async () => {
      await store.putAll([
        [b('x'), b('X')],
        [b('y'), b('Y')],
        [b('z'), b('Z')],
      ]);
      const keys = [b('z'), b('missing'), b('x'), b('x'), b('y'), b('also-missing')];
      expect((await store.getAll(keys)).map(text)).toEqual(['Z', undefined, 'X', 'X', 'Y', undefined]);
    });

    describe('range and all', () => {
      // deliberately not in byte order, and with bytes > 0x7f that a signed or UTF-16 compare would misplace
      const keys: Buffer[] = [
        hx(0xff, 0x00),
        b('b'),
        hx(0x80),
        hx(0x00),
        hx(0xc3, 0xa9), // 'é' in UTF-8
        hx(0xff),
        b('a'),
        hx(0x7f),
        hx(0xff, 0xff),
        hx(0x01),
      ];
      const sortedHex = ['00', '01', '61', '62', '7f', '80', 'c3a9', 'ff', 'ff00', 'ffff'];
      const valueOf = (hex: string) => `v-${hex}`;

      beforeEach(async () => {
        // some single puts, some in a batch
        for (const k of keys.slice(0, 4)) await store.put(k, b(valueOf(k.toString('hex'))));
        await store.putAll(keys.slice(4).map((k) => [k, b(valueOf(k.toString('hex')))] as const));
      });

      const expectKeys = async (it: AsyncIterable<readonly [Buffer, Buffer]>, hexKeys: string[]) => {
        expect(await collectHex(it)).toEqual(hexKeys.map((k) => [k, valueOf(k)]));
      };

      it('all() yields every entry in unsigned byte order of the key', async () => {
        await expectKeys(store.all(), sortedHex);
        await expectKeys(store.range(), sortedHex);
      });

      it('range(from, to) is [from, to)', async () => {
        await expectKeys(store.range(hx(0x7f), hx(0xff)), ['7f', '80', 'c3a9']);
        await expectKeys(store.range(hx(0xff), hx(0xff, 0x00)), ['ff']);
        await expectKeys(store.range(hx(0xff), hx(0xff, 0x01)), ['ff', 'ff00']);
      });

      it('range bounds need not be present keys', async () => {
        await expectKeys(store.range(hx(0x60), hx(0x7e)), ['61', '62']);
        await expectKeys(store.range(hx(0x02), hx(0x03)), []);
        await expectKeys(store.range(hx(0xc3), hx(0xc4)), ['c3a9']);
      });

      it('range with only one bound', async () => {
        await expectKeys(store.range(undefined, b('a')), ['00', '01']);
        await expectKeys(store.range(hx(0x80)), ['80', 'c3a9', 'ff', 'ff00', 'ffff']);
        await expectKeys(store.range(hx(0xff, 0xff, 0x00)), []);
      });

      it('empty and inverted ranges yield nothing', async () => {
        await expectKeys(store.range(b('a'), b('a')), []);
        await expectKeys(store.range(b('b'), b('a')), []);
        await expectKeys(store.range(hx(0xff), hx(0x00)), []);
      });

      it('range reflects deletes and overwrites', async () => {
        await store.delete(hx(0x80));
        await store.put(hx(0x7f), b('changed'));
        expect(await collectHex(store.range(hx(0x7f), hx(0xff)))).toEqual([
          ['7f', 'changed'],
          ['c3a9', valueOf('c3a9')],
        ]);
      });
    });

    it('all() of an empty store is empty', async () => {
      expect(await collectHex(store.all())).toEqual([]);
    });

    it('approximateNumEntries counts entries', async () => {
      expect(await store.approximateNumEntries()).toBe(0);
      for (let i = 0; i < 10; i++) await store.put(b(`key-${i}`), b(`v${i}`));
      await store.putAll(Array.from({ length: 15 }, (_, i) => [b(`batch-${i}`), b(`w${i}`)] as const));
      // distinct fresh keys: exact for every implementation (RocksDB counts memtable inserts)
      expect(await store.approximateNumEntries()).toBe(25);

      for (let i = 0; i < 5; i++) await store.put(b(`key-${i}`), b('again'));
      for (let i = 5; i < 10; i++) await store.delete(b(`key-${i}`));
      await store.flush();
      const n = await store.approximateNumEntries();
      if (options.exactCount) {
        expect(n).toBe(20);
      } else {
        // RocksDB's estimate counts overwrites/deletes loosely; it must still be in the right ballpark
        expect(n).toBeGreaterThanOrEqual(10);
        expect(n).toBeLessThanOrEqual(40);
      }
      expect((await collectHex(store.all())).length).toBe(20);
    });

    it('values persist after flush', async () => {
      await store.put(b('keep'), b('1'));
      await store.putAll([
        [b('also'), b('2')],
        [b('gone'), b('3')],
      ]);
      await store.delete(b('gone'));
      await store.put(b('keep'), b('1b'));
      await store.flush();
      if (h.reopen) store = await h.reopen();
      expect(text(await store.get(b('keep')))).toBe('1b');
      expect(text(await store.get(b('also')))).toBe('2');
      expect(await store.get(b('gone'))).toBeUndefined();
      expect(await collectHex(store.all())).toEqual([
        [b('also').toString('hex'), '2'],
        [b('keep').toString('hex'), '1b'],
      ]);
    });

    it('breaking out of a range early releases it; later operations work', async () => {
      const n = 20;
      const key = (i: number) => b(`k${String(i).padStart(3, '0')}`);
      await store.putAll(Array.from({ length: n }, (_, i) => [key(i), b(`v${i}`)] as const));
      for (let round = 0; round < 5; round++) {
        const seen: string[] = [];
        for await (const [k] of store.range(key(2))) {
          seen.push(k.toString());
          if (seen.length === 3) break;
        }
        expect(seen).toEqual(['k002', 'k003', 'k004']);
      }
      // an exception thrown out of the loop also releases the iterator
      await expect(
        (async () => {
          for await (const _ of store.all()) throw new Error('boom');
        })(),
      ).rejects.toThrow('boom');

      await store.put(key(n), b('new'));
      await store.delete(key(0));
      expect(text(await store.get(key(n)))).toBe('new');
      const all = await collectHex(store.all());
      expect(all.length).toBe(n);
      expect(all[0]![0]).toBe(key(1).toString('hex'));
    });

    it('deleting entries while iterating over them completes and empties the store', async () => {
      await store.putAll(Array.from({ length: 12 }, (_, i) => [b(`d${i}`), b(`v${i}`)] as const));
      let visited = 0;
      for await (const [k] of store.all()) {
        visited++;
        await store.delete(k);
      }
      expect(visited).toBe(12);
      expect(await collectHex(store.all())).toEqual([]);
      expect(await store.get(b('d3'))).toBeUndefined();
    });

    it('after close, operations fail with STORE_CLOSED and close is idempotent', async () => {
      await store.put(b('a'), b('1'));
      await store.close();
      await store.close();
      const err = await store.get(b('a')).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).code).toBe('STORE_CLOSED');
      await expect(store.put(b('a'), b('2'))).rejects.toBeInstanceOf(StoreError);
      await expect(collectHex(store.all())).rejects.toBeInstanceOf(StoreError);
    });
  });
}
