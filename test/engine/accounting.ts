/**
 * Exact accounting of what the service wrote against the reference: decisions lost, duplicated,
 * wrong; preference records lost, extra, rewritten; final preferences wrong. Every count comes with
 * a few example ids (never addresses).
 */
import type { Decision, UserPreferences } from '../../processors/logic/model.js';
import type { ReferenceResult } from './reference.js';

/** JSON with sorted keys: equal values give equal strings whatever the field order. */
export function canon(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : x,
  );
}

const EXAMPLES = 5;

function push(list: string[], id: string): void {
  if (list.length < EXAMPLES) list.push(id);
}

export interface DecisionReport {
  mails: number;
  decisionRecords: number;
  /** mails without any decision */
  lost: number;
  /** decision records beyond the first for a mail */
  duplicates: number;
  /** mails decided more than once */
  mailsDecidedTwice: number;
  /** mails with at least one decision whose action, reason, matchedKey or preferencesVersion differs from the reference */
  wrong: number;
  /** of which the action (folder) itself differs */
  wrongAction: number;
  /** wrong decisions that saw a later preference version than the reference (processed too late) */
  versionAhead: number;
  /** wrong decisions that saw an earlier preference version (processed too early) */
  versionBehind: number;
  /** mails whose decisions disagree with each other (ignoring wall-clock fields) */
  inconsistentDuplicates: number;
  /** decisions for an eventId that is not an input mail */
  unknown: number;
  examples: { lost: string[]; wrong: string[]; duplicated: string[] };
}

export function accountDecisions(ref: ReferenceResult, decisions: readonly Decision[]): DecisionReport {
  const byEvent = new Map<string, Decision[]>();
  for (const d of decisions) {
    let l = byEvent.get(d.eventId);
    if (!l) byEvent.set(d.eventId, (l = []));
    l.push(d);
  }
  const r: DecisionReport = {
    mails: ref.decisions.size,
    decisionRecords: decisions.length,
    lost: 0,
    duplicates: 0,
    mailsDecidedTwice: 0,
    wrong: 0,
    wrongAction: 0,
    versionAhead: 0,
    versionBehind: 0,
    inconsistentDuplicates: 0,
    unknown: 0,
    examples: { lost: [], wrong: [], duplicated: [] },
  };
  for (const [eventId, want] of ref.decisions) {
    const got = byEvent.get(eventId);
    if (!got) {
      r.lost++;
      push(r.examples.lost, eventId);
      continue;
    }
    if (got.length > 1) {
      r.duplicates += got.length - 1;
      r.mailsDecidedTwice++;
      push(r.examples.duplicated, eventId);
      const strip = (d: Decision): string => canon({ ...d, decidedAt: 0, dwellMs: 0 });
      if (new Set(got.map(strip)).size > 1) r.inconsistentDuplicates++;
    }
    const bad = got.find(
      (d) =>
        d.action !== want.action ||
        d.reason !== want.reason ||
        d.matchedKey !== want.matchedKey ||
        d.preferencesVersion !== want.preferencesVersion ||
        d.messageId !== want.messageId ||
        d.mailboxId !== want.mailboxId ||
        d.tenantId !== want.tenantId ||
        d.mode !== 'LIVE',
    );
    if (bad) {
      r.wrong++;
      if (bad.action !== want.action) r.wrongAction++;
      const v = (x: number | null): number => x ?? 0;
      if (v(bad.preferencesVersion) > v(want.preferencesVersion)) r.versionAhead++;
      if (v(bad.preferencesVersion) < v(want.preferencesVersion)) r.versionBehind++;
      push(r.examples.wrong, eventId);
    }
  }
  for (const eventId of byEvent.keys()) if (!ref.decisions.has(eventId)) r.unknown++;
  return r;
}

export interface PreferenceReport {
  /** mailboxes the reference writes preference records for */
  mailboxes: number;
  recordsExpected: number;
  /** records the service wrote (the seeded ones excluded) */
  recordsWritten: number;
  /** mailboxes whose last written record differs from the reference's final one (missing included) */
  lastWrong: number;
  /** of which: no record at all was written for the mailbox */
  lastMissing: number;
  /** of which: the last version written is lower than the reference's (updates lost) */
  lastVersionBehind: number;
  /** of which: the last version written is higher than the reference's (updates applied twice, or extra) */
  lastVersionAhead: number;
  /** reference records (mailbox, version, content) never written */
  lostVersions: number;
  /** written (mailbox, version) pairs the reference does not have, or with other content */
  wrongVersions: number;
  /** (mailbox, version) pairs written more than once with the same content */
  rewrittenIdentical: number;
  /** (mailbox, version) pairs written more than once with different contents */
  rewrittenConflicting: number;
  /** mailboxes whose whole sequence of records differs from the reference's */
  sequenceWrong: number;
  /** records for mailboxes the reference never writes */
  unexpectedMailboxes: number;
  examples: { lastWrong: string[]; lost: string[]; wrong: string[]; rewritten: string[] };
}

/** `written`: the records the service wrote to user-preferences, in offset order. */
export function accountPreferences(ref: ReferenceResult, written: readonly UserPreferences[]): PreferenceReport {
  const byMailbox = new Map<string, UserPreferences[]>();
  for (const p of written) {
    let l = byMailbox.get(p.mailboxId);
    if (!l) byMailbox.set(p.mailboxId, (l = []));
    l.push(p);
  }
  const r: PreferenceReport = {
    mailboxes: ref.written.size,
    recordsExpected: [...ref.written.values()].reduce((n, l) => n + l.length, 0),
    recordsWritten: written.length,
    lastWrong: 0,
    lastMissing: 0,
    lastVersionBehind: 0,
    lastVersionAhead: 0,
    lostVersions: 0,
    wrongVersions: 0,
    rewrittenIdentical: 0,
    rewrittenConflicting: 0,
    sequenceWrong: 0,
    unexpectedMailboxes: 0,
    examples: { lastWrong: [], lost: [], wrong: [], rewritten: [] },
  };
  for (const [mailboxId, want] of ref.written) {
    const got = byMailbox.get(mailboxId) ?? [];
    const last = got[got.length - 1];
    if (!last || canon(last) !== canon(want[want.length - 1])) {
      r.lastWrong++;
      if (!last) r.lastMissing++;
      const wantLast = want[want.length - 1]!.version;
      if (last && last.version < wantLast) r.lastVersionBehind++;
      if (last && last.version > wantLast) r.lastVersionAhead++;
      push(r.examples.lastWrong, mailboxId);
    }
    if (canon(got) !== canon(want)) r.sequenceWrong++;
    const wantByVersion = new Map(want.map((p) => [p.version, canon(p)]));
    const gotByVersion = new Map<number, string[]>();
    for (const p of got) {
      let l = gotByVersion.get(p.version);
      if (!l) gotByVersion.set(p.version, (l = []));
      l.push(canon(p));
    }
    for (const [v, c] of wantByVersion)
      if (!gotByVersion.get(v)?.includes(c)) {
        r.lostVersions++;
        push(r.examples.lost, `${mailboxId}@${v}`);
      }
    for (const [v, cs] of gotByVersion) {
      const w = wantByVersion.get(v);
      for (const c of cs)
        if (c !== w) {
          r.wrongVersions++;
          push(r.examples.wrong, `${mailboxId}@${v}`);
        }
      if (cs.length > 1) {
        if (new Set(cs).size > 1) r.rewrittenConflicting++;
        else r.rewrittenIdentical++;
        push(r.examples.rewritten, `${mailboxId}@${v}x${cs.length}`);
      }
    }
  }
  for (const mailboxId of byMailbox.keys()) if (!ref.written.has(mailboxId)) r.unexpectedMailboxes++;
  return r;
}

/** One block of text for the test log. */
export function formatReport(title: string, parts: Record<string, unknown>): string {
  const lines = [`=== ${title} ===`];
  for (const [k, v] of Object.entries(parts)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const { examples, ...counts } = o;
      lines.push(
        `${k}: ${Object.entries(counts)
          .map(([a, b]) => `${a}=${typeof b === 'number' ? b : JSON.stringify(b)}`)
          .join(' ')}`,
      );
      if (examples && typeof examples === 'object')
        for (const [a, b] of Object.entries(examples as Record<string, string[]>))
          if (b.length) lines.push(`  e.g. ${a}: ${b.join(', ')}`);
    } else lines.push(`${k}: ${JSON.stringify(v)}`);
  }
  return lines.join('\n');
}
