/**
 * The Unwanted Mail topology, top to bottom.
 *
 *   user-preferences ──(table)──> [preferences store]        the table; its topic is its changelog
 *   tenant-policies  ──(global table, every instance)
 *   user-interactions ──> learn ──> [preferences] (+ [interaction-dedupe])  every change → user-preferences
 *   mail-events ──> decide (reads [preferences], tenant-policies) ──> mail-decisions
 *
 * The four input topics are co-partitioned by mailboxId: task p owns partition p of each, and
 * its slice of the preference store. Interactions are declared before mail events, so on equal
 * timestamps an interaction is applied before the mail is decided.
 */
import {
  DecideProcessor,
  PREFERENCES_STORE,
  TENANT_POLICIES_TABLE,
  type DecideDeps,
} from '../processors/decide-processor.js';
import { DEDUPE_STORE, LearnProcessor, newerPreferences } from '../processors/learn-processor.js';
import type { MailMetrics } from '../processors/metrics.js';
import { validateTenantPolicy } from '../processors/validate.js';
import { longSerde, stringSerde, validatedSerde } from '../runtime/serdes.js';
import { TopologyBuilder, type Topology } from '../runtime/topology.js';
import type { TopicSerdes } from './serdes.js';
import type { Topics } from './topics.js';

export interface MailTopologyOptions {
  topics: Topics;
  serdes: TopicSerdes;
  metrics?: MailMetrics;
  /** preference records cached per task (reads); writes always go through to the topic */
  preferenceCacheEntries?: number;
  decide?: DecideDeps;
}

export function unwantedMailTopology(o: MailTopologyOptions): Topology {
  const { topics: t, serdes: s } = o;
  return (
    new TopologyBuilder()
      // the preference table: user-preferences is both its source and its changelog
      .store({
        name: PREFERENCES_STORE,
        key: stringSerde,
        value: s.userPreferences,
        changelog: { topic: t.userPreferences },
        cacheMaxEntries: o.preferenceCacheEntries ?? 20_000,
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

      // learning: interactions → preferences
      .source('user-interactions', { topic: t.userInteractions, key: stringSerde, value: s.userInteractions })
      .processor('learn', () => new LearnProcessor(o.metrics), 'user-interactions')
      // write-through like the preferences, so that a crash never leaves a preference change
      // logged without the dedupe entry of the interaction that made it
      .store(
        { name: DEDUPE_STORE, key: stringSerde, value: longSerde, cacheMaxEntries: 10_000, writeThrough: true },
        'learn',
      )
      .connect(PREFERENCES_STORE, 'learn')

      // deciding: mail events → decisions
      .source('mail-events', { topic: t.mailEvents, key: stringSerde, value: s.mailEvents })
      .processor('decide', () => new DecideProcessor({ metrics: o.metrics, ...o.decide }), 'mail-events')
      .connect(PREFERENCES_STORE, 'decide')
      .sink('mail-decisions', { topic: t.mailDecisions, key: stringSerde, value: s.mailDecisions }, 'decide')
      .build()
  );
}
