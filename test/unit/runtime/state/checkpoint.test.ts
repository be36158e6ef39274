import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError } from '../../../../runtime/errors.js';
import { parseTpKey, readCheckpoint, tpKey, writeCheckpoint } from '../../../../runtime/state/index.js';
import { tempDir } from './helpers.js';

describe('checkpoint files', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  beforeEach(async () => {
    tmp = await tempDir('um-ckpt-');
  });
  afterEach(async () => {
    await tmp.remove();
  });

  it('round-trips offsets in the versioned JSON format', async () => {
    const file = join(tmp.dir, 'task-0_1', '.checkpoint');
    const offsets = new Map([
      [tpKey('app-prefs-changelog', 3), 42],
      [tpKey('app-counts-changelog', 0), 0],
      [tpKey('a.b-c_d', 12), 9_007_199_254_740_991],
    ]);
    await writeCheckpoint(file, offsets);
    expect(await readCheckpoint(file)).toEqual(offsets);
    expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({
      version: 1,
      offsets: { 'a.b-c_d:12': 9_007_199_254_740_991, 'app-counts-changelog:0': 0, 'app-prefs-changelog:3': 42 },
    });

    // overwrite replaces, and leaves no temp files behind
    await writeCheckpoint(file, new Map([['t:1', 7]]));
    expect(await readCheckpoint(file)).toEqual(new Map([['t:1', 7]]));
    expect(await readdir(join(tmp.dir, 'task-0_1'))).toEqual(['.checkpoint']);
  });

  it('an empty map round-trips', async () => {
    const file = join(tmp.dir, 'ckpt');
    await writeCheckpoint(file, new Map());
    expect(await readCheckpoint(file)).toEqual(new Map());
  });

  it('an absent file reads as undefined', async () => {
    expect(await readCheckpoint(join(tmp.dir, 'nope', '.checkpoint'))).toBeUndefined();
  });

  it.each([
    ['garbage', 'garbage\u0000\u0001'],
    ['truncated JSON', '{"version":1,"offsets":{"t:0":4'],
    ['wrong version', '{"version":2,"offsets":{}}'],
    ['missing offsets', '{"version":1}'],
    ['array', '[1,2]'],
    ['negative offset', '{"version":1,"offsets":{"t:0":-1}}'],
    ['fractional offset', '{"version":1,"offsets":{"t:0":1.5}}'],
    ['string offset', '{"version":1,"offsets":{"t:0":"5"}}'],
    ['bad key', '{"version":1,"offsets":{"no-partition":5}}'],
  ])('%s gives CHECKPOINT_CORRUPT', async (_label, content) => {
    const file = join(tmp.dir, 'ckpt');
    await writeFile(file, content);
    const err = await readCheckpoint(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).code).toBe('CHECKPOINT_CORRUPT');
  });

  it('a directory where the file should be gives CHECKPOINT_CORRUPT', async () => {
    const err = await readCheckpoint(tmp.dir).catch((e: unknown) => e);
    expect((err as StoreError).code).toBe('CHECKPOINT_CORRUPT');
  });

  it('refuses to write invalid offsets or keys', async () => {
    const file = join(tmp.dir, 'ckpt');
    await expect(writeCheckpoint(file, new Map([['t:0', -5]]))).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID' });
    await expect(writeCheckpoint(file, new Map([['t', 5]]))).rejects.toMatchObject({ code: 'CHECKPOINT_INVALID' });
    expect(await readCheckpoint(file)).toBeUndefined();
  });

  it('tpKey / parseTpKey', () => {
    expect(tpKey('orders', 4)).toBe('orders:4');
    expect(parseTpKey('orders:4')).toEqual({ topic: 'orders', partition: 4 });
    expect(parseTpKey(tpKey('a.b-c', 0))).toEqual({ topic: 'a.b-c', partition: 0 });
    for (const bad of ['orders', ':1', 'orders:', 'orders:-1', 'orders:1x', 'orders:1.5']) {
      expect(() => parseTpKey(bad)).toThrow(StoreError);
    }
    expect(() => tpKey('orders', -1)).toThrow(StoreError);
    expect(() => tpKey('', 0)).toThrow(StoreError);
  });
});
