/**
 * TypeScript mirror of the Avro records in `schemas/v1/*.avsc` (PRODUCT.md §2) and the constants of
 * the decision, learning and rollout rules (§3, §4, §6).
 *
 * - Timestamps (`timestamp-millis`) are `number`: epoch milliseconds UTC, event time.
 * - Avro `long` is `number` (avsc reads longs as JS numbers; they must stay within 2^53).
 * - Avro enums are string-literal unions; the symbol lists are exported as arrays in schema order so
 *   tests can check them against the .avsc files.
 * - Nullable Avro unions (`["null", T]`) are `T | null` (never `undefined`).
 */

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

export const AUTH_RESULTS = ['PASS', 'FAIL', 'NONE'] as const;
export type AuthResult = (typeof AUTH_RESULTS)[number];

/** Message actions (learning window and dedupe apply to these). */
export const MESSAGE_ACTIONS = [
  'MOVED_TO_INBOX',
  'MOVED_TO_PROMOTIONS',
  'MOVED_TO_JUNK',
  'REPORTED_SPAM',
  'MARKED_NOT_SPAM',
  'UNSUBSCRIBED',
  'REPLIED',
  'DELETED',
] as const;
export type MessageAction = (typeof MESSAGE_ACTIONS)[number];

/** List edits: act on the sender address, or on the sender domain for the _DOMAIN actions. */
export const LIST_EDIT_ACTIONS = [
  'ALLOW_SENDER',
  'BLOCK_SENDER',
  'ALLOW_DOMAIN',
  'BLOCK_DOMAIN',
  'REMOVE_SENDER',
  'REMOVE_DOMAIN',
] as const;
export type ListEditAction = (typeof LIST_EDIT_ACTIONS)[number];

/**
 * All symbols of the Avro enum `InteractionAction`, in schema order. `UNKNOWN` is the Avro reader
 * default: an action added by a newer producer is read as UNKNOWN and teaches nothing.
 */
export const INTERACTION_ACTIONS = [...MESSAGE_ACTIONS, ...LIST_EDIT_ACTIONS, 'UNKNOWN'] as const;
export type InteractionAction = (typeof INTERACTION_ACTIONS)[number];

export const VERDICTS = ['SAFE', 'PROMOTIONS', 'JUNK'] as const;
export type Verdict = (typeof VERDICTS)[number];

export const ENTRY_SCOPES = ['ADDRESS', 'DOMAIN'] as const;
export type EntryScope = (typeof ENTRY_SCOPES)[number];

export const ENTRY_SOURCES = ['EXPLICIT', 'INFERRED'] as const;
export type EntrySource = (typeof ENTRY_SOURCES)[number];

export const MAIL_ACTIONS = ['INBOX', 'PROMOTIONS', 'JUNK'] as const;
export type MailAction = (typeof MAIL_ACTIONS)[number];

export const DECISION_MODES = ['LIVE', 'SHADOW'] as const;
export type DecisionMode = (typeof DECISION_MODES)[number];

/** Ordered OFF < SHADOW < LIVE. */
export const ROLLOUT_MODES = ['OFF', 'SHADOW', 'LIVE'] as const;
export type RolloutMode = (typeof ROLLOUT_MODES)[number];

export const PARITY_OUTCOMES = ['MISMATCH', 'LEGACY_MISSING', 'NEW_MISSING'] as const;
export type ParityOutcome = (typeof PARITY_OUTCOMES)[number];

/** The rule names of §3, in evaluation order. `Decision.reason` carries one of these. */
export const DECISION_REASONS = [
  'HIGH_CONFIDENCE_SPAM',
  'ORG_BLOCK',
  'ORG_ALLOW',
  'USER_SAFE',
  'USER_PROMOTIONS',
  'USER_JUNK',
  'SPAM_SCORE',
  'BULK',
  'CLEAN',
] as const;
export type DecisionReason = (typeof DECISION_REASONS)[number];

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/** `unwantedmail.MailEvent` (topic mail-events). */
export interface MailEvent {
  eventId: string;
  tenantId: string;
  mailboxId: string;
  messageId: string;
  receivedAt: number;
  senderAddress: string;
  senderDomain: string;
  spf: AuthResult;
  dkim: AuthResult;
  dmarc: AuthResult;
  /** 0..1 */
  spamScore: number;
  /** 0..9 */
  bulkScore: number;
  hasListUnsubscribe: boolean;
}

/** `unwantedmail.UserInteraction` (topic user-interactions). */
export interface UserInteraction {
  eventId: string;
  tenantId: string;
  mailboxId: string;
  messageId: string;
  senderAddress: string;
  senderDomain: string;
  action: InteractionAction;
  messageReceivedAt: number;
  occurredAt: number;
}

/** `unwantedmail.PreferenceEntry` (nested in UserPreferences). */
export interface PreferenceEntry {
  /** lower-cased address (ADDRESS) or domain (DOMAIN) */
  key: string;
  scope: EntryScope;
  verdict: Verdict;
  source: EntrySource;
  evidence: number;
  firstSeenAt: number;
  updatedAt: number;
  /** last signal + 90 days for INFERRED; null for EXPLICIT */
  expiresAt: number | null;
}

/** `unwantedmail.UserPreferences` (compacted topic user-preferences). Treated as immutable. */
export interface UserPreferences {
  mailboxId: string;
  tenantId: string;
  version: number;
  updatedAt: number;
  entries: PreferenceEntry[];
}

/** `unwantedmail.Decision` (topics mail-decisions, mail-decisions-shadow). */
export interface Decision {
  eventId: string;
  messageId: string;
  tenantId: string;
  mailboxId: string;
  action: MailAction;
  /** a DecisionReason; a string in the schema so new rules need no schema change */
  reason: string;
  matchedKey: string | null;
  preferencesVersion: number | null;
  mode: DecisionMode;
  decidedAt: number;
  dwellMs: number;
}

/** `unwantedmail.LegacyDecision` (topic legacy-decisions). */
export interface LegacyDecision {
  messageId: string;
  tenantId: string;
  mailboxId: string;
  action: MailAction;
  decidedAt: number;
}

/** `unwantedmail.ParityResult` (topic parity-mismatches). */
export interface ParityResult {
  messageId: string;
  tenantId: string;
  mailboxId: string;
  legacyAction: MailAction | null;
  newAction: MailAction | null;
  newReason: string | null;
  result: ParityOutcome;
}

/** `unwantedmail.RolloutFlag` (compacted topic rollout-flags, key scope). */
export interface RolloutFlag {
  /** '*' (GLOBAL_FLAG_SCOPE) or a tenantId */
  scope: string;
  mode: RolloutMode;
  /** 0..100 */
  livePercent: number;
  updatedAt: number;
  updatedBy: string;
  reason: string;
}

/** `unwantedmail.TenantPolicy` (compacted topic tenant-policies). */
export interface TenantPolicy {
  tenantId: string;
  /** addresses (containing '@') or domains */
  allow: string[];
  /** addresses (containing '@') or domains */
  block: string[];
  /** null = DEFAULT_SPAM_THRESHOLD */
  spamThreshold: number | null;
  /** null = DEFAULT_BULK_THRESHOLD */
  bulkThreshold: number | null;
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

export const MS_PER_DAY = 24 * 60 * 60 * 1000;

/** §3 rule 1: spamScore >= this is JUNK, HIGH_CONFIDENCE_SPAM; nothing overrides it. */
export const HIGH_CONFIDENCE_SPAM_SCORE = 0.98;
/** §3 rule 5 default (TenantPolicy.spamThreshold null). */
export const DEFAULT_SPAM_THRESHOLD = 0.9;
/** §3 rule 6 default (TenantPolicy.bulkThreshold null). */
export const DEFAULT_BULK_THRESHOLD = 7;
/** §3 rule 6: bulkScore >= this with a List-Unsubscribe header is BULK (independent of the tenant). */
export const BULK_WITH_LIST_UNSUBSCRIBE_THRESHOLD = 5;

/** §3 rule 4: an inferred JUNK entry is live from this evidence. */
export const INFERRED_JUNK_LIVE_EVIDENCE = 2;
/** §3/§4: other inferred entries (SAFE) are live from this evidence. */
export const INFERRED_LIVE_EVIDENCE = 1;
/** §4: UNSUBSCRIBED makes an inferred JUNK entry with (at least) this evidence. */
export const UNSUBSCRIBE_EVIDENCE = 2;
/** Evidence stored on explicit entries (one direct user action). */
export const EXPLICIT_EVIDENCE = 1;

/** §4: message actions more than this after messageReceivedAt teach nothing. */
export const LEARNING_WINDOW_MS = 7 * MS_PER_DAY;
/** §4: the same (messageId, action) within this window teaches once (the caller's dedupe store). */
export const DEDUPE_WINDOW_MS = 7 * MS_PER_DAY;
/** §4: a same-verdict signal more than this after the entry's last signal restarts its evidence. */
export const EVIDENCE_RESTART_MS = 30 * MS_PER_DAY;
/** §4: inferred entries expire this long after their last signal. */
export const INFERRED_EXPIRY_MS = 90 * MS_PER_DAY;

/** §4: per-mailbox entry limits. */
export const MAX_ADDRESS_ENTRIES = 1024;
export const MAX_DOMAIN_ENTRIES = 256;
export const MAX_ENTRIES: Readonly<Record<EntryScope, number>> = {
  ADDRESS: MAX_ADDRESS_ENTRIES,
  DOMAIN: MAX_DOMAIN_ENTRIES,
};

/** §6: key of the global rollout flag. */
export const GLOBAL_FLAG_SCOPE = '*';
/** §6: mode of a tenant without a flag, unless configured otherwise. */
export const DEFAULT_ROLLOUT_MODE: RolloutMode = 'SHADOW';

/** §1: value schema (full Avro name) of each topic, topic names without prefix. */
export const TOPIC_VALUE_SCHEMAS = {
  'mail-events': 'unwantedmail.MailEvent',
  'user-interactions': 'unwantedmail.UserInteraction',
  'user-preferences': 'unwantedmail.UserPreferences',
  'legacy-decisions': 'unwantedmail.LegacyDecision',
  'mail-decisions': 'unwantedmail.Decision',
  'mail-decisions-shadow': 'unwantedmail.Decision',
  'parity-mismatches': 'unwantedmail.ParityResult',
  'rollout-flags': 'unwantedmail.RolloutFlag',
  'tenant-policies': 'unwantedmail.TenantPolicy',
} as const;
export type SchemaTopic = keyof typeof TOPIC_VALUE_SCHEMAS;

// ---------------------------------------------------------------------------------------------
// Small shared helpers
// ---------------------------------------------------------------------------------------------

/** Lower-cases and trims an address or domain key. */
export function normalizeKey(key: string): string {
  return key.trim().toLowerCase();
}

/**
 * The lower-cased domain of a sender: `senderDomain` when set, else the part of the address after
 * its last '@' (empty string if neither gives one).
 */
export function senderDomainOf(senderAddress: string, senderDomain: string): string {
  const d = normalizeKey(senderDomain);
  if (d !== '') return d;
  const a = normalizeKey(senderAddress);
  const at = a.lastIndexOf('@');
  return at >= 0 ? a.slice(at + 1) : '';
}

/** True when an entry has expired at `at` (expiry instant inclusive: not live from expiresAt on). */
export function isExpired(entry: PreferenceEntry, at: number): boolean {
  return entry.expiresAt !== null && at >= entry.expiresAt;
}

/**
 * §3: an entry is live at `at` when it has not expired and, for an inferred JUNK entry, its evidence
 * has reached 2. Other inferred entries need evidence >= 1 (a defensive floor; learning never writes
 * less). Explicit entries are live whatever their evidence.
 */
export function isLive(entry: PreferenceEntry, at: number): boolean {
  if (isExpired(entry, at)) return false;
  if (entry.source === 'INFERRED') {
    const needed = entry.verdict === 'JUNK' ? INFERRED_JUNK_LIVE_EVIDENCE : INFERRED_LIVE_EVIDENCE;
    return entry.evidence >= needed;
  }
  return true;
}
