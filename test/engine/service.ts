/**
 * The service as a separate process, as an operator runs it: `node bin/um.mjs run` with its
 * settings in the environment. Output goes to a log file per instance (JSON lines); the HTTP URL is
 * taken from the "unwanted-mail started" line. Instances can be killed with SIGKILL (a crash) or
 * stopped with SIGTERM (a clean shutdown). Every process started here is killed when the test
 * process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

const live = new Set<ChildProcess>();
let hooked = false;
function track(c: ChildProcess): void {
  live.add(c);
  c.once('exit', () => live.delete(c));
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const x of live) x.kill('SIGKILL');
    });
  }
}

export interface InstanceOptions {
  name: string;
  /** settings shared by the service's instances (KAFKA_BROKERS, UM_APP_ID, ...) */
  env: Record<string, string>;
  stateDir: string;
  logDir: string;
}

export class ServiceInstance {
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly startedAt = Date.now();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null; at: number } | undefined;
  private urlValue: string | undefined;
  private readonly exited: Promise<void>;
  private readonly started: Promise<string>;

  constructor(readonly o: InstanceOptions) {
    mkdirSync(o.logDir, { recursive: true });
    mkdirSync(o.stateDir, { recursive: true });
    this.logFile = join(o.logDir, `${o.name}.log`);
    appendFileSync(this.logFile, `--- start ${new Date().toISOString()}\n`);
    this.child = spawn(process.execPath, [join(root, 'bin', 'um.mjs'), 'run'], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        TMPDIR: process.env.TMPDIR ?? '/tmp',
        ...o.env,
        UM_STATE_DIR: o.stateDir,
        UM_INSTANCE_ID: o.name,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(this.child);
    this.exited = new Promise((r) =>
      this.child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal, at: Date.now() };
        r();
      }),
    );
    this.started = new Promise((resolve, reject) => {
      let buf = '';
      this.child.stdout!.on('data', (d: Buffer) => {
        appendFileSync(this.logFile, d);
        if (this.urlValue) return;
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) {
          const m = /"url":"([^"]+)"[^\n]*unwanted-mail started|unwanted-mail started[^\n]*"url":"([^"]+)"/.exec(l);
          if (m) {
            this.urlValue = m[1] ?? m[2];
            resolve(this.urlValue!);
          }
        }
      });
      this.child.stderr!.on('data', (d: Buffer) => appendFileSync(this.logFile, d));
      void this.exited.then(() =>
        reject(
          new Error(`instance ${o.name} exited (${this.exitInfo?.code ?? this.exitInfo?.signal}); see ${this.logFile}`),
        ),
      );
    });
    this.started.catch(() => undefined);
  }

  get name(): string {
    return this.o.name;
  }

  get url(): string | undefined {
    return this.urlValue;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  get exit(): { code: number | null; signal: NodeJS.Signals | null; at: number } | undefined {
    return this.exitInfo;
  }

  /** Resolves with the HTTP URL once the service has started (consumer running). */
  async waitStarted(timeoutMs = 60_000): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.started,
        new Promise<never>((_, rej) => {
          timer = setTimeout(
            () => rej(new Error(`instance ${this.name} not started after ${timeoutMs} ms; see ${this.logFile}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A crash: SIGKILL, nothing flushed, nothing committed. */
  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** A clean shutdown (SIGTERM), SIGKILL after `graceMs`. Returns true if it exited by itself. */
  async stop(graceMs = 30_000): Promise<boolean> {
    if (!this.running) return true;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const clean = await Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (!clean) await this.kill9();
    return clean;
  }

  /** GET a path of the instance's HTTP server; undefined when it does not answer. */
  async get(path: string): Promise<{ status: number; body: string } | undefined> {
    if (!this.urlValue || !this.running) return undefined;
    try {
      const r = await fetch(`${this.urlValue}${path}`, { signal: AbortSignal.timeout(2000) });
      return { status: r.status, body: await r.text() };
    } catch {
      return undefined;
    }
  }
}

/** Kills (SIGKILL) every instance still running; for afterAll. */
export async function killAll(instances: Iterable<ServiceInstance>): Promise<void> {
  await Promise.all([...instances].map((i) => i.kill9()));
}
