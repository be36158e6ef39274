/**
 * bin/um, the launcher: the memory defaults reach node, node is the launched process itself (no
 * wrapper that a kill -9 would leave behind), and a bad UM_MAX_HEAP_MB is refused naming it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'um');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** the environment without settings that would change what the launcher adds */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of ['NODE_OPTIONS', 'MALLOC_ARENA_MAX', 'UM_MAX_HEAP_MB', 'UM_NODE_ARGS', 'UM_CONFIG_FILE'])
    if (!(k in extra)) delete env[k];
  return env;
}

describe('bin/um', () => {
  it('refuses a UM_MAX_HEAP_MB that is not a number of MiB, naming the setting, exit 2', () => {
    for (const v of ['abc', '12x', '32']) {
      const r = spawnSync(LAUNCHER, ['describe'], { env: cleanEnv({ UM_MAX_HEAP_MB: v }), encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/^UM_MAX_HEAP_MB: /);
    }
  });

  it('execs node with the heap cap, the heap growth and MALLOC_ARENA_MAX (same pid: no wrapper)', async () => {
    // a service that cannot start (nothing listens on port 1): alive long enough to be looked at
    const child = spawn(LAUNCHER, ['run'], {
      env: cleanEnv({
        UM_MAX_HEAP_MB: '300',
        KAFKA_BROKERS: '127.0.0.1:1',
        SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1',
      }),
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    let cmdline = '';
    let environ = '';
    for (let i = 0; i < 200 && !cmdline.includes('um.mjs'); i++) {
      try {
        cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').join(' ');
        environ = readFileSync(`/proc/${child.pid}/environ`, 'utf8');
      } catch {
        break; // exited already
      }
      await sleep(10);
    }
    child.kill('SIGKILL');
    await exited;
    // the process the launcher started is node running um.mjs, with the launcher's flags
    expect(cmdline).toMatch(/node.* --heap-growing-percent=300 .*bin\/um\.mjs run/);
    const vars = environ.split('\0');
    expect(vars).toContain('NODE_OPTIONS=--max-old-space-size=300');
    expect(vars).toContain('MALLOC_ARENA_MAX=2');
  });

  it('leaves a --max-old-space-size in NODE_OPTIONS and a set MALLOC_ARENA_MAX alone', () => {
    // node's -p (in UM_NODE_ARGS, before the script) prints what node sees instead of running um
    const r = spawnSync(LAUNCHER, ['describe'], {
      env: cleanEnv({
        NODE_OPTIONS: '--max-old-space-size=1000',
        MALLOC_ARENA_MAX: '8',
        UM_NODE_ARGS: "-p process.env.NODE_OPTIONS+'|'+process.env.MALLOC_ARENA_MAX+'|'+process.execArgv[0]",
      }),
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('--max-old-space-size=1000|8|--heap-growing-percent=300');
    expect(r.status).toBe(0);
  });
});
