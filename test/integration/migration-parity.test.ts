/**
 * Parity on the real broker: a scripted legacy stream against the new decisions (SHADOW), pairs in
 * either order, mismatches, a late legacy side outside the window, missing sides emitted when the
 * window closes in stream time, an unreadable legacy record dead-lettered, pairing that survives a
 * restart on a fresh state directory (the stores come back from their changelogs), and the
 * report computed from the topics.
 */
import { rmSync } from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp } from '../../cli/app.js';
import { gateHolds, parityReportFromTopics } from '../../cli/parity.js';
import type { Decision, LegacyDecision, MailEvent, ParityResult } from '../../processors/logic/model.js';
import { partitionForKey } from '../../runtime/partitioner.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { produce, readAll, uniqueName } from './helpers.js';
import { mailEvent, migrationConfig, readDecoded, stateRoot } from './migration-helpers.js';

afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const S = 1000;
const MIN = 60_000;

describe('parity with legacy-decisions', () => {
  it('pairs both orders, emits MISMATCH and the missing sides, survives a restart, and reports', async () => {
    const prefix = `${uniqueName('mig-par')}-`;
    const appId = uniqueName('mig-par-app');
    const env = { UM_PARITY_WINDOW_MS: '60000' };
    const cfg = migrationConfig(prefix, appId, 'i1', env);
    const topics = topicNames(prefix);
    await ensureTopics(kafkaFor(cfg, 'mig-par'), cfg);
    const serdes = mailSerdes(registryFor(cfg), topics);
    await Promise.all([serdes.mailEvents.init(), serdes.legacyDecisions.init(), serdes.mailDecisions.init()]);
    // one minute into an hour three hours ago: the whole script (12 minutes) is in one hourly window
    const T = Math.floor((Date.now() - 3 * 3_600_000) / 3_600_000) * 3_600_000 + MIN;
    const mails: MailEvent[] = [];
    const legacies: { l: LegacyDecision; at: number }[] = [];
    const m = (name: string, at: number, over: Partial<MailEvent> = {}): MailEvent => {
      const e = mailEvent('P', `box-${name}`, at, { messageId: name, ...over });
      mails.push(e);
      return e;
    };
    const legacy = (name: string, action: LegacyDecision['action'], at: number): void => {
      legacies.push({ l: { messageId: name, tenantId: 'P', mailboxId: `box-${name}`, action, decidedAt: at }, at });
    };
    m('m1', T);
    legacy('m1', 'INBOX', T + 5 * S); // new first: MATCH
    legacy('m2', 'INBOX', T + S);
    m('m2', T + 10 * S); // legacy first: MATCH
    m('m3', T + 2 * S, { spamScore: 0.99 });
    legacy('m3', 'INBOX', T + 20 * S); // new first: MISMATCH
    legacy('m4', 'PROMOTIONS', T + 3 * S);
    m('m4', T + 30 * S); // legacy first: MISMATCH
    m('m5', T + 4 * S); // LEGACY_MISSING
    legacy('m6', 'JUNK', T + 5 * S); // NEW_MISSING
    m('m7', T + 6 * S);
    legacy('m7', 'INBOX', T + 6 * S + 2 * MIN); // too late: LEGACY_MISSING, then NEW_MISSING
    // a later mail on every partition moves each task's stream time past the windows
    const clockBoxes = [0, 1, 2].map((p) => {
      for (let i = 0; ; i++) if (partitionForKey(`clock-${i}`, 3) === p) return `clock-${i}`;
    });
    for (const b of clockBoxes) mails.push(mailEvent('clock', b, T + 10 * MIN));

    const send = async (): Promise<void> => {
      await produce(
        topics.legacyDecisions,
        legacies.map(({ l, at }) => ({
          key: l.mailboxId,
          value: serdes.legacyDecisions.serialize(topics.legacyDecisions, l),
          timestamp: at,
        })),
      );
      await produce(
        topics.mailEvents,
        mails.map((e) => ({
          key: e.mailboxId,
          value: serdes.mailEvents.serialize(topics.mailEvents, e),
          timestamp: e.receivedAt,
        })),
      );
    };
    await send();
    // a legacy record nobody can read
    await produce(topics.legacyDecisions, [{ key: 'box-m1', value: Buffer.from('not avro'), timestamp: T + 7 * S }]);

    const logger = pino({ level: 'warn' });
    let app = await startApp(cfg, { logger, http: false });
    try {
      const results = await readDecoded<ParityResult>(topics.parityMismatches, serdes.parityMismatches, 6);
      const byMsg = results.map((r) => r.value).filter((r) => r.tenantId === 'P');
      byMsg.sort((a, b) => a.messageId.localeCompare(b.messageId) || a.result.localeCompare(b.result));
      expect(byMsg).toEqual([
        {
          messageId: 'm3',
          tenantId: 'P',
          mailboxId: 'box-m3',
          legacyAction: 'INBOX',
          newAction: 'JUNK',
          newReason: 'HIGH_CONFIDENCE_SPAM',
          result: 'MISMATCH',
        },
        {
          messageId: 'm4',
          tenantId: 'P',
          mailboxId: 'box-m4',
          legacyAction: 'PROMOTIONS',
          newAction: 'INBOX',
          newReason: 'CLEAN',
          result: 'MISMATCH',
        },
        {
          messageId: 'm5',
          tenantId: 'P',
          mailboxId: 'box-m5',
          legacyAction: null,
          newAction: 'INBOX',
          newReason: 'CLEAN',
          result: 'LEGACY_MISSING',
        },
        {
          messageId: 'm6',
          tenantId: 'P',
          mailboxId: 'box-m6',
          legacyAction: 'JUNK',
          newAction: null,
          newReason: null,
          result: 'NEW_MISSING',
        },
        {
          messageId: 'm7',
          tenantId: 'P',
          mailboxId: 'box-m7',
          legacyAction: null,
          newAction: 'INBOX',
          newReason: 'CLEAN',
          result: 'LEGACY_MISSING',
        },
        {
          messageId: 'm7',
          tenantId: 'P',
          mailboxId: 'box-m7',
          legacyAction: 'INBOX',
          newAction: null,
          newReason: null,
          result: 'NEW_MISSING',
        },
      ]);
      const dlq = await readAll(`${appId}-dlq`, { atLeast: 1 });
      expect(dlq.map((r) => [r.headers['dlq.source.topic'], r.headers['dlq.error.code']])).toEqual([
        [topics.legacyDecisions, 'BAD_MAGIC_BYTE'],
      ]);
      const matches = (await app.metrics.parityResults.get()).values.find(
        (v) => v.labels.tenant === 'P' && v.labels.result === 'MATCH',
      );
      expect(matches?.value).toBe(2);

      // the new side of m8 is decided and committed; the legacy side comes after a restart
      const m8 = mailEvent('P', 'box-m8', T + 11 * MIN, { messageId: 'm8', spamScore: 0.95 });
      await produce(topics.mailEvents, [
        { key: m8.mailboxId, value: serdes.mailEvents.serialize(topics.mailEvents, m8), timestamp: m8.receivedAt },
      ]);
      const shadow = await readDecoded<Decision>(
        topics.mailDecisionsShadow,
        serdes.mailDecisionsShadow,
        mails.length + 1,
      );
      expect(shadow.map((d) => d.value.messageId)).toContain('m8');
      await app.close();
      app = await startApp(migrationConfig(prefix, appId, 'i2', env), { logger, http: false });
      await produce(topics.legacyDecisions, [
        {
          key: 'box-m8',
          value: serdes.legacyDecisions.serialize(topics.legacyDecisions, {
            messageId: 'm8',
            tenantId: 'P',
            mailboxId: 'box-m8',
            action: 'INBOX',
            decidedAt: m8.receivedAt + 10 * S,
          }),
          timestamp: m8.receivedAt + 10 * S,
        },
      ]);
      // m8 moved its partition's stream time past the window of that partition's clock mail: one
      // LEGACY_MISSING of tenant "clock" comes too
      const after = await readDecoded<ParityResult>(
        topics.parityMismatches,
        serdes.parityMismatches,
        results.length + 2,
      );
      expect(
        after
          .slice(results.length)
          .map((r) => r.value)
          .filter((r) => r.tenantId === 'P')
          .map((r) => [r.messageId, r.result, r.legacyAction, r.newAction]),
      ).toEqual([['m8', 'MISMATCH', 'INBOX', 'JUNK']]);
    } finally {
      await app.close();
    }

    // the report, from the topics
    const r = await parityReportFromTopics(cfg, {
      sinceMs: T - S,
      tenant: 'P',
      gate: { minPairs: 5, minRate: 0.2, hours: 1 },
    });
    expect(r.tenants.map((t) => [t.tenantId, t.pairs, t.matched, t.byClass])).toEqual([
      ['P', 9, 2, { MISMATCH: 3, LEGACY_MISSING: 2, NEW_MISSING: 2 }],
    ]);
    expect(r.tenants[0]!.topMismatches[0]).toEqual({ legacy: '-', new: 'INBOX', reason: 'CLEAN', count: 2 });
    expect(r.unreadable).toBe(1);
    // a lenient gate (20% over 5 pairs, one hourly window) holds; the default one (99.5% over 10,000) does not
    expect(r.tenants[0]!.hourly).toEqual([{ hourStart: T - MIN, pairs: 9, matched: 2, matchRate: 2 / 9 }]);
    expect(gateHolds(r.tenants, 'P')).toBe(true);
    const strict = await parityReportFromTopics(cfg, { sinceMs: T - S, tenant: 'P' });
    expect(strict.tenants[0]!.gate).toEqual({ holds: false, why: '9 pairs, fewer than 10000' });
  });
});
