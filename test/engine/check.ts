/**
 * The end-of-run check shared by the live tests: read back the inputs as the broker holds them,
 * build the reference from them, read the outputs, and account.
 */
import type { Admin } from 'kafkajs';
import type { Decision, TenantPolicy } from '../../processors/logic/model.js';
import { accountDecisions, accountPreferences, type DecisionReport, type PreferenceReport } from './accounting.js';
import { endOffsetSum, endOffsets, readDecoded, type Decoded, type ServiceTopics } from './io.js';
import { reference, type ReferenceResult } from './reference.js';

export interface RunCheck {
  ref: ReferenceResult;
  decisions: DecisionReport;
  preferences: PreferenceReport;
  decisionRecords: Decoded<Decision>[];
  deadLetters: number;
  inputs: { mails: number; interactions: number; seeded: number };
  /** records each output topic holds (end minus start offsets) and records read: equal unless the read missed some */
  readCompleteness: {
    mailEvents: [number, number];
    userInteractions: [number, number];
    userPreferences: [number, number];
    mailDecisions: [number, number];
  };
  /** eventIds of the input as read back */
  inputIds: { mails: Set<string>; interactions: Set<string> };
}

async function recordsHeld(admin: Admin, topic: string): Promise<number> {
  return (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
}

/** End offsets of user-preferences before any instance starts: the records below are seeded. */
export async function seededEnds(admin: Admin, svc: ServiceTopics): Promise<Map<number, number>> {
  return endOffsets(admin, svc.topics.userPreferences);
}

export async function checkRun(
  svc: ServiceTopics,
  admin: Admin,
  seeded: Map<number, number>,
  policies: readonly TenantPolicy[],
): Promise<RunCheck> {
  const [mails, interactions, prefs, decisionRecords] = await Promise.all([
    readDecoded(svc, 'mailEvents'),
    readDecoded(svc, 'userInteractions'),
    readDecoded(svc, 'userPreferences'),
    readDecoded(svc, 'mailDecisions'),
  ]);
  const isSeeded = (r: { partition: number; offset: number }): boolean => r.offset < (seeded.get(r.partition) ?? 0);
  const ref = reference(
    {
      preferences: prefs.filter(isSeeded).map((r) => ({ timestamp: r.timestamp, value: r.value })),
      interactions: interactions.map((r) => ({ timestamp: r.timestamp, value: r.value })),
      mails: mails.map((r) => ({ timestamp: r.timestamp, value: r.value })),
    },
    policies,
  );
  const deadLetters = await endOffsetSum(admin, `${svc.appId}-dlq`).catch(() => 0);
  const readCompleteness: RunCheck['readCompleteness'] = {
    mailEvents: [await recordsHeld(admin, svc.topics.mailEvents), mails.length],
    userInteractions: [await recordsHeld(admin, svc.topics.userInteractions), interactions.length],
    userPreferences: [await recordsHeld(admin, svc.topics.userPreferences), prefs.length],
    mailDecisions: [await recordsHeld(admin, svc.topics.mailDecisions), decisionRecords.length],
  };
  return {
    ref,
    decisions: accountDecisions(
      ref,
      decisionRecords.map((r) => r.value),
    ),
    preferences: accountPreferences(
      ref,
      prefs.filter((r) => !isSeeded(r)).map((r) => r.value),
    ),
    decisionRecords,
    deadLetters,
    readCompleteness,
    inputIds: {
      mails: new Set(mails.map((r) => r.value.eventId)),
      interactions: new Set(interactions.map((r) => r.value.eventId)),
    },
    inputs: { mails: mails.length, interactions: interactions.length, seeded: prefs.filter(isSeeded).length },
  };
}

/** Acknowledged sends (acks=all) whose records the input topics do not hold: a broker or client fault, not the service's. */
export function ackedMissing(
  r: RunCheck,
  traffic: { sent: Map<string, unknown>; ackedInteractions: Set<string> },
): { mails: number; interactions: number; ids: string[] } {
  const mails = [...traffic.sent.keys()].filter((id) => !r.inputIds.mails.has(id));
  const interactions = [...traffic.ackedInteractions].filter((id) => !r.inputIds.interactions.has(id));
  return { mails: mails.length, interactions: interactions.length, ids: [...mails, ...interactions].slice(0, 5) };
}
