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
    const m = this.deps.metrics;
    if (m) {
      m.decisions.inc({ action: r.action, reason: r.reason, mode });
      m.dwell.observe({ mode }, Math.max(0, decision.dwellMs) / 1000);
    }
    await this.ctx.forward({ key: event.mailboxId, value: decision, timestamp: record.timestamp });
  }
}
