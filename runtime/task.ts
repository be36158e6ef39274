/**
 * A stream task: one partition number of the co-partitioned source topics. It owns one instance
 * of every processor, its slice of every state store, and a record queue per source partition.
 *
 * Records are processed in timestamp order across the task's partitions (the smallest head
 * timestamp first; on equal timestamps the source declared first in the topology), so a replay
 * of the same input gives the same results, record for record. The rule for an empty queue:
 * - the broker holds more of the partition (its high watermark is beyond what was fetched):
 *   the task WAITS, however long it takes, and never processes ahead of it;
 * - the partition is caught up (truly empty): the task waits `maxTaskIdleMs` from when it became
 *   empty (Kafka Streams' max.task.idle.ms; 0 = go on at once), then goes on without it.
 *
 * Stream time (for stream-time punctuation, e.g. purges) is the largest timestamp processed, but
 * one record moves it forward by at most `maxStreamTimeJumpMs`: a record stamped far ahead of the
 * partition's others (a bad clock) cannot make the task purge state that is still needed.
 *
 * Lifecycle: CREATED -> RESTORING -> RUNNING <-> SUSPENDED -> CLOSED (any state may close).
 *
 * The task knows nothing of Kafka clients: it is fed raw records and writes through a
 * RecordCollector, so the same code runs under the engine and under the TopologyTestDriver.
 */
import { ProcessingError, StoreError, StreamsError } from './errors.js';
import type {
  Cancellable,
  GlobalTableView,
  Headers,
  Processor,
  ProcessorContext,
  PunctuationType,
  RecordMetadata,
  StreamRecord,
} from './processor.js';
import type { OutgoingRecord, RecordCollector } from './record-collector.js';
import type { KeyValueStore } from './state/store.js';
import type { NodeDef, Topology } from './topology.js';

/** A record as fetched, not yet deserialized. */
export interface RawRecord {
  key: Buffer | null;
  value: Buffer | null;
  timestamp: number;
  offset: number;
  headers?: Record<string, Buffer | string | undefined | (Buffer | string)[]>;
}

export type ErrorPolicy = 'dlq' | 'fail';

/**
 * Header on the records an application writes to the topic of one of its tables (a store whose
 * changelog is its own source topic): the application id. The table source skips records that
 * carry its own application id: they are in the store already (restored up to the last commit's
 * offsets), or were written after that commit by an owner that crashed, and the processing that
 * wrote them runs again. Records from anyone else are applied.
 */
export const ORIGIN_HEADER = 'streams.origin';

export interface TaskOptions {
  applicationId: string;
  partition: number;
  topology: Topology;
  stores: ReadonlyMap<string, KeyValueStore<unknown, unknown>>;
  globalTables: ReadonlyMap<string, GlobalTableView<unknown, unknown>>;
  collector: RecordCollector;
  /** topics whose partition p belongs to this task (sinks to them default to partition p) */
  coPartitioned: ReadonlySet<string>;
  maxTaskIdleMs: number;
  /** the most one record moves stream time forward (default 1 day) */
  maxStreamTimeJumpMs?: number;
  /** per source partition: pause fetching above this many buffered bytes (default 4 MiB) */
  maxBufferedBytes?: number;
  /** called when a partition's queue goes over (true) or back under half of (false) maxBufferedBytes */
  onBackpressure?: (topic: string, full: boolean) => void;
  deserializationErrorPolicy: ErrorPolicy;
  processingErrorPolicy: ErrorPolicy;
  dlqTopic: string;
  /** stores whose keys are the source record keys: read in one batch before a batch is processed */
  prefetchStores?: readonly string[];
  /** max records per processed batch */
  maxBatchRecords?: number;
  /** runs a table source's store write with changelogging off (the record came from that topic) */
  withoutChangelog?: <T>(fn: () => Promise<T>) => Promise<T>;
  onDeadLetter?: (topic: string, code: string) => void;
  onProcessed?: (count: number, seconds: number) => void;
  now?: () => number;
}

interface Queue {
  topic: string;
  /** tie-break on equal timestamps: the source declared first goes first */
  priority: number;
  records: RawRecord[];
  head: number;
  /** bytes of key+value buffered and not processed */
  bytes: number;
  full: boolean;
  /** next offset expected from the fetcher (records below it are already buffered or processed) */
  fetched: number | undefined;
  /** next offset to commit (last processed + 1), or undefined if nothing processed since open */
  committable: number | undefined;
  /** highest offset known to exist on the broker (high watermark), if known */
  highWatermark: number | undefined;
  /** resolvers waiting for this queue to drain */
  waiters: { upTo: number; resolve: () => void; reject: (e: unknown) => void }[];
  emptySince: number | undefined;
}

interface Punctuator {
  interval: number;
  next: number;
  type: PunctuationType;
  cb: (time: number) => void | Promise<void>;
  cancelled: boolean;
}

export type TaskState = 'CREATED' | 'RESTORING' | 'RUNNING' | 'SUSPENDED' | 'CLOSED';

/** Allowed task state transitions. */
export const TASK_TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  CREATED: ['RESTORING', 'RUNNING', 'CLOSED'],
  RESTORING: ['RUNNING', 'SUSPENDED', 'CLOSED'],
  RUNNING: ['SUSPENDED', 'CLOSED'],
  SUSPENDED: ['RUNNING', 'CLOSED'],
  CLOSED: [],
};

const RESOLVED: Promise<void> = Promise.resolve();

class Node implements ProcessorContext {
  processor: Processor | undefined;
  children: Node[] = [];
  childByName = new Map<string, Node>();
  constructor(
    readonly def: NodeDef,
    readonly task: StreamTask,
  ) {}

  get applicationId(): string {
    return this.task.applicationId;
  }
  get taskId(): string {
    return this.task.id;
  }
  get partition(): number {
    return this.task.partition;
  }

  forward<K, V>(record: StreamRecord<K, V>, childName?: string): Promise<void> {
    try {
      return this.dispatch(record, childName) ?? RESOLVED;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * `forward` without a promise when every child finished synchronously (a sink, a processor
   * that did not wait): the hot path of a record allocates no promise for the plumbing.
   */
  dispatch(record: StreamRecord<unknown, unknown>, childName?: string): void | Promise<void> {
    if (childName !== undefined) {
      const child = this.childByName.get(childName);
      if (!child)
        throw new ProcessingError(
          'UNKNOWN_CHILD',
          `${this.def.name} forwarded to ${childName}, which is not its child`,
        );
      return child.receive(record);
    }
    const cs = this.children;
    for (let i = 0; i < cs.length; i++) {
      const r = cs[i]!.receive(record);
      if (r) return this.dispatchRest(record, r, i + 1);
    }
  }

  private async dispatchRest(record: StreamRecord<unknown, unknown>, pending: Promise<void>, from: number) {
    await pending;
    const cs = this.children;
    for (let i = from; i < cs.length; i++) await cs[i]!.receive(record);
  }

  receive(record: StreamRecord<unknown, unknown>): void | Promise<void> {
    if (this.def.kind === 'sink') return this.task.sinkSend(this.def, record);
    return this.processor!.process(record);
  }

  getStateStore<K, V>(name: string): KeyValueStore<K, V> {
    if (!this.def.stores.includes(name))
      throw new ProcessingError('STORE_NOT_CONNECTED', `store ${name} is not connected to processor ${this.def.name}`);
    return this.task.store(name) as KeyValueStore<K, V>;
  }

  getGlobalTable<K, V>(name: string): GlobalTableView<K, V> {
    const g = this.task.globalTables.get(name);
    if (!g) throw new ProcessingError('UNKNOWN_GLOBAL_TABLE', `global table ${name} is not declared`);
    return g as GlobalTableView<K, V>;
  }

  recordMetadata(): RecordMetadata | undefined {
    return this.task.currentMetadata;
  }

  currentStreamTime(): number {
    return this.task.streamTime;
  }

  schedule(intervalMs: number, type: PunctuationType, cb: (time: number) => void | Promise<void>): Cancellable {
    return this.task.schedule(intervalMs, type, cb);
  }
}

/** Built-in processor of a table source: upserts into the table's store. */
class TableSourceProcessor implements Processor {
  private store!: KeyValueStore<unknown, unknown>;
  private ctx!: ProcessorContext;
  constructor(
    private readonly def: NodeDef,
    private readonly withoutChangelog: <T>(fn: () => Promise<T>) => Promise<T>,
  ) {}
  init(ctx: ProcessorContext): void {
    this.ctx = ctx;
    this.store = ctx.getStateStore(this.def.table!.store);
  }
  async process(record: StreamRecord): Promise<void> {
    const spec = this.def.table!;
    if (record.key === null || record.key === undefined) return; // a table ignores records without a key
    const origin = record.headers?.[ORIGIN_HEADER];
    if (origin !== undefined && origin.toString() === this.ctx.applicationId) return; // its own write
    if (record.value === null || record.value === undefined) {
      await this.withoutChangelog(() => this.store.delete(record.key));
    } else {
      if (spec.shouldApply && !spec.shouldApply(await this.store.get(record.key), record.value)) return;
      await this.withoutChangelog(() => this.store.put(record.key, record.value));
    }
    await this.ctx.forward(record);
  }
}

export class StreamTask {
  readonly id: string;
  readonly applicationId: string;
  readonly partition: number;
  readonly globalTables: ReadonlyMap<string, GlobalTableView<unknown, unknown>>;
  streamTime = -1;
  /** timestamp of the record being processed (or stream time inside a punctuation) */
  currentTimestamp = -1;
  /** the input record being processed (undefined inside a punctuation), made when first asked for */
  get currentMetadata(): RecordMetadata | undefined {
    if (this.currentTopic === undefined) return undefined;
    return (this.metadataOfCurrent ??= {
      topic: this.currentTopic,
      partition: this.partition,
      offset: this.currentOffset,
    });
  }
  private currentTopic: string | undefined;
  private currentOffset = -1;
  private metadataOfCurrent: RecordMetadata | undefined;
  private _state: TaskState = 'CREATED';
  processedSinceCommit = 0;
  /** times the task waited for a lagging partition (metrics, tests) */
  lagWaits = 0;
  /** batches dropped because they did not continue a queue's position (see `enqueue`) */
  staleBatches = 0;
  /** bumped whenever the queues are emptied: a batch in flight then stops where it is */
  private bufferGeneration = 0;
  private suspending = false;
  /** wall-clock time of the last processed batch */
  lastProgressAt = Date.now();
  /** since when the task has been held back by a lagging partition (undefined: it is not) */
  lagWaitSince: number | undefined;

  private readonly nodes = new Map<string, Node>();
  private readonly queues = new Map<string, Queue>();
  private readonly sourceByTopic = new Map<string, Node>();
  private readonly queueList: Queue[] = [];
  private readonly punctuators: Punctuator[] = [];
  /** stream time at which the next stream-time punctuation is due (Infinity: none scheduled) */
  private nextStreamPunctuation = Infinity;
  /** per source topic: its direct child processors that prefetch (see `Processor.prefetch`) */
  private readonly prefetchers = new Map<string, Processor[]>();
  private pumping = false;
  private pumpAgain = false;
  private paused = false;
  private lock: Promise<void> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | undefined;
  private fatal: unknown;
  private readonly now: () => number;
  private readonly maxBatch: number;
  private readonly maxJump: number;
  private readonly maxBytes: number;

  constructor(private readonly opts: TaskOptions) {
    this.partition = opts.partition;
    this.id = `0_${opts.partition}`;
    this.applicationId = opts.applicationId;
    this.globalTables = opts.globalTables;
    this.now = opts.now ?? Date.now;
    this.maxBatch = opts.maxBatchRecords ?? 1000;
    this.maxJump = opts.maxStreamTimeJumpMs ?? 86_400_000;
    this.maxBytes = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
    for (const def of opts.topology.nodes.values()) this.nodes.set(def.name, new Node(def, this));
    for (const node of this.nodes.values()) {
      for (const c of node.def.children) {
        const child = this.nodes.get(c)!;
        node.children.push(child);
        node.childByName.set(c, child);
      }
    }
    const topics = opts.topology.sourceTopics();
    for (let i = 0; i < topics.length; i++) {
      const topic = topics[i]!;
      this.sourceByTopic.set(topic, this.nodes.get(opts.topology.sourceNodeFor(topic).name)!);
      const q: Queue = {
        topic,
        priority: i,
        records: [],
        head: 0,
        bytes: 0,
        full: false,
        fetched: undefined,
        committable: undefined,
        highWatermark: undefined,
        waiters: [],
        emptySince: undefined,
      };
      this.queues.set(topic, q);
      this.queueList.push(q);
    }
  }

  get state(): TaskState {
    return this._state;
  }

  /** Moves to `to`; throws on a transition the lifecycle does not allow. */
  transition(to: TaskState): void {
    if (this._state === to) return;
    if (!TASK_TRANSITIONS[this._state].includes(to))
      throw new StreamsError('ILLEGAL_TASK_STATE', `task ${this.id}: illegal transition ${this._state} -> ${to}`);
    this._state = to;
    if (to === 'RUNNING') this.kick();
  }

  store(name: string): KeyValueStore<unknown, unknown> {
    const s = this.opts.stores.get(name);
    if (!s) throw new ProcessingError('UNKNOWN_STORE', `store ${name} is not open in task ${this.id}`);
    return s;
  }

  /** Instantiates and initialises every processor. */
  async init(): Promise<void> {
    for (const node of this.nodes.values()) {
      if (node.def.kind === 'processor') node.processor = node.def.supplier!();
      else if (node.def.kind === 'table')
        node.processor = new TableSourceProcessor(node.def, this.opts.withoutChangelog ?? ((fn) => fn()));
      else if (node.def.kind === 'source') {
        node.processor = { process: (r) => node.dispatch(r) };
      }
      if (node.processor?.init) await node.processor.init(node);
    }
    for (const [topic, source] of this.sourceByTopic) {
      const ps = source.children.flatMap((c) =>
        c.def.kind === 'processor' && c.processor?.prefetch ? [c.processor] : [],
      );
      if (ps.length) this.prefetchers.set(topic, ps);
    }
    this.transition('RUNNING');
  }

  schedule(intervalMs: number, type: PunctuationType, cb: (time: number) => void | Promise<void>): Cancellable {
    if (!(intervalMs > 0))
      throw new ProcessingError('BAD_PUNCTUATION', `punctuation interval must be > 0, got ${intervalMs}`);
    const base = type === 'STREAM_TIME' ? this.streamTime : this.now();
    const p: Punctuator = {
      interval: intervalMs,
      next: (base < 0 ? 0 : base) + intervalMs,
      type,
      cb,
      cancelled: false,
    };
    this.punctuators.push(p);
    if (type === 'STREAM_TIME') this.updateNextStreamPunctuation();
    return {
      cancel: () => {
        p.cancelled = true;
        if (type === 'STREAM_TIME') this.updateNextStreamPunctuation();
      },
    };
  }

  /**
   * Tells the task where a source partition starts (the committed offset) and ends (the high
   * watermark) before anything is fetched, so it waits for data the broker holds instead of
   * racing ahead on the partitions fetched first.
   */
  setPosition(topic: string, committed: number | undefined, highWatermark: number): void {
    const q = this.queues.get(topic);
    if (!q) return;
    if (q.committable === undefined && committed !== undefined && committed >= 0) q.committable = committed;
    if (q.fetched === undefined && committed !== undefined && committed >= 0) q.fetched = committed;
    q.highWatermark = highWatermark;
  }

  /** A newer high watermark of a source partition (from a fetch or an end-offset look-up). */
  setHighWatermark(topic: string, highWatermark: number): void {
    const q = this.queues.get(topic);
    if (!q) return;
    if (q.highWatermark === undefined || highWatermark > q.highWatermark) q.highWatermark = highWatermark;
    this.kick();
  }

  /**
   * The fetcher moved past offsets without handing records over (control records, compacted
   * gaps): the partition is fetched up to `next`.
   */
  noteFetched(topic: string, next: number, highWatermark?: number, first?: number | null): void {
    const q = this.queues.get(topic);
    if (!q) return;
    // from the consumer (`first` given): only a batch that continues the position moves it (see
    // `enqueue`); without it (tests) any later position does
    if (first === undefined) {
      if (q.fetched === undefined || next > q.fetched) q.fetched = next;
    } else if (q.fetched !== undefined && first !== null && first <= q.fetched && next > q.fetched) q.fetched = next;
    if (highWatermark !== undefined) this.setHighWatermark(topic, highWatermark);
    else this.kick();
  }

  /** Where the next fetched batch of a source partition must start (undefined before the position is set). */
  fetchPosition(topic: string): number | undefined {
    return this.queues.get(topic)?.fetched;
  }

  /** Offsets the task still needs per source partition (lag = high watermark - this). */
  lag(): Map<string, number> {
    const out = new Map<string, number>();
    for (const q of this.queueList) {
      if (q.highWatermark === undefined) continue;
      const pos = q.committable ?? q.fetched ?? 0;
      out.set(q.topic, Math.max(0, q.highWatermark - pos));
    }
    return out;
  }

  /** Adds fetched records for one source partition; resolves when all of them are processed. */
  enqueue(topic: string, records: RawRecord[], highWatermark?: number, fetchedFrom?: number): Promise<void> {
    const q = this.queues.get(topic);
    if (!q) return Promise.reject(new ProcessingError('UNKNOWN_SOURCE', `task ${this.id} does not read ${topic}`));
    if (this.fatal !== undefined) return Promise.reject(this.fatal);
    if (this._state === 'SUSPENDED') return Promise.resolve();
    if (this._state === 'CLOSED')
      return Promise.reject(new StreamsError('TASK_CLOSED', `task ${this.id} is closed`, { retriable: true }));
    if (highWatermark !== undefined && (q.highWatermark === undefined || highWatermark > q.highWatermark))
      q.highWatermark = highWatermark;
    // A batch must continue the queue's position. Before the position is known (the task is
    // opening) or from a fetch that started beyond it (the consumer's position from before the
    // task was opened), the records are not the next ones: dropped; the task's owner seeks the
    // consumer to the position and they come again. Accepting them would skip the records in
    // between (lost) or process committed ones again (duplicates).
    // (`fetchedFrom` is where the consumer's fetch started; callers without one, the test driver,
    // hand over records in order)
    if (fetchedFrom !== undefined && (q.fetched === undefined || fetchedFrom > q.fetched)) {
      this.staleBatches++;
      return Promise.resolve();
    }
    // a record below the fetch position is already buffered or processed (a re-fetch)
    let fresh = records;
    if (q.fetched !== undefined && records.length && records[0]!.offset < q.fetched) {
      const from = q.fetched;
      fresh = records.filter((r) => r.offset >= from);
    }
    if (!fresh.length) {
      this.kick();
      return Promise.resolve();
    }
    for (const r of fresh) {
      q.records.push(r);
      q.bytes += recordBytes(r);
    }
    q.fetched = fresh[fresh.length - 1]!.offset + 1;
    q.emptySince = undefined;
    if (!q.full && q.bytes > this.maxBytes) {
      q.full = true;
      this.opts.onBackpressure?.(q.topic, true);
    }
    const upTo = fresh[fresh.length - 1]!.offset;
    const done = new Promise<void>((resolve, reject) => q.waiters.push({ upTo, resolve, reject }));
    this.kick();
    return done;
  }

  /** Records queued and not yet processed. */
  buffered(): number {
    let n = 0;
    for (const q of this.queueList) n += q.records.length - q.head;
    return n;
  }

  /** Bytes (keys and values) queued and not yet processed. */
  bufferedBytes(): number {
    let n = 0;
    for (const q of this.queueList) n += q.bytes;
    return n;
  }

  /** Stops processing at the next batch boundary (for a commit); `resume()` goes on. */
  pause(): void {
    this.paused = true;
  }

  isPaused(): boolean {
    return this.paused;
  }

  /** The partition's next record is at `offset` (a table starting where its restore ended). */
  resetPosition(topic: string, offset: number): void {
    const q = this.queues.get(topic);
    if (!q) return;
    this.bufferGeneration++;
    q.records = [];
    q.head = 0;
    q.bytes = 0;
    q.committable = offset;
    q.fetched = offset;
  }

  resume(): void {
    // a task being suspended stays paused (a late resume would start a batch under the suspension)
    if (this.suspending) return;
    this.paused = false;
    this.kick();
  }

  private kick(): void {
    if (this.paused || this.fatal !== undefined) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    void this.pump();
  }

  /** Processes what can be processed, in batches, until the queues are empty or must wait. */
  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        for (;;) {
          if (this._state !== 'RUNNING' || this.paused) return;
          const batch = this.nextBatch();
          if (!batch) break;
          await this.exclusive(() => this.processBatch(batch));
          // backpressure: wait while the producer is far behind
          const full = this.opts.collector.capacity?.();
          if (full) await full;
          // wall-clock punctuation must not starve under sustained load
          await this.exclusive(() => this.runWallClock(this.now()));
        }
      } while (this.pumpAgain);
    } catch (e) {
      this.fail(e);
    } finally {
      this.pumping = false;
    }
  }

  /** Processing and punctuation never interleave: each runs alone on the task's stores. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn);
    this.lock = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private fail(e: unknown): void {
    this.fatal = e;
    for (const q of this.queueList) {
      for (const w of q.waiters) w.reject(e);
      q.waiters = [];
    }
  }

  /** The error that stopped the task, if any. */
  failure(): unknown {
    return this.fatal;
  }

  /**
   * Picks up to maxBatch records in timestamp order (ties: source priority). Returns undefined
   * when nothing can be processed now: every queue empty, or an empty queue must be waited for
   * (lagging: until its records are fetched; caught up: until maxTaskIdleMs has passed).
   */
  private nextBatch(): { q: Queue; r: RawRecord }[] | undefined {
    const out: { q: Queue; r: RawRecord }[] = [];
    const now = this.now();
    // cursors, so a batch can be chosen without consuming yet
    const heads = this.queueList.map((q) => q.head);
    while (out.length < this.maxBatch) {
      let best = -1;
      let bestTs = Infinity;
      let bestPrio = Infinity;
      let wait: 'lag' | 'idle' | undefined;
      for (let i = 0; i < this.queueList.length; i++) {
        const q = this.queueList[i]!;
        const h = heads[i]!;
        if (h < q.records.length) {
          const ts = q.records[h]!.timestamp;
          if (ts < bestTs || (ts === bestTs && q.priority < bestPrio)) {
            bestTs = ts;
            bestPrio = q.priority;
            best = i;
          }
        } else if (this.lagging(q, h)) {
          wait = 'lag';
        } else if (this.opts.maxTaskIdleMs > 0) {
          if (q.emptySince === undefined) q.emptySince = now;
          if (now - q.emptySince < this.opts.maxTaskIdleMs && wait === undefined) wait = 'idle';
        }
      }
      if (best < 0) break;
      if (wait !== undefined) {
        if (out.length === 0) {
          if (wait === 'idle') this.armIdleTimer();
          else {
            this.lagWaits++;
            this.lagWaitSince ??= Date.now();
          }
        }
        break;
      }
      const q = this.queueList[best]!;
      out.push({ q, r: q.records[heads[best]!]! });
      heads[best]!++;
    }
    return out.length ? out : undefined;
  }

  /** The broker holds records of this partition that are not fetched yet. */
  private lagging(q: Queue, head: number): boolean {
    if (q.highWatermark === undefined) return false;
    let next: number;
    if (head > 0) next = q.records[head - 1]!.offset + 1;
    else next = q.committable ?? 0;
    if (q.fetched !== undefined && q.fetched > next && head >= q.records.length) next = q.fetched;
    return next < q.highWatermark;
  }

  private armIdleTimer(): void {
    if (this.idleTimer) return;
    this.idleTimer = setTimeout(
      () => {
        this.idleTimer = undefined;
        this.kick();
      },
      Math.max(1, this.opts.maxTaskIdleMs),
    );
    this.idleTimer.unref?.();
  }

  private async processBatch(batch: { q: Queue; r: RawRecord }[]): Promise<void> {
    const t0 = performance.now();
    const generation = this.bufferGeneration;
    // 1. decode the batch (serde caches were prepared when the records were fetched)
    const decoded: (StreamRecord | undefined)[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const { q, r } = batch[i]!;
      const src = this.sourceByTopic.get(q.topic)!.def;
      const spec = src.source ?? src.table!;
      try {
        const key = r.key === null ? null : spec.key.deserialize(q.topic, r.key);
        const value = r.value === null ? null : spec.value.deserialize(q.topic, r.value);
        decoded[i] = { key, value, timestamp: r.timestamp, headers: normaliseHeaders(r.headers) };
      } catch (e) {
        this.handleError(q, r, e, this.opts.deserializationErrorPolicy, 'DESERIALIZATION_FAILED', 'deserialization');
        decoded[i] = undefined;
      }
    }
    // 2. read the stores for the whole batch at once (only a cache warm-up: a failure here is
    //    not an error of any record): stores keyed by the record keys, and what processors ask for
    const reads: Promise<unknown>[] = [];
    if (this.opts.prefetchStores?.length) {
      const unique = new Set<unknown>();
      for (const d of decoded) if (d && d.key !== null && d.key !== undefined) unique.add(d.key);
      const keys = [...unique];
      if (keys.length) for (const s of this.opts.prefetchStores) reads.push(this.store(s).getAll(keys));
    }
    if (this.prefetchers.size) {
      const byTopic = new Map<string, StreamRecord[]>();
      for (let i = 0; i < batch.length; i++) {
        const d = decoded[i];
        if (!d) continue;
        const t = batch[i]!.q.topic;
        if (!this.prefetchers.has(t)) continue;
        let l = byTopic.get(t);
        if (!l) byTopic.set(t, (l = []));
        l.push(d);
      }
      for (const [t, records] of byTopic)
        for (const p of this.prefetchers.get(t)!) {
          try {
            const r = p.prefetch!(records);
            if (r) reads.push(r);
          } catch {
            // a warm-up only
          }
        }
    }
    if (reads.length) await Promise.all(reads.map((r) => r.catch(() => undefined)));
    // 3. process one by one, in order
    for (let i = 0; i < batch.length; i++) {
      const { q, r } = batch[i]!;
      const rec = decoded[i];
      if (rec) {
        this.currentTopic = q.topic;
        this.currentOffset = r.offset;
        this.metadataOfCurrent = undefined;
        this.advanceStreamTime(rec.timestamp);
        this.currentTimestamp = rec.timestamp;
        const source = this.sourceByTopic.get(q.topic)!;
        try {
          const r = source.processor!.process(rec);
          if (r) await r;
        } catch (e) {
          // infrastructure (a store, the producer) is not the record's fault: stop the task
          if (this._state !== 'RUNNING' || isInfrastructureError(e)) throw e;
          this.handleError(q, r, e, this.opts.processingErrorPolicy, 'PROCESSING_FAILED', 'processing');
        }
        this.currentTopic = undefined;
        if (this.streamTime >= this.nextStreamPunctuation) await this.punctuateStreamTime();
      }
      // the queues were emptied meanwhile (the task was closed): the rest is not this task's to
      // account for; its position stays where the emptying put it
      if (this.bufferGeneration !== generation) return;
      q.head++;
      q.bytes -= recordBytes(r);
      q.committable = r.offset + 1;
      this.processedSinceCommit++;
      this.release(q);
    }
    for (const q of this.queueList) {
      if (q.full && q.bytes <= this.maxBytes / 2) {
        q.full = false;
        this.opts.onBackpressure?.(q.topic, false);
      }
    }
    this.lastProgressAt = Date.now();
    this.lagWaitSince = undefined;
    this.compact();
    this.opts.onProcessed?.(batch.length, (performance.now() - t0) / 1000);
  }

  /** Stream time moves to the record's timestamp, by at most maxStreamTimeJumpMs at a time. */
  private advanceStreamTime(ts: number): void {
    if (this.streamTime < 0) this.streamTime = ts;
    else if (ts > this.streamTime) this.streamTime = Math.min(ts, this.streamTime + this.maxJump);
  }

  private release(q: Queue): void {
    const done = q.committable! - 1;
    while (q.waiters.length && q.waiters[0]!.upTo <= done) q.waiters.shift()!.resolve();
  }

  private compact(): void {
    for (const q of this.queueList) {
      if (q.head > 0 && q.head >= q.records.length / 2) {
        q.records.splice(0, q.head);
        q.head = 0;
      }
    }
  }

  private handleError(
    q: Queue,
    r: RawRecord,
    e: unknown,
    policy: ErrorPolicy,
    fallbackCode: string,
    kind: 'deserialization' | 'processing',
  ): void {
    const code = e instanceof StreamsError ? e.code : fallbackCode;
    const message = e instanceof Error ? e.message : String(e);
    if (policy === 'fail') {
      throw new ProcessingError(code, `task ${this.id}: ${q.topic}-${this.partition}@${r.offset}: ${message}`, {
        cause: e,
      });
    }
    this.opts.collector.send({
      topic: this.opts.dlqTopic,
      key: r.key,
      value: r.value,
      timestamp: r.timestamp,
      headers: {
        'dlq.source.topic': q.topic,
        'dlq.source.partition': String(this.partition),
        'dlq.source.offset': String(r.offset),
        'dlq.error.code': code,
        'dlq.error.message': message.slice(0, 1000),
        'dlq.error.kind': kind,
        'dlq.application.id': this.applicationId,
      },
    });
    this.opts.onDeadLetter?.(q.topic, code);
  }

  /** Sends a record through a sink node. */
  sinkSend(def: NodeDef, record: StreamRecord): void {
    const sink = def.sink!;
    const out: OutgoingRecord = {
      topic: sink.topic,
      key: record.key === null || record.key === undefined ? null : sink.key.serialize(sink.topic, record.key),
      value:
        record.value === null || record.value === undefined ? null : sink.value.serialize(sink.topic, record.value),
      timestamp: record.timestamp,
    };
    if (record.headers) out.headers = record.headers;
    // the input record it came from, for the headers of a dead letter the producer may write instead
    const m = this.currentMetadata;
    if (m) out.source = m;
    const mode = sink.partitioner ?? (this.opts.coPartitioned.has(sink.topic) ? 'task' : 'murmur2');
    if (mode === 'task') out.partition = this.partition;
    this.opts.collector.send(out);
  }

  private async punctuateStreamTime(): Promise<void> {
    for (const p of this.punctuators) {
      if (p.cancelled || p.type !== 'STREAM_TIME' || this.streamTime < p.next) continue;
      await p.cb(this.streamTime);
      // skip missed intervals, like Kafka Streams
      p.next = this.streamTime - ((this.streamTime - p.next) % p.interval) + p.interval;
    }
    this.updateNextStreamPunctuation();
  }

  /** The earliest stream time a stream-time punctuation is due at (checked after every record). */
  private updateNextStreamPunctuation(): void {
    let next = Infinity;
    for (const p of this.punctuators) if (!p.cancelled && p.type === 'STREAM_TIME' && p.next < next) next = p.next;
    this.nextStreamPunctuation = next;
  }

  /** Runs due wall-clock punctuations (the engine calls this periodically). */
  async punctuateWallClock(now = this.now()): Promise<void> {
    if (this._state !== 'RUNNING' || this.paused || this.fatal !== undefined) return;
    await this.exclusive(() => this.runWallClock(now));
  }

  private async runWallClock(now: number): Promise<void> {
    for (const p of this.punctuators) {
      if (p.cancelled || p.type !== 'WALL_CLOCK_TIME' || now < p.next) continue;
      await p.cb(now);
      p.next = now + p.interval;
    }
  }

  /** Waits until the task is not in the middle of a batch. */
  async quiesce(): Promise<void> {
    while (this.pumping) await new Promise((r) => setImmediate(r));
    await this.lock;
    if (this.fatal) throw this.fatal;
  }

  /**
   * Where fetching should continue per source topic: after the last record buffered, else after
   * the last processed. A kept task's partitions resume here after a rebalance, instead of at the
   * group's committed offsets, so nothing it already has is fetched again.
   */
  fetchPositions(): Map<string, number> {
    const out = new Map<string, number>();
    for (const q of this.queueList) {
      if (q.records.length > q.head) out.set(q.topic, q.records[q.records.length - 1]!.offset + 1);
      else if (q.committable !== undefined) out.set(q.topic, q.committable);
    }
    return out;
  }

  /** Next offsets to commit per source topic (for this task's partition). */
  committableOffsets(): Map<string, number> {
    const out = new Map<string, number>();
    for (const q of this.queueList) if (q.committable !== undefined) out.set(q.topic, q.committable);
    return out;
  }

  /** Flushes every store of the task (caches write down; changelog records go to the collector). */
  async flushStores(): Promise<void> {
    for (const s of this.opts.stores.values()) await s.flush();
  }

  /** Drops buffered records (used when the partition is revoked or the consumer seeks). */
  clearBuffers(reason: StreamsError): void {
    this.bufferGeneration++;
    for (const q of this.queueList) {
      q.records = [];
      q.head = 0;
      q.bytes = 0;
      // fetching starts again from what was processed
      q.fetched = q.committable;
      if (q.full) {
        q.full = false;
        this.opts.onBackpressure?.(q.topic, false);
      }
      for (const w of q.waiters) w.reject(reason);
      q.waiters = [];
    }
  }

  /** Stops processing (a rebalance): buffered records are dropped, they are fetched again. */
  async suspend(): Promise<void> {
    if (this._state === 'CLOSED' || this._state === 'SUSPENDED') return;
    this.suspending = true;
    try {
      this.pause();
      // (quiesce awaits: nothing may start a batch meanwhile, hence `suspending`)
      do await this.quiesce().catch(() => undefined);
      while (this.pumping);
    } finally {
      this.suspending = false;
    }
    if (this._state === 'RUNNING' || this._state === 'RESTORING') this.transition('SUSPENDED');
    this.clearBuffers(new StreamsError('TASK_SUSPENDED', `task ${this.id} suspended`, { retriable: true }));
  }

  /** Goes on after a suspension (the task was kept by the new assignment). */
  resumeRunning(): void {
    if (this._state !== 'SUSPENDED') return;
    this.paused = false;
    this.transition('RUNNING');
  }

  /** Closes the processors (never the stores: the runtime closes them). */
  async close(): Promise<void> {
    if (this._state === 'CLOSED') return;
    this._state = 'CLOSED';
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.clearBuffers(new StreamsError('TASK_CLOSED', `task ${this.id} closed`, { retriable: true }));
    for (const node of this.nodes.values()) await node.processor?.close?.();
  }
}

/** Approximate memory of a buffered record (key and value bytes plus a fixed overhead). */
function recordBytes(r: RawRecord): number {
  return (r.key?.length ?? 0) + (r.value?.length ?? 0) + 64;
}

/**
 * Errors of the machinery rather than of a record: a store failing, the producer failing, a
 * closed task. They stop the task; a record's own errors go to the dead-letter topic.
 */
export function isInfrastructureError(e: unknown): boolean {
  if (e instanceof StoreError) return true;
  if (e instanceof StreamsError) return e.retriable || INFRA_CODES.has(e.code);
  return false;
}

const INFRA_CODES = new Set(['PRODUCE_FAILED', 'TASK_CLOSED', 'TASK_SUSPENDED', 'ILLEGAL_TASK_STATE']);

function normaliseHeaders(h: RawRecord['headers']): Headers | undefined {
  if (!h) return undefined;
  const out: Headers = {};
  let any = false;
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? v[v.length - 1]! : v;
    any = true;
  }
  return any ? out : undefined;
}
