/**
 * The 3-node KRaft cluster of scripts/kafka (for failover tests): it starts, replicates across the
 * three nodes, keeps serving writes and reads with a node down, and stops without leaving a process.
 */
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { startKafka } from '../../scripts/kafka/local.js';
import { withRetries } from '../../runtime/retry.js';

describe('local 3-node KRaft cluster', () => {
  it('replicates, survives a stopped node, and stops cleanly', async () => {
    const cluster = await startKafka({ nodes: 3 });
    try {
      expect(cluster.brokers).toHaveLength(3);
      const kafka = new Kafka({
        clientId: 'cluster-test',
        brokers: cluster.brokers,
        logLevel: logLevel.NOTHING,
        // leadership moves off a killed node once the controller fences it (a few seconds)
        retry: { retries: 20, initialRetryTime: 250, maxRetryTime: 2000 },
      });
      const admin = kafka.admin();
      await admin.connect();
      const d = await admin.describeCluster();
      expect(d.brokers.map((b) => b.nodeId).sort()).toEqual([1, 2, 3]);
      await admin.createTopics({
        waitForLeaders: true,
        topics: [{ topic: 'replicated', numPartitions: 3, replicationFactor: 3 }],
      });
      // (a broker may not know the new topic for a moment after its leaders are elected: retried)
      const md = await withRetries('topic metadata', () => admin.fetchTopicMetadata({ topics: ['replicated'] }));
      for (const p of md.topics[0]!.partitions) expect(p.replicas.sort()).toEqual([1, 2, 3]);

      // one node down: acks=all still succeeds (min.insync.replicas=2), and everything is readable
      await cluster.stopNode(2, 'SIGKILL');
      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic: 'replicated',
        acks: -1,
        messages: Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })),
      });
      await producer.disconnect();
      const offsets = await admin.fetchTopicOffsets('replicated');
      expect(offsets.reduce((n, p) => n + Number(p.high), 0)).toBe(30);

      // the node comes back and catches up
      await cluster.startNode(2);
      const d2 = await admin.describeCluster();
      expect(d2.brokers).toHaveLength(3);
      await admin.disconnect();
    } finally {
      await cluster.stop();
    }
    for (const n of cluster.nodes) expect(n.process).toBeUndefined();
  });
});
