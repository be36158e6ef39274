/**
 * The benchmarks: `npx tsx bench/run.ts <throughput|latency|restore|memory> [options]` (`--help`).
 *
 * Each scenario runs against a real broker and schema registry: a local stack started here
 * (scripts/kafka/local.ts) unless KAFKA_BROKERS and SCHEMA_REGISTRY_URL are set, with a unique
 * application id and topic prefix. The service runs as its own process, as users run it
 * (`node bin/um.mjs run`, configured through the environment); the bench reads it from the outside
 * only: /metrics and /readyz over HTTP, CPU and RSS from /proc/<pid>. It prints a summary and appends
 * one JSON line (schema `RESULTS_SCHEMA_VERSION`) to bench/results.jsonl. Everything it starts is
 * stopped and every temporary directory removed, also on Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { arch, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Consumer, Kafka } from 'kafkajs';
import pino, { type Logger } from 'pino';
import { ensureTopics, kafkaFor } from '../cli/app.js';
import { loadConfig, type AppConfig } from '../cli/config.js';
import type { Decision } from '../processors/logic/model.js';
import { createRegistryClient } from '../runtime/serdes/registry.js';
import { freePort, startLocalStack, type LocalStack } from '../scripts/kafka/local.js';
import { mailSerdes, type MailSerdes } from '../topology/serdes.js';
import { topicNames, type Topics } from '../topology/topics.js';
import { producerSettings, TrafficProducer, Workload } from '../demo/traffic.js';
import { probeConsumerConfig, probeRunConfig } from './probe.js';
import { dumpOutputs } from './kstreams/outputs.js';
import {
  ensureKstreamsJar,
  histogramQuantiles as histogramQuantilesOf,
  spawnService,
  systemCommand,
  type BenchSystem,
  sumOf,
  type PromSample,
  type ServiceProcess,
} from './service-process.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

/**
 * Version of the layout of a bench/results.jsonl line. Lines without `schemaVersion` are version 1
 * (service in the bench's process, probe with autoCommit on, throughput counted from RUNNING).
 * 2: service as its own process (`node bin/um.mjs run`), CPU/RSS from /proc, throughput from process
 * start and after the first decision, probe with autoCommit off plus a probe baseline, producer
 * settings and the load average before each measurement.
 */
const RESULTS_SCHEMA_VERSION = 2;

const here = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(here, 'results.jsonl');

const HELP = `Usage: npx tsx bench/run.ts <scenario> [options]

The service runs as its own process (node bin/um.mjs run), configured through the environment as
users run it; the bench reads /metrics and /readyz, and CPU and RSS from /proc/<pid>.

Scenarios
  throughput   pre-produce --events mail events (+ ~5% interactions) and seeded preferences, then start
               the service process and time it until every event is processed; events/s from
               process start and after the first decision, CPU and RSS of the service process
  latency      1. probe baseline: produce --rate mail events/s for --baseline-seconds straight to a
                  topic the probe reads (no service): the probe's own delay
               2. start the service, then produce --rate mail events/s for --seconds; per decision:
                  end-to-end dwell (probe receive - receivedAt) and service dwell (Decision.dwellMs)
  restore      produce --records preference records to user-preferences, start the service process
               with an empty state directory, time it until /readyz is 200 (records/s, RSS)
  memory       one preference record for each of --mailboxes mailboxes (default 1,000,000; 3-8
               entries), start the service with an empty state directory: restore time and RSS
               during restore; then --events mail events (default 1,000,000, a scaled day, see
               BENCHMARKS.md) over those mailboxes: peak RSS and events/s during the traffic

Options
  --events N            throughput: mail events to pre-produce (default 200000); memory: mail events
                        produced once the service is ready (default 1000000)
  --seed-fraction F     share of mailboxes with seeded preferences (default 0.5)
  --mailboxes N         mailboxes (default 20000; memory: 1000000)
  --entries-min N       memory: fewest entries per preference record (default 3)
  --entries-max N       memory: most entries per preference record (default 8)
  --tenants N           tenants (default 20)
  --rate N              latency: mail events per second (default 1000)
  --seconds N           latency: how long to produce through the service (default 60)
  --baseline-seconds N  latency: how long to measure the probe alone (default 15; 0 = skip)
  --records N           restore: preference records (default 1000000)
  --distinct N          restore: distinct mailbox keys (default records/2: every key twice)
  --partitions N        partitions of the co-partitioned topics (default 6)
  --seed N              workload seed (default 42)
  --timeout S           give up a measurement after S seconds (default 900)
  --profile             run the service with node --cpu-prof and print its top functions
  --log-level L         service log level (default warn; its output goes to stderr)
  --node-args "A B"     node flags for the service process (e.g. "--max-old-space-size=384")
  --direct              run the service as node bin/um.mjs run, without the launcher's memory
                        defaults (bin/um: heap cap UM_MAX_HEAP_MB, MALLOC_ARENA_MAX=2)
  --max-load X          before each measurement, wait until the 1-min load average is below X
                        (at most 5 minutes; the load printed is the one measured at the start)
  --system S            um (default): our service; kstreams: the Kafka Streams version of the same
                        topology (bench/kstreams, java -jar; built with mvn if the jar is missing),
                        same environment, input and counting (a comparator; see bench/kstreams/README.md)
  --java-args "A B"     --system kstreams: JVM options (default: none, the JVM's default heap)
  --dump-outputs FILE   throughput: after the run, read the output topics and write every decision
                        (by eventId) and the preference records to FILE (JSON), to compare two
                        systems: npx tsx bench/kstreams/compare.ts A.json B.json
  --no-record           do not append to bench/results.jsonl
  -h, --help            this text

Quick runs (a few minutes in all): --events 50000 | --seconds 20 --baseline-seconds 10 | --records 200000
| memory --mailboxes 200000 --events 200000

Environment
  KAFKA_BROKERS, SCHEMA_REGISTRY_URL   use an existing cluster and registry instead of a local stack
                                       (the bench's topics, prefixed bench-<id>-, are deleted afterwards)
  UM_COMMIT_INTERVAL_MS, UM_PREFERENCE_CACHE_ENTRIES, UM_PROCESSING_GUARANTEE, UM_DEFAULT_MODE,
  KAFKA_SASL_*, KAFKA_SSL*, SCHEMA_REGISTRY_USERNAME/PASSWORD
                                       reach the service process as usual (its whole environment is
                                       this one plus the bench's UM_APP_ID, UM_TOPIC_PREFIX, UM_STATE_DIR,
                                       UM_INSTANCE_ID, UM_PARTITIONS, UM_HTTP_HOST/PORT, UM_LOG_LEVEL)
`;

type Scenario = 'throughput' | 'latency' | 'restore' | 'memory';

interface Options {
  scenario: Scenario;
  events: number;
  seedFraction: number;
  mailboxes: number;
  tenants: number;
  rate: number;
  seconds: number;
  baselineSeconds: number;
  records: number;
  distinct: number;
  entriesMin: number;
  entriesMax: number;
  partitions: number;
  seed: number;
  timeoutS: number;
  profile: boolean;
  logLevel: string;
  nodeArgs: string[];
  direct: boolean;
  system: BenchSystem;
  javaArgs: string[];
  dumpOutputs: string | undefined;
  record: boolean;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      events: { type: 'string' },
      'seed-fraction': { type: 'string' },
      mailboxes: { type: 'string' },
      tenants: { type: 'string' },
      rate: { type: 'string' },
      seconds: { type: 'string' },
      'baseline-seconds': { type: 'string' },
      records: { type: 'string' },
      distinct: { type: 'string' },
      'entries-min': { type: 'string' },
      'entries-max': { type: 'string' },
      partitions: { type: 'string' },
      seed: { type: 'string' },
      timeout: { type: 'string' },
      profile: { type: 'boolean' },
      'log-level': { type: 'string' },
      'node-args': { type: 'string' },
      direct: { type: 'boolean' },
      'max-load': { type: 'string' },
      'no-record': { type: 'boolean' },
      system: { type: 'string' },
      'java-args': { type: 'string' },
      'dump-outputs': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(HELP);
    return undefined;
  }
  const scenario = positionals[0];
  if (scenario !== 'throughput' && scenario !== 'latency' && scenario !== 'restore' && scenario !== 'memory')
    throw new Error(
      `unknown scenario ${JSON.stringify(scenario)} (throughput, latency, restore or memory; see --help)`,
    );
  const num = (name: string, v: string | undefined, def: number, min: number, int = true): number => {
    if (v === undefined) return def;
    const n = Number(v.replace(/_/g, ''));
    if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n)))
      throw new Error(`--${name} must be ${int ? 'an integer' : 'a number'} >= ${min}, got ${v}`);
    return n;
  };
  const records = num('records', values.records, 1_000_000, 1);
  const seedFraction = num('seed-fraction', values['seed-fraction'], 0.5, 0, false);
  if (seedFraction > 1) throw new Error('--seed-fraction must be within 0..1');
  const memory = scenario === 'memory';
  const entriesMin = num('entries-min', values['entries-min'], 3, 1);
  const entriesMax = num('entries-max', values['entries-max'], Math.max(8, entriesMin), 1);
  if (entriesMax < entriesMin) throw new Error('--entries-max must be >= --entries-min');
  const system = values.system ?? 'um';
  if (system !== 'um' && system !== 'kstreams') throw new Error(`--system must be um or kstreams, got ${system}`);
  if (values['max-load'] !== undefined) maxLoad = num('max-load', values['max-load'], 0, 0.01, false);
  return {
    scenario,
    events: num('events', values.events, memory ? 1_000_000 : 200_000, 1),
    seedFraction,
    mailboxes: num('mailboxes', values.mailboxes, memory ? 1_000_000 : 20_000, 1),
    tenants: num('tenants', values.tenants, 20, 1),
    rate: num('rate', values.rate, 1000, 1),
    seconds: num('seconds', values.seconds, 60, 1),
    baselineSeconds: num('baseline-seconds', values['baseline-seconds'], 15, 0),
    records,
    distinct: num('distinct', values.distinct, Math.max(1, Math.ceil(records / 2)), 1),
    entriesMin,
    entriesMax,
    partitions: num('partitions', values.partitions, 6, 1),
    seed: num('seed', values.seed, 42, 0),
    timeoutS: num('timeout', values.timeout, 900, 1),
    profile: values.profile ?? false,
    logLevel: values['log-level'] ?? 'warn',
    nodeArgs: (values['node-args'] ?? '').split(/\s+/).filter(Boolean),
    direct: values.direct ?? false,
    system,
    javaArgs: (values['java-args'] ?? '').split(/\s+/).filter(Boolean),
    dumpOutputs: values['dump-outputs'],
    record: !values['no-record'],
  };
}

// ---------------------------------------------------------------------------------------------
// helpers

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

const MiB = 1024 * 1024;
const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** --max-load: wait before each measurement until the 1-minute load average is below it */
let maxLoad: number | undefined;

/**
 * The 1-minute load average now (from /proc/loadavg), logged; recorded before each measurement.
 * With --max-load, first waits (up to 5 minutes) until it is below that (the set-up, a local
 * stack starting and the input produced, leaves it at 1.5-3 on 2 cores).
 */
async function loadNow(what: string): Promise<number> {
  if (maxLoad !== undefined) {
    const until = Date.now() + 300_000;
    while (loadavg()[0]! >= maxLoad && Date.now() < until) await new Promise((r) => setTimeout(r, 2000));
  }
  const l = round(loadavg()[0]!, 2);
  log(`load average (1 min) before ${what}: ${l}`);
  return l;
}

/** Histogram quantiles in ms (rounded), keyed p50, p90, ... ; null when the histogram is empty. */
function histogramMs(samples: readonly PromSample[] | undefined, name: string): Record<string, number> | null {
  if (!samples) return null;
  const qs = [0.5, 0.9, 0.99];
  const values = histogramQuantilesOf(samples, name, qs);
  if (values.every((v) => v === undefined)) return null;
  const out: Record<string, number> = {};
  qs.forEach((q, i) => {
    const v = values[i];
    if (v !== undefined) out[`p${q * 100}`] = round(v * 1000, 1);
  });
  return out;
}

/** Exact quantiles of a sample (sorted in place). */
function quantiles(xs: Float64Array, qs: number[]): Record<string, number> {
  xs.sort();
  const out: Record<string, number> = {};
  if (!xs.length) return out;
  for (const q of qs)
    out[`p${round(q * 100, 1)}`] = round(xs[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!, 1);
  out.max = round(xs[xs.length - 1]!, 1);
  out.mean = round(xs.reduce((a, b) => a + b, 0) / xs.length, 1);
  return out;
}

function dirSize(path: string): number {
  let n = 0;
  try {
    for (const e of readdirSync(path, { withFileTypes: true })) {
      const p = join(path, e.name);
      n += e.isDirectory() ? dirSize(p) : statSync(p).size;
    }
  } catch {
    // gone or unreadable
  }
  return n;
}

function machine(): Record<string, unknown> {
  const c = cpus();
  return {
    cpus: c.length,
    cpuModel: c[0]?.model.trim(),
    totalMemGiB: round(totalmem() / 1024 ** 3, 1),
    os: `${platform()} ${release()} ${arch()}`,
    node: process.version,
    loadAvg1mAtEnd: round(loadavg()[0]!, 2),
  };
}

/** CPU used by this (the bench's) process since `from`, in cores busy on average over `wallSecs`. */
function benchCpu(from: NodeJS.CpuUsage, wallSecs: number): number {
  const c = process.cpuUsage(from);
  return round((c.user + c.system) / 1e6 / wallSecs, 2);
}

// ---------------------------------------------------------------------------------------------
// CPU profile of the service process (node --cpu-prof, written when it exits)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** The top functions and packages by self time of the .cpuprofile files in `dir`. */
function summarizeProfile(dir: string): { file: string; topFunctions: string[]; byPackage: string[] } | undefined {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (!files.length) return undefined;
  const file = join(dir, files[0]!);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[] };
  const total = profile.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0) || 1;
  const byFn = new Map<string, number>();
  const byPkg = new Map<string, number>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const f = url.replace(/^file:\/\//, '').replace(/^.*\/(?:work\/main|wt\/[^/]+)\//, '');
    const key = `${functionName || '(anonymous)'} ${f ? `${f}:${lineNumber + 1}` : ''}`.trim();
    byFn.set(key, (byFn.get(key) ?? 0) + hits);
    const pkg =
      /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f)?.[1] ??
      (f === '' ? `(${functionName || 'native'})` : f.startsWith('node:') ? 'node:internal' : f.split('/')[0]!);
    byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + hits);
  }
  const top = (m: Map<string, number>, k: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([f, h]) => `${((h * 100) / total).toFixed(1).padStart(5)}%  ${f}`);
  return { file, topFunctions: top(byFn, 25), byPackage: top(byPkg, 15) };
}

// ---------------------------------------------------------------------------------------------
// environment: local stack or the configured cluster, a unique app id and prefix, clean-up

interface Bench {
  opts: Options;
  id: string;
  /** the service's environment, without UM_HTTP_PORT (chosen per start) */
  serviceEnv: Record<string, string>;
  cfg: AppConfig;
  kafka: Kafka;
  topics: Topics;
  serdes: MailSerdes;
  workload: Workload;
  logger: Logger;
  stateDir: string;
  localStack: boolean;
  /** run at the end, last added first */
  cleanups: (() => Promise<void>)[];
}

async function setUp(opts: Options, cleanups: Bench['cleanups']): Promise<Bench> {
  let brokers = process.env.KAFKA_BROKERS;
  let registryUrl = process.env.SCHEMA_REGISTRY_URL;
  let stack: LocalStack | undefined;
  if (!brokers || !registryUrl) {
    if (brokers || registryUrl) throw new Error('set both KAFKA_BROKERS and SCHEMA_REGISTRY_URL, or neither');
    log('starting a local Kafka broker and schema registry (scripts/kafka/local.ts)...');
    const t = Date.now();
    stack = await startLocalStack({ nodes: 1 });
    const s = stack;
    cleanups.push(async () => {
      log('stopping the local stack');
      await s.stop();
    });
    brokers = stack.brokers.join(',');
    registryUrl = stack.registryUrl;
    log(`local stack up in ${((Date.now() - t) / 1000).toFixed(1)}s: ${brokers}, ${registryUrl}`);
  }
  if (opts.system === 'kstreams') ensureKstreamsJar(log);
  const id = `bench-${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`;
  const stateDir = mkdtempSync(join(tmpdir(), 'um-bench-state-'));
  cleanups.push(async () => rmSync(stateDir, { recursive: true, force: true }));
  // the service process gets this process's environment (so UM_*, KAFKA_SASL_* etc. reach it as
  // usual) plus the settings that make the run isolated
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined),
  );
  const serviceEnv: Record<string, string> = {
    ...inherited,
    KAFKA_BROKERS: brokers,
    SCHEMA_REGISTRY_URL: registryUrl,
    UM_APP_ID: id,
    UM_TOPIC_PREFIX: `${id}-`,
    UM_STATE_DIR: stateDir,
    UM_INSTANCE_ID: `${id}-i1`,
    UM_PARTITIONS: String(opts.partitions),
    UM_HTTP_HOST: '127.0.0.1',
    UM_LOG_LEVEL: opts.logLevel,
  };
  // validated here too, so a bad setting fails before anything is produced
  const cfg = loadConfig({ ...serviceEnv, UM_HTTP_PORT: '0' });
  const logger = pino({ level: cfg.logLevel, base: { bench: id } }, pino.destination(2));
  const kafka = kafkaFor(cfg, `${id}-bench`);
  const topics = topicNames(cfg.topicPrefix);
  log(`app id ${id}, ${opts.partitions} partitions, state dir ${stateDir}`);
  await ensureTopics(kafka, cfg);
  if (!stack)
    cleanups.push(async () => {
      // an existing cluster: delete what this run created (all names start with the app id)
      const admin = kafka.admin();
      await admin.connect();
      try {
        const mine = (await admin.listTopics()).filter((t) => t.startsWith(id));
        if (mine.length) await admin.deleteTopics({ topics: mine });
        log(`deleted ${mine.length} topics`);
      } finally {
        await admin.disconnect();
      }
    });
  const serdes = mailSerdes(createRegistryClient({ url: registryUrl }), topics);
  const workload = new Workload({ seed: opts.seed, mailboxes: opts.mailboxes, tenants: opts.tenants });
  return {
    opts,
    id,
    serviceEnv,
    cfg,
    kafka,
    topics,
    serdes,
    workload,
    logger,
    stateDir,
    localStack: !!stack,
    cleanups,
  };
}

interface Service extends ServiceProcess {
  profileDir: string | undefined;
  /** throws if the process has exited */
  assertAlive(): void;
}

/** Starts `node bin/um.mjs run` with the bench's service environment and a free HTTP port. */
async function startService(b: Bench): Promise<Service> {
  const port = await freePort();
  const profileDir = b.opts.profile ? mkdtempSync(join(tmpdir(), 'um-bench-prof-')) : undefined;
  let exit: string | undefined;
  const svc = spawnService({
    env: { ...b.serviceEnv, UM_HTTP_PORT: String(port) },
    httpPort: port,
    direct: b.opts.direct,
    system: b.opts.system,
    javaArgs: b.opts.javaArgs,
    nodeArgs: [
      ...b.opts.nodeArgs,
      ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--cpu-prof-interval=500'] : []),
    ],
    onExit: (code, signal) => {
      exit = `exited with code ${code}${signal ? ` (${signal})` : ''}`;
    },
  });
  log(`service started: pid ${svc.pid}, ${systemCommand(b.opts.system, b.opts.direct, b.opts.javaArgs)}, ${svc.url}`);
  b.cleanups.push(async () => {
    if (exit) return;
    log('stopping the service');
    await svc.stop();
  });
  return Object.assign(svc, {
    profileDir,
    assertAlive() {
      if (exit) throw new Error(`the service process ${exit}`);
    },
  });
}

/** Stops the service (SIGTERM, clean close) and summarizes its CPU profile, if any. */
async function stopService(svc: Service): Promise<ReturnType<typeof summarizeProfile>> {
  const t = performance.now();
  await svc.stop();
  log(`service stopped in ${((performance.now() - t) / 1000).toFixed(1)}s`);
  return svc.profileDir ? summarizeProfile(svc.profileDir) : undefined;
}

function producerFor(b: Bench, topics: Partial<Topics> = {}): TrafficProducer {
  const traffic = new TrafficProducer({
    kafka: b.kafka,
    serdes: b.serdes,
    topics: { ...b.topics, ...topics },
    workload: b.workload,
    logger: b.logger,
  });
  b.cleanups.push(() => traffic.stop());
  return traffic;
}

async function waitFor(what: string, timeoutMs: number, cond: () => boolean | Promise<boolean>, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await sleep(everyMs);
  }
}

function processedCounts(s: readonly PromSample[], topics: Topics) {
  const decisions = sumOf(s, 'um_decisions_total');
  const interactions = sumOf(s, 'um_interactions_total');
  const deadMails = sumOf(s, 'um_dead_letters_total', (l) => l.topic === topics.mailEvents);
  const deadInteractions = sumOf(s, 'um_dead_letters_total', (l) => l.topic === topics.userInteractions);
  return { decisions, interactions, deadMails, deadInteractions };
}

const isRunning = (s: readonly PromSample[]): boolean =>
  sumOf(s, 'um_instance_state', (l) => l.state === 'RUNNING') === 1;

async function topicEndSum(kafka: Kafka, topics: string[]): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    let n = 0;
    for (const t of topics) for (const p of await admin.fetchTopicOffsets(t)) n += Number(p.high) - Number(p.low);
    return n;
  } finally {
    await admin.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// throughput

async function throughput(b: Bench): Promise<Record<string, unknown>> {
  const { opts, topics } = b;
  const traffic = producerFor(b);
  const seeded = await traffic.seed(opts.seedFraction);
  log(`seeded ${seeded.preferences} preference records and ${seeded.policies} tenant policies`);
  let t = performance.now();
  let lastLog = 0;
  const produced = await traffic.produceMany(opts.events, {
    batchSize: 2000,
    inFlight: 4,
    onProgress: (n) => {
      if (performance.now() - lastLog > 5000) {
        lastLog = performance.now();
        log(`produced ${fmt(n)} / ${fmt(opts.events)} mail events`);
      }
    },
  });
  const produceSecs = (performance.now() - t) / 1000;
  await traffic.stop();
  const totalEvents = produced.mails + produced.interactions;
  log(
    `pre-produced ${fmt(produced.mails)} mail events + ${fmt(produced.interactions)} interactions in ${produceSecs.toFixed(1)}s ` +
      `(${fmt(totalEvents / produceSecs)} events/s produced); starting the service process`,
  );

  const loadAvg1mBefore = await loadNow('the throughput measurement');
  const benchCpu0 = process.cpuUsage();
  const svc = await startService(b);
  t = svc.spawnedAt;
  let httpUpAt: number | undefined;
  let runningAt: number | undefined;
  let eventsAtRunning = 0;
  let restoredAtRunning = 0;
  let firstDecisionAt: number | undefined;
  let eventsAtFirstDecision = 0;
  let decisionsAtFirstDecision = 0;
  const perSecond: number[] = [];
  const consumedPerSecond: number[] = [];
  let lastSecondAt = 0;
  let lastSecondEvents = 0;
  let lastSecondConsumed = 0;
  let samples: PromSample[] | undefined;
  let counts = { decisions: 0, interactions: 0, deadMails: 0, deadInteractions: 0 };
  const doneEvents = () => counts.decisions + counts.interactions + counts.deadMails + counts.deadInteractions;
  const deadline = Date.now() + opts.timeoutS * 1000;
  let timedOut = false;
  for (;;) {
    svc.assertAlive();
    if (Date.now() > deadline) {
      timedOut = true;
      log(`timed out after ${opts.timeoutS}s`);
      break;
    }
    const s = await svc.metrics();
    const now = performance.now();
    if (!s) {
      await sleep(50);
      continue;
    }
    samples = s;
    if (httpUpAt === undefined) {
      httpUpAt = now;
      lastSecondAt = now;
    }
    counts = processedCounts(s, topics);
    const events = doneEvents();
    if (runningAt === undefined && isRunning(s)) {
      runningAt = now;
      eventsAtRunning = events;
      restoredAtRunning = sumOf(s, 'um_restore_records_total');
      log(`RUNNING after ${((now - t) / 1000).toFixed(1)}s (${fmt(restoredAtRunning)} records restored)`);
    }
    if (firstDecisionAt === undefined && counts.decisions > 0) {
      firstDecisionAt = now;
      eventsAtFirstDecision = events;
      decisionsAtFirstDecision = counts.decisions;
      log(`first decisions after ${((now - t) / 1000).toFixed(1)}s`);
    }
    if (now - lastSecondAt >= 1000) {
      const c = sumOf(s, 'um_records_consumed_total');
      perSecond.push(round(((events - lastSecondEvents) * 1000) / (now - lastSecondAt)));
      consumedPerSecond.push(round(((c - lastSecondConsumed) * 1000) / (now - lastSecondAt)));
      lastSecondConsumed = c;
      if (perSecond.length % 5 === 0)
        log(`processed ${fmt(events)} / ${fmt(totalEvents)} (${fmt(perSecond.at(-1)!)} /s)`);
      lastSecondEvents = events;
      lastSecondAt = now;
    }
    if (
      counts.decisions + counts.deadMails >= produced.mails &&
      counts.interactions + counts.deadInteractions >= produced.interactions
    )
      break;
    // poll often until the first decision and near the end (they bound the figures), else every 0.5 s
    let wait = 50;
    if (firstDecisionAt !== undefined && now > firstDecisionAt) {
      const rate = (events - eventsAtFirstDecision) / (now - firstDecisionAt); // per ms
      wait = rate > 0 ? Math.max(50, Math.min(500, (totalEvents - events) / rate / 2)) : 200;
    }
    await sleep(wait);
  }
  const processedAt = performance.now();
  // done when every decision is also on the output topics (acknowledged by the broker)
  let outputs = 0;
  if (!timedOut) {
    const admin = b.kafka.admin();
    await admin.connect();
    try {
      const outTopics = [topics.mailDecisions, topics.mailDecisionsShadow];
      await waitFor(
        'the decisions on the output topics',
        120_000,
        async () => {
          outputs = 0;
          for (const tp of outTopics)
            for (const p of await admin.fetchTopicOffsets(tp)) outputs += Number(p.high) - Number(p.low);
          return outputs >= counts.decisions;
        },
        20,
      ).catch((e: Error) => log(e.message));
    } finally {
      await admin.disconnect();
    }
  }
  const doneAt = performance.now();
  svc.proc.sample();
  const serviceCpuSecs = svc.proc.cpuSeconds;
  const rssAtDoneMiB = svc.proc.rssMiB;
  const wallSecs = (doneAt - t) / 1000;
  const benchCores = benchCpu(benchCpu0, wallSecs);
  const final = (await svc.metrics()) ?? samples;
  if (final) counts = processedCounts(final, topics);
  const prof = await stopService(svc);
  const processed = doneEvents();
  if (opts.dumpOutputs) await dumpOutputs(b, opts.dumpOutputs, { system: opts.system, seed: opts.seed, produced });
  if (timedOut) outputs = await topicEndSum(b.kafka, [topics.mailDecisions, topics.mailDecisionsShadow]);
  const sortedPs = [...perSecond].sort((a, b) => a - b);
  const afterFirstSecs = firstDecisionAt !== undefined ? (doneAt - firstDecisionAt) / 1000 : undefined;
  const afterRunningSecs = runningAt !== undefined ? (doneAt - runningAt) / 1000 : undefined;
  return {
    loadAvg1mBefore,
    produced: { mails: produced.mails, interactions: produced.interactions, seconds: round(produceSecs, 1) },
    seededPreferences: seeded.preferences,
    timedOut,
    service: {
      system: b.opts.system,
      command: systemCommand(b.opts.system, b.opts.direct, b.opts.javaArgs),
      pid: svc.pid,
    },
    secondsToHttp: httpUpAt !== undefined ? round((httpUpAt - t) / 1000, 2) : null,
    secondsToRunning: runningAt !== undefined ? round((runningAt - t) / 1000, 2) : null,
    restoredRecords: restoredAtRunning,
    secondsToFirstDecision: firstDecisionAt !== undefined ? round((firstDecisionAt - t) / 1000, 2) : null,
    wallSeconds: round(wallSecs, 2),
    secondsAfterFirstDecision: afterFirstSecs !== undefined ? round(afterFirstSecs, 2) : null,
    secondsFromProcessedToOutputsAcked: round((doneAt - processedAt) / 1000, 2),
    eventsProcessed: processed,
    decisions: counts.decisions,
    interactionsProcessed: counts.interactions,
    deadLetters: counts.deadMails + counts.deadInteractions,
    decisionRecordsOnOutputTopics: outputs,
    eventsPerSecFromProcessStart: round(processed / wallSecs),
    eventsPerSecAfterFirstDecision:
      afterFirstSecs !== undefined ? round((processed - eventsAtFirstDecision) / afterFirstSecs) : null,
    decisionsPerSecAfterFirstDecision:
      afterFirstSecs !== undefined ? round((counts.decisions - decisionsAtFirstDecision) / afterFirstSecs) : null,
    eventsPerSecAfterRunning:
      afterRunningSecs !== undefined ? round((processed - eventsAtRunning) / afterRunningSecs) : null,
    perSecond: { min: sortedPs[0] ?? 0, median: sortedPs[sortedPs.length >> 1] ?? 0, max: sortedPs.at(-1) ?? 0 },
    processedPerSecondSeries: perSecond,
    consumedPerSecondSeries: consumedPerSecond,
    serviceCommitMs: histogramMs(final, 'um_commit_seconds'),
    serviceProduceRequestMs: histogramMs(final, 'um_produce_request_seconds'),
    serviceProcessBatchMs: histogramMs(final, 'um_process_batch_seconds'),
    serviceCpuSeconds: round(serviceCpuSecs, 2),
    serviceCpuCores: round(serviceCpuSecs / wallSecs, 2),
    servicePeakRssMiB: round(svc.proc.peakRssMiB, 1),
    serviceRssAtDoneMiB: round(rssAtDoneMiB, 1),
    benchCpuCores: benchCores,
    ...(prof ? { profile: prof } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// latency

const LATENCY_QS = [0.5, 0.9, 0.99, 0.999];

/** A probe consumer (settings from bench/probe.ts) that hands each batch to `onBatch` on arrival. */
async function startProbe(
  b: Bench,
  name: string,
  topics: string[],
  onBatch: (topic: string, values: (Buffer | null)[], receivedAt: number) => Promise<void>,
): Promise<Consumer> {
  const consumer: Consumer = b.kafka.consumer(probeConsumerConfig(`${b.id}-${name}`));
  b.cleanups.push(() => consumer.disconnect());
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joined = true;
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    ...probeRunConfig(b.opts.partitions * topics.length),
    eachBatch: async ({ batch }) => {
      const now = Date.now();
      await onBatch(
        batch.topic,
        batch.messages.map((m) => m.value),
        now,
      );
    },
  });
  await waitFor(`the ${name} consumer to join`, 60_000, () => joined);
  return consumer;
}

/**
 * The probe's own delay: the same producer at the same rate, straight to a topic the probe reads,
 * no service in between. Delay = probe receive - record timestamp (= receivedAt, the produce time).
 */
async function probeBaseline(b: Bench): Promise<Record<string, unknown>> {
  const { opts } = b;
  const mails = `${b.id}-probe-baseline-mails`;
  const interactions = `${b.id}-probe-baseline-interactions`;
  const admin = b.kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: false,
      topics: [mails, interactions].map((topic) => ({
        topic,
        numPartitions: opts.partitions,
        replicationFactor: b.cfg.replicationFactor,
      })),
    });
    // every partition has a leader (kafkajs' waitForLeaders can fail on a just-created topic)
    await waitFor('the baseline topics', 30_000, async () => {
      try {
        const md = await admin.fetchTopicMetadata({ topics: [mails, interactions] });
        return md.topics.every(
          (t) => t.partitions.length === opts.partitions && t.partitions.every((p) => p.leader >= 0),
        );
      } catch {
        return false;
      }
    });
  } finally {
    await admin.disconnect();
  }
  const serde = b.serdes.mailEvents;
  const cap = Math.ceil(opts.rate * opts.baselineSeconds * 1.5) + 10_000;
  const delay = new Float64Array(cap);
  let seen = 0;
  let start = 0;
  // the same work per batch as the decision probe: schema look-up, decode, timestamp
  const consumer = await startProbe(b, 'probe-baseline', [mails], async (topic, values, now) => {
    await serde.prepare(values);
    for (const v of values) {
      if (!v || seen >= cap) continue;
      const m = serde.deserialize(topic, v);
      if (m.receivedAt < start) continue;
      delay[seen++] = now - m.receivedAt;
    }
  });
  const traffic = producerFor(b, { mailEvents: mails, userInteractions: interactions });
  const loadAvg1mBefore = await loadNow('the probe baseline');
  start = Date.now();
  log(`probe baseline: producing ${opts.rate} mail events/s for ${opts.baselineSeconds}s straight to the probe`);
  traffic.start(opts.rate);
  await sleep(opts.baselineSeconds * 1000);
  await traffic.stop();
  const produced = traffic.getStats();
  await waitFor('the last baseline records', 30_000, () => seen >= produced.mails).catch((e: Error) => log(e.message));
  await consumer.disconnect();
  return {
    loadAvg1mBefore,
    seconds: opts.baselineSeconds,
    producedMails: produced.mails,
    achievedRatePerSec: round(produced.ratePerSec, 1),
    recordsSeen: seen,
    probeDelayMs: quantiles(delay.subarray(0, seen), LATENCY_QS),
  };
}

async function latency(b: Bench): Promise<Record<string, unknown>> {
  const { opts, topics, serdes } = b;
  const producer = producerSettings(opts.rate);
  log(`producer settings: ${JSON.stringify(producer)}`);
  const baseline = opts.baselineSeconds > 0 ? await probeBaseline(b) : null;

  const traffic = producerFor(b);
  const seeded = await traffic.seed(opts.seedFraction);
  log(`seeded ${seeded.preferences} preference records; starting the service process`);
  const svc = await startService(b);
  await waitFor(
    'the service to be ready',
    opts.timeoutS * 1000,
    async () => {
      svc.assertAlive();
      return svc.ready();
    },
    200,
  );
  // caught up: the processed count has not moved for a second
  let last = -1;
  await waitFor(
    'the service to catch up',
    opts.timeoutS * 1000,
    async () => {
      svc.assertAlive();
      const n = sumOf((await svc.metrics()) ?? [], 'um_records_processed_total');
      const same = n === last;
      last = n;
      return same;
    },
    1000,
  );
  log('service ready and caught up; starting the probe on the decision topics');

  // the probe: a separate consumer of the decision topics, timing each decision as it arrives
  const decisionSerde = serdes.mailDecisions;
  await decisionSerde.init();
  const cap = Math.ceil(opts.rate * opts.seconds * 1.5) + 10_000;
  const endToEnd = new Float64Array(cap);
  const service = new Float64Array(cap);
  const delivery = new Float64Array(cap);
  const receivedAtOf = new Float64Array(cap);
  let seen = 0;
  let probeStart = Infinity;
  await startProbe(
    b,
    'latency-probe',
    [topics.mailDecisions, topics.mailDecisionsShadow],
    async (topic, values, now) => {
      await decisionSerde.prepare(values);
      for (const v of values) {
        if (!v || seen >= cap) continue;
        const d: Decision = decisionSerde.deserialize(topic, v);
        const receivedAt = d.decidedAt - d.dwellMs;
        if (receivedAt < probeStart) continue;
        endToEnd[seen] = now - receivedAt;
        service[seen] = d.dwellMs;
        delivery[seen] = now - d.decidedAt;
        receivedAtOf[seen] = receivedAt;
        seen++;
      }
    },
  );

  const loadAvg1mBefore = await loadNow('the latency measurement');
  svc.proc.sample();
  const serviceCpu0 = svc.proc.cpuSeconds;
  const benchCpu0 = process.cpuUsage();
  probeStart = Date.now();
  log(`producing ${opts.rate} mail events/s for ${opts.seconds}s`);
  traffic.start(opts.rate);
  const t0 = performance.now();
  while (performance.now() - t0 < opts.seconds * 1000) {
    await sleep(Math.min(5000, opts.seconds * 1000 - (performance.now() - t0)));
    svc.assertAlive();
    log(`${traffic.getStats().mails} mails produced, ${seen} decisions seen`);
  }
  await traffic.stop();
  const stats = traffic.getStats();
  const producedMails = stats.mails;
  // every decision arrives, within bounds
  await waitFor('the last decisions', 60_000, () => seen >= producedMails).catch((e: Error) => log(e.message));
  const wall = (performance.now() - t0) / 1000;
  svc.proc.sample();
  const serviceCpuSecs = svc.proc.cpuSeconds - serviceCpu0;
  const benchCores = benchCpu(benchCpu0, wall);
  const final = await svc.metrics();
  const prof = await stopService(svc);

  // steady state: skip the first 5 seconds of production
  const warm = probeStart + 5000;
  const steady = new Float64Array(seen);
  let ns = 0;
  for (let i = 0; i < seen; i++) if (receivedAtOf[i]! >= warm) steady[ns++] = endToEnd[i]!;
  // worst one-second window by p99
  const bySecond = new Map<number, number[]>();
  for (let i = 0; i < seen; i++) {
    const s = Math.floor((receivedAtOf[i]! - probeStart) / 1000);
    let a = bySecond.get(s);
    if (!a) bySecond.set(s, (a = []));
    a.push(endToEnd[i]!);
  }
  let worstSecond = { second: -1, p99: 0 };
  for (const [s, a] of bySecond) {
    const p = quantiles(Float64Array.from(a), [0.99]).p99 ?? 0;
    if (p > worstSecond.p99) worstSecond = { second: s, p99: p };
  }
  return {
    loadAvg1mBefore,
    producer,
    probe: { consumer: probeConsumerConfig('<unique per run>'), run: probeRunConfig(opts.partitions * 2) },
    rate: opts.rate,
    seconds: opts.seconds,
    seededPreferences: seeded.preferences,
    producedMails,
    producedInteractions: stats.interactions,
    achievedRatePerSec: round(stats.ratePerSec, 1),
    produceErrors: stats.errors,
    decisionsSeen: seen,
    endToEndDwellMs: quantiles(endToEnd.subarray(0, seen), LATENCY_QS),
    endToEndDwellSteadyMs: quantiles(steady.subarray(0, ns), LATENCY_QS),
    serviceDwellMs: quantiles(service.subarray(0, seen), LATENCY_QS),
    probeBaseline: baseline,
    decisionDeliveryMs: quantiles(delivery.subarray(0, seen), LATENCY_QS),
    serviceDwellHistogramMs: histogramMs(final, 'um_dwell_seconds'),
    serviceProduceRequestMs: histogramMs(final, 'um_produce_request_seconds'),
    serviceProcessBatchMs: histogramMs(final, 'um_process_batch_seconds'),
    serviceCommitMs: histogramMs(final, 'um_commit_seconds'),
    worstSecondP99Ms: worstSecond,
    serviceCpuCores: round(serviceCpuSecs / wall, 2),
    servicePeakRssMiB: round(svc.proc.peakRssMiB, 1),
    benchCpuCores: benchCores,
    ...(prof ? { profile: prof } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// restore

async function restore(b: Bench): Promise<Record<string, unknown>> {
  const { opts, topics, workload } = b;
  const traffic = producerFor(b);
  const policies = await traffic.seed(0); // tenant policies only
  log(`producing ${fmt(opts.records)} preference records (${fmt(Math.min(opts.distinct, opts.records))} keys)`);
  let t = performance.now();
  let lastLog = 0;
  const produced = await traffic.producePreferences(
    workload.restorePreferences(opts.records, opts.distinct, Date.now()),
    {
      batchSize: 10_000,
      inFlight: 8,
      onProgress: (n) => {
        if (performance.now() - lastLog > 5000) {
          lastLog = performance.now();
          log(`produced ${fmt(n)} / ${fmt(opts.records)}`);
        }
      },
    },
  );
  const produceSecs = (performance.now() - t) / 1000;
  await traffic.stop();
  const onTopic = await topicEndSum(b.kafka, [topics.userPreferences]);
  log(
    `produced ${fmt(produced.records)} records (${fmt(produced.bytes / MiB, 1)} MiB, avg ${fmt(produced.bytes / produced.records)} B) ` +
      `in ${produceSecs.toFixed(1)}s; starting the service process with an empty state dir`,
  );

  const loadAvg1mBefore = await loadNow('the restore measurement');
  const benchCpu0 = process.cpuUsage();
  const svc = await startService(b);
  t = svc.spawnedAt;
  let httpUpAt: number | undefined;
  let firstRestoreAt: number | undefined;
  let lastLogAt = performance.now();
  let restored = 0;
  await waitFor(
    'ready (/readyz 200)',
    opts.timeoutS * 1000,
    async () => {
      svc.assertAlive();
      const s = await svc.metrics();
      if (!s) return false;
      const now = performance.now();
      httpUpAt ??= now;
      restored = sumOf(s, 'um_restore_records_total');
      if (firstRestoreAt === undefined && restored > 0) firstRestoreAt = now;
      if (now - lastLogAt > 5000) {
        lastLogAt = now;
        log(`${fmt(restored)} restored`);
      }
      return isRunning(s) && (await svc.ready());
    },
    50,
  );
  const readyAt = performance.now();
  svc.proc.sample();
  const secs = (readyAt - t) / 1000;
  const serviceCpuSecs = svc.proc.cpuSeconds;
  const peakRssToReady = svc.proc.peakRssMiB;
  const benchCores = benchCpu(benchCpu0, secs);
  restored = sumOf((await svc.metrics()) ?? [], 'um_restore_records_total');
  log(`ready after ${secs.toFixed(1)}s: ${fmt(restored)} records restored`);

  // after ready: does the instance read the topic again as its table source? (bounded)
  const consumedOf = async () =>
    sumOf((await svc.metrics()) ?? [], 'um_records_consumed_total', (l) => l.topic === topics.userPreferences);
  let prev = -1;
  let stableFor = 0;
  const t2 = performance.now();
  while (performance.now() - t2 < Math.min(300_000, opts.timeoutS * 1000)) {
    svc.assertAlive();
    const c = await consumedOf();
    stableFor = c === prev ? stableFor + 1 : 0;
    prev = c;
    if (c >= onTopic || stableFor >= 6) break;
    await sleep(500);
  }
  const tableSourceSecs = (performance.now() - t2) / 1000;
  const tableConsumed = await consumedOf();
  svc.proc.sample();
  const peakRssAfter = svc.proc.peakRssMiB;
  const rssAfter = svc.proc.rssMiB;
  const prof = await stopService(svc);
  const stateBytes = dirSize(b.stateDir);
  return {
    loadAvg1mBefore,
    records: produced.records,
    distinctKeys: Math.min(opts.distinct, opts.records),
    recordsOnTopic: onTopic,
    avgRecordBytes: round(produced.bytes / produced.records),
    produceSeconds: round(produceSecs, 1),
    producePerSec: round(produced.records / produceSecs),
    tenantPolicies: policies.policies,
    service: {
      system: b.opts.system,
      command: systemCommand(b.opts.system, b.opts.direct, b.opts.javaArgs),
      pid: svc.pid,
    },
    secondsToHttp: httpUpAt !== undefined ? round((httpUpAt - t) / 1000, 2) : null,
    secondsToFirstRestored: firstRestoreAt !== undefined ? round((firstRestoreAt - t) / 1000, 2) : null,
    secondsToReady: round(secs, 2),
    restoredRecords: restored,
    restoredPerSecFromProcessStart: round(restored / secs),
    restoredPerSecFromFirstRecord:
      firstRestoreAt !== undefined ? round(restored / ((readyAt - firstRestoreAt) / 1000)) : null,
    serviceCpuCores: round(serviceCpuSecs / secs, 2),
    servicePeakRssMiBToReady: round(peakRssToReady, 1),
    benchCpuCores: benchCores,
    afterReady: {
      tableSourceRecordsConsumed: tableConsumed,
      secondsObserved: round(tableSourceSecs, 1),
      servicePeakRssMiB: round(peakRssAfter, 1),
      serviceRssMiB: round(rssAfter, 1),
    },
    stateDirMiB: round(stateBytes / MiB, 1),
    ...(prof ? { profile: prof } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// memory: 1M mailboxes of preferences restored, then a (scaled) day of traffic over them

/** VmRSS of a process, sampled every `everyMs`; the highest value since the last `mark()`. */
class RssWatch {
  private timer: NodeJS.Timeout | undefined;
  maxMiB = 0;
  constructor(private readonly pid: number) {}
  private read(): number | undefined {
    try {
      const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) / 1024 : undefined;
    } catch {
      return undefined;
    }
  }
  start(everyMs = 100): this {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
    return this;
  }
  sample(): void {
    const v = this.read();
    if (v !== undefined && v > this.maxMiB) this.maxMiB = v;
  }
  /** starts a new phase: the sampled maximum and the kernel's VmHWM (if allowed) start over */
  mark(): { hwmReset: boolean } {
    this.maxMiB = 0;
    this.sample();
    try {
      // "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0, same user)
      writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      return { hwmReset: true };
    } catch {
      return { hwmReset: false };
    }
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** The service's memory as it reports it on /metrics (prom-client's process and heap gauges, RocksDB). */
function memoryFigures(s: readonly PromSample[]): Record<string, number> {
  const mib = (name: string, f?: (l: Record<string, string>) => boolean) => round(sumOf(s, name, f) / MiB, 1);
  return {
    heapUsedMiB: mib('um_nodejs_heap_size_used_bytes'),
    heapTotalMiB: mib('um_nodejs_heap_size_total_bytes'),
    externalMiB: mib('um_nodejs_external_memory_bytes'),
    rocksdbBlockCacheMiB: mib('um_rocksdb_memory_bytes', (l) => l.kind === 'block_cache'),
    rocksdbMemtablesMiB: mib('um_rocksdb_memory_bytes', (l) => l.kind === 'memtables'),
    rocksdbTableReadersMiB: mib('um_rocksdb_memory_bytes', (l) => l.kind === 'table_readers'),
    rocksdbInstances: sumOf(s, 'um_rocksdb_open_stores'),
  };
}

/** The largest value of each figure over several readings. */
function maxOf(a: Record<string, number> | undefined, b: Record<string, number>): Record<string, number> {
  if (!a) return { ...b };
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = Math.max(out[k] ?? 0, v);
  return out;
}

async function memory(b: Bench): Promise<Record<string, unknown>> {
  const { opts, topics, workload } = b;
  const traffic = producerFor(b);
  const policies = await traffic.seed(0); // tenant policies only
  const mailboxes = workload.mailboxIds.length;
  log(`producing one preference record per mailbox: ${fmt(mailboxes)} (${opts.entriesMin}-${opts.entriesMax} entries)`);
  let t = performance.now();
  let lastLog = 0;
  const seeded = await traffic.producePreferences(
    workload.allPreferences(Date.now(), opts.entriesMin, opts.entriesMax),
    {
      batchSize: 10_000,
      inFlight: 8,
      onProgress: (n) => {
        if (performance.now() - lastLog > 5000) {
          lastLog = performance.now();
          log(`produced ${fmt(n)} / ${fmt(mailboxes)}`);
        }
      },
    },
  );
  const seedSecs = (performance.now() - t) / 1000;
  log(
    `produced ${fmt(seeded.records)} preference records (${fmt(seeded.bytes / MiB, 1)} MiB, avg ${fmt(seeded.bytes / seeded.records)} B) ` +
      `in ${seedSecs.toFixed(1)}s; starting the service process with an empty state dir`,
  );

  // --- phase 1: restore into an empty state directory
  const loadAvg1mBefore = await loadNow('the restore');
  const svc = await startService(b);
  t = svc.spawnedAt;
  const rss = new RssWatch(svc.pid).start();
  b.cleanups.push(async () => rss.stop());
  let httpUpAt: number | undefined;
  let firstRestoreAt: number | undefined;
  let lastLogAt = performance.now();
  let restored = 0;
  let restoreMem: Record<string, number> | undefined;
  await waitFor(
    'ready (/readyz 200)',
    opts.timeoutS * 1000,
    async () => {
      svc.assertAlive();
      const s = await svc.metrics();
      if (!s) return false;
      const now = performance.now();
      httpUpAt ??= now;
      restored = sumOf(s, 'um_restore_records_total');
      restoreMem = maxOf(restoreMem, memoryFigures(s));
      if (firstRestoreAt === undefined && restored > 0) firstRestoreAt = now;
      if (now - lastLogAt > 5000) {
        lastLogAt = now;
        const m = memoryFigures(s);
        log(
          `${fmt(restored)} restored, RSS max ${fmt(rss.maxMiB, 1)} MiB; heap ${m.heapUsedMiB}/${m.heapTotalMiB}, external ${m.externalMiB}, ` +
            `RocksDB memtables ${m.rocksdbMemtablesMiB} MiB; load ${round(loadavg()[0]!, 2)}`,
        );
      }
      return isRunning(s) && (await svc.ready());
    },
    100,
  );
  const readyAt = performance.now();
  svc.proc.sample();
  rss.sample();
  const restoreSecs = (readyAt - t) / 1000;
  const restoreCpuSecs = svc.proc.cpuSeconds;
  const restorePeakHwm = svc.proc.peakRssMiB;
  const restorePeakSampled = rss.maxMiB;
  const afterRestore = await svc.metrics();
  restored = sumOf(afterRestore ?? [], 'um_restore_records_total');
  const rssAtReady = svc.proc.rssMiB;
  const loadAtReady = round(loadavg()[0]!, 2);
  log(
    `ready after ${restoreSecs.toFixed(1)}s: ${fmt(restored)} records restored; peak RSS ${fmt(restorePeakHwm, 1)} MiB (load ${loadAtReady})`,
  );

  // --- phase 2: the traffic, produced while the service runs
  const { hwmReset } = rss.mark();
  const loadAvg1mBeforeTraffic = await loadNow('the traffic');
  const touched = new Uint8Array(mailboxes);
  const nextMail = workload.nextMail.bind(workload);
  workload.nextMail = (now?: number) => {
    const m = nextMail(now);
    touched[Number(m.mailboxId.slice(4)) - 1] = 1;
    return m;
  };
  const cpu0 = svc.proc.cpuSeconds;
  const trafficStart = performance.now();
  let produced: { mails: number; interactions: number } | undefined;
  let produceError: Error | undefined;
  const producing = traffic
    .produceMany(opts.events, { batchSize: 2000, inFlight: 4 })
    .then((r) => {
      produced = r;
      log(`produced ${fmt(r.mails)} mail events + ${fmt(r.interactions)} interactions`);
    })
    .catch((e: Error) => {
      produceError = e;
    });
  let counts = { decisions: 0, interactions: 0, deadMails: 0, deadInteractions: 0 };
  const base = processedCounts(afterRestore ?? [], topics);
  let trafficMem: Record<string, number> | undefined;
  let lastSample: PromSample[] | undefined;
  const perSecond: number[] = [];
  let lastSecAt = trafficStart;
  let lastSecEvents = 0;
  const deadline = Date.now() + opts.timeoutS * 1000;
  let timedOut = false;
  const done = () =>
    counts.decisions +
    counts.interactions +
    counts.deadMails +
    counts.deadInteractions -
    (base.decisions + base.interactions + base.deadMails + base.deadInteractions);
  for (;;) {
    svc.assertAlive();
    if (produceError) throw produceError;
    if (Date.now() > deadline) {
      timedOut = true;
      log(`timed out after ${opts.timeoutS}s`);
      break;
    }
    const s = await svc.metrics();
    const now = performance.now();
    if (s) {
      lastSample = s;
      counts = processedCounts(s, topics);
      trafficMem = maxOf(trafficMem, memoryFigures(s));
      if (now - lastSecAt >= 1000) {
        perSecond.push(round(((done() - lastSecEvents) * 1000) / (now - lastSecAt)));
        lastSecEvents = done();
        lastSecAt = now;
        if (perSecond.length % 10 === 0) {
          const m = memoryFigures(s);
          log(
            `processed ${fmt(done())} events (${fmt(perSecond.at(-1)!)} /s), RSS max ${fmt(rss.maxMiB, 1)} MiB; ` +
              `heap ${m.heapUsedMiB}/${m.heapTotalMiB}, external ${m.externalMiB}, RocksDB cache ${m.rocksdbBlockCacheMiB} memtables ${m.rocksdbMemtablesMiB} MiB; load ${round(loadavg()[0]!, 2)}`,
          );
        }
      }
      if (
        produced &&
        counts.decisions + counts.deadMails - base.decisions - base.deadMails >= produced.mails &&
        counts.interactions + counts.deadInteractions - base.interactions - base.deadInteractions >=
          produced.interactions
      )
        break;
    }
    await sleep(250);
  }
  const trafficEnd = performance.now();
  await producing;
  svc.proc.sample();
  rss.sample();
  const trafficSecs = (trafficEnd - trafficStart) / 1000;
  const trafficCpuSecs = svc.proc.cpuSeconds - cpu0;
  const trafficPeakHwm = hwmReset ? svc.proc.hwmNowMiB() : undefined;
  const trafficPeakSampled = rss.maxMiB;
  const rssAtEnd = svc.proc.rssMiB;
  const endMem = lastSample ? memoryFigures(lastSample) : undefined;
  const loadAtEnd = round(loadavg()[0]!, 2);
  rss.stop();
  const prof = await stopService(svc);
  const stateBytes = dirSize(b.stateDir);
  let touchedCount = 0;
  for (const x of touched) touchedCount += x;
  const events = done();
  const p = produced ?? { mails: 0, interactions: 0 };
  return {
    loadAvg1mBefore,
    mailboxes,
    preferenceRecords: seeded.records,
    entriesPerRecord: { min: opts.entriesMin, max: opts.entriesMax },
    avgRecordBytes: round(seeded.bytes / seeded.records),
    seedSeconds: round(seedSecs, 1),
    tenantPolicies: policies.policies,
    service: {
      system: b.opts.system,
      command: systemCommand(b.opts.system, b.opts.direct, b.opts.javaArgs),
      pid: svc.pid,
    },
    restore: {
      secondsToHttp: httpUpAt !== undefined ? round((httpUpAt - t) / 1000, 2) : null,
      secondsToFirstRestored: firstRestoreAt !== undefined ? round((firstRestoreAt - t) / 1000, 2) : null,
      secondsToReady: round(restoreSecs, 2),
      restoredRecords: restored,
      restoredPerSecFromProcessStart: round(restored / restoreSecs),
      restoredPerSecFromFirstRecord:
        firstRestoreAt !== undefined ? round(restored / ((readyAt - firstRestoreAt) / 1000)) : null,
      servicePeakRssMiB: round(restorePeakHwm, 1),
      servicePeakRssSampledMiB: round(restorePeakSampled, 1),
      serviceRssAtReadyMiB: round(rssAtReady, 1),
      serviceCpuCores: round(restoreCpuSecs / restoreSecs, 2),
      serviceMemoryMax: restoreMem ?? null,
      loadAvg1mAtReady: loadAtReady,
    },
    traffic: {
      loadAvg1mBefore: loadAvg1mBeforeTraffic,
      loadAvg1mAtEnd: loadAtEnd,
      mails: p.mails,
      interactions: p.interactions,
      distinctMailboxes: touchedCount,
      timedOut,
      eventsProcessed: events,
      seconds: round(trafficSecs, 2),
      eventsPerSec: round(events / trafficSecs),
      perSecond: (() => {
        const xs = [...perSecond].sort((a, c) => a - c);
        return { min: xs[0] ?? 0, median: xs[xs.length >> 1] ?? 0, max: xs.at(-1) ?? 0 };
      })(),
      deadLetters: counts.deadMails + counts.deadInteractions - base.deadMails - base.deadInteractions,
      servicePeakRssMiB: trafficPeakHwm !== undefined ? round(trafficPeakHwm, 1) : null,
      servicePeakRssSampledMiB: round(trafficPeakSampled, 1),
      serviceRssAtEndMiB: round(rssAtEnd, 1),
      serviceCpuCores: round(trafficCpuSecs / trafficSecs, 2),
      serviceMemoryMax: trafficMem ?? null,
      serviceMemoryAtEnd: endMem ?? null,
    },
    servicePeakRssMiB: round(Math.max(restorePeakHwm, trafficPeakHwm ?? trafficPeakSampled), 1),
    stateDirMiB: round(stateBytes / MiB, 1),
    serviceSettings: {
      ...Object.fromEntries(
        Object.entries(b.serviceEnv).filter(([k]) => /^UM_(ROCKSDB|PREFERENCE)_/.test(k) || k === 'NODE_OPTIONS'),
      ),
      ...(opts.nodeArgs.length ? { nodeArgs: opts.nodeArgs.join(' ') } : {}),
      launcher: opts.direct ? 'none (node bin/um.mjs)' : 'bin/um',
    },
    ...(prof ? { profile: prof } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// output

function summary(scenario: Scenario, r: Record<string, unknown>): string {
  const g = (k: string) => r[k] as never;
  const q = (o: Record<string, number> | null | undefined) =>
    o
      ? Object.entries(o)
          .map(([k, v]) => `${k} ${fmt(v, 1)}`)
          .join(' | ')
      : '-';
  const lines: string[] = [`load avg (1 min)   ${g('loadAvg1mBefore')} before the measurement`];
  if (scenario === 'throughput') {
    const p = g('produced') as { mails: number; interactions: number };
    const ps = g('perSecond') as { min: number; median: number; max: number };
    lines.push(
      `input              ${fmt(p.mails)} mail events + ${fmt(p.interactions)} interactions, ${fmt(g('seededPreferences'))} seeded preference records`,
      `system             ${(g('service') as { system: string }).system}`,
      `service            ${(g('service') as { command: string }).command} (pid ${(g('service') as { pid: number }).pid}), its own process`,
      `start              HTTP up ${g('secondsToHttp')} s, RUNNING ${g('secondsToRunning')} s (${fmt(g('restoredRecords'))} records restored), first decision ${g('secondsToFirstDecision')} s after spawn`,
      `processing         ${fmt(g('eventsProcessed'))} events, done ${g('wallSeconds')} s after spawn (every decision on the output topic)${g('timedOut') ? '  TIMED OUT' : ''}`,
      `events/s           ${fmt(g('eventsPerSecFromProcessStart'))} from process start | ${fmt(g('eventsPerSecAfterFirstDecision'))} after the first decision (${g('secondsAfterFirstDecision')} s)`,
      `decisions/s        ${fmt(g('decisionsPerSecAfterFirstDecision'))} after the first decision   (${fmt(g('decisions'))} decisions, ${fmt(g('decisionRecordsOnOutputTopics'))} on the output topics, ${fmt(g('deadLetters'))} dead letters)`,
      `1-s windows        min/median/max ${fmt(ps.min)}/${fmt(ps.median)}/${fmt(ps.max)} events/s`,
      `processed per 1 s  ${(g('processedPerSecondSeries') as number[]).map((x) => fmt(x)).join(' ')}`,
      `service commit     ${q(g('serviceCommitMs'))} ms per commit (um_commit_seconds)`,
      `service produce    ${q(g('serviceProduceRequestMs'))} ms per produce request (um_produce_request_seconds)`,
      `service batch      ${q(g('serviceProcessBatchMs'))} ms per processed batch (um_process_batch_seconds)`,
      `service CPU        ${g('serviceCpuCores')} cores on average from spawn to done (${g('serviceCpuSeconds')} s, /proc/<pid>/stat)`,
      `service RSS        peak ${fmt(g('servicePeakRssMiB'), 1)} MiB (VmHWM), ${fmt(g('serviceRssAtDoneMiB'), 1)} MiB at done`,
      `bench CPU          ${g('benchCpuCores')} cores (the bench's own process: metrics polling)`,
    );
  } else if (scenario === 'latency') {
    const base = g('probeBaseline') as { probeDelayMs: Record<string, number>; loadAvg1mBefore: number } | null;
    lines.push(
      `producer           ${JSON.stringify(g('producer'))}`,
      `probe consumer     ${JSON.stringify(r.probe)}`,
      `load               ${fmt(g('producedMails'))} mail events + ${fmt(g('producedInteractions'))} interactions at ${fmt(g('achievedRatePerSec'), 1)} mails/s (target ${g('rate')}) for ${g('seconds')} s`,
      `decisions seen     ${fmt(g('decisionsSeen'))}`,
      `1 end-to-end dwell ${q(g('endToEndDwellMs'))} ms (probe receive - receivedAt)`,
      `  after warm-up    ${q(g('endToEndDwellSteadyMs'))} ms (first 5 s excluded)`,
      `2 service dwell    ${q(g('serviceDwellMs'))} ms (Decision.dwellMs = decidedAt - receivedAt)`,
      `3 probe alone      ${base ? `${q(base.probeDelayMs)} ms (produce -> probe, no service; load avg ${base.loadAvg1mBefore})` : 'not measured (--baseline-seconds 0)'}`,
      `decision delivery  ${q(g('decisionDeliveryMs'))} ms (probe receive - decidedAt)`,
      `um_dwell_seconds   ${q(g('serviceDwellHistogramMs'))} ms (histogram estimate)`,
      `service produce    ${q(g('serviceProduceRequestMs'))} ms per produce request (um_produce_request_seconds)`,
      `service batch      ${q(g('serviceProcessBatchMs'))} ms per processed batch (um_process_batch_seconds)`,
      `service commit     ${q(g('serviceCommitMs'))} ms per commit (um_commit_seconds)`,
      `worst 1-s window   p99 ${fmt((g('worstSecondP99Ms') as { p99: number }).p99, 1)} ms`,
      `service CPU / RSS  ${g('serviceCpuCores')} cores while producing; peak RSS ${fmt(g('servicePeakRssMiB'), 1)} MiB`,
      `bench CPU          ${g('benchCpuCores')} cores (producer and probe)`,
    );
  } else if (scenario === 'memory') {
    type Mem = Record<string, number> | null;
    const rs = g('restore') as Record<string, unknown>;
    const tr = g('traffic') as Record<string, unknown>;
    const mem = (m: Mem) =>
      m
        ? `heap used ${fmt(m.heapUsedMiB!, 1)} / total ${fmt(m.heapTotalMiB!, 1)} MiB, external ${fmt(m.externalMiB!, 1)} MiB, RocksDB (${m.rocksdbInstances} instances) block cache ${fmt(m.rocksdbBlockCacheMiB!, 1)} + memtables ${fmt(m.rocksdbMemtablesMiB!, 1)} + table readers ${fmt(m.rocksdbTableReadersMiB!, 1)} MiB`
        : '-';
    const ps = tr.perSecond as { min: number; median: number; max: number };
    lines.push(
      `settings           ${JSON.stringify(g('serviceSettings'))}`,
      `preferences        ${fmt(g('preferenceRecords'))} records, one per mailbox (${fmt(g('mailboxes'))}), ${(g('entriesPerRecord') as { min: number }).min}-${(g('entriesPerRecord') as { max: number }).max} entries, avg ${g('avgRecordBytes')} B`,
      `RESTORE            ready ${rs.secondsToReady} s after spawn (HTTP up ${rs.secondsToHttp} s, first record restored ${rs.secondsToFirstRestored} s); load ${g('loadAvg1mBefore')} before, ${rs.loadAvg1mAtReady} at ready`,
      `  restored         ${fmt(rs.restoredRecords as number)} records: ${fmt(rs.restoredPerSecFromProcessStart as number)} /s from process start, ${fmt(rs.restoredPerSecFromFirstRecord as number)} /s from the first record`,
      `  RSS              peak ${fmt(rs.servicePeakRssMiB as number, 1)} MiB (VmHWM; sampled max ${fmt(rs.servicePeakRssSampledMiB as number, 1)}), ${fmt(rs.serviceRssAtReadyMiB as number, 1)} MiB at ready; CPU ${rs.serviceCpuCores} cores`,
      `  memory (max)     ${mem(rs.serviceMemoryMax as Mem)}`,
      `TRAFFIC            ${fmt(tr.mails as number)} mail events + ${fmt(tr.interactions as number)} interactions over ${fmt(tr.distinctMailboxes as number)} distinct mailboxes, produced while the service runs; load ${tr.loadAvg1mBefore} before, ${tr.loadAvg1mAtEnd} at the end${tr.timedOut ? '  TIMED OUT' : ''}`,
      `  events/s         ${fmt(tr.eventsPerSec as number)} (${fmt(tr.eventsProcessed as number)} events in ${tr.seconds} s); 1-s windows min/median/max ${fmt(ps.min)}/${fmt(ps.median)}/${fmt(ps.max)}; ${fmt(tr.deadLetters as number)} dead letters`,
      `  RSS              peak ${tr.servicePeakRssMiB === null ? '-' : fmt(tr.servicePeakRssMiB as number, 1)} MiB (VmHWM reset at ready; sampled max ${fmt(tr.servicePeakRssSampledMiB as number, 1)}), ${fmt(tr.serviceRssAtEndMiB as number, 1)} MiB at the end; CPU ${tr.serviceCpuCores} cores`,
      `  memory (max)     ${mem(tr.serviceMemoryMax as Mem)}`,
      `  memory (end)     ${mem(tr.serviceMemoryAtEnd as Mem)}`,
      `PEAK RSS           ${fmt(g('servicePeakRssMiB'), 1)} MiB over the whole run`,
      `state dir          ${fmt(g('stateDirMiB'), 1)} MiB on disk`,
    );
  } else {
    const a = g('afterReady') as {
      tableSourceRecordsConsumed: number;
      secondsObserved: number;
      servicePeakRssMiB: number;
    };
    lines.push(
      `changelog          ${fmt(g('records'))} records (${fmt(g('distinctKeys'))} keys, avg ${g('avgRecordBytes')} B), produced at ${fmt(g('producePerSec'))} /s`,
      `time to ready      ${g('secondsToReady')} s after spawn (HTTP up ${g('secondsToHttp')} s, first record restored ${g('secondsToFirstRestored')} s)`,
      `restored           ${fmt(g('restoredRecords'))} records: ${fmt(g('restoredPerSecFromProcessStart'))} records/s from process start (${fmt(g('restoredPerSecFromFirstRecord'))} /s from the first record)`,
      `service CPU        ${g('serviceCpuCores')} cores on average until ready`,
      `service RSS        peak ${fmt(g('servicePeakRssMiBToReady'), 1)} MiB until ready; peak ${fmt(a.servicePeakRssMiB, 1)} MiB after`,
      `after ready        ${fmt(a.tableSourceRecordsConsumed)} user-preferences records consumed as table source within ${a.secondsObserved} s`,
      `state dir          ${fmt(g('stateDirMiB'), 1)} MiB on disk`,
    );
  }
  const prof = r.profile as { file: string; topFunctions: string[]; byPackage: string[] } | undefined;
  if (prof)
    lines.push(
      '',
      `CPU profile of the service process (whole lifetime): ${prof.file}`,
      'self time by package/file:',
      ...prof.byPackage.map((l) => `  ${l}`),
      'top functions (self time):',
      ...prof.topFunctions.map((l) => `  ${l}`),
    );
  return lines.join('\n');
}

async function main(): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (!opts) return 0;
  const cleanups: (() => Promise<void>)[] = [];
  let cleaning: Promise<void> | undefined;
  const cleanUp = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const c of cleanups.reverse())
        await c().catch((e: unknown) => log(`clean-up step failed: ${(e as Error).message}`));
    })());
  const onSignal = (sig: string): void => {
    log(`${sig}: cleaning up`);
    void cleanUp().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const started = new Date();
  const load0 = round(loadavg()[0]!, 2);
  try {
    const b = await setUp(opts, cleanups);
    const run = { throughput, latency, restore, memory }[opts.scenario];
    const result = await run(b);
    const { profile, ...figures } = result as { profile?: unknown } & Record<string, unknown>;
    const line = {
      schemaVersion: RESULTS_SCHEMA_VERSION,
      scenario: opts.scenario,
      loadAvg1mAtStart: load0,
      loadAvg1mBeforeMeasurement: figures.loadAvg1mBefore,
      command: `npx tsx bench/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
      date: started.toISOString(),
      machine: machine(),
      cluster: b.localStack ? 'local stack (1 KRaft broker + Apicurio, loopback)' : 'KAFKA_BROKERS',
      system: opts.system,
      service: `${systemCommand(opts.system, opts.direct, opts.javaArgs)} (own process)`,
      partitions: opts.partitions,
      options: { ...opts, record: undefined, profile: opts.profile || undefined },
      figures,
      ...(profile ? { profile } : {}),
    };
    const text = summary(opts.scenario, result);
    process.stdout.write(`\n== ${opts.scenario} == ${line.command}  (${line.date})\n${text}\n\n`);
    if (opts.record) {
      appendFileSync(RESULTS, `${JSON.stringify(line)}\n`);
      log(`appended to ${RESULTS}`);
    }
    return 0;
  } catch (e) {
    log(`failed: ${(e as Error).stack ?? String(e)}`);
    return 1;
  } finally {
    await cleanUp();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
