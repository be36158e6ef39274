/**
 * Tenant policies and rollout flags are validated before a decision relies on them: a bad policy
 * record is refused (SerdeError with the rule's code) and the tenant's last good policy stays.
 */
import { RolloutFlagBook } from '../../../processors/rollout-flags.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Decision, MailEvent, RolloutFlag, TenantPolicy } from '../../../processors/logic/model.js';
import { validateRolloutFlag, validateTenantPolicy } from '../../../processors/validate.js';
import { SerdeError } from '../../../runtime/errors.js';
import { jsonSerde, validatedSerde } from '../../../runtime/serdes.js';
import { TopologyTestDriver } from '../../../runtime/test-driver.js';
import type { TopicSerdes } from '../../../topology/serdes.js';
import { topicNames } from '../../../topology/topics.js';
import { unwantedMailTopology } from '../../../topology/unwanted-mail.js';
import { mail, policy, T0, TENANT } from '../processors/fixtures.js';

const code = (fn: () => void): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
};

describe('tenant policy and rollout flag validation', () => {
  it.each([
    [{ spamThreshold: -1 }, 'POLICY_SPAM_THRESHOLD'],
    [{ spamThreshold: 0 }, 'POLICY_SPAM_THRESHOLD'],
    [{ spamThreshold: 1.5 }, 'POLICY_SPAM_THRESHOLD'],
    [{ spamThreshold: Number.NaN }, 'POLICY_SPAM_THRESHOLD'],
    [{ bulkThreshold: 0 }, 'POLICY_BULK_THRESHOLD'],
    [{ bulkThreshold: 11 }, 'POLICY_BULK_THRESHOLD'],
    [{ bulkThreshold: 6.5 }, 'POLICY_BULK_THRESHOLD'],
    [{ tenantId: '' }, 'POLICY_TENANT_ID'],
    [{ block: ['ok.example', ''] }, 'POLICY_LIST'],
    [{ allow: ['has space.example'] }, 'POLICY_LIST'],
    [{ allow: ['user@'] }, 'POLICY_LIST'],
  ] as [Partial<TenantPolicy>, string][])('refuses %j with %s', (over, expected) => {
    expect(code(() => validateTenantPolicy(policy(over)))).toBe(expected);
  });

  it('accepts defaults (null) and the edges of the ranges', () => {
    for (const over of [
      {},
      { spamThreshold: 1, bulkThreshold: 10 },
      { spamThreshold: 0.01, bulkThreshold: 1 },
      { allow: ['a@b.example', 'b.example'], block: ['c.example'] },
    ])
      expect(code(() => validateTenantPolicy(policy(over)))).toBeUndefined();
  });

  it('validates rollout flags', () => {
    const flag = (o: Partial<RolloutFlag>): RolloutFlag => ({
      scope: '*',
      mode: 'LIVE',
      livePercent: 50,
      updatedAt: T0,
      updatedBy: 'op',
      reason: 'test',
      ...o,
    });
    expect(code(() => validateRolloutFlag(flag({})))).toBeUndefined();
    expect(code(() => validateRolloutFlag(flag({ livePercent: 101 })))).toBe('FLAG_LIVE_PERCENT');
    expect(code(() => validateRolloutFlag(flag({ livePercent: -1 })))).toBe('FLAG_LIVE_PERCENT');
    expect(code(() => validateRolloutFlag(flag({ scope: '' })))).toBe('FLAG_SCOPE');
    expect(code(() => validateRolloutFlag(flag({ mode: 'ON' as RolloutFlag['mode'] })))).toBe('FLAG_MODE');
    expect(code(() => validateRolloutFlag(flag({ updatedAt: 0 })))).toBe('FLAG_UPDATED_AT');
  });

  it('validatedSerde raises a SerdeError carrying the rule code', () => {
    const serde = validatedSerde(jsonSerde<TenantPolicy>(), validateTenantPolicy);
    const bytes = serde.serialize('t', policy({ spamThreshold: -1 }));
    let err: unknown;
    try {
      serde.deserialize('t', bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SerdeError);
    expect(err).toMatchObject({ code: 'POLICY_SPAM_THRESHOLD' });
    expect(serde.deserialize('t', serde.serialize('t', policy()))).toEqual(policy());
  });
});

describe('the topology keeps the last good policy', () => {
  let driver: TopologyTestDriver | undefined;
  afterEach(async () => {
    await driver?.close();
    driver = undefined;
  });

  it('a policy with spamThreshold -1 is refused; mail is decided with the previous policy', async () => {
    const topics = topicNames('');
    const serdes = {
      mailEvents: jsonSerde<MailEvent>(),
      userInteractions: jsonSerde(),
      userPreferences: jsonSerde(),
      legacyDecisions: jsonSerde(),
      mailDecisions: jsonSerde<Decision>(),
      mailDecisionsShadow: jsonSerde<Decision>(),
      parityMismatches: jsonSerde(),
      rolloutFlags: jsonSerde(),
      tenantPolicies: jsonSerde<TenantPolicy>(),
    } as TopicSerdes;
    driver = await TopologyTestDriver.create(
      unwantedMailTopology({ topics, serdes, flags: new RolloutFlagBook({ defaultMode: 'LIVE' }) }),
      {
        partitions: 1,
        wallClockStart: T0,
      },
    );
    await driver.pipeGlobal('tenant-policies', TENANT, policy({ spamThreshold: 0.5 }));
    await expect(driver.pipeGlobal('tenant-policies', TENANT, policy({ spamThreshold: -1 }))).rejects.toMatchObject({
      code: 'POLICY_SPAM_THRESHOLD',
    });
    const mails = driver.createInputTopic<string, MailEvent>(topics.mailEvents);
    const decisions = driver.createOutputTopic<string, Decision>(topics.mailDecisions);
    await mails.pipe('mbx-1', mail({ eventId: 'e1', messageId: 'm1', spamScore: 0.6 }), T0);
    await mails.pipe('mbx-1', mail({ eventId: 'e2', messageId: 'm2', spamScore: 0.1 }), T0 + 1);
    expect(decisions.readValues().map((d) => [d!.action, d!.reason])).toEqual([
      ['JUNK', 'SPAM_SCORE'],
      ['INBOX', 'CLEAN'],
    ]);
  });
});
