/**
 * The hot children report exactly what prom-client's own children report for the same
 * observations: the registry's text output of a HotCounter / HotHistogram fed through `hot()`
 * equals that of a plain Counter / Histogram fed through `labels()`.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram } from '../../../runtime/metrics-hot.js';

/** The text output with its series sorted (the order of series is not part of the format). */
const lines = async (r: Registry) => (await r.metrics()).split('\n').sort();
const json = async (r: Registry) =>
  (await r.getMetricsAsJSON()).map((m) => ({
    ...m,
    values: [...m.values].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
  }));

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

function pair() {
  const plainReg = new Registry();
  const hotReg = new Registry();
  const conf = (registers: Registry[]) => ({ name: 'x_total', help: 'h', labelNames: ['a', 'b'] as const, registers });
  const hconf = (registers: Registry[]) => ({
    name: 'x_seconds',
    help: 'h',
    labelNames: ['mode'] as const,
    buckets: BUCKETS,
    registers,
  });
  return {
    plainReg,
    hotReg,
    plainCounter: new Counter(conf([plainReg])),
    hotCounter: new HotCounter(conf([hotReg])),
    plainHist: new Histogram(hconf([plainReg])),
    hotHist: new HotHistogram(hconf([hotReg])),
  };
}

describe('HotCounter and HotHistogram', () => {
  it("report exactly what prom-client's own children report, scrape after scrape", async () => {
    const p = pair();
    const counters = [
      [{ a: 'x', b: 'y' }, p.plainCounter.labels('x', 'y'), p.hotCounter.hot({ a: 'x', b: 'y' })],
      [{ a: 'x', b: 'z' }, p.plainCounter.labels('x', 'z'), p.hotCounter.hot({ a: 'x', b: 'z' })],
    ] as const;
    const hists = [
      [p.plainHist.labels('LIVE'), p.hotHist.hot({ mode: 'LIVE' })],
      [p.plainHist.labels('SHADOW'), p.hotHist.hot({ mode: 'SHADOW' })],
    ] as const;
    // before any observation: the same zero series
    expect(await lines(p.hotReg)).toEqual(await lines(p.plainReg));
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 500; i++) {
        const [, plain, hot] = counters[i % 2]!;
        const n = i % 7 === 0 ? 3 : 1;
        plain.inc(n);
        hot.inc(n);
        // values on bucket bounds, between them, below the first and above the last
        const v = i % 11 === 0 ? BUCKETS[i % BUCKETS.length]! : rnd() * 7;
        hists[i % 2]![0].observe(v);
        hists[i % 2]![1].observe(v);
      }
      // labels() and inc(labels) on the hot metrics are still prom-client's
      p.plainCounter.inc({ a: 'q', b: 'r' }, 2);
      p.hotCounter.inc({ a: 'q', b: 'r' }, 2);
      p.plainHist.observe({ mode: 'OFF' }, 0.3);
      p.hotHist.observe({ mode: 'OFF' }, 0.3);
      expect(await lines(p.hotReg)).toEqual(await lines(p.plainReg));
      expect(await json(p.hotReg)).toEqual(await json(p.plainReg));
    }
    p.plainCounter.reset();
    p.hotCounter.reset();
    p.plainHist.reset();
    p.hotHist.reset();
    expect(await lines(p.hotReg)).toEqual(await lines(p.plainReg));
    counters[0][1].inc();
    counters[0][2].inc();
    hists[1][0].observe(0.07);
    hists[1][1].observe(0.07);
    expect(await lines(p.hotReg)).toEqual(await lines(p.plainReg));
    const after = await p.hotReg.metrics();
    expect(after).toContain('x_total{a="x",b="y"} 1');
    expect(after).toContain('x_seconds_count{mode="SHADOW"} 1');
    expect(after).not.toContain('mode="LIVE"');
  });

  it('gives one child per label values, however often asked (tasks reopened at every rebalance ask again)', async () => {
    const p = pair();
    const a = p.hotCounter.hot({ a: 'x', b: 'y' });
    for (let i = 0; i < 100; i++) p.hotCounter.hot({ b: 'y', a: 'x' }).inc();
    expect(p.hotCounter.hot({ a: 'x', b: 'y' })).toBe(a);
    const h = p.hotHist.hot({ mode: 'LIVE' });
    for (let i = 0; i < 100; i++) p.hotHist.hot({ mode: 'LIVE' }).observe(0.2);
    expect(p.hotHist.hot({ mode: 'LIVE' })).toBe(h);
    const text = await p.hotReg.metrics();
    expect(text).toContain('x_total{a="x",b="y"} 100');
    expect(text).toContain('x_seconds_count{mode="LIVE"} 100');
    expect((p.hotCounter as unknown as { cells: unknown[] }).cells).toHaveLength(1);
    expect((p.hotHist as unknown as { cells: unknown[] }).cells).toHaveLength(1);
  });

  it('refuses what prom-client refuses', () => {
    const p = pair();
    expect(() => p.hotCounter.hot({ a: 'x', b: 'y' }).inc(-1)).toThrow();
    expect(() => p.hotHist.hot({ mode: 'LIVE' }).observe(Number.NaN)).toThrow(TypeError);
  });
});
