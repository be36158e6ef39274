/**
 * The Unwanted Mail service end to end on the real broker and registry: a scripted sequence of
 * interactions and mails over several mailboxes and tenants produces exactly the decisions that
 * PRODUCT.md §3–4 require, and `user-preferences` holds exactly the expected records. Then the
 * same input replayed into a fresh application id gives identical decisions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp } from '../../cli/app.js';
import { loadConfig, type AppConfig } from '../../cli/config.js';
import { readPreferences } from '../../cli/preferences.js';
import type {
  Decision,
  MailEvent,
  TenantPolicy,
  UserInteraction,
  UserPreferences,
} from '../../processors/logic/model.js';
import { mailSerdes, type MailSerdes } from '../../topology/serdes.js';
import { interaction as fixtureInteraction, mail as fixtureMail } from '../unit/processors/fixtures.js';
import { topicNames, type Topics } from '../../topology/topics.js';
import { brokers, produce, readAll, registryUrl, uniqueName } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-e2e-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);

function config(prefix: string, appId: string): AppConfig {
  return loadConfig({
    KAFKA_BROKERS: brokers().join(','),
    SCHEMA_REGISTRY_URL: registryUrl(),
    UM_TOPIC_PREFIX: prefix,
    UM_APP_ID: appId,
    UM_STATE_DIR: join(stateRoot, appId),
    UM_PARTITIONS: '3',
    UM_COMMIT_INTERVAL_MS: '200',
    UM_DEFAULT_MODE: 'LIVE', // every tenant LIVE: decisions on mail-decisions
    UM_LOG_LEVEL: 'warn',
  });
}

let seq = 0;
function mail(
  mailboxId: string,
  tenantId: string,
  sender: string,
  at: number,
  over: Partial<MailEvent> = {},
): MailEvent {
  seq++;
  return fixtureMail({
    eventId: `ev-${seq}`,
    tenantId,
    mailboxId,
    messageId: `msg-${seq}`,
    receivedAt: at,
    senderAddress: sender,
    senderDomain: sender.split('@')[1]!,
    spamScore: 0.05,
    ...over,
  });
}

function interaction(
  mailboxId: string,
  tenantId: string,
  sender: string,
  action: UserInteraction['action'],
  at: number,
  messageId = `imsg-${++seq}`,
): UserInteraction {
  return fixtureInteraction(action, {
    eventId: `iev-${++seq}`,
    tenantId,
    mailboxId,
    messageId,
    senderAddress: sender,
    senderDomain: sender.split('@')[1]!,
    messageReceivedAt: at - 60_000,
    occurredAt: at,
  });
}

type Expected = Pick<Decision, 'action' | 'reason' | 'matchedKey' | 'preferencesVersion'>;

/** The script: records in event-time order, and the decision each mail must get. */
function script(): {
  mails: MailEvent[];
  interactions: UserInteraction[];
  expected: Map<string, Expected>;
  policies: TenantPolicy[];
} {
  const mails: MailEvent[] = [];
  const interactions: UserInteraction[] = [];
  const expected = new Map<string, Expected>();
  let t = T0;
  const m = (e: MailEvent, x: Expected): void => {
    mails.push(e);
    expected.set(e.messageId, x);
  };
  const next = (): number => (t += 60_000);
  // tenant t1: org policy; tenant t2: none (defaults)
  const policies: TenantPolicy[] = [
    {
      tenantId: 't1',
      allow: ['boss@corp.example'],
      block: ['blocked.example'],
      spamThreshold: 0.8,
      bulkThreshold: null,
    },
  ];
  // mailbox m1 (t1): learns SAFE from MOVED_TO_INBOX; SAFE needs authentication
  m(mail('m1', 't1', 'news@promo.example', next(), { bulkScore: 8 }), {
    action: 'PROMOTIONS',
    reason: 'BULK',
    matchedKey: null,
    preferencesVersion: null,
  });
  interactions.push(interaction('m1', 't1', 'news@promo.example', 'MOVED_TO_INBOX', next()));
  m(mail('m1', 't1', 'news@promo.example', next(), { bulkScore: 8 }), {
    action: 'INBOX',
    reason: 'USER_SAFE',
    matchedKey: 'news@promo.example',
    preferencesVersion: 1,
  });
  m(mail('m1', 't1', 'news@promo.example', next(), { bulkScore: 8, spf: 'FAIL', dkim: 'NONE', dmarc: 'FAIL' }), {
    action: 'PROMOTIONS',
    reason: 'BULK',
    matchedKey: null,
    preferencesVersion: 1,
  });
  // mailbox m2 (t1): org block, high-confidence spam beats org allow, org allow beats the spam threshold
  m(mail('m2', 't1', 'x@blocked.example', next()), {
    action: 'JUNK',
    reason: 'ORG_BLOCK',
    matchedKey: 'blocked.example',
    preferencesVersion: null,
  });
  m(mail('m2', 't1', 'boss@corp.example', next(), { spamScore: 0.99 }), {
    action: 'JUNK',
    reason: 'HIGH_CONFIDENCE_SPAM',
    matchedKey: null,
    preferencesVersion: null,
  });
  m(mail('m2', 't1', 'boss@corp.example', next(), { spamScore: 0.85 }), {
    action: 'INBOX',
    reason: 'ORG_ALLOW',
    matchedKey: 'boss@corp.example',
    preferencesVersion: null,
  });
  m(mail('m2', 't1', 'a@b.example', next(), { spamScore: 0.85 }), {
    action: 'JUNK',
    reason: 'SPAM_SCORE',
    matchedKey: null,
    preferencesVersion: null,
  });
  m(mail('m2', 't1', 'deals@shop.example', next(), { bulkScore: 5, hasListUnsubscribe: true }), {
    action: 'PROMOTIONS',
    reason: 'BULK',
    matchedKey: null,
    preferencesVersion: null,
  });
  // mailbox m3 (t2): default thresholds; inferred JUNK is live from evidence 2; dedupe; explicit domain block
  m(mail('m3', 't2', 'a@b.example', next(), { spamScore: 0.85 }), {
    action: 'INBOX',
    reason: 'CLEAN',
    matchedKey: null,
    preferencesVersion: null,
  });
  interactions.push(interaction('m3', 't2', 's@spam.example', 'REPORTED_SPAM', next()));
  m(mail('m3', 't2', 's@spam.example', next()), {
    action: 'INBOX',
    reason: 'CLEAN',
    matchedKey: null,
    preferencesVersion: 1,
  });
  const junkMsg = `junk-${++seq}`;
  interactions.push(interaction('m3', 't2', 's@spam.example', 'MOVED_TO_JUNK', next(), junkMsg));
  interactions.push(interaction('m3', 't2', 's@spam.example', 'MOVED_TO_JUNK', next(), junkMsg)); // same (messageId, action): teaches once
  m(mail('m3', 't2', 's@spam.example', next()), {
    action: 'JUNK',
    reason: 'USER_JUNK',
    matchedKey: 's@spam.example',
    preferencesVersion: 2,
  });
  interactions.push(interaction('m3', 't2', 'anyone@other.example', 'BLOCK_DOMAIN', next()));
  m(mail('m3', 't2', 'z@other.example', next()), {
    action: 'JUNK',
    reason: 'USER_JUNK',
    matchedKey: 'other.example',
    preferencesVersion: 3,
  });
  // a message action more than 7 days after the message teaches nothing
  const late = interaction('m3', 't2', 'late@x.example', 'MOVED_TO_INBOX', next());
  late.messageReceivedAt = late.occurredAt - 8 * DAY;
  interactions.push(late);
  m(mail('m3', 't2', 'late@x.example', next(), { bulkScore: 9 }), {
    action: 'PROMOTIONS',
    reason: 'BULK',
    matchedKey: null,
    preferencesVersion: 3,
  });
  // mailbox m4 (t2): explicit PROMOTIONS, then REMOVE_SENDER
  interactions.push(interaction('m4', 't2', 'shop@store.example', 'MOVED_TO_PROMOTIONS', next()));
  m(mail('m4', 't2', 'shop@store.example', next()), {
    action: 'PROMOTIONS',
    reason: 'USER_PROMOTIONS',
    matchedKey: 'shop@store.example',
    preferencesVersion: 1,
  });
  interactions.push(interaction('m4', 't2', 'shop@store.example', 'REMOVE_SENDER', next()));
  m(mail('m4', 't2', 'shop@store.example', next()), {
    action: 'INBOX',
    reason: 'CLEAN',
    matchedKey: null,
    preferencesVersion: 2,
  });
  return { mails, interactions, expected, policies };
}

async function produceScript(topics: Topics, serdes: MailSerdes, s: ReturnType<typeof script>): Promise<void> {
  await produce(
    topics.userInteractions,
    s.interactions.map((i) => ({
      key: i.mailboxId,
      value: serdes.userInteractions.serialize(topics.userInteractions, i),
      timestamp: i.occurredAt,
    })),
  );
  await produce(
    topics.mailEvents,
    s.mails.map((e) => ({
      key: e.mailboxId,
      value: serdes.mailEvents.serialize(topics.mailEvents, e),
      timestamp: e.receivedAt,
    })),
  );
}

async function readDecisions(topics: Topics, serdes: MailSerdes, n: number): Promise<Decision[]> {
  const recs = await readAll(topics.mailDecisions, { atLeast: n });
  await serdes.mailDecisions.prepare(recs.map((r) => r.value));
  return recs.map((r) => serdes.mailDecisions.deserialize(topics.mailDecisions, r.value!));
}

describe('unwanted-mail end to end', () => {
  it('decides and learns exactly as the spec says, and a replay decides the same', async () => {
    const prefix = `${uniqueName('e2e')}.`;
    const appId = uniqueName('um-e2e');
    const cfg = config(prefix, appId);
    const topics = topicNames(prefix);
    const kafka = kafkaFor(cfg, 'e2e-test');
    await ensureTopics(kafka, cfg);
    const serdes = mailSerdes(registryFor(cfg), topics);
    await Promise.all([
      serdes.mailEvents.init(),
      serdes.userInteractions.init(),
      serdes.tenantPolicies.init(),
      serdes.mailDecisions.init(),
      serdes.userPreferences.init(),
    ]);
    const s = script();
    await produce(
      topics.tenantPolicies,
      s.policies.map((p) => ({ key: p.tenantId, value: serdes.tenantPolicies.serialize(topics.tenantPolicies, p) })),
    );
    await produceScript(topics, serdes, s);
    // bad input: not Avro at all, an unknown schema id, a truncated record, a key that is not the mailbox
    const unknownId = Buffer.from([0, 0x7f, 0xff, 0xff, 0x00, 1, 2, 3]);
    const good = serdes.mailEvents.serialize(topics.mailEvents, s.mails[0]!);
    await produce(topics.mailEvents, [
      { key: 'm1', value: Buffer.from('{"json":"not avro"}') },
      { key: 'm1', value: unknownId },
      { key: 'm1', value: good.subarray(0, good.length - 3) },
      { key: 'm2', value: good },
    ]);

    // DEBUG recording level: the store operations are timed too (INFO, the default, leaves them out)
    const app = await startApp(
      { ...cfg, metricsRecordingLevel: 'DEBUG', http: { host: '127.0.0.1', port: 0 } },
      { logger: pino({ level: 'warn' }) },
    );
    let decisions: Decision[];
    try {
      decisions = await readDecisions(topics, serdes, s.mails.length);
      // the preference table answers over HTTP from the owning instance
      const r = await fetch(`${app.url}/v1/preferences/m3`);
      expect(r.status).toBe(200);
      const body = (await r.json()) as { key: string; value: UserPreferences };
      expect(body.key).toBe('m3');
      expect(body.value.version).toBe(3);
      expect((await fetch(`${app.url}/v1/preferences/nobody`)).status).toBe(404);
      expect((await fetch(`${app.url}/readyz`)).status).toBe(200);
      // every bad record is in the dead-letter topic with its reason; none of them was decided
      const dlq = await readAll(`${appId}-dlq`, { atLeast: 4 });
      expect(dlq.map((r) => r.headers['dlq.error.code']).sort()).toEqual(
        ['BAD_MAGIC_BYTE', 'KEY_MISMATCH', 'RECORD_TRUNCATED', 'UNKNOWN_SCHEMA_ID'].sort(),
      );
      for (const r of dlq) {
        expect(r.headers['dlq.source.topic']).toBe(topics.mailEvents);
        expect(r.headers['dlq.source.offset']).toMatch(/^\d+$/);
        expect(r.headers['dlq.error.message']).not.toContain('@'); // no addresses in error messages
      }
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toMatch(/um_decisions_total\{action="JUNK",reason="USER_JUNK",mode="LIVE"\} 2/);
      const gets = /um_store_op_seconds_count\{store="preferences",op="get"\} (\d+)/.exec(metrics);
      expect(Number(gets?.[1] ?? 0)).toBeGreaterThan(0);
      // the preference store of some task holds the mailboxes with preferences
      await app.streams.commit('manual');
      const entries = [
        ...(await (await fetch(`${app.url}/metrics`)).text()).matchAll(
          /um_store_entries\{store="preferences",task="[^"]+"\} (\d+)/g,
        ),
      ];
      expect(entries.reduce((n, m) => n + Number(m[1]), 0)).toBeGreaterThanOrEqual(3);
    } finally {
      await app.close();
    }
    expect(decisions).toHaveLength(s.mails.length);
    for (const d of decisions) {
      const want = s.expected.get(d.messageId);
      expect(want, `unexpected decision for ${d.messageId}`).toBeDefined();
      expect({
        messageId: d.messageId,
        action: d.action,
        reason: d.reason,
        matchedKey: d.matchedKey,
        preferencesVersion: d.preferencesVersion,
      }).toEqual({
        messageId: d.messageId,
        ...want,
      });
      expect(d.mode).toBe('LIVE');
      const m = s.mails.find((x) => x.messageId === d.messageId)!;
      expect(d.eventId).toBe(m.eventId);
      expect(d.mailboxId).toBe(m.mailboxId);
      expect(d.tenantId).toBe(m.tenantId);
      expect(d.dwellMs).toBe(d.decidedAt - m.receivedAt);
    }

    // user-preferences holds exactly the expected records, in order per mailbox
    const prefRecs = await readAll(topics.userPreferences);
    await serdes.userPreferences.prepare(prefRecs.map((r) => r.value));
    const prefs = prefRecs.map((r) => serdes.userPreferences.deserialize(topics.userPreferences, r.value!));
    const byMailbox = (id: string): UserPreferences[] =>
      prefs.filter((p) => p.mailboxId === id).sort((a, b) => a.version - b.version);
    expect(prefs).toHaveLength(1 + 3 + 2);
    expect(byMailbox('m2')).toEqual([]);
    const [m1v1] = byMailbox('m1');
    expect(m1v1!.version).toBe(1);
    expect(m1v1!.entries).toEqual([
      expect.objectContaining({
        key: 'news@promo.example',
        scope: 'ADDRESS',
        verdict: 'SAFE',
        source: 'EXPLICIT',
        expiresAt: null,
      }),
    ]);
    const m3 = byMailbox('m3');
    expect(m3.map((p) => p.version)).toEqual([1, 2, 3]);
    expect(m3[0]!.entries).toEqual([
      expect.objectContaining({ key: 's@spam.example', verdict: 'JUNK', source: 'INFERRED', evidence: 1 }),
    ]);
    expect(m3[0]!.entries[0]!.expiresAt).toBe(m3[0]!.entries[0]!.updatedAt + 90 * DAY);
    expect(m3[1]!.entries).toEqual([expect.objectContaining({ key: 's@spam.example', verdict: 'JUNK', evidence: 2 })]);
    expect(m3[2]!.entries).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ key: 's@spam.example', evidence: 2 }),
        expect.objectContaining({ key: 'other.example', scope: 'DOMAIN', verdict: 'JUNK', source: 'EXPLICIT' }),
      ]),
    );
    expect(byMailbox('m4').map((p) => [p.version, p.entries.length])).toEqual([
      [1, 1],
      [2, 0],
    ]);
    // `um preferences <mailboxId>` reads the same from the topic, without a running instance
    expect((await readPreferences(cfg, 'm3'))?.version).toBe(3);
    expect(await readPreferences(cfg, 'nobody')).toBeUndefined();

    // every record is keyed by its mailbox
    for (const r of prefRecs)
      expect(r.key!.toString()).toBe(serdes.userPreferences.deserialize(topics.userPreferences, r.value!).mailboxId);

    // replay: the same input into a fresh application id (fresh state, same topics) decides the same
    const replayPrefix = `${uniqueName('e2e-replay')}.`;
    const cfg2 = config(replayPrefix, uniqueName('um-e2e-replay'));
    const topics2 = topicNames(replayPrefix);
    await ensureTopics(kafka, cfg2);
    const serdes2 = mailSerdes(registryFor(cfg2), topics2);
    await Promise.all([
      serdes2.mailEvents.init(),
      serdes2.userInteractions.init(),
      serdes2.tenantPolicies.init(),
      serdes2.mailDecisions.init(),
    ]);
    await produce(
      topics2.tenantPolicies,
      s.policies.map((p) => ({ key: p.tenantId, value: serdes2.tenantPolicies.serialize(topics2.tenantPolicies, p) })),
    );
    await produceScript(topics2, serdes2, s);
    const app2 = await startApp(cfg2, { logger: pino({ level: 'warn' }), http: false });
    let replayed: Decision[];
    try {
      replayed = await readDecisions(topics2, serdes2, s.mails.length);
    } finally {
      await app2.close();
    }
    const strip = (d: Decision) => ({ ...d, decidedAt: 0, dwellMs: 0 });
    const key = (d: Decision) => d.messageId;
    expect(replayed.map(strip).sort((a, b) => key(a).localeCompare(key(b)))).toEqual(
      decisions.map(strip).sort((a, b) => key(a).localeCompare(key(b))),
    );
  });
});
