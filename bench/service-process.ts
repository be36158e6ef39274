/**
 * The service as its own process, the way users run it: `node bin/um.mjs run` with its settings in
 * the environment. The bench reads it from the outside only:
 * - progress and service-side figures from its Prometheus endpoint (`/metrics`, `/readyz`);
 * - CPU time and memory from /proc/<pid>/stat and /proc/<pid>/status (Linux).
 */
import { quantilesFromBuckets } from '../runtime/metrics.js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const UM_BIN = join(ROOT, 'bin', 'um.mjs');
/** the launcher users run (`um`, `npm start`, the image): the service with its memory defaults */
export const UM_LAUNCHER = join(ROOT, 'bin', 'um');

// ---------------------------------------------------------------------------------------------
// the Kafka Streams comparator (bench/kstreams, `--system kstreams`)

/** the system under test: our service (`um`) or the Kafka Streams version of the topology */
export type BenchSystem = 'um' | 'kstreams';
export const KSTREAMS_DIR = join(ROOT, 'bench', 'kstreams');
export const KSTREAMS_JAR = join(KSTREAMS_DIR, 'target', 'um-kstreams.jar');

/** Builds bench/kstreams/target/um-kstreams.jar if it is missing (mvn offline first, then online). */
export function ensureKstreamsJar(log: (msg: string) => void = () => undefined): string {
  if (existsSync(KSTREAMS_JAR)) return KSTREAMS_JAR;
  for (const args of [
    ['-q', '-o', 'package'],
    ['-q', 'package'],
  ]) {
    log(`building ${KSTREAMS_JAR}: mvn ${args.join(' ')} (in bench/kstreams)`);
    const r = spawnSync('mvn', args, { cwd: KSTREAMS_DIR, stdio: ['ignore', 'inherit', 'inherit'] });
    if (r.status === 0 && existsSync(KSTREAMS_JAR)) return KSTREAMS_JAR;
  }
  throw new Error(`could not build ${KSTREAMS_JAR} (see bench/kstreams/README.md)`);
}

/** the command line the bench runs for a system (for the output and results) */
export function systemCommand(system: BenchSystem, direct = false, javaArgs: readonly string[] = []): string {
  if (system === 'kstreams') return ['java', ...javaArgs, '-jar', 'bench/kstreams/target/um-kstreams.jar'].join(' ');
  return direct ? 'node bin/um.mjs run' : 'bin/um run';
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format (the subset prom-client writes: no timestamps, no exemplars)

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/g;

function parseValue(v: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  return Number(v);
}

/** Parses the Prometheus text exposition format into samples (comments and blank lines skipped). */
export function parsePrometheus(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line.slice(0, 120)}`);
    const labels: Record<string, string> = {};
    if (m[2])
      for (const l of m[2].matchAll(LABEL))
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    out.push({ name: m[1]!, labels, value: parseValue(m[3]!) });
  }
  return out;
}

/** Sum of every series of `name` (optionally only those whose labels pass `filter`); 0 if none. */
export function sumOf(samples: readonly PromSample[], name: string, filter?: (l: Record<string, string>) => boolean) {
  let s = 0;
  for (const x of samples) if (x.name === name && (!filter || filter(x.labels))) s += x.value;
  return s;
}

/**
 * Quantiles of a histogram (`<name>_bucket` series, all label sets summed), interpolated linearly
 * within a bucket as Prometheus' histogram_quantile does. In the histogram's unit; undefined when empty.
 */
export function histogramQuantiles(
  samples: readonly PromSample[],
  name: string,
  qs: readonly number[],
): (number | undefined)[] {
  const buckets = new Map<number, number>();
  for (const x of samples) {
    if (x.name !== `${name}_bucket` || x.labels.le === undefined) continue;
    const le = parseValue(x.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + x.value);
  }
  return quantilesFromBuckets(buckets, qs);
}

// ---------------------------------------------------------------------------------------------
// /proc

export interface ProcStat {
  /** user + system CPU time, in clock ticks */
  cpuTicks: number;
  /** resident set size in pages (field 24) */
  rssPages: number;
}

/** Parses /proc/<pid>/stat. The command name (field 2) may hold spaces and parentheses. */
export function parseProcStat(text: string): ProcStat {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error('not a /proc/<pid>/stat line');
  // fields from 3 (state) on; utime = 14, stime = 15, rss = 24 (1-based, man proc)
  const f = text
    .slice(close + 2)
    .trim()
    .split(/\s+/);
  const at = (n: number) => Number(f[n - 3]);
  return { cpuTicks: at(14) + at(15), rssPages: at(24) };
}

/** VmRSS and VmHWM (peak RSS) of /proc/<pid>/status, in KiB. */
export function parseProcStatus(text: string): { vmRssKiB: number; vmHwmKiB: number } {
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(text)?.[1] ?? NaN);
  return { vmRssKiB: kib('VmRSS'), vmHwmKiB: kib('VmHWM') };
}

/** Clock ticks per second for /proc CPU times (USER_HZ; 100 on every Linux this runs on). */
export const CLOCK_TICKS_PER_SEC = 100;

/** Samples a process's CPU time and RSS from /proc every `everyMs`; keeps the last readable values. */
export class ProcSampler {
  peakRssMiB = 0;
  rssMiB = 0;
  cpuSeconds = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly pid: number) {}
  start(everyMs = 200): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
    return this;
  }
  sample(): void {
    try {
      const st = parseProcStat(readFileSync(`/proc/${this.pid}/stat`, 'utf8'));
      const status = parseProcStatus(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      this.cpuSeconds = st.cpuTicks / CLOCK_TICKS_PER_SEC;
      if (Number.isFinite(status.vmRssKiB)) this.rssMiB = status.vmRssKiB / 1024;
      // VmHWM is the kernel's own peak: no sample is missed between two reads
      const peak = Number.isFinite(status.vmHwmKiB) ? status.vmHwmKiB / 1024 : this.rssMiB;
      if (peak > this.peakRssMiB) this.peakRssMiB = peak;
    } catch {
      // the process has exited: keep the last values
    }
  }
  /** the kernel's VmHWM now (it can be reset through /proc/<pid>/clear_refs), in MiB; NaN once exited */
  hwmNowMiB(): number {
    try {
      return parseProcStatus(readFileSync(`/proc/${this.pid}/status`, 'utf8')).vmHwmKiB / 1024;
    } catch {
      return NaN;
    }
  }
  stop(): void {
    this.sample();
    if (this.timer) clearInterval(this.timer);
  }
}

// ---------------------------------------------------------------------------------------------
// the process

export interface ServiceProcess {
  pid: number;
  /** performance.now() just before spawn */
  spawnedAt: number;
  url: string;
  proc: ProcSampler;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** current samples of /metrics, or undefined while the HTTP server is not up yet */
  metrics(): Promise<PromSample[] | undefined>;
  /** true when /readyz answers 200 */
  ready(): Promise<boolean>;
  /** SIGTERM (clean shutdown: commit, state kept), SIGKILL after `graceMs`; resolves on exit */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `bin/um run` (the launcher, with the service's memory defaults; `direct`: `node
 * bin/um.mjs run` without them) with `env` (the process environment plus the service's settings)
 * and its output on this process's stderr. `nodeArgs` are node options (e.g. --cpu-prof).
 */
export function spawnService(opts: {
  env: Record<string, string>;
  httpPort: number;
  nodeArgs?: string[];
  direct?: boolean;
  /** `kstreams`: run the Kafka Streams comparator (java -jar, `javaArgs` as JVM options) instead */
  system?: BenchSystem;
  javaArgs?: string[];
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
}): ServiceProcess {
  const spawnedAt = performance.now();
  const child: ChildProcess =
    opts.system === 'kstreams'
      ? spawn('java', [...(opts.javaArgs ?? []), '-jar', KSTREAMS_JAR], {
          cwd: ROOT,
          env: opts.env,
          stdio: ['ignore', 'inherit', 'inherit'],
        })
      : opts.direct
        ? spawn(process.execPath, [...(opts.nodeArgs ?? []), UM_BIN, 'run'], {
            cwd: ROOT,
            env: opts.env,
            stdio: ['ignore', 'inherit', 'inherit'],
          })
        : spawn(UM_LAUNCHER, ['run'], {
            cwd: ROOT,
            env: {
              ...opts.env,
              UM_NODE_ARGS: [opts.env.UM_NODE_ARGS ?? '', ...(opts.nodeArgs ?? [])].join(' ').trim(),
            },
            stdio: ['ignore', 'inherit', 'inherit'],
          });
  if (child.pid === undefined) throw new Error(`could not start ${UM_BIN}`);
  const pid = child.pid;
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      opts.onExit?.(code, signal);
      resolve({ code, signal });
    });
    child.once('error', () => {
      done = true;
      resolve({ code: null, signal: null });
    });
  });
  const url = `http://127.0.0.1:${opts.httpPort}`;
  const proc = new ProcSampler(pid).start();
  return {
    pid,
    spawnedAt,
    url,
    proc,
    exited,
    async metrics() {
      try {
        const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) });
        if (!r.ok) return undefined;
        return parsePrometheus(await r.text());
      } catch {
        return undefined;
      }
    },
    async ready() {
      try {
        const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(10_000) });
        await r.arrayBuffer();
        return r.status === 200;
      } catch {
        return false;
      }
    },
    async stop(graceMs = 30_000) {
      proc.stop();
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!done) child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
