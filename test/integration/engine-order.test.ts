/**
 * Issue 7, "Done when" 1: event-time order (PRODUCT.md §5).
 *
 * A seeded scenario of 4,000 events (2,600 mail events, 1,400 interactions) plus seeded preference
 * records and tenant policies, 40 mailboxes over 4 tenants, 6 partitions, ALL produced before the
 * service starts, the interactions entirely after the mail events (so fetch order differs from event
 * time). The service (cli/app.ts, in-process) must write exactly what the reference writes, the same
 * input processed one record at a time in timestamp order (test/engine/reference.ts): every
 * decision's action, reason, matchedKey and preferencesVersion, and every preference record of every
 * mailbox. A second fresh application id on the same input (the same records in the same order per
 * partition, in fresh topics, but produced interactions first and in smaller requests) must write
 * identical outputs, record for record per partition, ignoring the wall-clock fields decidedAt and
 * dwellMs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startApp } from '../../cli/app.js';
import { loadConfig } from '../../cli/config.js';
import type { Decision, UserPreferences } from '../../processors/logic/model.js';
import { accountDecisions, accountPreferences, canon, formatReport } from '../engine/accounting.js';
import {
  createService,
  endOffsets,
  readDecoded,
  sendInteractions,
  sendMails,
  sendTables,
  waitDrained,
  withProducer,
  type Decoded,
  type ServiceTopics,
} from '../engine/io.js';
import { reference } from '../engine/reference.js';
import { batchScenario } from '../engine/scenario.js';
import { brokers, registryUrl, uniqueName } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-engine-order-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const SEED = 20_261_201;
const scenario = batchScenario({ seed: SEED, mails: 2600, interactions: 1400, mailboxes: 40, tenants: 4 });

interface Run {
  svc: ServiceTopics;
  lagLeft: number;
  ms: number;
  decisions: Decoded<Decision>[];
  /** records the service wrote to user-preferences (seeded ones excluded) */
  written: Decoded<UserPreferences>[];
  seeded: Decoded<UserPreferences>[];
}

async function run(label: string): Promise<Run> {
  const svc = await createService({
    brokers: brokers(),
    registryUrl: registryUrl(),
    prefix: `${uniqueName(`order-${label}`)}.`,
    appId: uniqueName(`um-order-${label}`),
    partitions: 6,
  });
  // tables first, then one input topic entirely after the other, all before the service starts:
  // run a sends every mail event first, run b every interaction first and in smaller requests (other
  // batch boundaries on the broker; the same records in the same order per partition)
  await withProducer(svc.kafka, async (p) => {
    await sendTables(p, svc, scenario.policies, scenario.seeded);
    if (label === 'a') {
      await sendMails(p, svc, scenario.mails);
      await sendInteractions(p, svc, scenario.interactions);
    } else {
      await sendInteractions(p, svc, scenario.interactions, 300);
      await sendMails(p, svc, scenario.mails, 300);
    }
  });
  const admin = svc.kafka.admin();
  await admin.connect();
  try {
    const seededEnds = await endOffsets(admin, svc.topics.userPreferences);
    const t0 = Date.now();
    const app = await startApp(loadConfig({ ...svc.env, UM_STATE_DIR: join(stateRoot, svc.appId) }), {
      logger: pino({ level: 'warn' }),
      http: false,
    });
    let lagLeft: number;
    try {
      lagLeft = await waitDrained(svc, admin, 75_000);
    } finally {
      await app.close();
    }
    const ms = Date.now() - t0;
    const prefs = await readDecoded(svc, 'userPreferences');
    const isSeeded = (r: Decoded<UserPreferences>): boolean => r.offset < (seededEnds.get(r.partition) ?? 0);
    return {
      svc,
      lagLeft,
      ms,
      decisions: await readDecoded(svc, 'mailDecisions'),
      written: prefs.filter((r) => !isSeeded(r)),
      seeded: prefs.filter(isSeeded),
    };
  } finally {
    await admin.disconnect();
  }
}

/** Per-partition sequences of a topic's records, as comparable strings. */
function sequences<T>(records: Decoded<T>[], show: (r: Decoded<T>) => string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const r of records) {
    let l = out.get(r.partition);
    if (!l) out.set(r.partition, (l = []));
    l.push(show(r));
  }
  return out;
}

/** Positions (per partition) where two runs' sequences differ, plus length differences. */
function sequenceDiff(a: Map<number, string[]>, b: Map<number, string[]>): number {
  let diff = 0;
  for (const p of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(p) ?? [];
    const y = b.get(p) ?? [];
    for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) diff++;
  }
  return diff;
}

const stripDecision = (r: Decoded<Decision>): string => canon({ ...r.value, decidedAt: 0, dwellMs: 0 });

describe('engine: event-time order', () => {
  it('decides and learns as the one-record-at-a-time reference, and a fresh app id writes the same', async () => {
    const first = await run('a');
    // the reference is built from the input as the broker holds it (partition-offset order)
    const [mails, interactions] = await Promise.all([
      readDecoded(first.svc, 'mailEvents'),
      readDecoded(first.svc, 'userInteractions'),
    ]);
    const ref = reference(
      {
        preferences: first.seeded.map((r) => ({ timestamp: r.timestamp, value: r.value })),
        interactions: interactions.map((r) => ({ timestamp: r.timestamp, value: r.value })),
        mails: mails.map((r) => ({ timestamp: r.timestamp, value: r.value })),
      },
      scenario.policies,
    );
    expect(mails).toHaveLength(scenario.mails.length);
    expect(interactions).toHaveLength(scenario.interactions.length);
    expect(first.seeded).toHaveLength(scenario.seeded.length);
    const decisions = accountDecisions(
      ref,
      first.decisions.map((r) => r.value),
    );
    const preferences = accountPreferences(
      ref,
      first.written.map((r) => r.value),
    );

    const second = await run('b');
    const secondDecisions = accountDecisions(
      ref,
      second.decisions.map((r) => r.value),
    );
    const secondPreferences = accountPreferences(
      ref,
      second.written.map((r) => r.value),
    );
    const replay = {
      decisionRecords: [first.decisions.length, second.decisions.length],
      // per partition, position by position, wall-clock fields zeroed
      decisionPositionsDiffering: sequenceDiff(
        sequences(first.decisions, stripDecision),
        sequences(second.decisions, stripDecision),
      ),
      // by eventId: mails whose decisions differ between the runs
      decisionsDiffering: (() => {
        const a = new Map<string, string[]>();
        for (const r of first.decisions) a.set(r.value.eventId, [...(a.get(r.value.eventId) ?? []), stripDecision(r)]);
        const b = new Map<string, string[]>();
        for (const r of second.decisions) b.set(r.value.eventId, [...(b.get(r.value.eventId) ?? []), stripDecision(r)]);
        let n = 0;
        for (const id of new Set([...a.keys(), ...b.keys()]))
          if (canon((a.get(id) ?? []).sort()) !== canon((b.get(id) ?? []).sort())) n++;
        return n;
      })(),
      preferenceRecords: [first.written.length, second.written.length],
      // the Avro payloads (without the schema-id header: the subjects differ), per partition
      preferencePositionsDiffering: sequenceDiff(
        sequences(first.written, (r) => r.payload.toString('hex')),
        sequences(second.written, (r) => r.payload.toString('hex')),
      ),
    };
    console.log(
      formatReport('engine-order: 2,600 mails + 1,400 interactions, 6 partitions, all produced before start', {
        run: { firstMs: first.ms, secondMs: second.ms, lagLeftFirst: first.lagLeft, lagLeftSecond: second.lagLeft },
        decisions,
        preferences,
        secondRunDecisions: secondDecisions,
        secondRunPreferences: secondPreferences,
        replay,
      }),
    );

    expect({
      lagLeft: [first.lagLeft, second.lagLeft],
      lost: decisions.lost,
      duplicates: decisions.duplicates,
      wrong: [decisions.wrong, secondDecisions.wrong],
      unknown: decisions.unknown,
      preferenceSequencesWrong: [preferences.sequenceWrong, secondPreferences.sequenceWrong],
      preferenceLastWrong: preferences.lastWrong,
      preferenceVersionsLost: preferences.lostVersions,
      preferenceVersionsWrong: preferences.wrongVersions,
      unexpectedMailboxes: preferences.unexpectedMailboxes,
      replayDecisionPositionsDiffering: replay.decisionPositionsDiffering,
      replayDecisionsDiffering: replay.decisionsDiffering,
      replayPreferencePositionsDiffering: replay.preferencePositionsDiffering,
    }).toEqual({
      lagLeft: [0, 0],
      lost: 0,
      duplicates: 0,
      wrong: [0, 0],
      unknown: 0,
      preferenceSequencesWrong: [0, 0],
      preferenceLastWrong: 0,
      preferenceVersionsLost: 0,
      preferenceVersionsWrong: 0,
      unexpectedMailboxes: 0,
      replayDecisionPositionsDiffering: 0,
      replayDecisionsDiffering: 0,
      replayPreferencePositionsDiffering: 0,
    });
    expect(decisions.decisionRecords).toBe(scenario.mails.length);
    expect(preferences.recordsWritten).toBe(preferences.recordsExpected);
  }, 240_000);
});
