/**
 * The migration toolkit in the topology, through the TopologyTestDriver: rollout flags and modes
 * (routing LIVE / SHADOW / OFF, percentages, the global cap, malformed flags), and parity with the
 * legacy stream (both orders, MISMATCH, the missing sides when the window closes, repeats).
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { PREFERENCES_STORE } from '../../../processors/decide-processor.js';
import type {
  Decision,
  LegacyDecision,
  MailEvent,
  ParityResult,
  RolloutFlag,
  RolloutMode,
  TenantPolicy,
  UserInteraction,
  UserPreferences,
} from '../../../processors/logic/model.js';
import { rolloutBucket } from '../../../processors/logic/rollout.js';
import { MailMetrics } from '../../../processors/metrics.js';
import { RolloutFlagBook, type FlagDeadLetter, type FlagEntry } from '../../../processors/rollout-flags.js';
import { jsonSerde } from '../../../runtime/serdes.js';
import { TopologyTestDriver } from '../../../runtime/test-driver.js';
import type { TopicSerdes } from '../../../topology/serdes.js';
import { topicNames } from '../../../topology/topics.js';
import { unwantedMailTopology } from '../../../topology/unwanted-mail.js';
import { interaction as fixtureInteraction, mail as fixtureMail } from '../processors/fixtures.js';

const topics = topicNames('');
const serdes = {
  mailEvents: jsonSerde<MailEvent>(),
  userInteractions: jsonSerde<UserInteraction>(),
  userPreferences: jsonSerde<UserPreferences>(),
  legacyDecisions: jsonSerde<LegacyDecision>(),
  mailDecisions: jsonSerde<Decision>(),
  mailDecisionsShadow: jsonSerde<Decision>(),
  parityMismatches: jsonSerde<ParityResult>(),
  rolloutFlags: jsonSerde<RolloutFlag>(),
  tenantPolicies: jsonSerde<TenantPolicy>(),
} as TopicSerdes;

const T0 = Date.UTC(2026, 2, 1);
const MIN = 60_000;
let n = 0;

function mail(mailboxId: string, at: number, over: Partial<MailEvent> = {}): MailEvent {
  n++;
  return fixtureMail({
    eventId: `e${n}`,
    tenantId: 't1',
    mailboxId,
    messageId: `m${n}`,
    receivedAt: at,
    senderAddress: 'a@clean.example',
    senderDomain: 'clean.example',
    spamScore: 0.01,
    bulkScore: 0,
    ...over,
  });
}

function flag(scope: string, mode: RolloutMode, livePercent = 100): RolloutFlag {
  return { scope, mode, livePercent, updatedAt: T0 + n++, updatedBy: 'ops@test', reason: `set ${mode}` };
}

interface Setup {
  d: TopologyTestDriver;
  metrics: MailMetrics;
  registry: Registry;
  logs: { msg: string; obj: Record<string, unknown> }[];
  deadLetters: FlagDeadLetter[];
}

let driver: TopologyTestDriver | undefined;
afterEach(async () => {
  await driver?.close();
  driver = undefined;
});

async function open(defaultMode?: RolloutMode, parityWindowMs?: number): Promise<Setup> {
  const registry = new Registry();
  const metrics = new MailMetrics(registry);
  const logs: Setup['logs'] = [];
  const deadLetters: FlagDeadLetter[] = [];
  const logger = {
    info: (obj: Record<string, unknown>, msg: string) => logs.push({ obj, msg }),
    warn: (obj: Record<string, unknown>, msg: string) => logs.push({ obj, msg }),
  };
  const flags = new RolloutFlagBook({
    ...(defaultMode ? { defaultMode } : {}),
    metrics,
    logger: logger as never,
    deadLetter: (x) => void deadLetters.push(x),
  });
  driver = await TopologyTestDriver.create(
    unwantedMailTopology({
      topics,
      serdes,
      metrics,
      flags,
      decide: { now: () => T0 },
      ...(parityWindowMs ? { parity: { windowMs: parityWindowMs } } : {}),
    }),
    { partitions: 1, wallClockStart: T0 },
  );
  return { d: driver, metrics, registry, logs, deadLetters };
}

async function metricValue(r: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = await r.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => String(x.labels[k]) === l));
  return v?.value ?? 0;
}

describe('rollout modes', () => {
  it('without flags every mailbox is SHADOW by default: decisions go only to the shadow topic', async () => {
    const { d } = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    await mails.pipe('mb1', mail('mb1', T0), T0);
    await mails.pipe('mb2', mail('mb2', T0 + 1), T0 + 1);
    expect(d.createOutputTopic<string, Decision>(topics.mailDecisions).readValues()).toEqual([]);
    const shadow = d.createOutputTopic<string, Decision>(topics.mailDecisionsShadow).readValues();
    expect(shadow.map((x) => [x!.mailboxId, x!.mode])).toEqual([
      ['mb1', 'SHADOW'],
      ['mb2', 'SHADOW'],
    ]);
  });

  it('the configured default mode (UM_DEFAULT_MODE) applies to tenants without a flag', async () => {
    const { d } = await open('LIVE');
    await d.createInputTopic<string, MailEvent>(topics.mailEvents).pipe('mb1', mail('mb1', T0), T0);
    expect(
      d
        .createOutputTopic<string, Decision>(topics.mailDecisions)
        .readValues()
        .map((x) => x!.mode),
    ).toEqual(['LIVE']);
    expect(d.createOutputTopic<string, Decision>(topics.mailDecisionsShadow).readValues()).toEqual([]);
  });

  it('a flag change routes the next mail: LIVE → mail-decisions, SHADOW → shadow, OFF → nothing but learning goes on', async () => {
    const { d, registry, logs } = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    const live = d.createOutputTopic<string, Decision>(topics.mailDecisions);
    const shadow = d.createOutputTopic<string, Decision>(topics.mailDecisionsShadow);
    let t = T0;

    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { flag: flag('t1', 'LIVE') });
    await mails.pipe('mb1', mail('mb1', ++t), t);
    expect(live.readValues().map((x) => x!.mode)).toEqual(['LIVE']);
    expect(shadow.readValues()).toEqual([]);

    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { flag: flag('t1', 'SHADOW') });
    await mails.pipe('mb1', mail('mb1', ++t), t);
    expect(live.readValues()).toEqual([]);
    expect(shadow.readValues().map((x) => x!.mode)).toEqual(['SHADOW']);

    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { flag: flag('t1', 'OFF') });
    await mails.pipe('mb1', mail('mb1', ++t), t);
    await d
      .createInputTopic<string, UserInteraction>(topics.userInteractions)
      .pipe(
        'mb1',
        fixtureInteraction('ALLOW_SENDER', { tenantId: 't1', mailboxId: 'mb1', occurredAt: ++t, messageReceivedAt: t }),
        t,
      );
    expect(live.readValues()).toEqual([]);
    expect(shadow.readValues()).toEqual([]);
    expect(await metricValue(registry, 'um_decisions_off_total', { tenant: 't1' })).toBe(1);
    expect((await d.getStore<string, UserPreferences>(PREFERENCES_STORE).get('mb1'))?.version).toBe(1);

    // the changes were logged with scope, old → new, updatedBy and reason, and counted
    const changes = logs.filter((l) => l.msg.startsWith('rollout flag t1'));
    expect(changes.map((l) => l.msg)).toEqual([
      'rollout flag t1: (none) → LIVE',
      'rollout flag t1: LIVE → SHADOW',
      'rollout flag t1: SHADOW → OFF',
    ]);
    expect(changes[2]!.obj).toMatchObject({
      scope: 't1',
      old: 'SHADOW',
      new: 'OFF',
      updatedBy: 'ops@test',
      reason: 'set OFF',
    });
    expect(await metricValue(registry, 'um_rollout_flag_changes_total', { scope: 't1' })).toBe(3);
    expect(await metricValue(registry, 'um_rollout_flag_mode', { scope: 't1' })).toBe(0);
  });

  it('LIVE with a percentage: exactly the mailboxes whose bucket is below it are LIVE, the rest SHADOW', async () => {
    const { d } = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    const boxes = Array.from({ length: 60 }, (_, i) => `box-${i}`);
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { flag: flag('t1', 'LIVE', 30) });
    let t = T0;
    for (const b of boxes) await mails.pipe(b, mail(b, ++t), t);
    const live = d
      .createOutputTopic<string, Decision>(topics.mailDecisions)
      .readValues()
      .map((x) => x!.mailboxId);
    const shadow = d
      .createOutputTopic<string, Decision>(topics.mailDecisionsShadow)
      .readValues()
      .map((x) => x!.mailboxId);
    expect(live.sort()).toEqual(boxes.filter((b) => rolloutBucket('t1', b) < 30).sort());
    expect(shadow.sort()).toEqual(boxes.filter((b) => rolloutBucket('t1', b) >= 30).sort());
    expect(live.length).toBeGreaterThan(0);
  });

  it('the global flag caps a tenant: * SHADOW turns a LIVE tenant SHADOW, * OFF turns it OFF', async () => {
    const { d } = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    const live = d.createOutputTopic<string, Decision>(topics.mailDecisions);
    const shadow = d.createOutputTopic<string, Decision>(topics.mailDecisionsShadow);
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { flag: flag('t1', 'LIVE') });
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', '*', { flag: flag('*', 'SHADOW') });
    await mails.pipe('mb1', mail('mb1', T0 + 1), T0 + 1);
    expect([live.readValues().length, shadow.readValues().length]).toEqual([0, 1]);
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', '*', { flag: flag('*', 'OFF') });
    await mails.pipe('mb1', mail('mb1', T0 + 2), T0 + 2);
    expect([live.readValues().length, shadow.readValues().length]).toEqual([0, 0]);
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', '*', null);
    await mails.pipe('mb1', mail('mb1', T0 + 3), T0 + 3);
    expect([live.readValues().length, shadow.readValues().length]).toEqual([1, 0]);
  });

  it('a malformed flag is refused and dead-lettered; the last good flag stays in force', async () => {
    const { d, registry, deadLetters } = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    const live = d.createOutputTopic<string, Decision>(topics.mailDecisions);
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { flag: flag('t1', 'LIVE') });
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { flag: flag('t1', 'OFF', 150) });
    await mails.pipe('mb1', mail('mb1', T0 + 1), T0 + 1);
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', {
      flag: { ...flag('t1', 'LIVE'), mode: 'CANARY' as RolloutMode },
    });
    await mails.pipe('mb1', mail('mb1', T0 + 2), T0 + 2);
    // bytes that do not decode at all
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't1', { bytes: Buffer.from('{not json') });
    await mails.pipe('mb1', mail('mb1', T0 + 3), T0 + 3);
    expect(live.readValues().map((x) => x!.mode)).toEqual(['LIVE', 'LIVE', 'LIVE']);
    expect(deadLetters.map((x) => [x.scope, x.code])).toEqual([
      ['t1', 'FLAG_PERCENT'],
      ['t1', 'FLAG_MODE'],
      ['t1', 'JSON_INVALID'],
    ]);
    expect(deadLetters[2]!.bytes?.toString()).toBe('{not json');
    expect(await metricValue(registry, 'um_rollout_flag_refused_total', { code: 'FLAG_PERCENT' })).toBe(1);
  });

  it('a flag change is logged within a second of wall-clock time even when no mail comes', async () => {
    const { d, logs } = await open();
    await d.pipeGlobal<string, FlagEntry>('rollout-flags', 't9', { flag: flag('t9', 'LIVE', 10) });
    expect(logs.filter((l) => l.msg.startsWith('rollout flag t9'))).toEqual([]);
    await d.advanceWallClockTime(1000);
    expect(logs.filter((l) => l.msg.startsWith('rollout flag t9')).map((l) => l.msg)).toEqual([
      'rollout flag t9: (none) → LIVE 10%',
    ]);
  });
});

describe('parity with legacy-decisions', () => {
  const legacy = (m: MailEvent, action: LegacyDecision['action']): LegacyDecision => ({
    messageId: m.messageId,
    tenantId: m.tenantId,
    mailboxId: m.mailboxId,
    action,
    decidedAt: m.receivedAt,
  });

  it('pairs either order within the window; MISMATCH goes out, MATCH is only counted', async () => {
    const { d, registry } = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    const legacyIn = d.createInputTopic<string, LegacyDecision>(topics.legacyDecisions);
    const out = d.createOutputTopic<string, ParityResult>(topics.parityMismatches);
    const a = mail('mb1', T0); // clean: INBOX
    const b = mail('mb1', T0 + 1000, { spamScore: 0.99 }); // JUNK
    await mails.pipe('mb1', a, T0);
    await legacyIn.pipe('mb1', legacy(a, 'INBOX'), T0 + 2 * MIN); // new first, match
    await legacyIn.pipe('mb1', legacy(b, 'INBOX'), T0 + 1000); // legacy first
    await mails.pipe('mb1', b, T0 + 3 * MIN); // ... mismatch
    await legacyIn.pipe('mb1', legacy(a, 'INBOX'), T0 + 3 * MIN); // a repeat: ignored
    expect(out.readValues()).toEqual([
      {
        messageId: b.messageId,
        tenantId: 't1',
        mailboxId: 'mb1',
        legacyAction: 'INBOX',
        newAction: 'JUNK',
        newReason: 'HIGH_CONFIDENCE_SPAM',
        result: 'MISMATCH',
      },
    ]);
    expect(await metricValue(registry, 'um_parity_results_total', { tenant: 't1', result: 'MATCH' })).toBe(1);
    expect(await metricValue(registry, 'um_parity_results_total', { tenant: 't1', result: 'MISMATCH' })).toBe(1);
    expect(await metricValue(registry, 'um_parity_actions_total', { legacy: 'INBOX', new: 'JUNK' })).toBe(1);
    expect(await metricValue(registry, 'um_parity_match_rate', { tenant: 't1' })).toBe(0.5);
    expect(await metricValue(registry, 'um_parity_skipped_total', { reason: 'DUPLICATE' })).toBe(1);
    // after the windows close, paired entries leave nothing behind and emit nothing
    await mails.pipe('mb1', mail('mb1', T0 + 30 * MIN), T0 + 30 * MIN);
    await d
      .createInputTopic<string, MailEvent>(topics.mailEvents)
      .pipe('mb1', mail('mb1', T0 + 60 * MIN), T0 + 60 * MIN);
    expect(out.readValues().map((r) => r!.result)).toEqual(['LEGACY_MISSING']);
  });

  it('a side alone when the window closes (stream time) is LEGACY_MISSING or NEW_MISSING', async () => {
    const { d, registry } = await open(undefined, 5 * MIN);
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    const legacyIn = d.createInputTopic<string, LegacyDecision>(topics.legacyDecisions);
    const out = d.createOutputTopic<string, ParityResult>(topics.parityMismatches);
    const lonelyNew = mail('mb1', T0);
    const ghost = mail('mb2', T0 + 1000); // never decided by the new system
    await mails.pipe('mb1', lonelyNew, T0);
    await legacyIn.pipe('mb2', legacy(ghost, 'PROMOTIONS'), T0 + 1000);
    await mails.pipe('mb3', mail('mb3', T0 + 4 * MIN), T0 + 4 * MIN);
    expect(out.readValues()).toEqual([]); // windows still open
    await legacyIn.pipe('mb3', legacy(mail('mb3', T0 + 7 * MIN), 'INBOX'), T0 + 7 * MIN);
    const got = out.readValues();
    expect(got.map((r) => [r!.messageId, r!.result, r!.legacyAction, r!.newAction])).toEqual([
      [lonelyNew.messageId, 'LEGACY_MISSING', null, 'INBOX'],
      [ghost.messageId, 'NEW_MISSING', 'PROMOTIONS', null],
    ]);
    expect(await metricValue(registry, 'um_parity_results_total', { tenant: 't1', result: 'NEW_MISSING' })).toBe(1);
  });

  it('an unmappable legacy record goes to the dead-letter topic', async () => {
    const { d } = await open();
    const m = mail('mb1', T0);
    await d
      .createInputTopic<string, LegacyDecision>(topics.legacyDecisions)
      .pipe('mb1', { ...legacy(m, 'INBOX'), action: 'SPAM' as LegacyDecision['action'] }, T0);
    expect(d.deadLetters().map((x) => [x.sourceTopic, x.code])).toEqual([
      [topics.legacyDecisions, 'LEGACY_ACTION_UNKNOWN'],
    ]);
  });

  it('legacy decisions of OFF mailboxes are not compared (no new decision is made there)', async () => {
    const { d, registry } = await open('OFF', 5 * MIN);
    const m = mail('mb1', T0);
    await d.createInputTopic<string, MailEvent>(topics.mailEvents).pipe('mb1', m, T0);
    await d.createInputTopic<string, LegacyDecision>(topics.legacyDecisions).pipe('mb1', legacy(m, 'INBOX'), T0);
    await d
      .createInputTopic<string, MailEvent>(topics.mailEvents)
      .pipe('mb1', mail('mb1', T0 + 20 * MIN), T0 + 20 * MIN);
    expect(d.createOutputTopic<string, ParityResult>(topics.parityMismatches).readValues()).toEqual([]);
    expect(await metricValue(registry, 'um_parity_skipped_total', { reason: 'OFF' })).toBe(1);
  });
});
