/**
 * The reference the engine is measured against (PRODUCT.md §3-5): the same input processed one
 * record at a time in timestamp order, with the pure functions of processors/logic and nothing of
 * the engine.
 *
 * Order: every mailbox's state is its own (preferences and the dedupe of (messageId, action) are
 * keyed by mailbox), so the reference merges, per mailbox, its records of the three co-partitioned
 * inputs, each list in partition-offset order, always taking the head with the smallest timestamp;
 * on equal timestamps the order of the topology's sources: the preference table, then interactions,
 * then mail events. (For inputs whose partitions are in timestamp order this is a stable sort.)
 *
 * Per record, exactly what the processors do: a table record replaces the mailbox's preferences
 * when its version is newer; an interaction is deduplicated on (mailboxId, messageId, action)
 * within 7 days for message actions, then `learn`; a mail is decided with `decide`. The dedupe
 * store's stream-time purge cannot change an outcome here: in timestamp order an entry it deletes
 * is older than the window for every record still to come.
 */
import {
  DEDUPE_WINDOW_MS,
  decide,
  dedupeApplies,
  learn,
  type DecideResult,
  type MailEvent,
  type TenantPolicy,
  type UserInteraction,
  type UserPreferences,
} from '../../processors/logic/index.js';

export type InputRecord =
  | { kind: 'preferences'; timestamp: number; value: UserPreferences }
  | { kind: 'interaction'; timestamp: number; value: UserInteraction }
  | { kind: 'mail'; timestamp: number; value: MailEvent };

const RANK = { preferences: 0, interaction: 1, mail: 2 } as const;

export interface ReferenceDecision extends DecideResult {
  eventId: string;
  messageId: string;
  mailboxId: string;
  tenantId: string;
}

export interface ReferenceResult {
  /** by eventId */
  decisions: Map<string, ReferenceDecision>;
  /** every preference record the service must write, per mailbox, in order */
  written: Map<string, UserPreferences[]>;
  /** the preferences of each mailbox at the end (seeded or learned) */
  final: Map<string, UserPreferences>;
  /** the order the records were processed in (for the test driver cross-check) */
  order: InputRecord[];
}

function mailboxOf(r: InputRecord): string {
  return r.value.mailboxId;
}

/**
 * Processes `inputs` (each list in its partition-offset order) in timestamp order.
 * `tables` are records of the preference table (seeded records), `policies` the tenant policies.
 */
export function reference(
  inputs: {
    preferences: { timestamp: number; value: UserPreferences }[];
    interactions: { timestamp: number; value: UserInteraction }[];
    mails: { timestamp: number; value: MailEvent }[];
  },
  policies: readonly TenantPolicy[],
): ReferenceResult {
  const policyByTenant = new Map(policies.map((p) => [p.tenantId, p]));
  // per mailbox, the three queues in offset order
  const queues = new Map<string, InputRecord[][]>();
  const add = (r: InputRecord): void => {
    let q = queues.get(mailboxOf(r));
    if (!q) queues.set(mailboxOf(r), (q = [[], [], []]));
    q[RANK[r.kind]]!.push(r);
  };
  for (const r of inputs.preferences) add({ kind: 'preferences', ...r });
  for (const r of inputs.interactions) add({ kind: 'interaction', ...r });
  for (const r of inputs.mails) add({ kind: 'mail', ...r });

  const decisions = new Map<string, ReferenceDecision>();
  const written = new Map<string, UserPreferences[]>();
  const final = new Map<string, UserPreferences>();
  const order: InputRecord[] = [];
  for (const [mailboxId, q] of [...queues].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const heads = [0, 0, 0];
    let prefs: UserPreferences | undefined;
    const dedupe = new Map<string, number>();
    for (;;) {
      let best = -1;
      for (let k = 0; k < 3; k++) {
        const r = q[k]![heads[k]!];
        if (r === undefined) continue;
        // strict <: on a tie the lower rank (declared earlier) wins
        if (best < 0 || r.timestamp < q[best]![heads[best]!]!.timestamp) best = k;
      }
      if (best < 0) break;
      const r = q[best]![heads[best]!++]!;
      order.push(r);
      if (r.kind === 'preferences') {
        if (prefs === undefined || r.value.version > prefs.version) prefs = r.value;
      } else if (r.kind === 'interaction') {
        const i = r.value;
        let duplicate = false;
        if (dedupeApplies(i.action)) {
          const dk = `${i.messageId}\u0000${i.action}`;
          const seen = dedupe.get(dk);
          duplicate = seen !== undefined && Math.abs(i.occurredAt - seen) <= DEDUPE_WINDOW_MS;
          if (!duplicate) dedupe.set(dk, i.occurredAt);
        }
        const next = learn(prefs, i, { duplicate }).next;
        if (next) {
          prefs = next;
          let l = written.get(mailboxId);
          if (!l) written.set(mailboxId, (l = []));
          l.push(next);
        }
      } else {
        const m = r.value;
        const d = decide(m, prefs, policyByTenant.get(m.tenantId));
        decisions.set(m.eventId, {
          ...d,
          eventId: m.eventId,
          messageId: m.messageId,
          mailboxId: m.mailboxId,
          tenantId: m.tenantId,
        });
      }
    }
    if (prefs) final.set(mailboxId, prefs);
  }
  return { decisions, written, final, order };
}
