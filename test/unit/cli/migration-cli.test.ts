import { describe, expect, it } from 'vitest';
import { buildFlag, formatBucket } from '../../../cli/flags.js';
import { gateHolds } from '../../../cli/parity.js';
import { formatPlan, parseResume, resumeArg, type ReplaySummary } from '../../../cli/replay.js';
import { parseTime } from '../../../cli/topic-reader.js';
import { ConfigError } from '../../../runtime/errors.js';

describe('um flags set: the CLI refuses malformed flags', () => {
  const at = Date.UTC(2026, 0, 1);
  it('builds a well-formed flag (LIVE defaults to 100%, other modes to 0%)', () => {
    expect(buildFlag({ scope: 't1', mode: 'live', percent: '25', reason: 'canary', by: 'ops' }, at)).toEqual({
      scope: 't1',
      mode: 'LIVE',
      livePercent: 25,
      reason: 'canary',
      updatedBy: 'ops',
      updatedAt: at,
    });
    expect(buildFlag({ scope: '*', mode: 'LIVE', reason: 'go', by: 'ops' }, at).livePercent).toBe(100);
    expect(buildFlag({ scope: 't1', mode: 'SHADOW', reason: 'back', by: 'ops' }, at).livePercent).toBe(0);
  });
  it.each([
    [{ scope: 't1', mode: 'CANARY', reason: 'x' }, 'mode', 'mode must be one of OFF, SHADOW, LIVE'],
    [{ scope: 't1', mode: 'LIVE', percent: '101', reason: 'x' }, 'livePercent', '--percent must be within 0..100'],
    [{ scope: 't1', mode: 'LIVE', percent: '-1', reason: 'x' }, 'livePercent', '--percent must be within 0..100'],
    [{ scope: 't1', mode: 'LIVE', percent: '2.5', reason: 'x' }, 'livePercent', '--percent must be an integer 0..100'],
    [{ scope: 't1', mode: 'LIVE', percent: 'ten', reason: 'x' }, 'livePercent', '--percent must be an integer 0..100'],
    [{ scope: 't1', mode: 'LIVE', reason: '  ' }, 'reason', '--reason is required: say why the flag changes'],
    [{ scope: '', mode: 'LIVE', reason: 'x' }, 'scope', 'scope must be "*" or a tenantId'],
  ])('%o is refused', (input, setting, message) => {
    let err: unknown;
    try {
      buildFlag({ ...input, by: 'ops' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${setting}: ${message}`);
  });
  it('um flags bucket prints the contract hash and bucket', () => {
    expect(formatBucket('tenant-7', 'alice@example.com')).toBe(
      'murmur3_x86_32("tenant-7:alice@example.com", seed 0) = 405548882; bucket 82: LIVE when the tenant is LIVE with livePercent > 82',
    );
  });
});

describe('time and resume arguments', () => {
  const now = Date.UTC(2026, 0, 2, 12);
  it('parses ages, ISO times and epoch milliseconds', () => {
    expect(parseTime('2h', now)).toBe(now - 2 * 3_600_000);
    expect(parseTime('30m', now)).toBe(now - 30 * 60_000);
    expect(parseTime('7d', now)).toBe(now - 7 * 86_400_000);
    expect(parseTime('2026-01-01T00:00:00Z', now)).toBe(Date.UTC(2026, 0, 1));
    expect(parseTime('1767225600000', now)).toBe(1767225600000);
    expect(() => parseTime('yesterday-ish', now)).toThrow('cannot read "yesterday-ish" as a time');
  });
  it('round-trips the resume offsets of a stopped replay', () => {
    const s = {
      plan: [
        { partition: 0, from: 10, to: 100 },
        { partition: 1, from: 0, to: 50 },
        { partition: 2, from: 5, to: 5 },
      ],
      position: new Map([
        [0, 60],
        [1, 50],
        [2, 5],
      ]),
    } as unknown as ReplaySummary;
    expect(resumeArg(s)).toBe('0:60');
    expect([...parseResume('0:60,3:7')]).toEqual([
      [0, 60],
      [3, 7],
    ]);
    expect(() => parseResume('0-60')).toThrow('--resume takes partition:offset pairs');
  });
  it('formats an offset plan with the record count', () => {
    expect(
      formatPlan([
        { partition: 0, from: 10, to: 15 },
        { partition: 1, from: 0, to: 0 },
      ]).split('\n'),
    ).toEqual([
      'partition  from offset  to offset  records',
      '        0           10         15        5',
      '        1            0          0        0',
      'total 5 records (before the tenant and timestamp filters)',
    ]);
  });
  it('the gate holds for a named tenant only when that tenant holds; without one, for all', () => {
    const t = (tenantId: string, holds: boolean) => ({ tenantId, gate: { holds, why: '' } }) as never;
    expect(gateHolds([t('a', true), t('b', false)], 'a')).toBe(true);
    expect(gateHolds([t('a', true), t('b', false)], 'b')).toBe(false);
    expect(gateHolds([t('a', true), t('b', false)], 'c')).toBe(false);
    expect(gateHolds([t('a', true), t('b', false)])).toBe(false);
    expect(gateHolds([t('a', true)])).toBe(true);
    expect(gateHolds([])).toBe(false);
  });
});

describe('the simulated legacy system (demo)', () => {
  it('agrees with the rules without preferences except on the configured share, always on the same mails', async () => {
    const { legacyDecision } = await import('../../../cli/legacy-sim.js');
    const { decide } = await import('../../../processors/logic/decide.js');
    const { mail } = await import('../processors/fixtures.js');
    const mails = Array.from({ length: 20_000 }, (_, i) =>
      mail({ messageId: `m-${i}`, spamScore: (i % 100) / 100, bulkScore: i % 10 }),
    );
    const differ = (frac: number) =>
      mails.filter((m) => legacyDecision(m, frac, 2000).action !== decide(m, undefined, undefined).action);
    expect(differ(0)).toEqual([]);
    const five = differ(0.05);
    expect(five.length / mails.length).toBeGreaterThan(0.04);
    expect(five.length / mails.length).toBeLessThan(0.06);
    expect(differ(0.05)).toEqual(five);
    expect(legacyDecision(mails[0]!, 0, 2000)).toEqual({
      messageId: 'm-0',
      tenantId: mails[0]!.tenantId,
      mailboxId: mails[0]!.mailboxId,
      action: decide(mails[0]!, undefined, undefined).action,
      decidedAt: mails[0]!.receivedAt + 2000,
    });
  });
});
