import { mkdirSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { lockStateDir, StateDirLockedError } from '../../../runtime/state-dir-lock.js';

const root = mkdtempSync(join(tmpdir(), 'um-lock-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('state directory lock', () => {
  it('refuses a second holder with a message naming the directory and UM_STATE_DIR; free again after release', async () => {
    const first = await lockStateDir(root, 'app-a');
    let err: unknown;
    try {
      await lockStateDir(root, 'app-a');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateDirLockedError);
    expect(err).toMatchObject({ code: 'STATE_DIR_LOCKED' });
    expect((err as Error).message).toContain(join(root, 'app-a'));
    expect((err as Error).message).toContain('UM_STATE_DIR');
    // another application id in the same root is another directory
    const other = await lockStateDir(root, 'app-b');
    await other.release();
    await first.release();
    const again = await lockStateDir(root, 'app-a');
    await again.release();
  });

  it('takes over the lock of a crashed instance once it is stale', async () => {
    const dir = join(root, 'app-c');
    mkdirSync(join(dir, '.lock'), { recursive: true });
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(dir, '.lock'), old, old);
    const lock = await lockStateDir(root, 'app-c', { staleMs: 5000 });
    await lock.release();
    // a fresh lock left by a live process is not taken over
    mkdirSync(join(dir, '.lock'));
    await expect(lockStateDir(root, 'app-c', { staleMs: 5000 })).rejects.toBeInstanceOf(StateDirLockedError);
  });
});
