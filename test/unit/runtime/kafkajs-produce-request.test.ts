/**
 * The one-pass Produce request encoder writes the same bytes as kafkajs' own (loaded here from its
 * source file, whatever the module cache holds), for keys, values and headers of every kind,
 * idempotent and transactional producers, several topics and partitions, timestamps far apart and
 * gzip; and kafkajs' connection accepts what it returns (an Encoder).
 */
import { createRequire } from 'node:module';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { produceRequestV3, type ProduceRequestArgs } from '../../../runtime/kafkajs-produce-request.js';
import { kafkajsOriginal } from './kafkajs-original.js';

const require = createRequire(import.meta.url);
type Request = {
  apiKey: number;
  apiVersion: number;
  apiName: string;
  expectResponse(): boolean;
  encode(): Promise<{ buffer: Buffer }>;
};
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown };

/** kafkajs' own v3 request module (the preload may have replaced the cached one) */
const original = kafkajsOriginal<(args: ProduceRequestArgs) => Request>(
  'kafkajs/src/protocol/requests/produce/v3/request.js',
);
const T0 = 1_764_000_000_000;

async function both(args: ProduceRequestArgs): Promise<[Buffer, Buffer]> {
  const mine = produceRequestV3(args) as unknown as Request;
  const theirs = original(args);
  expect([mine.apiKey, mine.apiVersion, mine.apiName, mine.expectResponse()]).toEqual([
    theirs.apiKey,
    theirs.apiVersion,
    theirs.apiName,
    theirs.expectResponse(),
  ]);
  return [(await mine.encode()).buffer, (await theirs.encode()).buffer];
}

describe('one-pass Produce request (v3) encoder', () => {
  it('writes the bytes kafkajs writes: keys, values and headers of every kind, several topics and partitions', async () => {
    const messages = (n: number, base: number) =>
      Array.from({ length: n }, (_, i) => ({
        key: i % 5 === 0 ? null : i % 2 ? Buffer.from(`key-${base}-${i}`) : `key-${base}-${i}-é`,
        value: i % 7 === 3 ? null : i % 3 ? Buffer.alloc(100 + i * 13, i) : `value ${i} ✓`,
        timestamp: String(T0 + ((i * 7919) % 5000)),
        ...(i % 4 === 1
          ? {
              headers: {
                'streams.origin': 'app-1',
                bin: Buffer.from([0, 1, 2, i & 0xff]),
                many: ['a', Buffer.from('b')],
                empty: '',
              },
            }
          : {}),
      }));
    for (const producer of [
      { producerId: Long.fromValue(-1), producerEpoch: 0 },
      { producerId: Long.fromValue('123456789012'), producerEpoch: 7, transactionalId: 'app-0_3' },
    ]) {
      for (const acks of [-1, 1]) {
        const args: ProduceRequestArgs = {
          acks,
          timeout: 30_000,
          ...producer,
          topicData: [
            {
              topic: 'mail-decisions',
              partitions: [
                { partition: 0, firstSequence: 0, messages: messages(300, 0) },
                { partition: 5, firstSequence: 1234, messages: messages(1, 1) },
              ],
            },
            {
              topic: 'user-preferences-ü',
              partitions: [{ partition: 2, firstSequence: 99, messages: messages(40, 2) }],
            },
          ],
        };
        const [mine, theirs] = await both(args);
        expect(mine.equals(theirs)).toBe(true);
      }
    }
  });

  it('writes the same bytes for timestamps weeks and months apart (varlong deltas)', async () => {
    const args: ProduceRequestArgs = {
      acks: -1,
      timeout: 1000,
      topicData: [
        {
          topic: 't',
          partitions: [
            {
              partition: 0,
              messages: [
                { key: 'a', value: 'x', timestamp: String(T0) },
                { key: 'b', value: 'y', timestamp: String(T0 + 40 * 86_400_000) },
                { key: 'c', value: 'z', timestamp: String(T0 + 3) },
                { key: 'd', value: '12345', timestamp: String(T0 + 9_999_999_999) },
              ],
            },
          ],
        },
      ],
    };
    const [mine, theirs] = await both(args);
    expect(mine.equals(theirs)).toBe(true);
  });

  it('compresses with kafkajs codecs: the same batch once decompressed, the same framing', async () => {
    const args: ProduceRequestArgs = {
      acks: -1,
      timeout: 1000,
      compression: 1, // GZIP
      topicData: [
        {
          topic: 't',
          partitions: [
            {
              partition: 3,
              messages: Array.from({ length: 50 }, (_, i) => ({
                key: `k${i}`,
                value: Buffer.alloc(200, i),
                timestamp: String(T0 + i),
              })),
            },
          ],
        },
      ],
    };
    const [mine, theirs] = await both(args);
    // gzip output may differ in its header bytes: compare the decompressed records and the rest
    const split = (b: Buffer) => {
      const head = 2 + 2 + 4 + 4 + 2 + 1 + 4 + 4 + 4 + 8 + 4; // request and topic/partition framing, firstOffset, length
      const recordsAt = head + 4 + 1 + 4 + 40; // epoch, magic, crc, body header (incl. count)
      return { body: b.subarray(head + 4 + 1 + 4, recordsAt), records: gunzipSync(b.subarray(recordsAt)) };
    };
    expect(split(mine).body.equals(split(theirs).body)).toBe(true);
    expect(split(mine).records.equals(split(theirs).records)).toBe(true);
  });
});
