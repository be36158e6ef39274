/**
 * Standby replicas: warm copies of other instances' task stores.
 *
 * A standby task opens the task's stores in this instance's state directory and follows their
 * changelogs without processing input. One group-less follower per instance (assigned-reader.ts:
 * it reads exactly the standbys' changelog partitions, each from the standby's position) buffers
 * the changelog records; every `intervalMs` the manager
 * reads the changelog offsets of the group's last commit (the commit metadata, as a restore does)
 * and applies, per changelog partition, the buffered records below that commit's offset, then
 * writes the checkpoint. A standby is therefore never ahead of the last commit, so the instance
 * that takes the task over restores only what was committed since the standby's last round (an
 * active task refuses local state that is ahead of the last commit).
 *
 * When an instance is given, as active, a task it holds a standby of, the standby is closed first
 * (`release`): its checkpoint stays on disk and the active task restores from there.
 */
import type { Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import { AssignedReader } from './assigned-reader.js';
import type { RuntimeMetrics } from './metrics.js';
import type { TaskStateManager } from './state-manager.js';
import { tpKey } from './state/checkpoint.js';
import type { RawRecord } from './task.js';

interface Follow {
  topic: string;
  /** next offset fetched (records below it are buffered or applied) */
  fetched: number;
  buffer: RawRecord[];
  paused: boolean;
}

interface Standby {
  partition: number;
  state: TaskStateManager;
  follows: Map<string, Follow>;
  /** changelog offsets of the last commit, per changelog topic */
  targets: Map<string, number>;
  applied: number;
}

export interface StandbyStatus {
  task: string;
  partition: number;
  /** per changelog topic: the offset the local copy is complete to, and the last commit's */
  changelogs: { topic: string; position: number; committed: number | undefined; lag: number }[];
  lag: number;
  recordsApplied: number;
}

export interface StandbyManagerOptions {
  kafka: Kafka;
  /** opens the task's stores (at the targets of the last commit: state ahead of it is wiped) */
  openState(partition: number): Promise<TaskStateManager>;
  /** the changelog offsets of the last commit of these tasks (`topic:partition` -> offset) */
  committedTargets(partitions: number[]): Promise<Map<number, Map<string, number>>>;
  intervalMs?: number;
  /** per changelog partition: pause fetching above this many buffered records */
  maxBufferedRecords?: number;
  metrics?: RuntimeMetrics;
  logger?: Logger;
}

export class StandbyManager {
  private readonly standbys = new Map<number, Standby>();
  private reader: AssignedReader | undefined;
  /** the follower's fetch loop (ends when the manager closes) */
  private following: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** every change of the standby set, and every round, runs alone */
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly maxBuffered: number;

  constructor(private readonly opts: StandbyManagerOptions) {
    this.maxBuffered = opts.maxBufferedRecords ?? 50_000;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.then(
      () => undefined,
      (e) => {
        this.opts.logger?.warn({ err: (e as Error).message }, 'standby step failed; retried at the next round');
      },
    );
    return run;
  }

  /** The standby tasks this instance should hold now (from its latest assignment). */
  update(partitions: number[]): Promise<void> {
    return this.serial(async () => {
      if (this.closed) return;
      const want = new Set(partitions);
      for (const p of [...this.standbys.keys()]) if (!want.has(p)) await this.closeOne(p, 'no longer assigned');
      for (const p of want) {
        if (this.standbys.has(p)) continue;
        const state = await this.opts.openState(p);
        const follows = new Map<string, Follow>();
        for (const topic of state.changelogTopics())
          follows.set(topic, { topic, fetched: state.position(topic) ?? 0, buffer: [], paused: false });
        this.standbys.set(p, { partition: p, state, follows, targets: new Map(), applied: 0 });
        this.opts.logger?.info({ task: `0_${p}` }, 'standby task opened');
      }
      this.opts.metrics?.standbyTasks.set(this.standbys.size);
      if (this.standbys.size) {
        await this.ensureReader();
        await this.reposition();
        this.timer ??= setInterval(() => void this.serial(() => this.round()), this.opts.intervalMs ?? 1000);
        this.timer.unref?.();
      }
    });
  }

  /** Closes the standby of a task about to become active here (its checkpoint stays). */
  release(partition: number): Promise<void> {
    if (!this.standbys.has(partition)) return this.chain;
    return this.serial(() => this.closeOne(partition, 'becomes active'));
  }

  has(partition: number): boolean {
    return this.standbys.has(partition);
  }

  /** The sum of a standby's positions (how caught up it is), for the assignor. */
  offsetSum(partition: number): number | undefined {
    const s = this.standbys.get(partition);
    if (!s) return undefined;
    let n = 0;
    for (const f of s.follows.values()) n += s.state.position(f.topic) ?? 0;
    return n;
  }

  status(): StandbyStatus[] {
    return [...this.standbys.values()]
      .sort((a, b) => a.partition - b.partition)
      .map((s) => {
        const changelogs = [...s.follows.values()].map((f) => {
          const position = s.state.position(f.topic) ?? 0;
          const committed = s.targets.get(f.topic);
          return { topic: f.topic, position, committed, lag: Math.max(0, (committed ?? position) - position) };
        });
        return {
          task: `0_${s.partition}`,
          partition: s.partition,
          changelogs,
          lag: changelogs.reduce((n, c) => n + c.lag, 0),
          recordsApplied: s.applied,
        };
      });
  }

  private async closeOne(partition: number, reason: string): Promise<void> {
    const s = this.standbys.get(partition);
    if (!s) return;
    this.standbys.delete(partition);
    for (const f of s.follows.values()) this.reader?.unassign(f.topic, partition);
    try {
      await s.state.checkpointPositions();
    } finally {
      await s.state.close();
    }
    this.opts.metrics?.standbyLag.remove({ task: `0_${partition}` });
    this.opts.metrics?.standbyTasks.set(this.standbys.size);
    this.opts.logger?.info({ task: `0_${partition}`, reason }, 'standby task closed');
  }

  private async ensureReader(): Promise<void> {
    if (this.reader) return;
    const reader = new AssignedReader(this.opts.kafka, { maxWaitMs: 200 });
    await reader.connect();
    this.reader = reader;
    this.following = this.follow(reader);
  }

  /** Fetches the standbys' changelog partitions into their buffers until the manager closes. */
  private async follow(reader: AssignedReader): Promise<void> {
    while (!this.closed) {
      try {
        for (const got of await reader.fetch()) {
          const f = this.standbys.get(got.partition)?.follows.get(got.topic);
          // (the reader drops answers to fetches made before a seek: this one continues f.fetched)
          if (!f) continue;
          for (const r of got.records) if (r.offset >= f.fetched) f.buffer.push(r);
          f.fetched = Math.max(f.fetched, got.next);
          if (f.buffer.length > this.maxBuffered && !f.paused) {
            f.paused = true;
            reader.pause(f.topic, got.partition);
          }
        }
      } catch (e) {
        if (this.closed) return;
        this.opts.logger?.warn({ err: (e as Error).message }, 'standby follower fetch failed; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Points the follower at every new standby's positions. */
  private async reposition(): Promise<void> {
    const reader = this.reader;
    if (!reader || this.closed) return;
    for (const s of this.standbys.values())
      for (const f of s.follows.values()) {
        if (reader.isAssigned(f.topic, s.partition)) continue;
        f.buffer = [];
        f.paused = false;
        f.fetched = s.state.position(f.topic) ?? 0;
        await reader.assign(f.topic, s.partition, f.fetched);
      }
  }

  /** One round: the last commit's offsets, then everything buffered below them into the stores. */
  private async round(): Promise<void> {
    if (this.closed || !this.standbys.size) return;
    const targets = await this.opts.committedTargets([...this.standbys.keys()]);
    for (const s of this.standbys.values()) {
      const t = targets.get(s.partition);
      if (!t) continue;
      let moved = false;
      for (const f of s.follows.values()) {
        const target = t.get(tpKey(f.topic, s.partition));
        if (target === undefined) continue;
        s.targets.set(f.topic, target);
        const pos = s.state.position(f.topic) ?? 0;
        const upTo = Math.min(target, f.fetched);
        if (upTo <= pos) continue;
        let n = 0;
        while (n < f.buffer.length && f.buffer[n]!.offset < upTo) n++;
        const records = f.buffer.splice(0, n).filter((r) => r.offset >= pos && r.key !== null);
        await s.state.applyChangelog(f.topic, records, upTo);
        s.applied += records.length;
        this.opts.metrics?.standbyRecords.inc(records.length);
        moved = true;
        if (f.paused && f.buffer.length <= this.maxBuffered / 2) {
          f.paused = false;
          this.reader?.resume(f.topic, s.partition);
        }
      }
      if (moved) await s.state.checkpointPositions();
    }
    for (const st of this.status()) this.opts.metrics?.standbyLag.set({ task: st.task }, st.lag);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.serial(async () => {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      await this.reader?.close();
      await this.following;
      for (const p of [...this.standbys.keys()]) await this.closeOne(p, 'shutdown').catch(() => undefined);
    });
  }
}
