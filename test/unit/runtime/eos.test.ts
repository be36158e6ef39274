/**
 * The task producer of exactly-once against a fake kafkajs producer: the transactional id is
 * initialised at start (fencing), transactions begin on the first send, a commit carries the input
 * offsets with their metadata, an empty interval sends nothing, and a fenced producer or a
 * transaction the broker ended becomes TASK_FENCED / TRANSACTION_LOST.
 */
import type { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { StreamsError } from '../../../runtime/errors.js';
import { TaskProducer, isTransactionLost, transactionLostError } from '../../../runtime/eos.js';

class ProtocolError extends Error {
  override readonly name = 'KafkaJSProtocolError';
  constructor(readonly type: string) {
    super(`broker said ${type}`);
  }
}

function fakeKafka() {
  const log: string[] = [];
  const created: Record<string, unknown>[] = [];
  let failCommit: Error | undefined;
  const failOffsets: Error[] = [];
  let txnNo = 0;
  const kafka = {
    producer(opts: Record<string, unknown>) {
      created.push(opts);
      return {
        connect: async () => void log.push('connect'),
        disconnect: async () => void log.push('disconnect'),
        transaction: async () => {
          const n = ++txnNo;
          log.push(`begin ${n}`);
          return {
            sendBatch: async (b: { topicMessages: { topic: string; messages: unknown[] }[] }) => {
              log.push(`send ${n} ${b.topicMessages.map((t) => `${t.topic}x${t.messages.length}`).join(',')}`);
              return [];
            },
            sendOffsets: async (o: {
              consumerGroupId: string;
              topics: { topic: string; partitions: { partition: number; offset: string; metadata: string | null }[] }[];
            }) => {
              const f = failOffsets.shift();
              if (f) throw f;
              log.push(
                `offsets ${n} ${o.consumerGroupId} ${o.topics
                  .map((t) => t.partitions.map((p) => `${t.topic}/${p.partition}@${p.offset}:${p.metadata}`).join(','))
                  .join(';')}`,
              );
            },
            commit: async () => {
              if (failCommit) throw failCommit;
              log.push(`commit ${n}`);
            },
            abort: async () => void log.push(`abort ${n}`),
            isActive: () => true,
          };
        },
      };
    },
  } as unknown as Kafka;
  return {
    kafka,
    log,
    created,
    failNextCommit: (e: Error) => (failCommit = e),
    failOffsets: (...e: Error[]) => failOffsets.push(...e),
  };
}

describe('TaskProducer', () => {
  it('initialises its transactional id at start, begins on the first send and commits outputs with offsets', async () => {
    const f = fakeKafka();
    const p = new TaskProducer({ kafka: f.kafka, applicationId: 'app', taskId: '0_3', transactionTimeoutMs: 10_000 });
    await p.init();
    expect(f.created[0]).toMatchObject({ transactionalId: 'app-0_3', idempotent: true, transactionTimeout: 10_000 });
    // connect, then an empty transaction: InitProducerId (fencing the previous owner) without a request
    expect(f.log).toEqual(['connect', 'begin 1', 'abort 1']);
    expect(p.inTransaction()).toBe(false);
    await p.sendBatch({ topicMessages: [{ topic: 'out', messages: [{ value: 'a' }] }] });
    await p.sendBatch({ topicMessages: [{ topic: 'cl', messages: [{ value: 'b' }, { value: 'c' }] }] });
    expect(p.inTransaction()).toBe(true);
    await p.commit('app', [
      { topic: 'in', partition: 3, offset: 17, metadata: '{"v":1}' },
      { topic: 'in2', partition: 3, offset: 4, metadata: '{"v":1}' },
    ]);
    expect(f.log.slice(3)).toEqual([
      'begin 2',
      'send 2 outx1',
      'send 2 clx2',
      'offsets 2 app in/3@17:{"v":1};in2/3@4:{"v":1}',
      'commit 2',
    ]);
    expect(p.inTransaction()).toBe(false);
  });

  it('an interval without sends or offsets commits nothing; offsets alone make a transaction', async () => {
    const f = fakeKafka();
    const p = new TaskProducer({ kafka: f.kafka, applicationId: 'app', taskId: '0_0', transactionTimeoutMs: 10_000 });
    await p.init();
    await p.commit('app', []);
    expect(p.stats.empty).toBe(1);
    expect(f.log).toEqual(['connect', 'begin 1', 'abort 1']);
    await p.commit('app', [{ topic: 'in', partition: 0, offset: 5, metadata: null }]);
    expect(f.log.slice(3)).toEqual(['begin 2', 'offsets 2 app in/0@5:null', 'commit 2']);
  });

  it('a fenced producer fails the commit with TASK_FENCED; abort and close are best effort', async () => {
    const f = fakeKafka();
    const p = new TaskProducer({ kafka: f.kafka, applicationId: 'app', taskId: '0_1', transactionTimeoutMs: 10_000 });
    await p.init();
    await p.sendBatch({ topicMessages: [{ topic: 'out', messages: [{ value: 'a' }] }] });
    f.failNextCommit(new ProtocolError('PRODUCER_FENCED'));
    const err = await p.commit('app', []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamsError);
    expect((err as StreamsError).code).toBe('TASK_FENCED');
    expect(isTransactionLost(err)).toBe(true);
    await p.abort();
    expect(f.log.at(-1)).toBe('abort 2');
    await p.close();
    await p.close();
    expect(f.log.filter((l) => l === 'disconnect')).toHaveLength(1);
  });

  it('retries offsets the coordinator answers CONCURRENT_TRANSACTIONS to; other failures lose the transaction', async () => {
    const f = fakeKafka();
    const p = new TaskProducer({ kafka: f.kafka, applicationId: 'app', taskId: '0_0', transactionTimeoutMs: 10_000 });
    await p.init();
    f.failOffsets(new ProtocolError('CONCURRENT_TRANSACTIONS'), new ProtocolError('CONCURRENT_TRANSACTIONS'));
    await p.commit('app', [{ topic: 'in', partition: 0, offset: 1, metadata: null }]);
    expect(f.log.slice(3)).toEqual(['begin 2', 'offsets 2 app in/0@1:null', 'commit 2']);
    f.failOffsets(new ProtocolError('GROUP_AUTHORIZATION_FAILED'));
    const err = await p
      .commit('app', [{ topic: 'in', partition: 0, offset: 2, metadata: null }])
      .catch((e: unknown) => e);
    expect((err as StreamsError).code).toBe('TRANSACTION_LOST');
  });

  it('tells lost transactions from other errors, through wrapping errors', () => {
    expect(isTransactionLost(new ProtocolError('INVALID_PRODUCER_EPOCH'))).toBe(true);
    expect(isTransactionLost(new ProtocolError('INVALID_TXN_STATE'))).toBe(true);
    expect(isTransactionLost(new ProtocolError('NOT_LEADER_OR_FOLLOWER'))).toBe(false);
    expect(isTransactionLost(new Error('boom'))).toBe(false);
    const wrapped = new StreamsError('PRODUCE_FAILED', 'x', {
      cause: transactionLostError('0_2', new ProtocolError('INVALID_TXN_STATE')),
    });
    expect(isTransactionLost(wrapped)).toBe(true);
    expect(transactionLostError('0_2', new ProtocolError('INVALID_TXN_STATE')).code).toBe('TRANSACTION_LOST');
    expect(transactionLostError('0_2', new ProtocolError('PRODUCER_FENCED')).code).toBe('TASK_FENCED');
  });
});
