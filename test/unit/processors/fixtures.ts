import type {
  InteractionAction,
  MailEvent,
  PreferenceEntry,
  TenantPolicy,
  UserInteraction,
  UserPreferences,
} from '../../../processors/logic/index.js';
import { MS_PER_DAY } from '../../../processors/logic/index.js';

/** A fixed event time: 2025-01-15T00:00:00Z. Nothing in the logic may read the wall clock. */
export const T0 = Date.UTC(2025, 0, 15);
export const DAY = MS_PER_DAY;

export const TENANT = 'tenant-1';
export const MAILBOX = 'mbx-1';
export const ADDR = 'alice@example.com';
export const DOMAIN = 'example.com';

export function mail(overrides: Partial<MailEvent> = {}): MailEvent {
  return {
    eventId: 'ev-1',
    tenantId: TENANT,
    mailboxId: MAILBOX,
    messageId: 'msg-1',
    receivedAt: T0,
    senderAddress: ADDR,
    senderDomain: DOMAIN,
    spf: 'PASS',
    dkim: 'PASS',
    dmarc: 'PASS',
    spamScore: 0.1,
    bulkScore: 0,
    hasListUnsubscribe: false,
    ...overrides,
  };
}

/** An explicit entry by default; `inferred(...)` for inferred ones. */
export function entry(overrides: Partial<PreferenceEntry> = {}): PreferenceEntry {
  return {
    key: ADDR,
    scope: 'ADDRESS',
    verdict: 'SAFE',
    source: 'EXPLICIT',
    evidence: 1,
    firstSeenAt: T0 - 10 * DAY,
    updatedAt: T0 - 10 * DAY,
    expiresAt: null,
    ...overrides,
  };
}

export function inferred(overrides: Partial<PreferenceEntry> = {}): PreferenceEntry {
  const updatedAt = overrides.updatedAt ?? T0 - DAY;
  return entry({
    source: 'INFERRED',
    firstSeenAt: updatedAt,
    updatedAt,
    expiresAt: updatedAt + 90 * DAY,
    ...overrides,
  });
}

export function prefs(entries: PreferenceEntry[], version = 7): UserPreferences {
  return { mailboxId: MAILBOX, tenantId: TENANT, version, updatedAt: T0 - DAY, entries };
}

export function policy(overrides: Partial<TenantPolicy> = {}): TenantPolicy {
  return {
    tenantId: TENANT,
    allow: [],
    block: [],
    spamThreshold: null,
    bulkThreshold: null,
    ...overrides,
  };
}

export function interaction(action: InteractionAction, overrides: Partial<UserInteraction> = {}): UserInteraction {
  return {
    eventId: 'int-1',
    tenantId: TENANT,
    mailboxId: MAILBOX,
    messageId: 'msg-1',
    senderAddress: ADDR,
    senderDomain: DOMAIN,
    action,
    messageReceivedAt: T0 - DAY,
    occurredAt: T0,
    ...overrides,
  };
}

/** Freezes an object graph so that any mutation by the code under test throws. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
