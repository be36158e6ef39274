import { describe, expect, it } from 'vitest';
import {
  applySide,
  closeEntry,
  LEGACY_ACTION_MAP,
  mapLegacyAction,
  parityReport,
  type ParityRecord,
} from '../../../processors/logic/parity.js';

const MIN = 60_000;
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 1, 0, 0, 0);
const id = { tenantId: 't1', mailboxId: 'mb', messageId: 'm1' };

describe('pairing', () => {
  it('pairs either order within the window and marks the entry done until it closes', () => {
    const a = applySide(undefined, id, { kind: 'legacy', value: { action: 'INBOX', ts: T0 } }, 10 * MIN);
    expect(a.entry).toEqual({ ...id, legacy: { action: 'INBOX', ts: T0 }, closesAt: T0 + 10 * MIN });
    const b = applySide(
      a.entry,
      id,
      { kind: 'new', value: { action: 'JUNK', reason: 'SPAM_SCORE', ts: T0 + 9 * MIN } },
      10 * MIN,
    );
    expect(b.outcome).toBe('MISMATCH');
    expect(b.emit).toEqual([
      { ...id, legacyAction: 'INBOX', newAction: 'JUNK', newReason: 'SPAM_SCORE', result: 'MISMATCH' },
    ]);
    expect(b.entry).toMatchObject({ done: true, closesAt: T0 + 10 * MIN });
    expect(applySide(b.entry, id, { kind: 'legacy', value: { action: 'INBOX', ts: T0 } }, 10 * MIN).duplicate).toBe(
      true,
    );
    expect(closeEntry(b.entry!)).toEqual({});
  });
  it('a partner too far apart supersedes: the old side is reported missing, the new one waits', () => {
    const a = applySide(undefined, id, { kind: 'new', value: { action: 'INBOX', reason: 'CLEAN', ts: T0 } }, 10 * MIN);
    const b = applySide(a.entry, id, { kind: 'legacy', value: { action: 'INBOX', ts: T0 + 11 * MIN } }, 10 * MIN);
    expect(b.outcome).toBe('LEGACY_MISSING');
    expect(b.emit?.[0]?.result).toBe('LEGACY_MISSING');
    expect(b.entry).toEqual({ ...id, legacy: { action: 'INBOX', ts: T0 + 11 * MIN }, closesAt: T0 + 21 * MIN });
    expect(closeEntry(b.entry!).outcome).toBe('NEW_MISSING');
  });
  it('maps legacy actions explicitly and refuses the rest', () => {
    expect(LEGACY_ACTION_MAP).toEqual({ INBOX: 'INBOX', PROMOTIONS: 'PROMOTIONS', JUNK: 'JUNK' });
    expect(mapLegacyAction('JUNK')).toBe('JUNK');
    expect(() => mapLegacyAction('SPAM')).toThrow('legacy action has no mapping');
    expect(() => mapLegacyAction('constructor')).toThrow('legacy action has no mapping');
  });
});

describe('parity report and promotion gate', () => {
  /** n messages per hour for `hours` hours, `bad` of them mismatching per hour */
  function traffic(tenant: string, hours: number, perHour: number, badPerHour: number[]): ParityRecord[] {
    const out: ParityRecord[] = [];
    for (let h = 0; h < hours; h++)
      for (let i = 0; i < perHour; i++) {
        const ts = T0 + h * HOUR + Math.floor((i * HOUR) / perHour);
        const messageId = `${tenant}-${h}-${i}`;
        const bad = i < (badPerHour[h] ?? 0);
        out.push({ kind: 'new', tenantId: tenant, mailboxId: 'mb', messageId, action: 'INBOX', reason: 'CLEAN', ts });
        out.push({
          kind: 'legacy',
          tenantId: tenant,
          mailboxId: 'mb',
          messageId,
          action: bad ? 'JUNK' : 'INBOX',
          ts: ts + 1000,
        });
      }
    return out;
  }

  it('counts pairs, classes, top triples and hourly windows per tenant', () => {
    const recs = [
      ...traffic('a', 3, 100, [1, 0, 2]),
      {
        kind: 'new',
        tenantId: 'a',
        mailboxId: 'mb',
        messageId: 'lone-new',
        action: 'PROMOTIONS',
        reason: 'BULK',
        ts: T0 + 5 * MIN,
      },
      { kind: 'legacy', tenantId: 'a', mailboxId: 'mb', messageId: 'lone-old', action: 'JUNK', ts: T0 + 6 * MIN },
    ] as ParityRecord[];
    const [a] = parityReport(recs, { now: T0 + 3 * HOUR + 20 * MIN, gate: { minPairs: 100 } });
    expect(a!.pairs).toBe(302);
    expect(a!.matched).toBe(297);
    expect(a!.byClass).toEqual({ MISMATCH: 3, LEGACY_MISSING: 1, NEW_MISSING: 1 });
    expect(a!.topMismatches[0]).toEqual({ legacy: 'JUNK', new: 'INBOX', reason: 'CLEAN', count: 3 });
    // "now" is in hour 3: the last 3 windows are hours 1, 2, 3 (the hour holding "now" included)
    expect(a!.hourly.map((h) => h.pairs)).toEqual([100, 100, 0]);
    expect(a!.gate.holds).toBe(false);
  });

  it('the gate holds at >= 99.5% over >= 10,000 pairs and in each of the last 3 hours; one bad hour fails it', () => {
    const good = traffic('good', 3, 4000, [10, 15, 20]);
    const lucky = traffic('lucky', 3, 4000, [0, 0, 100]); // 99.17% overall
    const oneBadHour = traffic('late', 3, 4000, [0, 0, 25]); // 99.79% overall, 99.375% last hour
    const small = traffic('small', 3, 1000, [0, 0, 0]);
    const report = parityReport([...good, ...lucky, ...oneBadHour, ...small], { now: T0 + 3 * HOUR - 1 });
    const by = Object.fromEntries(report.map((t) => [t.tenantId, t]));
    expect(by.good!.gate).toEqual({ holds: true, why: 'holds' });
    expect(by.good!.pairs).toBe(12_000);
    expect(by.lucky!.gate.holds).toBe(false);
    expect(by.lucky!.gate.why).toBe('match rate 99.17% below 99.50%');
    expect(by.late!.gate.holds).toBe(false);
    expect(by.late!.gate.why).toBe(`hour ${new Date(T0 + 2 * HOUR).toISOString()}: match rate 99.38%`);
    expect(by.small!.gate.why).toBe('3000 pairs, fewer than 10000');
  });

  it('sides whose window is still open are pending, not missing; lone sides before `since` are ignored', () => {
    const recs: ParityRecord[] = [
      { kind: 'legacy', tenantId: 'a', mailboxId: 'mb', messageId: 'old', action: 'JUNK', ts: T0 },
      {
        kind: 'new',
        tenantId: 'a',
        mailboxId: 'mb',
        messageId: 'x',
        action: 'INBOX',
        reason: 'CLEAN',
        ts: T0 + 30 * MIN,
      },
      {
        kind: 'new',
        tenantId: 'a',
        mailboxId: 'mb',
        messageId: 'y',
        action: 'INBOX',
        reason: 'CLEAN',
        ts: T0 + 60 * MIN,
      },
    ];
    const [a] = parityReport(recs, { ignoreLoneBefore: T0 + 20 * MIN });
    expect(a!.byClass).toEqual({ MISMATCH: 0, LEGACY_MISSING: 1, NEW_MISSING: 0 });
    expect(a!.pending).toBe(1);
  });
});

describe('the parity store encoding', () => {
  it('round-trips entries with one side, both sides, and done', async () => {
    const { encodeEntry, decodeEntry } = await import('../../../processors/logic/parity.js');
    const entries = [
      { ...id, legacy: { action: 'PROMOTIONS' as const, ts: T0 }, closesAt: T0 + 10 * MIN },
      { ...id, new: { action: 'JUNK' as const, reason: 'USER_JUNK', ts: T0 + 1 }, closesAt: T0 + 10 * MIN },
      {
        ...id,
        legacy: { action: 'INBOX' as const, ts: T0 },
        new: { action: 'INBOX' as const, reason: 'CLEAN', ts: T0 + 5 },
        closesAt: T0 + 11 * MIN,
        done: true,
      },
    ];
    for (const e of entries) expect(decodeEntry(encodeEntry(e))).toEqual(e);
    expect(encodeEntry(entries[2]!).length).toBeLessThan(JSON.stringify(entries[2]).length / 2);
    expect(() => decodeEntry('{"json":1}')).toThrow('unreadable parity store entry');
  });
});
