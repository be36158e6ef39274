/**
 * Realistic synthetic traffic for the benchmarks and for `um start`'s demo.
 *
 * `Workload` is pure and deterministic for a seed (no I/O, no wall clock unless the caller passes
 * one): mail events for mailboxes chosen with a Zipf-like skew (a few very active mailboxes), from
 * three sender pools (about 60% clean, 25% bulk/promotional, 15% spam), the user interactions that
 * follow about 5% of them, pre-seeded preference records and tenant policies.
 *
 * `TrafficProducer` writes a workload through a real broker: key = mailboxId (or tenantId for the
 * policies), value = the topic's Avro serde (Confluent wire format), record timestamp = the event
 * time (receivedAt / occurredAt / updatedAt), acks = -1.
 *
 * The hot path (nextMail, maybeInteraction, produceBatch) avoids per-record allocations beyond the
 * record itself, its ids and its encoded value: mailbox and sender attributes are precomputed in
 * arrays, keys are cached Buffers, sampling is a binary search over a precomputed CDF.
 */
import { Partitioners, type Kafka, type Message, type Producer } from 'kafkajs';
import type { Logger } from 'pino';
import {
  MS_PER_DAY,
  type AuthResult,
  type InteractionAction,
  type MailEvent,
  type PreferenceEntry,
  type TenantPolicy,
  type UserInteraction,
  type UserPreferences,
  type Verdict,
} from '../processors/logic/model.js';
import type { MailSerdes } from '../topology/serdes.js';
import type { Topics } from '../topology/topics.js';

// ---------------------------------------------------------------------------------------------
// Options and small helpers
// ---------------------------------------------------------------------------------------------

export interface GeneratorOptions {
  /** tenants (organisations); default 20 */
  tenants?: number;
  /** mailboxes, spread over the tenants; default 20_000 */
  mailboxes?: number;
  /** senders per pool (clean, bulk, spam); default 1000 */
  senders?: number;
  /** PRNG seed; default 1 */
  seed?: number;
  /** event time base (epoch ms) when nextMail is called without `now`; default Date.now() */
  startTime?: number;
  /** Zipf exponent of mailbox activity; default 0.8 (the top 1% of mailboxes get about 30% of mail) */
  mailboxSkew?: number;
  /** share of mails followed by a user interaction; default 0.05 */
  interactionRate?: number;
}

export type SenderCategory = 'clean' | 'bulk' | 'spam';

/** Category mix of the sender pools. */
export const CATEGORY_MIX: Readonly<Record<SenderCategory, number>> = { clean: 0.6, bulk: 0.25, spam: 0.15 };

const CLEAN = 0;
const BULK = 1;
const SPAM = 2;
const CATEGORY_NAMES: readonly SenderCategory[] = ['clean', 'bulk', 'spam'];

/** mulberry32: a small, fast, good-enough 32-bit PRNG. Returns a function giving [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Cumulative weights of a Zipf(s) distribution over n ranks, normalised to end at 1. */
function zipfCdf(n: number, s: number): Float64Array {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) {
    sum += 1 / Math.pow(k + 1, s);
    cdf[k] = sum;
  }
  for (let k = 0; k < n; k++) cdf[k] = cdf[k]! / sum;
  return cdf;
}

/** The smallest index whose cumulative weight exceeds u (binary search). */
function sample(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cdf[mid]! > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function shuffle<T>(a: T[], rnd: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

function pick<T>(a: readonly T[], rnd: () => number): T {
  return a[Math.floor(rnd() * a.length)]!;
}

function round4(x: number): number {
  return Math.round(x * 10_000) / 10_000;
}

const FIRST = [
  'alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'nina',
  'oscar', 'peggy', 'quinn', 'rupert', 'sybil', 'trent', 'ursula', 'victor', 'wendy', 'xavier', 'yara', 'zoe',
  'maria', 'li', 'ahmed', 'sofia', 'lukas', 'emma', 'noah', 'mia', 'leon', 'hana', 'omar', 'anna',
]; // prettier-ignore
const LAST = [
  'smith', 'jones', 'garcia', 'muller', 'rossi', 'dubois', 'novak', 'kowalski', 'tanaka', 'kim', 'singh',
  'silva', 'jensen', 'nguyen', 'okafor', 'haddad', 'ivanova', 'larsen', 'costa', 'weber', 'schmidt', 'brown',
]; // prettier-ignore
const WORDS = [
  'acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark', 'wayne', 'wonka', 'tyrell', 'cyberdyne', 'soylent',
  'vandelay', 'dunder', 'pied', 'piper', 'massive', 'dynamic', 'blue', 'north', 'river', 'summit', 'cedar',
  'harbor', 'pixel', 'quantum', 'nova', 'atlas', 'orbit', 'delta', 'prime', 'vertex', 'alpine', 'coral',
]; // prettier-ignore
const TLDS = ['com', 'net', 'org', 'io', 'de', 'fr', 'co.uk', 'nl', 'eu'];
const WEBMAIL = ['gmail.com', 'outlook.com', 'yahoo.com', 'proton.me', 'icloud.com', 'gmx.de', 'web.de'];
const BULK_LOCAL = [
  'news',
  'newsletter',
  'deals',
  'offers',
  'info',
  'hello',
  'marketing',
  'noreply',
  'updates',
  'promo',
];
const BULK_SUB = ['', 'mail.', 'email.', 'news.', 'e.', 'mkt.'];
const SHOP = ['shop', 'store', 'outlet', 'market', 'deals', 'travel', 'fashion', 'tech', 'home', 'club'];
const SPAM_TLDS = ['biz', 'top', 'xyz', 'info', 'click', 'online', 'site', 'live', 'ru', 'cn'];
const SPAM_LOCAL = ['winner', 'support', 'security', 'account', 'billing', 'prize', 'admin', 'service', 'alert'];
const SYLL = ['ka', 'zo', 'ri', 'mex', 'tor', 'vin', 'lu', 'qua', 'xe', 'bro', 'fin', 'ply', 'dro', 'sen'];

/** Interaction actions by sender category, with weights (UserInteraction.action). */
const ACTIONS_BY_CATEGORY: readonly (readonly [InteractionAction, number][])[] = [
  // clean
  [
    ['REPLIED', 45],
    ['DELETED', 25],
    ['ALLOW_SENDER', 6],
    ['MOVED_TO_PROMOTIONS', 6],
    ['MOVED_TO_JUNK', 5],
    ['MOVED_TO_INBOX', 5],
    ['ALLOW_DOMAIN', 3],
    ['REPORTED_SPAM', 2],
    ['REMOVE_SENDER', 2],
    ['BLOCK_SENDER', 1],
  ],
  // bulk
  [
    ['MOVED_TO_PROMOTIONS', 33],
    ['UNSUBSCRIBED', 20],
    ['DELETED', 18],
    ['MOVED_TO_INBOX', 10],
    ['MOVED_TO_JUNK', 10],
    ['BLOCK_SENDER', 3],
    ['ALLOW_SENDER', 2],
    ['REPORTED_SPAM', 2],
    ['BLOCK_DOMAIN', 1],
    ['REMOVE_SENDER', 1],
  ],
  // spam
  [
    ['MOVED_TO_JUNK', 45],
    ['REPORTED_SPAM', 30],
    ['DELETED', 14],
    ['BLOCK_SENDER', 5],
    ['BLOCK_DOMAIN', 3],
    ['MARKED_NOT_SPAM', 2],
    ['REMOVE_DOMAIN', 1],
  ],
];

function weightedTable(items: readonly (readonly [InteractionAction, number])[]): {
  actions: InteractionAction[];
  cdf: Float64Array;
} {
  const total = items.reduce((n, [, w]) => n + w, 0);
  const cdf = new Float64Array(items.length);
  let sum = 0;
  items.forEach(([, w], i) => {
    sum += w;
    cdf[i] = sum / total;
  });
  return { actions: items.map(([a]) => a), cdf };
}

const ACTION_TABLES = ACTIONS_BY_CATEGORY.map(weightedTable);

/** Sender pool (struct of arrays). */
interface Pool {
  category: number;
  address: string[];
  domain: string[];
  spf: AuthResult[];
  dkim: AuthResult[];
  dmarc: AuthResult[];
  /** probability that a mail of this sender carries List-Unsubscribe */
  listUnsub: Float64Array;
  /** the sender's usual bulk complaint level */
  bulk: Uint8Array;
  cdf: Float64Array;
}

// ---------------------------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------------------------

export class Workload {
  readonly seed: number;
  readonly tenantIds: readonly string[];
  readonly mailboxIds: readonly string[];
  /** tenant index of each mailbox */
  readonly mailboxTenant: Uint16Array;
  private readonly pools: readonly Pool[];
  private readonly mailboxCdf: Float64Array;
  /** rank (by activity) → mailbox index */
  private readonly mailboxByRank: Uint32Array;
  private readonly senderCategory = new Map<string, number>();
  private readonly rnd: () => number;
  private readonly interactionRate: number;
  private readonly idPrefix: string;
  private seq = 0;
  private clock: number;

  constructor(opts: GeneratorOptions = {}) {
    const tenants = opts.tenants ?? 20;
    const mailboxes = opts.mailboxes ?? 20_000;
    const senders = opts.senders ?? 1000;
    if (!(tenants >= 1 && tenants <= 65_535)) throw new RangeError('tenants must be within 1..65535');
    if (!(mailboxes >= 1)) throw new RangeError('mailboxes must be >= 1');
    if (!(senders >= 10)) throw new RangeError('senders must be >= 10');
    this.seed = (opts.seed ?? 1) >>> 0;
    this.clock = opts.startTime ?? Date.now();
    this.interactionRate = opts.interactionRate ?? 0.05;
    this.idPrefix = this.seed.toString(36);
    const setup = prng(this.seed ^ 0x5eed5eed);

    this.tenantIds = Array.from({ length: tenants }, (_, i) => `tenant-${String(i + 1).padStart(3, '0')}`);
    // tenants of different sizes: mailbox → tenant by a mild Zipf
    const tenantCdf = zipfCdf(tenants, 0.7);
    const tenantPerm = shuffle(
      Array.from({ length: tenants }, (_, i) => i),
      setup,
    );
    this.mailboxTenant = new Uint16Array(mailboxes);
    const ids: string[] = new Array<string>(mailboxes);
    for (let i = 0; i < mailboxes; i++) {
      this.mailboxTenant[i] = tenantPerm[sample(tenantCdf, setup())]!;
      ids[i] = `mbx-${String(i + 1).padStart(7, '0')}`;
    }
    this.mailboxIds = ids;
    this.mailboxCdf = zipfCdf(mailboxes, opts.mailboxSkew ?? 0.8);
    this.mailboxByRank = Uint32Array.from(
      shuffle(
        Array.from({ length: mailboxes }, (_, i) => i),
        setup,
      ),
    );

    this.pools = [this.cleanPool(senders, setup), this.bulkPool(senders, setup), this.spamPool(senders, setup)];
    for (const p of this.pools) for (const a of p.address) this.senderCategory.set(a, p.category);
    this.rnd = prng(this.seed);
  }

  // -------------------------------------------------------------------------------------------
  // sender pools

  private newPool(category: number, n: number): Pool {
    return {
      category,
      address: [],
      domain: [],
      spf: [],
      dkim: [],
      dmarc: [],
      listUnsub: new Float64Array(n),
      bulk: new Uint8Array(n),
      cdf: zipfCdf(n, 0.8),
    };
  }

  private addSender(
    p: Pool,
    seen: Set<string>,
    local: string,
    domain: string,
    auth: [AuthResult, AuthResult, AuthResult],
    listUnsub: number,
    bulk: number,
  ): void {
    let address = `${local}@${domain}`.toLowerCase();
    for (let k = 2; seen.has(address); k++) address = `${local}${k}@${domain}`.toLowerCase();
    seen.add(address);
    const i = p.address.length;
    p.address.push(address);
    p.domain.push(domain.toLowerCase());
    p.spf.push(auth[0]);
    p.dkim.push(auth[1]);
    p.dmarc.push(auth[2]);
    p.listUnsub[i] = listUnsub;
    p.bulk[i] = bulk;
  }

  private cleanPool(n: number, r: () => number): Pool {
    const p = this.newPool(CLEAN, n);
    const seen = new Set<string>();
    const corporate = Array.from(
      { length: Math.max(5, Math.floor(n / 8)) },
      (_, i) => `${pick(WORDS, r)}${i % 3 === 0 ? '-' + pick(WORDS, r) : ''}.${pick(TLDS, r)}`,
    );
    for (let i = 0; i < n; i++) {
      const domain = r() < 0.3 ? pick(WEBMAIL, r) : pick(corporate, r);
      const u = r();
      // most clean senders authenticate fully; some have no DMARC or no DKIM
      const auth: [AuthResult, AuthResult, AuthResult] =
        u < 0.9 ? ['PASS', 'PASS', 'PASS'] : u < 0.97 ? ['PASS', 'PASS', 'NONE'] : ['PASS', 'NONE', 'NONE'];
      this.addSender(p, seen, `${pick(FIRST, r)}.${pick(LAST, r)}`, domain, auth, 0.03, r() < 0.8 ? 0 : 1);
    }
    return p;
  }

  private bulkPool(n: number, r: () => number): Pool {
    const p = this.newPool(BULK, n);
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const brand = `${pick(WORDS, r)}${pick(SHOP, r)}`;
      const domain = `${pick(BULK_SUB, r)}${brand}.${pick(TLDS, r)}`;
      const auth: [AuthResult, AuthResult, AuthResult] =
        r() < 0.92 ? ['PASS', 'PASS', 'PASS'] : ['PASS', 'PASS', 'NONE'];
      // many bulk senders carry List-Unsubscribe on (almost) every mail, some never
      const listUnsub = r() < 0.75 ? 0.95 : 0.1;
      this.addSender(p, seen, pick(BULK_LOCAL, r), domain, auth, listUnsub, 5 + Math.floor(r() * 5));
    }
    return p;
  }

  private spamPool(n: number, r: () => number): Pool {
    const p = this.newPool(SPAM, n);
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) {
      const u = r();
      let domain: string;
      let auth: [AuthResult, AuthResult, AuthResult];
      if (u < 0.2) {
        // spoofs a well-known domain: authentication fails
        domain = r() < 0.5 ? pick(WEBMAIL, r) : `${pick(WORDS, r)}.com`;
        auth = [r() < 0.7 ? 'FAIL' : 'NONE', r() < 0.8 ? 'FAIL' : 'NONE', 'FAIL'];
      } else {
        domain = `${pick(SYLL, r)}${pick(SYLL, r)}${Math.floor(r() * 1000)}.${pick(SPAM_TLDS, r)}`;
        // throw-away domains: often SPF only, sometimes nothing at all
        auth = r() < 0.6 ? ['PASS', 'NONE', 'NONE'] : r() < 0.5 ? ['NONE', 'NONE', 'NONE'] : ['PASS', 'PASS', 'NONE'];
      }
      const local = r() < 0.5 ? pick(SPAM_LOCAL, r) : `${pick(SYLL, r)}${pick(SYLL, r)}${Math.floor(r() * 100)}`;
      this.addSender(p, seen, local, domain, auth, 0.3, Math.floor(r() * 10));
    }
    return p;
  }

  // -------------------------------------------------------------------------------------------
  // traffic

  /** The sender category of an address generated by this workload (undefined for others). */
  categoryOf(senderAddress: string): SenderCategory | undefined {
    const c = this.senderCategory.get(senderAddress);
    return c === undefined ? undefined : CATEGORY_NAMES[c];
  }

  /** Index of the mailbox of the next mail (Zipf-like activity). */
  private nextMailbox(): number {
    return this.mailboxByRank[sample(this.mailboxCdf, this.rnd())]!;
  }

  /**
   * The next mail event, received at `now` (default: the workload's own clock, which starts at
   * `startTime` and advances 1 ms per mail).
   */
  nextMail(now?: number): MailEvent {
    const r = this.rnd;
    const receivedAt = now ?? this.clock++;
    const m = this.nextMailbox();
    const u = r();
    const cat = u < CATEGORY_MIX.clean ? CLEAN : u < CATEGORY_MIX.clean + CATEGORY_MIX.bulk ? BULK : SPAM;
    const p = this.pools[cat]!;
    const s = sample(p.cdf, r());
    let spamScore: number;
    let bulkScore: number;
    if (cat === CLEAN) {
      const x = r();
      spamScore = round4(x * x * x * 0.3);
      bulkScore = p.bulk[s]! + (r() < 0.1 ? 1 : 0);
    } else if (cat === BULK) {
      spamScore = round4(0.05 + r() * 0.5);
      bulkScore = Math.min(9, Math.max(5, p.bulk[s]! + Math.floor(r() * 3) - 1));
    } else {
      spamScore = r() < 0.85 ? round4(0.9 + r() * 0.1) : round4(0.5 + r() * 0.4);
      bulkScore = p.bulk[s]!;
    }
    const seq = (this.seq++).toString(36);
    const domain = p.domain[s]!;
    return {
      eventId: `m-${this.idPrefix}-${seq}`,
      tenantId: this.tenantIds[this.mailboxTenant[m]!]!,
      mailboxId: this.mailboxIds[m]!,
      messageId: `<${seq}.${this.idPrefix}@${domain}>`,
      receivedAt,
      senderAddress: p.address[s]!,
      senderDomain: domain,
      spf: p.spf[s]!,
      dkim: p.dkim[s]!,
      dmarc: p.dmarc[s]!,
      spamScore: spamScore > 1 ? 1 : spamScore,
      bulkScore,
      hasListUnsubscribe: r() < p.listUnsub[s]!,
    };
  }

  /**
   * About 5% of mails get a user interaction, with an action plausible for the sender's category,
   * a little (0.2 s to ~10 s) after the mail was received, or after `now` if that is later.
   */
  maybeInteraction(mail: MailEvent, now?: number): UserInteraction | undefined {
    const r = this.rnd;
    if (r() >= this.interactionRate) return undefined;
    let cat = this.senderCategory.get(mail.senderAddress);
    if (cat === undefined) cat = mail.spamScore >= 0.9 ? SPAM : mail.bulkScore >= 5 ? BULK : CLEAN;
    const t = ACTION_TABLES[cat]!;
    const action = t.actions[sample(t.cdf, r())]!;
    const delay = Math.round(200 * Math.pow(50, r())); // 200 ms .. 10 s, log-uniform
    const base = now !== undefined && now > mail.receivedAt ? now : mail.receivedAt;
    return {
      eventId: `i-${this.idPrefix}-${(this.seq++).toString(36)}`,
      tenantId: mail.tenantId,
      mailboxId: mail.mailboxId,
      messageId: mail.messageId,
      senderAddress: mail.senderAddress,
      senderDomain: mail.senderDomain,
      action,
      messageReceivedAt: mail.receivedAt,
      occurredAt: base + delay,
    };
  }

  // -------------------------------------------------------------------------------------------
  // tables

  /**
   * Preference records (version 1) for about `fraction` of the mailboxes, as of `at`: 3 to 8
   * entries each (explicit SAFE/PROMOTIONS/JUNK addresses, explicit SAFE/JUNK domains, inferred
   * SAFE/JUNK addresses with evidence and expiresAt). Deterministic for (seed, fraction, at).
   */
  seedPreferences(fraction: number, at: number): UserPreferences[] {
    const r = prng(this.seed ^ 0x9fe5);
    const out: UserPreferences[] = [];
    for (let m = 0; m < this.mailboxIds.length; m++) {
      if (r() >= fraction) continue;
      out.push(this.preferencesFor(this.mailboxIds[m]!, this.tenantIds[this.mailboxTenant[m]!]!, 1, at, r));
    }
    return out;
  }

  /**
   * `count` preference records for a restore benchmark: `distinctKeys` mailboxes (`rmbx-<n>`),
   * record i for mailbox i mod distinctKeys with version ⌊i / distinctKeys⌋ + 1.
   */
  *restorePreferences(count: number, distinctKeys: number, at: number): Generator<UserPreferences> {
    const r = prng(this.seed ^ 0x7e57);
    const d = Math.max(1, Math.min(distinctKeys, count));
    for (let i = 0; i < count; i++) {
      const k = i % d;
      yield this.preferencesFor(
        `rmbx-${String(k).padStart(7, '0')}`,
        this.tenantIds[k % this.tenantIds.length]!,
        Math.floor(i / d) + 1,
        at,
        r,
      );
    }
  }

  /**
   * One preference record (version 1) for EVERY mailbox of the workload, in mailbox order, with
   * `entriesMin`..`entriesMax` entries each (default 3..8), as of `at`. A generator: a million
   * records are never held at once. Deterministic for (seed, at, entriesMin, entriesMax).
   */
  *allPreferences(at: number, entriesMin = 3, entriesMax = 8): Generator<UserPreferences> {
    if (!(entriesMin >= 1 && entriesMax >= entriesMin)) throw new RangeError('need 1 <= entriesMin <= entriesMax');
    const r = prng(this.seed ^ 0x4a11);
    for (let m = 0; m < this.mailboxIds.length; m++)
      yield this.preferencesFor(this.mailboxIds[m]!, this.tenantIds[this.mailboxTenant[m]!]!, 1, at, r, {
        min: entriesMin,
        max: entriesMax,
      });
  }

  /** One valid UserPreferences record (§4) with 3..8 entries (or `entries.min`..`entries.max`). */
  preferencesFor(
    mailboxId: string,
    tenantId: string,
    version: number,
    at: number,
    r: () => number,
    entries: { min: number; max: number } = { min: 3, max: 8 },
  ): UserPreferences {
    const n = entries.min + Math.floor(r() * (entries.max - entries.min + 1));
    const list: PreferenceEntry[] = [];
    const keys = new Set<string>();
    let updatedAt = 0;
    for (let tries = 0; list.length < n && tries < n * 4; tries++) {
      const u = r();
      let e: PreferenceEntry;
      if (u < 0.35) {
        // explicit address entry
        const v = r();
        const verdict: Verdict = v < 0.5 ? 'SAFE' : v < 0.75 ? 'PROMOTIONS' : 'JUNK';
        const p = this.pools[verdict === 'SAFE' ? CLEAN : verdict === 'PROMOTIONS' ? BULK : r() < 0.7 ? SPAM : BULK]!;
        const t = at - Math.floor(r() * 365 * MS_PER_DAY);
        e = this.entry(p.address[sample(p.cdf, r())]!, 'ADDRESS', verdict, 'EXPLICIT', 1, t, t, null);
      } else if (u < 0.5) {
        // explicit domain entry (ALLOW_DOMAIN / BLOCK_DOMAIN)
        const safe = r() < 0.6;
        const p = this.pools[safe ? CLEAN : SPAM]!;
        const t = at - Math.floor(r() * 365 * MS_PER_DAY);
        e = this.entry(p.domain[sample(p.cdf, r())]!, 'DOMAIN', safe ? 'SAFE' : 'JUNK', 'EXPLICIT', 1, t, t, null);
      } else {
        // inferred address entry: REPLIED → SAFE; MOVED_TO_JUNK / REPORTED_SPAM / UNSUBSCRIBED → JUNK
        const safe = r() < 0.45;
        const p = this.pools[safe ? CLEAN : r() < 0.5 ? SPAM : BULK]!;
        const last = at - Math.floor(r() * 60 * MS_PER_DAY);
        const first = last - Math.floor(r() * 25 * MS_PER_DAY);
        const evidence = 1 + Math.floor(r() * 4);
        e = this.entry(
          p.address[sample(p.cdf, r())]!,
          'ADDRESS',
          safe ? 'SAFE' : 'JUNK',
          'INFERRED',
          evidence,
          evidence === 1 ? last : first,
          last,
          last + 90 * MS_PER_DAY,
        );
      }
      const k = `${e.scope}:${e.key}`;
      if (keys.has(k)) continue;
      keys.add(k);
      list.push(e);
      if (e.updatedAt > updatedAt) updatedAt = e.updatedAt;
    }
    return { mailboxId, tenantId, version, updatedAt: Math.max(updatedAt, at), entries: list };
  }

  private entry(
    key: string,
    scope: PreferenceEntry['scope'],
    verdict: Verdict,
    source: PreferenceEntry['source'],
    evidence: number,
    firstSeenAt: number,
    updatedAt: number,
    expiresAt: number | null,
  ): PreferenceEntry {
    return { key, scope, verdict, source, evidence, firstSeenAt, updatedAt, expiresAt };
  }

  /**
   * One policy per tenant: an allow list of a few partner (clean, corporate) domains and
   * addresses, a block list of spam domains and addresses, custom thresholds for some tenants.
   */
  tenantPolicies(): TenantPolicy[] {
    const r = prng(this.seed ^ 0x7e4a);
    const clean = this.pools[CLEAN]!;
    const spam = this.pools[SPAM]!;
    return this.tenantIds.map((tenantId) => {
      const allow = new Set<string>();
      const block = new Set<string>();
      const nAllow = 1 + Math.floor(r() * 3);
      for (let i = 0; i < nAllow * 3 && allow.size < nAllow; i++) {
        const s = Math.floor(r() * clean.address.length);
        const d = clean.domain[s]!;
        if (WEBMAIL.includes(d)) continue; // never allow a whole webmail provider
        allow.add(r() < 0.7 ? d : clean.address[s]!);
      }
      const nBlock = 2 + Math.floor(r() * 4);
      for (let i = 0; i < nBlock * 3 && block.size < nBlock; i++) {
        const s = Math.floor(r() * spam.address.length);
        const d = spam.domain[s]!;
        if (WEBMAIL.includes(d)) block.add(spam.address[s]!);
        else block.add(r() < 0.6 ? d : spam.address[s]!);
      }
      const custom = r() < 0.3;
      return {
        tenantId,
        allow: [...allow],
        block: [...block],
        spamThreshold: custom ? Math.round((0.8 + r() * 0.15) * 100) / 100 : null,
        bulkThreshold: custom ? 5 + Math.floor(r() * 4) : null,
      };
    });
  }
}

// ---------------------------------------------------------------------------------------------
// TrafficProducer
// ---------------------------------------------------------------------------------------------

export interface TrafficProducerOptions {
  kafka: Kafka;
  serdes: Pick<MailSerdes, 'mailEvents' | 'userInteractions' | 'userPreferences' | 'tenantPolicies'>;
  topics: Pick<Topics, 'mailEvents' | 'userInteractions' | 'userPreferences' | 'tenantPolicies'>;
  workload: Workload;
  logger?: Logger;
}

export interface TrafficStats {
  mails: number;
  interactions: number;
  batches: number;
  errors: number;
  /** mail events per second since start() (0 before) */
  ratePerSec: number;
  running: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

/**
 * How the paced loop of `TrafficProducer.start` batches: one sendBatch every `tickMs` (higher rates:
 * shorter ticks so batches stay small; at most 50 ms between batches), at most `maxBatch` mails each.
 */
export function pacing(ratePerSec: number): { tickMs: number; maxBatch: number } {
  if (!(ratePerSec > 0)) throw new RangeError('ratePerSec must be > 0');
  return {
    tickMs: Math.max(10, Math.min(50, Math.round(20_000 / ratePerSec))),
    maxBatch: Math.max(1, Math.ceil(ratePerSec / 5)),
  };
}

/**
 * The producer settings that shape latency, as `TrafficProducer.start(ratePerSec)` uses them. kafkajs
 * has no linger.ms or batch.size: every sendBatch call is one produce request sent at once, so the
 * "linger" is the pacing tick and the "batch" is the mails produced per tick.
 */
export function producerSettings(ratePerSec: number): {
  client: string;
  acks: number;
  lingerMs: number;
  batchMails: number;
  batchEveryMs: number;
  compression: string;
  idempotent: boolean;
  partitioner: string;
} {
  const { tickMs } = pacing(ratePerSec);
  return {
    client: 'kafkajs',
    acks: -1,
    lingerMs: 0,
    // credit accrues per tick: about rate * tick / 1000 mails per request
    batchMails: Math.max(1, Math.round((ratePerSec * tickMs) / 1000)),
    batchEveryMs: tickMs,
    compression: 'none',
    idempotent: false,
    partitioner: 'murmur2 (DefaultPartitioner), key = mailboxId',
  };
}

/** Produces a workload through a real broker (acks=-1, Avro via the serdes). */
export class TrafficProducer {
  private readonly o: TrafficProducerOptions;
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  private readonly keys = new Map<string, Buffer>();
  private loop: Promise<void> | undefined;
  private running = false;
  private startedAt = 0;
  private stoppedAt = 0;
  private mailsAtStart = 0;
  readonly stats = { mails: 0, interactions: 0, batches: 0, errors: 0 };

  constructor(opts: TrafficProducerOptions) {
    this.o = opts;
  }

  private connect(): Promise<Producer> {
    this.connecting ??= (async () => {
      const s = this.o.serdes;
      await Promise.all([
        s.mailEvents.init(),
        s.userInteractions.init(),
        s.userPreferences.init(),
        s.tenantPolicies.init(),
      ]);
      const p = this.o.kafka.producer({
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
        retry: { retries: 5 },
      });
      await p.connect();
      this.producer = p;
      return p;
    })().catch((e: unknown) => {
      this.connecting = undefined;
      throw e;
    });
    return this.connecting;
  }

  private key(k: string): Buffer {
    let b = this.keys.get(k);
    if (!b) {
      b = Buffer.from(k, 'utf8');
      if (this.keys.size < 1_000_000) this.keys.set(k, b);
    }
    return b;
  }

  /** Produces the tenant policies and preference records for `fraction` of the mailboxes. */
  async seed(fraction: number, at = Date.now()): Promise<{ preferences: number; policies: number }> {
    const p = await this.connect();
    const { serdes, topics, workload } = this.o;
    const policies = workload.tenantPolicies();
    await p.send({
      topic: topics.tenantPolicies,
      acks: -1,
      messages: policies.map((t) => ({
        key: t.tenantId,
        value: serdes.tenantPolicies.serialize(topics.tenantPolicies, t),
        timestamp: String(at),
      })),
    });
    const prefs = workload.seedPreferences(fraction, at);
    await this.producePreferences(prefs);
    this.o.logger?.info({ preferences: prefs.length, policies: policies.length }, 'traffic: tables seeded');
    return { preferences: prefs.length, policies: policies.length };
  }

  /**
   * Produces preference records (key mailboxId, timestamp updatedAt) in batches of `batchSize`,
   * with up to `inFlight` requests outstanding.
   */
  async producePreferences(
    records: Iterable<UserPreferences>,
    opts: { batchSize?: number; inFlight?: number; onProgress?: (n: number, bytes: number) => void } = {},
  ): Promise<{ records: number; bytes: number }> {
    const p = await this.connect();
    const { serdes, topics } = this.o;
    const topic = topics.userPreferences;
    const batchSize = opts.batchSize ?? 5000;
    const inFlight = opts.inFlight ?? 4;
    const pending = new Set<Promise<unknown>>();
    let batch: Message[] = [];
    let n = 0;
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (!batch.length) return;
      const msgs = batch;
      batch = [];
      const req = p.send({ topic, acks: -1, messages: msgs });
      pending.add(req);
      void req.finally(() => pending.delete(req)).catch(() => undefined);
      if (pending.size >= inFlight) await Promise.race(pending);
    };
    for (const rec of records) {
      const value = serdes.userPreferences.serialize(topic, rec);
      bytes += value.length;
      batch.push({ key: Buffer.from(rec.mailboxId, 'utf8'), value, timestamp: String(rec.updatedAt) });
      n++;
      if (batch.length >= batchSize) {
        await flush();
        opts.onProgress?.(n, bytes);
      }
    }
    await flush();
    await Promise.all(pending);
    opts.onProgress?.(n, bytes);
    return { records: n, bytes };
  }

  /**
   * One sendBatch of `n` mail events (received at `now`, default the wall clock) and the
   * interactions that follow some of them. acks=-1.
   */
  async produceBatch(n: number, now: number = Date.now()): Promise<{ mails: number; interactions: number }> {
    const p = this.producer ?? (await this.connect());
    const { serdes, topics, workload } = this.o;
    const mails: Message[] = new Array<Message>(n);
    const interactions: Message[] = [];
    const ts = String(now);
    for (let i = 0; i < n; i++) {
      const m = workload.nextMail(now);
      mails[i] = {
        key: this.key(m.mailboxId),
        value: serdes.mailEvents.serialize(topics.mailEvents, m),
        timestamp: ts,
      };
      const it = workload.maybeInteraction(m, now);
      if (it)
        interactions.push({
          key: this.key(it.mailboxId),
          value: serdes.userInteractions.serialize(topics.userInteractions, it),
          timestamp: String(it.occurredAt),
        });
    }
    const topicMessages = [{ topic: topics.mailEvents, messages: mails }];
    if (interactions.length) topicMessages.push({ topic: topics.userInteractions, messages: interactions });
    await p.sendBatch({ acks: -1, topicMessages });
    this.stats.mails += n;
    this.stats.interactions += interactions.length;
    this.stats.batches++;
    return { mails: n, interactions: interactions.length };
  }

  /**
   * Produces `total` mail events (plus interactions) as fast as possible: batches of `batchSize`
   * with up to `inFlight` outstanding.
   */
  async produceMany(
    total: number,
    opts: { batchSize?: number; inFlight?: number; onProgress?: (mails: number) => void } = {},
  ): Promise<{ mails: number; interactions: number }> {
    await this.connect();
    const batchSize = opts.batchSize ?? 2000;
    const inFlight = opts.inFlight ?? 4;
    const pending = new Set<Promise<unknown>>();
    let mails = 0;
    let interactions = 0;
    for (let done = 0; done < total;) {
      const n = Math.min(batchSize, total - done);
      done += n;
      const req = this.produceBatch(n).then((r) => {
        mails += r.mails;
        interactions += r.interactions;
        opts.onProgress?.(mails);
      });
      pending.add(req);
      void req.finally(() => pending.delete(req)).catch(() => undefined);
      if (pending.size >= inFlight) await Promise.race(pending);
    }
    await Promise.all(pending);
    return { mails, interactions };
  }

  /**
   * Starts a paced loop producing about `ratePerSec` mail events per second (plus their
   * interactions), in batches every ~10–50 ms, with receivedAt = the wall clock at produce time.
   */
  start(ratePerSec: number): void {
    if (this.loop) throw new Error('traffic producer already started');
    if (!(ratePerSec > 0)) throw new RangeError('ratePerSec must be > 0');
    this.running = true;
    this.startedAt = performance.now();
    this.stoppedAt = 0;
    this.mailsAtStart = this.stats.mails;
    const { tickMs, maxBatch } = pacing(ratePerSec);
    this.loop = (async () => {
      await this.connect();
      let due = 0;
      let last = performance.now();
      while (this.running) {
        const t = performance.now();
        // credit accrues with time; a backlog beyond one second is dropped, not burst out
        due = Math.min(due + ((t - last) * ratePerSec) / 1000, ratePerSec);
        last = t;
        const n = Math.min(Math.floor(due), maxBatch);
        if (n > 0) {
          due -= n;
          try {
            await this.produceBatch(n);
          } catch (e) {
            this.stats.errors++;
            this.o.logger?.warn({ err: (e as Error).message }, 'traffic: produce failed');
            await sleep(500);
          }
        }
        const spent = performance.now() - t;
        if (this.running) await sleep(Math.max(1, tickMs - spent));
      }
    })();
  }

  /** Stops the paced loop (if any) and disconnects the producer. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.loop) {
      await this.loop.catch((e: unknown) =>
        this.o.logger?.warn({ err: (e as Error).message }, 'traffic: loop ended with an error'),
      );
      this.loop = undefined;
      this.stoppedAt = performance.now();
    }
    const p = this.producer;
    this.producer = undefined;
    this.connecting = undefined;
    await p?.disconnect();
  }

  /** Produced counts and the paced rate (mail events/s since start()). */
  getStats(): TrafficStats {
    const end = this.stoppedAt || performance.now();
    const secs = this.startedAt ? (end - this.startedAt) / 1000 : 0;
    return {
      ...this.stats,
      ratePerSec: secs > 0 ? (this.stats.mails - this.mailsAtStart) / secs : 0,
      running: this.running,
    };
  }
}
