import { describe, expect, it } from 'vitest';
import { PROBE_MAX_WAIT_MS, probeConsumerConfig, probeRunConfig } from '../../../bench/probe.js';
import { pacing, producerSettings } from '../../../demo/traffic.js';

describe('the latency probe consumer', () => {
  it('never commits: autoCommit off, so no batch waits for a commit', () => {
    const run = probeRunConfig(6);
    expect(run.autoCommit).toBe(false);
    // offsets are resolved locally only; nothing is sent to the broker per batch
    expect(run.eachBatchAutoResolve).toBe(true);
    expect(run).not.toHaveProperty('autoCommitInterval');
    expect(run).not.toHaveProperty('autoCommitThreshold');
  });

  it('hands every partition of a fetch over at once', () => {
    expect(probeRunConfig(12).partitionsConsumedConcurrently).toBe(12);
    expect(probeRunConfig(0).partitionsConsumedConcurrently).toBe(1);
  });

  it('fetches as soon as one byte is there, waits at most 100 ms when idle, and uses the given group', () => {
    expect(probeConsumerConfig('bench-x-latency-probe')).toEqual({
      groupId: 'bench-x-latency-probe',
      minBytes: 1,
      maxWaitTimeInMs: 100,
      allowAutoTopicCreation: false,
      sessionTimeout: 30_000,
      readUncommitted: false,
    });
    expect(PROBE_MAX_WAIT_MS).toBe(100);
  });
});

describe('the producer settings printed with latency results', () => {
  it('describe the paced producer at 1,000 mails/s: acks all, one request of ~20 mails every 20 ms', () => {
    expect(pacing(1000)).toEqual({ tickMs: 20, maxBatch: 200 });
    expect(producerSettings(1000)).toMatchObject({
      client: 'kafkajs',
      acks: -1,
      lingerMs: 0,
      batchMails: 20,
      batchEveryMs: 20,
      compression: 'none',
      idempotent: false,
    });
  });

  it('tick between 10 and 50 ms; at least one mail per batch', () => {
    expect(pacing(10)).toEqual({ tickMs: 50, maxBatch: 2 });
    expect(pacing(100_000)).toEqual({ tickMs: 10, maxBatch: 20_000 });
    expect(producerSettings(10).batchMails).toBe(1);
    expect(producerSettings(100_000).batchMails).toBe(1000);
    expect(() => pacing(0)).toThrow(RangeError);
  });
});
