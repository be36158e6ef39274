/**
 * Runtime benchmark: the engine alone, with a trivial stateful topology (the seq topology of the
 * runtime tests: one RocksDB store, a read and a write per record, one output per record).
 *
 *   npx tsx bench/runtime.ts [--records 200000] [--keys 10000] [--partitions 6] [--restore 1000000]
 *
 * 1. throughput: N records are produced first, then one instance processes them; events/s is
 *    records / (time from the first processed record to the last).
 * 2. restore: M records are written straight to the store's changelog, then an instance with an
 *    empty state directory restores them; records/s is M / (time from start to RUNNING).
 * Uses KAFKA_BROKERS if set, else starts the local Kafka from scripts/kafka.
 */
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import pino from 'pino';
import { streamsConfig } from '../runtime/config.js';
import { KafkaStreams } from '../runtime/streams.js';
import { startKafka, type LocalKafka } from '../scripts/kafka/local.js';
import { seqTopology } from '../test/integration/fixtures/seq-topology.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

const { values: args } = parseArgs({
  options: {
    records: { type: 'string', default: '200000' },
    keys: { type: 'string', default: '10000' },
    partitions: { type: 'string', default: '6' },
    restore: { type: 'string', default: '1000000' },
  },
});
const RECORDS = Number(args.records);
const KEYS = Number(args.keys);
const PARTITIONS = Number(args.partitions);
const RESTORE = Number(args.restore);

let local: LocalKafka | undefined;
const brokers = process.env.KAFKA_BROKERS?.split(',') ?? (local = await startKafka()).brokers;
const kafka = new Kafka({ clientId: 'bench-runtime', brokers, logLevel: logLevel.NOTHING });
const admin = kafka.admin();
await admin.connect();
const stateRoot = mkdtempSync(join(tmpdir(), 'um-bench-rt-'));
const run = Date.now().toString(36);
const input = `bench-rt-in-${run}`;
const output = `bench-rt-out-${run}`;
await admin.createTopics({
  waitForLeaders: true,
  topics: [
    { topic: input, numPartitions: PARTITIONS },
    { topic: output, numPartitions: PARTITIONS },
  ],
});

let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 200);

async function produceAll(
  topic: string,
  n: number,
  make: (i: number) => { key: string; value: string },
  partition?: (i: number) => number,
): Promise<number> {
  const producer = kafka.producer();
  await producer.connect();
  const t0 = Date.now();
  const BATCH = 10_000;
  const inflight: Promise<unknown>[] = [];
  for (let i = 0; i < n; i += BATCH) {
    const messages = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) {
      const m = make(j);
      messages.push(partition ? { ...m, partition: partition(j) } : m);
    }
    inflight.push(producer.send({ topic, acks: -1, messages }));
    if (inflight.length >= 4) await inflight.shift();
  }
  await Promise.all(inflight);
  await producer.disconnect();
  return Date.now() - t0;
}

function app(appId: string): KafkaStreams {
  return new KafkaStreams(
    seqTopology(input, output, { cacheMaxEntries: 20_000 }),
    streamsConfig({
      applicationId: appId,
      brokers,
      stateDir: join(stateRoot, appId),
      commitIntervalMs: 1000,
      instanceId: 'bench',
    }),
    { logger: pino({ level: 'warn' }) },
  );
}

async function processed(s: KafkaStreams): Promise<number> {
  const m = await s.metrics.recordsProcessed.get();
  return m.values.reduce((n, v) => n + v.value, 0);
}

// 1. throughput
const seqs = new Map<number, number>();
const produceMs = await produceAll(input, RECORDS, (i) => {
  const k = i % KEYS;
  const seq = (seqs.get(k) ?? 0) + 1;
  seqs.set(k, seq);
  return { key: `key-${k}`, value: JSON.stringify({ seq }) };
});
console.log(`produced ${RECORDS} records in ${produceMs} ms`);
const loadAvg1mBefore = Math.round(loadavg()[0]! * 100) / 100;
console.log(`load average (1 min) before the measurements: ${loadAvg1mBefore}`);
const appId = `bench-rt-${run}`;
const s = app(appId);
const tStart = Date.now();
await s.start();
let tFirst = 0;
for (;;) {
  const n = await processed(s);
  if (n > 0 && !tFirst) tFirst = Date.now();
  if (n >= RECORDS) break;
  await new Promise((r) => setTimeout(r, 20));
}
const tDone = Date.now();
const throughput = Math.round((RECORDS * 1000) / (tDone - tFirst));
await s.close();
console.log(
  `throughput: ${RECORDS} records in ${tDone - tFirst} ms (start to first record ${tFirst - tStart} ms): ${throughput} records/s`,
);

// 2. restore: a changelog of RESTORE records (keys spread over the partitions), empty state
const restoreApp = `bench-rt-restore-${run}`;
const changelog = `${restoreApp}-seq-changelog`;
await admin.createTopics({
  waitForLeaders: true,
  topics: [
    { topic: changelog, numPartitions: PARTITIONS, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
  ],
});
const distinct = Math.min(RESTORE, 200_000);
const clMs = await produceAll(
  changelog,
  RESTORE,
  (i) => ({ key: `key-${i % distinct}`, value: JSON.stringify({ last: i, count: i, gaps: 0, dups: 0 }) }),
  // the changelog partition of a key is its task's partition: Kafka's default partitioner
  undefined,
);
console.log(`wrote ${RESTORE} changelog records in ${clMs} ms`);
const r = app(restoreApp);
const t0 = Date.now();
await r.start();
while (r.state !== 'RUNNING') await new Promise((res) => setTimeout(res, 20));
const restoreMs = Date.now() - t0;
const restored = r.restoreProgress().reduce((n, p) => n + p.restored, 0);
await r.close();
const restoreRate = Math.round((restored * 1000) / restoreMs);
console.log(`restore: ${restored} records in ${restoreMs} ms (start to RUNNING): ${restoreRate} records/s`);
clearInterval(sampler);
console.log(`peak RSS ${(peakRss / 1048576).toFixed(0)} MiB`);

const result = {
  // the layout version of a bench/results.jsonl line (see bench/run.ts)
  schemaVersion: 2,
  bench: 'runtime',
  loadAvg1mBefore,
  date: new Date().toISOString(),
  command: `npx tsx bench/runtime.ts ${process.argv.slice(2).join(' ')}`.trim(),
  machine: { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30) },
  records: RECORDS,
  keys: KEYS,
  partitions: PARTITIONS,
  throughputRecordsPerSec: throughput,
  restoreRecords: restored,
  restoreMs,
  restoreRecordsPerSec: restoreRate,
  peakRssMiB: Math.round(peakRss / 1048576),
};
appendFileSync(join(import.meta.dirname, 'results.jsonl'), `${JSON.stringify(result)}\n`);
await admin.disconnect();
await local?.stop();
rmSync(stateRoot, { recursive: true, force: true });
