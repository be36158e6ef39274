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
import { DEFAULT_ROLLOUT_MODE } from './model.js';
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
 * Stable 32-bit hash of a string: FNV-1a (offset basis 0x811c9dc5, prime 0x01000193) over the UTF-8
 * bytes, followed by the murmur3 `fmix32` finalizer so that ids differing only in their last
 * characters spread over all buckets. Unsigned result. This function is part of the rollout contract:
 * changing it reshuffles which mailboxes are LIVE.
 */
export function stableHash32(s: string): number {
  let h = 0x811c9dc5;
  const byte = (b: number): void => {
    h ^= b;
    h = Math.imul(h, 0x01000193);
  };
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      byte(c);
    } else if (c < 0x800) {
      byte(0xc0 | (c >> 6));
      byte(0x80 | (c & 0x3f));
    } else {
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate: U+FFFD, as TextEncoder does
      if (c < 0x10000) {
        byte(0xe0 | (c >> 12));
        byte(0x80 | ((c >> 6) & 0x3f));
        byte(0x80 | (c & 0x3f));
      } else {
        byte(0xf0 | (c >> 18));
        byte(0x80 | ((c >> 12) & 0x3f));
        byte(0x80 | ((c >> 6) & 0x3f));
        byte(0x80 | (c & 0x3f));
      }
    }
  }
  // murmur3 fmix32
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The mailbox's rollout bucket, 0..99: stableHash32(tenantId + '\u0000' + mailboxId) % 100. */
export function rolloutBucket(tenantId: string, mailboxId: string): number {
  return stableHash32(tenantId + '\u0000' + mailboxId) % 100;
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
