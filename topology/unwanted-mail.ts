/**
 * The Unwanted Mail topology, top to bottom.
 *
 *   user-preferences ──(table)──> [preferences store]        the table; its topic is its changelog
 *   tenant-policies  ──(global table, every instance)
 *   user-interactions ──> learn ──> [preferences] (+ [interaction-dedupe])  every change → user-preferences
 *   rollout-flags    ──(global table, every instance)
 *   mail-events ──> decide (reads [preferences], tenant-policies, rollout-flags)
 *                     ├─ LIVE   ──> mail-decisions
 *                     ├─ SHADOW ──> mail-decisions-shadow
 *                     └─ LIVE and SHADOW ──> parity-new ──┐   [parity-pairs], [parity-expiry]
 *   legacy-decisions ──> parity-legacy ───────────────────┴──> parity-mismatches
 *
 * The four input topics are co-partitioned by mailboxId: task p owns partition p of each, and
 * its slice of the preference store. Interactions are declared before mail events, so on equal
 * timestamps an interaction is applied before the mail is decided.
 */
import {
  DecideProcessor,
  LIVE_SINK,
  PARITY_NEW,
  PREFERENCES_STORE,
  SHADOW_SINK,
  TENANT_POLICIES_TABLE,
  type DecideDeps,
} from '../processors/decide-processor.js';
import {
  PARITY_EXPIRY_STORE,
  PARITY_SINK,
  PARITY_STORE,
  ParityProcessor,
  type ParityOptions,
} from '../processors/parity-processor.js';
import { flagEntrySerde, ROLLOUT_FLAGS_TABLE, RolloutFlagBook } from '../processors/rollout-flags.js';
import { decodeEntry, encodeEntry, type ParityEntry } from '../processors/logic/parity.js';
import { DEDUPE_STORE, LearnProcessor, newerPreferences } from '../processors/learn-processor.js';
import type { MailMetrics } from '../processors/metrics.js';
import { validateTenantPolicy } from '../processors/validate.js';
import { longSerde, stringSerde, validatedSerde, type Serde } from '../runtime/serdes.js';
import { TopologyBuilder, type Topology } from '../runtime/topology.js';
import type { TopicSerdes } from './serdes.js';
import type { Topics } from './topics.js';

export interface MailTopologyOptions {
  topics: Topics;
  serdes: TopicSerdes;
  metrics?: MailMetrics;
  /**
   * bytes of the preference cache per instance, shared by its tasks (default
   * DEFAULT_PREFERENCE_CACHE_BYTES; 0: no cache); writes always go through to the topic
   */
  preferenceCacheBytes?: number;
  /** deprecated: also bounds the preference records cached per task (0: no cache) */
  preferenceCacheEntries?: number;
  decide?: Omit<DecideDeps, 'flags' | 'parity' | 'metrics'>;
  /** the rollout flags book of this instance (default: a new one, default mode SHADOW) */
  flags?: RolloutFlagBook;
  /** parity with legacy-decisions (default on); false leaves legacy-decisions unread */
  parity?: Omit<ParityOptions, 'metrics' | 'flags'> | false;
}

const MiB = 1024 * 1024;
/**
 * The record caches are bounded in bytes per instance (shared by its tasks): preferences
 * UM_PREFERENCE_CACHE_BYTES (default below), interaction dedupe 8 MiB, parity pairs 16 MiB,
 * parity expiry 8 MiB (these three count key + value bytes + overhead: their decoded values are
 * a few strings and numbers).
 */
export const DEFAULT_PREFERENCE_CACHE_BYTES = 64 * MiB;
/**
 * A cached preference value keeps its decoded record alive (the metered store memoizes it): about
 * 4.5 × the Avro bytes on the heap (measured: 1,174 B for a 265-B record of 3-8 entries). So an
 * entry counts as key + 5.5 × value + overhead.
 */
export const PREFERENCE_CACHE_VALUE_FACTOR = 5.5;

/** The parity store's values, compact (see encodeEntry). */
const parityEntrySerde: Serde<ParityEntry> = {
  serialize: (_t, v) => Buffer.from(encodeEntry(v), 'utf8'),
  deserialize: (_t, b) => decodeEntry(b.toString('utf8')),
};

export function unwantedMailTopology(o: MailTopologyOptions): Topology {
  const { topics: t, serdes: s } = o;
  const flags = o.flags ?? new RolloutFlagBook({ ...(o.metrics ? { metrics: o.metrics } : {}) });
  const parity = o.parity === false ? undefined : (o.parity ?? {});
  const b = new TopologyBuilder()
    // the preference table: user-preferences is both its source and its changelog
    .store({
      name: PREFERENCES_STORE,
      key: stringSerde,
      value: s.userPreferences,
      changelog: { topic: t.userPreferences },
      // 0 bytes: no cache (and so no prefetch either)
      ...(o.preferenceCacheEntries !== undefined || o.preferenceCacheBytes === 0
        ? { cacheMaxEntries: o.preferenceCacheBytes === 0 ? 0 : o.preferenceCacheEntries }
        : {}),
      cacheMaxBytes: o.preferenceCacheBytes ?? DEFAULT_PREFERENCE_CACHE_BYTES,
      cacheValueBytesFactor: PREFERENCE_CACHE_VALUE_FACTOR,
      writeThrough: true,
      prefetch: true,
    })
    .table({
      name: 'preferences-table',
      topic: t.userPreferences,
      store: PREFERENCES_STORE,
      key: stringSerde,
      value: s.userPreferences,
      shouldApply: newerPreferences,
    })
    // a policy that fails validation is skipped: the tenant's last good policy stays in force
    .globalTable({
      name: TENANT_POLICIES_TABLE,
      topic: t.tenantPolicies,
      key: stringSerde,
      value: validatedSerde(s.tenantPolicies, validateTenantPolicy),
    })
    .globalTable({
      name: ROLLOUT_FLAGS_TABLE,
      topic: t.rolloutFlags,
      key: stringSerde,
      value: flagEntrySerde(s.rolloutFlags, flags.remember),
    })

    // learning: interactions → preferences
    .source('user-interactions', { topic: t.userInteractions, key: stringSerde, value: s.userInteractions })
    .processor('learn', () => new LearnProcessor(o.metrics), 'user-interactions')
    // write-through like the preferences, so that a crash never leaves a preference change
    // logged without the dedupe entry of the interaction that made it
    .store(
      { name: DEDUPE_STORE, key: stringSerde, value: longSerde, cacheMaxBytes: 8 * MiB, writeThrough: true },
      'learn',
    )
    .connect(PREFERENCES_STORE, 'learn')

    // deciding: mail events → decisions
    .source('mail-events', { topic: t.mailEvents, key: stringSerde, value: s.mailEvents })
    .processor(
      'decide',
      () => new DecideProcessor({ metrics: o.metrics, ...o.decide, flags, parity: parity !== undefined }),
      'mail-events',
    )
    .connect(PREFERENCES_STORE, 'decide')
    .sink(LIVE_SINK, { topic: t.mailDecisions, key: stringSerde, value: s.mailDecisions }, 'decide')
    .sink(SHADOW_SINK, { topic: t.mailDecisionsShadow, key: stringSerde, value: s.mailDecisionsShadow }, 'decide');
  if (!parity) return b.build();
  const rates = ParityProcessor.rates();
  const popts = { ...parity, flags, rates, ...(o.metrics ? { metrics: o.metrics } : {}) };
  return (
    b
      // parity: new decisions (from decide) and legacy decisions, paired per message in event time
      .processor(PARITY_NEW, () => new ParityProcessor('new', popts), 'decide')
      .source('legacy-decisions', { topic: t.legacyDecisions, key: stringSerde, value: s.legacyDecisions })
      .processor('parity-legacy', () => new ParityProcessor('legacy', popts), 'legacy-decisions')
      .store(
        { name: PARITY_STORE, key: stringSerde, value: parityEntrySerde, cacheMaxBytes: 16 * MiB },
        PARITY_NEW,
        'parity-legacy',
      )
      .store(
        { name: PARITY_EXPIRY_STORE, key: stringSerde, value: longSerde, cacheMaxBytes: 8 * MiB },
        PARITY_NEW,
        'parity-legacy',
      )
      .sink(
        PARITY_SINK,
        { topic: t.parityMismatches, key: stringSerde, value: s.parityMismatches },
        PARITY_NEW,
        'parity-legacy',
      )
      .build()
  );
}
