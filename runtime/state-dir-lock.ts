/**
 * One instance per state directory. Two instances on the same RocksDB stores would corrupt them
 * (or, with RocksDB's own lock, fail later and obscurely): the application's directory
 * `<stateDir>/<applicationId>` is locked at start and refused to a second instance with a message.
 *
 * The lock is `<stateDir>/<applicationId>/.lock` (proper-lockfile: an atomic mkdir whose mtime the
 * holder refreshes; a lock not refreshed for `staleMs` is taken over, so a crashed instance does
 * not block its successor for longer than that). The holder also writes its pid and host into the
 * lock: a lock whose holder is a process of this host that no longer exists (kill -9) is taken
 * over at once, so an instance restarted right after a crash is not refused.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import lockfile from 'proper-lockfile';
import { StreamsError } from './errors.js';

export class StateDirLockedError extends StreamsError {
  constructor(dir: string, cause: unknown) {
    super(
      'STATE_DIR_LOCKED',
      `the state directory ${dir} is in use by another instance (lock ${join(dir, '.lock')}); give each instance its own state directory (UM_STATE_DIR), or stop the other one`,
      { cause },
    );
  }
}

export interface StateDirLock {
  readonly dir: string;
  release(): Promise<void>;
}

/**
 * Locks the application's state directory, creating it if needed. Throws StateDirLockedError when
 * another live process holds it. `onLost` is called if the lock is taken away while held (its
 * directory deleted, or not refreshed in time because the event loop was blocked).
 */
export async function lockStateDir(
  stateDir: string,
  applicationId: string,
  opts: { staleMs?: number; onLost?: (e: Error) => void } = {},
): Promise<StateDirLock> {
  const dir = resolve(stateDir, applicationId);
  mkdirSync(dir, { recursive: true });
  const staleMs = opts.staleMs ?? 15_000;
  const lockPath = join(dir, '.lock');
  const take = () =>
    lockfile.lock(dir, {
      lockfilePath: lockPath,
      realpath: false,
      stale: staleMs,
      update: Math.max(1000, Math.floor(staleMs / 3)),
      retries: 0,
      onCompromised: (e) => opts.onLost?.(e),
    });
  let release: () => Promise<void>;
  try {
    release = await take();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw e;
    if (!holderIsGone(lockPath)) throw new StateDirLockedError(dir, e);
    rmSync(lockPath, { recursive: true, force: true });
    try {
      release = await take();
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === 'ELOCKED') throw new StateDirLockedError(dir, e2);
      throw e2;
    }
  }
  try {
    writeFileSync(`${lockPath}.owner`, JSON.stringify({ pid: process.pid, host: hostname() }));
  } catch {
    // without the owner file the lock still works; it only goes stale after staleMs
  }
  let released = false;
  return {
    dir,
    async release() {
      if (released) return;
      released = true;
      rmSync(`${lockPath}.owner`, { force: true });
      await release().catch(() => undefined);
    },
  };
}

/** The lock's holder was a process of this host that has exited. */
function holderIsGone(lockPath: string): boolean {
  let owner: { pid?: unknown; host?: unknown };
  try {
    owner = JSON.parse(readFileSync(`${lockPath}.owner`, 'utf8')) as { pid?: unknown; host?: unknown };
  } catch {
    return false;
  }
  if (owner.host !== hostname() || typeof owner.pid !== 'number' || owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
