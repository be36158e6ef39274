/**
 * The application's metrics (`um_` prefix), registered on the runtime's registry. Refused
 * records are counted by the runtime (`um_dead_letters_total{topic,code}`).
 */
import { Counter, Histogram, type Registry } from 'prom-client';

export class MailMetrics {
  readonly decisions: Counter<'action' | 'reason' | 'mode'>;
  readonly dwell: Histogram<'mode'>;
  readonly interactions: Counter<'action' | 'outcome'>;
  readonly preferenceUpdates: Counter<'change'>;
  readonly evictions: Counter<'scope' | 'source'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.decisions = new Counter({
      name: 'um_decisions_total',
      help: 'Decisions, by action, rule (reason) and mode',
      labelNames: ['action', 'reason', 'mode'],
      registers,
    });
    this.dwell = new Histogram({
      name: 'um_dwell_seconds',
      help: 'Time from a mail being received (receivedAt) to its decision',
      labelNames: ['mode'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.interactions = new Counter({
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
  }
}
