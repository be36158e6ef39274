/**
 * Issue 10, "Done when" 1: exactly-once under crashes, in the manner of Apache Kafka's
 * `streams_eos_test`. `npm run test:faults` (its own 3-node KRaft cluster: RF 3,
 * min.insync.replicas 2, and a schema registry).
 *
 * A scenario of 100,000+ input records (mails and interactions over a few thousand mailboxes, plus
 * seeded preferences and tenant policies) is produced before any instance starts. Three instances
 * (`node bin/um.mjs run`, separate processes) process it; while they do, one instance at a time is
 * killed with SIGKILL and started again on the same state directory, three times (a different
 * instance each time). A `read_committed` verifier then reads every output and compares it with
 * the reference (the same input processed one record at a time in timestamp order):
 *  - exactly_once: every mail has exactly one decision, equal to the reference's; every preference
 *    version is written exactly once with the reference's content; the last preferences equal the
 *    reference; nothing is dead-lettered;
 *  - at_least_once (same test, for comparison): nothing lost or wrong; its duplicates are printed.
 *
 * `UM_EOS_TEST_MAILS` / `UM_EOS_TEST_INTERACTIONS` change the size (defaults 80,000 / 20,000).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatReport } from '../engine/accounting.js';
import { checkRun, seededEnds } from '../engine/check.js';
import {
  createService,
  endOffsetSum,
  sendInteractions,
  sendMails,
  readWithProducers,
  sendTables,
  waitDrained,
  withProducer,
} from '../engine/io.js';
import { batchScenario } from '../engine/scenario.js';
import { ServiceInstance } from '../engine/service.js';
import { faultCluster } from './cluster.js';
import { uniqueName } from '../integration/helpers.js';

const MAILS = Number(process.env.UM_EOS_TEST_MAILS ?? 80_000);
const INTERACTIONS = Number(process.env.UM_EOS_TEST_INTERACTIONS ?? 20_000);

const cluster = faultCluster('eos');
const { root, instances } = cluster;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function crashRun(guarantee: 'exactly_once' | 'at_least_once') {
  const t0 = Date.now();
  const svc = await createService({
    brokers: cluster.stack().brokers,
    registryUrl: cluster.stack().registryUrl,
    prefix: `${uniqueName(`eos-${guarantee}`)}.`,
    appId: uniqueName(`um-eos-${guarantee === 'exactly_once' ? 'eos' : 'alos'}`),
    partitions: 6,
    replicationFactor: 3,
    // at-least-once commits every second (the CLI default); exactly-once every 100 ms (its default)
    commitIntervalMs: guarantee === 'exactly_once' ? 100 : 1000,
  });
  svc.env.UM_PROCESSING_GUARANTEE = guarantee;
  // the parity processor is not part of this guarantee's test (it reads no legacy decisions here)
  svc.env.UM_PARITY = 'false';
  if (process.env.UM_EOS_TEST_LOG_LEVEL) svc.env.UM_LOG_LEVEL = process.env.UM_EOS_TEST_LOG_LEVEL;
  const scenario = batchScenario({
    seed: 4242,
    tenants: 4,
    mailboxes: 3000,
    seededMailboxes: 300,
    mails: MAILS,
    interactions: INTERACTIONS,
    prefix: guarantee === 'exactly_once' ? 'e' : 'a',
  });
  await withProducer(svc.kafka, async (p) => {
    await sendTables(p, svc, scenario.policies, scenario.seeded);
    await sendMails(p, svc, scenario.mails);
    await sendInteractions(p, svc, scenario.interactions);
  });
  const admin = svc.kafka.admin();
  await admin.connect();
  const logDir = join(root, guarantee, 'logs');
  const mine: ServiceInstance[] = [];
  const start = (name: string) => {
    const i = new ServiceInstance({ name, env: svc.env, stateDir: join(root, guarantee, 'state', name), logDir });
    instances.push(i);
    mine.push(i);
    return i;
  };
  try {
    const seeded = await seededEnds(admin, svc);
    const live = ['a', 'b', 'c'].map((n) => start(`${guarantee}-${n}`));
    await Promise.all(live.map((i) => i.waitStarted(90_000)));
    const kills: { instance: string; atDecisions: number; at: number }[] = [];
    // kill one instance when the decisions pass 15%, 40% and 65% of the mails; start it again at once
    for (const [k, share] of [0.15, 0.4, 0.65].entries()) {
      const deadline = Date.now() + 240_000;
      for (;;) {
        const n = await endOffsetSum(admin, svc.topics.mailDecisions);
        if (n >= MAILS * share) break;
        if (Date.now() > deadline) throw new Error(`decisions stuck below ${share * 100}% (${n})`);
        await sleep(200);
      }
      const victim = live[k]!;
      await victim.kill9();
      kills.push({
        instance: victim.name,
        atDecisions: await endOffsetSum(admin, svc.topics.mailDecisions),
        at: Date.now() - t0,
      });
      live[k] = start(victim.name);
      await live[k]!.waitStarted(90_000);
    }
    const lagLeft = await waitDrained(svc, admin, 300_000);
    // instances that exited by themselves (not killed by the test)
    const exited = mine.filter((i) => !i.running && i.exit?.signal !== 'SIGKILL').map((i) => i.name);
    await Promise.all(live.map((i) => i.stop()));
    const r = await checkRun(svc, admin, seeded, scenario.policies);
    if (r.decisions.duplicates > 0) {
      // which producers wrote the copies of a duplicated decision, and where
      const raw = await readWithProducers(svc.kafka, svc.topics.mailDecisions);
      const byEvent = new Map<string, string[]>();
      await svc.serdes.mailDecisions.prepare(raw.map((x) => x.value));
      for (const x of raw) {
        if (!x.value) continue;
        const d = svc.serdes.mailDecisions.deserialize(svc.topics.mailDecisions, x.value);
        const l = byEvent.get(d.eventId) ?? [];
        l.push(`p${x.partition}@${x.offset} by ${x.producer} v${d.preferencesVersion}`);
        byEvent.set(d.eventId, l);
      }
      const dups = [...byEvent].filter(([, l]) => l.length > 1);
      console.log(`duplicated decisions: ${dups.length}; the first ones:`);
      for (const [id, l] of dups.slice(0, 25)) console.log(`  ${id}: ${l.join(' | ')}`);
    }
    if (r.preferences.rewrittenIdentical + r.preferences.rewrittenConflicting > 0) {
      const raw = await readWithProducers(svc.kafka, svc.topics.userPreferences);
      const byVersion = new Map<string, string[]>();
      await svc.serdes.userPreferences.prepare(raw.map((x) => x.value));
      for (const x of raw) {
        if (!x.value) continue;
        const p = svc.serdes.userPreferences.deserialize(svc.topics.userPreferences, x.value);
        const k = `${p.mailboxId}@${p.version}`;
        const l = byVersion.get(k) ?? [];
        l.push(`p${x.partition}@${x.offset} by ${x.producer}`);
        byVersion.set(k, l);
      }
      const dups = [...byVersion].filter(([, l]) => l.length > 1);
      console.log(`preference versions written twice: ${dups.length}; the first ones:`);
      for (const [id, l] of dups.slice(0, 25)) console.log(`  ${id}: ${l.join(' | ')}`);
    }
    console.log(
      formatReport(`eos test (${guarantee}): 3 instances, kill -9 three times (3 brokers, RF 3)`, {
        run: { logs: root, totalMs: Date.now() - t0, lagLeft, exited, kills },
        inputs: r.inputs,
        decisions: r.decisions,
        preferences: r.preferences,
        deadLetters: r.deadLetters,
        // offsets held vs records read: transaction markers take offsets, so under exactly-once
        // the first figure is larger
        readCompleteness: r.readCompleteness,
      }),
    );
    return { r, lagLeft, exited, kills };
  } finally {
    await admin.disconnect();
  }
}

describe('eos: kill -9 of instances while they process (streams_eos_test)', () => {
  it('exactly_once: every decision and every preference version exactly once, final preferences exact', async () => {
    const { r, lagLeft, exited, kills } = await crashRun('exactly_once');
    expect({
      kills: kills.length,
      exited,
      lagLeft,
      lostDecisions: r.decisions.lost,
      duplicateDecisions: r.decisions.duplicates,
      wrongDecisions: r.decisions.wrong,
      unknownDecisions: r.decisions.unknown,
      mailboxesWithWrongLastPreferences: r.preferences.lastWrong,
      preferenceVersionsLost: r.preferences.lostVersions,
      preferenceVersionsWrong: r.preferences.wrongVersions,
      versionsWrittenTwice: r.preferences.rewrittenIdentical + r.preferences.rewrittenConflicting,
      unexpectedMailboxes: r.preferences.unexpectedMailboxes,
      deadLetters: r.deadLetters,
    }).toEqual({
      kills: 3,
      exited: [],
      lagLeft: 0,
      lostDecisions: 0,
      duplicateDecisions: 0,
      wrongDecisions: 0,
      unknownDecisions: 0,
      mailboxesWithWrongLastPreferences: 0,
      preferenceVersionsLost: 0,
      preferenceVersionsWrong: 0,
      versionsWrittenTwice: 0,
      unexpectedMailboxes: 0,
      deadLetters: 0,
    });
    expect(r.inputs.mails + r.inputs.interactions).toBeGreaterThanOrEqual(MAILS + INTERACTIONS);
    expect(r.decisions.decisionRecords).toBe(r.inputs.mails);
  }, 900_000);

  it('at_least_once, for comparison: nothing lost or wrong; duplicates printed', async () => {
    const { r, lagLeft, exited, kills } = await crashRun('at_least_once');
    console.log(
      `at_least_once duplicates: decisions=${r.decisions.duplicates} (mails decided twice ${r.decisions.mailsDecidedTwice}), ` +
        `preference versions written twice=${r.preferences.rewrittenIdentical + r.preferences.rewrittenConflicting}`,
    );
    expect({
      kills: kills.length,
      exited,
      lagLeft,
      lostDecisions: r.decisions.lost,
      inconsistentDuplicates: r.decisions.inconsistentDuplicates,
      mailboxesWithWrongLastPreferences: r.preferences.lastWrong,
      preferenceVersionsLost: r.preferences.lostVersions,
      preferenceVersionsWrong: r.preferences.wrongVersions,
      conflictingRewrites: r.preferences.rewrittenConflicting,
    }).toEqual({
      kills: 3,
      exited: [],
      lagLeft: 0,
      lostDecisions: 0,
      inconsistentDuplicates: 0,
      mailboxesWithWrongLastPreferences: 0,
      preferenceVersionsLost: 0,
      preferenceVersionsWrong: 0,
      conflictingRewrites: 0,
    });
  }, 900_000);
});
