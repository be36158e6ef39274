/**
 * The rollout stages on the real broker, on two running instances: mail events ingested over HTTP
 * (POST /v1/mail-events), every tenant SHADOW by default, tenant A LIVE 10% → 50% → 100% (the
 * LIVE mailboxes are exactly those whose bucket is below the percentage, a growing superset), a
 * malformed flag refused and dead-lettered, the global cap, the rollback of A to SHADOW and the
 * global OFF (which still learns). Each flag change is in force on both instances within 5 s,
 * with no restart, and every mail has exactly one decision output in the mode of its stage.
 */
import { rmSync } from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp, type App } from '../../cli/app.js';
import { buildFlag, listFlags, setFlag } from '../../cli/flags.js';
import type { Decision, MailEvent, ParityResult, RolloutFlag, UserPreferences } from '../../processors/logic/model.js';
import { effectiveMode, rolloutBucket } from '../../processors/logic/rollout.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { interaction } from '../unit/processors/fixtures.js';
import { produce, readAll, uniqueName, waitUntil } from './helpers.js';
import { mailEvent, migrationConfig, readDecoded, stateRoot } from './migration-helpers.js';

afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

/** 25 mailboxes of tenant A: 5 with bucket < 10, 10 with bucket 10..49, 10 with bucket >= 50. */
function mailboxesOfA(): string[] {
  const low: string[] = [];
  const mid: string[] = [];
  const high: string[] = [];
  for (let i = 0; low.length < 5 || mid.length < 10 || high.length < 10; i++) {
    const m = `a-box-${i}`;
    const b = rolloutBucket('A', m);
    if (b < 10 && low.length < 5) low.push(m);
    else if (b >= 10 && b < 50 && mid.length < 10) mid.push(m);
    else if (b >= 50 && high.length < 10) high.push(m);
  }
  return [...low, ...mid, ...high];
}

describe('rollout flags on two running instances', () => {
  it('moves through the stages with each change in force within 5 s and exactly one decision per mail', async () => {
    const prefix = `${uniqueName('mig-roll')}-`;
    const appId = uniqueName('mig-roll-app');
    // a short parity window, so that the windows of the first stage close during the test
    const env = { UM_PARITY_WINDOW_MS: '5000' };
    const cfg1 = migrationConfig(prefix, appId, 'i1', env);
    const cfg2 = migrationConfig(prefix, appId, 'i2', env);
    const topics = topicNames(prefix);
    const kafka = kafkaFor(cfg1, 'mig-roll-test');
    await ensureTopics(kafka, cfg1);
    const serdes = mailSerdes(registryFor(cfg1), topics);
    await Promise.all([
      serdes.mailDecisions.init(),
      serdes.rolloutFlags.init(),
      serdes.userInteractions.init(),
      serdes.legacyDecisions.init(),
    ]);
    const logger = pino({ level: 'warn' });
    const apps: App[] = [await startApp(cfg1, { logger }), await startApp(cfg2, { logger })];
    const flags = new Map<string, RolloutFlag>();
    const expected = new Map<string, { mode: 'LIVE' | 'SHADOW' | 'OFF'; stage: string }>();
    const propagation: number[] = [];
    const A = mailboxesOfA();
    const B = Array.from({ length: 6 }, (_, i) => `b-box-${i}`);
    let outputs = 0;
    let offCount = 0;
    let t = Date.now() - 3_600_000;
    const stageMails = new Map<string, MailEvent[]>();
    let parityCount: (result: string) => Promise<number> = () => Promise.resolve(0);

    const inForce = (a: App, scope: string, f: RolloutFlag | undefined): boolean => {
      const got = a.flags.flags().get(scope);
      return f === undefined ? got === undefined : got?.updatedAt === f.updatedAt && got.mode === f.mode;
    };
    async function change(scope: string, mode: 'OFF' | 'SHADOW' | 'LIVE', percent?: number): Promise<void> {
      const f = buildFlag({
        scope,
        mode,
        reason: `stage ${scope} ${mode} ${percent ?? ''}`,
        by: 'test',
        ...(percent === undefined ? {} : { percent: String(percent) }),
      });
      const t0 = Date.now();
      await setFlag(cfg1, f);
      await waitUntil(`flag ${scope} ${mode} on both instances`, () => apps.every((a) => inForce(a, scope, f)), 10_000);
      propagation.push(Date.now() - t0);
      flags.set(scope, f);
    }
    async function offTotal(): Promise<number> {
      let n = 0;
      for (const a of apps) for (const v of (await a.metrics.decisionsOff.get()).values) n += v.value;
      return n;
    }
    async function stage(name: string): Promise<void> {
      t += 10_000; // each stage 10 s later in event time: the previous stage's parity windows close
      const events: MailEvent[] = [];
      for (const [tenant, boxes] of [
        ['A', A],
        ['B', B],
      ] as const)
        for (const m of boxes) events.push(mailEvent(tenant, m, (t += 10)));
      stageMails.set(name, events);
      const r = await fetch(`${apps[0]!.url}/v1/mail-events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(events),
      });
      expect(r.status).toBe(202);
      expect(await r.json()).toEqual({ accepted: events.length });
      for (const e of events) {
        const mode = effectiveMode({ global: flags.get('*'), tenant: flags.get(e.tenantId) }, e.tenantId, e.mailboxId);
        expected.set(e.messageId, { mode, stage: name });
        if (mode === 'OFF') offCount++;
        else outputs++;
      }
      // the stage is done when every mail of it has been decided (or counted OFF)
      await waitUntil(`stage ${name} decided`, async () => {
        const ends = await Promise.all(
          [topics.mailDecisions, topics.mailDecisionsShadow].map((tp) =>
            readAll(tp, { atLeast: 0 }).then((x) => x.length),
          ),
        );
        return ends[0]! + ends[1]! >= outputs && (await offTotal()) >= offCount;
      });
    }
    const liveOf = (stageName: string, decisions: Decision[]): Set<string> =>
      new Set(
        decisions
          .filter((d) => expected.get(d.messageId)?.stage === stageName && d.tenantId === 'A')
          .map((d) => d.mailboxId),
      );

    try {
      // the scripted legacy system decides the first stage's mails: most agree, 3 disagree, 2 are
      // missing, 1 comes too late (outside the 5 s window), 1 decides a mail the new system never saw
      await stage('default-shadow');
      const shadowMails = stageMails.get('default-shadow')!;
      const legacyOf = (e: MailEvent, action: 'INBOX' | 'PROMOTIONS' | 'JUNK', at: number) => ({
        key: e.mailboxId,
        value: serdes.legacyDecisions.serialize(topics.legacyDecisions, {
          messageId: e.messageId,
          tenantId: e.tenantId,
          mailboxId: e.mailboxId,
          action,
          decidedAt: at,
        }),
        timestamp: at,
      });
      const script = new Map<string, string[]>();
      const legacyRecords = shadowMails.flatMap((e, i) => {
        if (i < 3) {
          script.set(e.messageId, ['MISMATCH']);
          return [legacyOf(e, 'JUNK', e.receivedAt + 1000)]; // the clean mail is INBOX for the new rules
        }
        if (i < 5) {
          script.set(e.messageId, ['LEGACY_MISSING']);
          return [];
        }
        if (i === 5) {
          script.set(e.messageId, ['LEGACY_MISSING', 'NEW_MISSING']);
          return [legacyOf(e, 'INBOX', e.receivedAt + 8000)];
        }
        script.set(e.messageId, []);
        return [legacyOf(e, 'INBOX', e.receivedAt + 500)];
      });
      const ghost = mailEvent('A', A[1]!, shadowMails[0]!.receivedAt);
      script.set(ghost.messageId, ['NEW_MISSING']);
      legacyRecords.push(legacyOf(ghost, 'PROMOTIONS', ghost.receivedAt + 200));
      // in event-time order, as a legacy system writes them (a record far ahead would move stream
      // time on and close the windows of the records behind it in its partition)
      await produce(
        topics.legacyDecisions,
        legacyRecords.sort((x, y) => x.timestamp - y.timestamp),
      );
      parityCount = async (result: string): Promise<number> => {
        let n = 0;
        for (const a of apps)
          for (const v of (await a.metrics.parityResults.get()).values) if (v.labels.result === result) n += v.value;
        return n;
      };
      // the legacy side is processed before the next stage moves stream time on
      await waitUntil(
        'legacy side paired',
        async () => (await parityCount('MATCH')) >= shadowMails.length - 6 && (await parityCount('MISMATCH')) >= 3,
      );
      await change('A', 'LIVE', 10);
      await stage('A10');
      await change('A', 'LIVE', 50);
      await stage('A50');
      await change('A', 'LIVE', 100);
      await stage('A100');
      // a malformed flag written by another producer: refused, dead-lettered, A stays LIVE 100%
      const bad = { ...flags.get('A')!, livePercent: 150, updatedAt: Date.now(), reason: 'typo' };
      await produce(topics.rolloutFlags, [
        { key: 'A', value: serdes.rolloutFlags.serialize(topics.rolloutFlags, bad) },
      ]);
      const dlq = await readAll(`${appId}-dlq`, { atLeast: 2, timeoutMs: 10_000 });
      expect(dlq.map((r) => [r.headers['dlq.source.topic'], r.headers['dlq.error.code']])).toEqual([
        [topics.rolloutFlags, 'FLAG_PERCENT'],
        [topics.rolloutFlags, 'FLAG_PERCENT'],
      ]); // once per instance
      await stage('A100-after-bad-flag');
      expect((await listFlags(cfg1)).find((f) => f.scope === 'A')).toMatchObject({
        flag: { mode: 'LIVE', livePercent: 100 },
        refused: 'livePercent must be an integer within 0..100, got 150',
      });
      await change('*', 'SHADOW');
      await stage('global-shadow-cap');
      await change('*', 'LIVE');
      await stage('global-live');
      await change('A', 'SHADOW');
      await stage('A-rollback');
      await change('*', 'OFF');
      await stage('global-off');
      // OFF still learns
      const learnBox = A[0]!;
      await produce(topics.userInteractions, [
        {
          key: learnBox,
          value: serdes.userInteractions.serialize(
            topics.userInteractions,
            interaction('ALLOW_SENDER', {
              tenantId: 'A',
              mailboxId: learnBox,
              occurredAt: t,
              messageReceivedAt: t,
              eventId: 'learn-1',
            }),
          ),
          timestamp: t,
        },
      ]);
      const prefs = await readDecoded<UserPreferences>(topics.userPreferences, serdes.userPreferences, 1, 20_000);
      expect(prefs.map((p) => [p.value.mailboxId, p.value.version])).toEqual([[learnBox, 1]]);
      await change('*', 'LIVE');
      await stage('back-on');

      // parity of the first stage, exactly as scripted (later stages have no legacy side)
      const parity = (await readDecoded<ParityResult>(topics.parityMismatches, serdes.parityMismatches)).map(
        (r) => r.value,
      );
      const gotParity = new Map<string, string[]>();
      for (const r of parity)
        if (script.has(r.messageId))
          gotParity.set(r.messageId, [...(gotParity.get(r.messageId) ?? []), r.result].sort());
      expect(new Map([...script].filter(([, v]) => v.length))).toEqual(gotParity);
      expect(await parityCount('MATCH')).toBe(shadowMails.length - 6);

      const live = (await readDecoded<Decision>(topics.mailDecisions, serdes.mailDecisions)).map((r) => r.value);
      const shadow = (await readDecoded<Decision>(topics.mailDecisionsShadow, serdes.mailDecisionsShadow)).map(
        (r) => r.value,
      );
      // exactly one output per mail, in the mode of its stage; none for OFF
      const outs = new Map<string, string[]>();
      for (const d of live) outs.set(d.messageId, [...(outs.get(d.messageId) ?? []), `live:${d.mode}`]);
      for (const d of shadow) outs.set(d.messageId, [...(outs.get(d.messageId) ?? []), `shadow:${d.mode}`]);
      const wrong: string[] = [];
      for (const [id, x] of expected) {
        const want = x.mode === 'OFF' ? [] : x.mode === 'LIVE' ? ['live:LIVE'] : ['shadow:SHADOW'];
        const got = outs.get(id) ?? [];
        if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(`${x.stage} ${id}: ${JSON.stringify(got)}`);
      }
      expect(wrong).toEqual([]);
      expect(live.length + shadow.length).toBe(outputs);
      // the stages as the spec has them
      expect(liveOf('default-shadow', live).size).toBe(0);
      const l10 = liveOf('A10', live);
      const l50 = liveOf('A50', live);
      const l100 = liveOf('A100', live);
      expect([...l10].sort()).toEqual(A.filter((m) => rolloutBucket('A', m) < 10).sort());
      expect([...l50].sort()).toEqual(A.filter((m) => rolloutBucket('A', m) < 50).sort());
      expect([...l100].sort()).toEqual([...A].sort());
      expect([l10.size, l50.size, l100.size]).toEqual([5, 15, 25]);
      for (const m of l10) expect(l50.has(m)).toBe(true);
      expect(liveOf('A100-after-bad-flag', live).size).toBe(25);
      expect(liveOf('global-shadow-cap', live).size).toBe(0);
      expect(liveOf('global-live', live).size).toBe(25);
      expect(liveOf('A-rollback', live).size).toBe(0);
      expect([...expected.values()].filter((x) => x.stage === 'global-off').every((x) => x.mode === 'OFF')).toBe(true);
      // tenant B never had a flag: SHADOW (the default) throughout, except while OFF
      expect(live.filter((d) => d.tenantId === 'B')).toEqual([]);
      expect(Math.max(...propagation)).toBeLessThan(5000);
      console.log(`flag changes in force on both instances after (ms): ${propagation.join(', ')}`);
    } finally {
      for (const a of apps) await a.close();
    }
  });
});
