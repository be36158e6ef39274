/**
 * The group-less reader's bookkeeping against a fake kafkajs cluster of two leaders (the real
 * broker is in test/integration/assigned-reader.test.ts): one leader's failure does not lose what
 * the other returned; positions move past batches whose records were all compacted away or were
 * markers; retriable failures back off and are retried, fatal ones surface (also when another
 * leader answered); a position out of range goes on from the log start; a failing reader gives up
 * after `failAfterMs`.
 */
import type { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { AssignedReader } from '../../../runtime/assigned-reader.js';

type Msg = {
  offset: string;
  key: Buffer;
  value: Buffer;
  timestamp: string;
  headers: object;
  isControlRecord?: boolean;
  batchContext?: { firstOffset: string; lastOffsetDelta: number };
};
type Req = { topics: { topic: string; partitions: { partition: number; fetchOffset: string }[] }[] };
type Answer = (req: Req) => Promise<{ responses: { topicName: string; partitions: unknown[] }[] }>;

function msg(offset: number, batch?: { first: number; lastDelta: number }, control = false): Msg {
  return {
    offset: String(offset),
    key: Buffer.from(`k${offset}`),
    value: Buffer.from(`v${offset}`),
    timestamp: '1000',
    headers: {},
    ...(control ? { isControlRecord: true } : {}),
    batchContext: batch
      ? { firstOffset: String(batch.first), lastOffsetDelta: batch.lastDelta }
      : { firstOffset: String(offset), lastOffsetDelta: 0 },
  };
}

/** A kafkajs client whose cluster has the given leaders (partition -> node) and fetch answers per node. */
function fakeKafka(opts: {
  leaders: Record<number, string>;
  answer: Record<string, Answer>;
  earliest?: number;
  latest?: number;
  calls?: { refresh: number; fetches: Req[] };
  /** how many connects / metadata requests fail (retriably) first */
  failFirst?: { connect?: number; addTopics?: number };
}): Kafka {
  const calls = opts.calls ?? { refresh: 0, fetches: [] };
  const fail = { connect: 0, addTopics: 0, ...opts.failFirst };
  const retriableOnce = (what: 'connect' | 'addTopics') => async () => {
    if (fail[what]-- > 0) throw Object.assign(new Error(`${what} refused`), { retriable: true });
  };
  const cluster = {
    connect: retriableOnce('connect'),
    disconnect: async () => undefined,
    addMultipleTargetTopics: retriableOnce('addTopics'),
    refreshMetadata: async () => {
      calls.refresh++;
    },
    refreshMetadataIfNecessary: async () => undefined,
    findLeaderForPartitions: (_topic: string, partitions: number[]) => {
      const out: Record<string, number[]> = {};
      for (const p of partitions) (out[opts.leaders[p]!] ??= []).push(p);
      return out;
    },
    findBroker: async ({ nodeId }: { nodeId: string }) => ({
      fetch: (req: Req) => {
        calls.fetches.push(req);
        return opts.answer[nodeId]!(req);
      },
    }),
    fetchTopicsOffset: async (topics: { partitions: { partition: number }[]; fromBeginning: boolean }[]) => [
      {
        topic: 't',
        partitions: topics[0]!.partitions.map((p) => ({
          partition: p.partition,
          offset: String(topics[0]!.fromBeginning ? (opts.earliest ?? 0) : (opts.latest ?? 0)),
        })),
      },
    ],
    removeBroker: () => undefined,
  };
  return { [Symbol('private:Kafka:createCluster')]: () => cluster } as unknown as Kafka;
}

const answerWith =
  (messages: (req: Req, partition: number, from: number) => Msg[], hw = 100): Answer =>
  async (req) => ({
    responses: req.topics.map((t) => ({
      topicName: t.topic,
      partitions: t.partitions.map((p) => ({
        partition: p.partition,
        errorCode: 0,
        highWatermark: String(hw),
        lastStableOffset: String(hw),
        abortedTransactions: [],
        messages: messages(req, p.partition, Number(p.fetchOffset)),
      })),
    })),
  });

const retriable = () => Object.assign(new Error('leader moved'), { name: 'KafkaJSProtocolError', retriable: true });

describe('AssignedReader (fake cluster)', () => {
  it("keeps what one leader returned when the other leader's request fails", async () => {
    let failNode2 = true;
    const calls = { refresh: 0, fetches: [] as Req[] };
    const kafka = fakeKafka({
      leaders: { 0: '1', 1: '2' },
      calls,
      answer: {
        '1': answerWith((_r, _p, from) => (from < 3 ? [msg(from), msg(from + 1)] : [])),
        '2': async (req) => {
          if (failNode2) throw retriable();
          return answerWith((_r, _p, from) => (from < 2 ? [msg(from)] : []))(req);
        },
      },
    });
    const r = new AssignedReader(kafka, { maxWaitMs: 1 });
    await r.connect();
    await r.assign('t', 0, 0);
    await r.assign('t', 1, 0);
    const first = await r.fetch();
    expect(first.map((f) => [f.partition, f.records.map((x) => x.offset), f.next])).toEqual([[0, [0, 1], 2]]);
    expect(r.position('t', 0)).toBe(2);
    expect(r.position('t', 1)).toBe(0);
    expect(calls.refresh).toBe(1); // the failure refreshed the metadata (no back-off: data came)
    failNode2 = false;
    const second = await r.fetch();
    expect(second.map((f) => [f.partition, f.records.map((x) => x.offset)]).sort()).toEqual([
      [0, [2, 3]],
      [1, [0]],
    ]);
    await r.close();
  });

  it('moves past batches emptied by compaction and past markers; the end is the last stable offset', async () => {
    const kafka = fakeKafka({
      leaders: { 0: '1' },
      answer: {
        '1': async (req) => {
          const from = Number(req.topics[0]!.partitions[0]!.fetchOffset);
          // a batch 10..19 whose records from 12 on were compacted away, a marker at 20
          const messages =
            from === 10
              ? [msg(10, { first: 10, lastDelta: 9 }), msg(11, { first: 10, lastDelta: 9 })]
              : from === 20
                ? [msg(20, undefined, true)]
                : [];
          return {
            responses: [
              {
                topicName: 't',
                partitions: [
                  {
                    partition: 0,
                    errorCode: 0,
                    highWatermark: '30',
                    lastStableOffset: '21',
                    abortedTransactions: [],
                    messages,
                  },
                ],
              },
            ],
          };
        },
      },
    });
    const r = new AssignedReader(kafka, { maxWaitMs: 1 });
    await r.connect();
    await r.assign('t', 0, 10);
    const a = await r.fetch();
    expect(a[0]!.records.map((x) => x.offset)).toEqual([10, 11]);
    expect(a[0]!.next).toBe(20);
    expect(a[0]!.end).toBe(21);
    const b = await r.fetch();
    expect(b[0]!.records).toEqual([]); // the marker is not a record
    expect(b[0]!.next).toBe(21);
    await r.close();
  });

  it('a fatal failure surfaces, also when another leader answered (at the next fetch)', async () => {
    const fatal = () =>
      Object.assign(new Error('not authorized'), { name: 'KafkaJSProtocolError', type: 'TOPIC_AUTHORIZATION_FAILED' });
    const kafka = fakeKafka({
      leaders: { 0: '1', 1: '2' },
      answer: {
        '1': answerWith((_r, _p, from) => [msg(from)]),
        '2': async () => {
          throw fatal();
        },
      },
    });
    const r = new AssignedReader(kafka, { maxWaitMs: 1 });
    await r.connect();
    await r.assign('t', 0, 0);
    await r.assign('t', 1, 0);
    const got = await r.fetch();
    expect(got.map((f) => f.partition)).toEqual([0]);
    await expect(r.fetch()).rejects.toThrow('not authorized');
    r.unassign('t', 0);
    await expect(r.fetch()).rejects.toThrow('not authorized'); // alone: thrown at once
    await r.close();
  });

  it('retries a retriable failure with a back-off and gives up after failAfterMs', async () => {
    let fails = 2;
    const retries: number[] = [];
    const kafka = fakeKafka({
      leaders: { 0: '1' },
      answer: {
        '1': async (req) => {
          if (fails-- > 0) throw retriable();
          return answerWith((_r, _p, from) => [msg(from)])(req);
        },
      },
    });
    const r = new AssignedReader(kafka, { maxWaitMs: 1, onRetry: (_e, n) => retries.push(n) });
    await r.connect();
    await r.assign('t', 0, 5);
    const t = Date.now();
    expect(await r.fetch()).toEqual([]);
    expect(await r.fetch()).toEqual([]);
    expect((await r.fetch())[0]!.records.map((x) => x.offset)).toEqual([5]);
    expect(retries).toEqual([1, 2]);
    expect(Date.now() - t).toBeGreaterThanOrEqual(250); // 100 + 200 ms of back-off
    await r.close();

    const always = fakeKafka({ leaders: { 0: '1' }, answer: { '1': async () => Promise.reject(retriable()) } });
    const g = new AssignedReader(always, { maxWaitMs: 1, failAfterMs: 150 });
    await g.connect();
    await g.assign('t', 0, 0);
    let err: unknown;
    for (let i = 0; i < 20 && !err; i++) await g.fetch().catch((e: unknown) => (err = e));
    expect((err as Error).message).toBe('leader moved');
    await g.close();
  });

  it('retries a connect and a metadata request that fail while a broker restarts', async () => {
    const kafka = fakeKafka({
      leaders: { 0: '1' },
      failFirst: { connect: 2, addTopics: 1 },
      answer: { '1': answerWith((_r, _p, from) => [msg(from)]) },
    });
    const r = new AssignedReader(kafka, { maxWaitMs: 1 });
    await r.connect();
    await r.assign('t', 0, 3);
    expect((await r.fetch())[0]!.records.map((x) => x.offset)).toEqual([3]);
    await r.close();
    const down = fakeKafka({ leaders: { 0: '1' }, failFirst: { connect: 99 }, answer: {} });
    const d = new AssignedReader(down);
    await expect(d.connect()).rejects.toThrow(/connect refused.*after 10 attempts/);
  }, 30_000);

  it('a position out of range goes on from the log start (or the end when beyond it)', async () => {
    const fetched: number[] = [];
    const kafka = fakeKafka({
      leaders: { 0: '1' },
      earliest: 40,
      latest: 50,
      answer: {
        '1': async (req) => {
          const from = Number(req.topics[0]!.partitions[0]!.fetchOffset);
          fetched.push(from);
          if (from < 40 || from > 50)
            throw Object.assign(new Error('out of range'), {
              name: 'KafkaJSOffsetOutOfRange',
              topic: 't',
              partition: 0,
            });
          return answerWith(() => [msg(from)])(req);
        },
      },
    });
    const r = new AssignedReader(kafka, { maxWaitMs: 1 });
    await r.connect();
    await r.assign('t', 0, 7);
    expect(await r.fetch()).toEqual([]);
    expect(r.position('t', 0)).toBe(40);
    expect((await r.fetch())[0]!.records.map((x) => x.offset)).toEqual([40]);
    await r.assign('t', 0, 90);
    await r.fetch();
    expect(r.position('t', 0)).toBe(50);
    expect(fetched).toEqual([7, 40, 90]);
    await r.close();
  });
});
