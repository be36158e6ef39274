import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
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

  it('takes over at once the lock of a process of this host that has exited (kill -9), not of a live one', async () => {
    const dir = join(root, 'app-d');
    mkdirSync(join(dir, '.lock'), { recursive: true });
    // a pid that does not exist: a finished child's
    const { spawnSync } = await import('node:child_process');
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    writeFileSync(join(dir, '.lock.owner'), JSON.stringify({ pid: gone, host: hostname() }));
    const lock = await lockStateDir(root, 'app-d', { staleMs: 60_000 });
    await lock.release();
    // the parent of this test is alive: its lock stays
    mkdirSync(join(dir, '.lock'));
    writeFileSync(join(dir, '.lock.owner'), JSON.stringify({ pid: process.ppid, host: hostname() }));
    await expect(lockStateDir(root, 'app-d', { staleMs: 60_000 })).rejects.toBeInstanceOf(StateDirLockedError);
  });
});
