/**
 * The reference of the engine-correctness tests (test/engine/reference.ts) is the app's own
 * processors run one record at a time: the seeded scenario piped through the TopologyTestDriver in
 * the reference's order gives the same decisions and the same preference records. (If this fails,
 * the reference is wrong, not the engine.) JSON serdes stand in for Avro.
 */
import { RolloutFlagBook } from '../../../processors/rollout-flags.js';
import { describe, expect, it } from 'vitest';
import type { TopicSerdes } from '../../../topology/serdes.js';
import { topicNames } from '../../../topology/topics.js';
import { unwantedMailTopology } from '../../../topology/unwanted-mail.js';
import { PREFERENCES_STORE, TENANT_POLICIES_TABLE } from '../../../processors/decide-processor.js';
import type {
  Decision,
  MailEvent,
  TenantPolicy,
  UserInteraction,
  UserPreferences,
} from '../../../processors/logic/model.js';
import { jsonSerde } from '../../../runtime/serdes.js';
import { TopologyTestDriver } from '../../../runtime/test-driver.js';
import { reference } from '../../engine/reference.js';
import { batchScenario, LiveScenario } from '../../engine/scenario.js';

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

describe('engine-test reference', () => {
  it('equals the topology run one record at a time in timestamp order', async () => {
    const s = batchScenario({ seed: 7 });
    expect(s.mails.length + s.interactions.length).toBeGreaterThanOrEqual(4000);
    const ref = reference(
      {
        preferences: s.seeded,
        interactions: s.interactions.map((v) => ({ timestamp: v.occurredAt, value: v })),
        mails: s.mails.map((v) => ({ timestamp: v.receivedAt, value: v })),
      },
      s.policies,
    );
    // the scenario exercises what it is meant to: ties, dedupe, many preference versions
    const ties = s.interactions.filter((i) =>
      s.mails.some((m) => m.mailboxId === i.mailboxId && m.receivedAt === i.occurredAt),
    ).length;
    expect(ties).toBeGreaterThan(20);
    const written = [...ref.written.values()].reduce((n, l) => n + l.length, 0);
    expect(written).toBeGreaterThan(400);
    expect(new Set([...ref.decisions.values()].map((d) => d.reason)).size).toBeGreaterThanOrEqual(8);

    const driver = await TopologyTestDriver.create(
      unwantedMailTopology({ topics, serdes, flags: new RolloutFlagBook({ defaultMode: 'LIVE' }) }),
      { partitions: 6 },
    );
    try {
      for (const p of s.policies) await driver.pipeGlobal(TENANT_POLICIES_TABLE, p.tenantId, p);
      const mails = driver.createInputTopic<string, MailEvent>(topics.mailEvents);
      const interactions = driver.createInputTopic<string, UserInteraction>(topics.userInteractions);
      const prefs = driver.createInputTopic<string, UserPreferences>(topics.userPreferences);
      for (const r of ref.order) {
        if (r.kind === 'mail') await mails.pipe(r.value.mailboxId, r.value, r.timestamp);
        else if (r.kind === 'interaction') await interactions.pipe(r.value.mailboxId, r.value, r.timestamp);
        else await prefs.pipe(r.value.mailboxId, r.value, r.timestamp);
      }
      const decisions = driver.createOutputTopic<string, Decision>(topics.mailDecisions).readValues();
      expect(decisions).toHaveLength(s.mails.length);
      let wrong = 0;
      for (const d of decisions) {
        const want = ref.decisions.get(d!.eventId)!;
        if (
          d!.action !== want.action ||
          d!.reason !== want.reason ||
          d!.matchedKey !== want.matchedKey ||
          d!.preferencesVersion !== want.preferencesVersion
        )
          wrong++;
      }
      expect(wrong).toBe(0);
      const byMailbox = new Map<string, UserPreferences[]>();
      for (const c of driver.changelog<string, UserPreferences>(PREFERENCES_STORE)) {
        let l = byMailbox.get(c.key);
        if (!l) byMailbox.set(c.key, (l = []));
        l.push(c.value!);
      }
      expect(byMailbox).toEqual(ref.written);
    } finally {
      await driver.close();
    }
  });

  it('live chunks are in event-time order and cover message actions, retries and list edits', () => {
    const live = new LiveScenario({ seed: 3 });
    let last = 0;
    const actions = new Set<string>();
    for (let c = 0; c < 50; c++) {
      const { interactions, mails } = live.next();
      const ts = [...interactions.map((i) => i.occurredAt), ...mails.map((m) => m.receivedAt)];
      expect(Math.min(...ts)).toBeGreaterThanOrEqual(last);
      last = Math.max(...ts);
      for (const i of interactions) {
        actions.add(i.action);
        expect(i.occurredAt).toBeGreaterThanOrEqual(i.messageReceivedAt);
      }
    }
    expect(actions.size).toBeGreaterThanOrEqual(12);
  });
});
