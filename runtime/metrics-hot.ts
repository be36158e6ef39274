/**
 * Counters and histograms for per-record hot paths.
 *
 * prom-client's label children (`metric.labels(...)`) hash their label object and validate it on
 * every `inc` / `observe` (a few allocations and a string build per call; at 60,000 records/s
 * they were ~6% of the service's CPU). A hot child here is bound to its label values once and
 * only adds to numbers it holds; the metric hands those sums to prom-client when it is read
 * (a scrape, `get()`), so a scrape sees every observation made before it. Everything else
 * (labels(), inc(labels), observe(labels), get(), reset()) is prom-client's own.
 */
import {
  Counter,
  Histogram,
  type CounterConfiguration,
  type HistogramConfiguration,
  type LabelValues,
} from 'prom-client';

export interface HotCounterChild {
  inc(value?: number): void;
}

export interface HotHistogramChild {
  observe(value: number): void;
}

interface CounterCell<T extends string> {
  labels: LabelValues<T>;
  value: number;
}

/** A prom-client Counter with `hot(labels)` children for hot paths. */
export class HotCounter<T extends string = string> extends Counter<T> {
  private readonly cells: CounterCell<T>[] = [];
  private readonly children = new Map<string, HotCounterChild>();
  private readonly labelNameList: readonly string[];

  constructor(config: CounterConfiguration<T>) {
    const collect = config.collect;
    super({
      ...config,
      collect(this: Counter<T>) {
        (this as HotCounter<T>).flushHot();
        return collect?.call(this);
      },
    });
    this.labelNameList = config.labelNames ?? [];
  }

  /** A child for these label values: `inc` adds to a number, handed over when the metric is read. */
  hot(labels: LabelValues<T>): HotCounterChild {
    // one child per label values, whoever asks (a task's processors are made again at every
    // reopening: without this the cells would pile up over rebalances)
    const key = seriesKey(this.labelNameList, labels);
    const known = this.children.get(key);
    if (known) return known;
    const cell: CounterCell<T> = { labels, value: 0 };
    this.cells.push(cell);
    const child: HotCounterChild = {
      inc(value = 1) {
        if (!(value >= 0)) throw new Error(`a counter only goes up: ${value}`);
        cell.value += value;
      },
    };
    this.children.set(key, child);
    return child;
  }

  private flushHot(): void {
    for (const c of this.cells) {
      if (c.value === 0) continue;
      const v = c.value;
      c.value = 0;
      this.inc(c.labels, v);
    }
  }

  override reset(): void {
    // (prom-client's constructor calls reset before this class's fields exist)
    const cells = this.cells as CounterCell<T>[] | undefined;
    for (const c of cells ?? []) c.value = 0;
    super.reset();
  }
}

interface HistogramCell<T extends string> {
  labels: LabelValues<T>;
  /** the series exists in prom-client (created at the first read after an observation) */
  listed: boolean;
  /** observations per bucket (not cumulative); the last is +Inf */
  counts: number[];
  sum: number;
  count: number;
}

/**
 * A prom-client Histogram with `hot(labels)` children for hot paths. Its buckets must be given
 * (the hot children count into the same bounds). The hot children's counts are added to what
 * prom-client reports in `get()` (which the registry's text and JSON output use).
 */
export class HotHistogram<T extends string = string> extends Histogram<T> {
  private readonly bounds: number[];
  private readonly cells: HistogramCell<T>[] = [];
  private readonly children = new Map<string, HotHistogramChild>();
  private readonly labelNameList: readonly string[];

  constructor(config: HistogramConfiguration<T> & { buckets: number[] }) {
    super(config);
    this.bounds = [...config.buckets].sort((a, b) => a - b);
    this.labelNameList = config.labelNames ?? [];
  }

  /** A child for these label values: `observe` counts into its own buckets, handed over when read. */
  hot(labels: LabelValues<T>): HotHistogramChild {
    // one child per label values, whoever asks (see HotCounter.hot)
    const key = seriesKey(this.labelNameList, labels);
    const known = this.children.get(key);
    if (known) return known;
    const cell: HistogramCell<T> = {
      labels,
      listed: false,
      counts: new Array<number>(this.bounds.length + 1).fill(0),
      sum: 0,
      count: 0,
    };
    this.cells.push(cell);
    const bounds = this.bounds;
    const child: HotHistogramChild = {
      observe(value: number) {
        if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
        // the first bucket whose upper bound is >= value (prom-client's `le`)
        let lo = 0;
        let hi = bounds.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (bounds[mid]! >= value) hi = mid;
          else lo = mid + 1;
        }
        cell.counts[lo]!++;
        cell.sum += value;
        cell.count++;
      },
    };
    this.children.set(key, child);
    return child;
  }

  /**
   * prom-client's `get()` and the registry's text output both read the metric through
   * `getForPromString()` (values whose series labels are in `sharedLabels`, `le` in `labels`):
   * the hot children's counts are added there. The conformance test pins this to prom-client's
   * own output for the same observations.
   */
  async getForPromString(): Promise<Awaited<ReturnType<Histogram<T>['get']>>> {
    // a series appears once observed, as with prom-client's own children
    for (const cell of this.cells)
      if (cell.count > 0 && !cell.listed) {
        cell.listed = true;
        this.zero(cell.labels);
      }
    const base = (Histogram.prototype as unknown as { getForPromString(): Promise<unknown> }).getForPromString;
    const out = (await base.call(this)) as Awaited<ReturnType<Histogram<T>['get']>>;
    for (const cell of this.cells) {
      if (cell.count === 0) continue;
      let cumulative = 0;
      const byBound = new Map<string, number>();
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += cell.counts[i]!;
        byBound.set(i < this.bounds.length ? String(this.bounds[i]) : '+Inf', cumulative);
      }
      for (const v of out.values) {
        const series = (v as { sharedLabels?: Record<string, string | number> }).sharedLabels ?? v.labels;
        if (!this.sameSeries(series, cell.labels)) continue;
        const name = (v as { metricName?: string }).metricName ?? '';
        const le = (v.labels as Record<string, string | number>).le;
        if (name.endsWith('_bucket') && le !== undefined) v.value += byBound.get(String(le)) ?? 0;
        else if (name.endsWith('_sum')) v.value += cell.sum;
        else if (name.endsWith('_count')) v.value += cell.count;
      }
    }
    return out;
  }

  override reset(): void {
    // (prom-client's constructor calls reset before this class's fields exist)
    const cells = this.cells as HistogramCell<T>[] | undefined;
    for (const c of cells ?? []) {
      c.counts.fill(0);
      c.sum = 0;
      c.count = 0;
      c.listed = false;
    }
    super.reset();
  }

  private sameSeries(series: object, labels: LabelValues<T>): boolean {
    const l = series as Record<string, string | number | undefined>;
    for (const n of this.labelNameList)
      if (String(l[n]) !== String((labels as Record<string, string | number | undefined>)[n])) return false;
    return true;
  }
}

/** The label values in label-name order, as one string (a hot child's identity). */
function seriesKey(names: readonly string[], labels: object): string {
  const l = labels as Record<string, string | number | undefined>;
  return JSON.stringify(names.map((n) => (l[n] === undefined ? null : String(l[n]))));
}
