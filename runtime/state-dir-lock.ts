/**
 * One instance per state directory. Two instances on the same RocksDB stores would corrupt them
 * (or, with RocksDB's own lock, fail later and obscurely): the application's directory
 * `<stateDir>/<applicationId>` is locked at start and refused to a second instance with a message.
 *
 * The lock is `<stateDir>/<applicationId>/.lock` (proper-lockfile: an atomic mkdir whose mtime the
 * holder refreshes; a lock not refreshed for `staleMs` is taken over, so a crashed instance does
 * not block its successor for longer than that).
 */
import { mkdirSync } from 'node:fs';
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
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dir, {
      lockfilePath: join(dir, '.lock'),
      realpath: false,
      stale: staleMs,
      update: Math.max(1000, Math.floor(staleMs / 3)),
      retries: 0,
      onCompromised: (e) => opts.onLost?.(e),
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOCKED') throw new StateDirLockedError(dir, e);
    throw e;
  }
  let released = false;
  return {
    dir,
    async release() {
      if (released) return;
      released = true;
      await release().catch(() => undefined);
    },
  };
}
