/**
 * Decides every mail event (§3): reads the mailbox's preferences from the preference store and
 * the tenant's policy from the global table, applies the pure `decide`, and forwards a Decision
 * according to the mailbox's rollout mode (§6):
 *   LIVE   → the `mail-decisions` sink (and parity)
 *   SHADOW → the `mail-decisions-shadow` sink only (and parity)
 *   OFF    → nothing (counted in um_decisions_off_total); learning goes on elsewhere.
 */
import type { Cancellable, GlobalTableView, Processor, ProcessorContext, StreamRecord } from '../runtime/processor.js';
import type { KeyValueStore } from '../runtime/state/store.js';
import { decide } from './logic/decide.js';
import type { Decision, DecisionMode, MailEvent, TenantPolicy, UserPreferences } from './logic/model.js';
import type { HotCounterChild, HotHistogramChild } from '../runtime/metrics-hot.js';
import type { MailMetrics } from './metrics.js';
import { ROLLOUT_FLAGS_TABLE, RolloutFlagBook, type FlagEntry } from './rollout-flags.js';
import { validateMailEvent } from './validate.js';

export const PREFERENCES_STORE = 'preferences';
export const TENANT_POLICIES_TABLE = 'tenant-policies';
/** the decide processor's children (topology node names) */
export const LIVE_SINK = 'mail-decisions';
export const SHADOW_SINK = 'mail-decisions-shadow';
export const PARITY_NEW = 'parity-new';
/** how often (wall clock) the flags are scanned for changes to log and count */
export const FLAG_SCAN_INTERVAL_MS = 1000;

export interface DecideDeps {
  metrics?: MailMetrics;
  /** wall clock for decidedAt / dwell (the decision itself depends only on event time) */
  now?: () => number;
  /** the rollout flags in force on this instance (one book per instance, shared by its tasks) */
  flags?: RolloutFlagBook;
  /** decisions are also forwarded to the parity processor */
  parity?: boolean;
}

export class DecideProcessor implements Processor<string, MailEvent> {
  private ctx!: ProcessorContext;
  private prefs!: KeyValueStore<string, UserPreferences>;
  private policies!: GlobalTableView<string, TenantPolicy>;
  private flagTable!: GlobalTableView<string, FlagEntry>;
  private scan: Cancellable | undefined;
  private readonly now: () => number;
  private readonly flags: RolloutFlagBook;

  constructor(private readonly deps: DecideDeps = {}) {
    this.now = deps.now ?? Date.now;
    this.flags = deps.flags ?? new RolloutFlagBook();
  }

  private readonly offCounters = new Map<string, { inc(): void }>();

  /** hot metric children by label values (action → reason → mode; mode), made once each */
  private readonly counters = new Map<string, Map<string, Map<string, HotCounterChild>>>();
  private readonly dwells = new Map<string, HotHistogramChild>();

  private observe(action: string, reason: string, mode: DecisionMode, dwellMs: number): void {
    const m = this.deps.metrics!;
    let byReason = this.counters.get(action);
    if (!byReason) this.counters.set(action, (byReason = new Map()));
    let byMode = byReason.get(reason);
    if (!byMode) byReason.set(reason, (byMode = new Map()));
    let c = byMode.get(mode);
    if (!c) byMode.set(mode, (c = m.decisions.hot({ action, reason, mode })));
    c.inc();
    let d = this.dwells.get(mode);
    if (!d) this.dwells.set(mode, (d = m.dwell.hot({ mode })));
    d.observe(Math.max(0, dwellMs) / 1000);
  }

  init(ctx: ProcessorContext): void {
    this.ctx = ctx;
    this.prefs = ctx.getStateStore(PREFERENCES_STORE);
    this.policies = ctx.getGlobalTable(TENANT_POLICIES_TABLE);
    this.flagTable = ctx.getGlobalTable(ROLLOUT_FLAGS_TABLE);
    this.flags.sync(this.flagTable);
    this.scan = ctx.schedule(FLAG_SCAN_INTERVAL_MS, 'WALL_CLOCK_TIME', () => this.flags.sync(this.flagTable));
  }

  close(): void {
    this.scan?.cancel();
  }

  async process(record: StreamRecord<string, MailEvent>): Promise<void> {
    const event = record.value;
    validateMailEvent(record.key, event);
    const rollout = this.flags.mode(this.flagTable, event.tenantId, event.mailboxId);
    if (rollout === 'OFF') {
      if (this.deps.metrics) {
        let c = this.offCounters.get(event.tenantId);
        if (!c) this.offCounters.set(event.tenantId, (c = this.deps.metrics.decisionsOff.labels(event.tenantId)));
        c.inc();
      }
      return;
    }
    const mode: DecisionMode = rollout;
    const prefs = await this.prefs.get(event.mailboxId);
    const r = decide(event, prefs, this.policies.get(event.tenantId));
    const decidedAt = this.now();
    const decision: Decision = {
      eventId: event.eventId,
      messageId: event.messageId,
      tenantId: event.tenantId,
      mailboxId: event.mailboxId,
      action: r.action,
      reason: r.reason,
      matchedKey: r.matchedKey,
      preferencesVersion: r.preferencesVersion,
      mode,
      decidedAt,
      dwellMs: decidedAt - event.receivedAt,
    };
    if (this.deps.metrics) this.observe(r.action, r.reason, mode, decision.dwellMs);
    const out = { key: event.mailboxId, value: decision, timestamp: record.timestamp };
    await this.ctx.forward(out, mode === 'LIVE' ? LIVE_SINK : SHADOW_SINK);
    if (this.deps.parity) await this.ctx.forward(out, PARITY_NEW);
  }
}
