/**
 * `um replay`: re-decides the `mail-events` of a time window [from, to) (§6).
 *
 *  - The window's offsets come from the broker's offsetsForTimes, per partition; records whose
 *    timestamp falls outside the window (out-of-order producers) are skipped.
 *  - It reads group-less (runtime/assigned-reader.ts: no consumer group is joined, so the live
 *    group's offsets do not move) and decides with the pure rules (§3) against the preferences and tenant
 *    policies as they stand now (read from their topics), without learning and without writing
 *    `user-preferences`.
 *  - The mode of each mailbox is the one the rollout flags give now; OFF mailboxes are skipped.
 *  - Output: `<prefix>mail-decisions-replay` by default (created like mail-decisions), another
 *    topic with --output, or with --live the live topics (LIVE → mail-decisions, SHADOW →
 *    mail-decisions-shadow). Every record carries the header `um.replay.id`.
 *  - --dry-run prints the offset plan per partition and the record count.
 *  - Ctrl-C stops cleanly after the batch in hand and prints the command that resumes.
 */
import { randomBytes } from 'node:crypto';
import { Partitioners, type Kafka, type Message } from 'kafkajs';
import { decide } from '../processors/logic/decide.js';
import type { Decision, MailEvent, RolloutFlag, TenantPolicy, UserPreferences } from '../processors/logic/model.js';
import { GLOBAL_FLAG_SCOPE } from '../processors/logic/model.js';
import { effectiveMode, flagProblem } from '../processors/logic/rollout.js';
import { validateMailEvent } from '../processors/validate.js';
import { endOffsets } from '../runtime/partition-reader.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { kafkaFor, registryFor } from './app.js';
import type { AppConfig } from './config.js';
import { REPLAY_HEADER } from './parity.js';
import { offsetPlan, readDecoded, type PartitionPlan } from './topic-reader.js';

export interface ReplayOptions {
  fromMs: number;
  toMs: number;
  tenant?: string;
  partitions?: number[];
  /** output topic (default <prefix>mail-decisions-replay) */
  output?: string;
  /** write to the live topics instead */
  live?: boolean;
  dryRun?: boolean;
  /** replay id (header value and consumer group suffix); default random */
  id?: string;
  /** partition → offset to start from instead of the window's first offset (to resume) */
  resume?: Map<number, number>;
  signal?: AbortSignal;
  /** clock for decidedAt (default Date.now) */
  now?: () => number;
}

export interface ReplayIo {
  out(line: string): void;
  /** progress on one line, redrawn (a terminal); otherwise plain lines */
  tty?: boolean;
  progressEveryMs?: number;
}

export interface ReplaySummary {
  id: string;
  plan: PartitionPlan[];
  planned: number;
  read: number;
  written: number;
  skipped: { outsideWindow: number; otherTenant: number; off: number; invalid: number; undecodable: number };
  byTopic: Record<string, number>;
  /** partition → next offset to read (complete when it equals plan.to) */
  position: Map<number, number>;
  stopped: boolean;
}

export function replayOutputTopic(cfg: AppConfig): string {
  return `${cfg.topicPrefix}mail-decisions-replay`;
}

async function ensureTopic(kafka: Kafka, topic: string, partitions: number, replicationFactor: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if ((await admin.listTopics()).includes(topic)) return;
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic,
          numPartitions: partitions,
          replicationFactor,
          configEntries: [{ name: 'cleanup.policy', value: 'delete' }],
        },
      ],
    });
  } finally {
    await admin.disconnect();
  }
}

export function formatPlan(plan: readonly PartitionPlan[]): string {
  const lines = ['partition  from offset  to offset  records'];
  for (const p of plan)
    lines.push(
      `${String(p.partition).padStart(9)}  ${String(p.from).padStart(11)}  ${String(p.to).padStart(9)}  ${String(p.to - p.from).padStart(7)}`,
    );
  lines.push(`total ${plan.reduce((n, p) => n + p.to - p.from, 0)} records (before the tenant and timestamp filters)`);
  return lines.join('\n');
}

function bar(done: number, total: number, width = 30): string {
  const f = total ? Math.min(1, done / total) : 1;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${(f * 100).toFixed(1)}%`;
}

export async function replay(cfg: AppConfig, o: ReplayOptions, io: ReplayIo): Promise<ReplaySummary> {
  const id =
    o.id ?? `replay-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
  const topics = topicNames(cfg.topicPrefix);
  const kafka = kafkaFor(cfg, `${cfg.applicationId}-${id}`);
  let plan = await offsetPlan(kafka, topics.mailEvents, o.fromMs, o.toMs, o.partitions);
  if (o.resume)
    plan = plan.map((p) => ({ ...p, from: Math.min(p.to, Math.max(p.from, o.resume!.get(p.partition) ?? p.from)) }));
  const planned = plan.reduce((n, p) => n + p.to - p.from, 0);
  const summary: ReplaySummary = {
    id,
    plan,
    planned,
    read: 0,
    written: 0,
    skipped: { outsideWindow: 0, otherTenant: 0, off: 0, invalid: 0, undecodable: 0 },
    byTopic: {},
    position: new Map(plan.map((p) => [p.partition, p.from])),
    stopped: false,
  };
  if (o.dryRun) {
    io.out(`replay ${id}: mail-events [${new Date(o.fromMs).toISOString()}, ${new Date(o.toMs).toISOString()})`);
    io.out(formatPlan(plan));
    return summary;
  }

  // the state as it stands now: preferences of the partitions replayed, policies, flags
  const serdes = mailSerdes(registryFor(cfg), topics);
  const prefs = new Map<string, UserPreferences>();
  const prefPlan = await offsetPlan(
    kafka,
    topics.userPreferences,
    undefined,
    undefined,
    plan.map((p) => p.partition),
  );
  await readDecoded(kafka, topics.userPreferences, prefPlan, serdes.userPreferences, (rs) => {
    for (const r of rs) {
      const cur = prefs.get(r.value.mailboxId);
      if (!cur || r.value.version > cur.version) prefs.set(r.value.mailboxId, r.value);
    }
  });
  const policies = new Map<string, TenantPolicy>();
  await readDecoded(
    kafka,
    topics.tenantPolicies,
    await offsetPlan(kafka, topics.tenantPolicies, undefined, undefined),
    serdes.tenantPolicies,
    (rs) => {
      for (const r of rs) if (r.key !== null) policies.set(r.key, r.value);
    },
  );
  const flags = new Map<string, RolloutFlag>();
  await readDecoded(
    kafka,
    topics.rolloutFlags,
    await offsetPlan(kafka, topics.rolloutFlags, undefined, undefined),
    serdes.rolloutFlags,
    (rs) => {
      for (const r of rs) if (r.key !== null && !flagProblem(r.key, r.value)) flags.set(r.key, r.value);
    },
  );

  const output = o.output ?? replayOutputTopic(cfg);
  if (!o.live) {
    const partitions = (await endOffsets(kafka, [topics.mailEvents])).size;
    await ensureTopic(kafka, output, Math.max(1, partitions), cfg.replicationFactor);
  }
  await serdes.mailDecisions.init();
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  const now = o.now ?? Date.now;
  const started = Date.now();
  let lastProgress = 0;
  const progress = (final = false): void => {
    const t = Date.now();
    if (!final && t - lastProgress < (io.progressEveryMs ?? 1000)) return;
    lastProgress = t;
    const secs = Math.max(0.001, (t - started) / 1000);
    const rate = summary.read / secs;
    const eta = rate > 0 ? Math.max(0, (planned - summary.read) / rate) : 0;
    const line = `${bar(summary.read, planned)} ${summary.read}/${planned} records, ${rate.toFixed(0)}/s, ETA ${eta.toFixed(0)} s, ${summary.written} decisions written`;
    if (io.tty) io.out(`\r${line}${final ? '\n' : ''}`);
    else io.out(line);
  };
  try {
    await readDecoded<MailEvent>(
      kafka,
      topics.mailEvents,
      plan,
      serdes.mailEvents,
      async (rs) => {
        const out = new Map<string, Message[]>();
        // Ctrl-C: stop at the record in hand; what was read before is sent and its position kept
        let lastOffset = -1;
        for (const r of rs) {
          if (o.signal?.aborted) break;
          lastOffset = r.offset;
          summary.read++;
          if (summary.read % 1000 === 0) progress();
          const e = r.value;
          if (r.timestamp < o.fromMs || r.timestamp >= o.toMs) {
            summary.skipped.outsideWindow++;
            continue;
          }
          if (o.tenant && e.tenantId !== o.tenant) {
            summary.skipped.otherTenant++;
            continue;
          }
          try {
            validateMailEvent(r.key, e);
          } catch {
            summary.skipped.invalid++;
            continue;
          }
          const mode = effectiveMode(
            { global: flags.get(GLOBAL_FLAG_SCOPE), tenant: flags.get(e.tenantId) },
            e.tenantId,
            e.mailboxId,
            cfg.defaultMode,
          );
          if (mode === 'OFF') {
            summary.skipped.off++;
            continue;
          }
          const d = decide(e, prefs.get(e.mailboxId), policies.get(e.tenantId));
          const decidedAt = now();
          const decision: Decision = {
            eventId: e.eventId,
            messageId: e.messageId,
            tenantId: e.tenantId,
            mailboxId: e.mailboxId,
            action: d.action,
            reason: d.reason,
            matchedKey: d.matchedKey,
            preferencesVersion: d.preferencesVersion,
            mode,
            decidedAt,
            dwellMs: decidedAt - e.receivedAt,
          };
          const topic = o.live ? (mode === 'LIVE' ? topics.mailDecisions : topics.mailDecisionsShadow) : output;
          let list = out.get(topic);
          if (!list) out.set(topic, (list = []));
          list.push({
            key: e.mailboxId,
            value: serdes.mailDecisions.serialize(topic, decision),
            timestamp: String(r.timestamp),
            headers: { [REPLAY_HEADER]: id },
          });
        }
        if (out.size) {
          await producer.sendBatch({
            acks: -1,
            topicMessages: [...out].map(([topic, messages]) => ({ topic, messages })),
          });
          for (const [topic, messages] of out) {
            summary.written += messages.length;
            summary.byTopic[topic] = (summary.byTopic[topic] ?? 0) + messages.length;
          }
        }
        if (lastOffset >= 0) summary.position.set(rs[0]!.partition, lastOffset + 1);
        progress();
      },
      { ...(o.signal ? { signal: o.signal } : {}), onUndecodable: () => void summary.skipped.undecodable++ },
    );
    // partitions whose range had only undecodable or null records
    for (const p of plan) summary.position.set(p.partition, Math.max(summary.position.get(p.partition)!, p.to));
  } catch (e) {
    if (!o.signal?.aborted) throw e;
    summary.stopped = true;
  } finally {
    await producer.disconnect().catch(() => undefined);
  }
  progress(true);
  return summary;
}

/** The `--resume` value that continues a stopped replay. */
export function resumeArg(s: ReplaySummary): string {
  return s.plan
    .filter((p) => (s.position.get(p.partition) ?? p.from) < p.to)
    .map((p) => `${p.partition}:${s.position.get(p.partition) ?? p.from}`)
    .join(',');
}

export function parseResume(v: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const part of v.split(',').filter(Boolean)) {
    const x = /^(\d+):(\d+)$/.exec(part.trim());
    if (!x) throw new Error(`--resume takes partition:offset pairs (e.g. 0:1200,3:88), got "${part}"`);
    m.set(Number(x[1]), Number(x[2]));
  }
  return m;
}
