/**
 * A task's state: opens its slice of every store (one RocksDB per task per store under
 * `<stateDir>/<applicationId>/<taskId>/<store>`), restores them from their changelogs before the
 * task processes anything, and commits them.
 *
 * Crash consistency. A persistent store is transactional (state/transactional-store.ts): what a
 * commit interval writes stays in a write buffer and reaches RocksDB only after the commit is
 * durable in Kafka, in one atomic synced batch, followed by the checkpoint file. So on disk a
 * store is always exactly the state of some commit, never ahead of the last one.
 *
 * Restore target. Every commit of the task's input offsets carries, in the offset metadata, the
 * changelog offsets that state corresponds to (see streams.ts). On open, the task restores from
 * its checkpoint up to exactly those offsets (not to the changelog's end): changelog records
 * written after the last commit by an owner that crashed are not part of the committed state and
 * are not restored; reprocessing from the committed input offsets writes them again. Replaying a
 * changelog range that the store already holds is harmless (each record sets a key to its value
 * at that offset), so a checkpoint file older than the store only costs time. A store whose
 * checkpoint is AHEAD of the target (offsets reset by an operator) is wiped and rebuilt.
 * Without metadata (a group committed by an older version) the target is the changelog's end.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { StoreError } from './errors.js';
import type { OutgoingRecord, RecordCollector } from './record-collector.js';
import {
  buildStoreStack,
  readCheckpoint,
  storeSerdeFor,
  tpKey,
  writeCheckpoint,
  type KeyValueStore,
  type RestorableBytesStore,
  type StoreMetrics,
  type TransactionalStore,
} from './state/index.js';
import { storeCacheSettings, type StoreMemory } from './state/memory-budget.js';
import { ORIGIN_HEADER, type RawRecord } from './task.js';
import type { ResolvedStore } from './topology.js';

export interface TaskStore {
  resolved: ResolvedStore;
  store: KeyValueStore<unknown, unknown>;
  inner: RestorableBytesStore;
  txn: TransactionalStore | undefined;
  dir: string | undefined;
}

export interface RestoreSource {
  /** end offset (high watermark) of a changelog partition */
  endOffset(topic: string, partition: number): Promise<number>;
  /** reads the ranges [from, to) of changelog partitions, in offset order per partition */
  read(
    ranges: { topic: string; partition: number; from: number; to: number }[],
    onRecords: (topic: string, records: RawRecord[]) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<void>;
}

export interface RestoreProgress {
  store: string;
  taskId: string;
  restored: number;
  remaining: number;
}

export class TaskStateManager {
  readonly stores = new Map<string, TaskStore>();
  private readonly checkpointFile: string | undefined;
  /** the local commits (step 7) in flight, in order */
  private localCommits: Promise<void> = Promise.resolve();
  /** offsets known to be in the local stores: restored-to or written-and-acknowledged */
  private readonly positions = new Map<string, number>();
  private suppressed = false;
  /** changelog offsets of the last commit (restore stops there) */
  private readonly targets = new Map<string, number>();
  private readonly ackedAtOpen = new Map<string, number>();
  /** timestamp for changelog records: the task sets it to the record being processed */
  timestamp: () => number = Date.now;

  constructor(
    private readonly opts: {
      taskId: string;
      /** marks the records this application writes to a table's own topic (see ORIGIN_HEADER) */
      applicationId?: string;
      partition: number;
      /** undefined: everything in memory (test driver) */
      taskDir: string | undefined;
      stores: ResolvedStore[];
      collector: RecordCollector;
      cacheMaxEntries: number;
      /** the instance's memory budgets (RocksDB, shared caches); undefined: binding defaults, per-task caches */
      memory?: StoreMemory;
      metrics?: StoreMetrics;
      logger?: Logger;
    },
  ) {
    this.checkpointFile = opts.taskDir ? join(opts.taskDir, '.checkpoint') : undefined;
  }

  /**
   * Opens every store; a corrupt store is wiped and re-opened empty (then fully restored).
   * `targets` (changelog `topic:partition` → offset) are the offsets of the last commit: a
   * store whose checkpoint is beyond its target is wiped.
   */
  async open(targets?: ReadonlyMap<string, number>): Promise<{ wiped: string[] }> {
    if (targets) for (const [k, v] of targets) this.targets.set(k, v);
    // acknowledged offsets from an earlier ownership of this task in this process do not count
    for (const [k, v] of this.opts.collector.ackedOffsets()) this.ackedAtOpen.set(k, v);
    const wiped: string[] = [];
    let checkpoint: Map<string, number> | undefined;
    if (this.checkpointFile) {
      await mkdir(this.opts.taskDir!, { recursive: true });
      try {
        checkpoint = await readCheckpoint(this.checkpointFile);
      } catch (e) {
        this.opts.logger?.warn(
          { task: this.opts.taskId, err: (e as Error).message },
          'checkpoint unreadable: wiping the task state',
        );
        checkpoint = undefined;
      }
    }
    for (const r of this.opts.stores) {
      const dir = this.opts.taskDir && !r.spec.inMemory ? join(this.opts.taskDir, r.spec.name) : undefined;
      const tp = r.changelogTopic ? tpKey(r.changelogTopic, this.opts.partition) : undefined;
      let known = tp ? checkpoint?.get(tp) : undefined;
      const target = tp ? this.targets.get(tp) : undefined;
      if (known !== undefined && target !== undefined && known > target) {
        this.opts.logger?.warn(
          { task: this.opts.taskId, store: r.spec.name, checkpoint: known, committed: target },
          'local state is ahead of the last commit (offsets were reset?): wiping it and restoring',
        );
        known = undefined;
        wiped.push(r.spec.name);
      }
      // without a checkpoint for a logged store, the local copy cannot be trusted: start empty
      if (dir && r.changelogTopic && known === undefined) {
        await rm(dir, { recursive: true, force: true });
      }
      const sink = r.changelogTopic
        ? {
            log: (key: Buffer, value: Buffer | null) => {
              if (this.suppressed) return;
              const rec: OutgoingRecord = {
                topic: r.changelogTopic!,
                key,
                value,
                partition: this.opts.partition,
                timestamp: this.timestamp(),
              };
              // a table's topic is also an input: the table must know its own writes when they
              // come back (they are in the store already, or belong to no commit)
              if (r.sourceChangelog && this.opts.applicationId)
                rec.headers = { [ORIGIN_HEADER]: this.opts.applicationId };
              this.opts.collector.send(rec);
            },
          }
        : undefined;
      const build = () =>
        buildStoreStack<unknown, unknown>({
          name: r.spec.name,
          dir,
          ...storeCacheSettings(r.spec, this.opts.cacheMaxEntries, this.opts.memory),
          ...(this.opts.memory
            ? { rocksdb: this.opts.memory.rocksdbOptions(this.opts.stores.filter((s) => !s.spec.inMemory).length) }
            : {}),
          // a table's store writes through, so a table-source write is never logged later by a flush
          writeThrough: r.sourceChangelog || (r.spec.writeThrough ?? false),
          sink,
          keySerde: storeSerdeFor(r.spec.key, r.changelogTopic ?? r.spec.name),
          valueSerde: storeSerdeFor(r.spec.value, r.changelogTopic ?? r.spec.name),
          metrics: this.opts.metrics,
        });
      let stack;
      try {
        stack = await build();
      } catch (e) {
        if (!(e instanceof StoreError) || e.code !== 'STORE_CORRUPT' || !dir) throw e;
        this.opts.logger?.warn({ task: this.opts.taskId, store: r.spec.name }, 'store corrupt: wiping and restoring');
        await rm(dir, { recursive: true, force: true });
        wiped.push(r.spec.name);
        if (tp) checkpoint?.delete(tp);
        stack = await build();
      }
      this.stores.set(r.spec.name, { resolved: r, store: stack.store, inner: stack.inner, txn: stack.txn, dir });
      if (tp) this.positions.set(tp, dir ? (known ?? 0) : 0);
    }
    return { wiped };
  }

  /** Restores every logged store from its position to its target (else the changelog's end). */
  async restore(
    source: RestoreSource,
    onProgress?: (p: RestoreProgress) => void,
    signal?: AbortSignal,
  ): Promise<number> {
    const ranges: { topic: string; partition: number; from: number; to: number; store: TaskStore }[] = [];
    for (const s of this.stores.values()) {
      const topic = s.resolved.changelogTopic;
      if (!topic) continue;
      const from = this.positions.get(tpKey(topic, this.opts.partition)) ?? 0;
      const end = await source.endOffset(topic, this.opts.partition);
      const target = this.targets.get(tpKey(topic, this.opts.partition));
      const to = target === undefined ? end : Math.min(target, end);
      if (to > from) ranges.push({ topic, partition: this.opts.partition, from, to, store: s });
      onProgress?.({
        store: s.resolved.spec.name,
        taskId: this.opts.taskId,
        restored: 0,
        remaining: Math.max(0, to - from),
      });
    }
    if (!ranges.length) return 0;
    let total = 0;
    const byTopic = new Map(ranges.map((r) => [r.topic, r]));
    await source.read(
      ranges,
      async (topic, records) => {
        const r = byTopic.get(topic)!;
        await r.store.inner.restoreBatch(records.map((x) => ({ key: x.key!, value: x.value })));
        const last = records[records.length - 1]!.offset;
        this.positions.set(tpKey(topic, this.opts.partition), last + 1);
        total += records.length;
        signal?.throwIfAborted();
        onProgress?.({
          store: r.store.resolved.spec.name,
          taskId: this.opts.taskId,
          restored: records.length,
          remaining: Math.max(0, r.to - (last + 1)),
        });
      },
      signal,
    );
    for (const r of ranges)
      this.positions.set(
        tpKey(r.topic, this.opts.partition),
        Math.max(r.to, this.positions.get(tpKey(r.topic, this.opts.partition)) ?? 0),
      );
    return total;
  }

  /**
   * Commit step 3: the writes made so far become this commit's (each transactional store seals
   * its write buffer; processing goes on into a fresh one).
   */
  seal(): void {
    for (const s of this.stores.values()) s.txn?.seal();
  }

  /**
   * The changelog offsets the sealed state corresponds to, for the commit's metadata. Call when
   * every changelog record of the commit is acknowledged, with `ackedAtMark` (the collector's
   * offsets of the records sent before the commit's mark) or, if nothing was sent since, without. For a
   * store whose changelog is also a source topic (a table), the offsets consumed from that
   * topic count too (`consumed`: topic -> next offset).
   */
  commitPositions(
    consumed?: ReadonlyMap<string, number>,
    ackedAtMark?: ReadonlyMap<string, number>,
  ): Map<string, number> {
    const acked = ackedAtMark ?? this.opts.collector.ackedOffsets();
    const out = new Map<string, number>();
    for (const s of this.stores.values()) {
      const topic = s.resolved.changelogTopic;
      if (!topic) continue;
      const k = tpKey(topic, this.opts.partition);
      let a = acked.get(k);
      if (a !== undefined && a === this.ackedAtOpen.get(k)) a = undefined;
      let pos = Math.max(this.positions.get(k) ?? 0, a === undefined ? 0 : a + 1);
      const c = consumed?.get(topic);
      if (c !== undefined && c > pos) pos = c;
      out.set(k, pos);
    }
    return out;
  }

  /**
   * Commit step 7, once the commit is durable in Kafka: each store's sealed writes go to RocksDB
   * in one atomic synced batch, then the checkpoint file records `positions` (fsynced).
   */
  commitLocal(positions: ReadonlyMap<string, number>): Promise<void> {
    // one at a time, in commit order: a task's first commit lets this step finish in the
    // background (the task processes meanwhile; its writes stay in the write buffers until the
    // next commit, whose step 7 runs after this one)
    const run = this.localCommits.then(() => this.writeLocal(positions));
    this.localCommits = run.catch(() => undefined);
    return run;
  }

  private async writeLocal(positions: ReadonlyMap<string, number>): Promise<void> {
    for (const s of this.stores.values()) await s.txn?.commitSealed({ sync: true });
    for (const [k, v] of positions) {
      this.positions.set(k, v);
      this.targets.set(k, v);
    }
    if (!this.checkpointFile) return;
    const out = new Map<string, number>();
    for (const s of this.stores.values()) {
      const topic = s.resolved.changelogTopic;
      if (!topic || !s.dir) continue;
      const k = tpKey(topic, this.opts.partition);
      out.set(k, this.positions.get(k) ?? 0);
    }
    await writeCheckpoint(this.checkpointFile, out);
  }

  /**
   * The whole local commit at once, for callers whose collector acknowledges at once (the test
   * driver) and for a clean close after the last commit.
   */
  async checkpoint(consumed?: ReadonlyMap<string, number>): Promise<void> {
    this.seal();
    await this.commitLocal(this.commitPositions(consumed));
  }

  /** Drops every uncommitted write of every store (a dirty close). */
  abort(): void {
    for (const s of this.stores.values()) s.txn?.abort();
  }

  /**
   * Standby: applies changelog records of `topic` (every one below `upTo`, in offset order) and
   * moves the store's position to `upTo`. The records go straight into the store, as a restore's.
   */
  async applyChangelog(topic: string, records: RawRecord[], upTo: number): Promise<void> {
    const s = [...this.stores.values()].find((x) => x.resolved.changelogTopic === topic);
    if (!s) return;
    if (records.length) await s.inner.restoreBatch(records.map((x) => ({ key: x.key!, value: x.value })));
    const k = tpKey(topic, this.opts.partition);
    if (upTo > (this.positions.get(k) ?? 0)) this.positions.set(k, upTo);
  }

  /** Standby: writes the checkpoint for the positions applied so far. */
  async checkpointPositions(): Promise<void> {
    await this.commitLocal(new Map(this.positions));
  }

  /** The changelog topics of the task's logged stores. */
  changelogTopics(): string[] {
    return [...this.stores.values()].flatMap((s) => (s.resolved.changelogTopic ? [s.resolved.changelogTopic] : []));
  }

  /** The changelog offset the local store is known to be complete up to (after restore). */
  position(topic: string): number | undefined {
    return this.positions.get(tpKey(topic, this.opts.partition));
  }

  /**
   * Runs `fn` with changelogging off: for writes that come from the changelog topic itself (a
   * table's source records), which must not be written back to it.
   */
  async withoutChangelog<T>(fn: () => Promise<T>): Promise<T> {
    this.suppressed = true;
    try {
      return await fn();
    } finally {
      this.suppressed = false;
    }
  }

  /** Closes the stores; uncommitted writes are dropped. Commit first for a clean close. */
  async close(): Promise<void> {
    await this.localCommits;
    for (const s of this.stores.values()) await s.store.close().catch(() => undefined);
    this.stores.clear();
  }

  storeMap(): Map<string, KeyValueStore<unknown, unknown>> {
    return new Map([...this.stores].map(([k, v]) => [k, v.store]));
  }
}
