/**
 * Learns from user interactions (§4): dedupes (messageId, action) over 7 days of event time,
 * applies the pure `learn` to the mailbox's preferences, and writes the new record to the
 * preference store, whose changelog is the `user-preferences` topic: every change is emitted
 * there as the whole record with version + 1.
 */
import type { Cancellable, Processor, ProcessorContext, StreamRecord } from '../runtime/processor.js';
import type { KeyValueStore } from '../runtime/state/store.js';
import { dedupeApplies, learn } from './logic/learn.js';
import { DEDUPE_WINDOW_MS, type UserInteraction, type UserPreferences } from './logic/model.js';
import { PREFERENCES_STORE } from './decide-processor.js';
import type { HotCounterChild } from '../runtime/metrics-hot.js';
import type { MailMetrics } from './metrics.js';
import { validateInteraction } from './validate.js';

export const DEDUPE_STORE = 'interaction-dedupe';
/** how often (in stream time) expired dedupe entries are purged */
export const DEDUPE_PURGE_INTERVAL_MS = 60 * 60 * 1000;

export function dedupeKey(i: UserInteraction): string {
  return `${i.mailboxId}\u0000${i.messageId}\u0000${i.action}`;
}

export class LearnProcessor implements Processor<string, UserInteraction> {
  private prefs!: KeyValueStore<string, UserPreferences>;
  private dedupe!: KeyValueStore<string, number>;
  private purge: Cancellable | undefined;

  constructor(private readonly metrics?: MailMetrics) {}

  init(ctx: ProcessorContext): void {
    this.prefs = ctx.getStateStore(PREFERENCES_STORE);
    this.dedupe = ctx.getStateStore(DEDUPE_STORE);
    this.purge = ctx.schedule(DEDUPE_PURGE_INTERVAL_MS, 'STREAM_TIME', (t) => this.purgeDedupe(t));
  }

  /** The batch's dedupe entries in one read (its preferences are read by mailbox, the record key). */
  prefetch(records: readonly StreamRecord<string, UserInteraction>[]): Promise<unknown> | void {
    const keys: string[] = [];
    for (const r of records) {
      const i = r.value;
      if (i && typeof i.action === 'string' && dedupeApplies(i.action)) keys.push(dedupeKey(i));
    }
    return keys.length ? this.dedupe.getAll(keys) : undefined;
  }

  async process(record: StreamRecord<string, UserInteraction>): Promise<void> {
    const i = record.value;
    validateInteraction(record.key, i);
    let duplicate = false;
    const useDedupe = dedupeApplies(i.action);
    const dk = useDedupe ? dedupeKey(i) : '';
    if (useDedupe) {
      const seen = await this.dedupe.get(dk);
      duplicate = seen !== undefined && Math.abs(i.occurredAt - seen) <= DEDUPE_WINDOW_MS;
    }
    const current = await this.prefs.get(i.mailboxId);
    const r = learn(current, i, { duplicate });
    if (this.metrics) this.countInteraction(i.action, r.change ?? r.ignored ?? 'NONE');
    // the preference change first, then the dedupe marker that makes a retry a no-op (both
    // belong to the same commit; the order matters only to a reader of the changelogs)
    if (r.next) await this.prefs.put(i.mailboxId, r.next);
    if (useDedupe && !duplicate) await this.dedupe.put(dk, i.occurredAt);
    if (!r.next) return;
    this.metrics?.preferenceUpdates.inc({ change: r.change ?? 'UNKNOWN' });
    for (const e of r.evicted) this.metrics?.evictions.inc({ scope: e.scope, source: e.source });
  }

  /** hot metric children by action → outcome, made once each */
  private readonly counted = new Map<string, Map<string, HotCounterChild>>();

  private countInteraction(action: string, outcome: string): void {
    let byOutcome = this.counted.get(action);
    if (!byOutcome) this.counted.set(action, (byOutcome = new Map()));
    let c = byOutcome.get(outcome);
    if (!c) byOutcome.set(outcome, (c = this.metrics!.interactions.hot({ action, outcome })));
    c.inc();
  }

  /** Deletes dedupe entries older than the window, in stream time. */
  private async purgeDedupe(streamTime: number): Promise<void> {
    const stale: string[] = [];
    for await (const [k, at] of this.dedupe.all()) if (streamTime - at > DEDUPE_WINDOW_MS) stale.push(k);
    for (const k of stale) await this.dedupe.delete(k);
  }

  close(): void {
    this.purge?.cancel();
  }
}

/** The table source's rule for `user-preferences` records: only a newer version replaces. */
export function newerPreferences(current: UserPreferences | undefined, incoming: UserPreferences): boolean {
  return current === undefined || incoming.version > current.version;
}
