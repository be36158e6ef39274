/**
 * Validation of input records beyond what the Avro schema enforces. A record that fails goes to
 * the dead-letter topic with the code and message (never with its content in the message).
 */
import { ProcessingError } from '../runtime/errors.js';
import type { MailEvent, RolloutFlag, TenantPolicy, UserInteraction } from './logic/model.js';

function fail(code: string, message: string): never {
  throw new ProcessingError(code, message);
}

export function validateKey(recordKey: unknown, mailboxId: string): void {
  if (recordKey !== mailboxId)
    fail('KEY_MISMATCH', 'record key is not the mailboxId of the value (the record is on the wrong partition)');
}

export function validateMailEvent(key: unknown, e: MailEvent): void {
  validateKey(key, e.mailboxId);
  if (!e.eventId || !e.messageId || !e.tenantId || !e.mailboxId)
    fail('MISSING_ID', 'eventId, messageId, tenantId and mailboxId are required');
  if (!(e.spamScore >= 0 && e.spamScore <= 1))
    fail('SPAM_SCORE_RANGE', `spamScore must be within 0..1, got ${e.spamScore}`);
  if (!Number.isInteger(e.bulkScore) || e.bulkScore < 0 || e.bulkScore > 9)
    fail('BULK_SCORE_RANGE', `bulkScore must be an integer within 0..9, got ${e.bulkScore}`);
  if (!(e.receivedAt > 0)) fail('RECEIVED_AT', 'receivedAt must be a positive timestamp');
}

export function validateInteraction(key: unknown, i: UserInteraction): void {
  validateKey(key, i.mailboxId);
  if (!i.eventId || !i.tenantId || !i.mailboxId) fail('MISSING_ID', 'eventId, tenantId and mailboxId are required');
  if (!(i.occurredAt > 0)) fail('OCCURRED_AT', 'occurredAt must be a positive timestamp');
}

const MAX_POLICY_ENTRIES = 100_000;

/** An allow or block entry: an address (local@domain) or a domain, no spaces, at most 320 characters. */
function validEntry(e: unknown): boolean {
  return typeof e === 'string' && e.length > 0 && e.length <= 320 && !/\s/.test(e) && !/^@|@$/.test(e);
}

/**
 * A tenant policy a decision may rely on (codes POLICY_*). A `spamThreshold` outside (0, 1] would
 * send every mail of the tenant to Junk (or none); a `bulkThreshold` outside 1..10 likewise.
 */
export function validateTenantPolicy(p: TenantPolicy): void {
  if (!p.tenantId) fail('POLICY_TENANT_ID', 'tenantId is required');
  if (p.spamThreshold !== null && !(Number.isFinite(p.spamThreshold) && p.spamThreshold > 0 && p.spamThreshold <= 1))
    fail('POLICY_SPAM_THRESHOLD', `spamThreshold must be null or within (0, 1], got ${p.spamThreshold}`);
  if (p.bulkThreshold !== null && !(Number.isInteger(p.bulkThreshold) && p.bulkThreshold >= 1 && p.bulkThreshold <= 10))
    fail('POLICY_BULK_THRESHOLD', `bulkThreshold must be null or an integer within 1..10, got ${p.bulkThreshold}`);
  for (const list of ['allow', 'block'] as const) {
    const entries = p[list];
    if (!Array.isArray(entries) || entries.length > MAX_POLICY_ENTRIES)
      fail('POLICY_LIST', `${list} must be a list of at most ${MAX_POLICY_ENTRIES} entries`);
    const bad = entries.findIndex((e) => !validEntry(e));
    if (bad >= 0) fail('POLICY_LIST', `${list}[${bad}] is not an address or a domain`);
  }
}

/** A rollout flag a decision may rely on (codes FLAG_*). */
export function validateRolloutFlag(f: RolloutFlag): void {
  if (!f.scope) fail('FLAG_SCOPE', 'scope is required ("*" or a tenantId)');
  if (!['OFF', 'SHADOW', 'LIVE'].includes(f.mode)) fail('FLAG_MODE', `mode must be OFF, SHADOW or LIVE`);
  if (!(Number.isInteger(f.livePercent) && f.livePercent >= 0 && f.livePercent <= 100))
    fail('FLAG_LIVE_PERCENT', `livePercent must be an integer within 0..100, got ${f.livePercent}`);
  if (!(f.updatedAt > 0)) fail('FLAG_UPDATED_AT', 'updatedAt must be a positive timestamp');
}
