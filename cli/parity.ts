/**
 * `um parity report`: parity with the legacy system per tenant, computed from the topics (so the
 * figures cover every instance): the decisions on `mail-decisions` and `mail-decisions-shadow`
 * and the records of `legacy-decisions` since a time, paired exactly as the parity processor
 * pairs them (processors/logic/parity.ts). Replayed decisions (header `um.replay.id`) are left out.
 */
import type { Decision, LegacyDecision } from '../processors/logic/model.js';
import {
  DEFAULT_GATE,
  mapLegacyAction,
  parityReport,
  type GateOptions,
  type ParityRecord,
  type TenantParity,
} from '../processors/logic/parity.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { kafkaFor, registryFor } from './app.js';
import type { AppConfig } from './config.js';
import { offsetPlan, readDecoded } from './topic-reader.js';

export const REPLAY_HEADER = 'um.replay.id';

export interface ReportOptions {
  sinceMs: number;
  tenant?: string;
  gate?: Partial<GateOptions>;
  windowMs?: number;
}

export async function collectParityRecords(
  cfg: AppConfig,
  sinceMs: number,
  tenant?: string,
): Promise<{ records: ParityRecord[]; unreadable: number }> {
  const topics = topicNames(cfg.topicPrefix);
  const serdes = mailSerdes(registryFor(cfg), topics);
  const kafka = kafkaFor(cfg, 'um-cli-parity');
  const records: ParityRecord[] = [];
  let unreadable = 0;
  const onUndecodable = (): void => void unreadable++;
  // the legacy side is read from one window earlier, so pairs straddling `since` are complete
  const windowMs = cfg.parity.windowMs;
  for (const topic of [topics.mailDecisions, topics.mailDecisionsShadow]) {
    const plan = await offsetPlan(kafka, topic, sinceMs, undefined);
    await readDecoded<Decision>(
      kafka,
      topic,
      plan,
      serdes.mailDecisions,
      (rs) => {
        for (const r of rs) {
          const d = r.value;
          if (r.headers[REPLAY_HEADER] !== undefined || (tenant && d.tenantId !== tenant)) continue;
          records.push({
            kind: 'new',
            tenantId: d.tenantId,
            mailboxId: d.mailboxId,
            messageId: d.messageId,
            action: d.action,
            reason: d.reason,
            ts: r.timestamp,
          });
        }
      },
      { onUndecodable },
    );
  }
  const plan = await offsetPlan(kafka, topics.legacyDecisions, sinceMs - windowMs, undefined);
  await readDecoded<LegacyDecision>(
    kafka,
    topics.legacyDecisions,
    plan,
    serdes.legacyDecisions,
    (rs) => {
      for (const r of rs) {
        const l = r.value;
        if (tenant && l.tenantId !== tenant) continue;
        let action;
        try {
          action = mapLegacyAction(l.action);
        } catch {
          unreadable++;
          continue;
        }
        records.push({
          kind: 'legacy',
          tenantId: l.tenantId,
          mailboxId: l.mailboxId,
          messageId: l.messageId,
          action,
          ts: r.timestamp,
        });
      }
    },
    { onUndecodable },
  );
  return { records, unreadable };
}

export async function parityReportFromTopics(
  cfg: AppConfig,
  o: ReportOptions,
): Promise<{ tenants: TenantParity[]; unreadable: number; records: number }> {
  const { records, unreadable } = await collectParityRecords(cfg, o.sinceMs, o.tenant);
  // legacy records older than `since` only complete pairs: lone ones are not reported
  const tenants = parityReport(records, {
    windowMs: o.windowMs ?? cfg.parity.windowMs,
    ...(o.gate ? { gate: o.gate } : {}),
    ...(o.tenant ? { tenant: o.tenant } : {}),
    ignoreLoneBefore: o.sinceMs,
  });
  return { tenants, unreadable, records: records.length };
}

const pct = (x: number): string => `${(x * 100).toFixed(2)}%`;

export function formatReport(tenants: readonly TenantParity[], gate: Partial<GateOptions> = {}): string {
  const g = { ...DEFAULT_GATE, ...gate };
  const lines = [
    `promotion gate: match rate >= ${pct(g.minRate)} over >= ${g.minPairs} pairs, and in each of the last ${g.hours} hourly windows`,
  ];
  if (!tenants.length) lines.push('no decisions or legacy decisions in the period');
  for (const t of tenants) {
    lines.push('');
    lines.push(
      `tenant ${t.tenantId}: ${t.pairs} pairs, match rate ${pct(t.matchRate)}, gate ${t.gate.holds ? 'HOLDS' : `does not hold (${t.gate.why})`}`,
    );
    lines.push(
      `  MISMATCH ${t.byClass.MISMATCH}  LEGACY_MISSING ${t.byClass.LEGACY_MISSING}  NEW_MISSING ${t.byClass.NEW_MISSING}  pending ${t.pending}`,
    );
    lines.push(
      `  hourly: ${t.hourly.map((h) => `${new Date(h.hourStart).toISOString().slice(0, 13)}h ${h.pairs} pairs ${h.pairs ? pct(h.matchRate) : '-'}`).join(' | ')}`,
    );
    for (const m of t.topMismatches)
      lines.push(`  ${String(m.count).padStart(7)}  legacy ${m.legacy} → new ${m.new} (${m.reason})`);
  }
  return lines.join('\n');
}

/** Whether the gate holds for the named tenant (or, without one, for every tenant reported). */
export function gateHolds(tenants: readonly TenantParity[], tenant?: string): boolean {
  if (tenant) return tenants.find((t) => t.tenantId === tenant)?.gate.holds ?? false;
  return tenants.length > 0 && tenants.every((t) => t.gate.holds);
}
