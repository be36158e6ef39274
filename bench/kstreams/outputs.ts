/**
 * `bench/run.ts throughput --dump-outputs FILE`: after a run, reads the output topics (decisions,
 * shadow decisions, user-preferences, the dead-letter topic) and writes what a comparison of two
 * systems needs (bench/kstreams/compare.ts): every decision by eventId, and per mailbox the
 * preference records written during the run. Event ids are deterministic for a workload seed, so
 * two runs with the same seed and options can be compared decision by decision.
 */
import { writeFileSync } from 'node:fs';
import type { Kafka } from 'kafkajs';
import { readWhole } from '../../cli/topic-reader.js';
import type { Decision, UserPreferences } from '../../processors/logic/model.js';
import type { MailSerdes } from '../../topology/serdes.js';
import type { Topics } from '../../topology/topics.js';

export interface OutputDump {
  system: string;
  seed: number;
  produced: { mails: number; interactions: number };
  /** eventId → [topic kind (L live, S shadow), action, reason, matchedKey, preferencesVersion] */
  decisions: Record<string, [string, string, string, string | null, number | null]>;
  /** mailboxId → versions of the preference records on user-preferences (seeded + written) */
  preferenceVersions: Record<string, number[]>;
  /** mailboxId → the newest record's entries, as `scope:key:verdict:source:evidence` */
  finalPreferences: Record<string, string[]>;
  deadLetters: number;
}

export async function dumpOutputs(
  b: { kafka: Kafka; topics: Topics; serdes: MailSerdes; id: string },
  file: string,
  meta: { system: string; seed: number; produced: { mails: number; interactions: number } },
): Promise<void> {
  const { kafka, topics, serdes } = b;
  const decisions: OutputDump['decisions'] = {};
  for (const [kind, topic, serde] of [
    ['L', topics.mailDecisions, serdes.mailDecisions],
    ['S', topics.mailDecisionsShadow, serdes.mailDecisionsShadow],
  ] as const) {
    for (const r of await readWhole<Decision>(kafka, topic, serde)) {
      const d = r.value!;
      decisions[d.eventId] = [kind, d.action, d.reason, d.matchedKey, d.preferencesVersion];
    }
  }
  const preferenceVersions: OutputDump['preferenceVersions'] = {};
  const finalPreferences: OutputDump['finalPreferences'] = {};
  const newest = new Map<string, UserPreferences>();
  for (const r of await readWhole<UserPreferences>(kafka, topics.userPreferences, serdes.userPreferences)) {
    const p = r.value!;
    (preferenceVersions[p.mailboxId] ??= []).push(p.version);
    const cur = newest.get(p.mailboxId);
    if (!cur || p.version > cur.version) newest.set(p.mailboxId, p);
  }
  for (const [m, p] of newest)
    finalPreferences[m] = p.entries.map((e) => `${e.scope}:${e.key}:${e.verdict}:${e.source}:${e.evidence}`);
  let deadLetters = 0;
  const admin = kafka.admin();
  await admin.connect();
  try {
    const dlq = `${b.id}-dlq`;
    if ((await admin.listTopics()).includes(dlq))
      for (const p of await admin.fetchTopicOffsets(dlq)) deadLetters += Number(p.high) - Number(p.low);
  } finally {
    await admin.disconnect();
  }
  const dump: OutputDump = { ...meta, decisions, preferenceVersions, finalPreferences, deadLetters };
  writeFileSync(file, JSON.stringify(dump));
  process.stderr.write(
    `[bench] wrote ${Object.keys(decisions).length} decisions and ${newest.size} mailboxes' preferences to ${file}\n`,
  );
}
