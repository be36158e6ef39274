/**
 * Benchmarks of the migration toolkit (npx tsx bench/migration.ts [--events N] [--ingest N]):
 *
 *  - parity off vs on: N mail events pre-produced (Workload, seed 42), and for "on" also one
 *    legacy decision per mail (the simulated legacy system of the demo, 1% disagreement, 2 s
 *    later in event time): the legacy stream at the same rate. One instance (SHADOW), 6
 *    partitions; decisions/s = N / (time from the engine RUNNING to the last decision).
 *  - ingest: events/s accepted by POST /v1/mail-events (202 after the broker acknowledged), with
 *    8 concurrent clients posting batches of 500, and with single-event requests.
 *
 * Uses KAFKA_BROKERS / SCHEMA_REGISTRY_URL when set, else starts the local stack. Prints one
 * JSON object per scenario.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Partitioners } from 'kafkajs';
import pino from 'pino';
import { ensureTopics, kafkaFor, registryFor, startApp, type App } from '../cli/app.js';
import { loadConfig, type AppConfig } from '../cli/config.js';
import { legacyDecision } from '../cli/legacy-sim.js';
import type { MailEvent } from '../processors/logic/model.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { startLocalStack, type LocalStack } from '../scripts/kafka/local.js';
import { Workload } from '../demo/traffic.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    ingest: { type: 'string', default: '50000' },
    only: { type: 'string' },
  },
});
const EVENTS = Number(values.events);
const INGEST = Number(values.ingest);
const log = (m: string): void => void process.stderr.write(`[bench] ${m}\n`);

async function sumMetric(
  app: App,
  name: string,
  filter?: (l: Partial<Record<string, string | number>>) => boolean,
): Promise<number> {
  const m = await app.streams.metrics.registry.getSingleMetric(name)?.get();
  return m?.values.filter((v) => !filter || filter(v.labels)).reduce((n, v) => n + v.value, 0) ?? 0;
}

function config(
  brokers: string[],
  registryUrl: string,
  id: string,
  stateDir: string,
  env: Record<string, string>,
): AppConfig {
  return loadConfig({
    KAFKA_BROKERS: brokers.join(','),
    SCHEMA_REGISTRY_URL: registryUrl,
    UM_APP_ID: id,
    UM_TOPIC_PREFIX: `${id}-`,
    UM_STATE_DIR: join(stateDir, id),
    UM_INSTANCE_ID: `${id}-i1`,
    UM_PARTITIONS: '6',
    UM_HTTP_HOST: '127.0.0.1',
    UM_HTTP_PORT: '0',
    UM_LOG_LEVEL: 'warn',
    ...env,
  });
}

async function parity(
  brokers: string[],
  registryUrl: string,
  stateDir: string,
  on: boolean,
): Promise<Record<string, unknown>> {
  const id = `bench-mig-${on ? 'on' : 'off'}-${Date.now().toString(36)}`;
  const cfg = config(brokers, registryUrl, id, stateDir, { UM_PARITY: String(on) });
  const kafka = kafkaFor(cfg, `${id}-bench`);
  await ensureTopics(kafka, cfg);
  const topics = topicNames(cfg.topicPrefix);
  const serdes = mailSerdes(registryFor(cfg), topics);
  await Promise.all([serdes.mailEvents.init(), serdes.legacyDecisions.init()]);
  const workload = new Workload({ seed: 42, startTime: Date.now() - 3_600_000 });
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  const t0 = performance.now();
  for (let i = 0; i < EVENTS; i += 2000) {
    const mails: MailEvent[] = [];
    for (let j = i; j < Math.min(EVENTS, i + 2000); j++) mails.push(workload.nextMail());
    const topicMessages = [
      {
        topic: topics.mailEvents,
        messages: mails.map((m) => ({
          key: m.mailboxId,
          value: serdes.mailEvents.serialize(topics.mailEvents, m),
          timestamp: String(m.receivedAt),
        })),
      },
    ];
    if (on)
      topicMessages.push({
        topic: topics.legacyDecisions,
        messages: mails.map((m) => {
          const l = legacyDecision(m, 0.01, 2000);
          return {
            key: l.mailboxId,
            value: serdes.legacyDecisions.serialize(topics.legacyDecisions, l),
            timestamp: String(l.decidedAt),
          };
        }),
      });
    await producer.sendBatch({ acks: -1, topicMessages });
  }
  await producer.disconnect();
  log(
    `parity ${on ? 'on' : 'off'}: pre-produced ${EVENTS} mails${on ? ` + ${EVENTS} legacy decisions` : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const app = await startApp(cfg, { logger: pino({ level: 'warn' }), http: false });
  try {
    let runningAt: number | undefined;
    const deadline = Date.now() + 600_000;
    for (;;) {
      if (runningAt === undefined && app.streams.state === 'RUNNING') runningAt = performance.now();
      const decisions = await sumMetric(app, 'um_decisions_total');
      const legacy = on
        ? await sumMetric(app, 'um_records_consumed_total', (l) => l.topic === topics.legacyDecisions)
        : EVENTS;
      if (decisions >= EVENTS && legacy >= EVENTS) break;
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 50));
    }
    const secs = (performance.now() - runningAt!) / 1000;
    const results = on ? await sumMetric(app, 'um_parity_results_total') : 0;
    const matched = on ? await sumMetric(app, 'um_parity_results_total', (l) => l.result === 'MATCH') : 0;
    return {
      scenario: `parity-${on ? 'on' : 'off'}`,
      mails: EVENTS,
      legacyRecords: on ? EVENTS : 0,
      seconds: Number(secs.toFixed(2)),
      decisionsPerSecond: Math.round(EVENTS / secs),
      recordsPerSecond: Math.round(((on ? 2 : 1) * EVENTS) / secs),
      parityComparedSoFar: results,
      parityMatched: matched,
    };
  } finally {
    await app.close();
  }
}

async function ingest(brokers: string[], registryUrl: string, stateDir: string): Promise<Record<string, unknown>[]> {
  const id = `bench-ing-${Date.now().toString(36)}`;
  const cfg = config(brokers, registryUrl, id, stateDir, { UM_PARITY: 'false' });
  await ensureTopics(kafkaFor(cfg, `${id}-bench`), cfg);
  const app = await startApp(cfg, { logger: pino({ level: 'warn' }) });
  const workload = new Workload({ seed: 7 });
  const out: Record<string, unknown>[] = [];
  try {
    for (const [batch, clients, total] of [
      [500, 8, INGEST],
      [1, 16, Math.min(INGEST, 5000)],
    ] as const) {
      const bodies: string[] = [];
      for (let i = 0; i < total; i += batch)
        bodies.push(
          JSON.stringify(Array.from({ length: Math.min(batch, total - i) }, () => workload.nextMail(Date.now()))),
        );
      let next = 0;
      let accepted = 0;
      let refused = 0;
      const lat: number[] = [];
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (next < bodies.length) {
            const body = bodies[next++]!;
            const s = performance.now();
            const r = await fetch(`${app.url}/v1/mail-events`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body,
            });
            const j = (await r.json()) as { accepted?: number };
            lat.push(performance.now() - s);
            if (r.status === 202) accepted += j.accepted ?? 0;
            else refused++;
          }
        }),
      );
      const secs = (performance.now() - t0) / 1000;
      lat.sort((a, b) => a - b);
      out.push({
        scenario: `ingest-batch-${batch}`,
        clients,
        events: total,
        accepted,
        refusedRequests: refused,
        seconds: Number(secs.toFixed(2)),
        acceptedEventsPerSecond: Math.round(accepted / secs),
        requestP50Ms: Number(lat[Math.floor(lat.length * 0.5)]!.toFixed(1)),
        requestP99Ms: Number(lat[Math.floor(lat.length * 0.99)]!.toFixed(1)),
      });
    }
  } finally {
    await app.close();
  }
  return out;
}

async function main(): Promise<void> {
  let stack: LocalStack | undefined;
  let brokers = process.env.KAFKA_BROKERS?.split(',');
  let registryUrl = process.env.SCHEMA_REGISTRY_URL;
  if (!brokers || !registryUrl) {
    log('starting the local Kafka and registry');
    stack = await startLocalStack({ nodes: 1 });
    brokers = stack.brokers;
    registryUrl = stack.registryUrl;
  }
  const stateDir = mkdtempSync(join(tmpdir(), 'um-bench-mig-'));
  try {
    const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, loadavg: loadavg().map((x) => Number(x.toFixed(2))) };
    console.log(JSON.stringify({ machine, date: new Date().toISOString() }));
    if (values.only !== 'ingest')
      for (const on of [false, true]) console.log(JSON.stringify(await parity(brokers, registryUrl, stateDir, on)));
    if (values.only !== 'parity')
      for (const r of await ingest(brokers, registryUrl, stateDir)) console.log(JSON.stringify(r));
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
    await stack?.stop();
  }
}

await main();
