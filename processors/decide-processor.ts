/**
 * Decides every mail event (§3): reads the mailbox's preferences from the preference store and
 * the tenant's policy from the global table, applies the pure `decide`, and forwards a Decision.
 */
import type { GlobalTableView, Processor, ProcessorContext, StreamRecord } from '../runtime/processor.js';
import type { KeyValueStore } from '../runtime/state/store.js';
import { decide } from './logic/decide.js';
import type { Decision, DecisionMode, MailEvent, TenantPolicy, UserPreferences } from './logic/model.js';
import type { MailMetrics } from './metrics.js';
import { validateMailEvent } from './validate.js';

export const PREFERENCES_STORE = 'preferences';
export const TENANT_POLICIES_TABLE = 'tenant-policies';

export interface DecideDeps {
  metrics?: MailMetrics;
  /** wall clock for decidedAt / dwell (the decision itself depends only on event time) */
  now?: () => number;
  /** the mode stamped on decisions (rollout flags refine this per mailbox) */
  mode?: DecisionMode;
}

export class DecideProcessor implements Processor<string, MailEvent> {
  private ctx!: ProcessorContext;
  private prefs!: KeyValueStore<string, UserPreferences>;
  private policies!: GlobalTableView<string, TenantPolicy>;
  private readonly now: () => number;

  constructor(private readonly deps: DecideDeps = {}) {
    this.now = deps.now ?? Date.now;
  }

  /** metric children by label values, so the hot path does not hash label objects per record */
  private readonly counters = new Map<string, { inc(): void }>();
  private readonly dwells = new Map<string, { observe(v: number): void }>();

  private observe(action: string, reason: string, mode: DecisionMode, dwellMs: number): void {
    const m = this.deps.metrics!;
    const k = `${action}|${reason}|${mode}`;
    let c = this.counters.get(k);
    if (!c) this.counters.set(k, (c = m.decisions.labels(action, reason, mode)));
    c.inc();
    let d = this.dwells.get(mode);
    if (!d) this.dwells.set(mode, (d = m.dwell.labels(mode)));
    d.observe(Math.max(0, dwellMs) / 1000);
  }

  init(ctx: ProcessorContext): void {
    this.ctx = ctx;
    this.prefs = ctx.getStateStore(PREFERENCES_STORE);
    this.policies = ctx.getGlobalTable(TENANT_POLICIES_TABLE);
  }

  async process(record: StreamRecord<string, MailEvent>): Promise<void> {
    const event = record.value;
    validateMailEvent(record.key, event);
    const prefs = await this.prefs.get(event.mailboxId);
    const r = decide(event, prefs, this.policies.get(event.tenantId));
    const decidedAt = this.now();
    const mode = this.deps.mode ?? 'LIVE';
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
    await this.ctx.forward({ key: event.mailboxId, value: decision, timestamp: record.timestamp });
  }
}
