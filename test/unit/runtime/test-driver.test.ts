import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProcessingError, TopologyError, type StreamsError } from '../../../runtime/errors.js';
import { partitionForKey } from '../../../runtime/partitioner.js';
import type { Processor, ProcessorContext, StreamRecord } from '../../../runtime/processor.js';
import { bufferSerde, jsonSerde, longSerde, stringSerde, type Serde } from '../../../runtime/serdes.js';
import type { KeyValueStore } from '../../../runtime/state/store.js';
import { TopologyTestDriver, type TopologyTestDriverOptions } from '../../../runtime/test-driver.js';
import { TopologyBuilder, type Topology } from '../../../runtime/topology.js';

interface Event {
  kind: 'count' | 'alert' | 'boom' | 'coded';
  note?: string;
}

interface CountOut {
  count: number;
  label: string | null;
}

const eventSerde = jsonSerde<Event>();
const countSerde = jsonSerde<CountOut>();

/** Routes by kind: alerts to the alerts sink only, counts to the counter; 'boom' throws. */
class Route implements Processor<string, Event> {
  private ctx!: ProcessorContext;
  init(ctx: ProcessorContext): void {
    this.ctx = ctx;
  }
  async process(r: StreamRecord<string, Event>): Promise<void> {
    if (r.value.kind === 'boom') throw new Error(`boom on ${r.key}`);
    if (r.value.kind === 'coded') throw new ProcessingError('BAD_EVENT', `coded failure on ${r.key}`);
    await this.ctx.forward(r, r.value.kind === 'alert' ? 'alerts-sink' : 'count');
  }
}

/** Per-key counter in store `counts`; labels the output from the `labels` global table. */
class Count implements Processor<string, Event> {
  private ctx!: ProcessorContext;
  private store!: KeyValueStore<string, number>;
  init(ctx: ProcessorContext): void {
    this.ctx = ctx;
    this.store = ctx.getStateStore('counts');
  }
  async process(r: StreamRecord<string, Event>): Promise<void> {
    const count = ((await this.store.get(r.key)) ?? 0) + 1;
    await this.store.put(r.key, count);
    const label = this.ctx.getGlobalTable<string, string>('labels').get(r.key) ?? null;
    const out: StreamRecord<string, CountOut> = { key: r.key, value: { count, label }, timestamp: r.timestamp };
    await this.ctx.forward(r.headers ? { ...out, headers: r.headers } : out);
  }
}

function counterTopology(): Topology {
  return new TopologyBuilder()
    .source('events', { topic: 'events', key: stringSerde, value: eventSerde })
    .processor('route', () => new Route(), 'events')
    .processor('count', () => new Count(), 'route')
    .sink('counts-sink', { topic: 'counts-out', key: stringSerde, value: countSerde }, 'count')
    .sink('alerts-sink', { topic: 'alerts', key: stringSerde, value: eventSerde }, 'route')
    .store({ name: 'counts', key: stringSerde, value: longSerde }, 'count')
    .globalTable({ name: 'labels', topic: 'labels', key: stringSerde, value: stringSerde })
    .build();
}

async function all<K, V>(store: KeyValueStore<K, V>): Promise<[K, V][]> {
  const out: [K, V][] = [];
  for await (const [k, v] of store.all()) out.push([k, v]);
  return out;
}

let drivers: TopologyTestDriver[] = [];
let dirs: string[] = [];

async function open(topology: Topology, opts: TopologyTestDriverOptions = {}): Promise<TopologyTestDriver> {
  const d = await TopologyTestDriver.create(topology, opts);
  drivers.push(d);
  return d;
}

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'um-driver-'));
  dirs.push(d);
  return d;
}

beforeEach(() => {
  drivers = [];
  dirs = [];
});

afterEach(async () => {
  for (const d of drivers) await d.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('TopologyTestDriver: outputs, stores, changelogs', () => {
  /** The same scenario in memory and on RocksDB: results must be identical. */
  async function scenario(opts: TopologyTestDriverOptions) {
    const driver = await open(counterTopology(), opts);
    const input = driver.createInputTopic<string, Event>('events');
    const counts = driver.createOutputTopic<string, CountOut>('counts-out');
    const alerts = driver.createOutputTopic<string, Event>('alerts');
    await input.pipe('a', { kind: 'count' }, 100, { trace: 't-1' });
    await input.pipe('b', { kind: 'count' }, 110);
    await input.pipeAll([
      { key: 'a', value: { kind: 'count' }, timestamp: 120 },
      { key: 'c', value: { kind: 'alert', note: 'disk' }, timestamp: 130 },
    ]);
    const countRecords = counts.readRecords();
    const alertValues = alerts.readKeyValues();
    // before reading the store: iterating a cached store flushes it
    const changelogBeforeFlush = driver.changelog<string, number>('counts');
    const store = driver.getStore<string, number>('counts', 0);
    const point = [await store.get('a'), await store.get('b'), await store.get('c')];
    const stored = await all(store);
    await driver.flush();
    const changelogAfterFlush = driver.changelog<string, number>('counts');
    return { driver, countRecords, alertValues, point, stored, changelogBeforeFlush, changelogAfterFlush };
  }

  it('counts per key, routes to the named child, keeps timestamps and headers', async () => {
    const r = await scenario({});
    expect(r.countRecords.map((x) => [x.key, x.value, x.timestamp])).toEqual([
      ['a', { count: 1, label: null }, 100],
      ['b', { count: 1, label: null }, 110],
      ['a', { count: 2, label: null }, 120],
    ]);
    expect(r.countRecords[0]!.headers).toEqual({ trace: 't-1' });
    // counts-out is not a source topic: the producer's partitioner decides
    expect(r.countRecords[0]!.partition).toBeUndefined();
    // the alert went to the alerts sink only, not through the counter
    expect(r.alertValues).toEqual([['c', { kind: 'alert', note: 'disk' }]]);
    expect(r.point).toEqual([2, 1, undefined]);
    expect(r.stored).toEqual([
      ['a', 2],
      ['b', 1],
    ]);
  });

  it('changelog records reach the collector when the cache is flushed, deduplicated', async () => {
    const r = await scenario({});
    expect(r.changelogBeforeFlush).toEqual([]);
    expect(r.changelogAfterFlush).toEqual([
      { key: 'b', value: 1, partition: 0 },
      { key: 'a', value: 2, partition: 0 },
    ]);
    expect(r.driver.collector.records.some((x) => x.topic === 'test-app-counts-changelog')).toBe(true);
  });

  it('without a cache every write is logged at once', async () => {
    const r = await scenario({ cacheMaxEntries: 0, applicationId: 'app2' });
    expect(r.changelogBeforeFlush).toEqual([
      { key: 'a', value: 1, partition: 0 },
      { key: 'b', value: 1, partition: 0 },
      { key: 'a', value: 2, partition: 0 },
    ]);
    expect(r.driver.collector.records.some((x) => x.topic === 'app2-counts-changelog')).toBe(true);
  });

  it('RocksDB mode under a state dir gives the same results, on disk', async () => {
    const memory = await scenario({});
    const dir = await tempDir();
    const rocks = await scenario({ stateDir: dir });
    expect(rocks.countRecords).toEqual(memory.countRecords);
    expect(rocks.alertValues).toEqual(memory.alertValues);
    expect(rocks.point).toEqual(memory.point);
    expect(rocks.stored).toEqual(memory.stored);
    expect(rocks.changelogBeforeFlush).toEqual(memory.changelogBeforeFlush);
    expect(rocks.changelogAfterFlush).toEqual(memory.changelogAfterFlush);
    expect(existsSync(join(dir, 'test-app', '0_0', 'counts'))).toBe(true);
    // flush wrote the checkpoint
    expect(existsSync(join(dir, 'test-app', '0_0', '.checkpoint'))).toBe(true);
  });

  it('RocksDB state survives a clean close and reopen of the same state dir', async () => {
    const dir = await tempDir();
    const first = await TopologyTestDriver.create(counterTopology(), { stateDir: dir });
    await first.createInputTopic<string, Event>('events').pipe('a', { kind: 'count' }, 1);
    await first.close();
    const second = await open(counterTopology(), { stateDir: dir });
    await second.createInputTopic<string, Event>('events').pipe('a', { kind: 'count' }, 2);
    expect(second.createOutputTopic<string, CountOut>('counts-out').readValues()).toEqual([{ count: 2, label: null }]);
  });

  it('spreads keys over the tasks with murmur2 and keeps each key in its task', async () => {
    const driver = await open(counterTopology(), { partitions: 3 });
    const input = driver.createInputTopic<string, Event>('events');
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7'];
    for (const k of keys) await input.pipe(k, { kind: 'count' }, 1);
    const partitions = new Set(keys.map((k) => partitionForKey(k, 3)));
    expect(partitions.size).toBeGreaterThan(1);
    for (const k of keys) {
      const p = partitionForKey(k, 3);
      expect(input.partitionFor(k)).toBe(p);
      expect(await driver.getStore<string, number>('counts', p).get(k)).toBe(1);
      for (let other = 0; other < 3; other++)
        if (other !== p) expect(await driver.getStore<string, number>('counts', other).get(k)).toBeUndefined();
    }
    await driver.flush();
    for (const c of driver.changelog<string, number>('counts')) expect(c.partition).toBe(partitionForKey(c.key, 3));
  });

  it('readRecords consumes; isEmpty does not', async () => {
    const driver = await open(counterTopology());
    const input = driver.createInputTopic<string, Event>('events');
    const out = driver.createOutputTopic<string, CountOut>('counts-out');
    expect(out.isEmpty()).toBe(true);
    await input.pipe('a', { kind: 'count' }, 1);
    expect(out.isEmpty()).toBe(false);
    expect(out.isEmpty()).toBe(false);
    expect(out.readValues()).toEqual([{ count: 1, label: null }]);
    expect(out.isEmpty()).toBe(true);
    expect(out.readRecords()).toEqual([]);
    await input.pipe('a', { kind: 'count' }, 2);
    expect(out.readValues()).toEqual([{ count: 2, label: null }]);
  });

  it('uses the wall clock as the default timestamp', async () => {
    const driver = await open(counterTopology(), { wallClockStart: 5_000 });
    await driver.createInputTopic<string, Event>('events').pipe('a', { kind: 'count' });
    expect(driver.createOutputTopic<string, CountOut>('counts-out').readRecords()[0]!.timestamp).toBe(5_000);
  });

  it('rejects unknown topics, stores and partitions with codes', async () => {
    const driver = await open(counterTopology());
    expect(() => driver.createInputTopic('nope')).toThrow(expect.objectContaining({ code: 'UNKNOWN_SOURCE' }));
    expect(() => driver.createOutputTopic('nope')).toThrow(TopologyError);
    expect(() => driver.createOutputTopic('nope')).toThrow(expect.objectContaining({ code: 'UNKNOWN_SINK' }));
    // any topic can be read with explicit serdes
    expect(driver.createOutputTopic('nope', { key: stringSerde, value: stringSerde }).isEmpty()).toBe(true);
    expect(() => driver.getStore('nope')).toThrow(expect.objectContaining({ code: 'UNKNOWN_STORE' }));
    expect(() => driver.getStore('counts', 1)).toThrow(expect.objectContaining({ code: 'BAD_PARTITION' }));
    expect(() => driver.changelog('nope')).toThrow(expect.objectContaining({ code: 'UNKNOWN_STORE' }));
    await expect(driver.pipeGlobal('nope', 'k', 'v')).rejects.toMatchObject({ code: 'UNKNOWN_GLOBAL_TABLE' });
    await expect(TopologyTestDriver.create(counterTopology(), { partitions: 0 })).rejects.toMatchObject({
      code: 'BAD_PARTITIONS',
    });
  });

  it('refuses work after close', async () => {
    const driver = await TopologyTestDriver.create(counterTopology());
    await driver.close();
    await expect(
      driver.createInputTopic<string, Event>('events').pipe('a', { kind: 'count' }, 1),
    ).rejects.toMatchObject({ code: 'DRIVER_CLOSED' });
    await expect(driver.flush()).rejects.toMatchObject({ code: 'DRIVER_CLOSED' });
    await driver.close(); // idempotent
  });
});

describe('TopologyTestDriver: errors', () => {
  it('sends undecodable records and failing records to the dead-letter topic, and goes on', async () => {
    const driver = await open(counterTopology());
    const input = driver.createInputTopic<string, Event>('events');
    const raw = driver.createInputTopic<string, Buffer>('events', { value: bufferSerde });
    await input.pipe('a', { kind: 'count' }, 1); // offset 0
    await raw.pipe('bad', Buffer.from('{not json'), 2); // offset 1
    await input.pipe('x', { kind: 'boom' }, 3); // offset 2
    await input.pipe('y', { kind: 'coded' }, 4); // offset 3
    await input.pipe('a', { kind: 'count' }, 5); // offset 4
    const dl = driver.deadLetters();
    expect(
      dl.map(({ sourceTopic, partition, offset, code, kind }) => ({ sourceTopic, partition, offset, code, kind })),
    ).toEqual([
      { sourceTopic: 'events', partition: 0, offset: 1, code: 'JSON_INVALID', kind: 'deserialization' },
      { sourceTopic: 'events', partition: 0, offset: 2, code: 'PROCESSING_FAILED', kind: 'processing' },
      { sourceTopic: 'events', partition: 0, offset: 3, code: 'BAD_EVENT', kind: 'processing' },
    ]);
    // the original bytes are kept
    expect(dl[0]!.key?.toString()).toBe('bad');
    expect(dl[0]!.value?.toString()).toBe('{not json');
    expect(dl[1]!.message).toBe('boom on x');
    expect(driver.collector.records.filter((r) => r.topic === 'test-app-dlq')).toHaveLength(3);
    // processing went on after the failures
    expect(driver.createOutputTopic<string, CountOut>('counts-out').readValues()).toEqual([
      { count: 1, label: null },
      { count: 2, label: null },
    ]);
  });

  it('honours a custom dead-letter topic', async () => {
    const driver = await open(counterTopology(), { dlqTopic: 'my-dlq' });
    await driver.createInputTopic<string, Event>('events').pipe('x', { kind: 'boom' }, 1);
    expect(driver.deadLetters()).toHaveLength(1);
    expect(driver.collector.records.map((r) => r.topic)).toEqual(['my-dlq']);
  });

  it("'fail' policies reject the pipe with a ProcessingError carrying the code, and the driver stays failed", async () => {
    const driver = await open(counterTopology(), { errorPolicy: { deserialization: 'fail', processing: 'fail' } });
    const input = driver.createInputTopic<string, Event>('events');
    await input.pipe('a', { kind: 'count' }, 1);
    const err = await input.pipe('y', { kind: 'coded' }, 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProcessingError);
    expect(err).toMatchObject({ code: 'BAD_EVENT' });
    expect((err as Error).message).toContain('events-0@1');
    await expect(input.pipe('a', { kind: 'count' }, 3)).rejects.toBe(err);
    expect(driver.deadLetters()).toEqual([]);

    const d2 = await open(counterTopology(), { errorPolicy: { deserialization: 'fail' } });
    const raw = d2.createInputTopic<string, Buffer>('events', { value: bufferSerde });
    await expect(raw.pipe('bad', Buffer.from('nope'), 1)).rejects.toMatchObject({
      name: 'ProcessingError',
      code: 'JSON_INVALID',
    });
  });
});

describe('TopologyTestDriver: global tables', () => {
  it('processors read what the test put in the global table; null deletes', async () => {
    const driver = await open(counterTopology());
    const input = driver.createInputTopic<string, Event>('events');
    const out = driver.createOutputTopic<string, CountOut>('counts-out');
    await driver.pipeGlobal('labels', 'a', 'Alpha');
    await input.pipe('a', { kind: 'count' }, 1);
    await input.pipe('b', { kind: 'count' }, 2);
    await driver.pipeGlobal('labels', 'a', null);
    await input.pipe('a', { kind: 'count' }, 3);
    expect(out.readValues()).toEqual([
      { count: 1, label: 'Alpha' },
      { count: 1, label: null },
      { count: 2, label: null },
    ]);
  });

  it('passes global records through the table serdes', async () => {
    const upper: Serde<string> = {
      serialize: (_t, v) => Buffer.from(v),
      deserialize: (_t, b) => b.toString().toUpperCase(),
    };
    const seen: (string | undefined)[] = [];
    const topology = new TopologyBuilder()
      .source('in', { topic: 'in', key: stringSerde, value: stringSerde })
      .processor(
        'read',
        () => {
          let ctx!: ProcessorContext;
          return {
            init: (c) => void (ctx = c),
            process: (r: StreamRecord<string, string>) =>
              void seen.push(ctx.getGlobalTable<string, string>('g').get(r.key)),
          };
        },
        'in',
      )
      .sink('s', { topic: 'out', key: stringSerde, value: stringSerde }, 'read')
      .globalTable({ name: 'g', topic: 'g-topic', key: stringSerde, value: upper })
      .build();
    const driver = await open(topology);
    await driver.pipeGlobal('g', 'k', 'value');
    await driver.createInputTopic<string, string>('in').pipe('k', 'x', 1);
    expect(seen).toEqual(['VALUE']);
  });
});

describe('TopologyTestDriver: serdes', () => {
  it('initialises every serde once and prepares source serdes with the raw batch', async () => {
    const calls: string[] = [];
    const traced = <T>(name: string, inner: Serde<T>): Serde<T> => ({
      init: async () => void calls.push(`init ${name}`),
      prepare: async (data) => void calls.push(`prepare ${name} ${data.map((d) => d?.toString() ?? 'null').join(',')}`),
      serialize: inner.serialize,
      deserialize: inner.deserialize,
    });
    const key = traced('key', stringSerde);
    const value = traced('value', stringSerde);
    const topology = new TopologyBuilder()
      .source('in', { topic: 'in', key, value })
      .sink('s', { topic: 'out', key, value: traced('out', stringSerde) }, 'in')
      .build();
    const driver = await open(topology);
    expect(calls.sort()).toEqual(['init key', 'init out', 'init value']);
    calls.length = 0;
    await driver.createInputTopic<string, string>('in').pipeAll([
      { key: 'k1', value: 'v1', timestamp: 1 },
      { key: 'k2', value: null, timestamp: 2 },
    ]);
    expect(calls).toEqual(['prepare value v1,null', 'prepare key k1,k2']);
    expect(driver.createOutputTopic<string, string>('out').readKeyValues()).toEqual([
      ['k1', 'v1'],
      ['k2', null],
    ]);
  });
});

describe('TopologyTestDriver: punctuation', () => {
  function punctuating(type: 'STREAM_TIME' | 'WALL_CLOCK_TIME', interval: number, fired: number[]): Topology {
    return new TopologyBuilder()
      .source('in', { topic: 'in', key: stringSerde, value: stringSerde })
      .processor(
        'p',
        () => {
          let ctx!: ProcessorContext;
          return {
            init(c: ProcessorContext) {
              ctx = c;
              c.schedule(interval, type, async (time) => {
                fired.push(time);
                expect(ctx.recordMetadata()).toBeUndefined();
                await ctx.forward({ key: 'tick', value: String(time), timestamp: time });
              });
            },
            process: (r: StreamRecord<string, string>) => ctx.forward(r),
          };
        },
        'in',
      )
      .sink('s', { topic: 'out', key: stringSerde, value: stringSerde }, 'p')
      .build();
  }

  it('fires wall-clock punctuations when the wall clock is advanced', async () => {
    const fired: number[] = [];
    const driver = await open(punctuating('WALL_CLOCK_TIME', 1000, fired), { wallClockStart: 10_000 });
    const out = driver.createOutputTopic<string, string>('out');
    await driver.advanceWallClockTime(999);
    expect(fired).toEqual([]);
    await driver.advanceWallClockTime(1);
    expect(fired).toEqual([11_000]);
    expect(out.readKeyValues()).toEqual([['tick', '11000']]);
    // records do not move the wall clock
    await driver.createInputTopic<string, string>('in').pipe('k', 'v', 50_000);
    expect(fired).toEqual([11_000]);
    // a long jump fires once, then the next one is an interval later
    await driver.advanceWallClockTime(2_500);
    expect(fired).toEqual([11_000, 13_500]);
    await driver.advanceWallClockTime(999);
    expect(fired).toEqual([11_000, 13_500]);
    await driver.advanceWallClockTime(1);
    expect(fired).toEqual([11_000, 13_500, 14_500]);
    await expect(driver.advanceWallClockTime(-1)).rejects.toMatchObject({ code: 'BAD_TIME' });
  });

  it('fires stream-time punctuations as record timestamps advance, skipping missed intervals', async () => {
    const fired: number[] = [];
    const driver = await open(punctuating('STREAM_TIME', 100, fired));
    const input = driver.createInputTopic<string, string>('in');
    await input.pipe('k', 'a', 50);
    expect(fired).toEqual([]);
    await input.pipe('k', 'b', 100);
    expect(fired).toEqual([100]);
    await input.pipe('k', 'c', 150);
    await input.pipe('k', 'late', 10); // out of order: stream time stays at 150
    expect(fired).toEqual([100]);
    await input.pipe('k', 'd', 420); // 200, 300, 400 are due: one call
    expect(fired).toEqual([100, 420]);
    await input.pipe('k', 'e', 499);
    expect(fired).toEqual([100, 420]);
    await input.pipe('k', 'f', 500);
    expect(fired).toEqual([100, 420, 500]);
    // the wall clock does not drive stream-time punctuation
    await driver.advanceWallClockTime(10_000);
    expect(fired).toEqual([100, 420, 500]);
    expect(driver.createOutputTopic<string, string>('out').readValues()).toEqual([
      'a',
      'b',
      '100',
      'c',
      'late',
      'd',
      '420',
      'e',
      'f',
      '500',
    ]);
  });
});

describe('TopologyTestDriver: tables', () => {
  function tableTopology(): Topology {
    return new TopologyBuilder()
      .store({ name: 'users', key: stringSerde, value: stringSerde, changelog: { topic: 'users' } })
      .table({ name: 'users-table', topic: 'users', store: 'users', key: stringSerde, value: stringSerde })
      .build();
  }

  it('a table source upserts and deletes in its store', async () => {
    const driver = await open(tableTopology(), { cacheMaxEntries: 0 });
    const users = driver.createInputTopic<string, string>('users');
    await users.pipe('u1', 'Ann', 1);
    await users.pipe('u2', 'Bob', 2);
    await users.pipe('u1', null, 3);
    const store = driver.getStore<string, string>('users');
    expect(await all(store)).toEqual([['u2', 'Bob']]);
  });

  it('a table store does not write back into its own source topic', async () => {
    const driver = await open(tableTopology(), { cacheMaxEntries: 0 });
    await driver.createInputTopic<string, string>('users').pipe('u1', 'Ann', 1);
    expect(driver.collector.records.filter((r) => r.topic === 'users')).toEqual([]);
  });
});

describe('TopologyTestDriver: fail policy', () => {
  it('keeps the error instance as the cause of the fail-policy error', async () => {
    const driver = await open(counterTopology(), { errorPolicy: { processing: 'fail' } });
    const err = (await driver
      .createInputTopic<string, Event>('events')
      .pipe('y', { kind: 'coded' }, 1)
      .catch((e: unknown) => e)) as StreamsError;
    expect(err.cause).toBeInstanceOf(ProcessingError);
    expect((err.cause as StreamsError).code).toBe('BAD_EVENT');
  });
});
