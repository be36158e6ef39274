/**
 * `um reset`: starts the application over, like Kafka Streams' kafka-streams-application-reset.
 *
 *  1. refuses while the consumer group (UM_APP_ID) has members: every instance must be stopped;
 *  2. sets the group's committed offsets of the input topics to earliest, latest or a time;
 *  3. deletes the internal topics (store changelogs `<appId>-<store>-changelog`, repartition
 *     topics); the dead-letter topic and the application's own topics are kept;
 *  4. deletes the helper consumer groups that versions before the group-less readers left
 *     (`<appId>-restore-*`, `<appId>-global-*`) when they are empty (this version's readers,
 *     runtime/assigned-reader.ts, join no group);
 *  5. wipes the local state directory `<UM_STATE_DIR>/<UM_APP_ID>` (locked first, so not under a
 *     running instance on this host).
 *
 * `--dry-run` prints the plan and changes nothing. Also used at start for UM_OFFSET_RESET=latest.
 */
import { rmSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Admin, Kafka } from 'kafkajs';
import { StreamsError } from '../runtime/errors.js';
import { withRetries } from '../runtime/retry.js';
import { lockStateDir } from '../runtime/state-dir-lock.js';
import type { Topology } from '../runtime/topology.js';

/** Where to move the offsets: a log end, or the first record at or after a time (epoch ms). */
export type ResetTarget = { kind: 'earliest' } | { kind: 'latest' } | { kind: 'time'; at: number };

/** Parses `--to`: earliest, latest, an ISO-8601 date/time, or epoch milliseconds. */
export function parseResetTarget(s: string): ResetTarget {
  if (s === 'earliest' || s === 'latest') return { kind: s };
  if (/^\d{10,}$/.test(s)) return { kind: 'time', at: Number(s) };
  const at = Date.parse(s);
  if (/^\d{4}-\d{2}-\d{2}/.test(s) && Number.isFinite(at)) return { kind: 'time', at };
  throw new StreamsError(
    'BAD_RESET_TARGET',
    `--to ${s}: expected earliest, latest, an ISO-8601 time (2026-03-01T12:00:00Z) or epoch milliseconds`,
  );
}

export interface ResetPlan {
  groupId: string;
  target: ResetTarget;
  /** new committed offsets per input topic and partition */
  offsets: { topic: string; partition: number; from: string | undefined; to: string }[];
  internalTopics: string[];
  helperGroups: string[];
  stateDir: string;
  stateDirExists: boolean;
}

export class GroupActiveError extends StreamsError {
  constructor(groupId: string, members: string[]) {
    super(
      'GROUP_ACTIVE',
      `the consumer group ${groupId} has ${members.length} active member(s) (${members.slice(0, 5).join(', ')}${members.length > 5 ? ', ...' : ''}): stop every instance of the application, then run the reset again`,
    );
  }
}

/** Throws GroupActiveError when the group has members. */
export async function assertGroupEmpty(admin: Admin, groupId: string): Promise<void> {
  const { groups } = await admin.describeGroups([groupId]);
  const g = groups[0];
  if (g && g.members.length > 0)
    throw new GroupActiveError(
      groupId,
      g.members.map((m) => `${m.clientId}@${m.clientHost.replace(/^\//, '')}`),
    );
}

/** The target offset of every partition of `topics`. */
async function targetOffsets(
  admin: Admin,
  topics: readonly string[],
  target: ResetTarget,
): Promise<{ topic: string; partition: number; offset: string }[]> {
  const out: { topic: string; partition: number; offset: string }[] = [];
  for (const topic of topics) {
    // a partition whose leader is moving (or just elected) answers NOT_LEADER: retried
    if (target.kind === 'time') {
      const at = target.at;
      for (const p of await withRetries(`offsets of ${topic}`, () => admin.fetchTopicOffsetsByTimestamp(topic, at)))
        out.push({ topic, partition: p.partition, offset: p.offset });
    } else {
      for (const p of await withRetries(`offsets of ${topic}`, () => admin.fetchTopicOffsets(topic)))
        out.push({ topic, partition: p.partition, offset: target.kind === 'earliest' ? p.low : p.high });
    }
  }
  return out;
}

async function committedOffsets(
  admin: Admin,
  groupId: string,
  topics: readonly string[],
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const t of await admin.fetchOffsets({ groupId, topics: [...topics] }))
    for (const p of t.partitions) if (p.offset !== '-1') out.set(`${t.topic}:${p.partition}`, p.offset);
  return out;
}

/** Works out what a reset would do; changes nothing. */
export async function planReset(
  kafka: Kafka,
  opts: { applicationId: string; stateDir: string; topology: Topology; target: ResetTarget },
): Promise<ResetPlan> {
  const groupId = opts.applicationId;
  const admin = kafka.admin();
  await admin.connect();
  try {
    await assertGroupEmpty(admin, groupId);
    const existing = new Set(await admin.listTopics());
    const inputs = opts.topology.sourceTopics().filter((t) => existing.has(t));
    const committed = await committedOffsets(admin, groupId, inputs);
    const offsets = (await targetOffsets(admin, inputs, opts.target)).map((o) => ({
      topic: o.topic,
      partition: o.partition,
      from: committed.get(`${o.topic}:${o.partition}`),
      to: o.offset,
    }));
    const declared = opts.topology
      .resolvedStores(groupId)
      .flatMap((s) => (s.changelogTopic && !s.sourceChangelog ? [s.changelogTopic] : []));
    const prefix = `${groupId}-`;
    const internalPattern = /-(changelog|repartition)$/;
    const internalTopics = [
      ...new Set([
        ...declared.filter((t) => existing.has(t)),
        ...[...existing].filter((t) => t.startsWith(prefix) && internalPattern.test(t)),
      ]),
    ].sort();
    const { groups } = await admin.listGroups();
    const helperGroups = groups
      .map((g) => g.groupId)
      .filter((g) => g.startsWith(`${prefix}restore-`) || g.startsWith(`${prefix}global-`))
      .sort();
    const stateDir = join(opts.stateDir, groupId);
    return {
      groupId,
      target: opts.target,
      offsets,
      internalTopics,
      helperGroups,
      stateDir,
      stateDirExists: existsSync(stateDir) && readdirSync(stateDir).some((f) => f !== '.lock'),
    };
  } finally {
    await admin.disconnect();
  }
}

/** Carries out a plan (checking again that the group is empty). Returns the helper groups deleted. */
export async function applyReset(
  kafka: Kafka,
  plan: ResetPlan,
  stateRoot: string,
): Promise<{ helperGroups: string[] }> {
  // the local directory first: refused if an instance on this host holds it
  const lock = await lockStateDir(stateRoot, plan.groupId);
  const admin = kafka.admin();
  await admin.connect();
  try {
    await assertGroupEmpty(admin, plan.groupId);
    const byTopic = new Map<string, { partition: number; offset: string }[]>();
    for (const o of plan.offsets) {
      const list = byTopic.get(o.topic) ?? [];
      list.push({ partition: o.partition, offset: o.to });
      byTopic.set(o.topic, list);
    }
    for (const [topic, partitions] of byTopic) await admin.setOffsets({ groupId: plan.groupId, topic, partitions });
    if (plan.internalTopics.length) await admin.deleteTopics({ topics: plan.internalTopics, timeout: 30_000 });
    const deleted: string[] = [];
    if (plan.helperGroups.length) {
      const { groups } = await admin.describeGroups(plan.helperGroups);
      const empty = groups.filter((g) => g.members.length === 0).map((g) => g.groupId);
      if (empty.length) {
        const results = await admin.deleteGroups(empty).catch(() => []);
        for (const r of results) if (!r.error || r.errorCode === 0) deleted.push(r.groupId);
      }
    }
    for (const f of existsSync(plan.stateDir) ? readdirSync(plan.stateDir) : [])
      if (f !== '.lock') rmSync(join(plan.stateDir, f), { recursive: true, force: true });
    return { helperGroups: deleted };
  } finally {
    await admin.disconnect();
    await lock.release();
  }
}

/** The plan, for people. */
export function describePlan(plan: ResetPlan): string {
  const t = plan.target;
  const to = t.kind === 'time' ? `the first record at or after ${new Date(t.at).toISOString()}` : t.kind;
  const lines = [`consumer group ${plan.groupId}: input offsets to ${to}`];
  for (const o of plan.offsets) lines.push(`  ${o.topic}[${o.partition}]  ${o.from ?? '(none)'} -> ${o.to}`);
  if (!plan.offsets.length) lines.push('  (no input topic exists)');
  lines.push(
    plan.internalTopics.length
      ? `internal topics to delete: ${plan.internalTopics.join(', ')}`
      : 'internal topics to delete: none',
  );
  if (plan.helperGroups.length) lines.push(`helper consumer groups to delete: ${plan.helperGroups.join(', ')}`);
  lines.push(`local state to wipe: ${plan.stateDir}${plan.stateDirExists ? '' : ' (empty)'}`);
  return lines.join('\n');
}

/**
 * UM_OFFSET_RESET for a new group: when the group has never committed an offset for the input
 * topics (and has no members), commit the log ends so that it starts at `latest`. A no-op for
 * `earliest` (the runtime's default) and for a group that has committed before.
 */
export async function applyOffsetResetForNewGroup(
  kafka: Kafka,
  groupId: string,
  topics: readonly string[],
  reset: 'earliest' | 'latest',
): Promise<boolean> {
  if (reset === 'earliest') return false;
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const inputs = topics.filter((t) => existing.has(t));
    if ((await committedOffsets(admin, groupId, inputs)).size > 0) return false;
    const { groups } = await admin.describeGroups([groupId]);
    if ((groups[0]?.members.length ?? 0) > 0) return false;
    const offsets = await targetOffsets(admin, inputs, { kind: 'latest' });
    for (const topic of inputs)
      await admin.setOffsets({
        groupId,
        topic,
        partitions: offsets.filter((o) => o.topic === topic).map((o) => ({ partition: o.partition, offset: o.offset })),
      });
    return true;
  } finally {
    await admin.disconnect();
  }
}

/** `um reset` end to end: plan, print, and (unless dry-run) apply. Returns the printed text. */
export async function runReset(
  kafka: Kafka,
  opts: { applicationId: string; stateDir: string; topology: Topology; target: ResetTarget; dryRun: boolean },
): Promise<string> {
  const plan = await planReset(kafka, opts);
  const text = describePlan(plan);
  if (opts.dryRun) return `${text}\ndry run: nothing changed`;
  const done = await applyReset(kafka, plan, opts.stateDir);
  const skipped = plan.helperGroups.filter((g) => !done.helperGroups.includes(g));
  return `${text}\ndone${skipped.length ? ` (helper groups still in use, kept: ${skipped.join(', ')})` : ''}`;
}
