/**
 * The application's metrics (`um_` prefix), registered on the runtime's registry. Refused
 * records are counted by the runtime (`um_dead_letters_total{topic,code}`).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { HotCounter, HotHistogram } from '../runtime/metrics-hot.js';

export class MailMetrics {
  /** per record: hot children (`hot(labels)`) on the decide and learn paths */
  readonly decisions: HotCounter<'action' | 'reason' | 'mode'>;
  readonly dwell: HotHistogram<'mode'>;
  readonly interactions: HotCounter<'action' | 'outcome'>;
  readonly preferenceUpdates: Counter<'change'>;
  readonly evictions: Counter<'scope' | 'source'>;
  /** mails not decided because their mailbox is OFF (learning goes on) */
  readonly decisionsOff: Counter<'tenant'>;
  readonly flagChanges: Counter<'scope'>;
  readonly flagRefused: Counter<'code'>;
  readonly flagMode: Gauge<'scope'>;
  readonly flagPercent: Gauge<'scope'>;
  readonly parityResults: Counter<'tenant' | 'result'>;
  readonly parityMatrix: Counter<'legacy' | 'new'>;
  readonly parityMatchRate: Gauge<'tenant'>;
  readonly paritySkipped: Counter<'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.decisions = new HotCounter({
      name: 'um_decisions_total',
      help: 'Decisions, by action, rule (reason) and mode',
      labelNames: ['action', 'reason', 'mode'],
      registers,
    });
    this.dwell = new HotHistogram({
      name: 'um_dwell_seconds',
      help: 'Time from a mail being received (receivedAt) to its decision',
      labelNames: ['mode'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.interactions = new HotCounter({
      name: 'um_interactions_total',
      help: 'User interactions, by action and outcome (the change made, or why none)',
      labelNames: ['action', 'outcome'],
      registers,
    });
    this.preferenceUpdates = new Counter({
      name: 'um_preference_updates_total',
      help: 'Preference records emitted, by kind of change',
      labelNames: ['change'],
      registers,
    });
    this.evictions = new Counter({
      name: 'um_preference_evictions_total',
      help: 'Preference entries evicted to respect the per-mailbox limits',
      labelNames: ['scope', 'source'],
      registers,
    });
    this.decisionsOff = new Counter({
      name: 'um_decisions_off_total',
      help: 'Mails of OFF mailboxes: no decision output (preferences are still learned)',
      labelNames: ['tenant'],
      registers,
    });
    this.flagChanges = new Counter({
      name: 'um_rollout_flag_changes_total',
      help: 'Rollout flag changes taken into force on this instance, by scope',
      labelNames: ['scope'],
      registers,
    });
    this.flagRefused = new Counter({
      name: 'um_rollout_flag_refused_total',
      help: 'Malformed rollout flag records refused (dead-lettered; the last good flag stays)',
      labelNames: ['code'],
      registers,
    });
    this.flagMode = new Gauge({
      name: 'um_rollout_flag_mode',
      help: 'Rollout flag in force per scope: 0 OFF, 1 SHADOW, 2 LIVE',
      labelNames: ['scope'],
      registers,
    });
    this.flagPercent = new Gauge({
      name: 'um_rollout_flag_live_percent',
      help: 'livePercent of the rollout flag in force per scope',
      labelNames: ['scope'],
      registers,
    });
    this.parityResults = new Counter({
      name: 'um_parity_results_total',
      help: 'Parity comparisons with the legacy system, by tenant and result (MATCH, MISMATCH, LEGACY_MISSING, NEW_MISSING)',
      labelNames: ['tenant', 'result'],
      registers,
    });
    this.parityMatrix = new Counter({
      name: 'um_parity_actions_total',
      help: 'Paired decisions: legacy action x new action',
      labelNames: ['legacy', 'new'],
      registers,
    });
    this.parityMatchRate = new Gauge({
      name: 'um_parity_match_rate',
      help: "Share of this instance's parity comparisons that matched, per tenant (sum um_parity_results_total across instances for the fleet)",
      labelNames: ['tenant'],
      registers,
    });
    this.paritySkipped = new Counter({
      name: 'um_parity_skipped_total',
      help: 'Records parity did not compare (duplicates, legacy decisions of OFF mailboxes)',
      labelNames: ['reason'],
      registers,
    });
  }
}
