/**
 * The client spike of issue 11 (runtime/client): both adapters, against the real broker, write
 * records to the partitions they are given, answer the offsets the broker gave them, read the same
 * records back from given offsets with the high watermark, and commit offsets that the other
 * client sees.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { KafkajsClient } from '../../runtime/client/kafkajs-client.js';
import { PlatformaticClient } from '../../runtime/client/platformatic-client.js';
import type {
  ClientReader,
  IncomingRecord,
  OutgoingRecord,
  PartitionBatch,
  StreamClient,
  TopicPartitionOffset,
} from '../../runtime/client/types.js';
import { brokers, createTopics, uniqueName } from './helpers.js';

const PARTITIONS = 3;
const T0 = 1_760_000_000_000;

const clients: Record<string, StreamClient> = {};
function client(name: 'kafkajs' | 'platformatic'): StreamClient {
  const config = { clientId: uniqueName(`adapters-${name}`), brokers: brokers() };
  return (clients[name] ??= name === 'kafkajs' ? new KafkajsClient(config) : new PlatformaticClient(config));
}

afterAll(async () => {
  await Promise.all(Object.values(clients).map((c) => c.close()));
});

/** Records i = 0..n-1 of `topic`: partition i mod 3, key k<i>, value v<i>, a header on every other. */
function records(topic: string, from: number, n: number): OutgoingRecord[] {
  return Array.from({ length: n }, (_, j) => {
    const i = from + j;
    const r: OutgoingRecord = {
      topic,
      partition: i % PARTITIONS,
      key: Buffer.from(`k${i}`),
      value: Buffer.from(`v${i}`),
      timestamp: T0 + i,
    };
    if (i % 2 === 0) r.headers = { n: Buffer.from(String(i)) };
    return r;
  });
}

/**
 * Reads until `want` records arrived and every partition is caught up, commits `commit` if given,
 * stops; answers the records and batches.
 */
async function readAll(
  reader: ClientReader,
  from: TopicPartitionOffset[],
  want: number,
  commit?: TopicPartitionOffset[],
): Promise<{ byPartition: Map<number, IncomingRecord[]>; batches: PartitionBatch[] }> {
  const byPartition = new Map<number, IncomingRecord[]>();
  const batches: PartitionBatch[] = [];
  let n = 0;
  const caughtUp = new Set<number>();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${n} of ${want} records in 10 s`)), 10_000);
    reader.done.catch((e) => {
      clearTimeout(timer);
      reject(e);
    });
    reader.start(from, (b) => {
      batches.push(b);
      const list = byPartition.get(b.partition) ?? [];
      list.push(...b.records);
      byPartition.set(b.partition, list);
      n += b.records.length;
      if (b.nextOffset >= b.highWatermark) caughtUp.add(b.partition);
      if (n >= want && caughtUp.size === new Set(from.map((f) => f.partition)).size) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  if (commit) await reader.commit(commit);
  await reader.stop();
  await reader.done;
  return { byPartition, batches };
}

describe('client adapters (runtime/client)', () => {
  it('both produce to the given partitions and read the same records back, with offsets and high watermarks', async () => {
    const topic = uniqueName('adapters');
    await createTopics([{ topic, partitions: PARTITIONS }]);

    // kafkajs writes records 0..29, then @platformatic/kafka writes 30..59, in two sends each
    const acks: Record<string, { partition: number; baseOffset: number; count: number }[]> = {};
    for (const [name, from] of [
      ['kafkajs', 0],
      ['platformatic', 30],
    ] as const) {
      const p = await client(name).producer();
      acks[name] = [...(await p.send(records(topic, from, 15))), ...(await p.send(records(topic, from + 15, 15)))].map(
        ({ partition, baseOffset, count }) => ({ partition, baseOffset, count }),
      );
      await p.close();
    }
    // 5 records per partition and send: offsets 0, 5 (kafkajs), then 10, 15 (platformatic)
    const expected = (bases: number[]) =>
      bases.flatMap((baseOffset) => [0, 1, 2].map((partition) => ({ partition, baseOffset, count: 5 })));
    const sortAcks = (a: { partition: number; baseOffset: number }[]) =>
      [...a].sort((x, y) => x.baseOffset - y.baseOffset || x.partition - y.partition);
    expect(sortAcks(acks.kafkajs!)).toEqual(expected([0, 5]));
    expect(sortAcks(acks.platformatic!)).toEqual(expected([10, 15]));

    // partition p holds records p, p+3, p+6, ... at offsets 0, 1, 2, ...
    const expectedIn = (partition: number, fromOffset: number) =>
      Array.from({ length: 20 - fromOffset }, (_, k) => {
        const offset = fromOffset + k;
        const i = partition + 3 * offset;
        return {
          offset,
          key: `k${i}`,
          value: `v${i}`,
          timestamp: T0 + i,
          headers: i % 2 === 0 ? { n: String(i) } : {},
        };
      });
    const plain = (rs: IncomingRecord[]) =>
      rs.map((r) => ({
        offset: r.offset,
        key: r.key?.toString(),
        value: r.value?.toString(),
        timestamp: r.timestamp,
        headers: Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, v.toString()])),
      }));

    for (const name of ['kafkajs', 'platformatic'] as const) {
      // partitions 0 and 2 only; 0 from offset 0, 2 from offset 7
      const reader = await client(name).reader({ groupId: uniqueName(`adapters-${name}`) });
      const { byPartition, batches } = await readAll(
        reader,
        [
          { topic, partition: 0, offset: 0 },
          { topic, partition: 2, offset: 7 },
        ],
        20 + 13,
      );
      expect([...byPartition.keys()].sort(), name).toEqual([0, 2]);
      expect(plain(byPartition.get(0)!), name).toEqual(expectedIn(0, 0));
      expect(plain(byPartition.get(2)!), name).toEqual(expectedIn(2, 7));
      for (const b of batches) {
        expect(b.topic, name).toBe(topic);
        expect(b.highWatermark, name).toBe(20);
        if (b.records.length) expect(b.nextOffset, name).toBe(b.records[b.records.length - 1]!.offset + 1);
      }
    }
  });

  it('commits offsets in the reader group, and each client sees what the other committed', async () => {
    const topic = uniqueName('adapters-commit');
    await createTopics([{ topic, partitions: PARTITIONS }]);
    const p = await client('kafkajs').producer();
    await p.send(records(topic, 0, 9));
    await p.close();
    for (const [writer, other] of [
      ['kafkajs', 'platformatic'],
      ['platformatic', 'kafkajs'],
    ] as const) {
      const groupId = uniqueName(`adapters-commit-${writer}`);
      await readAll(await client(writer).reader({ groupId }), [{ topic, partition: 1, offset: 0 }], 3, [
        { topic, partition: 1, offset: 2 },
        { topic, partition: 2, offset: 3 },
      ]);
      const seen = await (
        await client(other).reader({ groupId })
      ).committed([
        { topic, partition: 0 },
        { topic, partition: 1 },
        { topic, partition: 2 },
      ]);
      expect(seen, `${writer} committed, ${other} reads`).toEqual([
        { topic, partition: 0, offset: -1 },
        { topic, partition: 1, offset: 2 },
        { topic, partition: 2, offset: 3 },
      ]);
    }
  });
});
