/**
 * The engine's replacement for kafkajs' `producer/sendMessages.js` (installed by
 * kafkajs-preload.ts before kafkajs loads). Same contract: one call produces a set of topic
 * messages, with kafkajs' retrier, and answers one entry per (topic, partition) written.
 *
 * kafkajs' own version keeps its progress per broker object and waits for the broker requests
 * with `Promise.all`. Two faults follow, both seen in this project's fault and exactly-once tests:
 *  - when one broker's request fails while another's is still in flight, the retry starts at
 *    once and sends the in-flight request's partitions again; the first request then succeeds
 *    too, with other sequence numbers: its records are written twice (under exactly-once, twice
 *    in one transaction);
 *  - when a partition moves to a broker that has already answered, the retry skips it and reports
 *    success for records it never sent (a loss).
 * Here progress is kept per partition (a partition written is never sent again; one not written is
 * sent to its current leader), and a round waits for every broker request before it retries.
 */
import { createRequire } from 'node:module';

interface Broker {
  nodeId: number;
  produce(req: unknown): Promise<unknown>;
}
interface Cluster {
  refreshMetadataIfNecessary(): Promise<void>;
  refreshMetadata(): Promise<void>;
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  findTopicPartitionMetadata(topic: string): unknown[];
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(q: { nodeId: string | number }): Promise<Broker>;
  removeBroker(q: { host: string; port: number }): void;
  isConnected(): boolean;
  connect(): Promise<void>;
  targetTopics: Set<string>;
}
interface EosManager {
  acquireBrokerLock(b: Broker): Promise<void>;
  releaseBrokerLock(b: Broker): Promise<void>;
  isTransactional(): boolean;
  addPartitionsToTransaction(topicData: TopicData[]): Promise<void>;
  getSequence(topic: string, partition: number): number;
  updateSequence(topic: string, partition: number, increment: number): void;
  getTransactionalId(): string;
  getProducerId(): unknown;
  getProducerEpoch(): unknown;
}
interface TopicData {
  topic: string;
  partitions: { partition: number; messages: unknown[]; firstSequence?: number }[];
}
type Retrier = <T>(fn: (bail: (e: unknown) => void, retryCount: number, retryTime: number) => Promise<T>) => Promise<T>;
interface Logger {
  debug(msg: string, extra?: unknown): void;
  error(msg: string, extra?: unknown): void;
}
type ErrorLike = Error & { type?: string; retriable?: boolean; host?: string; port?: number };

const require = createRequire(import.meta.url);
type Grouping = (a: {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: unknown;
}) => Record<string, unknown[]>;
const { KafkaJSMetadataNotLoaded } = require('kafkajs/src/errors.js') as {
  KafkaJSMetadataNotLoaded: new (msg: string) => Error;
};
const { staleMetadata } = require('kafkajs/src/protocol/error.js') as { staleMetadata(e: unknown): boolean };

export function createSendMessages({
  logger,
  cluster,
  partitioner,
  eosManager,
  retrier,
}: {
  logger: Logger;
  cluster: Cluster;
  partitioner: unknown;
  eosManager: EosManager;
  retrier: Retrier;
}) {
  // (looked up here, not at load: kafkajs-preload.ts puts its linear version in place first)
  const groupMessagesPerPartition = require('kafkajs/src/producer/groupMessagesPerPartition.js') as Grouping;
  return async ({
    acks,
    timeout,
    compression,
    topicMessages,
  }: {
    acks: number;
    timeout: number;
    compression: unknown;
    topicMessages: { topic: string; messages: unknown[] }[];
  }): Promise<Record<string, unknown>[]> => {
    /** answers of the partitions written so far, by `topic:partition` */
    const written = new Map<string, Record<string, unknown>>();

    const round = async (): Promise<void> => {
      await cluster.refreshMetadataIfNecessary();
      const perLeader = new Map<string, TopicData[]>();
      for (const { topic, messages } of topicMessages) {
        const partitionMetadata = cluster.findTopicPartitionMetadata(topic);
        if (partitionMetadata.length === 0) throw new KafkaJSMetadataNotLoaded('Producing to topic without metadata');
        const perPartition = groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner });
        const pending = Object.keys(perPartition)
          .map(Number)
          .filter((p) => !written.has(`${topic}:${p}`));
        if (!pending.length) continue;
        const leaders = cluster.findLeaderForPartitions(topic, pending);
        for (const [nodeId, partitions] of Object.entries(leaders)) {
          let list = perLeader.get(nodeId);
          if (!list) perLeader.set(nodeId, (list = []));
          list.push({
            topic,
            partitions: partitions.map((partition) => ({ partition, messages: perPartition[partition]! })),
          });
        }
      }
      // every broker's request runs to its end before the round is judged
      const results = await Promise.allSettled(
        [...perLeader].map(async ([nodeId, topicData]) => {
          const broker = await cluster.findBroker({ nodeId });
          await eosManager.acquireBrokerLock(broker);
          try {
            if (eosManager.isTransactional()) await eosManager.addPartitionsToTransaction(topicData);
            for (const { topic, partitions } of topicData)
              for (const entry of partitions) {
                entry.firstSequence = eosManager.getSequence(topic, entry.partition);
                eosManager.updateSequence(topic, entry.partition, entry.messages.length);
              }
            let response: unknown;
            try {
              response = await broker.produce({
                transactionalId: eosManager.isTransactional() ? eosManager.getTransactionalId() : undefined,
                producerId: eosManager.getProducerId(),
                producerEpoch: eosManager.getProducerEpoch(),
                acks,
                timeout,
                compression,
                topicData,
              });
            } catch (e) {
              for (const { topic, partitions } of topicData)
                for (const entry of partitions)
                  eosManager.updateSequence(topic, entry.partition, -entry.messages.length);
              throw e;
            }
            if (acks === 0) {
              for (const { topic, partitions } of topicData)
                for (const { partition } of partitions) written.set(`${topic}:${partition}`, {});
              return;
            }
            const topics = (response as { topics: { topicName: string; partitions: Record<string, unknown>[] }[] })
              .topics;
            for (const { topicName, partitions } of topics)
              for (const p of partitions) written.set(`${topicName}:${p.partition as number}`, { topicName, ...p });
          } finally {
            await eosManager.releaseBrokerLock(broker);
          }
        }),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    };

    return retrier(async (bail, retryCount, retryTime) => {
      await cluster.addMultipleTargetTopics(topicMessages.map(({ topic }) => topic));
      try {
        await round();
        return acks === 0 ? [] : [...written.values()];
      } catch (err) {
        const e = err as ErrorLike;
        if (e.name === 'KafkaJSConnectionClosedError') cluster.removeBroker({ host: e.host!, port: e.port! });
        if (!cluster.isConnected()) {
          logger.debug(`Cluster has disconnected, reconnecting: ${e.message}`, { retryCount, retryTime });
          await cluster.connect();
          await cluster.refreshMetadata();
          throw e;
        }
        if (
          staleMetadata(e) ||
          e.name === 'KafkaJSMetadataNotLoaded' ||
          e.name === 'KafkaJSConnectionError' ||
          e.name === 'KafkaJSConnectionClosedError' ||
          (e.name === 'KafkaJSProtocolError' && e.retriable)
        ) {
          logger.error(`Failed to send messages: ${e.message}`, { retryCount, retryTime });
          await cluster.refreshMetadata();
          throw e;
        }
        logger.error(`${e.message}`, { retryCount, retryTime });
        if (e.retriable) throw e;
        bail(e);
        return [];
      }
    });
  };
}
