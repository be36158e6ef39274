/**
 * Client cost (issue 11): produce-only and consume-only rates of kafkajs and @platformatic/kafka,
 * through the narrow client interface of runtime/client (types.ts), against a real broker.
 *
 *   npx tsx bench/clients.ts [--records N] [--value-bytes B] [--partitions P]
 *                            [--client kafkajs|platformatic|both] [--rounds R] [--no-record]
 *
 * Uses KAFKA_BROKERS when set, else starts one local KRaft broker (scripts/kafka/local.ts, as
 * bench/run.ts does; no registry: nothing here is Avro). For every round and client, interleaved
 * (kafkajs, platformatic, kafkajs, platformatic, ...), on a fresh random-named topic:
 *
 * - produce: the same N records (key `key-<i>`, a random value of B bytes, partition i mod P), sent
 *   in batches cut as the engine's record collector cuts them (at most 10,000 records and 900 KiB
 *   per request, sizes from its recordSizeUpperBound), one request in flight, through an idempotent
 *   producer with acks=all; timed from the first send to the last acknowledgement (the producer is
 *   connected and has its producer id before, through a one-record send to a warm-up topic);
 * - consume: a new reader (fresh group) from offset 0 of every partition to the end; timed from
 *   start() (so including kafkajs' group join), and also after the first batch (the records after
 *   it over the time after it); the records are counted and their bytes summed, nothing else.
 *
 * CPU is this process's (process.cpuUsage, user + system) over each timed phase, per record: the
 * client's work on the one JavaScript thread, plus its few helper threads (GC, libuv). The load
 * average is printed with every figure (the machine is shared). Prints a table of medians and
 * appends one line to bench/results.jsonl (scenario `clients`, schemaVersion 2).
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { arch, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { KafkajsClient } from '../runtime/client/kafkajs-client.js';
import { PlatformaticClient } from '../runtime/client/platformatic-client.js';
import type { OutgoingRecord, StreamClient } from '../runtime/client/types.js';
import { recordSizeUpperBound } from '../runtime/record-collector.js';
import { startKafka, type LocalKafka } from '../scripts/kafka/local.js';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';

const HELP = `Usage: npx tsx bench/clients.ts [options]

Produce-only and consume-only rates of kafkajs and @platformatic/kafka through runtime/client,
interleaved over rounds; medians. Uses KAFKA_BROKERS, else starts a local broker.

Options
  --records N        records per run (default 200000)
  --value-bytes B    value size (default 200)
  --partitions P     partitions of each topic (default 6)
  --client C         kafkajs | platformatic | both (default both)
  --rounds R         runs of each client, interleaved (default 3)
  --no-record        do not append to bench/results.jsonl
  -h, --help         this text
`;

type ClientName = 'kafkajs' | 'platformatic';

interface Options {
  records: number;
  valueBytes: number;
  partitions: number;
  clients: ClientName[];
  rounds: number;
  record: boolean;
}

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      records: { type: 'string' },
      'value-bytes': { type: 'string' },
      partitions: { type: 'string' },
      client: { type: 'string' },
      rounds: { type: 'string' },
      'no-record': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return undefined;
  }
  const int = (name: string, v: string | undefined, def: number, min: number): number => {
    if (v === undefined) return def;
    const n = Number(v.replace(/_/g, ''));
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v}`);
    return n;
  };
  const c = values.client ?? 'both';
  if (c !== 'kafkajs' && c !== 'platformatic' && c !== 'both')
    throw new Error(`--client must be kafkajs, platformatic or both, got ${c}`);
  return {
    records: int('records', values.records, 200_000, 1),
    valueBytes: int('value-bytes', values['value-bytes'], 200, 0),
    partitions: int('partitions', values.partitions, 6, 1),
    clients: c === 'both' ? ['kafkajs', 'platformatic'] : [c],
    rounds: int('rounds', values.rounds, 3, 1),
    record: !values['no-record'],
  };
}

// ---------------------------------------------------------------------------------------------

const log = (msg: string): void => {
  process.stderr.write(`[clients ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};
const round = (x: number, d = 0): number => Math.round(x * 10 ** d) / 10 ** d;
const load1 = (): number => round(loadavg()[0]!, 2);
const loadStr = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const fmt = (n: number, d = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const cpuMicros = (c: NodeJS.CpuUsage): number => c.user + c.system;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The engine's record collector cuts requests at 10,000 records or 900 KiB (upper-bound sizes). */
const MAX_BATCH_RECORDS = 10_000;
const MAX_REQUEST_BYTES = 900 * 1024;

function workload(opts: Options): { records: Omit<OutgoingRecord, 'topic'>[]; payloadBytes: number } {
  const records: Omit<OutgoingRecord, 'topic'>[] = new Array(opts.records);
  const values = randomBytes(opts.records * opts.valueBytes);
  const now = Date.now();
  let payloadBytes = 0;
  for (let i = 0; i < opts.records; i++) {
    const key = Buffer.from(`key-${i}`);
    const value = values.subarray(i * opts.valueBytes, (i + 1) * opts.valueBytes);
    payloadBytes += key.length + value.length;
    records[i] = { partition: i % opts.partitions, key, value, timestamp: now + i };
  }
  return { records, payloadBytes };
}

function batches(records: readonly OutgoingRecord[]): OutgoingRecord[][] {
  const out: OutgoingRecord[][] = [];
  let cur: OutgoingRecord[] = [];
  let bytes = 0;
  for (const r of records) {
    const b = recordSizeUpperBound(r);
    if (cur.length >= MAX_BATCH_RECORDS || (cur.length > 0 && bytes + b > MAX_REQUEST_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += b;
  }
  if (cur.length) out.push(cur);
  return out;
}

interface PhaseResult {
  loadAvg1mBefore: number;
  seconds: number;
  recordsPerSec: number;
  cpuSeconds: number;
  cpuMicrosPerRecord: number;
}

interface ProduceResult extends PhaseResult {
  requests: number;
  mbPerSec: number;
}

interface ConsumeResult extends PhaseResult {
  records: number;
  secondsToFirstBatch: number;
  /** null when everything came in the first batch */
  recordsPerSecAfterFirstBatch: number | null;
  cpuMicrosPerRecordAfterFirstBatch: number | null;
  batches: number;
}

interface Run {
  round: number;
  client: ClientName;
  topic: string;
  produce: ProduceResult;
  consume: ConsumeResult;
}

function makeClient(name: ClientName, brokers: string[], id: string): StreamClient {
  const config = { clientId: `${id}-${name}`, brokers };
  return name === 'kafkajs' ? new KafkajsClient(config) : new PlatformaticClient(config);
}

async function runOnce(
  name: ClientName,
  roundNo: number,
  ctx: {
    brokers: string[];
    id: string;
    kafka: Kafka;
    opts: Options;
    base: Omit<OutgoingRecord, 'topic'>[];
    payloadBytes: number;
    warmTopic: string;
  },
): Promise<Run> {
  const { opts } = ctx;
  const topic = `${ctx.id}-${name}-${roundNo}`;
  const admin = ctx.kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: opts.partitions }] });
  } finally {
    await admin.disconnect();
  }
  const records: OutgoingRecord[] = ctx.base.map((r) => ({ ...r, topic }));
  const reqs = batches(records);
  const client = makeClient(name, ctx.brokers, ctx.id);
  try {
    // ---- produce
    const producer = await client.producer();
    // connect and get the producer id outside the timed window
    await producer.send([
      { topic: ctx.warmTopic, partition: 0, key: null, value: Buffer.alloc(1), timestamp: Date.now() },
    ]);
    const pLoad = load1();
    const pCpu0 = process.cpuUsage();
    const pT0 = performance.now();
    let acked = 0;
    for (const b of reqs) for (const a of await producer.send(b)) acked += a.count;
    const pSecs = (performance.now() - pT0) / 1000;
    const pCpu = cpuMicros(process.cpuUsage(pCpu0));
    await producer.close();
    if (acked !== records.length) throw new Error(`${name}: ${acked} of ${records.length} records acknowledged`);
    const produce: ProduceResult = {
      loadAvg1mBefore: pLoad,
      requests: reqs.length,
      seconds: round(pSecs, 3),
      recordsPerSec: Math.round(records.length / pSecs),
      mbPerSec: round(ctx.payloadBytes / pSecs / 1e6, 2),
      cpuSeconds: round(pCpu / 1e6, 3),
      cpuMicrosPerRecord: round(pCpu / records.length, 2),
    };
    log(
      `${name} round ${roundNo} produce: ${fmt(produce.recordsPerSec)} records/s, ${produce.mbPerSec} MB/s, ` +
        `${produce.cpuMicrosPerRecord} µs CPU/record (${reqs.length} requests, ${produce.seconds} s) | load ${loadStr()}`,
    );

    // ---- consume
    const reader = await client.reader({ groupId: `${topic}-reader` });
    const cLoad = load1();
    let count = 0;
    let bytes = 0;
    let nBatches = 0;
    let tFirst = 0;
    let firstCount = 0;
    let cpuFirst: NodeJS.CpuUsage | undefined;
    const cCpu0 = process.cpuUsage();
    const cT0 = performance.now();
    let finish!: () => void;
    const finished = new Promise<void>((res) => (finish = res));
    reader.start(
      Array.from({ length: opts.partitions }, (_, partition) => ({ topic, partition, offset: 0 })),
      (b) => {
        if (!cpuFirst && b.records.length) {
          tFirst = performance.now();
          cpuFirst = process.cpuUsage();
          firstCount = b.records.length;
        }
        nBatches++;
        for (const r of b.records) bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
        count += b.records.length;
        if (count >= records.length) finish();
      },
    );
    await Promise.race([finished, reader.done]);
    const cT1 = performance.now();
    const cCpu = cpuMicros(process.cpuUsage(cCpu0));
    const cCpuFromFirst = cpuFirst ? cpuMicros(process.cpuUsage(cpuFirst)) : cCpu;
    await reader.stop();
    await reader.done;
    if (count !== records.length || bytes !== ctx.payloadBytes)
      throw new Error(
        `${name}: read ${count} records / ${bytes} bytes, expected ${records.length} / ${ctx.payloadBytes}`,
      );
    const cSecs = (cT1 - cT0) / 1000;
    // after the first batch: the records that came after it, over the time after it
    const afterFirst = count - firstCount;
    const fromFirst = (cT1 - tFirst) / 1000;
    const consume: ConsumeResult = {
      loadAvg1mBefore: cLoad,
      records: count,
      batches: nBatches,
      seconds: round(cSecs, 3),
      secondsToFirstBatch: round((tFirst - cT0) / 1000, 3),
      recordsPerSec: Math.round(count / cSecs),
      recordsPerSecAfterFirstBatch: afterFirst > 0 ? Math.round(afterFirst / fromFirst) : null,
      cpuSeconds: round(cCpu / 1e6, 3),
      cpuMicrosPerRecord: round(cCpu / count, 2),
      cpuMicrosPerRecordAfterFirstBatch: afterFirst > 0 ? round(cCpuFromFirst / afterFirst, 2) : null,
    };
    log(
      `${name} round ${roundNo} consume: ${fmt(consume.recordsPerSec)} records/s from start ` +
        `(${consume.recordsPerSecAfterFirstBatch === null ? 'all in the first batch' : `${fmt(consume.recordsPerSecAfterFirstBatch)} after the first batch`}, ${consume.secondsToFirstBatch} s to it), ` +
        `${consume.cpuMicrosPerRecord} µs CPU/record (${nBatches} batches) | load ${loadStr()}`,
    );
    return { round: roundNo, client: name, topic, produce, consume };
  } finally {
    await client.close();
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  if (!opts) return;
  const loadAtStart = load1();
  log(`load average at start: ${loadStr()}`);
  const cleanups: (() => Promise<void>)[] = [];
  const cleanUp = async (): Promise<void> => {
    while (cleanups.length) await cleanups.pop()!().catch((e) => log(`clean-up: ${(e as Error).message}`));
  };
  process.once('SIGINT', () => void cleanUp().then(() => process.exit(130)));
  try {
    let brokers = process.env.KAFKA_BROKERS?.split(',').filter(Boolean);
    let local: LocalKafka | undefined;
    if (!brokers?.length) {
      log('starting a local Kafka broker (scripts/kafka/local.ts)...');
      local = await startKafka({ nodes: 1 });
      const l = local;
      cleanups.push(async () => {
        log('stopping the local broker');
        await l.stop();
      });
      brokers = local.brokers;
    }
    const id = `bench-clients-${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`;
    const kafka = new Kafka({ clientId: id, brokers, logLevel: logLevel.NOTHING });
    const warmTopic = `${id}-warm-up`;
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: warmTopic, numPartitions: 1 }] });
    await admin.disconnect();
    if (!local)
      cleanups.push(async () => {
        const a = kafka.admin();
        await a.connect();
        try {
          const mine = (await a.listTopics()).filter((t) => t.startsWith(id));
          if (mine.length) await a.deleteTopics({ topics: mine });
          log(`deleted ${mine.length} topics`);
        } finally {
          await a.disconnect();
        }
      });
    const { records: base, payloadBytes } = workload(opts);
    log(
      `${fmt(opts.records)} records of ${opts.valueBytes}-byte values, ${opts.partitions} partitions, ` +
        `${batches(base.map((r) => ({ ...r, topic: 'x' }))).length} requests per produce run, ` +
        `clients ${opts.clients.join(', ')} × ${opts.rounds} rounds, interleaved`,
    );
    const loadBefore = load1();
    const runs: Run[] = [];
    for (let r = 1; r <= opts.rounds; r++)
      for (const c of opts.clients)
        runs.push(await runOnce(c, r, { brokers, id, kafka, opts, base, payloadBytes, warmTopic }));

    // ---- medians
    const summary: Record<string, unknown> = {};
    const rows: string[][] = [];
    for (const c of opts.clients) {
      const mine = runs.filter((x) => x.client === c);
      const m = (f: (x: Run) => number | null, d = 0): number | null => {
        const xs = mine.map(f).filter((x): x is number => x !== null);
        return xs.length ? round(median(xs), d) : null;
      };
      const s = {
        runs: mine.length,
        produceRecordsPerSec: m((x) => x.produce.recordsPerSec),
        produceMBPerSec: m((x) => x.produce.mbPerSec, 2),
        produceCpuMicrosPerRecord: m((x) => x.produce.cpuMicrosPerRecord, 2),
        consumeRecordsPerSec: m((x) => x.consume.recordsPerSec),
        consumeRecordsPerSecAfterFirstBatch: m((x) => x.consume.recordsPerSecAfterFirstBatch),
        consumeSecondsToFirstBatch: m((x) => x.consume.secondsToFirstBatch, 3),
        consumeCpuMicrosPerRecord: m((x) => x.consume.cpuMicrosPerRecord, 2),
        consumeCpuMicrosPerRecordAfterFirstBatch: m((x) => x.consume.cpuMicrosPerRecordAfterFirstBatch, 2),
      };
      summary[c] = s;
      const f = (x: number | null, d = 0): string => (x === null ? '-' : fmt(x, d));
      rows.push([
        c,
        f(s.produceRecordsPerSec),
        f(s.produceMBPerSec, 2),
        f(s.produceCpuMicrosPerRecord, 2),
        f(s.consumeRecordsPerSec),
        f(s.consumeRecordsPerSecAfterFirstBatch),
        f(s.consumeSecondsToFirstBatch, 2),
        f(s.consumeCpuMicrosPerRecord, 2),
      ]);
    }
    const loadAtEnd = load1();
    const head = [
      'client',
      'produce rec/s',
      'produce MB/s',
      'produce µs CPU/rec',
      'consume rec/s',
      'consume rec/s after 1st batch',
      's to 1st batch',
      'consume µs CPU/rec',
    ];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => cells.map((x, i) => x.padStart(widths[i]!)).join('  ');
    console.log(
      `\nclients: medians of ${opts.rounds} interleaved run(s) each; ${fmt(opts.records)} records, ` +
        `${opts.valueBytes}-byte values, ${opts.partitions} partitions; acks=all, idempotent`,
    );
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    console.log(
      `load average (1/5/15 min): at start ${loadAtStart}, before the first run ${loadBefore}, at end ${loadStr()}` +
        ` (each run's in the log lines above)`,
    );
    const k = summary.kafkajs as Record<string, number | null> | undefined;
    const p = summary.platformatic as Record<string, number | null> | undefined;
    const ratio = (name: string): number | null => {
      const a = p?.[name];
      const b = k?.[name];
      return typeof a === 'number' && typeof b === 'number' && b > 0 ? round(a / b, 2) : null;
    };
    const ratios =
      k && p
        ? {
            produceRecordsPerSec: ratio('produceRecordsPerSec'),
            produceCpuMicrosPerRecord: ratio('produceCpuMicrosPerRecord'),
            consumeRecordsPerSec: ratio('consumeRecordsPerSec'),
            consumeRecordsPerSecAfterFirstBatch: ratio('consumeRecordsPerSecAfterFirstBatch'),
            consumeCpuMicrosPerRecord: ratio('consumeCpuMicrosPerRecord'),
          }
        : undefined;
    if (ratios) console.log(`platformatic / kafkajs: ${JSON.stringify(ratios)}`);

    if (opts.record) {
      const c = cpus();
      const result = {
        // the layout version of a bench/results.jsonl line (see bench/run.ts)
        schemaVersion: 2,
        scenario: 'clients',
        loadAvg1mAtStart: loadAtStart,
        loadAvg1mBeforeMeasurement: loadBefore,
        command: `npx tsx bench/clients.ts ${process.argv.slice(2).join(' ')}`.trim(),
        date: new Date().toISOString(),
        machine: {
          cpus: c.length,
          cpuModel: c[0]?.model.trim(),
          totalMemGiB: round(totalmem() / 1024 ** 3, 1),
          os: `${platform()} ${release()} ${arch()}`,
          node: process.version,
          loadAvg1mAtEnd: loadAtEnd,
        },
        cluster: local ? 'local broker (1 KRaft node, loopback)' : 'KAFKA_BROKERS',
        partitions: opts.partitions,
        options: { ...opts, clients: opts.clients },
        figures: {
          producer: {
            acks: -1,
            idempotent: true,
            inFlight: 1,
            maxBatchRecords: MAX_BATCH_RECORDS,
            maxRequestBytes: MAX_REQUEST_BYTES,
          },
          medians: summary,
          platformaticOverKafkajs: ratios,
          runs,
        },
      };
      appendFileSync(join(import.meta.dirname, 'results.jsonl'), `${JSON.stringify(result)}\n`);
      log('appended to bench/results.jsonl');
    }
  } finally {
    await cleanUp();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
