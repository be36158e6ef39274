import { describe, expect, it } from 'vitest';
import {
  capMode,
  effectiveMode,
  modeRank,
  flagProblem,
  rolloutBucket,
  rolloutHash,
  type RolloutFlag,
  type RolloutMode,
} from '../../../processors/logic/index.js';
import { T0 } from './fixtures.js';

function flag(scope: string, mode: RolloutMode, livePercent = 100): RolloutFlag {
  return { scope, mode, livePercent, updatedAt: T0, updatedBy: 'ops', reason: 'test' };
}

const g = (mode: RolloutMode, p = 100): RolloutFlag => flag('*', mode, p);
const t = (mode: RolloutMode, p = 100): RolloutFlag => flag('tenant-1', mode, p);

const mailboxes = Array.from({ length: 5000 }, (_, i) => `mbx-${i}`);

describe('effectiveMode: caps and defaults (§6)', () => {
  const table: [string, RolloutFlag | undefined, RolloutFlag | undefined, RolloutMode | undefined, RolloutMode][] = [
    ['no flags: the default SHADOW', undefined, undefined, undefined, 'SHADOW'],
    ['no flags, configured default LIVE', undefined, undefined, 'LIVE', 'LIVE'],
    ['no flags, configured default OFF', undefined, undefined, 'OFF', 'OFF'],
    ['tenant LIVE, no global: no cap', undefined, t('LIVE'), undefined, 'LIVE'],
    ['tenant OFF beats the default', undefined, t('OFF'), 'LIVE', 'OFF'],
    ['tenant LIVE capped by global SHADOW', g('SHADOW'), t('LIVE'), undefined, 'SHADOW'],
    ['tenant LIVE capped by global OFF', g('OFF'), t('LIVE'), undefined, 'OFF'],
    ['tenant SHADOW capped by global OFF', g('OFF'), t('SHADOW'), undefined, 'OFF'],
    ['global LIVE does not raise tenant SHADOW', g('LIVE'), t('SHADOW'), undefined, 'SHADOW'],
    ['global LIVE does not raise tenant OFF', g('LIVE'), t('OFF'), undefined, 'OFF'],
    ['global LIVE, tenant LIVE', g('LIVE'), t('LIVE'), undefined, 'LIVE'],
    ['global LIVE, no tenant flag: default SHADOW', g('LIVE'), undefined, undefined, 'SHADOW'],
    ['global SHADOW caps a LIVE default', g('SHADOW'), undefined, 'LIVE', 'SHADOW'],
    ['global OFF caps the SHADOW default', g('OFF'), undefined, undefined, 'OFF'],
    ['global SHADOW, tenant SHADOW', g('SHADOW'), t('SHADOW'), undefined, 'SHADOW'],
  ];
  it.each(table)('%s', (_name, global, tenant, def, expected) => {
    const got =
      def === undefined
        ? effectiveMode({ global, tenant }, 'tenant-1', 'mbx-1')
        : effectiveMode({ global, tenant }, 'tenant-1', 'mbx-1', def);
    expect(got).toBe(expected);
  });

  it('orders modes OFF < SHADOW < LIVE', () => {
    expect([modeRank('OFF'), modeRank('SHADOW'), modeRank('LIVE')]).toEqual([0, 1, 2]);
    expect(capMode('LIVE', 'SHADOW')).toBe('SHADOW');
    expect(capMode('SHADOW', 'LIVE')).toBe('SHADOW');
    expect(capMode('LIVE', undefined)).toBe('LIVE');
    expect(capMode('OFF', 'LIVE')).toBe('OFF');
  });

  it('a capped LIVE flag is SHADOW for every mailbox, whatever its percentage', () => {
    for (const m of mailboxes.slice(0, 500)) {
      expect(effectiveMode({ global: g('SHADOW'), tenant: t('LIVE', 100) }, 'tenant-1', m)).toBe('SHADOW');
    }
  });
});

describe('effectiveMode: livePercent (§6)', () => {
  function liveSet(p: number, globalP?: number): Set<string> {
    const flags = { tenant: t('LIVE', p), ...(globalP === undefined ? {} : { global: g('LIVE', globalP) }) };
    return new Set(mailboxes.filter((m) => effectiveMode(flags, 'tenant-1', m) === 'LIVE'));
  }

  it('0% is SHADOW for everyone, 100% LIVE for everyone', () => {
    expect(liveSet(0).size).toBe(0);
    expect(liveSet(100).size).toBe(mailboxes.length);
  });

  it('a mailbox is LIVE iff its bucket is below livePercent; the rest are SHADOW, never OFF', () => {
    for (const m of mailboxes.slice(0, 1000)) {
      const mode = effectiveMode({ tenant: t('LIVE', 37) }, 'tenant-1', m);
      expect(mode).toBe(rolloutBucket('tenant-1', m) < 37 ? 'LIVE' : 'SHADOW');
    }
  });

  it('raising the percentage only adds mailboxes (monotone for every p < q)', () => {
    const sets = Array.from({ length: 101 }, (_, p) => liveSet(p));
    const violations: string[] = [];
    for (let p = 0; p < 100; p++) {
      const a = sets[p]!;
      const b = sets[p + 1]!;
      for (const m of a) if (!b.has(m)) violations.push(`${m}: LIVE at ${p}%, not at ${p + 1}%`);
    }
    expect(violations).toEqual([]);
    expect(sets.map((s) => s.size)).toEqual([...sets.map((s) => s.size)].sort((x, y) => x - y));
    // transitivity spot check over large steps
    for (const [p, q] of [
      [1, 99],
      [10, 50],
      [25, 26],
      [50, 100],
    ] as const) {
      for (const m of sets[p]!) expect(sets[q]!.has(m)).toBe(true);
    }
  });

  it('the live share is close to livePercent', () => {
    for (const p of [1, 5, 10, 25, 50, 75, 90, 99]) {
      const share = (liveSet(p).size / mailboxes.length) * 100;
      expect(Math.abs(share - p)).toBeLessThan(2.5);
    }
  });

  it('a global LIVE flag with a percentage caps the tenant percentage too', () => {
    const capped = liveSet(80, 30);
    expect(capped).toEqual(liveSet(30));
    expect(liveSet(20, 60)).toEqual(liveSet(20));
  });

  it('NaN livePercent counts as 0', () => {
    expect(effectiveMode({ tenant: t('LIVE', Number.NaN) }, 'tenant-1', 'mbx-1')).toBe('SHADOW');
  });

  it('the bucket depends on the tenant too', () => {
    const a = mailboxes.map((m) => rolloutBucket('tenant-1', m));
    const b = mailboxes.map((m) => rolloutBucket('tenant-2', m));
    const same = a.filter((x, i) => x === b[i]).length;
    expect(same).toBeLessThan(mailboxes.length * 0.05); // ~1% expected by chance
  });
});

describe('rolloutBucket', () => {
  it('is an integer in 0..99 and stable', () => {
    for (const m of mailboxes.slice(0, 1000)) {
      const b = rolloutBucket('tenant-1', m);
      expect(Number.isInteger(b)).toBe(true);
      expect(b).toBeGreaterThanOrEqual(0);
      expect(b).toBeLessThan(100);
      expect(rolloutBucket('tenant-1', m)).toBe(b);
    }
  });

  it('is murmur3_x86_32(utf8(tenantId + ":" + mailboxId), seed 0) % 100 (the contract test vectors)', () => {
    expect(rolloutHash('acme', 'mb-1')).toBe(514334219);
    expect(rolloutBucket('acme', 'mb-1')).toBe(19);
    expect(rolloutHash('tenant-7', 'alice@example.com')).toBe(405548882);
    expect(rolloutBucket('tenant-7', 'alice@example.com')).toBe(82);
    expect(rolloutHash('t', 'Zoë')).toBe(2778054340);
    expect(rolloutBucket('t', 'Zoë')).toBe(40);
  });

  it('spreads sequential mailbox ids uniformly over the 100 buckets (chi-square)', () => {
    const n = 20000;
    const counts = new Array<number>(100).fill(0);
    for (let i = 0; i < n; i++) counts[rolloutBucket('tenant-1', `mbx-${i}`)]!++;
    const expected = n / 100;
    const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    // df = 99, p = 0.001 critical value ≈ 148.2
    expect(chi2).toBeLessThan(148.2);
    expect(Math.min(...counts)).toBeGreaterThan(expected * 0.7);
    expect(Math.max(...counts)).toBeLessThan(expected * 1.3);
  });
});

describe('flagProblem: malformed flags', () => {
  it('accepts a well-formed flag', () => {
    expect(flagProblem('tenant-1', t('LIVE', 0))).toBeUndefined();
    expect(flagProblem('tenant-1', t('OFF', 100))).toBeUndefined();
  });
  it('refuses an unknown mode, a percent outside 0..100 or not an integer, and a key that is not the scope', () => {
    expect(flagProblem('tenant-1', { ...t('LIVE'), mode: 'CANARY' as RolloutMode })?.code).toBe('FLAG_MODE');
    expect(flagProblem('tenant-1', t('LIVE', 101))?.code).toBe('FLAG_PERCENT');
    expect(flagProblem('tenant-1', t('LIVE', -1))?.code).toBe('FLAG_PERCENT');
    expect(flagProblem('tenant-1', t('LIVE', 12.5))?.code).toBe('FLAG_PERCENT');
    expect(flagProblem('tenant-2', t('LIVE', 10))?.code).toBe('FLAG_SCOPE');
  });
});
