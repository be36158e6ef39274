/**
 * §6 rollout flags: the effective mode of a mailbox.
 *
 * - Requested mode: the tenant's flag, or `defaultMode` (SHADOW unless configured) when the tenant
 *   has none.
 * - Capped by the global `*` flag: effective = min(requested, global) in the order OFF < SHADOW < LIVE.
 *   No global flag = no cap.
 * - LIVE with livePercent < 100: the mailbox is LIVE iff rolloutBucket(tenantId, mailboxId) <
 *   livePercent, else SHADOW. When both flags are LIVE, both percentages apply (the global one is a
 *   cap too), i.e. the effective percentage is min(tenant, global); a tenant without a flag whose
 *   default mode is LIVE counts as 100%. Because the bucket is fixed per mailbox, raising the
 *   percentage only adds mailboxes and lowering it only removes them.
 * - A livePercent that is not a number (NaN) counts as 0; values are not otherwise clamped (<= 0: no
 *   mailbox, >= 100: every mailbox).
 */
import murmurhash from 'murmurhash';
import { DEFAULT_ROLLOUT_MODE, ROLLOUT_MODES } from './model.js';
import type { RolloutFlag, RolloutMode } from './model.js';

const RANK: Readonly<Record<RolloutMode, number>> = { OFF: 0, SHADOW: 1, LIVE: 2 };

/** OFF = 0 < SHADOW = 1 < LIVE = 2. */
export function modeRank(mode: RolloutMode): number {
  return RANK[mode];
}

/** The lower of two modes (OFF < SHADOW < LIVE). */
export function capMode(mode: RolloutMode, cap: RolloutMode | undefined): RolloutMode {
  if (cap === undefined) return mode;
  return RANK[cap] < RANK[mode] ? cap : mode;
}

/**
 * The rollout bucket contract, computable with a stock library in any language (the Unleash
 * convention): `murmur3_x86_32(utf8(tenantId + ":" + mailboxId), seed 0) % 100`, unsigned.
 * Test vectors: `acme:mb-1` → 514334219 → 19; `tenant-7:alice@example.com` → 405548882 → 82;
 * `t:Zoë` → 2778054340 → 40. Changing it reshuffles which mailboxes are LIVE.
 */
export function rolloutHash(tenantId: string, mailboxId: string): number {
  // murmurhash 2.x encodes strings as UTF-8 and returns the unsigned 32-bit hash
  return murmurhash.v3(`${tenantId}:${mailboxId}`, 0) >>> 0;
}

/** The mailbox's rollout bucket, 0..99. */
export function rolloutBucket(tenantId: string, mailboxId: string): number {
  return rolloutHash(tenantId, mailboxId) % 100;
}

/** Why a flag record is refused, or undefined when it is well formed. */
export function flagProblem(scope: string, flag: RolloutFlag): { code: string; message: string } | undefined {
  if (!(ROLLOUT_MODES as readonly string[]).includes(flag.mode))
    return { code: 'FLAG_MODE', message: `mode must be one of ${ROLLOUT_MODES.join(', ')}` };
  if (!Number.isInteger(flag.livePercent) || flag.livePercent < 0 || flag.livePercent > 100)
    return { code: 'FLAG_PERCENT', message: `livePercent must be an integer within 0..100, got ${flag.livePercent}` };
  if (!scope || flag.scope !== scope)
    return { code: 'FLAG_SCOPE', message: 'the record key must equal the flag scope' };
  return undefined;
}

function percentOf(flag: RolloutFlag | undefined): number {
  if (flag === undefined) return 100;
  const p = flag.livePercent;
  return Number.isNaN(p) ? 0 : p;
}

export interface RolloutFlags {
  /** the `*` flag */
  global?: RolloutFlag | undefined;
  /** the tenant's flag */
  tenant?: RolloutFlag | undefined;
}

export function effectiveMode(
  flags: RolloutFlags,
  tenantId: string,
  mailboxId: string,
  defaultMode: RolloutMode = DEFAULT_ROLLOUT_MODE,
): RolloutMode {
  const requested = flags.tenant?.mode ?? defaultMode;
  const mode = capMode(requested, flags.global?.mode);
  if (mode !== 'LIVE') return mode;
  // Both the tenant's request and the global cap are LIVE here (or absent).
  const percent = Math.min(percentOf(flags.tenant), percentOf(flags.global));
  if (percent >= 100) return 'LIVE';
  return rolloutBucket(tenantId, mailboxId) < percent ? 'LIVE' : 'SHADOW';
}
