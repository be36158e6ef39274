/**
 * Seeded, deterministic input for the engine-correctness tests (issue 7): mail events, user
 * interactions, a few seeded `user-preferences` records and tenant policies, over several tenants
 * and mailboxes. Built so that the order of processing matters: most mail comes from a handful of
 * senders per mailbox, interactions change those senders' verdicts (explicit moves, inferred
 * signals, list edits, retries that must be deduplicated, moves more than 7 days late), some
 * interactions carry exactly the timestamp of a later mail of the same mailbox (the tie rule), and
 * the mailboxes with a seeded preference record only start receiving mail after it.
 *
 * Record timestamps are the event times (`receivedAt`, `occurredAt`, the seeded record's
 * `updatedAt`). Mail and interaction times are whole seconds; seeded records sit on an odd
 * millisecond, so they never tie with anything.
 */
import { prng } from '../../demo/traffic.js';
import {
  MS_PER_DAY,
  type AuthResult,
  type InteractionAction,
  type MailEvent,
  type PreferenceEntry,
  type TenantPolicy,
  type UserInteraction,
  type UserPreferences,
} from '../../processors/logic/model.js';

const HOUR = 3_600_000;
const MINUTE = 60_000;
const SECOND = 1000;

/** A seeded preference record and the timestamp it is produced with. */
export interface SeededPreferences {
  value: UserPreferences;
  timestamp: number;
}

export interface BatchScenario {
  policies: TenantPolicy[];
  seeded: SeededPreferences[];
  /** ascending receivedAt */
  mails: MailEvent[];
  /** ascending occurredAt */
  interactions: UserInteraction[];
}

const DOMAINS = [
  'news.example',
  'shop.example',
  'deals.example',
  'corp0.example',
  'friends.example',
  'junk.example',
  'blocked.example',
  'partner.example',
  'social.example',
  'bank.example',
  'travel.example',
  'forum.example',
];
const LOCALS = ['info', 'hello', 'offers', 'team', 'noreply', 'ceo', 'spam-king', 'alerts'];

const MESSAGE_ACTIONS: [InteractionAction, number][] = [
  ['MOVED_TO_INBOX', 14],
  ['MOVED_TO_PROMOTIONS', 16],
  ['MOVED_TO_JUNK', 16],
  ['REPORTED_SPAM', 10],
  ['MARKED_NOT_SPAM', 8],
  ['UNSUBSCRIBED', 8],
  ['REPLIED', 16],
  ['DELETED', 12],
];
const LIST_EDITS: [InteractionAction, number][] = [
  ['ALLOW_SENDER', 10],
  ['BLOCK_SENDER', 10],
  ['ALLOW_DOMAIN', 5],
  ['BLOCK_DOMAIN', 5],
  ['REMOVE_SENDER', 8],
  ['REMOVE_DOMAIN', 4],
];

function weighted<T>(items: [T, number][], r: number): T {
  const total = items.reduce((n, [, w]) => n + w, 0);
  let u = r * total;
  for (const [v, w] of items) {
    if (u < w) return v;
    u -= w;
  }
  return items[items.length - 1]![0];
}

/** The tenant policies of the scenarios: allow/block lists and thresholds on some tenants. */
export function scenarioPolicies(tenants: number): TenantPolicy[] {
  const all: TenantPolicy[] = [
    {
      tenantId: 't0',
      allow: ['ceo@corp0.example'],
      block: ['blocked.example'],
      spamThreshold: null,
      bulkThreshold: null,
    },
    { tenantId: 't1', allow: [], block: [], spamThreshold: 0.8, bulkThreshold: 6 },
    {
      tenantId: 't2',
      allow: ['partner.example'],
      block: ['spam-king@junk.example'],
      spamThreshold: null,
      bulkThreshold: 8,
    },
  ];
  return all.filter((p) => Number(p.tenantId.slice(1)) < tenants);
}

interface Mailbox {
  id: string;
  tenantId: string;
  senders: string[];
  /** first event time of the mailbox */
  joinAt: number;
}

/** Senders of one mailbox: a few favourites get most of its mail. */
function mailboxSenders(rnd: () => number): string[] {
  const out = new Set<string>();
  while (out.size < 8) {
    const d = DOMAINS[Math.floor(rnd() * DOMAINS.length)]!;
    const l = LOCALS[Math.floor(rnd() * LOCALS.length)]!;
    out.add(`${l}@${d}`);
  }
  return [...out];
}

function pickSender(senders: string[], rnd: () => number): string {
  // favourites: the first three senders get about 70% of the mail
  const r = rnd();
  if (r < 0.7) return senders[Math.floor(rnd() * 3)]!;
  return senders[Math.floor(rnd() * senders.length)]!;
}

function auth(rnd: () => number): { spf: AuthResult; dkim: AuthResult; dmarc: AuthResult } {
  const r = rnd();
  if (r < 0.85) return { spf: 'PASS', dkim: 'PASS', dmarc: 'PASS' };
  if (r < 0.95) return { spf: 'FAIL', dkim: 'NONE', dmarc: 'FAIL' };
  return { spf: 'FAIL', dkim: 'PASS', dmarc: 'NONE' };
}

function scores(rnd: () => number): { spamScore: number; bulkScore: number; hasListUnsubscribe: boolean } {
  const r = rnd();
  const spamScore =
    r < 0.8
      ? Math.round(rnd() * 5000) / 10_000
      : r < 0.9
        ? 0.82 + Math.round(rnd() * 150) / 10_000
        : r < 0.95
          ? 0.9 + Math.round(rnd() * 700) / 10_000
          : 0.98 + Math.round(rnd() * 200) / 10_000;
  const bulkScore = Math.floor(rnd() * 10);
  return { spamScore, bulkScore, hasListUnsubscribe: rnd() < 0.4 };
}

function domainOf(address: string): string {
  return address.slice(address.indexOf('@') + 1);
}

export function newMail(mb: Mailbox, sender: string, receivedAt: number, id: string, rnd: () => number): MailEvent {
  return {
    eventId: `${id}-e`,
    tenantId: mb.tenantId,
    mailboxId: mb.id,
    messageId: `${id}-msg`,
    receivedAt,
    senderAddress: sender,
    senderDomain: domainOf(sender),
    ...auth(rnd),
    ...scores(rnd),
  };
}

function messageInteraction(
  m: MailEvent,
  action: InteractionAction,
  occurredAt: number,
  eventId: string,
): UserInteraction {
  return {
    eventId,
    tenantId: m.tenantId,
    mailboxId: m.mailboxId,
    messageId: m.messageId,
    senderAddress: m.senderAddress,
    senderDomain: m.senderDomain,
    action,
    messageReceivedAt: m.receivedAt,
    occurredAt,
  };
}

function listEdit(
  mb: Mailbox,
  sender: string,
  action: InteractionAction,
  occurredAt: number,
  eventId: string,
): UserInteraction {
  return {
    eventId,
    tenantId: mb.tenantId,
    mailboxId: mb.id,
    messageId: '',
    senderAddress: sender,
    senderDomain: domainOf(sender),
    action,
    messageReceivedAt: occurredAt,
    occurredAt,
  };
}

/** A seeded record for a mailbox: explicit and inferred entries for some of its senders. */
function seededRecord(mb: Mailbox, at: number, rnd: () => number): UserPreferences {
  const entries: PreferenceEntry[] = [];
  const n = 2 + Math.floor(rnd() * 3);
  for (let i = 0; i < n; i++) {
    const sender = mb.senders[i]!;
    const updatedAt = at - Math.floor(rnd() * 20) * MS_PER_DAY - HOUR;
    if (i === 3) {
      entries.push({
        key: domainOf(sender),
        scope: 'DOMAIN',
        verdict: 'JUNK',
        source: 'EXPLICIT',
        evidence: 1,
        firstSeenAt: updatedAt,
        updatedAt,
        expiresAt: null,
      });
    } else if (rnd() < 0.5) {
      entries.push({
        key: sender,
        scope: 'ADDRESS',
        verdict: (['SAFE', 'PROMOTIONS', 'JUNK'] as const)[Math.floor(rnd() * 3)]!,
        source: 'EXPLICIT',
        evidence: 1,
        firstSeenAt: updatedAt,
        updatedAt,
        expiresAt: null,
      });
    } else {
      const verdict = rnd() < 0.5 ? 'JUNK' : 'SAFE';
      entries.push({
        key: sender,
        scope: 'ADDRESS',
        verdict,
        source: 'INFERRED',
        evidence: 1 + Math.floor(rnd() * 3),
        firstSeenAt: updatedAt - MS_PER_DAY,
        updatedAt,
        expiresAt: updatedAt + 90 * MS_PER_DAY,
      });
    }
  }
  return { mailboxId: mb.id, tenantId: mb.tenantId, version: 3 + Math.floor(rnd() * 5), updatedAt: at, entries };
}

export interface BatchScenarioOptions {
  seed: number;
  tenants?: number;
  mailboxes?: number;
  mails?: number;
  interactions?: number;
  /** mailboxes with a seeded preference record (they join later) */
  seededMailboxes?: number;
  /** first event time */
  start?: number;
  days?: number;
  /** id prefix (eventId, messageId, mailboxId) */
  prefix?: string;
}

/** All input of a scenario at once (for "produced before the service starts"). */
export function batchScenario(o: BatchScenarioOptions): BatchScenario {
  const rnd = prng(o.seed);
  const tenants = o.tenants ?? 4;
  const nMailboxes = o.mailboxes ?? 40;
  const nMails = o.mails ?? 2600;
  const nInteractions = o.interactions ?? 1400;
  const nSeeded = o.seededMailboxes ?? 8;
  const start = o.start ?? Date.UTC(2026, 0, 5);
  const span = (o.days ?? 40) * MS_PER_DAY;
  const prefix = o.prefix ?? `s${o.seed}`;
  const sec = (t: number): number => Math.floor(t / SECOND) * SECOND;

  const mailboxes: Mailbox[] = [];
  for (let i = 0; i < nMailboxes; i++) {
    const seeded = i < nSeeded;
    mailboxes.push({
      id: `${prefix}-mb${String(i).padStart(3, '0')}`,
      tenantId: `t${i % tenants}`,
      senders: mailboxSenders(rnd),
      // seeded mailboxes start receiving mail somewhere in the first half
      joinAt: seeded ? sec(start + 2 * MS_PER_DAY + rnd() * (span / 2)) : start,
    });
  }
  const seeded: SeededPreferences[] = mailboxes.slice(0, nSeeded).map((mb) => {
    const at = mb.joinAt - HOUR + 7;
    return { value: seededRecord(mb, at, rnd), timestamp: at };
  });

  // mails, spread over the span (a mailbox's mail starts at its joinAt)
  const mails: MailEvent[] = [];
  for (let i = 0; i < nMails; i++) {
    const mb = mailboxes[Math.floor(rnd() * nMailboxes)]!;
    const t = sec(mb.joinAt + rnd() * (start + span - mb.joinAt));
    mails.push(newMail(mb, pickSender(mb.senders, rnd), t, `${prefix}-m${i}`, rnd));
  }
  mails.sort((a, b) => a.receivedAt - b.receivedAt);
  const byMailbox = new Map<string, MailEvent[]>();
  for (const m of mails) {
    let l = byMailbox.get(m.mailboxId);
    if (!l) byMailbox.set(m.mailboxId, (l = []));
    l.push(m);
  }

  const interactions: UserInteraction[] = [];
  let k = 0;
  const nextId = (): string => `${prefix}-i${k++}`;
  while (interactions.length < nInteractions) {
    const r = rnd();
    const mb = mailboxes[Math.floor(rnd() * nMailboxes)]!;
    const own = byMailbox.get(mb.id) ?? [];
    if (r < 0.62 && own.length) {
      // a message action on one of the mailbox's mails, minutes to days later (some > 7 days)
      const m = own[Math.floor(rnd() * own.length)]!;
      const d = rnd();
      const delay =
        d < 0.6
          ? MINUTE + rnd() * 180 * MINUTE
          : d < 0.85
            ? 3 * HOUR + rnd() * 45 * HOUR
            : d < 0.95
              ? 2 * MS_PER_DAY + rnd() * 4 * MS_PER_DAY
              : 7 * MS_PER_DAY + rnd() * 2 * MS_PER_DAY;
      interactions.push(messageInteraction(m, weighted(MESSAGE_ACTIONS, rnd()), sec(m.receivedAt + delay), nextId()));
    } else if (r < 0.72 && interactions.length) {
      // a retry of an earlier message action (same messageId and action): must teach once
      const prev = interactions[Math.floor(rnd() * interactions.length)]!;
      if (prev.messageId === '') continue;
      interactions.push({ ...prev, eventId: nextId(), occurredAt: sec(prev.occurredAt + rnd() * 10 * HOUR) });
    } else if (r < 0.9) {
      // a list edit, any time after the mailbox joined
      const t = sec(mb.joinAt + rnd() * (start + span - mb.joinAt));
      interactions.push(listEdit(mb, pickSender(mb.senders, rnd), weighted(LIST_EDITS, rnd()), t, nextId()));
    } else if (own.length > 2) {
      // a tie: the interaction happens at exactly the receivedAt of a later mail from the same
      // sender; the interaction must be applied first
      const later = own[1 + Math.floor(rnd() * (own.length - 1))]!;
      const earlier = own.find((m) => m.senderAddress === later.senderAddress && m.receivedAt < later.receivedAt);
      const action = weighted<InteractionAction>(
        [
          ['MOVED_TO_PROMOTIONS', 1],
          ['MOVED_TO_INBOX', 1],
          ['BLOCK_SENDER', 1],
          ['ALLOW_SENDER', 1],
        ],
        rnd(),
      );
      if (earlier && later.receivedAt - earlier.receivedAt <= 7 * MS_PER_DAY && !action.endsWith('_SENDER'))
        interactions.push(messageInteraction(earlier, action, later.receivedAt, nextId()));
      else interactions.push(listEdit(mb, later.senderAddress, action, later.receivedAt, nextId()));
    }
  }
  interactions.sort((a, b) => a.occurredAt - b.occurredAt);
  return { policies: scenarioPolicies(tenants), seeded, mails, interactions };
}

export interface LiveScenarioOptions {
  seed: number;
  tenants?: number;
  mailboxes?: number;
  /** mailboxes with a seeded preference record, produced before the service starts */
  seededMailboxes?: number;
  /** event time of the first chunk */
  start?: number;
  /** event time covered by one chunk */
  chunkSpanMs?: number;
  mailsPerChunk?: number;
  interactionsPerChunk?: number;
  prefix?: string;
}

/**
 * Traffic produced while the service runs, chunk by chunk, in event-time order: every chunk covers
 * the next `chunkSpanMs` of event time; its interactions act on mails of earlier chunks (or are
 * list edits and retries). Produce a chunk's interactions before its mails.
 */
export class LiveScenario {
  readonly policies: TenantPolicy[];
  readonly seeded: SeededPreferences[];
  readonly mailboxes: Mailbox[];
  private readonly rnd: () => number;
  private readonly recent = new Map<string, MailEvent[]>();
  private readonly recentInteractions: UserInteraction[] = [];
  private t: number;
  private chunk = 0;
  private readonly prefix: string;

  constructor(private readonly o: LiveScenarioOptions) {
    this.rnd = prng(o.seed);
    const tenants = o.tenants ?? 4;
    const n = o.mailboxes ?? 120;
    this.prefix = o.prefix ?? `l${o.seed}`;
    this.t = o.start ?? Date.UTC(2026, 1, 2);
    this.mailboxes = [];
    for (let i = 0; i < n; i++)
      this.mailboxes.push({
        id: `${this.prefix}-mb${String(i).padStart(3, '0')}`,
        tenantId: `t${i % tenants}`,
        senders: mailboxSenders(this.rnd),
        joinAt: this.t,
      });
    this.policies = scenarioPolicies(tenants);
    this.seeded = this.mailboxes.slice(0, o.seededMailboxes ?? 12).map((mb) => {
      const at = this.t - HOUR + 7;
      return { value: seededRecord(mb, at, this.rnd), timestamp: at };
    });
  }

  /** The next chunk: interactions and mails, each in ascending event time. */
  next(): { interactions: UserInteraction[]; mails: MailEvent[] } {
    const rnd = this.rnd;
    const span = this.o.chunkSpanMs ?? 10 * MINUTE;
    const from = this.t;
    const at = (): number => from + Math.floor((rnd() * span) / SECOND) * SECOND;
    const c = this.chunk++;
    const mails: MailEvent[] = [];
    const nm = this.o.mailsPerChunk ?? 20;
    for (let i = 0; i < nm; i++) {
      const mb = this.mailboxes[Math.floor(rnd() * this.mailboxes.length)]!;
      mails.push(newMail(mb, pickSender(mb.senders, rnd), at(), `${this.prefix}-c${c}m${i}`, rnd));
    }
    const interactions: UserInteraction[] = [];
    const ni = this.o.interactionsPerChunk ?? 10;
    for (let i = 0; i < ni; i++) {
      const id = `${this.prefix}-c${c}i${i}`;
      const mb = this.mailboxes[Math.floor(rnd() * this.mailboxes.length)]!;
      const own = this.recent.get(mb.id) ?? [];
      const r = rnd();
      if (r < 0.6 && own.length) {
        const m = own[Math.floor(rnd() * own.length)]!;
        interactions.push(messageInteraction(m, weighted(MESSAGE_ACTIONS, rnd()), at(), id));
      } else if (r < 0.75 && this.recentInteractions.length) {
        const prev = this.recentInteractions[Math.floor(rnd() * this.recentInteractions.length)]!;
        interactions.push({ ...prev, eventId: id, occurredAt: at() });
      } else {
        interactions.push(listEdit(mb, pickSender(mb.senders, rnd), weighted(LIST_EDITS, rnd()), at(), id));
      }
    }
    mails.sort((a, b) => a.receivedAt - b.receivedAt);
    interactions.sort((a, b) => a.occurredAt - b.occurredAt);
    // remember recent mails (acted on by later chunks) and message actions (retried later)
    for (const m of mails) {
      let l = this.recent.get(m.mailboxId);
      if (!l) this.recent.set(m.mailboxId, (l = []));
      l.push(m);
      if (l.length > 30) l.shift();
    }
    for (const i of interactions) if (i.messageId !== '') this.recentInteractions.push(i);
    if (this.recentInteractions.length > 300) this.recentInteractions.splice(0, this.recentInteractions.length - 300);
    this.t = from + span;
    return { interactions, mails };
  }
}
