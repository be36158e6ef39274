/**
 * The linear partition grouping put in place of kafkajs' quadratic one gives the same groups, in
 * the same order, as kafkajs' original.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kafkajsGroupingPatched, kafkajsProduceRequestPatched } from '../../../runtime/kafkajs-preload.js';
import { produceRequestV3 } from '../../../runtime/kafkajs-produce-request.js';

const require = createRequire(import.meta.url);

describe('kafkajs preload', () => {
  it('groups messages per partition as kafkajs does, in linear time', () => {
    const file = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
    // kafkajs' own version, evaluated from its source
    const original = new Function('module', readFileSync(file, 'utf8') + '\nreturn module.exports;')({}) as (
      a: unknown,
    ) => Record<number, unknown[]>;
    const ours = require(file) as typeof original;
    const messages = Array.from({ length: 500 }, (_, i) => ({ value: `v${i}`, partition: (i * 7) % 6 }));
    const partitioner = ({ message }: { message: { partition: number } }) => message.partition;
    const args = { topic: 't', partitionMetadata: [{}, {}, {}, {}, {}, {}], messages, partitioner };
    expect(ours(args)).toEqual(original(args));
    expect(ours({ ...args, partitionMetadata: [] })).toEqual({});
    expect(kafkajsGroupingPatched()).toBe(true);
    const many = Array.from({ length: 50_000 }, () => ({ partition: 0 }));
    expect(ours({ ...args, messages: many })[0]).toHaveLength(50_000);
  });

  it('encodes Produce requests of every version kafkajs speaks (v3-v7) with the one-pass encoder', async () => {
    expect(kafkajsProduceRequestPatched()).toBe(true);
    const args = {
      acks: -1,
      timeout: 1000,
      topicData: [
        {
          topic: 't',
          partitions: [{ partition: 0, messages: [{ key: 'k', value: 'v', timestamp: '1764000000000' }] }],
        },
      ],
    };
    const ours = (await produceRequestV3(args).encode()).buffer;
    for (const v of [3, 4, 5, 6, 7]) {
      const request = (require(`kafkajs/src/protocol/requests/produce/v${v}/request.js`) as typeof produceRequestV3)(
        args,
      );
      expect(request.apiVersion).toBe(v);
      expect((await request.encode()).buffer.equals(ours)).toBe(true);
    }
  });
});
