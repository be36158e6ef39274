/**
 * The benchmarks: `npx tsx bench/run.ts <throughput|latency|restore> [options]` (`--help`).
 *
 * Each scenario runs against a real broker and schema registry: a local stack started here
 * (scripts/kafka/local.ts) unless KAFKA_BROKERS and SCHEMA_REGISTRY_URL are set, with a unique
 * application id and topic prefix, and ONE service instance started in this process with
 * `startApp` (no HTTP). It prints a summary and appends one JSON line to bench/results.jsonl.
 * Everything it starts is stopped and every temporary directory removed, also on Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { arch, cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Consumer, Kafka } from 'kafkajs';
import pino, { type Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ensureTopics, kafkaFor, startApp, type App } from '../cli/app.js';
import { loadConfig, type AppConfig } from '../cli/config.js';
import type { Decision } from '../processors/logic/model.js';
import { histogramQuantiles as histogramQuantilesOf } from '../runtime/metrics.js';
import { createRegistryClient } from '../runtime/serdes/registry.js';
import { startLocalStack, type LocalStack } from '../scripts/kafka/local.js';
import { mailSerdes, type MailSerdes } from '../topology/serdes.js';
import { topicNames, type Topics } from '../topology/topics.js';
import { TrafficProducer, Workload } from './generator.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const here = dirname(fileURLToPath(import.meta.url));
const RESULTS = join(here, 'results.jsonl');

const HELP = `Usage: npx tsx bench/run.ts <scenario> [options]

Scenarios
  throughput   pre-produce --events mail events (+ ~5% interactions) and seeded preferences, then start
               one instance and time it until every event is processed (events/s, decisions/s, RSS)
  latency      start one instance, then produce --rate mail events/s for --seconds; dwell per decision
               = time a separate consumer reads the decision - the mail's receivedAt (= produce time)
  restore      produce --records preference records to user-preferences, start one instance with an
               empty state directory, time it until RUNNING (records/s restored, RSS)

Options
  --events N          throughput: mail events to pre-produce (default 200000)
  --seed-fraction F   share of mailboxes with seeded preferences (default 0.5)
  --mailboxes N       mailboxes (default 20000)
  --tenants N         tenants (default 20)
  --rate N            latency: mail events per second (default 1000)
  --seconds N         latency: how long to produce (default 60)
  --records N         restore: preference records (default 1000000)
  --distinct N        restore: distinct mailbox keys (default records/2: every key twice)
  --partitions N      partitions of the co-partitioned topics (default 6)
  --seed N            workload seed (default 42)
  --timeout S         give up a measurement after S seconds (default 900)
  --profile           CPU-profile the measured phase (inspector) and print the top functions
  --log-level L       service log level (default warn; logs go to stderr)
  --no-record         do not append to bench/results.jsonl
  -h, --help          this text

Environment
  KAFKA_BROKERS, SCHEMA_REGISTRY_URL   use an existing cluster and registry instead of a local stack
                                       (the bench's topics, prefixed bench-<id>-, are deleted afterwards)
  UM_COMMIT_INTERVAL_MS, UM_PREFERENCE_CACHE_ENTRIES, UM_PROCESSING_GUARANTEE, KAFKA_SASL_*, KAFKA_SSL*
                                       passed to the service as usual
`;

type Scenario = 'throughput' | 'latency' | 'restore';

interface Options {
  scenario: Scenario;
  events: number;
  seedFraction: number;
  mailboxes: number;
  tenants: number;
  rate: number;
  seconds: number;
  records: number;
  distinct: number;
  partitions: number;
  seed: number;
  timeoutS: number;
  profile: boolean;
  logLevel: string;
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
      records: { type: 'string' },
      distinct: { type: 'string' },
      partitions: { type: 'string' },
      seed: { type: 'string' },
      timeout: { type: 'string' },
      profile: { type: 'boolean' },
      'log-level': { type: 'string' },
      'no-record': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(HELP);
    return undefined;
  }
  const scenario = positionals[0];
  if (scenario !== 'throughput' && scenario !== 'latency' && scenario !== 'restore')
    throw new Error(`unknown scenario ${JSON.stringify(scenario)} (throughput, latency or restore; see --help)`);
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
  return {
    scenario,
    events: num('events', values.events, 200_000, 1),
    seedFraction,
    mailboxes: num('mailboxes', values.mailboxes, 20_000, 1),
    tenants: num('tenants', values.tenants, 20, 1),
    rate: num('rate', values.rate, 1000, 1),
    seconds: num('seconds', values.seconds, 60, 1),
    records,
    distinct: num('distinct', values.distinct, Math.max(1, Math.ceil(records / 2)), 1),
    partitions: num('partitions', values.partitions, 6, 1),
    seed: num('seed', values.seed, 42, 0),
    timeoutS: num('timeout', values.timeout, 900, 1),
    profile: values.profile ?? false,
    logLevel: values['log-level'] ?? 'warn',
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

/** Samples RSS and heap every 200 ms; keeps the peaks. */
class MemorySampler {
  peakRss = 0;
  peakHeapUsed = 0;
  private timer: NodeJS.Timeout | undefined;
  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), 200);
    this.timer.unref();
    return this;
  }
  sample(): void {
    const m = process.memoryUsage();
    if (m.rss > this.peakRss) this.peakRss = m.rss;
    if (m.heapUsed > this.peakHeapUsed) this.peakHeapUsed = m.heapUsed;
  }
  stop(): { peakRssMiB: number; peakHeapUsedMiB: number } {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    return { peakRssMiB: round(this.peakRss / MiB, 1), peakHeapUsedMiB: round(this.peakHeapUsed / MiB, 1) };
  }
}

function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Sum of all series of a counter or gauge (0 if it does not exist yet). */
async function metricSum(
  reg: Registry,
  name: string,
  filter?: (labels: Record<string, string | number>) => boolean,
): Promise<number> {
  const m = reg.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  let s = 0;
  for (const v of data.values) if (!filter || filter(v.labels as Record<string, string | number>)) s += v.value;
  return s;
}

/** Quantiles of a Prometheus histogram (all label sets merged), linear within a bucket. */
/** Histogram quantiles in ms (rounded), keyed p50, p90, ... */
async function histogramQuantiles(
  reg: Registry,
  name: string,
  qs: number[],
): Promise<Record<string, number> | undefined> {
  const values = await histogramQuantilesOf(reg.getSingleMetric(name), qs);
  if (values.every((v) => v === undefined)) return undefined;
  const out: Record<string, number> = {};
  qs.forEach((q, i) => {
    const v = values[i];
    if (v !== undefined) out[`p${q * 100}`] = round(v * 1000, 1);
  });
  return out;
}

/** Event-loop delay summary in ms. */
function loopDelayMs(eld: IntervalHistogram): { p50: number; p99: number; max: number } {
  return {
    p50: round(eld.percentile(50) / 1e6, 1),
    p99: round(eld.percentile(99) / 1e6, 1),
    max: round(eld.max / 1e6, 1),
  };
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

// ---------------------------------------------------------------------------------------------
// CPU profile of the measured phase

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

class Profiler {
  private session: Session | undefined;
  async start(): Promise<void> {
    this.session = new Session();
    this.session.connect();
    await this.session.post('Profiler.enable');
    await this.session.post('Profiler.setSamplingInterval', { interval: 500 });
    await this.session.post('Profiler.start');
  }
  /** Stops, writes the .cpuprofile, and returns the top functions and packages by self time. */
  async stop(name: string): Promise<{ file: string; topFunctions: string[]; byPackage: string[] }> {
    const s = this.session!;
    const { profile } = (await s.post('Profiler.stop')) as { profile: { nodes: ProfileNode[] } };
    s.disconnect();
    const file = join(tmpdir(), `um-bench-${name}-${Date.now()}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    const total = profile.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0) || 1;
    const byFn = new Map<string, number>();
    const byPkg = new Map<string, number>();
    for (const n of profile.nodes) {
      const hits = n.hitCount ?? 0;
      if (!hits) continue;
      const { functionName, url, lineNumber } = n.callFrame;
      const file = url.replace(/^file:\/\//, '').replace(/^.*\/work\/main\//, '');
      const key = `${functionName || '(anonymous)'} ${file ? `${file}:${lineNumber + 1}` : ''}`.trim();
      byFn.set(key, (byFn.get(key) ?? 0) + hits);
      const pkg =
        /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ??
        (file === ''
          ? `(${functionName || 'native'})`
          : file.startsWith('node:')
            ? 'node:internal'
            : file.split('/')[0]!);
      byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + hits);
    }
    const top = (m: Map<string, number>, k: number) =>
      [...m]
        .sort((a, b) => b[1] - a[1])
        .slice(0, k)
        .map(([f, h]) => `${((h * 100) / total).toFixed(1).padStart(5)}%  ${f}`);
    return { file, topFunctions: top(byFn, 25), byPackage: top(byPkg, 15) };
  }
}

// ---------------------------------------------------------------------------------------------
// environment: local stack or the configured cluster, a unique app id and prefix, clean-up

interface Bench {
  opts: Options;
  id: string;
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
  const id = `bench-${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`;
  const stateDir = mkdtempSync(join(tmpdir(), 'um-bench-state-'));
  cleanups.push(async () => rmSync(stateDir, { recursive: true, force: true }));
  const passThrough = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) =>
        /^(KAFKA_SASL_|KAFKA_SSL)/.test(k) ||
        ['SCHEMA_REGISTRY_USERNAME', 'SCHEMA_REGISTRY_PASSWORD', 'UM_COMMIT_INTERVAL_MS'].includes(k) ||
        ['UM_PREFERENCE_CACHE_ENTRIES', 'UM_PROCESSING_GUARANTEE', 'UM_DEFAULT_MODE'].includes(k),
    ),
  );
  const cfg = loadConfig({
    ...passThrough,
    KAFKA_BROKERS: brokers,
    SCHEMA_REGISTRY_URL: registryUrl,
    UM_APP_ID: id,
    UM_TOPIC_PREFIX: `${id}-`,
    UM_STATE_DIR: stateDir,
    UM_INSTANCE_ID: `${id}-i1`,
    UM_PARTITIONS: String(opts.partitions),
    UM_HTTP_PORT: '0',
    UM_HTTP_HOST: '127.0.0.1',
    UM_LOG_LEVEL: opts.logLevel,
  });
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
  return { opts, id, cfg, kafka, topics, serdes, workload, logger, stateDir, localStack: !!stack, cleanups };
}

async function startService(b: Bench): Promise<App> {
  const app = await startApp(b.cfg, { logger: b.logger, createTopics: true, http: false });
  b.cleanups.push(async () => {
    log('closing the service');
    await app.close();
  });
  return app;
}

function producerFor(b: Bench): TrafficProducer {
  const traffic = new TrafficProducer({
    kafka: b.kafka,
    serdes: b.serdes,
    topics: b.topics,
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

function assertHealthy(app: App): void {
  if (app.streams.state === 'ERROR' || app.streams.state === 'NOT_RUNNING') {
    const f = app.streams.failure();
    throw new Error(`the service stopped (${app.streams.state}): ${f instanceof Error ? f.message : String(f)}`);
  }
}

async function processedCounts(reg: Registry, topics: Topics) {
  const decisions = await metricSum(reg, 'um_decisions_total');
  const interactions = await metricSum(reg, 'um_interactions_total');
  const deadMails = await metricSum(reg, 'um_dead_letters_total', (l) => l.topic === topics.mailEvents);
  const deadInteractions = await metricSum(reg, 'um_dead_letters_total', (l) => l.topic === topics.userInteractions);
  return { decisions, interactions, deadMails, deadInteractions };
}

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
      `(${fmt(totalEvents / produceSecs)} events/s produced); starting the service`,
  );

  const mem = new MemorySampler().start();
  const profiler = opts.profile ? new Profiler() : undefined;
  await profiler?.start();
  const cpu0 = process.cpuUsage();
  t = performance.now();
  const app = await startService(b);
  const reg = app.streams.metrics.registry;
  const startedMs = performance.now() - t;
  let runningAt: number | undefined;
  let eventsAtRunning = 0;
  let decisionsAtRunning = 0;
  let restoredAtRunning = 0;
  let firstDecisionAt: number | undefined;
  const perSecond: number[] = [];
  const consumedPerSecond: number[] = [];
  let lastSecondAt = performance.now();
  let lastSecondEvents = 0;
  let lastSecondConsumed = 0;
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  let counts = await processedCounts(reg, topics);
  const doneEvents = () => counts.decisions + counts.interactions + counts.deadMails + counts.deadInteractions;
  const deadline = Date.now() + opts.timeoutS * 1000;
  let timedOut = false;
  for (;;) {
    assertHealthy(app);
    counts = await processedCounts(reg, topics);
    const now = performance.now();
    if (firstDecisionAt === undefined && counts.decisions > 0) firstDecisionAt = now;
    if (runningAt === undefined && app.streams.state === 'RUNNING') {
      runningAt = now;
      eventsAtRunning = doneEvents();
      decisionsAtRunning = counts.decisions;
      restoredAtRunning = app.streams.restoreProgress().reduce((n, p) => n + p.restored, 0);
      log(`RUNNING after ${((now - t) / 1000).toFixed(1)}s (${fmt(restoredAtRunning)} records restored)`);
    }
    if (now - lastSecondAt >= 1000) {
      const e = doneEvents();
      const c = await metricSum(reg, 'um_records_consumed_total');
      perSecond.push(round(((e - lastSecondEvents) * 1000) / (now - lastSecondAt)));
      consumedPerSecond.push(round(((c - lastSecondConsumed) * 1000) / (now - lastSecondAt)));
      lastSecondConsumed = c;
      if (perSecond.length % 5 === 0) log(`processed ${fmt(e)} / ${fmt(totalEvents)} (${fmt(perSecond.at(-1)!)} /s)`);
      lastSecondEvents = e;
      lastSecondAt = now;
    }
    if (
      counts.decisions + counts.deadMails >= produced.mails &&
      counts.interactions + counts.deadInteractions >= produced.interactions
    )
      break;
    if (Date.now() > deadline) {
      timedOut = true;
      log(`timed out after ${opts.timeoutS}s`);
      break;
    }
    await sleep(50);
  }
  const processedAt = performance.now();
  // done when every decision is also on the output topics (acknowledged by the broker)
  let outputs = 0;
  if (!timedOut) {
    const admin = b.kafka.admin();
    await admin.connect();
    try {
      const outTopics = [topics.mailDecisions, topics.mailDecisionsShadow];
      await waitFor('the decisions on the output topics', 120_000, async () => {
        outputs = 0;
        for (const tp of outTopics)
          for (const p of await admin.fetchTopicOffsets(tp)) outputs += Number(p.high) - Number(p.low);
        return outputs >= counts.decisions;
      }).catch((e: Error) => log(e.message));
    } finally {
      await admin.disconnect();
    }
  }
  const doneAt = performance.now();
  eld.disable();
  const cpu = process.cpuUsage(cpu0);
  const prof = await profiler?.stop('throughput');
  const memory = mem.stop();
  const wallSecs = (doneAt - t) / 1000;
  const runSecs = runningAt !== undefined ? (doneAt - runningAt) / 1000 : wallSecs;
  const processed = doneEvents();
  const afterRunning = processed - eventsAtRunning;
  if (timedOut) outputs = await topicEndSum(b.kafka, [topics.mailDecisions, topics.mailDecisionsShadow]);
  const sortedPs = [...perSecond].sort((a, b) => a - b);
  return {
    produced: { mails: produced.mails, interactions: produced.interactions, seconds: round(produceSecs, 1) },
    seededPreferences: seeded.preferences,
    timedOut,
    startAppMs: round(startedMs),
    secondsToRunning: runningAt !== undefined ? round((runningAt - t) / 1000, 2) : null,
    restoredRecords: restoredAtRunning,
    secondsToFirstDecision: firstDecisionAt !== undefined ? round((firstDecisionAt - t) / 1000, 2) : null,
    wallSeconds: round(wallSecs, 2),
    processingSeconds: round(runSecs, 2),
    secondsFromProcessedToOutputsAcked: round((doneAt - processedAt) / 1000, 2),
    eventsProcessed: processed,
    decisions: counts.decisions,
    interactionsProcessed: counts.interactions,
    deadLetters: counts.deadMails + counts.deadInteractions,
    decisionRecordsOnOutputTopics: outputs,
    eventsPerSec: round(afterRunning / runSecs),
    decisionsPerSec: round((counts.decisions - decisionsAtRunning) / runSecs),
    eventsPerSecWallIncludingStart: round(processed / wallSecs),
    perSecond: { min: sortedPs[0] ?? 0, median: sortedPs[sortedPs.length >> 1] ?? 0, max: sortedPs.at(-1) ?? 0 },
    processedPerSecondSeries: perSecond,
    consumedPerSecondSeries: consumedPerSecond,
    eventLoopDelayMs: loopDelayMs(eld),
    serviceCommitMs: (await histogramQuantiles(reg, 'um_commit_seconds', [0.5, 0.9, 0.99])) ?? null,
    serviceProduceRequestMs: (await histogramQuantiles(reg, 'um_produce_request_seconds', [0.5, 0.9, 0.99])) ?? null,
    serviceProcessBatchMs: (await histogramQuantiles(reg, 'um_process_batch_seconds', [0.5, 0.9, 0.99])) ?? null,
    cpuSecondsPerWallSecond: round((cpu.user + cpu.system) / 1e6 / wallSecs, 2),
    ...memory,
    ...(prof ? { profile: prof } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// latency

async function latency(b: Bench): Promise<Record<string, unknown>> {
  const { opts, topics, serdes } = b;
  const traffic = producerFor(b);
  const seeded = await traffic.seed(opts.seedFraction);
  log(`seeded ${seeded.preferences} preference records; starting the service`);
  const app = await startService(b);
  const reg = app.streams.metrics.registry;
  await waitFor('RUNNING', opts.timeoutS * 1000, () => {
    assertHealthy(app);
    return app.streams.state === 'RUNNING';
  });
  // caught up: the processed count has not moved for a second
  let last = -1;
  await waitFor(
    'the service to catch up',
    opts.timeoutS * 1000,
    async () => {
      const n = await metricSum(reg, 'um_records_processed_total');
      const same = n === last;
      last = n;
      return same;
    },
    1000,
  );
  log('service RUNNING and caught up; starting the decision consumer');

  // the probe: a separate consumer of the decision topics, timing each decision as it arrives
  const decisionSerde = serdes.mailDecisions;
  await decisionSerde.init();
  const cap = Math.ceil(opts.rate * opts.seconds * 1.5) + 10_000;
  const endToEnd = new Float64Array(cap);
  const service = new Float64Array(cap);
  const delivery = new Float64Array(cap);
  const receivedAtOf = new Float64Array(cap);
  let seen = 0;
  let probeStart = 0;
  const consumer: Consumer = b.kafka.consumer({
    groupId: `${b.id}-latency-probe`,
    maxWaitTimeInMs: 100,
    allowAutoTopicCreation: false,
  });
  b.cleanups.push(() => consumer.disconnect());
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joined = true;
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topics.mailDecisions, topics.mailDecisionsShadow], fromBeginning: true });
  await consumer.run({
    eachBatchAutoResolve: true,
    eachBatch: async ({ batch }) => {
      const now = Date.now();
      await decisionSerde.prepare(batch.messages.map((m) => m.value));
      for (const m of batch.messages) {
        if (!m.value || seen >= cap) continue;
        const d: Decision = decisionSerde.deserialize(batch.topic, m.value);
        const receivedAt = d.decidedAt - d.dwellMs;
        if (receivedAt < probeStart) continue;
        endToEnd[seen] = now - receivedAt;
        service[seen] = d.dwellMs;
        delivery[seen] = now - d.decidedAt;
        receivedAtOf[seen] = receivedAt;
        seen++;
      }
    },
  });
  await waitFor('the probe consumer to join', 60_000, () => joined);

  const eld = monitorEventLoopDelay({ resolution: 10 });
  const mem = new MemorySampler().start();
  const profiler = opts.profile ? new Profiler() : undefined;
  await profiler?.start();
  const cpu0 = process.cpuUsage();
  probeStart = Date.now();
  eld.enable();
  log(`producing ${opts.rate} mail events/s for ${opts.seconds}s`);
  traffic.start(opts.rate);
  const t0 = performance.now();
  while (performance.now() - t0 < opts.seconds * 1000) {
    await sleep(Math.min(5000, opts.seconds * 1000 - (performance.now() - t0)));
    assertHealthy(app);
    log(`${traffic.getStats().mails} mails produced, ${seen} decisions seen`);
  }
  await traffic.stop();
  const stats = traffic.getStats();
  const producedMails = stats.mails;
  // every decision arrives, within bounds
  await waitFor('the last decisions', 60_000, () => seen >= producedMails).catch((e: Error) => log(e.message));
  eld.disable();
  const cpu = process.cpuUsage(cpu0);
  const wall = (performance.now() - t0) / 1000;
  const prof = await profiler?.stop('latency');
  const memory = mem.stop();

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
  const qs = [0.5, 0.9, 0.99, 0.999];
  return {
    rate: opts.rate,
    seconds: opts.seconds,
    seededPreferences: seeded.preferences,
    producedMails,
    producedInteractions: stats.interactions,
    achievedRatePerSec: round(stats.ratePerSec, 1),
    produceErrors: stats.errors,
    decisionsSeen: seen,
    endToEndDwellMs: quantiles(endToEnd.subarray(0, seen), qs),
    endToEndDwellSteadyMs: quantiles(steady.subarray(0, ns), qs),
    serviceDwellMs: quantiles(service.subarray(0, seen), qs),
    decisionDeliveryMs: quantiles(delivery.subarray(0, seen), qs),
    serviceDwellHistogramMs: (await histogramQuantiles(reg, 'um_dwell_seconds', [0.5, 0.9, 0.99])) ?? null,
    serviceProduceRequestMs: (await histogramQuantiles(reg, 'um_produce_request_seconds', [0.5, 0.9, 0.99])) ?? null,
    serviceProcessBatchMs: (await histogramQuantiles(reg, 'um_process_batch_seconds', [0.5, 0.9, 0.99])) ?? null,
    serviceCommitMs: (await histogramQuantiles(reg, 'um_commit_seconds', [0.5, 0.9, 0.99])) ?? null,
    worstSecondP99Ms: worstSecond,
    eventLoopDelayMs: loopDelayMs(eld),
    cpuSecondsPerWallSecond: round((cpu.user + cpu.system) / 1e6 / wall, 2),
    ...memory,
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
      `in ${produceSecs.toFixed(1)}s; starting the service with an empty state dir`,
  );

  const mem = new MemorySampler().start();
  const profiler = opts.profile ? new Profiler() : undefined;
  await profiler?.start();
  const cpu0 = process.cpuUsage();
  t = performance.now();
  const app = await startService(b);
  const reg = app.streams.metrics.registry;
  const startAppMs = performance.now() - t;
  let firstRestoreAt: number | undefined;
  let lastLogAt = performance.now();
  const restored = () => app.streams.restoreProgress().reduce((n, p) => n + p.restored, 0);
  await waitFor(
    'RUNNING',
    opts.timeoutS * 1000,
    () => {
      assertHealthy(app);
      const r = restored();
      if (firstRestoreAt === undefined && r > 0) firstRestoreAt = performance.now();
      if (performance.now() - lastLogAt > 5000) {
        lastLogAt = performance.now();
        log(`${app.streams.state}: ${fmt(r)} restored`);
      }
      return app.streams.state === 'RUNNING';
    },
    50,
  );
  const runningAt = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const prof = await profiler?.stop('restore');
  const memoryToRunning = mem.stop();
  const secs = (runningAt - t) / 1000;
  const n = restored();
  const metricRestored = await metricSum(reg, 'um_restore_records_total');
  log(`RUNNING after ${secs.toFixed(1)}s: ${fmt(n)} records restored`);

  // after RUNNING: does the instance read the topic again as its table source? (bounded)
  const mem2 = new MemorySampler().start();
  const consumedOf = () => metricSum(reg, 'um_records_consumed_total', (l) => l.topic === topics.userPreferences);
  let prev = -1;
  let stableFor = 0;
  const t2 = performance.now();
  while (performance.now() - t2 < Math.min(300_000, opts.timeoutS * 1000)) {
    assertHealthy(app);
    const c = await consumedOf();
    stableFor = c === prev ? stableFor + 1 : 0;
    prev = c;
    if (c >= onTopic || stableFor >= 6) break;
    await sleep(500);
  }
  const tableSourceSecs = (performance.now() - t2) / 1000;
  const tableConsumed = await consumedOf();
  const memoryAfter = mem2.stop();
  const stateBytes = dirSize(b.stateDir);
  return {
    records: produced.records,
    distinctKeys: Math.min(opts.distinct, opts.records),
    recordsOnTopic: onTopic,
    avgRecordBytes: round(produced.bytes / produced.records),
    produceSeconds: round(produceSecs, 1),
    producePerSec: round(produced.records / produceSecs),
    tenantPolicies: policies.policies,
    startAppMs: round(startAppMs),
    secondsToFirstRestored: firstRestoreAt !== undefined ? round((firstRestoreAt - t) / 1000, 2) : null,
    secondsToRunning: round(secs, 2),
    restoredRecords: n,
    restoredRecordsMetric: metricRestored,
    restoredPerSec: round(n / secs),
    restoredPerSecFromFirstRecord:
      firstRestoreAt !== undefined ? round(n / ((runningAt - firstRestoreAt) / 1000)) : null,
    cpuSecondsPerWallSecond: round((cpu.user + cpu.system) / 1e6 / secs, 2),
    ...memoryToRunning,
    afterRunning: {
      tableSourceRecordsConsumed: tableConsumed,
      secondsObserved: round(tableSourceSecs, 1),
      ...memoryAfter,
    },
    stateDirMiB: round(stateBytes / MiB, 1),
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
  const lines: string[] = [];
  if (scenario === 'throughput') {
    const p = g('produced') as { mails: number; interactions: number };
    const ps = g('perSecond') as { min: number; median: number; max: number };
    lines.push(
      `input              ${fmt(p.mails)} mail events + ${fmt(p.interactions)} interactions, ${fmt(g('seededPreferences'))} seeded preference records`,
      `time to RUNNING    ${g('secondsToRunning')} s (${fmt(g('restoredRecords'))} records restored)`,
      `processing         ${fmt(g('eventsProcessed'))} events in ${g('processingSeconds')} s after RUNNING, until every decision is on the output topic (${g('wallSeconds')} s from start)${g('timedOut') ? '  TIMED OUT' : ''}`,
      `events/s           ${fmt(g('eventsPerSec'))}   (wall incl. start: ${fmt(g('eventsPerSecWallIncludingStart'))}; 1-s windows min/median/max ${fmt(ps.min)}/${fmt(ps.median)}/${fmt(ps.max)})`,
      `decisions/s        ${fmt(g('decisionsPerSec'))}   (${fmt(g('decisions'))} decisions, ${fmt(g('decisionRecordsOnOutputTopics'))} on the output topics, ${fmt(g('deadLetters'))} dead letters)`,
      `processed per 1 s  ${(g('processedPerSecondSeries') as number[]).map((x) => fmt(x)).join(' ')}`,
      `consumed per 1 s   ${(g('consumedPerSecondSeries') as number[]).map((x) => fmt(x)).join(' ')}`,
      `event-loop delay   ${q(g('eventLoopDelayMs'))} ms`,
      `service commit     ${q(g('serviceCommitMs'))} ms per commit (um_commit_seconds)`,
      `service produce    ${q(g('serviceProduceRequestMs'))} ms per produce request (um_produce_request_seconds)`,
      `service batch      ${q(g('serviceProcessBatchMs'))} ms per processed batch (um_process_batch_seconds)`,
      `process CPU        ${g('cpuSecondsPerWallSecond')} cores busy on average`,
      `peak RSS / heap    ${fmt(g('peakRssMiB'), 1)} MiB / ${fmt(g('peakHeapUsedMiB'), 1)} MiB`,
    );
  } else if (scenario === 'latency') {
    lines.push(
      `load               ${fmt(g('producedMails'))} mail events + ${fmt(g('producedInteractions'))} interactions at ${fmt(g('achievedRatePerSec'), 1)} mails/s (target ${g('rate')}) for ${g('seconds')} s`,
      `decisions seen     ${fmt(g('decisionsSeen'))}`,
      `end-to-end dwell   ${q(g('endToEndDwellMs'))} ms`,
      `  after warm-up    ${q(g('endToEndDwellSteadyMs'))} ms (first 5 s excluded)`,
      `service dwellMs    ${q(g('serviceDwellMs'))} ms (decidedAt - receivedAt)`,
      `decision delivery  ${q(g('decisionDeliveryMs'))} ms (consumed - decidedAt)`,
      `um_dwell_seconds   ${q(g('serviceDwellHistogramMs'))} ms (histogram estimate)`,
      `service produce    ${q(g('serviceProduceRequestMs'))} ms per produce request (um_produce_request_seconds)`,
      `service batch      ${q(g('serviceProcessBatchMs'))} ms per processed batch (um_process_batch_seconds)`,
      `service commit     ${q(g('serviceCommitMs'))} ms per commit (um_commit_seconds)`,
      `worst 1-s window   p99 ${fmt((g('worstSecondP99Ms') as { p99: number }).p99, 1)} ms`,
      `event-loop delay   ${q(g('eventLoopDelayMs'))} ms (shared by service, producer and probe)`,
      `process CPU        ${g('cpuSecondsPerWallSecond')} cores busy on average`,
      `peak RSS / heap    ${fmt(g('peakRssMiB'), 1)} MiB / ${fmt(g('peakHeapUsedMiB'), 1)} MiB`,
    );
  } else {
    const a = g('afterRunning') as { tableSourceRecordsConsumed: number; secondsObserved: number; peakRssMiB: number };
    lines.push(
      `changelog          ${fmt(g('records'))} records (${fmt(g('distinctKeys'))} keys, avg ${g('avgRecordBytes')} B), produced at ${fmt(g('producePerSec'))} /s`,
      `time to RUNNING    ${g('secondsToRunning')} s (startApp returned after ${fmt(g('startAppMs'))} ms, first record restored at ${g('secondsToFirstRestored')} s)`,
      `restored           ${fmt(g('restoredRecords'))} records: ${fmt(g('restoredPerSec'))} records/s (${fmt(g('restoredPerSecFromFirstRecord'))} /s from the first record)`,
      `process CPU        ${g('cpuSecondsPerWallSecond')} cores busy on average`,
      `peak RSS / heap    ${fmt(g('peakRssMiB'), 1)} MiB / ${fmt(g('peakHeapUsedMiB'), 1)} MiB until RUNNING; ${fmt(a.peakRssMiB, 1)} MiB after`,
      `after RUNNING      ${fmt(a.tableSourceRecordsConsumed)} user-preferences records consumed as table source within ${a.secondsObserved} s`,
      `state dir          ${fmt(g('stateDirMiB'), 1)} MiB on disk`,
    );
  }
  const prof = r.profile as { file: string; topFunctions: string[]; byPackage: string[] } | undefined;
  if (prof)
    lines.push(
      '',
      `CPU profile: ${prof.file}`,
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
    const run = { throughput, latency, restore }[opts.scenario];
    const result = await run(b);
    const { profile, ...figures } = result as { profile?: unknown } & Record<string, unknown>;
    const line = {
      scenario: opts.scenario,
      loadAvg1mAtStart: load0,
      command: `npx tsx bench/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
      date: started.toISOString(),
      machine: machine(),
      cluster: b.localStack ? 'local stack (1 KRaft broker + Apicurio, loopback)' : 'KAFKA_BROKERS',
      partitions: opts.partitions,
      options: { ...opts, record: undefined, profile: opts.profile || undefined },
      figures,
      ...(profile ? { profile } : {}),
    };
    const text = summary(opts.scenario, result);
    process.stdout.write(`\n== ${opts.scenario} == ${line.command}\n${text}\n\n`);
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
