/**
 * The record collector against the real broker's limits: a topic with a 64 KiB
 * `max.message.bytes` takes several MiB of records in order through byte-capped requests; a
 * record too large for it goes to the DLQ with RECORD_TOO_LARGE and the next ones still go
 * through; when the collector believes a larger limit than the broker applies, refused requests
 * are split until they pass. The producer is kafkajs' idempotent producer (one request in flight).
 */
import type { ConfigResourceTypes, Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KafkaRecordCollector, TopicLimits, type OutgoingRecord } from '../../runtime/record-collector.js';
import { kafkaClient, readAll, uniqueName, waitUntil, withAdmin } from './helpers.js';

const LIMIT = 64 * 1024;

async function createTopic(topic: string, partitions: number, maxMessageBytes?: number): Promise<void> {
  await withAdmin(async (a) => {
    await a.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic,
          numPartitions: partitions,
          configEntries: maxMessageBytes ? [{ name: 'max.message.bytes', value: String(maxMessageBytes) }] : [],
        },
      ],
    });
    // (waitForLeaders can fail on a fresh topic's UNKNOWN_TOPIC_OR_PARTITION: poll instead)
    await waitUntil(`${topic} has leaders`, async () => {
      const md = await a.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
      return md?.topics[0]?.partitions.length === partitions && md.topics[0].partitions.every((p) => p.leader >= 0);
    });
  });
}

function record(topic: string, i: number, bytes: number, partition?: number): OutgoingRecord {
  const value = Buffer.alloc(bytes, 120);
  value.write(String(i).padStart(8, '0'));
  const r: OutgoingRecord = { topic, key: Buffer.from(`key-${i % 97}`), value, timestamp: Date.now() };
  if (partition !== undefined) r.partition = partition;
  return r;
}

const seq = (v: Buffer | null) => Number(v!.subarray(0, 8).toString());

describe('record collector against the broker limits', () => {
  let producer: Producer;
  beforeAll(async () => {
    producer = kafkaClient().producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    await producer.connect();
  });
  afterAll(async () => {
    await producer.disconnect();
  });

  it('reads the limits the broker applies (topic override and broker default)', async () => {
    const small = uniqueName('lim-small');
    const plain = uniqueName('lim-plain');
    await createTopic(small, 1, LIMIT);
    await createTopic(plain, 1);
    const limits = await withAdmin((a) => TopicLimits.fromAdmin(a, [small, plain]));
    expect(limits.get(small)).toBe(LIMIT);
    const brokerDefault = await withAdmin(async (a) => {
      const { brokers } = await a.describeCluster();
      const r = await a.describeConfigs({
        includeSynonyms: false,
        resources: [
          { type: 4 as ConfigResourceTypes, name: String(brokers[0]!.nodeId), configNames: ['message.max.bytes'] },
        ],
      });
      return Number(r.resources[0]!.configEntries[0]!.configValue);
    });
    expect(limits.get(plain)).toBe(brokerDefault);
    expect(limits.defaultBytes).toBe(brokerDefault);
  });

  it('produces several MiB into a 64 KiB topic in order; a 100 KiB record goes to the DLQ and the next ones through', async () => {
    const topic = uniqueName('lim-out');
    const keyed = uniqueName('lim-keyed');
    const dlq = uniqueName('lim-dlq');
    await createTopic(topic, 3, LIMIT);
    await createTopic(keyed, 2, LIMIT);
    await createTopic(dlq, 1);
    const deadLetters: [string, string][] = [];
    const c = new KafkaRecordCollector({
      producer,
      limits: await withAdmin((a) => TopicLimits.fromAdmin(a, [topic, keyed, dlq])),
      dlqTopic: dlq,
      applicationId: 'producer-limits-test',
      onDeadLetter: (t, code) => deadLetters.push([t, code]),
    });
    // 6,000 records of 1 KiB (~6 MiB): 3 explicit partitions and a murmur2-partitioned topic
    const N = 6000;
    for (let i = 0; i < N; i++) c.send(i % 4 === 3 ? record(keyed, i, 1024) : record(topic, i, 1024, i % 3));
    await c.flush();
    expect(deadLetters).toEqual([]);
    expect(c.stats.splits).toBe(0);
    expect(c.stats.requests).toBeGreaterThanOrEqual(Math.ceil((N * 0.75 * 1024) / (3 * LIMIT)));

    const out = await readAll(topic);
    expect(out.length).toBe(N * 0.75);
    for (let p = 0; p < 3; p++) {
      const seqs = out.filter((r) => r.partition === p).map((r) => seq(r.value));
      expect(seqs).toEqual([...Array(N).keys()].filter((i) => i % 4 !== 3 && i % 3 === p));
      expect(c.ackedOffsets().get(`${topic}:${p}`)).toBe(seqs.length - 1);
    }
    const k = await readAll(keyed);
    expect(k.map((r) => seq(r.value)).sort((a, b) => a - b)).toEqual([...Array(N).keys()].filter((i) => i % 4 === 3));
    // per key (one partition each), in order
    for (const key of new Set(k.map((r) => String(r.key)))) {
      const seqs = k.filter((r) => String(r.key) === key).map((r) => seq(r.value));
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    }

    // a 100 KiB record between small ones
    c.send(record(topic, N, 100, 0));
    const big = record(topic, N + 1, 100 * 1024, 0);
    big.source = { topic: 'mail-events', partition: 0, offset: 1234 };
    c.send(big);
    for (let i = N + 2; i < N + 10; i++) c.send(record(topic, i, 100, 0));
    await c.flushUpTo(c.mark());
    expect(deadLetters).toEqual([[topic, 'RECORD_TOO_LARGE']]);
    const p0 = (await readAll(topic)).filter((r) => r.partition === 0).map((r) => seq(r.value));
    expect(p0.slice(-9)).toEqual([N, ...Array.from({ length: 8 }, (_, j) => N + 2 + j)]);
    const [dl, ...rest] = await readAll(dlq);
    expect(rest).toEqual([]);
    expect(String(dl!.key)).toBe(`key-${(N + 1) % 97}`);
    expect(dl!.value).toBeNull();
    expect(dl!.headers).toMatchObject({
      'dlq.error.code': 'RECORD_TOO_LARGE',
      'dlq.target.topic': topic,
      'dlq.target.partition': '0',
      'dlq.source.topic': 'mail-events',
      'dlq.source.offset': '1234',
      'dlq.limit.bytes': String(LIMIT),
    });
    expect(Number(dl!.headers['dlq.record.bytes'])).toBeGreaterThan(100 * 1024);
  });

  it('splits requests the broker refuses (the collector believed a larger limit) and gets every record through once, in order', async () => {
    const topic = uniqueName('lim-stale');
    const dlq = uniqueName('lim-stale-dlq');
    await createTopic(topic, 1, LIMIT);
    await createTopic(dlq, 1);
    const deadLetters: [string, string][] = [];
    const c = new KafkaRecordCollector({
      producer,
      // stale: believes 1 MiB, cannot re-read
      limits: new TopicLimits(new Map([[topic, 1_048_588]])),
      dlqTopic: dlq,
      onDeadLetter: (t, code) => deadLetters.push([t, code]),
    });
    const N = 600; // ~600 KiB, refused as one batch
    for (let i = 0; i < N; i++) c.send(record(topic, i, i === 321 ? 70 * 1024 : 1024, 0));
    await c.flush();
    expect(c.stats.splits).toBeGreaterThan(0);
    expect(deadLetters).toEqual([[topic, 'RECORD_TOO_LARGE']]);
    const seqs = (await readAll(topic)).map((r) => seq(r.value));
    expect(seqs).toEqual([...Array(N).keys()].filter((i) => i !== 321));
    expect((await readAll(dlq)).map((r) => r.headers['dlq.error.code'])).toEqual(['RECORD_TOO_LARGE']);
    // the same producer keeps working after its resets
    c.send(record(topic, N, 10, 0));
    await c.flush();
    expect((await readAll(topic)).length).toBe(N);
  });

  it('a refused request spanning partitions: the partitions the broker wrote are not written twice', async () => {
    const topic = uniqueName('lim-multi');
    const dlq = uniqueName('lim-multi-dlq');
    await createTopic(topic, 3, LIMIT);
    await createTopic(dlq, 1);
    const c = new KafkaRecordCollector({
      producer,
      limits: new TopicLimits(new Map([[topic, 1_048_588]])), // stale
      dlqTopic: dlq,
    });
    // partitions 0 and 1: 20 KiB each (fit); partition 2: 100 KiB (refused as one batch)
    const N = 140;
    const part = (i: number) => (i % 7 === 0 ? 0 : i % 7 === 1 ? 1 : 2);
    for (let i = 0; i < N; i++) c.send(record(topic, i, 1000, part(i)));
    await c.flush();
    expect(c.stats.splits).toBeGreaterThan(0);
    const all = await readAll(topic);
    for (let p = 0; p < 3; p++)
      expect(all.filter((r) => r.partition === p).map((r) => seq(r.value))).toEqual(
        [...Array(N).keys()].filter((i) => part(i) === p),
      );
    expect(await readAll(dlq)).toEqual([]);
  });

  it('records left to the partitioner in a refused request: a new producer from resetProducer, nothing lost', async () => {
    const topic = uniqueName('lim-keyed-stale');
    const dlq = uniqueName('lim-keyed-stale-dlq');
    await createTopic(topic, 3, LIMIT);
    await createTopic(dlq, 1);
    const made: Producer[] = [];
    const c = new KafkaRecordCollector({
      producer,
      limits: new TopicLimits(new Map([[topic, 1_048_588]])), // stale
      dlqTopic: dlq,
      resetProducer: async () => {
        const p = kafkaClient().producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
        await p.connect();
        made.push(p);
        return p;
      },
    });
    try {
      const N = 400; // ~400 KiB over 3 partitions by key
      for (let i = 0; i < N; i++) c.send(record(topic, i, 1000));
      await c.flush();
      expect(made.length).toBeGreaterThan(0);
      const all = await readAll(topic);
      const seqs = all.map((r) => seq(r.value));
      // at least once: every record, each key's records in order (duplicates possible here)
      expect(new Set(seqs).size).toBe(N);
      for (const key of new Set(all.map((r) => String(r.key)))) {
        const mine = all.filter((r) => String(r.key) === key).map((r) => seq(r.value));
        const firsts = mine.filter((v, i) => mine.indexOf(v) === i);
        expect(firsts).toEqual([...firsts].sort((a, b) => a - b));
      }
      console.log(
        `partitioner-left records after a refusal: ${seqs.length - N} duplicates, ${made.length} new producers`,
      );
    } finally {
      for (const p of made) await p.disconnect();
    }
  });

  it('fails with a code when the topic does not exist (after retrying within the delivery timeout)', async () => {
    const c = new KafkaRecordCollector({ producer, dlqTopic: 'unused', deliveryTimeoutMs: 3000, retryBackoffMs: 200 });
    c.send(record(uniqueName('lim-missing'), 0, 10, 0));
    const err = await c.flush().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: expect.stringMatching(/^PRODUCE_(TOPIC_UNKNOWN|TIMEOUT)$/) });
  });
});
