import avro from 'avsc';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Workload } from '../../../demo/traffic.js';
import {
  INFERRED_EXPIRY_MS,
  MAX_ADDRESS_ENTRIES,
  MAX_DOMAIN_ENTRIES,
  type MailEvent,
  type UserInteraction,
} from '../../../processors/logic/model.js';

function schema(name: string): avro.Type {
  return avro.Type.forSchema(JSON.parse(readFileSync(`schemas/v1/${name}.avsc`, 'utf8')) as avro.Schema);
}

const T0 = Date.UTC(2025, 0, 15);

function generate(w: Workload, n: number): { mails: MailEvent[]; interactions: UserInteraction[] } {
  const mails: MailEvent[] = [];
  const interactions: UserInteraction[] = [];
  for (let i = 0; i < n; i++) {
    const m = w.nextMail(T0 + i);
    mails.push(m);
    const it = w.maybeInteraction(m, T0 + i);
    if (it) interactions.push(it);
  }
  return { mails, interactions };
}

describe('Workload', () => {
  const N = 20_000;
  const w = new Workload({ seed: 42, startTime: T0 });
  const { mails, interactions } = generate(w, N);

  it('is deterministic for a seed and differs between seeds', () => {
    const a = generate(new Workload({ seed: 7, startTime: T0 }), 2000);
    const b = generate(new Workload({ seed: 7, startTime: T0 }), 2000);
    const c = generate(new Workload({ seed: 8, startTime: T0 }), 2000);
    expect(b).toEqual(a);
    expect(c.mails.map((m) => m.mailboxId)).not.toEqual(a.mails.map((m) => m.mailboxId));
    const wa = new Workload({ seed: 7 });
    const wb = new Workload({ seed: 7 });
    expect(wb.seedPreferences(0.2, T0)).toEqual(wa.seedPreferences(0.2, T0));
    expect(wb.tenantPolicies()).toEqual(wa.tenantPolicies());
  });

  it('uses its own clock from startTime when no time is given', () => {
    const x = new Workload({ seed: 3, startTime: T0 });
    const first = x.nextMail();
    const second = x.nextMail();
    expect(first.receivedAt).toBe(T0);
    expect(second.receivedAt).toBe(T0 + 1);
  });

  it('mixes about 60% clean, 25% bulk and 15% spam senders', () => {
    const counts = { clean: 0, bulk: 0, spam: 0 };
    for (const m of mails) {
      const c = w.categoryOf(m.senderAddress);
      expect(c).toBeDefined();
      counts[c!]++;
    }
    expect(Math.abs(counts.clean / N - 0.6)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(counts.bulk / N - 0.25)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(counts.spam / N - 0.15)).toBeLessThanOrEqual(0.03);
  });

  it('gives each category plausible scores', () => {
    const by = (c: string) => mails.filter((m) => w.categoryOf(m.senderAddress) === c);
    const clean = by('clean');
    const bulk = by('bulk');
    const spam = by('spam');
    expect(clean.every((m) => m.spamScore <= 0.3 && m.bulkScore <= 3)).toBe(true);
    expect(clean.filter((m) => m.spf === 'PASS' && m.dkim === 'PASS').length / clean.length).toBeGreaterThan(0.9);
    expect(bulk.every((m) => m.bulkScore >= 5 && m.bulkScore <= 9)).toBe(true);
    expect(bulk.filter((m) => m.hasListUnsubscribe).length / bulk.length).toBeGreaterThan(0.5);
    expect(spam.filter((m) => m.spamScore >= 0.9).length / spam.length).toBeGreaterThan(0.75);
    expect(spam.some((m) => m.spf === 'FAIL' || m.dkim === 'FAIL' || m.dmarc === 'FAIL')).toBe(true);
    for (const m of mails) {
      expect(m.senderDomain).toBe(m.senderDomain.toLowerCase());
      expect(m.senderAddress.endsWith(`@${m.senderDomain}`)).toBe(true);
    }
  });

  it('generates unique event and message ids', () => {
    expect(new Set(mails.map((m) => m.eventId)).size).toBe(N);
    expect(new Set(mails.map((m) => m.messageId)).size).toBe(N);
    const all = new Set([...mails.map((m) => m.eventId), ...interactions.map((i) => i.eventId)]);
    expect(all.size).toBe(N + interactions.length);
  });

  it('follows about 5% of mails with a plausible interaction, a little later', () => {
    expect(interactions.length / N).toBeGreaterThan(0.04);
    expect(interactions.length / N).toBeLessThan(0.06);
    const byMessage = new Map(mails.map((m) => [m.messageId, m]));
    for (const i of interactions) {
      const m = byMessage.get(i.messageId)!;
      expect(i.mailboxId).toBe(m.mailboxId);
      expect(i.tenantId).toBe(m.tenantId);
      expect(i.messageReceivedAt).toBe(m.receivedAt);
      expect(i.occurredAt).toBeGreaterThan(m.receivedAt);
      expect(i.occurredAt - m.receivedAt).toBeLessThanOrEqual(10_000);
    }
    const actions = (c: string) =>
      new Set(interactions.filter((i) => w.categoryOf(i.senderAddress) === c).map((i) => i.action));
    expect(actions('spam').has('MOVED_TO_JUNK') || actions('spam').has('REPORTED_SPAM')).toBe(true);
    expect(actions('spam').has('REPLIED')).toBe(false);
    expect(actions('bulk').has('MOVED_TO_PROMOTIONS')).toBe(true);
    expect(actions('clean').has('REPLIED')).toBe(true);
    expect(actions('clean').has('UNSUBSCRIBED')).toBe(false);
  });

  it('skews activity: the top 1% of mailboxes get a clearly larger share', () => {
    const perMailbox = new Map<string, number>();
    for (const m of mails) perMailbox.set(m.mailboxId, (perMailbox.get(m.mailboxId) ?? 0) + 1);
    const sorted = [...perMailbox.values()].sort((a, b) => b - a);
    const top = sorted.slice(0, Math.ceil(w.mailboxIds.length / 100)).reduce((a, b) => a + b, 0);
    expect(top / N).toBeGreaterThan(0.15); // uniform would be 1%
    expect(top / N).toBeLessThan(0.6); // but not everything
    expect(perMailbox.size).toBeGreaterThan(2000); // the long tail is there too
  });

  it('produces records valid against the Avro schemas', () => {
    const mailType = schema('MailEvent');
    const interactionType = schema('UserInteraction');
    const prefsType = schema('UserPreferences');
    const policyType = schema('TenantPolicy');
    for (const m of mails) expect(mailType.isValid(m)).toBe(true);
    for (const i of interactions) expect(interactionType.isValid(i)).toBe(true);
    for (const p of w.seedPreferences(0.1, T0)) expect(prefsType.isValid(p)).toBe(true);
    for (const p of w.restorePreferences(500, 200, T0)) expect(prefsType.isValid(p)).toBe(true);
    for (const t of w.tenantPolicies()) expect(policyType.isValid(t)).toBe(true);
  });

  it(
    'seeds version-1 preferences for about the requested share of mailboxes, within the limits',
    { timeout: 60_000 },
    () => {
      const prefs = w.seedPreferences(0.5, T0);
      expect(prefs.length / w.mailboxIds.length).toBeGreaterThan(0.47);
      expect(prefs.length / w.mailboxIds.length).toBeLessThan(0.53);
      expect(new Set(prefs.map((p) => p.mailboxId)).size).toBe(prefs.length);
      const tenants = new Set(w.tenantIds);
      for (const p of prefs) {
        expect(p.version).toBe(1);
        expect(tenants.has(p.tenantId)).toBe(true);
        expect(p.entries.length).toBeGreaterThanOrEqual(3);
        expect(p.entries.length).toBeLessThanOrEqual(8);
        expect(p.entries.filter((e) => e.scope === 'ADDRESS').length).toBeLessThanOrEqual(MAX_ADDRESS_ENTRIES);
        expect(p.entries.filter((e) => e.scope === 'DOMAIN').length).toBeLessThanOrEqual(MAX_DOMAIN_ENTRIES);
        expect(new Set(p.entries.map((e) => `${e.scope}:${e.key}`)).size).toBe(p.entries.length);
        for (const e of p.entries) {
          expect(e.key).toBe(e.key.toLowerCase());
          expect(e.scope === 'ADDRESS').toBe(e.key.includes('@'));
          expect(e.firstSeenAt).toBeLessThanOrEqual(e.updatedAt);
          expect(e.updatedAt).toBeLessThanOrEqual(p.updatedAt);
          if (e.source === 'EXPLICIT') {
            expect(e.expiresAt).toBeNull();
            expect(e.evidence).toBe(1);
          } else {
            // learning infers only SAFE (REPLIED) and JUNK, for addresses
            expect(e.scope).toBe('ADDRESS');
            expect(['SAFE', 'JUNK']).toContain(e.verdict);
            expect(e.evidence).toBeGreaterThanOrEqual(1);
            expect(e.expiresAt).toBe(e.updatedAt + INFERRED_EXPIRY_MS);
            expect(e.expiresAt!).toBeGreaterThan(T0);
          }
          if (e.scope === 'DOMAIN') expect(['SAFE', 'JUNK']).toContain(e.verdict);
        }
      }
      const sources = new Set(prefs.flatMap((p) => p.entries.map((e) => `${e.source}/${e.verdict}`)));
      for (const k of ['EXPLICIT/SAFE', 'EXPLICIT/PROMOTIONS', 'EXPLICIT/JUNK', 'INFERRED/SAFE', 'INFERRED/JUNK'])
        expect(sources.has(k)).toBe(true);
    },
  );

  it('restore records repeat keys with increasing versions', () => {
    const recs = [...w.restorePreferences(10, 4, T0)];
    expect(recs.map((r) => r.mailboxId)).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 0, 1].map((k) => `rmbx-000000${k}`));
    expect(recs.map((r) => r.version)).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
  });

  it('gives every tenant a policy with lower-cased allow and block lists', () => {
    const policies = w.tenantPolicies();
    expect(policies.map((p) => p.tenantId)).toEqual([...w.tenantIds]);
    for (const p of policies) {
      expect(p.block.length).toBeGreaterThan(0);
      for (const k of [...p.allow, ...p.block]) expect(k).toBe(k.toLowerCase());
      expect(p.allow.filter((k) => p.block.includes(k))).toEqual([]);
    }
  });
});
