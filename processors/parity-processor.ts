/**
 * Parity with the legacy system (§6): pairs each new decision (LIVE or SHADOW, forwarded by the
 * decide processor) with the `legacy-decisions` record of the same message, within a window of
 * event time, either order (the pure rules are in logic/parity.ts).
 *
 * Two nodes of this class share two stores, both logged to changelog topics so pairing survives
 * restarts and rebalances:
 *   parity-pairs   pairKey(mailboxId, messageId) → ParityEntry
 *   parity-expiry  <closesAt, 15 digits> NUL pairKey → closesAt   (an index, to find closed windows)
 * The legacy node schedules a stream-time punctuation that closes the windows the task's stream
 * time has passed: a lone new side is LEGACY_MISSING, a lone legacy side NEW_MISSING.
 * MISMATCH and the missing sides are forwarded to the `parity-mismatches` sink; every comparison
 * (MATCH included) is counted.
 */
import type { Cancellable, GlobalTableView, Processor, ProcessorContext, StreamRecord } from '../runtime/processor.js';
import type { KeyValueStore } from '../runtime/state/store.js';
import {
  applySide,
  closeEntry,
  DEFAULT_PARITY_WINDOW_MS,
  mapLegacyAction,
  pairKey,
  type ParityComparison,
  type ParityEntry,
  type ParityStep,
} from './logic/parity.js';
import type { Decision, LegacyDecision, ParityResult } from './logic/model.js';
import type { MailMetrics } from './metrics.js';
import { ROLLOUT_FLAGS_TABLE, type FlagEntry, type RolloutFlagBook } from './rollout-flags.js';
import { validateKey } from './validate.js';
import { ProcessingError } from '../runtime/errors.js';

export const PARITY_STORE = 'parity-pairs';
export const PARITY_EXPIRY_STORE = 'parity-expiry';
export const PARITY_SINK = 'parity-mismatches';

export interface ParityOptions {
  /** pairing window in event time (default 10 minutes) */
  windowMs?: number;
  metrics?: MailMetrics;
  /** legacy decisions of mailboxes that are OFF are not compared (no new decision is made) */
  flags?: RolloutFlagBook;
}

function expiryKey(closesAt: number, key: string): string {
  return `${String(Math.max(0, closesAt)).padStart(15, '0')}\u0000${key}`;
}

/** Match rates per tenant, from this instance's counts (for the gauge). */
class RateBook {
  private readonly counts = new Map<string, { all: number; matched: number }>();
  add(tenant: string, matched: boolean): number {
    let c = this.counts.get(tenant);
    if (!c) this.counts.set(tenant, (c = { all: 0, matched: 0 }));
    c.all++;
    if (matched) c.matched++;
    return c.matched / c.all;
  }
}

export class ParityProcessor implements Processor<string, Decision | LegacyDecision> {
  private ctx!: ProcessorContext;
  private pairs!: KeyValueStore<string, ParityEntry>;
  private expiry!: KeyValueStore<string, number>;
  private flagTable: GlobalTableView<string, FlagEntry> | undefined;
  private punctuation: Cancellable | undefined;
  private readonly windowMs: number;

  constructor(
    private readonly kind: 'new' | 'legacy',
    private readonly o: ParityOptions & { rates?: RateBook } = {},
  ) {
    this.windowMs = o.windowMs ?? DEFAULT_PARITY_WINDOW_MS;
  }

  static rates(): RateBook {
    return new RateBook();
  }

  init(ctx: ProcessorContext): void {
    this.ctx = ctx;
    this.pairs = ctx.getStateStore(PARITY_STORE);
    this.expiry = ctx.getStateStore(PARITY_EXPIRY_STORE);
    if (this.kind === 'legacy') {
      if (this.o.flags) this.flagTable = ctx.getGlobalTable(ROLLOUT_FLAGS_TABLE);
      const every = Math.max(1000, Math.min(60_000, Math.floor(this.windowMs / 10)));
      this.punctuation = ctx.schedule(every, 'STREAM_TIME', (t) => this.closeWindows(t));
    }
  }

  async process(record: StreamRecord<string, Decision | LegacyDecision>): Promise<void> {
    let step: ParityStep;
    let key: string;
    let before: ParityEntry | undefined;
    if (this.kind === 'new') {
      const d = record.value as Decision;
      key = pairKey(d.mailboxId, d.messageId);
      before = await this.pairs.get(key);
      step = applySide(
        before,
        d,
        { kind: 'new', value: { action: d.action, reason: d.reason, ts: record.timestamp } },
        this.windowMs,
      );
    } else {
      const l = record.value as LegacyDecision;
      validateKey(record.key, l.mailboxId);
      if (!l.messageId || !l.tenantId) throw new ProcessingError('MISSING_ID', 'messageId and tenantId are required');
      const action = mapLegacyAction(l.action);
      if (this.o.flags && this.flagTable && this.o.flags.mode(this.flagTable, l.tenantId, l.mailboxId) === 'OFF') {
        this.o.metrics?.paritySkipped.inc({ reason: 'OFF' });
        return;
      }
      key = pairKey(l.mailboxId, l.messageId);
      before = await this.pairs.get(key);
      step = applySide(before, l, { kind: 'legacy', value: { action, ts: record.timestamp } }, this.windowMs);
    }
    if (step.duplicate) {
      this.o.metrics?.paritySkipped.inc({ reason: 'DUPLICATE' });
      return;
    }
    if (step.outcome === 'MATCH' || step.outcome === 'MISMATCH') this.count(step.entry!, step.outcome);
    else if (step.outcome && before) this.count(before, step.outcome);
    if (before && before.closesAt !== step.entry?.closesAt) await this.expiry.delete(expiryKey(before.closesAt, key));
    if (step.entry) {
      await this.pairs.put(key, step.entry);
      if (!before || before.closesAt !== step.entry.closesAt)
        await this.expiry.put(expiryKey(step.entry.closesAt, key), step.entry.closesAt);
    }
    for (const r of step.emit ?? []) await this.emit(r, record.timestamp);
  }

  private count(e: ParityEntry, outcome: ParityComparison): void {
    const m = this.o.metrics;
    if (!m) return;
    m.parityResults.inc({ tenant: e.tenantId, result: outcome });
    if (e.legacy && e.new) m.parityMatrix.inc({ legacy: e.legacy.action, new: e.new.action });
    if (this.o.rates) m.parityMatchRate.set({ tenant: e.tenantId }, this.o.rates.add(e.tenantId, outcome === 'MATCH'));
  }

  private async emit(r: ParityResult, timestamp: number): Promise<void> {
    await this.ctx.forward({ key: r.mailboxId, value: r, timestamp }, PARITY_SINK);
  }

  /** Closes every window that ends at or before the stream time. */
  private async closeWindows(streamTime: number): Promise<void> {
    const closed: [string, number][] = [];
    for await (const [k, at] of this.expiry.range(undefined, expiryKey(streamTime + 1, ''))) closed.push([k, at]);
    for (const [ik, at] of closed) {
      const key = ik.slice(ik.indexOf('\u0000') + 1);
      await this.expiry.delete(ik);
      const e = await this.pairs.get(key);
      if (!e || e.closesAt !== at) continue;
      await this.pairs.delete(key);
      const c = closeEntry(e);
      if (c.outcome) this.count(e, c.outcome);
      if (c.emit) await this.emit(c.emit, at);
    }
  }

  close(): void {
    this.punctuation?.cancel();
  }
}
