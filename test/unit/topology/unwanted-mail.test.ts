/**
 * The Unwanted Mail topology through the TopologyTestDriver (no broker): the thin processors
 * around `decide` and `learn`, the preference table and its changelog, dedupe with its
 * stream-time purge, validation to the dead-letter topic, and timestamp order across topics.
 * JSON serdes stand in for Avro (the Avro path is covered by the integration tests).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEDUPE_STORE, DEDUPE_PURGE_INTERVAL_MS, dedupeKey } from '../../../processors/learn-processor.js';
import { PREFERENCES_STORE } from '../../../processors/decide-processor.js';
import { RolloutFlagBook } from '../../../processors/rollout-flags.js';
import type {
  Decision,
  MailEvent,
  TenantPolicy,
  UserInteraction,
  UserPreferences,
} from '../../../processors/logic/model.js';
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
  legacyDecisions: jsonSerde(),
  mailDecisions: jsonSerde<Decision>(),
  mailDecisionsShadow: jsonSerde<Decision>(),
  parityMismatches: jsonSerde(),
  rolloutFlags: jsonSerde(),
  tenantPolicies: jsonSerde<TenantPolicy>(),
} as TopicSerdes;

const T0 = Date.UTC(2026, 2, 1);
const DAY = 86_400_000;
let n = 0;

function mail(mailboxId: string, sender: string, at: number, over: Partial<MailEvent> = {}): MailEvent {
  n++;
  return fixtureMail({
    eventId: `e${n}`,
    tenantId: 't1',
    mailboxId,
    messageId: `m${n}`,
    receivedAt: at,
    senderAddress: sender,
    senderDomain: sender.split('@')[1]!,
    ...over,
  });
}

function interaction(
  mailboxId: string,
  sender: string,
  action: UserInteraction['action'],
  at: number,
  messageId = `i${++n}`,
): UserInteraction {
  return fixtureInteraction(action, {
    eventId: `ie${++n}`,
    tenantId: 't1',
    mailboxId,
    messageId,
    senderAddress: sender,
    senderDomain: sender.split('@')[1]!,
    messageReceivedAt: at - 1000,
    occurredAt: at,
  });
}

let driver: TopologyTestDriver | undefined;
afterEach(async () => {
  await driver?.close();
  driver = undefined;
});

async function open(partitions = 1): Promise<TopologyTestDriver> {
  driver = await TopologyTestDriver.create(
    unwantedMailTopology({
      topics,
      serdes,
      decide: { now: () => T0 + 10 * DAY },
      // every mailbox LIVE: these tests are about deciding and learning (rollout: migration.test.ts)
      flags: new RolloutFlagBook({ defaultMode: 'LIVE' }),
    }),
    {
      partitions,
      wallClockStart: T0,
    },
  );
  return driver;
}

describe('the Unwanted Mail topology (test driver)', () => {
  it('learns from interactions, emits every preference change, and decides with what it learned', async () => {
    const d = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    const interactions = d.createInputTopic<string, UserInteraction>(topics.userInteractions);
    const decisions = d.createOutputTopic<string, Decision>(topics.mailDecisions);
    await d.pipeGlobal<string, TenantPolicy>('tenant-policies', 't1', {
      tenantId: 't1',
      allow: [],
      block: ['blocked.example'],
      spamThreshold: null,
      bulkThreshold: null,
    });

    await mails.pipe('mb', mail('mb', 'x@blocked.example', T0));
    await interactions.pipe('mb', interaction('mb', 'news@shop.example', 'MOVED_TO_INBOX', T0 + 1000), T0 + 1000);
    await mails.pipe('mb', mail('mb', 'news@shop.example', T0 + 2000, { bulkScore: 9 }), T0 + 2000);
    const junk = `j${++n}`;
    await interactions.pipe('mb', interaction('mb', 'spam@bad.example', 'MOVED_TO_JUNK', T0 + 3000, junk), T0 + 3000);
    await interactions.pipe('mb', interaction('mb', 'spam@bad.example', 'MOVED_TO_JUNK', T0 + 4000, junk), T0 + 4000);
    await mails.pipe('mb', mail('mb', 'spam@bad.example', T0 + 5000), T0 + 5000);

    const got = decisions.readValues().map((x) => [x!.action, x!.reason, x!.matchedKey, x!.preferencesVersion]);
    expect(got).toEqual([
      ['JUNK', 'ORG_BLOCK', 'blocked.example', null],
      ['INBOX', 'USER_SAFE', 'news@shop.example', 1],
      // one JUNK signal only (the second was the same message and action): not live yet
      ['INBOX', 'CLEAN', null, 2],
    ]);
    const stored = await d.getStore<string, UserPreferences>(PREFERENCES_STORE).get('mb');
    expect(stored?.version).toBe(2);
    expect(stored?.entries.find((e) => e.key === 'spam@bad.example')).toMatchObject({
      source: 'INFERRED',
      evidence: 1,
    });
    // every change went to user-preferences at once (write-through), keyed by mailbox, in order
    const changes = d.changelog(PREFERENCES_STORE);
    expect(changes.map((c) => (c.value as UserPreferences).version)).toEqual([1, 2]);
    expect(changes.every((c) => c.key === 'mb')).toBe(true);
  });

  it('applies an interaction before a mail with a later timestamp, whatever the arrival order', async () => {
    const d = await open();
    const decisions = d.createOutputTopic<string, Decision>(topics.mailDecisions);
    // both queued before the task runs: the interaction (t=1000) must be applied before the mail (t=2000)
    const task = (d as unknown as { tasks: { pause(): void; resume(): void }[] }).tasks[0]!;
    task.pause();
    const m = d
      .createInputTopic<string, MailEvent>(topics.mailEvents)
      .pipe('mb', mail('mb', 'a@b.example', T0 + 2000, { bulkScore: 9 }), T0 + 2000);
    const i = d
      .createInputTopic<string, UserInteraction>(topics.userInteractions)
      .pipe('mb', interaction('mb', 'a@b.example', 'ALLOW_SENDER', T0 + 1000), T0 + 1000);
    await new Promise((r) => setTimeout(r, 20)); // both enqueued while paused
    task.resume();
    await Promise.all([m, i]);
    expect(decisions.readValues().map((x) => x!.reason)).toEqual(['USER_SAFE']);
  });

  it('sends invalid records to the dead-letter topic and goes on', async () => {
    const d = await open();
    const mails = d.createInputTopic<string, MailEvent>(topics.mailEvents);
    await mails.pipe('someone-else', mail('mb', 'a@b.example', T0));
    await mails.pipe('mb', mail('mb', 'a@b.example', T0, { spamScore: 7 }));
    await mails.pipe('mb', mail('mb', 'a@b.example', T0, { bulkScore: 12 }));
    await mails.pipe('mb', mail('mb', 'a@b.example', T0));
    expect(d.deadLetters().map((x) => x.code)).toEqual(['KEY_MISMATCH', 'SPAM_SCORE_RANGE', 'BULK_SCORE_RANGE']);
    expect(d.deadLetters().every((x) => !x.message.includes('a@b.example'))).toBe(true);
    expect(d.createOutputTopic<string, Decision>(topics.mailDecisions).readValues()).toHaveLength(1);
  });

  it("reads a batch's dedupe entries in one read before learning, and still sees a duplicate inside the batch", async () => {
    const d = await open();
    const interactions = d.createInputTopic<string, UserInteraction>(topics.userInteractions);
    const seen = interaction('mb', 'a@b.example', 'MOVED_TO_JUNK', T0, 'msg-seen');
    await interactions.pipe('mb', seen, T0);
    const dedupe = d.getStore<string, number>(DEDUPE_STORE);
    const getAll = vi.spyOn(dedupe, 'getAll');
    const first = interaction('mb', 'c@d.example', 'MOVED_TO_JUNK', T0 + 1000, 'msg-1');
    const again = { ...first, eventId: 'again', occurredAt: T0 + 2000 };
    const other = interaction('mb', 'e@f.example', 'MOVED_TO_INBOX', T0 + 3000, 'msg-2');
    const seenAgain = { ...seen, eventId: 'seen-again', occurredAt: T0 + 4000 };
    await interactions.pipeAll([
      { key: 'mb', value: first, timestamp: T0 + 1000 },
      { key: 'mb', value: again, timestamp: T0 + 2000 },
      { key: 'mb', value: other, timestamp: T0 + 3000 },
      { key: 'mb', value: seenAgain, timestamp: T0 + 4000 },
    ]);
    expect(getAll).toHaveBeenCalledTimes(1);
    expect(new Set(getAll.mock.calls[0]![0])).toEqual(new Set([dedupeKey(first), dedupeKey(other), dedupeKey(seen)]));
    // the copy inside the batch and the one of an earlier batch change nothing
    expect(d.changelog(PREFERENCES_STORE).map((c) => (c.value as UserPreferences).version)).toEqual([1, 2, 3]);
    expect(await dedupe.get(dedupeKey(first))).toBe(T0 + 1000);
  });

  it('keeps dedupe entries for 7 days of event time, then purges them', async () => {
    const d = await open();
    const interactions = d.createInputTopic<string, UserInteraction>(topics.userInteractions);
    const first = interaction('mb', 'a@b.example', 'MOVED_TO_JUNK', T0, 'msg-x');
    await interactions.pipe('mb', first, T0);
    const dedupe = d.getStore<string, number>(DEDUPE_STORE);
    expect(await dedupe.get(dedupeKey(first))).toBe(T0);
    // stream time moves 8 days on (another mailbox's interactions, twice a day): a purge drops it
    for (let t = T0 + DAY / 2; t <= T0 + 8 * DAY + DEDUPE_PURGE_INTERVAL_MS; t += DAY / 2)
      await interactions.pipe('other', interaction('other', 'c@d.example', 'REPLIED', t, `m-${t}`), t);
    expect(await dedupe.get(dedupeKey(first))).toBeUndefined();
  });

  it('one record stamped far ahead does not purge dedupe entries that are still in their window', async () => {
    const d = await open();
    const interactions = d.createInputTopic<string, UserInteraction>(topics.userInteractions);
    const first = interaction('mb', 'a@b.example', 'MOVED_TO_JUNK', T0, 'msg-x');
    await interactions.pipe('mb', first, T0);
    // a bad clock: 30 days ahead
    await interactions.pipe('other', interaction('other', 'c@d.example', 'REPLIED', T0 + 30 * DAY), T0 + 30 * DAY);
    const dedupe = d.getStore<string, number>(DEDUPE_STORE);
    expect(await dedupe.get(dedupeKey(first))).toBe(T0);
    // the retried interaction two days later still teaches once: evidence stays 1
    await interactions.pipe('mb', { ...first, occurredAt: T0 + 2 * DAY }, T0 + 2 * DAY);
    const prefs = await d.getStore<string, UserPreferences>(PREFERENCES_STORE).get('mb');
    expect(prefs?.version).toBe(1);
    expect(prefs?.entries.find((e) => e.key === 'a@b.example')?.evidence).toBe(1);
  });

  it('a table record with a newer version replaces the stored preferences; an older or equal one does not', async () => {
    const d = await open();
    const table = d.createInputTopic<string, UserPreferences>(topics.userPreferences);
    const prefs = (version: number, key: string): UserPreferences => ({
      mailboxId: 'mb',
      tenantId: 't1',
      version,
      updatedAt: T0,
      entries: [
        {
          key,
          scope: 'ADDRESS',
          verdict: 'SAFE',
          source: 'EXPLICIT',
          evidence: 1,
          firstSeenAt: T0,
          updatedAt: T0,
          expiresAt: null,
        },
      ],
    });
    await table.pipe('mb', prefs(5, 'five@x.example'), T0);
    await table.pipe('mb', prefs(4, 'four@x.example'), T0 + 1);
    await table.pipe('mb', prefs(5, 'again@x.example'), T0 + 2);
    const stored = await d.getStore<string, UserPreferences>(PREFERENCES_STORE).get('mb');
    expect(stored?.entries[0]?.key).toBe('five@x.example');
    // records read from the table topic are never written back to it
    expect(d.changelog(PREFERENCES_STORE)).toEqual([]);
  });
});
