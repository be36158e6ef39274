/**
 * The rollout flags as every instance sees them (§6).
 *
 * `rollout-flags` is a global table (the whole compacted topic, on every instance, followed). Its
 * values are read with a tolerant serde (`flagEntrySerde`): a record that cannot be read becomes a
 * `FlagEntry` with an error instead of being dropped by the engine, so that the book can refuse
 * it like a well-formed but invalid one (unknown mode, livePercent outside 0..100).
 *
 * `RolloutFlagBook` (one per instance, shared by its tasks) keeps the last good flag per scope:
 *  - a new good flag replaces it: logged (scope, old → new, updatedBy, reason) and counted;
 *  - a refused flag leaves the last good one in force: logged, counted and dead-lettered once;
 *  - a tombstone removes the scope's flag (the default mode applies again).
 * Changes are picked up when a mail of the scope is decided and by a wall-clock scan every second,
 * so a change takes effect within about a second of the global table receiving it.
 */
import type { Logger } from 'pino';
import { SerdeError } from '../runtime/errors.js';
import type { GlobalTableView } from '../runtime/processor.js';
import type { Serde } from '../runtime/serdes.js';
import { GLOBAL_FLAG_SCOPE, type RolloutFlag, type RolloutMode } from './logic/model.js';
import { effectiveMode, flagProblem, type RolloutFlags } from './logic/rollout.js';
import type { MailMetrics } from './metrics.js';

export const ROLLOUT_FLAGS_TABLE = 'rollout-flags';

/** A value of the rollout-flags global table: the flag, or why it could not be read. */
export interface FlagEntry {
  flag?: RolloutFlag;
  error?: { code: string; message: string };
  /** the raw record, for the dead-letter topic */
  bytes?: Buffer;
}

/**
 * Wraps the flag serde so that an unreadable record becomes an entry with an error. Every record
 * of the topic is read through it, in order, so it also tells the book each well-formed flag it
 * reads (`onGood`): the last good flag of a scope is known even when the table holds a bad one.
 */
export function flagEntrySerde(inner: Serde<RolloutFlag>, onGood?: (flag: RolloutFlag) => void): Serde<FlagEntry> {
  return {
    init: inner.init?.bind(inner),
    async prepare(data) {
      try {
        await inner.prepare?.(data);
      } catch {
        // an unknown schema id fails again in deserialize, per record, where it is refused
      }
    },
    serialize(topic, v) {
      if (v.flag) return inner.serialize(topic, v.flag);
      if (v.bytes) return v.bytes;
      throw new SerdeError('FLAG_ENTRY_EMPTY', 'a flag entry without a flag cannot be written');
    },
    deserialize(topic, bytes) {
      let flag: RolloutFlag;
      try {
        flag = inner.deserialize(topic, bytes);
      } catch (e) {
        const code = e instanceof SerdeError ? e.code : 'DESERIALIZATION_FAILED';
        return { error: { code, message: (e as Error).message }, bytes };
      }
      if (onGood && !flagProblem(flag.scope, flag)) onGood(flag);
      return { flag, bytes };
    },
  };
}

export interface FlagDeadLetter {
  scope: string;
  bytes: Buffer | undefined;
  code: string;
  message: string;
}

export interface RolloutFlagBookOptions {
  /** mode of a tenant without a flag (UM_DEFAULT_MODE) */
  defaultMode?: RolloutMode;
  metrics?: MailMetrics;
  logger?: Pick<Logger, 'info' | 'warn'>;
  /** writes a refused flag record to the dead-letter topic */
  deadLetter?: (d: FlagDeadLetter) => void | Promise<void>;
}

function describeFlag(f: RolloutFlag | undefined): string {
  if (!f) return '(none)';
  return f.mode === 'LIVE' && f.livePercent < 100 ? `LIVE ${f.livePercent}%` : f.mode;
}

export class RolloutFlagBook {
  readonly defaultMode: RolloutMode;
  /** last good flag per scope */
  private readonly good = new Map<string, RolloutFlag>();
  /** the table value last looked at per scope (identity: a new record is a new object) */
  private readonly seen = new Map<string, FlagEntry>();
  /** the last well-formed flag read from the topic per scope (see flagEntrySerde) */
  private readonly lastRead = new Map<string, RolloutFlag>();

  constructor(private readonly o: RolloutFlagBookOptions = {}) {
    this.defaultMode = o.defaultMode ?? 'SHADOW';
  }

  /** Called by the table's serde with every well-formed flag it reads, in topic order. */
  readonly remember = (flag: RolloutFlag): void => {
    this.lastRead.set(flag.scope, flag);
  };

  /** The flags in force (last good per scope). */
  flags(): ReadonlyMap<string, RolloutFlag> {
    return this.good;
  }

  /** Looks at every scope of the table: new, changed and removed flags. */
  sync(view: GlobalTableView<string, FlagEntry>): void {
    for (const [scope, entry] of view.entries()) this.look(scope, entry);
    for (const scope of [...this.seen.keys()]) if (view.get(scope) === undefined) this.look(scope, undefined);
  }

  /** The flags of a tenant (and the global one), after looking at their table values. */
  resolve(view: GlobalTableView<string, FlagEntry>, tenantId: string): RolloutFlags {
    this.look(GLOBAL_FLAG_SCOPE, view.get(GLOBAL_FLAG_SCOPE));
    this.look(tenantId, view.get(tenantId));
    return { global: this.good.get(GLOBAL_FLAG_SCOPE), tenant: this.good.get(tenantId) };
  }

  mode(view: GlobalTableView<string, FlagEntry>, tenantId: string, mailboxId: string): RolloutMode {
    return effectiveMode(this.resolve(view, tenantId), tenantId, mailboxId, this.defaultMode);
  }

  private look(scope: string, entry: FlagEntry | undefined): void {
    if (this.seen.get(scope) === entry) return;
    if (entry === undefined) {
      this.seen.delete(scope);
      this.lastRead.delete(scope);
      const old = this.good.get(scope);
      if (!old) return;
      this.good.delete(scope);
      this.changed(scope, old, undefined);
      return;
    }
    this.seen.set(scope, entry);
    const problem = entry.error ?? (entry.flag ? flagProblem(scope, entry.flag) : undefined);
    if (problem || !entry.flag) {
      const p = problem ?? { code: 'FLAG_EMPTY', message: 'empty flag record' };
      // the table holds the bad record; the last good one read before it stays in force
      const lastGood = this.lastRead.get(scope);
      const old = this.good.get(scope);
      if (lastGood && lastGood !== old) {
        this.good.set(scope, lastGood);
        this.changed(scope, old, lastGood);
      }
      this.o.metrics?.flagRefused.inc({ code: p.code });
      this.o.logger?.warn(
        { scope, code: p.code, error: p.message, inForce: describeFlag(this.good.get(scope)) },
        'rollout flag refused: the last good flag stays in force',
      );
      void Promise.resolve(this.o.deadLetter?.({ scope, bytes: entry.bytes, code: p.code, message: p.message })).catch(
        (e: unknown) =>
          this.o.logger?.warn({ scope, err: (e as Error).message }, 'refused rollout flag not dead-lettered'),
      );
      return;
    }
    const old = this.good.get(scope);
    const next = entry.flag;
    if (old && old.mode === next.mode && old.livePercent === next.livePercent && old.updatedAt === next.updatedAt) {
      this.good.set(scope, next);
      return;
    }
    this.good.set(scope, next);
    this.changed(scope, old, next);
  }

  private changed(scope: string, old: RolloutFlag | undefined, next: RolloutFlag | undefined): void {
    const m = this.o.metrics;
    if (m) {
      m.flagChanges.inc({ scope });
      if (next) {
        m.flagMode.set({ scope }, { OFF: 0, SHADOW: 1, LIVE: 2 }[next.mode]);
        m.flagPercent.set({ scope }, next.livePercent);
      } else {
        m.flagMode.remove({ scope });
        m.flagPercent.remove({ scope });
      }
    }
    this.o.logger?.info(
      {
        scope,
        old: describeFlag(old),
        new: describeFlag(next),
        updatedBy: next?.updatedBy ?? null,
        reason: next?.reason ?? null,
        updatedAt: next?.updatedAt ?? null,
      },
      `rollout flag ${scope}: ${describeFlag(old)} → ${describeFlag(next)}`,
    );
  }
}
