/**
 * Issue 10, standby replicas. Two instances (separate processes) with UM_NUM_STANDBY_REPLICAS=1
 * process a scenario produced before start (seeded preferences, interactions, mails). Checked:
 *  - GET /v1/tasks: each instance runs 3 of the 6 tasks and holds standbys of the other 3, which
 *    catch up with the active tasks' commits (lag 0) and have applied changelog records;
 *  - kill -9 of one instance mid-stream: the survivor takes every task over from its standbys (it
 *    restores fewer records than its standbys had applied: the standbys' state is used, not
 *    rebuilt), and the outputs still equal the reference: every mail decided as the reference
 *    decides it (event-time order kept across the failover), every preference version the
 *    reference's, last preferences exact (duplicates from the at-least-once re-processing allowed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatReport } from '../engine/accounting.js';
import { checkRun, seededEnds } from '../engine/check.js';
import {
  createService,
  endOffsetSum,
  sendInteractions,
  sendMails,
  sendTables,
  waitDrained,
  withProducer,
} from '../engine/io.js';
import { batchScenario } from '../engine/scenario.js';
import { killAll, ServiceInstance } from '../engine/service.js';
import { brokers, registryUrl, uniqueName } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'um-engine-standby-'));
const instances: ServiceInstance[] = [];
afterAll(async () => {
  await killAll(instances);
  if (process.env.UM_KEEP_TEST_LOGS !== '1') rmSync(root, { recursive: true, force: true });
});

interface TasksInfo {
  active: { task: string; state: string }[];
  standby: { task: string; lag: number; recordsApplied: number; changelogs: { committed?: number }[] }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function tasksOf(i: ServiceInstance): Promise<TasksInfo | undefined> {
  const r = await i.get('/v1/tasks');
  return r?.status === 200 ? (JSON.parse(r.body) as TasksInfo) : undefined;
}

function restoredOf(metrics: string | undefined): number {
  let n = 0;
  for (const line of (metrics ?? '').split('\n'))
    if (line.startsWith('um_restore_records_total')) n += Number(line.split(' ').pop());
  return n;
}

describe('engine: standby replicas', () => {
  it('standbys follow the active tasks; after kill -9 the survivor takes over from them, outputs equal the reference', async () => {
    const t0 = Date.now();
    const svc = await createService({
      brokers: brokers(),
      registryUrl: registryUrl(),
      prefix: `${uniqueName('standby')}.`,
      appId: uniqueName('um-standby'),
      partitions: 6,
      commitIntervalMs: 500,
    });
    svc.env.UM_NUM_STANDBY_REPLICAS = process.env.UM_TEST_STANDBYS ?? '1';
    svc.env.UM_PARITY = 'false';
    svc.env.UM_SESSION_TIMEOUT_MS = '6000';
    const scenario = batchScenario({
      seed: 99,
      tenants: 4,
      mailboxes: 1500,
      seededMailboxes: 1200,
      mails: 30_000,
      interactions: 6000,
      prefix: 'sb',
    });
    await withProducer(svc.kafka, async (p) => {
      await sendTables(p, svc, scenario.policies, scenario.seeded);
      await sendMails(p, svc, scenario.mails);
      await sendInteractions(p, svc, scenario.interactions);
    });
    const admin = svc.kafka.admin();
    await admin.connect();
    try {
      const seeded = await seededEnds(admin, svc);
      const start = (name: string) => {
        const i = new ServiceInstance({
          name,
          env: svc.env,
          stateDir: join(root, 'state', name),
          logDir: join(root, 'logs'),
        });
        instances.push(i);
        return i;
      };
      const a = start('standby-a');
      const b = start('standby-b');
      await Promise.all([a.waitStarted(90_000), b.waitStarted(90_000)]);
      // both run 3 tasks and hold standbys of the other 3, caught up with the last commits
      let before: TasksInfo | undefined;
      const deadline = Date.now() + 90_000;
      for (;;) {
        const [x, y] = [await tasksOf(a), await tasksOf(b)];
        const ok = (t: TasksInfo | undefined) =>
          !!t &&
          t.active.length === 3 &&
          (svc.env.UM_NUM_STANDBY_REPLICAS === '0' || t.standby.length === 3) &&
          t.standby.every((s) => s.changelogs.every((c) => c.committed !== undefined) && s.recordsApplied > 0);
        if (ok(x) && ok(y)) {
          before = y;
          expect(new Set([...x!.active, ...y!.active].map((t) => t.task)).size).toBe(6);
          // a standby is never of a task active on the same instance
          for (const t of [x!, y!]) {
            const act = new Set(t.active.map((z) => z.task));
            for (const s of t.standby) expect(act.has(s.task)).toBe(false);
          }
          break;
        }
        if (Date.now() > deadline) throw new Error(`standbys not caught up: ${JSON.stringify([x, y])}`);
        await sleep(250);
      }
      const appliedByStandbys = before!.standby.reduce((n, s) => n + s.recordsApplied, 0);
      const restoredBefore = restoredOf((await b.get('/metrics'))?.body);
      const decisionsAtKill = await endOffsetSum(admin, svc.topics.mailDecisions);
      await a.kill9();
      const killedAt = Date.now();
      let runningAfterMs: number | undefined;
      while (runningAfterMs === undefined) {
        const y = await tasksOf(b);
        if (y && y.active.length === 6 && y.active.every((t) => t.state === 'RUNNING'))
          runningAfterMs = Date.now() - killedAt;
        else if (Date.now() - killedAt > 90_000) throw new Error(`b did not take every task: ${JSON.stringify(y)}`);
        else await sleep(100);
      }
      const restoredAtTakeOver = restoredOf((await b.get('/metrics'))?.body) - restoredBefore;
      const lagLeft = await waitDrained(svc, admin, 120_000);
      await b.stop();
      const r = await checkRun(svc, admin, seeded, scenario.policies);
      console.log(
        formatReport('engine: standby replicas, kill -9 of one of two instances', {
          run: { logs: root, totalMs: Date.now() - t0, lagLeft, decisionsAtKill, runningAfterMs },
          standby: { appliedByStandbys, restoredAtTakeOver },
          decisions: r.decisions,
          preferences: r.preferences,
        }),
      );
      expect({
        lagLeft,
        lost: r.decisions.lost,
        wrong: r.decisions.wrong,
        inconsistentDuplicates: r.decisions.inconsistentDuplicates,
        lastWrong: r.preferences.lastWrong,
        lostVersions: r.preferences.lostVersions,
        wrongVersions: r.preferences.wrongVersions,
        conflictingRewrites: r.preferences.rewrittenConflicting,
      }).toEqual({
        lagLeft: 0,
        lost: 0,
        wrong: 0,
        inconsistentDuplicates: 0,
        lastWrong: 0,
        lostVersions: 0,
        wrongVersions: 0,
        conflictingRewrites: 0,
      });
      // the survivor used its standbys' state: it restored less than they had applied
      if (svc.env.UM_NUM_STANDBY_REPLICAS !== '0') {
        expect(appliedByStandbys).toBeGreaterThan(0);
        expect(restoredAtTakeOver).toBeLessThan(appliedByStandbys);
      }
    } finally {
      await admin.disconnect();
    }
  }, 300_000);
});
