/**
 * A task's state: opens its slice of every store (one RocksDB per task per store under
 * `<stateDir>/<applicationId>/<taskId>/<store>`), restores them from their changelogs before the
 * task processes anything, and writes the checkpoint file (changelog offset per partition) after
 * each commit.
 *
 * Restore: the checkpoint says up to which changelog offset the local store is known to be
 * complete. The task reads [checkpoint, end offset) into the innermost store, bypassing the cache
 * and the changelog. No checkpoint, an unreadable checkpoint or a corrupt store means: wipe the
 * store and restore from the beginning of the changelog.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { StoreError } from './errors.js';
import type { RecordCollector } from './record-collector.js';
import {
  buildStoreStack,
  readCheckpoint,
  storeSerdeFor,
  tpKey,
  writeCheckpoint,
  type KeyValueStore,
  type RestorableBytesStore,
  type StoreMetrics,
} from './state/index.js';
import type { RawRecord } from './task.js';
import type { ResolvedStore } from './topology.js';

export interface TaskStore {
  resolved: ResolvedStore;
  store: KeyValueStore<unknown, unknown>;
  inner: RestorableBytesStore;
  dir: string | undefined;
}

export interface RestoreSource {
  /** end offset (high watermark) of a changelog partition */
  endOffset(topic: string, partition: number): Promise<number>;
  /** reads the ranges [from, to) of changelog partitions, in offset order per partition */
  read(
    ranges: { topic: string; partition: number; from: number; to: number }[],
    onRecords: (topic: string, records: RawRecord[]) => Promise<void>,
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
  /** offsets known to be in the local stores: restored-to or written-and-acknowledged */
  private readonly positions = new Map<string, number>();
  private suppressed = false;
  /** timestamp for changelog records: the task sets it to the record being processed */
  timestamp: () => number = Date.now;

  constructor(
    private readonly opts: {
      taskId: string;
      partition: number;
      /** undefined: everything in memory (test driver) */
      taskDir: string | undefined;
      stores: ResolvedStore[];
      collector: RecordCollector;
      cacheMaxEntries: number;
      metrics?: StoreMetrics;
      logger?: Logger;
    },
  ) {
    this.checkpointFile = opts.taskDir ? join(opts.taskDir, '.checkpoint') : undefined;
  }

  /** Opens every store; a corrupt store is wiped and re-opened empty (then fully restored). */
  async open(): Promise<{ wiped: string[] }> {
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
      const known = tp ? checkpoint?.get(tp) : undefined;
      // without a checkpoint for a logged store, the local copy cannot be trusted: start empty
      if (dir && r.changelogTopic && known === undefined) {
        await rm(dir, { recursive: true, force: true });
      }
      const sink = r.changelogTopic
        ? {
            log: (key: Buffer, value: Buffer | null) => {
              if (this.suppressed) return;
              this.opts.collector.send({
                topic: r.changelogTopic!,
                key,
                value,
                partition: this.opts.partition,
                timestamp: this.timestamp(),
              });
            },
          }
        : undefined;
      const build = () =>
        buildStoreStack<unknown, unknown>({
          name: r.spec.name,
          dir,
          cacheMaxEntries: r.spec.cacheMaxEntries ?? this.opts.cacheMaxEntries,
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
      this.stores.set(r.spec.name, { resolved: r, store: stack.store, inner: stack.inner, dir });
      if (tp) this.positions.set(tp, dir ? (checkpoint?.get(tp) ?? 0) : 0);
    }
    return { wiped };
  }

  /** Restores every logged store from its position to the changelog's end. */
  async restore(source: RestoreSource, onProgress?: (p: RestoreProgress) => void): Promise<number> {
    const ranges: { topic: string; partition: number; from: number; to: number; store: TaskStore }[] = [];
    for (const s of this.stores.values()) {
      const topic = s.resolved.changelogTopic;
      if (!topic) continue;
      const from = this.positions.get(tpKey(topic, this.opts.partition)) ?? 0;
      const to = await source.endOffset(topic, this.opts.partition);
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
    await source.read(ranges, async (topic, records) => {
      const r = byTopic.get(topic)!;
      await r.store.inner.restoreBatch(records.map((x) => ({ key: x.key!, value: x.value })));
      const last = records[records.length - 1]!.offset;
      this.positions.set(tpKey(topic, this.opts.partition), last + 1);
      total += records.length;
      onProgress?.({
        store: r.store.resolved.spec.name,
        taskId: this.opts.taskId,
        restored: records.length,
        remaining: Math.max(0, r.to - (last + 1)),
      });
    });
    for (const r of ranges)
      this.positions.set(
        tpKey(r.topic, this.opts.partition),
        Math.max(r.to, this.positions.get(tpKey(r.topic, this.opts.partition)) ?? 0),
      );
    return total;
  }

  /**
   * Writes the checkpoint: for each changelog partition, the offset after the last record we
   * know is in both the local store and the changelog. Called after stores are flushed and the
   * collector has every changelog record acknowledged.
   */
  async checkpoint(): Promise<void> {
    if (!this.checkpointFile) return;
    const acked = this.opts.collector.ackedOffsets();
    const out = new Map<string, number>();
    for (const s of this.stores.values()) {
      const topic = s.resolved.changelogTopic;
      if (!topic || !s.dir) continue;
      const k = tpKey(topic, this.opts.partition);
      const a = acked.get(k);
      const pos = Math.max(this.positions.get(k) ?? 0, a === undefined ? 0 : a + 1);
      this.positions.set(k, pos);
      out.set(k, pos);
    }
    await writeCheckpoint(this.checkpointFile, out);
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

  /** Closes the stores. Call flush + checkpoint first for a clean close. */
  async close(): Promise<void> {
    for (const s of this.stores.values()) await s.store.close().catch(() => undefined);
    this.stores.clear();
  }

  storeMap(): Map<string, KeyValueStore<unknown, unknown>> {
    return new Map([...this.stores].map(([k, v]) => [k, v.store]));
  }
}
