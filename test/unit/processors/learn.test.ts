import { describe, expect, it } from 'vitest';
import {
  EVIDENCE_RESTART_MS,
  INFERRED_EXPIRY_MS,
  LEARNING_WINDOW_MS,
  MAX_ADDRESS_ENTRIES,
  MAX_DOMAIN_ENTRIES,
  decide,
  dedupeApplies,
  isListEdit,
  learn,
  pruneExpired,
  type EntryScope,
  type InteractionAction,
  type LearnResult,
  type PreferenceEntry,
  type UserInteraction,
  type UserPreferences,
  type Verdict,
} from '../../../processors/logic/index.js';
import {
  ADDR,
  DAY,
  DOMAIN,
  MAILBOX,
  T0,
  TENANT,
  deepFreeze,
  entry,
  inferred,
  interaction,
  mail,
  prefs,
} from './fixtures.js';

const NOT_DUP = { duplicate: false };

function run(
  current: UserPreferences | undefined,
  action: InteractionAction,
  overrides: Partial<UserInteraction> = {},
  duplicate = false,
): LearnResult {
  return learn(current, interaction(action, overrides), { duplicate });
}

function only(next: UserPreferences | undefined, scope: EntryScope = 'ADDRESS', key = ADDR): PreferenceEntry {
  expect(next).toBeDefined();
  const found = next!.entries.filter((e) => e.scope === scope && e.key === key);
  expect(found).toHaveLength(1);
  return found[0]!;
}

/** Applies a sequence of (action, occurredAt) to start and returns every result. */
function sequence(
  start: UserPreferences | undefined,
  steps: [InteractionAction, number][],
): { results: LearnResult[]; last: UserPreferences | undefined } {
  let cur = start;
  const results: LearnResult[] = [];
  for (const [action, at] of steps) {
    const r = run(cur, action, { occurredAt: at, messageReceivedAt: at - 1000 });
    results.push(r);
    if (r.next !== undefined) cur = r.next;
  }
  return { results, last: cur };
}

describe('learn: what teaches nothing (§4)', () => {
  it('DELETED teaches nothing', () => {
    const r = run(undefined, 'DELETED');
    expect(r).toMatchObject({ next: undefined, ignored: 'DELETED', evicted: [] });
  });

  it('UNKNOWN (an action from a newer producer) teaches nothing', () => {
    expect(run(undefined, 'UNKNOWN')).toMatchObject({ next: undefined, ignored: 'UNKNOWN_ACTION' });
    const raw = interaction('UNKNOWN', { action: 'SOMETHING_NEW' as InteractionAction });
    expect(learn(undefined, raw, NOT_DUP)).toMatchObject({ next: undefined, ignored: 'UNKNOWN_ACTION' });
  });

  const messageActions: InteractionAction[] = [
    'MOVED_TO_INBOX',
    'MOVED_TO_PROMOTIONS',
    'MOVED_TO_JUNK',
    'REPORTED_SPAM',
    'MARKED_NOT_SPAM',
    'UNSUBSCRIBED',
    'REPLIED',
  ];

  it.each(messageActions)('%s exactly 7 days after receipt still teaches', (action) => {
    const r = run(undefined, action, { messageReceivedAt: T0 - LEARNING_WINDOW_MS });
    expect(r.ignored).toBeUndefined();
    expect(r.next?.entries).toHaveLength(1);
  });

  it.each(messageActions)('%s more than 7 days after receipt teaches nothing', (action) => {
    const r = run(undefined, action, { messageReceivedAt: T0 - LEARNING_WINDOW_MS - 1 });
    expect(r).toMatchObject({ next: undefined, ignored: 'TOO_LATE' });
  });

  const listEdits: InteractionAction[] = ['ALLOW_SENDER', 'BLOCK_SENDER', 'ALLOW_DOMAIN', 'BLOCK_DOMAIN'];
  it.each(listEdits)('%s is a list edit: the 7-day window does not apply', (action) => {
    const r = run(undefined, action, { messageReceivedAt: T0 - 365 * DAY });
    expect(r.next?.entries).toHaveLength(1);
  });

  it.each(messageActions)('a duplicate %s teaches nothing', (action) => {
    const r = run(undefined, action, {}, true);
    expect(r).toMatchObject({ next: undefined, ignored: 'DUPLICATE' });
  });

  it('list edits are idempotent and not deduplicated (ALLOW → REMOVE → ALLOW from one message)', () => {
    const a = run(undefined, 'ALLOW_SENDER', {}, true);
    expect(a.next?.entries).toHaveLength(1);
    const b = run(a.next, 'REMOVE_SENDER', { occurredAt: T0 + 1 }, true);
    expect(b.next?.entries).toHaveLength(0);
    const c = run(b.next, 'ALLOW_SENDER', { occurredAt: T0 + 2 }, true);
    expect(c.next?.entries).toHaveLength(1);
    expect(c.next?.version).toBe(3);
  });

  it('dedupeApplies / isListEdit classify every action', () => {
    const table: [InteractionAction, boolean, boolean][] = [
      ['MOVED_TO_INBOX', true, false],
      ['MOVED_TO_PROMOTIONS', true, false],
      ['MOVED_TO_JUNK', true, false],
      ['REPORTED_SPAM', true, false],
      ['MARKED_NOT_SPAM', true, false],
      ['UNSUBSCRIBED', true, false],
      ['REPLIED', true, false],
      ['DELETED', false, false],
      ['ALLOW_SENDER', false, true],
      ['BLOCK_SENDER', false, true],
      ['ALLOW_DOMAIN', false, true],
      ['BLOCK_DOMAIN', false, true],
      ['REMOVE_SENDER', false, true],
      ['REMOVE_DOMAIN', false, true],
      ['UNKNOWN', false, false],
    ];
    for (const [action, dedupe, listEdit] of table) {
      expect([action, dedupeApplies(action), isListEdit(action)]).toEqual([action, dedupe, listEdit]);
    }
  });

  it('an interaction without a sender teaches nothing', () => {
    expect(run(undefined, 'ALLOW_SENDER', { senderAddress: '  ' })).toMatchObject({
      next: undefined,
      ignored: 'NO_KEY',
    });
    expect(run(undefined, 'BLOCK_DOMAIN', { senderAddress: '', senderDomain: '' })).toMatchObject({
      next: undefined,
      ignored: 'NO_KEY',
    });
  });
});

describe('learn: explicit actions (§4)', () => {
  const table: [InteractionAction, EntryScope, string, Verdict][] = [
    ['MOVED_TO_INBOX', 'ADDRESS', ADDR, 'SAFE'],
    ['MARKED_NOT_SPAM', 'ADDRESS', ADDR, 'SAFE'],
    ['MOVED_TO_PROMOTIONS', 'ADDRESS', ADDR, 'PROMOTIONS'],
    ['ALLOW_SENDER', 'ADDRESS', ADDR, 'SAFE'],
    ['BLOCK_SENDER', 'ADDRESS', ADDR, 'JUNK'],
    ['ALLOW_DOMAIN', 'DOMAIN', DOMAIN, 'SAFE'],
    ['BLOCK_DOMAIN', 'DOMAIN', DOMAIN, 'JUNK'],
  ];

  it.each(table)(
    '%s on an empty mailbox creates an explicit %s entry (%s) = %s, version 1',
    (action, scope, key, verdict) => {
      const i = interaction(action, { occurredAt: T0 + 5 });
      const r = learn(undefined, i, NOT_DUP);
      expect(r.ignored).toBeUndefined();
      expect(r.change).toBe('ADDED');
      expect(r.next).toEqual({
        mailboxId: MAILBOX,
        tenantId: TENANT,
        version: 1,
        updatedAt: T0 + 5,
        entries: [
          {
            key,
            scope,
            verdict,
            source: 'EXPLICIT',
            evidence: 1,
            firstSeenAt: T0 + 5,
            updatedAt: T0 + 5,
            expiresAt: null,
          },
        ],
      });
      expect(r.evicted).toEqual([]);
    },
  );

  it.each(table)('%s repeating the existing explicit verdict changes nothing', (action, scope, key, verdict) => {
    const current = deepFreeze(prefs([entry({ scope, key, verdict })], 4));
    const r = run(current, action);
    expect(r).toMatchObject({ next: undefined, ignored: 'NO_CHANGE' });
  });

  it('explicit different verdict replaces an explicit entry (firstSeenAt reset), version + 1', () => {
    const current = deepFreeze(prefs([entry({ verdict: 'SAFE' })], 4));
    const r = run(current, 'BLOCK_SENDER', { occurredAt: T0 + 9 });
    expect(r.change).toBe('REPLACED');
    expect(r.next?.version).toBe(5);
    expect(r.next?.updatedAt).toBe(T0 + 9);
    expect(only(r.next)).toEqual(entry({ verdict: 'JUNK', firstSeenAt: T0 + 9, updatedAt: T0 + 9 }));
  });

  it('explicit replaces an inferred entry of the other verdict', () => {
    const current = deepFreeze(prefs([inferred({ verdict: 'JUNK', evidence: 3 })]));
    const e = only(run(current, 'MOVED_TO_INBOX').next);
    expect(e).toMatchObject({ verdict: 'SAFE', source: 'EXPLICIT', evidence: 1, expiresAt: null, firstSeenAt: T0 });
  });

  it('explicit replaces an inferred entry of the same verdict (it becomes explicit)', () => {
    const current = deepFreeze(prefs([inferred({ verdict: 'SAFE', evidence: 2 })]));
    const r = run(current, 'ALLOW_SENDER');
    expect(r.change).toBe('REPLACED');
    expect(only(r.next)).toMatchObject({ verdict: 'SAFE', source: 'EXPLICIT', expiresAt: null });
  });

  it('explicit on an address leaves the domain entry alone, and vice versa', () => {
    const current = deepFreeze(prefs([entry({ scope: 'DOMAIN', key: DOMAIN, verdict: 'JUNK' })]));
    const r = run(current, 'ALLOW_SENDER');
    expect(r.next?.entries).toEqual([
      entry({ scope: 'DOMAIN', key: DOMAIN, verdict: 'JUNK' }),
      expect.objectContaining({ key: ADDR, scope: 'ADDRESS', verdict: 'SAFE' }),
    ]);
    const r2 = run(r.next, 'ALLOW_DOMAIN', { occurredAt: T0 + 1 });
    expect(only(r2.next, 'DOMAIN', DOMAIN).verdict).toBe('SAFE');
    expect(only(r2.next, 'ADDRESS', ADDR).verdict).toBe('SAFE');
  });

  it('keys are lower-cased and matched case-insensitively', () => {
    const r = run(undefined, 'ALLOW_SENDER', { senderAddress: ' Alice@Example.COM ' });
    expect(only(r.next).key).toBe(ADDR);
    const again = run(r.next, 'ALLOW_SENDER', { senderAddress: 'ALICE@EXAMPLE.COM', occurredAt: T0 + 1 });
    expect(again.ignored).toBe('NO_CHANGE');
    const d = run(undefined, 'BLOCK_DOMAIN', { senderDomain: 'EXAMPLE.Com' });
    expect(only(d.next, 'DOMAIN', DOMAIN).verdict).toBe('JUNK');
  });

  it('the domain of a _DOMAIN action falls back to the address when senderDomain is empty', () => {
    const r = run(undefined, 'BLOCK_DOMAIN', { senderAddress: 'x@Spam.Example', senderDomain: '' });
    expect(only(r.next, 'DOMAIN', 'spam.example').verdict).toBe('JUNK');
  });
});

describe('learn: remove (§4)', () => {
  it('REMOVE_SENDER deletes the address entry (explicit) and keeps the others', () => {
    const dom = entry({ scope: 'DOMAIN', key: DOMAIN, verdict: 'JUNK' });
    const other = entry({ key: 'bob@example.com' });
    const current = deepFreeze(prefs([entry(), dom, other], 3));
    const r = run(current, 'REMOVE_SENDER');
    expect(r.change).toBe('REMOVED');
    expect(r.next?.version).toBe(4);
    expect(r.next?.entries).toEqual([dom, other]);
  });

  it('REMOVE_SENDER deletes an inferred address entry', () => {
    const current = deepFreeze(prefs([inferred({ verdict: 'JUNK', evidence: 4 })]));
    expect(run(current, 'REMOVE_SENDER').next?.entries).toEqual([]);
  });

  it('REMOVE_DOMAIN deletes only the domain entry', () => {
    const addr = entry({ verdict: 'JUNK' });
    const current = deepFreeze(prefs([addr, entry({ scope: 'DOMAIN', key: DOMAIN })]));
    expect(run(current, 'REMOVE_DOMAIN').next?.entries).toEqual([addr]);
  });

  it('removing what is not there changes nothing', () => {
    expect(run(undefined, 'REMOVE_SENDER')).toMatchObject({ next: undefined, ignored: 'NO_CHANGE' });
    const current = deepFreeze(prefs([entry({ scope: 'DOMAIN', key: DOMAIN })]));
    expect(run(current, 'REMOVE_SENDER')).toMatchObject({ next: undefined, ignored: 'NO_CHANGE' });
    expect(run(prefs([entry()]), 'REMOVE_DOMAIN')).toMatchObject({ next: undefined, ignored: 'NO_CHANGE' });
  });
});

describe('learn: inferred signals (§4)', () => {
  it('MOVED_TO_JUNK creates inferred JUNK evidence 1 (not live); a second signal makes it live', () => {
    const r1 = run(undefined, 'MOVED_TO_JUNK');
    const e1 = only(r1.next);
    expect(e1).toEqual({
      key: ADDR,
      scope: 'ADDRESS',
      verdict: 'JUNK',
      source: 'INFERRED',
      evidence: 1,
      firstSeenAt: T0,
      updatedAt: T0,
      expiresAt: T0 + 90 * DAY,
    });
    expect(decide(mail({ receivedAt: T0 + 1 }), r1.next, undefined).reason).toBe('CLEAN');

    const r2 = run(r1.next, 'REPORTED_SPAM', { occurredAt: T0 + DAY });
    expect(r2.change).toBe('EVIDENCE');
    expect(only(r2.next)).toEqual({
      ...e1,
      evidence: 2,
      updatedAt: T0 + DAY,
      expiresAt: T0 + DAY + INFERRED_EXPIRY_MS,
    });
    expect(r2.next?.version).toBe(2);
    expect(decide(mail({ receivedAt: T0 + DAY + 1 }), r2.next, undefined)).toMatchObject({
      action: 'JUNK',
      reason: 'USER_JUNK',
      matchedKey: ADDR,
      preferencesVersion: 2,
    });
  });

  it('evidence keeps accumulating within 30 days, firstSeenAt kept', () => {
    const { last } = sequence(undefined, [
      ['MOVED_TO_JUNK', T0],
      ['MOVED_TO_JUNK', T0 + 10 * DAY],
      ['REPORTED_SPAM', T0 + 39 * DAY],
      ['MOVED_TO_JUNK', T0 + 69 * DAY],
    ]);
    expect(only(last)).toMatchObject({
      evidence: 4,
      firstSeenAt: T0,
      updatedAt: T0 + 69 * DAY,
      expiresAt: T0 + 159 * DAY,
    });
    expect(last?.version).toBe(4);
  });

  it('a signal exactly 30 days after the last one still adds', () => {
    const { last } = sequence(undefined, [
      ['MOVED_TO_JUNK', T0],
      ['MOVED_TO_JUNK', T0 + EVIDENCE_RESTART_MS],
    ]);
    expect(only(last)).toMatchObject({ evidence: 2, firstSeenAt: T0 });
  });

  it('a signal more than 30 days after the last one restarts evidence (and firstSeenAt)', () => {
    const t2 = T0 + EVIDENCE_RESTART_MS + 1;
    const { results, last } = sequence(undefined, [
      ['MOVED_TO_JUNK', T0],
      ['MOVED_TO_JUNK', t2],
    ]);
    expect(results[1]!.change).toBe('RESTARTED');
    expect(only(last)).toMatchObject({
      evidence: 1,
      firstSeenAt: t2,
      updatedAt: t2,
      expiresAt: t2 + INFERRED_EXPIRY_MS,
    });
    expect(last?.version).toBe(2);
  });

  it('restart of a live entry with high evidence drops it below the live threshold', () => {
    const current = deepFreeze(prefs([inferred({ verdict: 'JUNK', evidence: 5, updatedAt: T0 - 31 * DAY })]));
    expect(decide(mail({ receivedAt: T0 - 1 }), current, undefined).reason).toBe('USER_JUNK');
    const r = run(current, 'MOVED_TO_JUNK');
    expect(only(r.next).evidence).toBe(1);
    expect(decide(mail({ receivedAt: T0 + 1 }), r.next, undefined).reason).toBe('CLEAN');
  });

  it('UNSUBSCRIBED creates inferred JUNK with evidence 2 (live at once)', () => {
    const r = run(undefined, 'UNSUBSCRIBED');
    expect(only(r.next)).toMatchObject({
      verdict: 'JUNK',
      source: 'INFERRED',
      evidence: 2,
      expiresAt: T0 + INFERRED_EXPIRY_MS,
    });
    expect(decide(mail({ receivedAt: T0 + 1 }), r.next, undefined).reason).toBe('USER_JUNK');
  });

  it.each([
    [1, 2],
    [2, 3],
    [5, 6],
  ])('UNSUBSCRIBED on inferred JUNK evidence %i gives max(evidence + 1, 2) = %i', (before, after) => {
    const current = deepFreeze(prefs([inferred({ verdict: 'JUNK', evidence: before, updatedAt: T0 - 3 * DAY })]));
    const e = only(run(current, 'UNSUBSCRIBED').next);
    expect(e).toMatchObject({ evidence: after, firstSeenAt: T0 - 3 * DAY, updatedAt: T0 });
  });

  it('UNSUBSCRIBED after more than 30 days restarts at 2', () => {
    const current = deepFreeze(prefs([inferred({ verdict: 'JUNK', evidence: 5, updatedAt: T0 - 31 * DAY })]));
    expect(only(run(current, 'UNSUBSCRIBED').next)).toMatchObject({ evidence: 2, firstSeenAt: T0 });
  });

  it('REPLIED adds SAFE evidence, live from 1', () => {
    const r1 = run(undefined, 'REPLIED');
    expect(only(r1.next)).toMatchObject({ verdict: 'SAFE', source: 'INFERRED', evidence: 1 });
    expect(decide(mail({ receivedAt: T0 + 1 }), r1.next, undefined).reason).toBe('USER_SAFE');
    const r2 = run(r1.next, 'REPLIED', { occurredAt: T0 + DAY });
    expect(only(r2.next)).toMatchObject({ verdict: 'SAFE', evidence: 2, firstSeenAt: T0 });
  });

  it('a different verdict replaces the inferred entry (JUNK → SAFE)', () => {
    const current = deepFreeze(
      prefs([inferred({ verdict: 'JUNK', evidence: 3, updatedAt: T0 - DAY, firstSeenAt: T0 - 20 * DAY })]),
    );
    const r = run(current, 'REPLIED');
    expect(r.change).toBe('REPLACED');
    expect(only(r.next)).toEqual(
      inferred({ verdict: 'SAFE', evidence: 1, firstSeenAt: T0, updatedAt: T0, expiresAt: T0 + INFERRED_EXPIRY_MS }),
    );
  });

  it('a different verdict replaces the inferred entry (SAFE → JUNK, UNSUBSCRIBED gives 2)', () => {
    const current = deepFreeze(prefs([inferred({ verdict: 'SAFE', evidence: 7 })]));
    expect(only(run(current, 'MOVED_TO_JUNK').next)).toMatchObject({ verdict: 'JUNK', evidence: 1, firstSeenAt: T0 });
    expect(only(run(current, 'UNSUBSCRIBED').next)).toMatchObject({ verdict: 'JUNK', evidence: 2, firstSeenAt: T0 });
  });

  it.each<[InteractionAction, Verdict]>([
    ['MOVED_TO_JUNK', 'SAFE'],
    ['REPORTED_SPAM', 'PROMOTIONS'],
    ['UNSUBSCRIBED', 'SAFE'],
    ['REPLIED', 'JUNK'],
    ['MOVED_TO_JUNK', 'JUNK'],
    ['REPLIED', 'SAFE'],
  ])('inferred %s never changes an explicit %s entry', (action, verdict) => {
    const current = deepFreeze(prefs([entry({ verdict })]));
    expect(run(current, action)).toMatchObject({ next: undefined, ignored: 'EXPLICIT_ENTRY' });
  });

  it('inferred signals go to the address even when the domain has an explicit entry', () => {
    const dom = entry({ scope: 'DOMAIN', key: DOMAIN, verdict: 'SAFE' });
    const r = run(deepFreeze(prefs([dom])), 'MOVED_TO_JUNK');
    expect(r.next?.entries).toHaveLength(2);
    expect(only(r.next, 'DOMAIN', DOMAIN)).toEqual(dom);
    expect(only(r.next).source).toBe('INFERRED');
  });

  it('inferred entries expire 90 days after their last signal', () => {
    const { last } = sequence(undefined, [
      ['MOVED_TO_JUNK', T0],
      ['MOVED_TO_JUNK', T0 + 5 * DAY],
    ]);
    const exp = T0 + 5 * DAY + 90 * DAY;
    expect(only(last).expiresAt).toBe(exp);
    expect(decide(mail({ receivedAt: exp - 1 }), last, undefined).reason).toBe('USER_JUNK');
    expect(decide(mail({ receivedAt: exp }), last, undefined).reason).toBe('CLEAN');
  });

  it('an expired inferred entry counts as absent when a new signal arrives', () => {
    // last signal 10 days ago (no 30-day restart) but already expired
    const old = inferred({
      verdict: 'JUNK',
      evidence: 4,
      firstSeenAt: T0 - 40 * DAY,
      updatedAt: T0 - 10 * DAY,
      expiresAt: T0 - 1,
    });
    const r = run(deepFreeze(prefs([old])), 'MOVED_TO_JUNK');
    expect(r.change).toBe('REPLACED');
    expect(only(r.next)).toMatchObject({
      evidence: 1,
      firstSeenAt: T0,
      updatedAt: T0,
      expiresAt: T0 + INFERRED_EXPIRY_MS,
    });
    expect(r.pruned).toEqual([]);
  });
});

describe('learn: records, versions, purity', () => {
  it('versions increase by one per change and not on no-ops', () => {
    const { results, last } = sequence(undefined, [
      ['ALLOW_SENDER', T0],
      ['ALLOW_SENDER', T0 + 1], // no-op
      ['MOVED_TO_JUNK', T0 + 2], // explicit wins: no-op
      ['BLOCK_SENDER', T0 + 3],
      ['REMOVE_SENDER', T0 + 4],
      ['REMOVE_SENDER', T0 + 5], // no-op
      ['MOVED_TO_JUNK', T0 + 6],
      ['DELETED', T0 + 7],
    ]);
    expect(results.map((r) => r.next?.version ?? null)).toEqual([1, null, null, 2, 3, null, 4, null]);
    expect(results.map((r) => r.ignored ?? null)).toEqual([
      null,
      'NO_CHANGE',
      'EXPLICIT_ENTRY',
      null,
      null,
      'NO_CHANGE',
      null,
      'DELETED',
    ]);
    expect(last?.version).toBe(4);
    expect(last?.updatedAt).toBe(T0 + 6);
  });

  it('keeps mailboxId and tenantId of an existing record and the order of its entries', () => {
    const a = entry({ key: 'a@x.com' });
    const b = entry({ key: 'b@x.com' });
    const current = deepFreeze({ ...prefs([a, entry(), b]), tenantId: 'tenant-original' });
    const r = run(current, 'BLOCK_SENDER', { tenantId: 'tenant-other' });
    expect(r.next?.tenantId).toBe('tenant-original');
    expect(r.next?.mailboxId).toBe(MAILBOX);
    expect(r.next?.entries.map((e) => e.key)).toEqual(['a@x.com', ADDR, 'b@x.com']);
  });

  it('never mutates its inputs', () => {
    const current = prefs([
      entry(),
      inferred({ key: 'b@x.com', verdict: 'JUNK' }),
      inferred({ key: 'old@x.com', updatedAt: T0 - 200 * DAY }),
    ]);
    const snapshot = structuredClone(current);
    deepFreeze(current);
    const actions: InteractionAction[] = [
      'BLOCK_SENDER',
      'REMOVE_SENDER',
      'MOVED_TO_JUNK',
      'UNSUBSCRIBED',
      'REPLIED',
      'ALLOW_DOMAIN',
    ];
    for (const action of actions) {
      for (const sender of [ADDR, 'b@x.com', 'new@x.com']) {
        const i = deepFreeze(interaction(action, { senderAddress: sender }));
        const r = learn(current, i, NOT_DUP);
        if (r.next !== undefined) expect(r.next).not.toBe(current);
      }
    }
    expect(current).toEqual(snapshot);
  });

  it('drops expired inferred entries as part of a change, never as a change of its own', () => {
    const dead = inferred({ key: 'dead@x.com', verdict: 'JUNK', evidence: 3, updatedAt: T0 - 100 * DAY });
    const explicitOld = entry({ key: 'old@x.com', updatedAt: T0 - 1000 * DAY });
    const current = deepFreeze(prefs([dead, entry(), explicitOld]));
    // no change: nothing emitted although an entry has expired
    expect(run(current, 'ALLOW_SENDER')).toMatchObject({ next: undefined, ignored: 'NO_CHANGE', pruned: [] });
    const r = run(current, 'BLOCK_SENDER');
    expect(r.pruned).toEqual([{ scope: 'ADDRESS', source: 'INFERRED', key: 'dead@x.com' }]);
    expect(r.evicted).toEqual([]);
    expect(r.next?.entries.map((e) => e.key)).toEqual([ADDR, 'old@x.com']);
  });

  it('pruneExpired drops expired inferred entries as a versioned change, or returns nothing', () => {
    const dead = inferred({ key: 'dead@x.com', updatedAt: T0 - 100 * DAY });
    const live = inferred({ key: 'live@x.com', updatedAt: T0 - DAY });
    const current = deepFreeze(prefs([dead, live, entry()], 9));
    const r = pruneExpired(current, T0);
    expect(r.pruned).toEqual([{ scope: 'ADDRESS', source: 'INFERRED', key: 'dead@x.com' }]);
    expect(r.next).toEqual({ ...current, version: 10, updatedAt: T0, entries: [live, entry()] });
    expect(pruneExpired(r.next!, T0)).toEqual({ next: undefined, pruned: [] });
  });
});

describe('learn: limits and eviction (§4)', () => {
  function fill(scope: EntryScope, n: number, make: (i: number) => Partial<PreferenceEntry>): PreferenceEntry[] {
    return Array.from({ length: n }, (_, i) => {
      const key = scope === 'ADDRESS' ? `u${i}@fill.com` : `d${i}.fill.com`;
      return entry({ scope, key, ...make(i) });
    });
  }

  it('a new address entry at 1024 evicts the least recently updated INFERRED one, even if an explicit one is older', () => {
    const explicit = fill('ADDRESS', 1000, (i) => ({ updatedAt: T0 - 500 * DAY + i })); // oldest overall
    const inf = Array.from({ length: 24 }, (_, i) =>
      inferred({ key: `inf${i}@fill.com`, verdict: 'JUNK', updatedAt: T0 - 20 * DAY + (i === 7 ? -DAY : i) }),
    );
    const current = deepFreeze(prefs([...explicit, ...inf]));
    expect(current.entries).toHaveLength(MAX_ADDRESS_ENTRIES);
    const r = run(current, 'ALLOW_SENDER');
    expect(r.evicted).toEqual([{ scope: 'ADDRESS', source: 'INFERRED', key: 'inf7@fill.com' }]);
    expect(r.next?.entries).toHaveLength(MAX_ADDRESS_ENTRIES);
    expect(r.next?.entries.at(-1)).toMatchObject({ key: ADDR, source: 'EXPLICIT' });
    expect(r.next?.entries.some((e) => e.key === 'inf7@fill.com')).toBe(false);
  });

  it('with no inferred entry, the least recently updated EXPLICIT one is evicted', () => {
    const explicit = fill('ADDRESS', MAX_ADDRESS_ENTRIES, (i) => ({
      updatedAt: T0 - DAY + (i === 300 ? -5 * DAY : i),
    }));
    const current = deepFreeze(prefs(explicit));
    const r = run(current, 'MOVED_TO_JUNK');
    expect(r.evicted).toEqual([{ scope: 'ADDRESS', source: 'EXPLICIT', key: 'u300@fill.com' }]);
    expect(r.next?.entries).toHaveLength(MAX_ADDRESS_ENTRIES);
    expect(only(r.next)).toMatchObject({ source: 'INFERRED', verdict: 'JUNK' });
  });

  it('successive additions evict in LRU order: inferred first (oldest first), then explicit', () => {
    const explicit = fill('ADDRESS', MAX_ADDRESS_ENTRIES - 3, (i) => ({ updatedAt: T0 - 400 * DAY + i }));
    const inf = [
      inferred({ key: 'i-b@x.com', updatedAt: T0 - 3 * DAY }),
      inferred({ key: 'i-a@x.com', updatedAt: T0 - 5 * DAY }),
      inferred({ key: 'i-c@x.com', updatedAt: T0 - 4 * DAY }),
    ];
    let cur: UserPreferences | undefined = deepFreeze(prefs([...inf, ...explicit]));
    const evicted: string[] = [];
    for (let k = 0; k < 5; k++) {
      const r = run(cur, 'BLOCK_SENDER', { senderAddress: `new${k}@x.com`, occurredAt: T0 + k });
      expect(r.evicted).toHaveLength(1);
      evicted.push(`${r.evicted[0]!.source}:${r.evicted[0]!.key}`);
      cur = r.next;
      expect(cur?.entries).toHaveLength(MAX_ADDRESS_ENTRIES);
    }
    expect(evicted).toEqual([
      'INFERRED:i-a@x.com',
      'INFERRED:i-c@x.com',
      'INFERRED:i-b@x.com',
      'EXPLICIT:u0@fill.com',
      'EXPLICIT:u1@fill.com',
    ]);
  });

  it('equal updatedAt: the smallest key is evicted first', () => {
    const all = fill('ADDRESS', MAX_ADDRESS_ENTRIES, () => ({
      source: 'INFERRED',
      updatedAt: T0 - DAY,
      expiresAt: T0 + 80 * DAY,
    }));
    const r = run(deepFreeze(prefs(all)), 'ALLOW_SENDER');
    expect(r.evicted).toEqual([{ scope: 'ADDRESS', source: 'INFERRED', key: 'u0@fill.com' }]);
  });

  it('a new domain entry at 256 evicts a domain entry, inferred first, and no address entry', () => {
    const domains = fill('DOMAIN', MAX_DOMAIN_ENTRIES - 1, (i) => ({ updatedAt: T0 - 300 * DAY + i }));
    const infDomain = inferred({
      scope: 'DOMAIN',
      key: 'inf.fill.com',
      verdict: 'JUNK',
      evidence: 2,
      updatedAt: T0 - DAY,
    });
    const addr = inferred({ key: 'oldest@x.com', updatedAt: T0 - 80 * DAY });
    const current = deepFreeze(prefs([addr, ...domains, infDomain]));
    const r = run(current, 'BLOCK_DOMAIN');
    expect(r.evicted).toEqual([{ scope: 'DOMAIN', source: 'INFERRED', key: 'inf.fill.com' }]);
    expect(r.next?.entries.filter((e) => e.scope === 'DOMAIN')).toHaveLength(MAX_DOMAIN_ENTRIES);
    expect(r.next?.entries[0]).toEqual(addr);
    // then the least recently updated explicit domain entry
    const r2 = run(r.next, 'BLOCK_DOMAIN', { senderDomain: 'another.com', occurredAt: T0 + 1 });
    expect(r2.evicted).toEqual([{ scope: 'DOMAIN', source: 'EXPLICIT', key: 'd0.fill.com' }]);
  });

  it('the address limit does not count domain entries and vice versa', () => {
    const domains = fill('DOMAIN', MAX_DOMAIN_ENTRIES, () => ({}));
    const addresses = fill('ADDRESS', MAX_ADDRESS_ENTRIES - 1, () => ({}));
    const current = deepFreeze(prefs([...domains, ...addresses]));
    const r = run(current, 'ALLOW_SENDER');
    expect(r.evicted).toEqual([]);
    expect(r.next?.entries).toHaveLength(MAX_DOMAIN_ENTRIES + MAX_ADDRESS_ENTRIES);
  });

  it('changing an existing entry at the limit evicts nothing', () => {
    const all = [...fill('ADDRESS', MAX_ADDRESS_ENTRIES - 1, () => ({})), inferred({ verdict: 'JUNK', evidence: 1 })];
    const current = deepFreeze(prefs(all));
    for (const action of ['MOVED_TO_JUNK', 'BLOCK_SENDER', 'REPLIED'] as const) {
      const r = run(current, action);
      expect(r.next).toBeDefined();
      expect(r.evicted).toEqual([]);
      expect(r.next?.entries).toHaveLength(MAX_ADDRESS_ENTRIES);
    }
  });

  it('expired inferred entries make room before anything live is evicted', () => {
    const all = [
      ...fill('ADDRESS', MAX_ADDRESS_ENTRIES - 1, () => ({})),
      inferred({ key: 'dead@x.com', updatedAt: T0 - 95 * DAY }),
    ];
    const r = run(deepFreeze(prefs(all)), 'ALLOW_SENDER');
    expect(r.evicted).toEqual([]);
    expect(r.pruned).toEqual([{ scope: 'ADDRESS', source: 'INFERRED', key: 'dead@x.com' }]);
    expect(r.next?.entries).toHaveLength(MAX_ADDRESS_ENTRIES);
  });

  it('a record already over the limit is brought back to it', () => {
    const all = fill('ADDRESS', MAX_ADDRESS_ENTRIES + 5, (i) => ({ updatedAt: T0 - DAY + i }));
    const r = run(deepFreeze(prefs(all)), 'ALLOW_SENDER');
    expect(r.evicted.map((e) => e.key)).toEqual([
      'u0@fill.com',
      'u1@fill.com',
      'u2@fill.com',
      'u3@fill.com',
      'u4@fill.com',
      'u5@fill.com',
    ]);
    expect(r.next?.entries).toHaveLength(MAX_ADDRESS_ENTRIES);
  });
});
