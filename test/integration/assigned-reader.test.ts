/**
 * The group-less reader (runtime/assigned-reader.ts) and the readers built on it, on the real
 * broker: read_committed ranges across transaction markers and aborted records, seeks that drop
 * answers in flight, pause/resume, a position below the log start, global-table following, and no
 * consumer group made by any of it.
 */
import { describe, expect, it } from 'vitest';
import { AssignedReader } from '../../runtime/assigned-reader.js';
import { followTopics, readRanges } from '../../runtime/partition-reader.js';
import type { RawRecord } from '../../runtime/task.js';
import { createTopics, kafkaClient, produce, uniqueName, waitUntil, withAdmin } from './helpers.js';

const values = (rs: RawRecord[]) => rs.map((r) => r.value?.toString());
const groups = () => withAdmin(async (a) => (await a.listGroups()).groups.map((g) => g.groupId));

/** Produces `committed` in one transaction, `aborted` in another that aborts, then `tail` plainly. */
async function transactional(topic: string, committed: string[], aborted: string[], tail: string[]): Promise<void> {
  const kafka = kafkaClient();
  const p = kafka.producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
  await p.connect();
  try {
    const a = await p.transaction();
    await a.send({ topic, messages: aborted.map((v) => ({ key: 'k', value: v, partition: 0 })) });
    await a.abort();
    const c = await p.transaction();
    await c.send({ topic, messages: committed.map((v) => ({ key: 'k', value: v, partition: 0 })) });
    await c.commit();
  } finally {
    await p.disconnect();
  }
  await produce(
    topic,
    tail.map((v) => ({ key: 'k', value: v, partition: 0 })),
    kafka,
  );
}

describe('group-less reading', () => {
  it('reads a range read_committed: aborted records and markers skipped, the range ends past them', async () => {
    const topic = uniqueName('ar-tx');
    await createTopics([{ topic }]);
    await transactional(topic, ['c1', 'c2'], ['a1', 'a2', 'a3'], ['t1']);
    const end = await withAdmin(async (a) => Number((await a.fetchTopicOffsets(topic))[0]!.high));
    // 3 aborted + abort marker + 2 committed + commit marker + 1 plain
    expect(end).toBe(8);
    const before = await groups();
    const got: RawRecord[] = [];
    await readRanges(kafkaClient(), [{ topic, partition: 0, from: 0, to: end }], async (_r, rs) => {
      got.push(...rs);
    });
    expect(values(got)).toEqual(['c1', 'c2', 't1']);
    expect(got.map((r) => r.offset)).toEqual([4, 5, 7]);
    // a range that ends on the commit marker (offset 6) is done once the position passes it
    const upToMarker: RawRecord[] = [];
    await readRanges(kafkaClient(), [{ topic, partition: 0, from: 4, to: 7 }], async (_r, rs) => {
      upToMarker.push(...rs);
    });
    expect(values(upToMarker)).toEqual(['c1', 'c2']);
    // no consumer group was made for any of it
    expect((await groups()).filter((g) => !before.includes(g))).toEqual([]);
  });

  it('an abort from inside onRecords ends the read with its reason, even when the fetch held every range whole', async () => {
    const topic = uniqueName('ar-abort');
    await createTopics([{ topic, partitions: 3 }]);
    await produce(
      topic,
      Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: i % 3 })),
    );
    const ac = new AbortController();
    const calls: number[] = [];
    const read = readRanges(
      kafkaClient(),
      [0, 1, 2].map((partition) => ({ topic, partition, from: 0, to: 10 })),
      async (range) => {
        calls.push(range.partition);
        ac.abort(new Error('interrupted'));
      },
      { signal: ac.signal },
    );
    await expect(read).rejects.toThrow('interrupted');
    expect(calls).toHaveLength(1); // nothing handed on after the abort
  });

  it('drops an answer to a fetch made before a seek; pause and resume; positions', async () => {
    const topic = uniqueName('ar-seek');
    await createTopics([{ topic, partitions: 2 }]);
    await produce(
      topic,
      Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: i % 2 })),
    );
    const reader = new AssignedReader(kafkaClient(), { maxWaitMs: 1500 });
    await reader.connect();
    try {
      await reader.assign(topic, 0, 10);
      await reader.assign(topic, 1, 0);
      reader.pause(topic, 1);
      expect(reader.active()).toBe(true);
      // a fetch waiting at the broker at the end of partition 0; a seek back while it is out; a
      // new record answers the fetch: that answer is for the old position and is dropped
      const inFlight = reader.fetch();
      await new Promise((r) => setTimeout(r, 300));
      await reader.assign(topic, 0, 7);
      await produce(topic, [{ key: 'k20', value: 'v20', partition: 0 }]);
      const stale = await inFlight;
      expect(stale).toEqual([]); // partition 0's answer stale, partition 1 paused
      const p0: RawRecord[] = [];
      while ((reader.position(topic, 0) ?? 0) < 11) for (const f of await reader.fetch()) p0.push(...f.records);
      expect(p0.map((r) => r.offset)).toEqual([7, 8, 9, 10]);
      expect(values(p0)).toEqual(['v14', 'v16', 'v18', 'v20']);
      reader.resume(topic, 1);
      reader.unassign(topic, 0);
      const p1: RawRecord[] = [];
      let end = -1;
      while ((reader.position(topic, 1) ?? 0) < 10)
        for (const f of await reader.fetch()) {
          expect(f.partition).toBe(1);
          p1.push(...f.records);
          end = f.end;
        }
      expect(values(p1)).toEqual(Array.from({ length: 10 }, (_, i) => `v${2 * i + 1}`));
      expect(end).toBe(10);
      reader.pause(topic, 1);
      expect(reader.active()).toBe(false);
      const t = Date.now();
      expect(await reader.fetch()).toEqual([]); // nothing to fetch: waits maxWaitMs
      expect(Date.now() - t).toBeGreaterThanOrEqual(1400);
    } finally {
      await reader.close();
    }
  });

  it('a position below the log start goes on from the log start', async () => {
    const topic = uniqueName('ar-range');
    await createTopics([{ topic }]);
    await produce(
      topic,
      Array.from({ length: 10 }, (_, i) => ({ key: 'k', value: `v${i}`, partition: 0 })),
    );
    await withAdmin(async (a) => {
      await a.fetchTopicMetadata({ topics: [topic] });
      await a.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '6' }] });
    });
    const reader = new AssignedReader(kafkaClient(), { maxWaitMs: 100 });
    await reader.connect();
    try {
      await reader.assign(topic, 0, 2);
      const got: RawRecord[] = [];
      const deadline = Date.now() + 20_000;
      while ((reader.position(topic, 0) ?? 0) < 10 && Date.now() < deadline)
        for (const f of await reader.fetch()) got.push(...f.records);
      expect(got.map((r) => r.offset)).toEqual([6, 7, 8, 9]);
    } finally {
      await reader.close();
    }
  });

  it('follows a topic: ready once caught up, then new records arrive', async () => {
    const topic = uniqueName('ar-follow');
    await createTopics([{ topic, partitions: 3, compact: true }]);
    await produce(
      topic,
      Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: i % 3 })),
    );
    const before = await groups();
    const seen = new Map<string, string>();
    const f = await followTopics(kafkaClient(), [topic], (_t, _p, rs) => {
      for (const r of rs) seen.set(r.key!.toString(), r.value!.toString());
    });
    try {
      await f.ready;
      expect(seen.size).toBe(30);
      await produce(topic, [{ key: 'k1', value: 'new', partition: 1 }]);
      await waitUntil('the new record followed', () => seen.get('k1') === 'new', 20_000);
      expect((await groups()).filter((g) => !before.includes(g))).toEqual([]);
    } finally {
      await f.stop();
    }
  });
});
