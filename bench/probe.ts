/**
 * The latency probe's kafkajs consumer settings, in one place so a unit test can pin them.
 *
 * The probe must add as little delay as possible to what it measures:
 * - autoCommit off: with it on, kafkajs commits after every batch and waits for the commit before
 *   fetching the next one, which alone added ~31 ms at p50 and ~60 ms at p99 (issue 12). The probe's
 *   group is unique per run and reads from the beginning, so it never needs a committed offset;
 * - a fetch returns as soon as one byte is there (minBytes 1) and waits at most `maxWaitTimeInMs`
 *   when there is nothing;
 * - every partition of a fetch is handed over at once (`partitionsConsumedConcurrently`), so a batch
 *   of one partition does not wait behind another's.
 */
import type { ConsumerConfig, ConsumerRunConfig } from 'kafkajs';

export const PROBE_MAX_WAIT_MS = 100;

/** The probe consumer's client settings for a group id (unique per run). */
export function probeConsumerConfig(groupId: string): ConsumerConfig {
  return {
    groupId,
    minBytes: 1,
    maxWaitTimeInMs: PROBE_MAX_WAIT_MS,
    allowAutoTopicCreation: false,
    // one consumer, no peers: heartbeats and rebalances do not matter, reading does
    sessionTimeout: 30_000,
    readUncommitted: false,
  };
}

/** The probe's `consumer.run` settings, without the handler. */
export function probeRunConfig(partitions: number): Omit<ConsumerRunConfig, 'eachBatch' | 'eachMessage'> {
  return {
    autoCommit: false,
    eachBatchAutoResolve: true,
    partitionsConsumedConcurrently: Math.max(1, partitions),
  };
}
