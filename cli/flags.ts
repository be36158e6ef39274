/**
 * `um flags set|list|bucket`: the rollout flags (§6) from the command line. A flag is checked
 * before it is written (mode, livePercent 0..100, a reason): the CLI never writes a malformed one.
 */
import { hostname, userInfo } from 'node:os';
import { z } from 'zod';
import { GLOBAL_FLAG_SCOPE, ROLLOUT_MODES, type RolloutFlag } from '../processors/logic/model.js';
import { flagProblem, rolloutBucket, rolloutHash } from '../processors/logic/rollout.js';
import { ConfigError } from '../runtime/errors.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { kafkaFor, registryFor } from './app.js';
import type { AppConfig } from './config.js';
import { readWhole } from './topic-reader.js';

const flagInput = z.object({
  scope: z.string().min(1, 'scope must be "*" or a tenantId'),
  mode: z.enum(ROLLOUT_MODES, { errorMap: () => ({ message: `mode must be one of ${ROLLOUT_MODES.join(', ')}` }) }),
  livePercent: z
    .number({ invalid_type_error: '--percent must be an integer 0..100' })
    .int('--percent must be an integer 0..100')
    .min(0, '--percent must be within 0..100')
    .max(100, '--percent must be within 0..100'),
  reason: z.string().trim().min(1, '--reason is required: say why the flag changes'),
  updatedBy: z.string().min(1),
});

function defaultUser(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return `unknown@${hostname()}`;
  }
}

/** Builds and checks a flag from command-line input; throws a ConfigError naming what is wrong. */
export function buildFlag(
  input: { scope: string; mode: string; percent?: string | undefined; reason?: string | undefined; by?: string },
  now = Date.now(),
): RolloutFlag {
  const percentText = input.percent ?? (input.mode.toUpperCase() === 'LIVE' ? '100' : '0');
  const r = flagInput.safeParse({
    scope: input.scope,
    mode: input.mode.toUpperCase(),
    livePercent: /^-?\d+(\.\d+)?$/.test(percentText) ? Number(percentText) : Number.NaN,
    reason: input.reason ?? '',
    updatedBy: input.by ?? defaultUser(),
  });
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ConfigError(String(i.path[0] ?? 'flag'), i.message);
  }
  const flag: RolloutFlag = { ...r.data, updatedAt: now };
  const problem = flagProblem(flag.scope, flag);
  if (problem) throw new ConfigError('flag', problem.message);
  return flag;
}

export async function setFlag(cfg: AppConfig, flag: RolloutFlag): Promise<void> {
  const topics = topicNames(cfg.topicPrefix);
  const serde = mailSerdes(registryFor(cfg), topics).rolloutFlags;
  await serde.init();
  const producer = kafkaFor(cfg, 'um-cli-flags').producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({
      topic: topics.rolloutFlags,
      acks: -1,
      messages: [
        { key: flag.scope, value: serde.serialize(topics.rolloutFlags, flag), timestamp: String(flag.updatedAt) },
      ],
    });
  } finally {
    await producer.disconnect();
  }
}

export interface ListedFlag {
  scope: string;
  flag: RolloutFlag | undefined;
  /** why the newest record of the scope is refused (the last good one is then shown) */
  refused?: string;
}

/** The flags in force: the newest well-formed record per scope, as the service takes them. */
export async function listFlags(cfg: AppConfig): Promise<ListedFlag[]> {
  const topics = topicNames(cfg.topicPrefix);
  const serde = mailSerdes(registryFor(cfg), topics).rolloutFlags;
  const records = await readWhole(kafkaFor(cfg, 'um-cli-flags'), topics.rolloutFlags, serde, { tombstones: true });
  const out = new Map<string, ListedFlag>();
  for (const r of records) {
    if (r.key === null) continue;
    if (r.value === null) {
      out.delete(r.key); // a tombstone: the scope has no flag any more
      continue;
    }
    const problem = flagProblem(r.key, r.value);
    const cur = out.get(r.key);
    if (problem) out.set(r.key, { scope: r.key, flag: cur?.flag, refused: problem.message });
    else out.set(r.key, { scope: r.key, flag: r.value });
  }
  return [...out.values()].sort((a, b) =>
    a.scope === GLOBAL_FLAG_SCOPE ? -1 : b.scope === GLOBAL_FLAG_SCOPE ? 1 : a.scope.localeCompare(b.scope),
  );
}

export function formatFlags(flags: readonly ListedFlag[], defaultMode: string): string {
  const lines = [`default mode for tenants without a flag: ${defaultMode} (UM_DEFAULT_MODE)`];
  if (!flags.length) lines.push('no flags set');
  for (const f of flags) {
    const v = f.flag;
    const mode = v ? (v.mode === 'LIVE' ? `LIVE ${v.livePercent}%` : v.mode) : '(none)';
    lines.push(
      `${f.scope.padEnd(20)} ${mode.padEnd(10)} ${v ? new Date(v.updatedAt).toISOString() : ''}  by ${v?.updatedBy ?? '-'}: ${v?.reason ?? ''}` +
        (f.refused ? `  [newest record refused: ${f.refused}]` : ''),
    );
  }
  return lines.join('\n');
}

export function formatBucket(tenantId: string, mailboxId: string): string {
  const h = rolloutHash(tenantId, mailboxId);
  const b = rolloutBucket(tenantId, mailboxId);
  return `murmur3_x86_32("${tenantId}:${mailboxId}", seed 0) = ${h}; bucket ${b}: LIVE when the tenant is LIVE with livePercent > ${b}`;
}
