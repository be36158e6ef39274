/**
 * The runtime's Prometheus metrics, on a registry the runtime owns. Applications register their
 * own metrics on the same registry (`metrics.registry`) so /metrics serves everything.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { rocksdbMemoryUsage } from './state/rocksdb-store.js';

export class RuntimeMetrics {
  readonly registry: Registry;
  readonly recordsConsumed: Counter<'topic'>;
  readonly recordsProcessed: Counter<'task'>;
  readonly processLatency: Histogram<'task'>;
  readonly recordsProduced: Counter<never>;
  readonly produceLatency: Histogram<never>;
  readonly commitLatency: Histogram<never>;
  readonly commits: Counter<'result'>;
  readonly transactions: Counter<'result'>;
  readonly restoreRecords: Counter<'store'>;
  readonly restoreRemaining: Gauge<'store' | 'task'>;
  readonly storeEntries: Gauge<'store' | 'task'>;
  readonly storeOpLatency: Histogram<'store' | 'op'>;
  readonly rebalances: Counter<never>;
  readonly assignedTasks: Gauge<never>;
  readonly standbyTasks: Gauge<never>;
  readonly standbyLag: Gauge<'task'>;
  readonly standbyRecords: Counter<never>;
  readonly deadLetters: Counter<'topic' | 'code'>;
  readonly consumerLag: Gauge<'topic' | 'partition'>;
  readonly state: Gauge<'state'>;
  readonly ready: Gauge<never>;
  readonly lagWaits: Counter<'task'>;
  readonly tasksClosedDirty: Counter<'reason'>;
  readonly coordinatorChanges: Counter<never>;
  readonly heartbeatAge: Gauge<never>;

  constructor(prefix = 'um_', registry = new Registry(), opts: { defaultMetrics?: boolean } = {}) {
    this.registry = registry;
    const r = [registry];
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix });
    this.recordsConsumed = new Counter({
      name: `${prefix}records_consumed_total`,
      help: 'Records read from source topics',
      labelNames: ['topic'],
      registers: r,
    });
    this.recordsProcessed = new Counter({
      name: `${prefix}records_processed_total`,
      help: 'Records processed by tasks',
      labelNames: ['task'],
      registers: r,
    });
    this.processLatency = new Histogram({
      name: `${prefix}process_batch_seconds`,
      help: 'Time to process one batch of records in a task',
      labelNames: ['task'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: r,
    });
    this.recordsProduced = new Counter({
      name: `${prefix}records_produced_total`,
      help: 'Records produced (outputs, changelogs, dead letters)',
      registers: r,
    });
    this.produceLatency = new Histogram({
      name: `${prefix}produce_request_seconds`,
      help: 'Latency of one produce request (acks=all)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: r,
    });
    this.commitLatency = new Histogram({
      name: `${prefix}commit_seconds`,
      help: 'Latency of the commit protocol (flush, checkpoint, offset commit)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    });
    this.commits = new Counter({
      name: `${prefix}commits_total`,
      help: 'Commits, by result',
      labelNames: ['result'],
      registers: r,
    });
    this.transactions = new Counter({
      name: `${prefix}transactions_total`,
      help: 'Exactly-once: task transactions, by result (committed, aborted, lost)',
      labelNames: ['result'],
      registers: r,
    });
    this.restoreRecords = new Counter({
      name: `${prefix}restore_records_total`,
      help: 'Changelog records restored into state stores',
      labelNames: ['store'],
      registers: r,
    });
    this.restoreRemaining = new Gauge({
      name: `${prefix}restore_remaining_records`,
      help: 'Changelog records still to restore before a task can process',
      labelNames: ['store', 'task'],
      registers: r,
    });
    new Gauge({
      name: `${prefix}rocksdb_memory_bytes`,
      help: 'Native memory of the RocksDB stores open in this process (RocksDB estimates), by kind: block_cache, memtables, table_readers',
      labelNames: ['kind'],
      registers: r,
      collect() {
        const u = rocksdbMemoryUsage();
        this.set({ kind: 'block_cache' }, u.blockCache);
        this.set({ kind: 'memtables' }, u.memtables);
        this.set({ kind: 'table_readers' }, u.tableReaders);
      },
    });
    new Gauge({
      name: `${prefix}rocksdb_open_stores`,
      help: 'RocksDB instances open in this process (one per store per task)',
      registers: r,
      collect() {
        this.set(rocksdbMemoryUsage().instances);
      },
    });
    this.storeEntries = new Gauge({
      name: `${prefix}store_entries`,
      help: 'Approximate entries per store and task',
      labelNames: ['store', 'task'],
      registers: r,
    });
    this.storeOpLatency = new Histogram({
      name: `${prefix}store_op_seconds`,
      help: 'State store operation latency',
      labelNames: ['store', 'op'],
      buckets: [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05],
      registers: r,
    });
    this.rebalances = new Counter({
      name: `${prefix}rebalances_total`,
      help: 'Consumer group rebalances this instance took part in',
      registers: r,
    });
    this.assignedTasks = new Gauge({
      name: `${prefix}assigned_tasks`,
      help: 'Tasks assigned to this instance',
      registers: r,
    });
    this.standbyTasks = new Gauge({
      name: `${prefix}standby_tasks`,
      help: "Standby tasks this instance holds (warm copies of other instances' task stores)",
      registers: r,
    });
    this.standbyLag = new Gauge({
      name: `${prefix}standby_lag_records`,
      help: 'Per standby task: changelog records committed by the active task and not yet applied here',
      labelNames: ['task'],
      registers: r,
    });
    this.standbyRecords = new Counter({
      name: `${prefix}standby_records_total`,
      help: 'Changelog records applied to standby tasks',
      registers: r,
    });
    this.deadLetters = new Counter({
      name: `${prefix}dead_letters_total`,
      help: 'Records sent to the dead-letter topic, by source topic and error code',
      labelNames: ['topic', 'code'],
      registers: r,
    });
    this.consumerLag = new Gauge({
      name: `${prefix}consumer_lag`,
      help: 'Records between the last processed offset and the high watermark',
      labelNames: ['topic', 'partition'],
      registers: r,
    });
    this.state = new Gauge({
      name: `${prefix}instance_state`,
      help: 'Lifecycle state of this instance (1 for the current state)',
      labelNames: ['state'],
      registers: r,
    });
    this.ready = new Gauge({
      name: `${prefix}ready`,
      help: '1 when the instance runs restored tasks and its group session is healthy (what /readyz says)',
      registers: r,
    });
    this.lagWaits = new Counter({
      name: `${prefix}task_lag_waits_total`,
      help: 'Times a task held back because a partition the broker holds more of was not fetched yet',
      labelNames: ['task'],
      registers: r,
    });
    this.tasksClosedDirty = new Counter({
      name: `${prefix}tasks_closed_dirty_total`,
      help: 'Tasks closed without committing (their uncommitted writes dropped), by reason',
      labelNames: ['reason'],
      registers: r,
    });
    this.coordinatorChanges = new Counter({
      name: `${prefix}coordinator_lookups_total`,
      help: 'Times the group coordinator was looked up again after it failed or moved',
      registers: r,
    });
    this.heartbeatAge = new Gauge({
      name: `${prefix}group_heartbeat_age_seconds`,
      help: 'Seconds since the last successful group heartbeat',
      registers: r,
    });
  }
}

/**
 * Quantiles of a prom-client histogram (all label sets summed), interpolated within buckets as
 * Prometheus' histogram_quantile does. In the histogram's unit; undefined when it is empty.
 */
export async function histogramQuantiles(
  metric: Metric | undefined,
  qs: readonly number[],
): Promise<(number | undefined)[]> {
  if (!metric) return qs.map(() => undefined);
  const data = await metric.get();
  const buckets = new Map<number, number>();
  for (const v of data.values) {
    if (!(v as { metricName?: string }).metricName?.endsWith('_bucket')) continue;
    const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + v.value);
  }
  return quantilesFromBuckets(buckets, qs);
}

/**
 * Quantiles from cumulative histogram buckets (upper bound `le` -> count), interpolated within a
 * bucket as Prometheus' histogram_quantile does; undefined when the histogram is empty.
 */
export function quantilesFromBuckets(
  buckets: ReadonlyMap<number, number>,
  qs: readonly number[],
): (number | undefined)[] {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  return qs.map((q) => {
    if (!total) return undefined;
    const rank = q * total;
    let prevLe = 0;
    let prevCount = 0;
    for (const [le, count] of sorted) {
      if (count >= rank)
        return le === Infinity
          ? prevLe
          : prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, count - prevCount);
      prevLe = le;
      prevCount = count;
    }
    return undefined;
  });
}
