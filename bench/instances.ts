/**
 * Several instances started together on pre-produced input (issue 11: "no work done twice when
 * instances start together; the work split evenly"):
 *
 *   npx tsx bench/instances.ts [--instances 2] [--events 200000] [--partitions 6] [--stagger-ms 0] [--no-record]
 *
 * Produces `--events` mail events (plus ~5% interactions, half the mailboxes seeded), then starts
 * `--instances` service processes at once (`node bin/um.mjs run`, fresh state, UM_PARITY=false),
 * and waits until every mail is decided. Reports, from each instance's /metrics and /proc: the mails
 * it decided, its CPU seconds, and in total the decisions beyond one per mail (work done twice, at
 * start-up rebalances) and events/s from the first spawn to the last decision.
 * Uses the local stack unless KAFKA_BROKERS and SCHEMA_REGISTRY_URL are set; appends a line
 * (scenario `instances`) to bench/results.jsonl.
 */
import { appendFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '../scripts/kafka/local.js';
import { benchApp, benchCluster } from './app-setup.js';
import { spawnService, sumOf, type ServiceProcess } from './service-process.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (m: string) => process.stderr.write(`[instances] ${m}\n`);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      instances: { type: 'string', default: '2' },
      events: { type: 'string', default: '200000' },
      partitions: { type: 'string', default: '6' },
      /** start each instance this long after the previous one (0: all at once) */
      'stagger-ms': { type: 'string', default: '0' },
      /**
       * the local broker's group.initial.rebalance.delay.ms (Kafka's default 3000: instances that
       * start within it join in one rebalance; the tests' local stack uses 0)
       */
      'initial-rebalance-delay-ms': { type: 'string', default: '3000' },
      'no-record': { type: 'boolean', default: false },
    },
  });
  const n = Number(values.instances);
  const events = Number(values.events);
  const partitions = Number(values.partitions);
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const cluster = await benchCluster(cleanups, {
      initialRebalanceDelayMs: Number(values['initial-rebalance-delay-ms']),
    });
    const { id, stateRoot, env, traffic, kafka, topics } = await benchApp(
      'inst',
      cluster,
      partitions,
      { UM_PARITY: process.env.UM_PARITY ?? 'false' },
      cleanups,
    );
    await traffic.seed(0.5);
    const produced = await traffic.produceMany(events, { batchSize: 2000, inFlight: 4 });
    await traffic.stop();
    log(`pre-produced ${produced.mails} mails + ${produced.interactions} interactions; starting ${n} instances`);
    const loadBefore = Math.round(loadavg()[0]! * 100) / 100;
    const svcs: ServiceProcess[] = [];
    const stagger = Number(values['stagger-ms']);
    for (let i = 0; i < n; i++) {
      if (i > 0 && stagger > 0) await sleep(stagger);
      const port = await freePort();
      const svc = spawnService({
        env: {
          ...env,
          UM_INSTANCE_ID: `${id}-${i}`,
          UM_STATE_DIR: join(stateRoot, `i${i}`),
          UM_HTTP_PORT: String(port),
        },
        httpPort: port,
      });
      cleanups.push(() => svc.stop());
      svcs.push(svc);
    }
    const t0 = Math.min(...svcs.map((s) => s.spawnedAt));
    let decided: number[] = svcs.map(() => 0);
    let doneAt: number | undefined;
    const deadline = Date.now() + 900_000;
    while (doneAt === undefined) {
      if (Date.now() > deadline) throw new Error('not every mail decided within 900 s');
      decided = await Promise.all(svcs.map(async (s) => sumOf((await s.metrics()) ?? [], 'um_decisions_total')));
      // every mail decided once at least (decisions beyond that are work done twice)
      if (decided.reduce((a, b) => a + b, 0) >= produced.mails) {
        await sleep(3000); // let re-processing, if any, show in the counts
        decided = await Promise.all(svcs.map(async (s) => sumOf((await s.metrics()) ?? [], 'um_decisions_total')));
        doneAt = performance.now() - 3000;
      } else await sleep(200);
    }
    const secs = (doneAt - t0) / 1000;
    // the topics, as the broker holds them: mails in, decisions out (LIVE and SHADOW)
    const admin = kafka.admin();
    await admin.connect();
    const held = async (topic: string) =>
      (await admin.fetchTopicOffsets(topic)).reduce((a, p) => a + Number(p.high) - Number(p.low), 0);
    const inTopics = {
      mailEvents: await held(topics.mailEvents),
      decisions: (await held(topics.mailDecisions)) + (await held(topics.mailDecisionsShadow)),
    };
    await admin.disconnect();
    const total = decided.reduce((a, b) => a + b, 0);
    const r = {
      instances: n,
      mails: produced.mails,
      interactions: produced.interactions,
      partitions,
      decidedPerInstance: decided,
      cpuSecondsPerInstance: svcs.map((s) => Math.round(s.proc.cpuSeconds * 10) / 10),
      peakRssMiBPerInstance: svcs.map((s) => Math.round(s.proc.peakRssMiB)),
      decisionsBeyondOnePerMail: total - produced.mails,
      inTopics,
      eventsPerSecFromSpawn: Math.round((produced.mails + produced.interactions) / secs),
      loadAvg1mBefore: loadBefore,
      staggerMs: stagger,
      initialRebalanceDelayMs: Number(values['initial-rebalance-delay-ms']),
    };
    console.log(JSON.stringify(r));
    if (!values['no-record'])
      appendFileSync(
        join(here, 'results.jsonl'),
        `${JSON.stringify({ schemaVersion: 2, scenario: 'instances', at: new Date().toISOString(), cpus: cpus().length, ...r })}\n`,
      );
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
