/**
 * Quantiles of a Prometheus histogram over a recent window (not since start): the difference of
 * two snapshots of its cumulative buckets.
 */
import type { Metric } from 'prom-client';

/** upper bound (le) → cumulative count, summed over label sets */
export type Buckets = ReadonlyMap<number, number>;

export async function histogramBuckets(metric: Metric | undefined): Promise<Buckets> {
  const out = new Map<number, number>();
  if (!metric) return out;
  for (const v of (await metric.get()).values) {
    if (!(v as { metricName?: string }).metricName?.endsWith('_bucket')) continue;
    const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
    out.set(le, (out.get(le) ?? 0) + v.value);
  }
  return out;
}

/** The q-quantile of the observations between `older` and `newer` (linear within a bucket). */
export function windowQuantile(older: Buckets | undefined, newer: Buckets, q: number): number | undefined {
  const sorted = [...newer].map(([le, n]) => [le, n - (older?.get(le) ?? 0)] as const).sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of sorted) {
    if (count >= rank)
      return le === Infinity ? prevLe : prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

/** Keeps the last `size` snapshots; `oldest()` is the start of the window. */
export class SnapshotWindow {
  private readonly snaps: Buckets[] = [];
  constructor(private readonly size: number) {}
  push(b: Buckets): void {
    this.snaps.push(b);
    if (this.snaps.length > this.size) this.snaps.shift();
  }
  /** undefined before the first snapshot: then the window is everything since start */
  oldest(): Buckets | undefined {
    return this.snaps[0];
  }
}
