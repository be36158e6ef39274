/**
 * §4 learning: a pure function from (current preferences, one interaction) to the next preferences.
 *
 * Rules, with the choices made where PRODUCT.md leaves room:
 *
 * - Message actions (all but the list edits) teach nothing when `occurredAt - messageReceivedAt`
 *   is more than 7 days (exactly 7 days still teaches). DELETED and UNKNOWN teach nothing.
 * - `opts.duplicate` is the caller's dedupe of (messageId, action) within 7 days; a duplicate
 *   message action teaches nothing. List edits are NOT deduplicated: they are idempotent (a repeated
 *   explicit verdict or a repeated remove is NO_CHANGE), while deduplicating them by (messageId,
 *   action) would wrongly drop, e.g., ALLOW → REMOVE → ALLOW made from one message or from a
 *   settings page that sends an empty messageId. Use `dedupeApplies(action)` to decide whether to
 *   consult/record the dedupe store at all.
 * - Explicit (address): MOVED_TO_INBOX, MARKED_NOT_SPAM → SAFE; MOVED_TO_PROMOTIONS → PROMOTIONS;
 *   ALLOW_SENDER / BLOCK_SENDER → SAFE / JUNK. Explicit (domain): ALLOW_DOMAIN / BLOCK_DOMAIN.
 *   An explicit action replaces whatever entry the key had (firstSeenAt reset); one that repeats the
 *   existing explicit verdict is NO_CHANGE. Explicit entries have evidence 1 and expiresAt null.
 * - REMOVE_SENDER / REMOVE_DOMAIN delete the entry of that key, whatever its source (also an expired
 *   one); NO_CHANGE when there is none.
 * - Inferred (address): MOVED_TO_JUNK, REPORTED_SPAM → +1 JUNK evidence; REPLIED → +1 SAFE evidence;
 *   UNSUBSCRIBED → JUNK with evidence max(existing + 1, 2) (2 for a new or restarted entry).
 *   A same-verdict signal adds evidence (firstSeenAt kept) unless the entry's last signal
 *   (`updatedAt`) is more than 30 days before `occurredAt`: then evidence restarts at 1 (2 for
 *   UNSUBSCRIBED) and firstSeenAt restarts too. A different verdict replaces the inferred entry.
 *   An expired inferred entry counts as absent. An inferred signal never touches an explicit entry
 *   (EXPLICIT_ENTRY). Inferred entries expire at last signal + 90 days.
 * - All timestamps are the interaction's `occurredAt` (event time). Keys are lower-cased.
 * - Limits: 1024 ADDRESS and 256 DOMAIN entries. When adding a new (scope, key) would exceed the
 *   limit, the least recently updated (`updatedAt`, ties by key) INFERRED entry of that scope is
 *   evicted first, then the least recently updated EXPLICIT one; every eviction is reported.
 * - Housekeeping: a change also drops the record's expired inferred entries (reported in `pruned`,
 *   not in `evicted`). This is invisible to decide (expired entries are never live) and to learning
 *   (expired entries count as absent); it only keeps records small and stops dead entries from
 *   occupying the limits. Pruning alone is never a change: an interaction that changes nothing
 *   emits nothing, even if the record holds expired entries.
 * - Every change returns the whole new record: version + 1 (1 for a new record, with tenantId and
 *   mailboxId of the interaction), updatedAt = occurredAt, existing entries kept in order, a new
 *   entry appended. The input is never mutated.
 */
import {
  EXPLICIT_EVIDENCE,
  EVIDENCE_RESTART_MS,
  INFERRED_EXPIRY_MS,
  LEARNING_WINDOW_MS,
  MAX_ENTRIES,
  UNSUBSCRIBE_EVIDENCE,
  isExpired,
  normalizeKey,
  senderDomainOf,
} from './model.js';
import type {
  EntryScope,
  EntrySource,
  InteractionAction,
  PreferenceEntry,
  UserInteraction,
  UserPreferences,
  Verdict,
} from './model.js';

/** Largest Avro int; evidence never grows past it. */
const MAX_EVIDENCE = 2_147_483_647;

export type IgnoredReason =
  /** action not known to this version (Avro reader default) */
  | 'UNKNOWN_ACTION'
  /** DELETED teaches nothing */
  | 'DELETED'
  /** message action more than 7 days after the message was received */
  | 'TOO_LATE'
  /** the same (messageId, action) was already seen within 7 days */
  | 'DUPLICATE'
  /** no sender address / domain to learn about */
  | 'NO_KEY'
  /** an inferred signal for a key that has an explicit entry */
  | 'EXPLICIT_ENTRY'
  /** the action would leave the preferences as they are (repeat explicit verdict, remove of nothing) */
  | 'NO_CHANGE';

export type ChangeKind =
  /** a new (scope, key) entry */
  | 'ADDED'
  /** an existing entry replaced (different source or verdict, or an expired inferred entry) */
  | 'REPLACED'
  /** evidence added to a same-verdict inferred entry */
  | 'EVIDENCE'
  /** same-verdict inferred entry whose last signal was more than 30 days ago: evidence restarted */
  | 'RESTARTED'
  /** entry deleted by REMOVE_SENDER / REMOVE_DOMAIN */
  | 'REMOVED';

export interface EntryRef {
  scope: EntryScope;
  source: EntrySource;
  key: string;
}

export interface LearnResult {
  /** the whole new record (version + 1); undefined = no change, emit nothing */
  next: UserPreferences | undefined;
  /** entries evicted to respect the limits (count them in a metric) */
  evicted: EntryRef[];
  /** expired inferred entries dropped as part of this change */
  pruned: EntryRef[];
  /** why nothing changed (set iff next is undefined) */
  ignored?: IgnoredReason;
  /** what changed (set iff next is defined) */
  change?: ChangeKind;
  /** the entry the interaction was about: scope and lower-cased key (absent when ignored early) */
  target?: { scope: EntryScope; key: string };
}

export interface LearnOptions {
  /** the caller's dedupe store has already seen (messageId, action) within 7 days */
  duplicate: boolean;
}

/** What an action teaches. */
export type LearningOp =
  | { kind: 'EXPLICIT'; scope: EntryScope; verdict: Verdict }
  | { kind: 'REMOVE'; scope: EntryScope }
  | { kind: 'INFERRED'; verdict: Verdict; unsubscribe: boolean }
  | { kind: 'NONE' };

const OPS: Readonly<Record<InteractionAction, LearningOp>> = {
  MOVED_TO_INBOX: { kind: 'EXPLICIT', scope: 'ADDRESS', verdict: 'SAFE' },
  MARKED_NOT_SPAM: { kind: 'EXPLICIT', scope: 'ADDRESS', verdict: 'SAFE' },
  MOVED_TO_PROMOTIONS: { kind: 'EXPLICIT', scope: 'ADDRESS', verdict: 'PROMOTIONS' },
  MOVED_TO_JUNK: { kind: 'INFERRED', verdict: 'JUNK', unsubscribe: false },
  REPORTED_SPAM: { kind: 'INFERRED', verdict: 'JUNK', unsubscribe: false },
  UNSUBSCRIBED: { kind: 'INFERRED', verdict: 'JUNK', unsubscribe: true },
  REPLIED: { kind: 'INFERRED', verdict: 'SAFE', unsubscribe: false },
  DELETED: { kind: 'NONE' },
  ALLOW_SENDER: { kind: 'EXPLICIT', scope: 'ADDRESS', verdict: 'SAFE' },
  BLOCK_SENDER: { kind: 'EXPLICIT', scope: 'ADDRESS', verdict: 'JUNK' },
  ALLOW_DOMAIN: { kind: 'EXPLICIT', scope: 'DOMAIN', verdict: 'SAFE' },
  BLOCK_DOMAIN: { kind: 'EXPLICIT', scope: 'DOMAIN', verdict: 'JUNK' },
  REMOVE_SENDER: { kind: 'REMOVE', scope: 'ADDRESS' },
  REMOVE_DOMAIN: { kind: 'REMOVE', scope: 'DOMAIN' },
  UNKNOWN: { kind: 'NONE' },
};

const LIST_EDITS: ReadonlySet<string> = new Set([
  'ALLOW_SENDER',
  'BLOCK_SENDER',
  'ALLOW_DOMAIN',
  'BLOCK_DOMAIN',
  'REMOVE_SENDER',
  'REMOVE_DOMAIN',
]);

/** What an action teaches; unknown strings (a newer producer without schema resolution) teach nothing. */
export function learningOp(action: InteractionAction | string): LearningOp {
  return (OPS as Readonly<Record<string, LearningOp>>)[action] ?? { kind: 'NONE' };
}

/** True for list edits (ALLOW_/BLOCK_/REMOVE_ SENDER/DOMAIN). */
export function isListEdit(action: InteractionAction | string): boolean {
  return LIST_EDITS.has(action);
}

/**
 * True when the (messageId, action) dedupe applies: message actions that can teach (not DELETED,
 * not UNKNOWN, not list edits). The caller should only consult and record its dedupe store for these.
 */
export function dedupeApplies(action: InteractionAction | string): boolean {
  return !isListEdit(action) && learningOp(action).kind !== 'NONE';
}

/** The scope the action acts on and its lower-cased key ('' when the interaction has none). */
function targetKey(interaction: UserInteraction, scope: EntryScope): string {
  return scope === 'ADDRESS'
    ? normalizeKey(interaction.senderAddress)
    : senderDomainOf(interaction.senderAddress, interaction.senderDomain);
}

function refOf(entry: PreferenceEntry): EntryRef {
  return { scope: entry.scope, source: entry.source, key: entry.key };
}

function ignored(reason: IgnoredReason, target?: { scope: EntryScope; key: string }): LearnResult {
  const r: LearnResult = { next: undefined, evicted: [], pruned: [], ignored: reason };
  if (target !== undefined) r.target = target;
  return r;
}

/** Index of the (scope, key) entry in entries, -1 if none. */
function findEntry(entries: readonly PreferenceEntry[], scope: EntryScope, key: string): number {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.scope === scope && (e.key === key || normalizeKey(e.key) === key)) return i;
  }
  return -1;
}

/** Least recently updated entry of a scope and source (ties: smallest key), -1 if none. */
function lruIndex(entries: readonly PreferenceEntry[], scope: EntryScope, source: EntrySource): number {
  let best = -1;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.scope !== scope || e.source !== source) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const b = entries[best]!;
    if (e.updatedAt < b.updatedAt || (e.updatedAt === b.updatedAt && e.key < b.key)) best = i;
  }
  return best;
}

/**
 * Evicts from `entries` (in place: it is the function's own copy) until one more entry of `scope`
 * fits within `limit`: least recently updated inferred entries first, then explicit ones.
 */
function evictFor(entries: PreferenceEntry[], scope: EntryScope, limit: number): EntryRef[] {
  const evicted: EntryRef[] = [];
  let count = 0;
  for (const e of entries) if (e.scope === scope) count++;
  while (count >= limit && count > 0) {
    let i = lruIndex(entries, scope, 'INFERRED');
    if (i < 0) i = lruIndex(entries, scope, 'EXPLICIT');
    if (i < 0) break;
    evicted.push(refOf(entries[i]!));
    entries.splice(i, 1);
    count--;
  }
  return evicted;
}

export function learn(
  current: UserPreferences | undefined,
  interaction: UserInteraction,
  opts: LearnOptions,
): LearnResult {
  const action = interaction.action;
  const op = learningOp(action);
  if (op.kind === 'NONE') return ignored(action === 'DELETED' ? 'DELETED' : 'UNKNOWN_ACTION');

  const t = interaction.occurredAt;
  if (!isListEdit(action)) {
    if (opts.duplicate) return ignored('DUPLICATE');
    if (t - interaction.messageReceivedAt > LEARNING_WINDOW_MS) return ignored('TOO_LATE');
  }

  const scope: EntryScope = op.kind === 'INFERRED' ? 'ADDRESS' : op.scope;
  const key = targetKey(interaction, scope);
  const target = { scope, key };
  if (key === '') return ignored('NO_KEY', target);

  const entries: readonly PreferenceEntry[] = current?.entries ?? [];
  const idx = findEntry(entries, scope, key);
  const existing = idx >= 0 ? entries[idx] : undefined;

  let replacement: PreferenceEntry | null;
  let change: ChangeKind;
  switch (op.kind) {
    case 'EXPLICIT': {
      if (existing !== undefined && existing.source === 'EXPLICIT' && existing.verdict === op.verdict) {
        return ignored('NO_CHANGE', target);
      }
      replacement = {
        key,
        scope,
        verdict: op.verdict,
        source: 'EXPLICIT',
        evidence: EXPLICIT_EVIDENCE,
        firstSeenAt: t,
        updatedAt: t,
        expiresAt: null,
      };
      change = existing === undefined ? 'ADDED' : 'REPLACED';
      break;
    }
    case 'REMOVE': {
      if (existing === undefined) return ignored('NO_CHANGE', target);
      replacement = null;
      change = 'REMOVED';
      break;
    }
    case 'INFERRED': {
      if (existing !== undefined && existing.source === 'EXPLICIT') {
        return ignored('EXPLICIT_ENTRY', target);
      }
      const base = op.unsubscribe ? UNSUBSCRIBE_EVIDENCE : 1;
      const live = existing !== undefined && !isExpired(existing, t) ? existing : undefined;
      let evidence: number;
      let firstSeenAt: number;
      if (live !== undefined && live.verdict === op.verdict) {
        if (t - live.updatedAt > EVIDENCE_RESTART_MS) {
          evidence = base;
          firstSeenAt = t;
          change = 'RESTARTED';
        } else {
          const added = Math.min(live.evidence + 1, MAX_EVIDENCE);
          evidence = op.unsubscribe ? Math.max(added, UNSUBSCRIBE_EVIDENCE) : added;
          firstSeenAt = live.firstSeenAt;
          change = 'EVIDENCE';
        }
      } else {
        evidence = base;
        firstSeenAt = t;
        change = existing === undefined ? 'ADDED' : 'REPLACED';
      }
      replacement = {
        key,
        scope,
        verdict: op.verdict,
        source: 'INFERRED',
        evidence,
        firstSeenAt,
        updatedAt: t,
        expiresAt: t + INFERRED_EXPIRY_MS,
      };
      break;
    }
  }

  // Build the next entries: the target replaced (or removed) in place, expired inferred entries
  // dropped, a new entry appended after making room for it.
  const out: PreferenceEntry[] = [];
  const pruned: EntryRef[] = [];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (i === idx) {
      if (replacement !== null) out.push(replacement);
    } else if (e.source === 'INFERRED' && isExpired(e, t)) {
      pruned.push(refOf(e));
    } else {
      out.push(e);
    }
  }
  let evicted: EntryRef[] = [];
  if (idx < 0 && replacement !== null) {
    evicted = evictFor(out, scope, MAX_ENTRIES[scope]);
    out.push(replacement);
  }

  const next: UserPreferences =
    current === undefined
      ? {
          mailboxId: interaction.mailboxId,
          tenantId: interaction.tenantId,
          version: 1,
          updatedAt: t,
          entries: out,
        }
      : { ...current, version: current.version + 1, updatedAt: t, entries: out };
  return { next, evicted, pruned, change, target };
}

/**
 * Drops the expired inferred entries of a record (expired at `at`). Returns `next` undefined when
 * there is none. Dropping them is a change of the stored record (version + 1, updatedAt = at) and
 * must be emitted like any other; it never changes a decision or what learning does (expired entries
 * are not live and count as absent), so it is optional housekeeping, e.g. for a punctuator. `learn`
 * already does it as part of every real change.
 */
export function pruneExpired(
  prefs: UserPreferences,
  at: number,
): { next: UserPreferences | undefined; pruned: EntryRef[] } {
  const pruned: EntryRef[] = [];
  const kept: PreferenceEntry[] = [];
  for (const e of prefs.entries) {
    if (e.source === 'INFERRED' && isExpired(e, at)) pruned.push(refOf(e));
    else kept.push(e);
  }
  if (pruned.length === 0) return { next: undefined, pruned };
  return {
    next: { ...prefs, version: prefs.version + 1, updatedAt: at, entries: kept },
    pruned,
  };
}
