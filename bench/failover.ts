/**
 * Failover with and without standby replicas (issue 10):
 *
 *   npx tsx bench/failover.ts [--records 1000000] [--distinct N] [--partitions 6]
 *                             [--session-timeout-ms 10000] [--standby 0,1]
 *                             [--initial-rebalance-delay-ms 0] [--no-record]
 *
 * For each standby setting: fresh topics and state; `--records` preference records (3-8 entries
 * each, `--distinct` mailboxes, default records/2) on user-preferences, spread over the tasks; two
 * service processes (`node bin/um.mjs run`, UM_NUM_STANDBY_REPLICAS as given) restore and run;
 * with standbys, the bench waits until every standby has caught up. Then the instance `a` is
 * killed with SIGKILL and the survivor `b` is watched through GET /v1/tasks (every 50 ms) until it
 * runs every task:
 *  - killToAssignedMs: until `b` is assigned every task (bounded below by the session timeout:
 *    the group learns of a killed member only when its session expires);
 *  - assignedToRunningMs: from then until every task is RUNNING (the restore of the failed-over
 *    tasks: the whole state without a standby, the last moments' commits with one);
 *  - restoredRecords: records `b` restored for those tasks (um_restore_records_total).
 * Uses the local stack (one broker + registry; `--initial-rebalance-delay-ms` sets its
 * group.initial.rebalance.delay.ms, Kafka's default 3000, the tests' 0) unless KAFKA_BROKERS and
 * SCHEMA_REGISTRY_URL are set.
 * Appends a line (scenario `failover`) to bench/results.jsonl.
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
const log = (m: string) => process.stderr.write(`[failover] ${m}\n`);
const load = () => Math.round(loadavg()[0]! * 100) / 100;

interface TasksInfo {
  active: { task: string; state: string }[];
  standby: { task: string; lag: number; changelogs: { position: number; committed?: number }[] }[];
}

async function tasksOf(svc: ServiceProcess): Promise<TasksInfo | undefined> {
  try {
    const r = await fetch(`${svc.url}/v1/tasks`, { signal: AbortSignal.timeout(2000) });
    return r.ok ? ((await r.json()) as TasksInfo) : undefined;
  } catch {
    return undefined;
  }
}

async function waitFor(what: string, timeoutMs: number, cond: () => Promise<boolean>, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      records: { type: 'string', default: '1000000' },
      distinct: { type: 'string' },
      partitions: { type: 'string', default: '6' },
      'session-timeout-ms': { type: 'string', default: '10000' },
      standby: { type: 'string', default: '0,1' },
      'initial-rebalance-delay-ms': { type: 'string', default: '0' },
      'no-record': { type: 'boolean', default: false },
    },
  });
  const records = Number(values.records);
  const distinct = Number(values.distinct ?? Math.floor(records / 2));
  const partitions = Number(values.partitions);
  const sessionTimeoutMs = Number(values['session-timeout-ms']);
  const settings = values.standby.split(',').map(Number);
  const cleanups: (() => Promise<void>)[] = [];
  const results: Record<string, unknown>[] = [];
  try {
    const initialRebalanceDelayMs = Number(values['initial-rebalance-delay-ms']);
    const cluster = await benchCluster(cleanups, { initialRebalanceDelayMs });
    if (!process.env.KAFKA_BROKERS) log('local Kafka broker and schema registry started');
    for (const standby of settings) {
      const { id, stateRoot, env, traffic, workload } = await benchApp(
        'failover',
        cluster,
        partitions,
        {
          UM_PARITY: 'false',
          UM_SESSION_TIMEOUT_MS: String(sessionTimeoutMs),
          UM_NUM_STANDBY_REPLICAS: String(standby),
        },
        cleanups,
      );
      await traffic.seed(0);
      let t = performance.now();
      const produced = await traffic.producePreferences(workload.restorePreferences(records, distinct, Date.now()), {
        batchSize: 10_000,
        inFlight: 8,
      });
      await traffic.stop();
      log(
        `standby=${standby}: ${produced.records} preference records (${distinct} mailboxes) in ${((performance.now() - t) / 1000).toFixed(1)} s`,
      );
      const start = async (name: string): Promise<ServiceProcess> => {
        const port = await freePort();
        const svc = spawnService({
          env: { ...env, UM_INSTANCE_ID: name, UM_STATE_DIR: join(stateRoot, name), UM_HTTP_PORT: String(port) },
          httpPort: port,
        });
        cleanups.push(() => svc.stop());
        return svc;
      };
      const a = await start(`${id}-a`);
      const b = await start(`${id}-b`);
      t = performance.now();
      await waitFor('both instances ready', 900_000, async () => (await a.ready()) && (await b.ready()), 500);
      const bothReadyS = (performance.now() - t) / 1000;
      const before = await tasksOf(b);
      if (standby > 0)
        await waitFor('the standby tasks to catch up', 300_000, async () => {
          const x = await tasksOf(b);
          return (
            !!x &&
            x.standby.length > 0 &&
            x.standby.every((s) => s.lag === 0 && s.changelogs.every((c) => c.committed !== undefined))
          );
        });
      const bTasks = await tasksOf(b);
      const restoredBefore = sumOf((await b.metrics()) ?? [], 'um_restore_records_total');
      log(
        `standby=${standby}: both ready after ${bothReadyS.toFixed(1)} s; b runs ${bTasks?.active.length} tasks, ` +
          `holds ${bTasks?.standby.length} standbys; killing a (load ${load()})`,
      );
      const loadBefore = load();
      const killedAt = performance.now();
      process.kill(a.pid, 'SIGKILL');
      await a.exited;
      let assignedAt: number | undefined;
      let runningAt: number | undefined;
      while (runningAt === undefined) {
        const x = await tasksOf(b);
        const now = performance.now();
        if (now - killedAt > 300_000) throw new Error('the survivor did not take every task within 300 s');
        if (x && x.active.length === partitions) {
          assignedAt ??= now;
          if (x.active.every((s) => s.state === 'RUNNING')) runningAt = now;
        }
        if (runningAt === undefined) await sleep(50);
      }
      const restoredAfter = sumOf((await b.metrics()) ?? [], 'um_restore_records_total');
      const r = {
        standby,
        records,
        distinct,
        partitions,
        sessionTimeoutMs,
        tasksOnSurvivorBefore: before?.active.length,
        standbysOnSurvivorBefore: bTasks?.standby.length,
        killToAssignedMs: Math.round(assignedAt! - killedAt),
        assignedToRunningMs: Math.round(runningAt - assignedAt!),
        killToRunningMs: Math.round(runningAt - killedAt),
        restoredRecords: restoredAfter - restoredBefore,
        loadAvg1mBefore: loadBefore,
        loadAvg1mAfter: load(),
      };
      log(JSON.stringify(r));
      results.push(r);
      await b.stop();
    }
    console.log('failover (kill -9 of one of two instances; times on the survivor):');
    for (const r of results)
      console.log(
        `  standby=${r.standby}: kill -> assigned ${r.killToAssignedMs} ms, assigned -> all tasks RUNNING ${r.assignedToRunningMs} ms ` +
          `(kill -> RUNNING ${r.killToRunningMs} ms), ${r.restoredRecords} records restored; load ${r.loadAvg1mBefore}`,
      );
    if (!values['no-record'])
      appendFileSync(
        join(here, 'results.jsonl'),
        `${JSON.stringify({ schemaVersion: 2, scenario: 'failover', at: new Date().toISOString(), cpus: cpus().length, initialRebalanceDelayMs, results })}\n`,
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
