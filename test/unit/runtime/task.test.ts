import { afterEach, describe, expect, it, vi } from 'vitest';
import { ProcessingError, SerdeError, type StreamsError } from '../../../runtime/errors.js';
import type { Processor, ProcessorContext, RecordMetadata, StreamRecord } from '../../../runtime/processor.js';
import { MemoryRecordCollector } from '../../../runtime/record-collector.js';
import { jsonSerde, longSerde, stringSerde } from '../../../runtime/serdes.js';
import { TaskStateManager } from '../../../runtime/state-manager.js';
import type { KeyValueStore } from '../../../runtime/state/store.js';
import { StreamTask, type RawRecord, type TaskOptions } from '../../../runtime/task.js';
import { TopologyBuilder, type Topology } from '../../../runtime/topology.js';

interface Seen {
  topic: string;
  key: string;
  value: unknown;
  timestamp: number;
  meta: RecordMetadata | undefined;
}

/** Two sources (A, B) into one recording processor that forwards to sink `out`. */
function twoSources(seen: Seen[], onRecord?: (r: StreamRecord<string, unknown>, ctx: ProcessorContext) => unknown) {
  return new TopologyBuilder()
    .source('a', { topic: 'A', key: stringSerde, value: jsonSerde<unknown>() })
    .source('b', { topic: 'B', key: stringSerde, value: jsonSerde<unknown>() })
    .processor(
      'rec',
      (): Processor<string, unknown> => {
        let ctx!: ProcessorContext;
        return {
          init: (c) => void (ctx = c),
          async process(r) {
            const meta = ctx.recordMetadata();
            seen.push({ topic: meta?.topic ?? '?', key: r.key, value: r.value, timestamp: r.timestamp, meta });
            await onRecord?.(r, ctx);
            await ctx.forward(r);
          },
        };
      },
      'a',
      'b',
    )
    .sink('out', { topic: 'out', key: stringSerde, value: jsonSerde<unknown>() }, 'rec')
    .build();
}

const raw = (offset: number, timestamp: number, value: unknown = { ts: timestamp }, key = `k${offset}`): RawRecord => ({
  key: Buffer.from(key),
  value: Buffer.from(JSON.stringify(value)),
  timestamp,
  offset,
});

const tasks: { task: StreamTask; state: TaskStateManager }[] = [];

async function makeTask(
  topology: Topology,
  overrides: Partial<TaskOptions> = {},
): Promise<{ task: StreamTask; collector: MemoryRecordCollector; state: TaskStateManager }> {
  const collector = (overrides.collector as MemoryRecordCollector | undefined) ?? new MemoryRecordCollector();
  const partition = overrides.partition ?? 0;
  const state = new TaskStateManager({
    taskId: `0_${partition}`,
    partition,
    taskDir: undefined,
    stores: topology.resolvedStores('app'),
    collector,
    cacheMaxEntries: 0,
  });
  await state.open();
  const task = new StreamTask({
    applicationId: 'app',
    partition,
    topology,
    stores: state.storeMap(),
    globalTables: new Map(),
    collector,
    coPartitioned: new Set(topology.sourceTopics()),
    maxTaskIdleMs: 0,
    deserializationErrorPolicy: 'dlq',
    processingErrorPolicy: 'dlq',
    dlqTopic: 'app-dlq',
    ...overrides,
  });
  await task.init();
  tasks.push({ task, state });
  return { task, collector, state };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

afterEach(async () => {
  for (const { task, state } of tasks.splice(0)) {
    await task.close();
    await state.close();
  }
});

describe('StreamTask: timestamp order across source partitions', () => {
  it('processes two topics in timestamp order when both are buffered, whatever the enqueue order', async () => {
    for (const order of ['AB', 'BA'] as const) {
      const seen: Seen[] = [];
      const { task } = await makeTask(twoSources(seen));
      task.pause();
      const enqA = () => task.enqueue('A', [raw(0, 1), raw(1, 3), raw(2, 5)]);
      const enqB = () => task.enqueue('B', [raw(0, 2), raw(1, 4)]);
      const done = order === 'AB' ? [enqA(), enqB()] : [enqB(), enqA()];
      await tick();
      expect(seen).toEqual([]);
      expect(task.buffered()).toBe(5);
      task.resume();
      await Promise.all(done);
      expect(seen.map((s) => s.timestamp)).toEqual([1, 2, 3, 4, 5]);
      expect(seen.map((s) => s.topic)).toEqual(['A', 'B', 'A', 'B', 'A']);
      expect(task.buffered()).toBe(0);
    }
  });

  it('waits for a lagging partition (high watermark beyond what is buffered), then merges in order', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen), { maxTaskIdleMs: 10_000 });
    // B is known to hold offsets 0 and 1, not fetched yet
    await task.enqueue('B', [], 2);
    const a = task.enqueue('A', [raw(0, 1), raw(1, 3), raw(2, 5)], 3);
    await tick(30);
    expect(seen).toEqual([]);
    const b = task.enqueue('B', [raw(0, 2), raw(1, 4)], 2);
    await Promise.all([a, b]);
    expect(seen.map((s) => s.timestamp)).toEqual([1, 2, 3, 4, 5]);
  });

  it('never processes ahead of a lagging partition, however long maxTaskIdleMs is', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen), { maxTaskIdleMs: 20 });
    // B is known to hold offsets 0..4, none fetched yet
    await task.enqueue('B', [], 5);
    const a = task.enqueue('A', [raw(0, 1), raw(1, 3)]);
    await tick(150);
    expect(seen).toEqual([]);
    expect(task.lagWaits).toBeGreaterThan(0);
    const b = task.enqueue('B', [raw(0, 2), raw(1, 4), raw(2, 6), raw(3, 7), raw(4, 8)], 5);
    await Promise.all([a, b]);
    expect(seen.map((s) => s.timestamp)).toEqual([1, 2, 3, 4, 6, 7, 8]);
  });

  it('a fetcher that moves past offsets without records (control records) ends the wait', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen));
    await task.enqueue('B', [], 3);
    const a = task.enqueue('A', [raw(0, 1)]);
    await tick(30);
    expect(seen).toEqual([]);
    task.noteFetched('B', 3);
    await a;
    expect(seen.map((s) => s.timestamp)).toEqual([1]);
  });

  it('a resume while the task is being suspended does not start a batch; every record is processed once', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen, () => tick(2)));
    task.setPosition('A', 0, 40);
    task.setPosition('B', 0, 0);
    const records = Array.from({ length: 40 }, (_, i) => raw(i, i + 1));
    void task.enqueue('A', records.slice(0, 20), 40, 0).catch(() => undefined);
    void task.enqueue('A', records.slice(20), 40, 20).catch(() => undefined);
    await tick(5);
    const suspended = task.suspend();
    // a heartbeat that comes back, or a commit ending, resumes while the suspension quiesces
    for (let i = 0; i < 5; i++) {
      task.resume();
      await tick(1);
    }
    await suspended;
    const processed = seen.length;
    await tick(30);
    expect(seen.length).toBe(processed);
    // the records from the position on come again (the consumer fetches from there)
    const from = task.committableOffsets().get('A')!;
    expect(from).toBe(processed);
    task.resumeRunning();
    await task.enqueue('A', records.slice(from), 40, from);
    expect(seen.map((x) => x.timestamp)).toEqual(records.map((r) => r.timestamp));
  });

  it("drops a fetched batch that does not continue the queue's position (stale consumer position)", async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen));
    // before the position is known: dropped (the consumer is sought to it and fetches again)
    await task.enqueue('A', [raw(5, 50)], 10, 5);
    expect(task.staleBatches).toBe(1);
    task.setPosition('A', 3, 10);
    task.setPosition('B', 0, 0);
    // fetched from beyond the position (the consumer was ahead): dropped, nothing skipped
    await task.enqueue('A', [raw(7, 70), raw(8, 80)], 10, 7);
    expect(task.staleBatches).toBe(2);
    // an empty batch from beyond the position does not move it either
    task.noteFetched('A', 9, 10, 7);
    // from before the position (a re-fetch): the records below it are dropped, the rest taken
    const done = task.enqueue('A', [raw(1, 10), raw(2, 20), raw(3, 30), raw(4, 40)], 10, 1);
    await done;
    expect(seen.map((x) => x.timestamp)).toEqual([30, 40]);
    // a batch continuing the position (markers only) moves it
    task.noteFetched('A', 6, 10, 5);
    const next = task.enqueue('A', [raw(6, 60)], 10, 6);
    await next;
    expect(seen.map((x) => x.timestamp)).toEqual([30, 40, 60]);
    expect(task.staleBatches).toBe(2);
  });

  it('waits maxTaskIdleMs for an empty partition that is caught up (or of unknown end), then goes on', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen), { maxTaskIdleMs: 80 });
    const t0 = Date.now();
    const a = task.enqueue('A', [raw(0, 1), raw(1, 3)]);
    await tick(20);
    expect(seen).toEqual([]);
    await a;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(70);
    expect(seen.map((s) => s.timestamp)).toEqual([1, 3]);
  });

  it('with maxTaskIdleMs 0 does not wait for a partition that is caught up with its high watermark', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen), { maxTaskIdleMs: 0 });
    await task.enqueue('B', [raw(0, 1)], 1);
    await task.enqueue('A', [raw(0, 2)], 1);
    expect(seen.map((s) => s.timestamp)).toEqual([1, 2]);
  });

  it('on equal timestamps takes the source declared first', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen));
    task.pause();
    const b = task.enqueue('B', [raw(0, 5), raw(1, 6)]);
    const a = task.enqueue('A', [raw(0, 5), raw(1, 6)]);
    task.resume();
    await Promise.all([a, b]);
    expect(seen.map((s) => `${s.topic}${s.timestamp}`)).toEqual(['A5', 'B5', 'A6', 'B6']);
  });

  it('drops records it already has when a partition is fetched again', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen));
    await task.enqueue('A', [raw(0, 1), raw(1, 2)]);
    await task.enqueue('A', [raw(1, 2), raw(2, 3)]);
    expect(seen.map((s) => s.timestamp)).toEqual([1, 2, 3]);
  });

  it('a record stamped far ahead moves stream time by at most maxStreamTimeJumpMs', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen), { maxStreamTimeJumpMs: 1000 });
    await task.enqueue('A', [raw(0, 10_000), raw(1, 10_000_000), raw(2, 10_500)]);
    expect(task.streamTime).toBe(11_000);
  });

  it('asks to pause a partition over maxBufferedBytes and to resume it under half', async () => {
    const seen: Seen[] = [];
    const signals: string[] = [];
    const { task } = await makeTask(twoSources(seen), {
      maxBufferedBytes: 2000,
      onBackpressure: (topic, full) => signals.push(`${topic}:${full}`),
    });
    task.pause();
    const big = { pad: 'x'.repeat(500) };
    const done = task.enqueue(
      'A',
      [0, 1, 2, 3, 4, 5].map((o) => raw(o, o + 1, big)),
    );
    expect(signals).toEqual(['A:true']);
    expect(task.bufferedBytes()).toBeGreaterThan(2000);
    task.resume();
    await done;
    expect(signals).toEqual(['A:true', 'A:false']);
  });

  it('processes in batches of at most maxBatchRecords, each decoded before it is processed', async () => {
    const seen: Seen[] = [];
    const batches: number[] = [];
    const { task } = await makeTask(twoSources(seen), { maxBatchRecords: 2, onProcessed: (n) => batches.push(n) });
    await task.enqueue('A', [raw(0, 1), raw(1, 2), raw(2, 3), raw(3, 4), raw(4, 5)]);
    expect(batches).toEqual([2, 2, 1]);
    expect(seen.map((s) => s.timestamp)).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('StreamTask: offsets, metadata, headers', () => {
  it('reports the next offset to commit per topic, only for topics it processed', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen));
    expect(task.committableOffsets()).toEqual(new Map());
    await task.enqueue('A', [raw(10, 1), raw(11, 2), raw(12, 3)]);
    expect(task.committableOffsets()).toEqual(new Map([['A', 13]]));
    expect(task.processedSinceCommit).toBe(3);
    // a dead-lettered record is done too
    await task.enqueue('B', [{ key: null, value: Buffer.from('{'), timestamp: 4, offset: 7 }]);
    expect(task.committableOffsets()).toEqual(
      new Map([
        ['A', 13],
        ['B', 8],
      ]),
    );
  });

  it('gives processors the record metadata and stream time; punctuations see no metadata', async () => {
    const seen: Seen[] = [];
    const times: number[] = [];
    const punctMeta: unknown[] = [];
    const { task } = await makeTask(
      twoSources(seen, (_r, ctx) => {
        times.push(ctx.currentStreamTime());
        if (times.length === 1)
          ctx.schedule(10, 'STREAM_TIME', () => void punctMeta.push(ctx.recordMetadata() ?? 'none'));
      }),
      { partition: 4 },
    );
    expect(task.streamTime).toBe(-1);
    await task.enqueue('A', [raw(20, 100), raw(21, 50), raw(22, 130)]);
    expect(seen.map((s) => s.meta)).toEqual([
      { topic: 'A', partition: 4, offset: 20 },
      { topic: 'A', partition: 4, offset: 21 },
      { topic: 'A', partition: 4, offset: 22 },
    ]);
    expect(times).toEqual([100, 100, 130]);
    expect(punctMeta).toEqual(['none']);
    expect(task.id).toBe('0_4');
  });

  it('normalises fetched headers (undefined dropped, last of an array) and forwards them to sinks', async () => {
    const seen: Seen[] = [];
    const { task, collector } = await makeTask(twoSources(seen));
    await task.enqueue('A', [
      { ...raw(0, 1), headers: { a: 'x', b: undefined, c: [Buffer.from('1'), 'last'], d: Buffer.from('buf') } },
      { ...raw(1, 2), headers: { only: undefined } },
    ]);
    expect(collector.records[0]!.headers).toEqual({ a: 'x', c: 'last', d: Buffer.from('buf') });
    expect(collector.records[1]!.headers).toBeUndefined();
  });

  it('rejects an unknown topic and an enqueue after close', async () => {
    const { task } = await makeTask(twoSources([]));
    await expect(task.enqueue('C', [raw(0, 1)])).rejects.toMatchObject({ code: 'UNKNOWN_SOURCE' });
    await task.close();
    await expect(task.enqueue('A', [raw(0, 1)])).rejects.toMatchObject({ code: 'TASK_CLOSED', retriable: true });
  });

  it('close rejects the records still waiting and closes the processors once', async () => {
    let closed = 0;
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor('p', () => ({ process: () => undefined, close: () => void closed++ }), 'a')
      .sink('s', { topic: 'o', key: stringSerde, value: stringSerde }, 'p')
      .build();
    const { task } = await makeTask(topology);
    task.pause();
    const pending = task.enqueue('A', [raw(0, 1)]);
    await task.close();
    await task.close();
    await expect(pending).rejects.toMatchObject({ code: 'TASK_CLOSED' });
    expect(closed).toBe(1);
    expect(task.state).toBe('CLOSED');
  });
});

describe('StreamTask: error policies', () => {
  it("'dlq' writes the raw record with its origin and error to the dead-letter topic", async () => {
    const seen: Seen[] = [];
    const dead: [string, string][] = [];
    const { task, collector } = await makeTask(
      twoSources(seen, (r) => {
        if (r.key === 'bad') throw new Error('nope');
      }),
      { partition: 2, onDeadLetter: (t, c) => dead.push([t, c]) },
    );
    await task.enqueue('A', [
      { key: Buffer.from('k'), value: Buffer.from('not json'), timestamp: 5, offset: 3 },
      raw(4, 6, { x: 1 }, 'bad'),
      raw(5, 7),
    ]);
    const dlq = collector.records.filter((r) => r.topic === 'app-dlq');
    expect(dlq).toHaveLength(2);
    expect(dlq[0]).toMatchObject({
      key: Buffer.from('k'),
      value: Buffer.from('not json'),
      timestamp: 5,
      headers: {
        'dlq.source.topic': 'A',
        'dlq.source.partition': '2',
        'dlq.source.offset': '3',
        'dlq.error.code': 'JSON_INVALID',
        'dlq.error.kind': 'deserialization',
        'dlq.application.id': 'app',
      },
    });
    expect(dlq[1]!.headers).toMatchObject({
      'dlq.source.offset': '4',
      'dlq.error.code': 'PROCESSING_FAILED',
      'dlq.error.message': 'nope',
      'dlq.error.kind': 'processing',
    });
    expect(dead).toEqual([
      ['A', 'JSON_INVALID'],
      ['A', 'PROCESSING_FAILED'],
    ]);
    expect(seen.map((s) => s.key)).toEqual(['bad', 'k5']);
  });

  it("'fail' rejects the enqueue with a ProcessingError carrying the code, and keeps the failed record uncommitted", async () => {
    const seen: Seen[] = [];
    const { task, collector } = await makeTask(
      twoSources(seen, (r) => {
        if (r.key === 'bad') throw new ProcessingError('RULE_BROKEN', 'rule broken');
      }),
      { processingErrorPolicy: 'fail' },
    );
    const err = await task.enqueue('A', [raw(0, 1), raw(1, 2, {}, 'bad'), raw(2, 3)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProcessingError);
    expect(err).toMatchObject({ code: 'RULE_BROKEN' });
    expect((err as Error).message).toMatch(/^task 0_0: A-0@1: rule broken$/);
    expect(task.failure()).toBe(err);
    await expect(task.quiesce()).rejects.toBe(err);
    expect(task.committableOffsets()).toEqual(new Map([['A', 1]]));
    expect(collector.records.filter((r) => r.topic === 'app-dlq')).toEqual([]);
  });

  it('a failed task refuses further records and does not process the failed one again', async () => {
    const keys: string[] = [];
    const { task } = await makeTask(
      twoSources([], (r) => {
        keys.push(r.key);
        if (r.key === 'bad') throw new ProcessingError('RULE_BROKEN', 'rule broken');
      }),
      { processingErrorPolicy: 'fail' },
    );
    const err = await task.enqueue('A', [raw(0, 1, {}, 'bad')]).catch((e: unknown) => e);
    await expect(task.enqueue('A', [raw(1, 2)])).rejects.toBe(err);
    expect(keys).toEqual(['bad']);
  });

  it("'fail' on deserialization rejects with the serde's code; a plain Error gets PROCESSING_FAILED", async () => {
    const { task } = await makeTask(twoSources([]), { deserializationErrorPolicy: 'fail' });
    const err = await task
      .enqueue('B', [{ key: null, value: Buffer.from('{'), timestamp: 1, offset: 0 }])
      .catch((e) => e);
    expect(err).toBeInstanceOf(ProcessingError);
    expect(err).toMatchObject({ code: 'JSON_INVALID' });
    expect((err as StreamsError).cause).toBeInstanceOf(SerdeError);

    const { task: t2 } = await makeTask(
      twoSources([], () => {
        throw new TypeError('oops');
      }),
      { processingErrorPolicy: 'fail' },
    );
    await expect(t2.enqueue('A', [raw(0, 1)])).rejects.toMatchObject({
      name: 'ProcessingError',
      code: 'PROCESSING_FAILED',
    });
  });

  it("labels a serialization failure inside a processor as kind 'processing'", async () => {
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => {
          let store!: KeyValueStore<string, number>;
          return {
            init: (c) => void (store = c.getStateStore('n')),
            // a string where the store's long serde expects a number
            process: (r) => store.put(r.key, r.value as unknown as number),
          };
        },
        'a',
      )
      .store({ name: 'n', key: stringSerde, value: longSerde, cacheMaxEntries: 0 }, 'p')
      .build();
    const { task, collector } = await makeTask(topology);
    await task.enqueue('A', [{ key: Buffer.from('k'), value: Buffer.from('x'), timestamp: 1, offset: 0 }]);
    expect(collector.records).toHaveLength(1);
    expect(collector.records[0]!.headers).toMatchObject({ 'dlq.error.kind': 'processing' });
  });

  it('reports processor misuse with codes: unknown child, unconnected store', async () => {
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => {
          let ctx!: ProcessorContext;
          return {
            init: (c) => void (ctx = c),
            async process(r) {
              if (r.value === 'child') await ctx.forward(r, 'nobody');
              if (r.value === 'store') ctx.getStateStore('other');
              if (r.value === 'global') ctx.getGlobalTable('nope');
            },
          };
        },
        'a',
      )
      .sink('s', { topic: 'o', key: stringSerde, value: stringSerde }, 'p')
      .processor('q', () => ({ process: () => undefined }), 'a')
      .store({ name: 'other', key: stringSerde, value: stringSerde }, 'q')
      .build();
    const { task, collector } = await makeTask(topology);
    await task.enqueue('A', [
      { key: null, value: Buffer.from('child'), timestamp: 1, offset: 0 },
      { key: null, value: Buffer.from('store'), timestamp: 1, offset: 1 },
      { key: null, value: Buffer.from('global'), timestamp: 1, offset: 2 },
    ]);
    expect(collector.records.map((r) => r.headers?.['dlq.error.code'])).toEqual([
      'UNKNOWN_CHILD',
      'STORE_NOT_CONNECTED',
      'UNKNOWN_GLOBAL_TABLE',
    ]);
  });
});

describe('StreamTask: sinks', () => {
  it('writes to the task partition for co-partitioned topics (or partitioner "task"), else leaves it to murmur2', async () => {
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .sink('co', { topic: 'side', key: stringSerde, value: stringSerde }, 'a')
      .sink('other', { topic: 'other', key: stringSerde, value: stringSerde }, 'a')
      .sink('forced', { topic: 'other2', key: stringSerde, value: stringSerde, partitioner: 'task' }, 'a')
      .sink('hashed', { topic: 'side2', key: stringSerde, value: stringSerde, partitioner: 'murmur2' }, 'a')
      .build();
    const { task, collector } = await makeTask(topology, {
      partition: 3,
      coPartitioned: new Set(['A', 'side', 'side2']),
    });
    await task.enqueue('A', [{ key: Buffer.from('k'), value: null, timestamp: 9, offset: 0 }]);
    const byTopic = Object.fromEntries(collector.records.map((r) => [r.topic, r]));
    expect(byTopic['side']).toMatchObject({ partition: 3, key: Buffer.from('k'), value: null, timestamp: 9 });
    expect(byTopic['other2']!.partition).toBe(3);
    expect(byTopic['other']!.partition).toBeUndefined();
    expect(byTopic['side2']!.partition).toBeUndefined();
    expect(collector.records).toHaveLength(4);
  });
});

describe('StreamTask: pause and resume', () => {
  it('buffers while paused and processes on resume', async () => {
    const seen: Seen[] = [];
    const { task } = await makeTask(twoSources(seen));
    task.pause();
    const done = task.enqueue('A', [raw(0, 1), raw(1, 2), raw(2, 3)]);
    await tick(10);
    expect(seen).toEqual([]);
    expect(task.buffered()).toBe(3);
    task.resume();
    await done;
    expect(seen).toHaveLength(3);
  });

  it('stops at the next batch boundary', async () => {
    const seen: Seen[] = [];
    const ref: { task?: StreamTask } = {};
    const { task } = await makeTask(
      twoSources(seen, () => {
        if (seen.length === 1) ref.task!.pause();
      }),
      { maxBatchRecords: 2 },
    );
    ref.task = task;
    const done = task.enqueue('A', [raw(0, 1), raw(1, 2), raw(2, 3), raw(3, 4)]);
    await task.quiesce();
    // the batch in progress (2 records) completes, the next one waits
    expect(seen).toHaveLength(2);
    expect(task.committableOffsets().get('A')).toBe(2);
    task.resume();
    await done;
    expect(seen).toHaveLength(4);
  });
});

describe('StreamTask: punctuation', () => {
  it('rejects a non-positive interval and cancels on request', async () => {
    const fired: number[] = [];
    let cancel!: () => void;
    const seen: Seen[] = [];
    const { task } = await makeTask(
      twoSources(seen, (_r, ctx) => {
        if (seen.length === 1) {
          expect(() => ctx.schedule(0, 'STREAM_TIME', () => undefined)).toThrow(
            expect.objectContaining({ code: 'BAD_PUNCTUATION' }),
          );
          const c = ctx.schedule(10, 'WALL_CLOCK_TIME', (t) => void fired.push(t));
          cancel = () => c.cancel();
        }
      }),
      { now: () => 1000 },
    );
    await task.enqueue('A', [raw(0, 1)]);
    await task.punctuateWallClock(1009);
    expect(fired).toEqual([]);
    await task.punctuateWallClock(1010);
    expect(fired).toEqual([1010]);
    cancel();
    await task.punctuateWallClock(5000);
    expect(fired).toEqual([1010]);
  });
});

describe('StreamTask: stores', () => {
  it('prefetches the batch keys from the prefetch stores in one read before processing', async () => {
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => {
          let store!: KeyValueStore<string, string>;
          return {
            init: (c) => void (store = c.getStateStore('s')),
            process: (r) => store.put(r.key, r.value),
          };
        },
        'a',
      )
      .store({ name: 's', key: stringSerde, value: stringSerde }, 'p')
      .build();
    const state = new TaskStateManager({
      taskId: '0_0',
      partition: 0,
      taskDir: undefined,
      stores: topology.resolvedStores('app'),
      collector: new MemoryRecordCollector(),
      cacheMaxEntries: 100,
    });
    await state.open();
    const stores = state.storeMap();
    const getAll = vi.spyOn(stores.get('s')!, 'getAll');
    const { task } = await makeTask(topology, { stores, prefetchStores: ['s'] });
    const rec = (k: string, o: number): RawRecord => ({
      key: Buffer.from(k),
      value: Buffer.from('v'),
      timestamp: 1,
      offset: o,
    });
    await task.enqueue('A', [rec('x', 0), rec('y', 1), rec('x', 2)]);
    expect(getAll).toHaveBeenCalledTimes(1);
    expect(getAll).toHaveBeenCalledWith(['x', 'y']);
    await state.close();
  });

  it('a prefetch failure (store keyed by another type) does not kill the task', async () => {
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => {
          let store!: KeyValueStore<number, string>;
          return {
            init: (c) => void (store = c.getStateStore('by-length')),
            process: (r) => store.put(r.key.length, r.value),
          };
        },
        'a',
      )
      .store({ name: 'by-length', key: longSerde, value: stringSerde }, 'p')
      .build();
    const { task } = await makeTask(topology, { prefetchStores: ['by-length'] });
    await task.enqueue('A', [{ key: Buffer.from('abc'), value: Buffer.from('v'), timestamp: 1, offset: 0 }]);
    expect(await task.store('by-length').get(3)).toBe('v');
  });

  it("calls a processor's prefetch once per batch, with that batch's records of each source, before any process", async () => {
    const calls: string[] = [];
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .source('b', { topic: 'B', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => ({
          prefetch(records) {
            calls.push(`prefetch ${records.map((r) => r.key).join(',')}`);
          },
          process(r) {
            calls.push(`process ${r.key}`);
          },
        }),
        'a',
      )
      .processor('q', (): Processor<string, string> => ({ process: (r) => void calls.push(`q ${r.key}`) }), 'b')
      .sink('out', { topic: 'out', key: stringSerde, value: stringSerde }, 'p', 'q')
      .build();
    const { task } = await makeTask(topology, { maxBatchRecords: 2 });
    const rec = (k: string, o: number, ts: number): RawRecord => ({
      key: Buffer.from(k),
      value: Buffer.from('v'),
      timestamp: ts,
      offset: o,
    });
    task.pause();
    const a = task.enqueue('A', [rec('x', 0, 1), rec('y', 1, 3), rec('z', 2, 5)]);
    const b = task.enqueue('B', [rec('w', 0, 2)]);
    task.resume();
    await Promise.all([a, b]);
    // batches of 2 in timestamp order: [x, w], [y, z]; B's records never reach p's prefetch
    expect(calls).toEqual(['prefetch x', 'process x', 'q w', 'prefetch y,z', 'process y', 'process z']);
  });

  it('a prefetch that throws or rejects does not fail the batch: the records are processed', async () => {
    const processed: string[] = [];
    let n = 0;
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => ({
          prefetch() {
            if (n++ === 0) throw new Error('sync failure');
            return Promise.reject(new Error('async failure'));
          },
          process: (r) => void processed.push(r.key),
        }),
        'a',
      )
      .sink('out', { topic: 'out', key: stringSerde, value: stringSerde }, 'p')
      .build();
    const { task } = await makeTask(topology);
    await task.enqueue('A', [{ key: Buffer.from('k1'), value: Buffer.from('v'), timestamp: 1, offset: 0 }]);
    await task.enqueue('A', [{ key: Buffer.from('k2'), value: Buffer.from('v'), timestamp: 2, offset: 1 }]);
    expect(processed).toEqual(['k1', 'k2']);
    expect(task.failure()).toBeUndefined();
  });

  it('stream-time punctuations fire when a record reaches them, also after one is cancelled', async () => {
    const fired: string[] = [];
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => {
          let c2!: { cancel(): void };
          return {
            init(ctx) {
              ctx.schedule(10, 'STREAM_TIME', (t) => void fired.push(`10@${t}`));
              c2 = ctx.schedule(25, 'STREAM_TIME', (t) => void fired.push(`25@${t}`));
            },
            process(r) {
              if (r.key === 'cancel') c2.cancel();
            },
          };
        },
        'a',
      )
      .sink('out', { topic: 'out', key: stringSerde, value: stringSerde }, 'p')
      .build();
    const { task } = await makeTask(topology);
    const rec = (k: string, o: number, ts: number): RawRecord => ({
      key: Buffer.from(k),
      value: Buffer.from('v'),
      timestamp: ts,
      offset: o,
    });
    await task.enqueue('A', [rec('a', 0, 5), rec('b', 1, 9)]);
    expect(fired).toEqual([]);
    await task.enqueue('A', [rec('c', 2, 10)]);
    expect(fired).toEqual(['10@10']);
    await task.enqueue('A', [rec('cancel', 3, 19), rec('d', 4, 31)]);
    // at 19 nothing is due (the 25 one is cancelled); at 31 the 10-interval one fires once, the
    // intervals it missed skipped, and the cancelled one never
    expect(fired).toEqual(['10@10', '10@31']);
  });

  it('flushStores flushes every store down to the changelog', async () => {
    const topology = new TopologyBuilder()
      .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        (): Processor<string, string> => {
          let store!: KeyValueStore<string, string>;
          return { init: (c) => void (store = c.getStateStore('s')), process: (r) => store.put(r.key, r.value) };
        },
        'a',
      )
      .store({ name: 's', key: stringSerde, value: stringSerde, cacheMaxEntries: 10 }, 'p')
      .build();
    const { task, collector } = await makeTask(topology, { partition: 1 });
    await task.enqueue('A', [{ key: Buffer.from('x'), value: Buffer.from('1'), timestamp: 1, offset: 0 }]);
    expect(collector.records).toEqual([]);
    await task.flushStores();
    expect(collector.records).toMatchObject([{ topic: 'app-s-changelog', partition: 1, key: Buffer.from('x') }]);
    expect(() => task.store('nope')).toThrow(expect.objectContaining({ code: 'UNKNOWN_STORE' }));
  });
});
