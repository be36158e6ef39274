/**
 * Validation of input records beyond what the Avro schema enforces. A record that fails goes to
 * the dead-letter topic with the code and message (never with its content in the message).
 */
import { ProcessingError } from '../runtime/errors.js';
import type { MailEvent, UserInteraction } from './logic/model.js';

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
