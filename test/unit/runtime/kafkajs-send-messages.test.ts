/**
 * The engine's produce path for kafkajs against a fake two-broker cluster: a broker whose request
 * fails while the other's is still in flight does not get the other's records sent twice, and a
 * partition that moves to a broker that has already answered is still sent (kafkajs' own version
 * does the first wrong under exactly-once and loses records in the second).
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { createSendMessages } from '../../../runtime/kafkajs-send-messages.js';

const require = createRequire(import.meta.url);
const createRetry = require('kafkajs/src/retry/index.js') as (o: object) => never;

class Retriable extends Error {
  override readonly name = 'KafkaJSProtocolError';
  readonly retriable = true;
  readonly type = 'NOT_LEADER_OR_FOLLOWER';
}

function fakeCluster(leaders: Record<number, number>) {
  const writes: { node: number; partition: number; count: number; firstSequence: number }[] = [];
  const fail = new Map<number, number>(); // node -> failures left
  const slow = new Map<number, number>(); // node -> ms
  const leaderOf = { ...leaders };
  const brokers = new Map<number, { nodeId: number; produce(r: unknown): Promise<unknown> }>();
  for (const node of new Set(Object.values(leaders)).add(1).add(2))
    brokers.set(node, {
      nodeId: node,
      async produce(req: unknown) {
        const { topicData } = req as {
          topicData: {
            topic: string;
            partitions: { partition: number; messages: unknown[]; firstSequence: number }[];
          }[];
        };
        await new Promise((r) => setTimeout(r, slow.get(node) ?? 1));
        if ((fail.get(node) ?? 0) > 0) {
          fail.set(node, fail.get(node)! - 1);
          throw new Retriable('not the leader');
        }
        for (const t of topicData)
          for (const p of t.partitions)
            writes.push({ node, partition: p.partition, count: p.messages.length, firstSequence: p.firstSequence });
        return {
          topics: topicData.map((t) => ({
            topicName: t.topic,
            partitions: t.partitions.map((p) => ({ partition: p.partition, errorCode: 0, baseOffset: '0' })),
          })),
        };
      },
    });
  const cluster = {
    refreshMetadataIfNecessary: async () => undefined,
    refreshMetadata: async () => undefined,
    addMultipleTargetTopics: async () => undefined,
    findTopicPartitionMetadata: () =>
      Object.keys(leaderOf).map((p) => ({ partitionId: Number(p), leader: leaderOf[Number(p)] })),
    findLeaderForPartitions: (_t: string, partitions: number[]) => {
      const out: Record<string, number[]> = {};
      for (const p of partitions) (out[String(leaderOf[p])] ??= []).push(p);
      return out;
    },
    findBroker: async ({ nodeId }: { nodeId: string | number }) => brokers.get(Number(nodeId))!,
    removeBroker: () => undefined,
    isConnected: () => true,
    connect: async () => undefined,
    targetTopics: new Set<string>(),
  };
  const sequences = new Map<number, number>();
  const eos = {
    acquireBrokerLock: async () => undefined,
    releaseBrokerLock: async () => undefined,
    isTransactional: () => false,
    addPartitionsToTransaction: async () => undefined,
    getSequence: (_t: string, p: number) => sequences.get(p) ?? 0,
    updateSequence: (_t: string, p: number, n: number) => void sequences.set(p, (sequences.get(p) ?? 0) + n),
    getTransactionalId: () => 'x',
    getProducerId: () => 1,
    getProducerEpoch: () => 0,
  };
  const send = createSendMessages({
    logger: { debug: () => undefined, error: () => undefined },
    cluster,
    partitioner: ({ message }: { message: { partition: number } }) => message.partition,
    eosManager: eos,
    retrier: createRetry({ retries: 5, initialRetryTime: 5, maxRetryTime: 20 }),
  });
  return { send, writes, fail, slow, leaderOf, sequences };
}

const messages = (partitions: number[], n: number) =>
  partitions.flatMap((p) => Array.from({ length: n }, (_, i) => ({ partition: p, value: `${p}-${i}` })));

describe('the engine produce path (kafkajs sendMessages replacement)', () => {
  it('a broker failing while another is in flight: the other is written once, the failing one on retry', async () => {
    const f = fakeCluster({ 0: 1, 1: 2 });
    f.fail.set(2, 1);
    f.slow.set(1, 30); // broker 1 answers after broker 2 has failed
    const res = await f.send({
      acks: -1,
      timeout: 1000,
      compression: 0,
      topicMessages: [{ topic: 't', messages: messages([0, 1], 3) }],
    });
    expect(f.writes.filter((w) => w.partition === 0)).toEqual([{ node: 1, partition: 0, count: 3, firstSequence: 0 }]);
    expect(f.writes.filter((w) => w.partition === 1)).toEqual([{ node: 2, partition: 1, count: 3, firstSequence: 0 }]);
    expect(res.map((r) => r.partition).sort()).toEqual([0, 1]);
    expect(f.sequences.get(0)).toBe(3);
    expect(f.sequences.get(1)).toBe(3);
  });

  it('a partition that moves to a broker that already answered is still sent', async () => {
    const f = fakeCluster({ 0: 1, 1: 2 });
    f.fail.set(2, 1);
    // broker 2 refuses (not the leader); partition 1 has moved to broker 1
    f.slow.set(2, 5);
    const move = setTimeout(() => (f.leaderOf[1] = 1), 2);
    const res = await f.send({
      acks: -1,
      timeout: 1000,
      compression: 0,
      topicMessages: [{ topic: 't', messages: messages([0, 1], 2) }],
    });
    clearTimeout(move);
    expect(f.writes.filter((w) => w.partition === 1)).toEqual([{ node: 1, partition: 1, count: 2, firstSequence: 0 }]);
    expect(f.writes.filter((w) => w.partition === 0)).toHaveLength(1);
    expect(res.map((r) => r.partition).sort()).toEqual([0, 1]);
  });
});
