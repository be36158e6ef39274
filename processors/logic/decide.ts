/**
 * §3 decision rules, as a pure function of (event, preferences, tenant policy). First match wins:
 *
 *   1. spamScore >= 0.98                                   JUNK        HIGH_CONFIDENCE_SPAM
 *   2. org block list: address entry, then domain entry    JUNK        ORG_BLOCK
 *   3. org allow list: address entry, then domain entry    INBOX       ORG_ALLOW
 *   4. user entry: live address entry, else live domain    SAFE→INBOX USER_SAFE (needs an auth PASS)
 *                                                          PROMOTIONS  USER_PROMOTIONS
 *                                                          JUNK        USER_JUNK
 *   5. spamScore >= tenant spam threshold (0.9)            JUNK        SPAM_SCORE
 *   6. bulkScore >= tenant bulk threshold (7),
 *      or bulkScore >= 5 with List-Unsubscribe             PROMOTIONS  BULK
 *   7. otherwise                                           INBOX       CLEAN
 *
 * Liveness is evaluated at the event's `receivedAt` (event time), never the wall clock, so a replay
 * decides the same. Addresses and domains are compared lower-cased and exactly (no subdomain
 * matching). Org list items containing '@' are addresses, the others domains (a leading '@' is
 * stripped: "@example.com" is the domain example.com).
 *
 * Preferences and policies are treated as immutable: their lookup indexes are built once per object
 * and cached in WeakMaps, so decide is O(1) per event after the first use of a record.
 */
import {
  BULK_WITH_LIST_UNSUBSCRIBE_THRESHOLD,
  DEFAULT_BULK_THRESHOLD,
  DEFAULT_SPAM_THRESHOLD,
  HIGH_CONFIDENCE_SPAM_SCORE,
  isLive,
  normalizeKey,
  senderDomainOf,
} from './model.js';
import type { DecisionReason, MailAction, MailEvent, PreferenceEntry, TenantPolicy, UserPreferences } from './model.js';

export interface DecideResult {
  action: MailAction;
  reason: DecisionReason;
  /** the org-list item or preference key that matched, null if the rule used none */
  matchedKey: string | null;
  /** prefs.version when the mailbox has a preferences record (even if no entry matched), else null */
  preferencesVersion: number | null;
}

// ---------------------------------------------------------------------------------------------
// Indexes
// ---------------------------------------------------------------------------------------------

export interface PreferenceIndex {
  /** the entries array the index was built from (a replaced array invalidates the cache) */
  readonly entries: readonly PreferenceEntry[];
  readonly address: ReadonlyMap<string, PreferenceEntry>;
  readonly domain: ReadonlyMap<string, PreferenceEntry>;
}

const preferenceIndexes = new WeakMap<UserPreferences, PreferenceIndex>();

/**
 * Lookup index of a preferences record: lower-cased key → entry, per scope. Built once per record
 * object (cached). If a record holds two entries for one (scope, key), which learning never writes,
 * the first one wins.
 */
export function preferenceIndex(prefs: UserPreferences): PreferenceIndex {
  const cached = preferenceIndexes.get(prefs);
  if (cached !== undefined && cached.entries === prefs.entries) return cached;
  const address = new Map<string, PreferenceEntry>();
  const domain = new Map<string, PreferenceEntry>();
  for (const entry of prefs.entries) {
    const map = entry.scope === 'DOMAIN' ? domain : address;
    const key = normalizeKey(entry.key);
    if (!map.has(key)) map.set(key, entry);
  }
  const index: PreferenceIndex = { entries: prefs.entries, address, domain };
  preferenceIndexes.set(prefs, index);
  return index;
}

export interface OrgListIndex {
  readonly allow: readonly string[];
  readonly block: readonly string[];
  /** normalized (lower-cased, leading '@' stripped) items */
  readonly allowSet: ReadonlySet<string>;
  readonly blockSet: ReadonlySet<string>;
}

const policyIndexes = new WeakMap<TenantPolicy, OrgListIndex>();

function normalizeOrgItem(item: string): string {
  const k = normalizeKey(item);
  return k.startsWith('@') ? k.slice(1) : k;
}

function toSet(items: readonly string[]): Set<string> {
  const s = new Set<string>();
  for (const item of items) {
    const k = normalizeOrgItem(item);
    if (k !== '') s.add(k);
  }
  return s;
}

/** Lookup index of a tenant policy's org lists, built once per policy object (cached). */
export function orgListIndex(policy: TenantPolicy): OrgListIndex {
  const cached = policyIndexes.get(policy);
  if (cached !== undefined && cached.allow === policy.allow && cached.block === policy.block) {
    return cached;
  }
  const index: OrgListIndex = {
    allow: policy.allow,
    block: policy.block,
    allowSet: toSet(policy.allow),
    blockSet: toSet(policy.block),
  };
  policyIndexes.set(policy, index);
  return index;
}

// ---------------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------------

function orgMatch(list: ReadonlySet<string>, address: string, domain: string): string | null {
  if (list.size === 0) return null;
  if (address !== '' && list.has(address)) return address;
  if (domain !== '' && list.has(domain)) return domain;
  return null;
}

/** §3 rule 4's applicable entry: the live address entry, else the live domain entry, else none. */
export function applicableEntry(
  prefs: UserPreferences,
  address: string,
  domain: string,
  at: number,
): PreferenceEntry | undefined {
  const index = preferenceIndex(prefs);
  const byAddress = address === '' ? undefined : index.address.get(address);
  if (byAddress !== undefined && isLive(byAddress, at)) return byAddress;
  const byDomain = domain === '' ? undefined : index.domain.get(domain);
  if (byDomain !== undefined && isLive(byDomain, at)) return byDomain;
  return undefined;
}

function authPassed(event: MailEvent): boolean {
  return event.spf === 'PASS' || event.dkim === 'PASS' || event.dmarc === 'PASS';
}

function result(
  action: MailAction,
  reason: DecisionReason,
  matchedKey: string | null,
  preferencesVersion: number | null,
): DecideResult {
  return { action, reason, matchedKey, preferencesVersion };
}

export function decide(
  event: MailEvent,
  prefs: UserPreferences | undefined,
  policy: TenantPolicy | undefined,
): DecideResult {
  const version = prefs === undefined ? null : prefs.version;

  // 1. High-confidence spam: nothing overrides it.
  if (event.spamScore >= HIGH_CONFIDENCE_SPAM_SCORE) {
    return result('JUNK', 'HIGH_CONFIDENCE_SPAM', null, version);
  }

  const address = normalizeKey(event.senderAddress);
  const domain = senderDomainOf(event.senderAddress, event.senderDomain);

  // 2./3. Org block, then org allow (address entry, then domain entry).
  if (policy !== undefined) {
    const org = orgListIndex(policy);
    const blocked = orgMatch(org.blockSet, address, domain);
    if (blocked !== null) return result('JUNK', 'ORG_BLOCK', blocked, version);
    const allowed = orgMatch(org.allowSet, address, domain);
    if (allowed !== null) return result('INBOX', 'ORG_ALLOW', allowed, version);
  }

  // 4. The user's entries, live at the event's receivedAt.
  if (prefs !== undefined && prefs.entries.length > 0) {
    const entry = applicableEntry(prefs, address, domain, event.receivedAt);
    if (entry !== undefined) {
      const key = normalizeKey(entry.key);
      switch (entry.verdict) {
        case 'SAFE':
          // A forged sender cannot borrow a user's trust: without any auth pass, fall through.
          if (authPassed(event)) return result('INBOX', 'USER_SAFE', key, version);
          break;
        case 'PROMOTIONS':
          return result('PROMOTIONS', 'USER_PROMOTIONS', key, version);
        case 'JUNK':
          return result('JUNK', 'USER_JUNK', key, version);
      }
    }
  }

  // 5. Spam score against the tenant's threshold.
  const spamThreshold = policy?.spamThreshold ?? DEFAULT_SPAM_THRESHOLD;
  if (event.spamScore >= spamThreshold) return result('JUNK', 'SPAM_SCORE', null, version);

  // 6. Bulk.
  const bulkThreshold = policy?.bulkThreshold ?? DEFAULT_BULK_THRESHOLD;
  if (
    event.bulkScore >= bulkThreshold ||
    (event.hasListUnsubscribe && event.bulkScore >= BULK_WITH_LIST_UNSUBSCRIBE_THRESHOLD)
  ) {
    return result('PROMOTIONS', 'BULK', null, version);
  }

  // 7. Clean.
  return result('INBOX', 'CLEAN', null, version);
}
