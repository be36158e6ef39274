import type { Producer } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { KafkaRecordCollector } from '../../../runtime/record-collector.js';

describe('KafkaRecordCollector request size', () => {
  it('splits produce requests by bytes as well as by records, in order', async () => {
    const requests: number[][] = [];
    const producer = {
      sendBatch: async ({ topicMessages }: { topicMessages: { messages: { value: Buffer }[] }[] }) => {
        requests.push(topicMessages.flatMap((t) => t.messages.map((m) => m.value.readUInt32BE(0))));
        return [];
      },
    } as unknown as Producer;
    const c = new KafkaRecordCollector({ producer, maxBatchBytes: 10_000 });
    for (let i = 0; i < 50; i++) {
      const value = Buffer.alloc(1000);
      value.writeUInt32BE(i, 0);
      c.send({ topic: 't', key: null, value, partition: 0, timestamp: 0 });
    }
    await c.flush();
    // 1000 bytes + 64 of overhead per record: 9 records per request of at most 10,000 bytes
    expect(requests.map((r) => r.length)).toEqual([9, 9, 9, 9, 9, 5]);
    expect(requests.flat()).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // a single record larger than the limit still goes, alone
    const big = new KafkaRecordCollector({ producer, maxBatchBytes: 100 });
    requests.length = 0;
    for (let i = 0; i < 2; i++) {
      const value = Buffer.alloc(500);
      value.writeUInt32BE(i, 0);
      big.send({ topic: 't', key: null, value, partition: 0, timestamp: 0 });
    }
    await big.flush();
    expect(requests).toEqual([[0], [1]]);
  });
});
