/**
 * The Kafka record collector against a fake kafkajs producer: requests capped by bytes, records
 * too large for their topic dead-lettered, refused requests split, retriable errors retried in
 * order, infrastructure errors failing the collector with a code.
 */
import type { Message, Producer, ProducerBatch, RecordMetadata } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { StreamsError } from '../../../runtime/errors.js';
import {
  KafkaRecordCollector,
  RECORD_BATCH_OVERHEAD,
  TopicLimits,
  classifyProduceError,
  recordSizeUpperBound,
  type KafkaRecordCollectorOptions,
  type OutgoingRecord,
} from '../../../runtime/record-collector.js';
import { partitionForKey } from '../../../runtime/partitioner.js';

interface Written {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
  timestamp: string;
}

class KafkaJSProtocolErrorLike extends Error {
  override readonly name = 'KafkaJSProtocolError';
  constructor(
    readonly type: string,
    readonly retriable: boolean,
  ) {
    super(`broker said ${type}`);
  }
}

/** A fake broker behind a kafkajs-shaped producer: per-partition logs, one batch limit per topic. */
class FakeProducer {
  readonly logs = new Map<string, Written[]>();
  readonly requests: { records: number; perPartitionBytes: Map<string, number> }[] = [];
  /** errors to throw on the next calls, in order (undefined = succeed) */
  failNext: (Error | undefined)[] = [];
  /** a partition batch over this many bytes is refused with MESSAGE_TOO_LARGE (the broker's check) */
  brokerLimit = new Map<string, number>();
  /** kafkajs' partial-retry flaw: on the next calls, these partitions are neither written nor answered */
  skipNext: (string[] | undefined)[] = [];
  /** records with this value are refused with INVALID_RECORD */
  invalidValue: string | undefined;
  connects = 0;
  disconnects = 0;
  inFlight = 0;
  maxInFlight = 0;

  log(topic: string, partition = 0): Written[] {
    const k = `${topic}:${partition}`;
    let l = this.logs.get(k);
    if (!l) this.logs.set(k, (l = []));
    return l;
  }

  async sendBatch(b: ProducerBatch): Promise<RecordMetadata[]> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, 1));
      const err = this.failNext.shift();
      if (err) throw err;
      const skip = new Set(this.skipNext.shift() ?? []);
      const perPartition = new Map<string, { topic: string; partition: number; messages: Message[] }>();
      for (const tm of b.topicMessages ?? [])
        for (const m of tm.messages) {
          const p = m.partition ?? 0;
          const k = `${tm.topic}:${p}`;
          if (skip.has(k)) continue;
          let e = perPartition.get(k);
          if (!e) perPartition.set(k, (e = { topic: tm.topic, partition: p, messages: [] }));
          e.messages.push(m);
        }
      const sizes = new Map<string, number>();
      for (const [k, e] of perPartition) {
        const bytes =
          RECORD_BATCH_OVERHEAD +
          e.messages.reduce(
            (n, m) =>
              n +
              recordSizeUpperBound({
                key: m.key as Buffer | null,
                value: m.value as Buffer | null,
                headers: m.headers as Record<string, string>,
              }),
            0,
          );
        sizes.set(k, bytes);
        const limit = this.brokerLimit.get(e.topic);
        if (limit !== undefined && bytes > limit) throw new KafkaJSProtocolErrorLike('MESSAGE_TOO_LARGE', false);
        if (this.invalidValue !== undefined && e.messages.some((m) => String(m.value) === this.invalidValue))
          throw new KafkaJSProtocolErrorLike('INVALID_RECORD', false);
      }
      this.requests.push({
        records: [...perPartition.values()].reduce((n, e) => n + e.messages.length, 0),
        perPartitionBytes: sizes,
      });
      const out: RecordMetadata[] = [];
      for (const e of perPartition.values()) {
        const l = this.log(e.topic, e.partition);
        out.push({ topicName: e.topic, partition: e.partition, errorCode: 0, baseOffset: String(l.length) });
        for (const m of e.messages)
          l.push({
            topic: e.topic,
            partition: e.partition,
            offset: l.length,
            key: m.key === null || m.key === undefined ? null : String(m.key),
            value: (m.value as Buffer | null) ?? null,
            headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, String(v)])),
            timestamp: String(m.timestamp),
          });
      }
      return out;
    } finally {
      this.inFlight--;
    }
  }
  async connect(): Promise<void> {
    this.connects++;
  }
  async disconnect(): Promise<void> {
    this.disconnects++;
  }
}

function collector(fake: FakeProducer, opts: Partial<KafkaRecordCollectorOptions> = {}) {
  const deadLetters: [string, string][] = [];
  const c = new KafkaRecordCollector({
    producer: fake as unknown as Producer,
    dlqTopic: 'dlq',
    retryBackoffMs: 1,
    maxRetryBackoffMs: 4,
    onDeadLetter: (t, code) => deadLetters.push([t, code]),
    ...opts,
  });
  return { c, deadLetters };
}

/** partition null: none (the producer's partitioner) */
function rec(topic: string, i: number, valueBytes: number, partition: number | null = 0): OutgoingRecord {
  const value = Buffer.alloc(valueBytes, 97);
  value.write(String(i).padStart(8, '0'));
  const r: OutgoingRecord = { topic, key: Buffer.from(`k${i}`), value, timestamp: 1000 + i };
  if (partition !== null) r.partition = partition;
  return r;
}

const seqOf = (w: Written) => Number(w.value!.subarray(0, 8).toString());

describe('KafkaRecordCollector', () => {
  it('caps each partition batch at the topic limit and each request at maxRequestBytes, keeping order', async () => {
    const fake = new FakeProducer();
    fake.brokerLimit.set('out', 64 * 1024);
    const { c } = collector(fake, {
      limits: new TopicLimits(new Map([['out', 64 * 1024]])),
      maxRequestBytes: 100 * 1024,
    });
    // 600 records of ~1 KiB over 2 partitions and a murmur2 topic: ~900 KiB in all
    for (let i = 0; i < 600; i++) c.send(rec(i % 3 === 2 ? 'other' : 'out', i, 1000, i % 3 === 2 ? null : i % 2));
    await c.flush();
    const out = [...fake.log('out', 0), ...fake.log('out', 1)];
    expect(out.length + fake.log('other', 0).length).toBe(600);
    for (const p of [0, 1]) {
      const seqs = fake.log('out', p).map(seqOf);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    }
    expect(fake.requests.length).toBeGreaterThan(1);
    for (const r of fake.requests) {
      for (const [k, bytes] of r.perPartitionBytes)
        if (k.startsWith('out:')) expect(bytes).toBeLessThanOrEqual(64 * 1024);
      const total = [...r.perPartitionBytes.values()].reduce((a, b) => a + b - RECORD_BATCH_OVERHEAD, 0);
      expect(total).toBeLessThanOrEqual(100 * 1024);
    }
    expect(fake.maxInFlight).toBe(1);
    // acknowledged offsets: the last of each explicit partition
    expect(c.ackedOffsets().get('out:0')).toBe(fake.log('out', 0).length - 1);
    expect(c.ackedOffsets().get('out:1')).toBe(fake.log('out', 1).length - 1);
    expect(c.stats.splits).toBe(0);
  });

  it('counts records without a partition against every partition of their topic', async () => {
    const fake = new FakeProducer();
    const { c } = collector(fake, { limits: new TopicLimits(new Map([['t', 10_000]])) });
    // 4 keyed records of ~3 KiB (murmur2) then 4 with partition 0: at most 3 of ~3 KiB per request
    for (let i = 0; i < 8; i++) c.send(rec('t', i, 3000, i < 4 ? null : 0));
    await c.flush();
    expect(fake.requests.map((r) => r.records)).toEqual([3, 3, 2]);
    // and the other way round: records with a partition first
    const fake2 = new FakeProducer();
    const { c: c2 } = collector(fake2, { limits: new TopicLimits(new Map([['t', 10_000]])) });
    for (let i = 0; i < 5; i++) c2.send(rec('t', i, 3000, i < 2 ? 0 : null));
    await c2.flush();
    expect(fake2.requests.map((r) => r.records)).toEqual([3, 2]);
  });

  it('sends a record too large for its topic to the DLQ with RECORD_TOO_LARGE, and the next ones through', async () => {
    const fake = new FakeProducer();
    const { c, deadLetters } = collector(fake, {
      limits: new TopicLimits(new Map([['out', 64 * 1024]])),
      applicationId: 'app',
    });
    c.send(rec('out', 1, 100));
    const big = rec('out', 2, 100 * 1024);
    big.source = { topic: 'in', partition: 0, offset: 41 };
    c.send(big);
    c.send(rec('out', 3, 100));
    await c.flush();
    expect(fake.log('out').map(seqOf)).toEqual([1, 3]);
    expect(deadLetters).toEqual([['out', 'RECORD_TOO_LARGE']]);
    const [dl] = fake.log('dlq');
    expect(dl!.key).toBe('k2');
    expect(dl!.value).toBeNull();
    expect(dl!.headers).toMatchObject({
      'dlq.target.topic': 'out',
      'dlq.target.partition': '0',
      'dlq.source.topic': 'in',
      'dlq.source.partition': '0',
      'dlq.source.offset': '41',
      'dlq.error.code': 'RECORD_TOO_LARGE',
      'dlq.error.kind': 'production',
      'dlq.application.id': 'app',
      'dlq.record.bytes': String(recordSizeUpperBound(big)),
      'dlq.limit.bytes': String(64 * 1024),
    });
    // positions: three records handed over, three acknowledged
    expect(c.mark()).toBe(3);
    await c.flushUpTo(3);
  });

  it('knows the offsets of the records sent before a mark, also when later records share their requests', async () => {
    const fake = new FakeProducer();
    // partition 1's batch over 4 KiB is refused: the request is split by partition, then in halves
    fake.brokerLimit.set('out', 4 * 1024);
    const { c } = collector(fake);
    c.send(rec('out', 0, 10, 0));
    await c.flush();
    // out:0 has one record acknowledged before the mark; out:1 and out:2 get theirs in the same
    // requests as records sent after the mark
    for (let i = 1; i <= 5; i++) c.send(rec('out', i, 10, 0));
    for (let i = 6; i <= 9; i++) c.send(rec('out', i, 1000, 1));
    const position = c.mark();
    expect(c.ackedOffsetsAt(position)).toBeUndefined(); // not acknowledged yet
    for (let i = 10; i <= 13; i++) c.send(rec('out', i, 1000, 1));
    for (let i = 14; i <= 15; i++) c.send(rec('out', i, 10, 2));
    c.send(rec('out', 16, 10, 0));
    await c.flushUpTo(position);
    await c.flush();
    expect(c.stats.splits).toBeGreaterThan(0);
    const atMark = c.ackedOffsetsAt(position)!;
    const offsetOf = (p: number, seq: number) => fake.log('out', p).find((w) => seqOf(w) === seq)!.offset;
    expect(Object.fromEntries(atMark)).toEqual({ 'out:0': offsetOf(0, 5), 'out:1': offsetOf(1, 9) });
    expect(c.ackedOffsets().get('out:0')).toBe(offsetOf(0, 16));
    expect(c.ackedOffsets().get('out:1')).toBe(offsetOf(1, 13));
    expect(c.ackedOffsets().get('out:2')).toBe(offsetOf(2, 15));
    // taken once
    expect(c.ackedOffsetsAt(position)).toBeUndefined();
    // a mark with nothing sent since the last acknowledgement: the acknowledged offsets
    const again = c.mark();
    await c.flushUpTo(again);
    expect(Object.fromEntries(c.ackedOffsetsAt(again)!)).toEqual(Object.fromEntries(c.ackedOffsets()));
  });

  it('without a DLQ topic a too-large record is refused by send() with RECORD_TOO_LARGE', () => {
    const fake = new FakeProducer();
    const c = new KafkaRecordCollector({
      producer: fake as unknown as Producer,
      limits: new TopicLimits(new Map([['out', 1000]])),
    });
    expect(() => c.send(rec('out', 1, 2000))).toThrow(expect.objectContaining({ code: 'RECORD_TOO_LARGE' }));
  });

  it('splits a request the broker refuses as too large, in order, and dead-letters the record refused alone', async () => {
    const fake = new FakeProducer();
    // the collector believes 1 MiB; the broker takes 8 KiB (the topic's config changed)
    fake.brokerLimit.set('out', 8 * 1024);
    const { c, deadLetters } = collector(fake);
    for (let i = 0; i < 20; i++) c.send(rec('out', i, i === 13 ? 9000 : 1000));
    await c.flush();
    expect(fake.log('out').map(seqOf)).toEqual([...Array(20).keys()].filter((i) => i !== 13));
    expect(deadLetters).toEqual([['out', 'RECORD_TOO_LARGE']]);
    expect(fake.log('dlq')[0]!.headers['dlq.error.code']).toBe('RECORD_TOO_LARGE');
    expect(c.stats.splits).toBeGreaterThan(0);
    // one partition: halves keep the sequence numbers in step, no new producer needed
    expect(c.stats.resets).toBe(0);
    for (const r of fake.requests)
      for (const bytes of r.perPartitionBytes.values()) expect(bytes).toBeLessThanOrEqual(8 * 1024);
  });

  it('splits a refused request spanning partitions by partition first, each partition in order', async () => {
    const fake = new FakeProducer();
    fake.brokerLimit.set('out', 8 * 1024);
    const { c, deadLetters } = collector(fake);
    // partition 0: 4 small records; partition 1: 12 x 1 KiB (over the broker's 8 KiB)
    for (let i = 0; i < 16; i++) c.send(rec('out', i, i % 4 === 0 ? 10 : 1000, i % 4 === 0 ? 0 : 1));
    await c.flush();
    expect(deadLetters).toEqual([]);
    expect(fake.log('out', 0).map(seqOf)).toEqual([0, 4, 8, 12]);
    expect(fake.log('out', 1).map(seqOf)).toEqual([...Array(16).keys()].filter((i) => i % 4 !== 0));
    // after the refusal: partition 0 alone, then partition 1 in halves
    expect(fake.requests.map((r) => [...r.perPartitionBytes.keys()].join())).toEqual(['out:0', 'out:1', 'out:1']);
    expect(c.stats.resets).toBe(0);
    expect(c.ackedOffsets().get('out:1')).toBe(11);
  });

  it('gets a new producer from resetProducer when a refused request has records left to the partitioner', async () => {
    const fake = new FakeProducer();
    fake.brokerLimit.set('out', 8 * 1024);
    const second = new FakeProducer();
    second.brokerLimit.set('out', 8 * 1024);
    let resets = 0;
    const { c } = collector(fake, {
      resetProducer: async () => {
        resets++;
        return second as unknown as Producer;
      },
    });
    for (let i = 0; i < 12; i++) c.send(rec('out', i, 1000, null));
    await c.flush();
    expect(resets).toBe(1);
    expect(fake.log('out')).toEqual([]);
    expect(second.log('out').map(seqOf)).toEqual([...Array(12).keys()]);
  });

  it("dead-letters a record whose timestamp the topic's timestamp window refuses, with the current time", async () => {
    const fake = new FakeProducer();
    const { c, deadLetters } = collector(fake, {
      limits: new TopicLimits(new Map([['out', { maxMessageBytes: 1_000_000, timestampAfterMaxMs: 3_600_000 }]])),
    });
    const now = Date.now();
    const ahead = rec('out', 1, 10);
    ahead.timestamp = now + 2 * 3_600_000;
    const fine = rec('out', 2, 10);
    fine.timestamp = now + 1000;
    c.send(ahead);
    c.send(fine);
    await c.flush();
    expect(deadLetters).toEqual([['out', 'RECORD_TIMESTAMP_INVALID']]);
    expect(fake.log('out').map(seqOf)).toEqual([2]);
    const dl = fake.log('dlq')[0]!;
    expect(dl.headers['dlq.record.timestamp']).toBe(String(ahead.timestamp));
    expect(Math.abs(Number(dl.timestamp) - now)).toBeLessThan(10_000);
    // a dead letter for another reason keeps the original timestamp unless the DLQ would refuse it
    const c2 = collector(fake, {
      limits: new TopicLimits(
        new Map([
          ['out', { maxMessageBytes: 1000 }],
          ['dlq', { maxMessageBytes: 1_000_000, timestampAfterMaxMs: 3_600_000 }],
        ]),
      ),
    }).c;
    const bigAhead = rec('out', 3, 2000);
    bigAhead.timestamp = now + 2 * 3_600_000;
    const bigPast = rec('out', 4, 2000);
    bigPast.timestamp = now - 5 * 3_600_000;
    c2.send(bigAhead);
    c2.send(bigPast);
    await c2.flush();
    const [, a2, p2] = fake.log('dlq');
    expect(a2!.headers['dlq.error.code']).toBe('RECORD_TOO_LARGE');
    expect(Math.abs(Number(a2!.timestamp) - now)).toBeLessThan(10_000);
    expect(p2!.timestamp).toBe(String(bigPast.timestamp));
  });

  it('dead-letters a record the broker refuses as invalid (INVALID_RECORD)', async () => {
    const fake = new FakeProducer();
    fake.invalidValue = Buffer.alloc(50, 97).fill('00000004', 0, 8).toString();
    const { c, deadLetters } = collector(fake);
    for (let i = 0; i < 8; i++) c.send(rec('out', i, 50));
    await c.flush();
    expect(fake.log('out').map(seqOf)).toEqual([0, 1, 2, 3, 5, 6, 7]);
    expect(deadLetters).toEqual([['out', 'RECORD_INVALID']]);
  });

  it('retries retriable errors with the same request, one in flight, without reordering or duplicates', async () => {
    const fake = new FakeProducer();
    const retries: number[] = [];
    const { c } = collector(fake, { maxBatchRecords: 5, onRetry: (_e, attempt) => retries.push(attempt) });
    const notLeader = new KafkaJSProtocolErrorLike('NOT_LEADER_FOR_PARTITION', true);
    const exhausted = Object.assign(new Error('retries exceeded'), {
      name: 'KafkaJSNumberOfRetriesExceeded',
      retriable: false,
      cause: Object.assign(new Error('Connection timeout'), { name: 'KafkaJSConnectionError', retriable: true }),
    });
    fake.failNext = [undefined, notLeader, exhausted, undefined, notLeader];
    for (let i = 0; i < 23; i++) c.send(rec('out', i, 10));
    // sent meanwhile: must come after everything before
    const late = (async () => {
      await new Promise((r) => setTimeout(r, 2));
      for (let i = 23; i < 30; i++) c.send(rec('out', i, 10));
    })();
    await late;
    await c.flush();
    expect(fake.log('out').map(seqOf)).toEqual([...Array(30).keys()]);
    expect(retries).toEqual([1, 2, 1]);
    expect(fake.maxInFlight).toBe(1);
    expect(c.ackedOffsets().get('out:0')).toBe(29);
  });

  it('re-sends, alone, the partitions an answer leaves out (kafkajs partial retry), without duplicates', async () => {
    const fake = new FakeProducer();
    const retries: number[] = [];
    const { c } = collector(fake, { onRetry: (_e, attempt) => retries.push(attempt) });
    fake.skipNext = [['out:1'], ['out:1']];
    for (let i = 0; i < 40; i++) c.send(rec('out', i, 10, i % 2));
    await c.flush();
    expect(fake.log('out', 0).map(seqOf)).toEqual([...Array(20).keys()].map((i) => i * 2));
    expect(fake.log('out', 1).map(seqOf)).toEqual([...Array(20).keys()].map((i) => i * 2 + 1));
    // the first answer covers partition 0; then partition 1 alone, left out once more, then written
    expect(fake.requests.map((r) => r.records)).toEqual([20, 0, 20]);
    expect(c.stats.partial).toBe(2);
    expect(retries).toEqual([1, 2]);
    expect(c.ackedOffsets().get('out:1')).toBe(19);
  });

  it('picks the partition of a record without one from its key (murmur2) when the partition count is known', async () => {
    const fake = new FakeProducer();
    const { c } = collector(fake, {
      limits: new TopicLimits(new Map([['t', { maxMessageBytes: 10_000, partitions: 6 }]])),
    });
    const keyed = rec('t', 1, 10, null);
    c.send(keyed);
    const unkeyed: OutgoingRecord = { topic: 't', key: null, value: Buffer.from('x'), timestamp: 1 };
    c.send(unkeyed);
    c.send({ ...unkeyed });
    await c.flush();
    expect(keyed.partition).toBe(partitionForKey(Buffer.from('k1'), 6));
    expect(unkeyed.partition).toBe(0);
    expect(fake.log('t', 1).length + fake.log('t', 0).length).toBeGreaterThanOrEqual(2);
    expect(c.ackedOffsets().has(`t:${keyed.partition}`)).toBe(true);
  });

  it('holds records collected while a transaction commits and sends them on release', async () => {
    const fake = new FakeProducer();
    const { c } = collector(fake);
    for (let i = 0; i < 3; i++) c.send(rec('out', i, 10));
    await c.flush();
    c.hold();
    for (let i = 3; i < 6; i++) c.send(rec('out', i, 10));
    await new Promise((r) => setTimeout(r, 20));
    expect(fake.log('out').map(seqOf)).toEqual([0, 1, 2]);
    const flushed = c.flush();
    let done = false;
    void flushed.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    c.release();
    await flushed;
    expect(fake.log('out').map(seqOf)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('fails with PRODUCE_TIMEOUT when retriable errors last longer than the delivery timeout', async () => {
    const fake = new FakeProducer();
    const { c } = collector(fake, { deliveryTimeoutMs: 30 });
    fake.failNext = Array.from({ length: 1000 }, () => new KafkaJSProtocolErrorLike('LEADER_NOT_AVAILABLE', true));
    c.send(rec('out', 0, 10));
    const err = await c.flush().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamsError);
    expect((err as StreamsError).code).toBe('PRODUCE_TIMEOUT');
    expect((err as StreamsError).retriable).toBe(true);
    expect(() => c.send(rec('out', 1, 10))).toThrow(err as Error);
  });

  it('fails the collector on an authorization error, with a code saying so', async () => {
    const fake = new FakeProducer();
    const { c } = collector(fake);
    fake.failNext = [new KafkaJSProtocolErrorLike('TOPIC_AUTHORIZATION_FAILED', false)];
    c.send(rec('out', 0, 10));
    const pos = c.mark();
    await expect(c.flushUpTo(pos)).rejects.toMatchObject({ code: 'PRODUCE_NOT_AUTHORIZED', retriable: false });
    expect(c.error()?.code).toBe('PRODUCE_NOT_AUTHORIZED');
    expect(fake.log('out')).toEqual([]);
  });

  it('resets the producer on a sequence error and sends the same records again', async () => {
    const fake = new FakeProducer();
    const { c } = collector(fake);
    fake.failNext = [new KafkaJSProtocolErrorLike('OUT_OF_ORDER_SEQUENCE_NUMBER', false)];
    for (let i = 0; i < 3; i++) c.send(rec('out', i, 10));
    await c.flush();
    expect(fake.log('out').map(seqOf)).toEqual([0, 1, 2]);
    expect(c.stats.resets).toBe(1);
  });

  it('applies backpressure by bytes as well as records', async () => {
    const fake = new FakeProducer();
    const { c } = collector(fake, { maxBufferedBytes: 10_000, maxBufferedRecords: 1_000_000 });
    c.send(rec('out', 0, 4000));
    expect(c.capacity()).toBeUndefined();
    c.send(rec('out', 1, 4000));
    c.send(rec('out', 2, 4000));
    const wait = c.capacity();
    expect(wait).toBeInstanceOf(Promise);
    await wait;
    expect(fake.log('out').length).toBeGreaterThanOrEqual(1);
    expect(c.capacity()).toBeUndefined();
  });

  it('a dead letter too large for the DLQ topic drops its key; one the broker refuses is dropped and counted', async () => {
    const fake = new FakeProducer();
    const dropped: [string, string][] = [];
    const { c, deadLetters } = collector(fake, {
      limits: new TopicLimits(
        new Map([
          ['out', 1000],
          ['dlq', 600],
        ]),
      ),
      onDropped: (t, code) => dropped.push([t, code]),
    });
    const r = rec('out', 1, 2000);
    r.key = Buffer.alloc(700, 98);
    c.send(r);
    await c.flush();
    expect(deadLetters).toEqual([['out', 'RECORD_TOO_LARGE']]);
    expect(fake.log('dlq')[0]!.key).toBeNull();
    expect(fake.log('dlq')[0]!.headers['dlq.key.dropped']).toBe('true');
    // the DLQ refuses everything now
    fake.failNext = [
      new KafkaJSProtocolErrorLike('INVALID_RECORD', false),
      new KafkaJSProtocolErrorLike('INVALID_RECORD', false),
    ];
    c.send(rec('out', 2, 10));
    await c.flush();
    expect(dropped).toEqual([['dlq', 'RECORD_INVALID']]);
    expect(fake.log('out')).toEqual([]);
  });
});

describe('classifyProduceError', () => {
  it('tells record, producer-state, retriable and fatal errors apart', () => {
    expect(classifyProduceError(new KafkaJSProtocolErrorLike('RECORD_LIST_TOO_LARGE', false))).toEqual({
      kind: 'record',
      code: 'RECORD_TOO_LARGE',
    });
    expect(classifyProduceError(new KafkaJSProtocolErrorLike('INVALID_TIMESTAMP', false))).toEqual({
      kind: 'record',
      code: 'RECORD_TIMESTAMP_INVALID',
    });
    expect(classifyProduceError(new KafkaJSProtocolErrorLike('UNKNOWN_PRODUCER_ID', false))).toEqual({
      kind: 'producer-state',
    });
    expect(classifyProduceError(new KafkaJSProtocolErrorLike('REQUEST_TIMED_OUT', true))).toEqual({
      kind: 'retriable',
    });
    expect(classifyProduceError(new KafkaJSProtocolErrorLike('CLUSTER_AUTHORIZATION_FAILED', false))).toEqual({
      kind: 'fatal',
      code: 'PRODUCE_NOT_AUTHORIZED',
    });
    expect(
      classifyProduceError(
        Object.assign(new Error('The producer is disconnected'), { name: 'KafkaJSError', retriable: true }),
      ),
    ).toEqual({ kind: 'fatal', code: 'PRODUCER_CLOSED' });
    expect(classifyProduceError(new Error('something else'))).toEqual({ kind: 'fatal', code: 'PRODUCE_FAILED' });
  });

  it('sizes: the upper bound counts key, value, headers and varint overhead', () => {
    expect(recordSizeUpperBound({ key: null, value: null })).toBe(36);
    expect(recordSizeUpperBound({ key: Buffer.alloc(3), value: Buffer.alloc(100), headers: { ab: 'xyz' } })).toBe(
      36 + 3 + 100 + 10 + 2 + 3,
    );
  });
});
