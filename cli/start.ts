/**
 * `um start` (what `npm start` runs). With KAFKA_BROKERS set it is `um run --create-topics`.
 * With nothing configured it brings up a local Kafka (KRaft) and schema registry from Maven
 * Central (scripts/kafka), creates the topics, starts the service and a demo traffic generator,
 * and prints a live summary every few seconds until Ctrl-C.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Workload, TrafficProducer } from '../demo/traffic.js';
import { startLocalStack, type LocalStack } from '../scripts/kafka/local.js';
import { kafkaFor, startApp, type App } from './app.js';
import { LegacySimulator } from './legacy-sim.js';
import { loadConfig, type AppConfig } from './config.js';
import { createLogger } from './log.js';
import { histogramBuckets, SnapshotWindow, windowQuantile } from './window.js';

export async function start(opts: {
  rate: number;
  demo: boolean;
  legacyDisagree?: number;
  legacyDelayMs?: number;
}): Promise<void> {
  let cfg = loadConfig();
  const log = createLogger(cfg);
  let stack: LocalStack | undefined;
  let tempState: string | undefined;
  if (!cfg.brokers) {
    console.log(
      'No KAFKA_BROKERS configured: starting a local Kafka and schema registry (first run downloads them from Maven Central)...',
    );
    stack = await startLocalStack({ nodes: 1 });
    // a fresh cluster each time, so fresh state too
    tempState = mkdtempSync(join(tmpdir(), 'um-start-state-'));
    cfg = { ...cfg, brokers: stack.brokers, registry: { url: stack.registryUrl }, stateDir: tempState } as AppConfig;
    console.log(`Kafka ${stack.brokers.join(',')}  registry ${stack.registryUrl}`);
  }
  let app: App | undefined;
  let traffic: TrafficProducer | undefined;
  let legacy: LegacySimulator | undefined;
  let timer: NodeJS.Timeout | undefined;
  const cleanup = async (): Promise<void> => {
    if (timer) clearInterval(timer);
    await traffic?.stop().catch(() => undefined);
    await legacy?.stop().catch(() => undefined);
    await app?.close().catch(() => undefined);
    await stack?.stop().catch(() => undefined);
    if (tempState) rmSync(tempState, { recursive: true, force: true });
  };
  let closing = false;
  const onSignal = (): void => {
    if (closing) process.exit(130);
    closing = true;
    console.log('\nstopping...');
    void cleanup().then(() => process.exit(0));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    app = await startApp(cfg, { logger: log, createTopics: true });
    console.log(
      `unwanted-mail is running. Metrics: ${app.url}/metrics  health: ${app.url}/readyz  topology: ${app.url}/v1/topology`,
    );
    if (stack && opts.demo) {
      const workload = new Workload({ seed: 42 });
      traffic = new TrafficProducer({
        kafka: kafkaFor(cfg, 'um-demo'),
        serdes: app.serdes,
        topics: app.topics,
        workload,
        logger: log,
      });
      // a simulated legacy system deciding the same mails, so parity has real numbers
      legacy = new LegacySimulator({
        kafka: kafkaFor(cfg, 'um-demo-legacy'),
        groupId: `${cfg.applicationId}-demo-legacy`,
        mailEventsTopic: app.topics.mailEvents,
        legacyTopic: app.topics.legacyDecisions,
        mailEvents: app.serdes.mailEvents,
        legacyDecisions: app.serdes.legacyDecisions,
        disagree: opts.legacyDisagree ?? 0.01,
        delayMs: opts.legacyDelayMs ?? 2000,
        logger: log,
      });
      await legacy.start();
      await traffic.seed(0.3);
      traffic.start(opts.rate);
      console.log(`demo traffic: ${opts.rate} mail events/s (about 5% followed by a user interaction)`);
      const examples = workload
        .seedPreferences(0.3, 0)
        .slice(0, 3)
        .map((p) => p.mailboxId);
      console.log(
        `mailboxes with preferences, e.g.: ${examples.join(' ')}  (npm run um -- preferences ${examples[0]})`,
      );
      console.log(
        `simulated legacy system: writes legacy-decisions, disagreeing on ${((opts.legacyDisagree ?? 0.01) * 100).toFixed(1)}% of mails (and on user preferences it does not know)`,
      );
    }
    timer = setInterval(() => void summary(app!), SUMMARY_EVERY_MS);
  } catch (e) {
    await cleanup();
    throw e;
  }
}

const SUMMARY_EVERY_MS = 5000;
/** dwell quantiles over the last 30 s, not since start */
const DWELL_WINDOW = new SnapshotWindow(30_000 / SUMMARY_EVERY_MS);
let lastCount = 0;
let lastAt = Date.now();

/** One line: events/s, decisions by action, dwell p99 over the last 30 s. */
async function summary(app: App): Promise<void> {
  const reg = app.streams.metrics.registry;
  const processed = await reg.getSingleMetric('um_records_processed_total')?.get();
  const total = processed?.values.reduce((n, v) => n + v.value, 0) ?? 0;
  const now = Date.now();
  const rate = ((total - lastCount) * 1000) / Math.max(1, now - lastAt);
  lastCount = total;
  lastAt = now;
  const decisions = await app.metrics.decisions.get();
  const byAction = new Map<string, number>();
  for (const v of decisions.values)
    byAction.set(String(v.labels.action), (byAction.get(String(v.labels.action)) ?? 0) + v.value);
  const buckets = await histogramBuckets(app.metrics.dwell);
  const p99 = windowQuantile(DWELL_WINDOW.oldest(), buckets, 0.99);
  DWELL_WINDOW.push(buckets);
  console.log(
    `[${app.streams.state}] ${rate.toFixed(0)} records/s | decisions ${[...byAction].map(([a, n]) => `${a}=${n}`).join(' ') || 'none yet'} | dwell p99 (30 s) ${p99 === undefined ? '-' : `${(p99 * 1000).toFixed(0)} ms`} | ${app.url}/metrics`,
  );
}
