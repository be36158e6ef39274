/**
 * §6 parity with the legacy system, as pure functions: pairing a new decision with the legacy
 * decision of the same message, and the promotion-gate report.
 *
 * Pairing (per mailbox and messageId, in event time):
 *  - the first side to arrive opens an entry that closes `windowMs` after its timestamp;
 *  - the other side arriving within the window (either order, |Δt| <= windowMs) makes a pair:
 *    MATCH when the actions are equal, else MISMATCH; the entry stays, marked done, until its
 *    window closes, so a repeated record (at-least-once) is recognised and not counted twice;
 *  - an entry that closes with one side only is LEGACY_MISSING (only the new side came) or
 *    NEW_MISSING (only the legacy side came).
 *
 * Legacy actions are mapped explicitly (`LEGACY_ACTION_MAP`); a legacy action outside the map is
 * refused (the record goes to the dead-letter topic), never guessed.
 */
import { ProcessingError } from '../../runtime/errors.js';
import type { MailAction, ParityOutcome, ParityResult } from './model.js';

export const DEFAULT_PARITY_WINDOW_MS = 10 * 60 * 1000;

/**
 * The legacy system's actions and what they mean in the new system. The legacy stream uses the
 * same three destinations (`LegacyDecision.action` is the Avro enum INBOX, PROMOTIONS, JUNK):
 *   INBOX → INBOX, PROMOTIONS → PROMOTIONS, JUNK → JUNK.
 */
export const LEGACY_ACTION_MAP: Readonly<Record<string, MailAction>> = Object.freeze({
  INBOX: 'INBOX',
  PROMOTIONS: 'PROMOTIONS',
  JUNK: 'JUNK',
});

export function mapLegacyAction(action: string): MailAction {
  const a = Object.prototype.hasOwnProperty.call(LEGACY_ACTION_MAP, action) ? LEGACY_ACTION_MAP[action] : undefined;
  if (!a) throw new ProcessingError('LEGACY_ACTION_UNKNOWN', 'legacy action has no mapping to INBOX/PROMOTIONS/JUNK');
  return a;
}

export type ParityComparison = 'MATCH' | ParityOutcome;

export interface NewSide {
  action: MailAction;
  reason: string;
  ts: number;
}

export interface LegacySide {
  action: MailAction;
  ts: number;
}

export interface ParityEntry {
  tenantId: string;
  mailboxId: string;
  messageId: string;
  legacy?: LegacySide;
  new?: NewSide;
  /** event time at which the window closes */
  closesAt: number;
  /** paired already: kept until it closes to recognise repeats */
  done?: boolean;
}

export interface ParityStep {
  /** the entry to store (undefined: delete) */
  entry: ParityEntry | undefined;
  /** a comparison that completed now */
  outcome?: ParityComparison;
  /** what goes to parity-mismatches (MISMATCH, or the missing side of an entry superseded) */
  emit?: ParityResult[];
  /** the record was a repeat and was ignored */
  duplicate?: boolean;
}

export interface Identity {
  tenantId: string;
  mailboxId: string;
  messageId: string;
}

const ACTION_CODE: Readonly<Record<MailAction, string>> = { INBOX: 'I', PROMOTIONS: 'P', JUNK: 'J' };
const CODE_ACTION: Readonly<Record<string, MailAction>> = { I: 'INBOX', P: 'PROMOTIONS', J: 'JUNK' };
const SEP = '\u0001';

/**
 * A compact text form of an entry for the parity store's changelog (about half the size of
 * JSON: the store sees one write per side of every message):
 *   1 SEP tenantId SEP mailboxId SEP messageId SEP closesAt SEP done(0|1)
 *     SEP legacyAction SEP legacyTs SEP newAction SEP newReason SEP newTs   (absent side: empty)
 */
export function encodeEntry(e: ParityEntry): string {
  return [
    '1',
    e.tenantId,
    e.mailboxId,
    e.messageId,
    e.closesAt,
    e.done ? '1' : '0',
    e.legacy ? ACTION_CODE[e.legacy.action] : '',
    e.legacy ? e.legacy.ts : '',
    e.new ? ACTION_CODE[e.new.action] : '',
    e.new ? e.new.reason : '',
    e.new ? e.new.ts : '',
  ].join(SEP);
}

export function decodeEntry(s: string): ParityEntry {
  const f = s.split(SEP);
  if (f.length !== 11 || f[0] !== '1') throw new ProcessingError('PARITY_ENTRY', 'unreadable parity store entry');
  const e: ParityEntry = { tenantId: f[1]!, mailboxId: f[2]!, messageId: f[3]!, closesAt: Number(f[4]) };
  if (f[5] === '1') e.done = true;
  if (f[6]) e.legacy = { action: CODE_ACTION[f[6]]!, ts: Number(f[7]) };
  if (f[8]) e.new = { action: CODE_ACTION[f[8]]!, reason: f[9]!, ts: Number(f[10]) };
  return e;
}

export function pairKey(mailboxId: string, messageId: string): string {
  return `${mailboxId}\u0000${messageId}`;
}

function result(e: ParityEntry, outcome: ParityOutcome): ParityResult {
  return {
    messageId: e.messageId,
    tenantId: e.tenantId,
    mailboxId: e.mailboxId,
    legacyAction: e.legacy?.action ?? null,
    newAction: e.new?.action ?? null,
    newReason: e.new?.reason ?? null,
    result: outcome,
  };
}

/** The outcome of an entry that closes with one side. */
export function missingOutcome(e: ParityEntry): ParityOutcome {
  return e.new ? 'LEGACY_MISSING' : 'NEW_MISSING';
}

/** Applies one side to the entry of its message. */
export function applySide(
  current: ParityEntry | undefined,
  id: Identity,
  side: { kind: 'new'; value: NewSide } | { kind: 'legacy'; value: LegacySide },
  windowMs: number,
): ParityStep {
  const open = (): ParityEntry => ({
    tenantId: id.tenantId,
    mailboxId: id.mailboxId,
    messageId: id.messageId,
    [side.kind]: side.value,
    closesAt: side.value.ts + windowMs,
  });
  if (!current) return { entry: open() };
  if (current.done || current[side.kind]) return { entry: current, duplicate: true };
  const other = side.kind === 'new' ? current.legacy : current.new;
  if (!other) return { entry: open() }; // cannot happen: an entry always has a side
  if (Math.abs(side.value.ts - other.ts) > windowMs) {
    // too far apart: the old entry's side is missing its partner; the new side opens its own entry
    return { entry: open(), emit: [result(current, missingOutcome(current))], outcome: missingOutcome(current) };
  }
  // the window stays where the first side put it (the second side is within it): a repeat of
  // either side until it closes is recognised, and the expiry index entry does not move
  const paired: ParityEntry = { ...current, [side.kind]: side.value, done: true };
  const match = paired.legacy!.action === paired.new!.action;
  return match
    ? { entry: paired, outcome: 'MATCH' }
    : { entry: paired, outcome: 'MISMATCH', emit: [result(paired, 'MISMATCH')] };
}

/** What closing an entry yields: nothing for a paired one, else the missing side. */
export function closeEntry(e: ParityEntry): { outcome?: ParityOutcome; emit?: ParityResult } {
  if (e.done) return {};
  const outcome = missingOutcome(e);
  return { outcome, emit: result(e, outcome) };
}

// ---------------------------------------------------------------------------------------------
// the report and the promotion gate

export interface GateOptions {
  /** default 0.995 */
  minRate: number;
  /** default 10,000 */
  minPairs: number;
  /** the last N hourly windows must each meet minRate too (default 3) */
  hours: number;
}

export const DEFAULT_GATE: GateOptions = Object.freeze({ minRate: 0.995, minPairs: 10_000, hours: 3 });

export interface TenantParity {
  tenantId: string;
  /** comparisons: MATCH + MISMATCH + LEGACY_MISSING + NEW_MISSING */
  pairs: number;
  matched: number;
  /** matched / pairs (0 when there are none) */
  matchRate: number;
  byClass: Record<ParityOutcome, number>;
  /** the most frequent mismatching (legacy, new, reason) triples, most frequent first */
  topMismatches: { legacy: string; new: string; reason: string; count: number }[];
  /** the last `hours` hourly windows (oldest first) */
  hourly: { hourStart: number; pairs: number; matched: number; matchRate: number }[];
  gate: { holds: boolean; why: string };
  /** sides still waiting for their partner (window not closed at the end of the data) */
  pending: number;
}

export interface ParityRecord {
  kind: 'new' | 'legacy';
  tenantId: string;
  mailboxId: string;
  messageId: string;
  action: MailAction;
  reason?: string;
  ts: number;
}

const HOUR = 3_600_000;

/**
 * Pairs the records of the decision topics and the legacy topic as the processor does, and sums
 * up per tenant. `now` is the event time up to which windows count as closed (default: the
 * newest record's timestamp).
 */
export function parityReport(
  records: readonly ParityRecord[],
  opts: {
    windowMs?: number;
    gate?: Partial<GateOptions>;
    now?: number;
    tenant?: string;
    /** a lone side older than this is not reported (read only to complete pairs) */
    ignoreLoneBefore?: number;
  } = {},
): TenantParity[] {
  const windowMs = opts.windowMs ?? DEFAULT_PARITY_WINDOW_MS;
  const gate = { ...DEFAULT_GATE, ...opts.gate };
  const sorted = [...records].filter((r) => !opts.tenant || r.tenantId === opts.tenant).sort((a, b) => a.ts - b.ts);
  const now = opts.now ?? (sorted.length ? sorted[sorted.length - 1]!.ts : 0);
  interface Acc {
    byClass: Record<ParityOutcome, number>;
    matched: number;
    triples: Map<string, number>;
    hours: Map<number, { pairs: number; matched: number }>;
    pending: number;
  }
  const acc = new Map<string, Acc>();
  const tenantAcc = (t: string): Acc => {
    let a = acc.get(t);
    if (!a)
      acc.set(
        t,
        (a = {
          byClass: { MISMATCH: 0, LEGACY_MISSING: 0, NEW_MISSING: 0 },
          matched: 0,
          triples: new Map(),
          hours: new Map(),
          pending: 0,
        }),
      );
    return a;
  };
  const count = (e: ParityEntry, outcome: ParityComparison): void => {
    const a = tenantAcc(e.tenantId);
    const at = e.new?.ts ?? e.legacy!.ts;
    const h = Math.floor(at / HOUR) * HOUR;
    let hour = a.hours.get(h);
    if (!hour) a.hours.set(h, (hour = { pairs: 0, matched: 0 }));
    hour.pairs++;
    if (outcome === 'MATCH') {
      a.matched++;
      hour.matched++;
      return;
    }
    a.byClass[outcome]++;
    const k = `${e.legacy?.action ?? '-'}\u0000${e.new?.action ?? '-'}\u0000${e.new?.reason ?? '-'}`;
    a.triples.set(k, (a.triples.get(k) ?? 0) + 1);
  };
  const lonelyIgnored = (e: ParityEntry): boolean =>
    !e.done && opts.ignoreLoneBefore !== undefined && (e.new?.ts ?? e.legacy!.ts) < opts.ignoreLoneBefore;
  const entries = new Map<string, ParityEntry>();
  for (const r of sorted) {
    const key = pairKey(r.mailboxId, r.messageId);
    const side =
      r.kind === 'new'
        ? { kind: 'new' as const, value: { action: r.action, reason: r.reason ?? '', ts: r.ts } }
        : { kind: 'legacy' as const, value: { action: r.action, ts: r.ts } };
    const before = entries.get(key);
    const step = applySide(before, r, side, windowMs);
    if (step.outcome === 'MATCH' || step.outcome === 'MISMATCH') count(step.entry!, step.outcome);
    else if (step.outcome && before && !lonelyIgnored(before)) count(before, step.outcome); // a lone side superseded
    entries.set(key, step.entry!);
    tenantAcc(r.tenantId);
  }
  for (const e of entries.values()) {
    if (lonelyIgnored(e)) continue;
    if (e.closesAt <= now) {
      const c = closeEntry(e);
      if (c.outcome) count(e, c.outcome);
    } else if (!e.done) tenantAcc(e.tenantId).pending++;
  }
  const lastHour = Math.floor(now / HOUR) * HOUR;
  const out: TenantParity[] = [];
  for (const [tenantId, a] of [...acc].sort(([x], [y]) => x.localeCompare(y))) {
    const pairs = a.matched + a.byClass.MISMATCH + a.byClass.LEGACY_MISSING + a.byClass.NEW_MISSING;
    const matchRate = pairs ? a.matched / pairs : 0;
    const hourly = Array.from({ length: gate.hours }, (_, i) => {
      const hourStart = lastHour - (gate.hours - 1 - i) * HOUR;
      const h = a.hours.get(hourStart) ?? { pairs: 0, matched: 0 };
      return { hourStart, pairs: h.pairs, matched: h.matched, matchRate: h.pairs ? h.matched / h.pairs : 0 };
    });
    let why = 'holds';
    if (pairs < gate.minPairs) why = `${pairs} pairs, fewer than ${gate.minPairs}`;
    else if (matchRate < gate.minRate)
      why = `match rate ${(matchRate * 100).toFixed(2)}% below ${(gate.minRate * 100).toFixed(2)}%`;
    else {
      const bad = hourly.find((h) => h.pairs === 0 || h.matchRate < gate.minRate);
      if (bad)
        why = `hour ${new Date(bad.hourStart).toISOString()}: ${bad.pairs ? `match rate ${(bad.matchRate * 100).toFixed(2)}%` : 'no pairs'}`;
    }
    const topMismatches = [...a.triples]
      .map(([k, n]) => {
        const [legacy, nw, reason] = k.split('\u0000') as [string, string, string];
        return { legacy, new: nw, reason, count: n };
      })
      .sort((x, y) => y.count - x.count || x.legacy.localeCompare(y.legacy) || x.new.localeCompare(y.new))
      .slice(0, 5);
    out.push({
      tenantId,
      pairs,
      matched: a.matched,
      matchRate,
      byClass: a.byClass,
      topMismatches,
      hourly,
      gate: { holds: why === 'holds', why },
      pending: a.pending,
    });
  }
  return out;
}
