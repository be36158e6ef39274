import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { SerdeError } from '../../../../runtime/errors.js';
import {
  InMemoryKeyValueStore,
  MeteredKeyValueStore,
  storeSerdeFor,
  type StoreSerde,
  type StoreMetrics,
} from '../../../../runtime/state/index.js';
import { b, collect } from './helpers.js';

const stringSerde: StoreSerde<string> = {
  serialize: (s) => Buffer.from(s, 'utf8'),
  deserialize: (buf) => buf.toString('utf8'),
};

interface Prefs {
  score: number;
  tags: string[];
}
const jsonSerde: StoreSerde<Prefs> = {
  serialize: (v) => Buffer.from(JSON.stringify(v)),
  deserialize: (buf) => JSON.parse(buf.toString('utf8')) as Prefs,
};

function metrics(): { registry: Registry; metrics: StoreMetrics } {
  const registry = new Registry();
  const opLatency = new Histogram<'store' | 'op'>({
    name: 'test_store_op_seconds',
    help: 'store op latency',
    labelNames: ['store', 'op'],
    registers: [registry],
  });
  return { registry, metrics: { opLatency } };
}

async function countsByOp(m: StoreMetrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await m.opLatency.get()).values) {
    if (v.metricName === 'test_store_op_seconds_count') {
      expect(v.labels.store).toBe('prefs');
      out[String(v.labels.op)] = v.value;
    }
  }
  return out;
}

describe('MeteredKeyValueStore', () => {
  it('round-trips typed keys and values through the serdes', async () => {
    const inner = new InMemoryKeyValueStore('prefs');
    const store = new MeteredKeyValueStore(inner, stringSerde, jsonSerde);
    expect(store.name).toBe('prefs');
    await store.put('alice', { score: 3, tags: ['x'] });
    await store.putAll([
      ['bob', { score: -1, tags: [] }],
      ['carol', { score: 7, tags: ['y', 'z'] }],
      ['alice', null],
    ]);
    expect(await store.get('alice')).toBeUndefined();
    expect(await store.get('bob')).toEqual({ score: -1, tags: [] });
    expect(await store.getAll(['carol', 'nobody', 'bob'])).toEqual([
      { score: 7, tags: ['y', 'z'] },
      undefined,
      { score: -1, tags: [] },
    ]);
    // bytes really are what the serde produced
    expect((await inner.get(b('carol')))?.toString()).toBe('{"score":7,"tags":["y","z"]}');

    expect(await collect(store.all())).toEqual([
      ['bob', { score: -1, tags: [] }],
      ['carol', { score: 7, tags: ['y', 'z'] }],
    ]);
    expect(await collect(store.range('c', 'd'))).toEqual([['carol', { score: 7, tags: ['y', 'z'] }]]);
    await store.delete('bob');
    expect(await store.approximateNumEntries()).toBe(1);
  });

  it('records one latency observation per operation, labelled by store and op', async () => {
    const { metrics: m } = metrics();
    const store = new MeteredKeyValueStore(new InMemoryKeyValueStore('prefs'), stringSerde, stringSerde, m);
    await store.put('a', '1');
    await store.put('b', '2');
    await store.get('a');
    await store.getAll(['a', 'b']);
    await store.putAll([['c', '3']]);
    await store.delete('c');
    await collect(store.range('a'));
    for await (const _ of store.all()) break;
    await store.flush();
    expect(await countsByOp(m)).toEqual({
      put: 2,
      get: 1,
      getAll: 1,
      putAll: 1,
      delete: 1,
      range: 1,
      all: 1,
      flush: 1,
    });
    const sum = (await m.opLatency.get()).values.find(
      (v) => v.metricName === 'test_store_op_seconds_sum' && v.labels.op === 'put',
    );
    expect(sum!.value).toBeGreaterThanOrEqual(0);
    expect(sum!.value).toBeLessThan(5); // seconds, not milliseconds or nanoseconds
  });

  it('still records latency when the inner store fails', async () => {
    const { metrics: m } = metrics();
    const inner = new InMemoryKeyValueStore('prefs');
    const store = new MeteredKeyValueStore(inner, stringSerde, stringSerde, m);
    await inner.close();
    await expect(store.get('a')).rejects.toMatchObject({ code: 'STORE_CLOSED' });
    expect(await countsByOp(m)).toEqual({ get: 1 });
  });

  it('storeSerdeFor adapts a topic-taking serde, passing the fixed topic', async () => {
    const topics: string[] = [];
    const topicSerde = {
      serialize: (topic: string, v: number) => (topics.push(topic), Buffer.from(String(v))),
      deserialize: (topic: string, data: Buffer) => (topics.push(topic), Number(data.toString())),
    };
    const store = new MeteredKeyValueStore(
      new InMemoryKeyValueStore('prefs'),
      stringSerde,
      storeSerdeFor(topicSerde, 'app-prefs-changelog'),
    );
    await store.put('n', 41);
    expect(await store.get('n')).toBe(41);
    expect(topics).toEqual(['app-prefs-changelog', 'app-prefs-changelog']);
  });

  it('works without metrics', async () => {
    const store = new MeteredKeyValueStore(new InMemoryKeyValueStore('prefs'), stringSerde, stringSerde, undefined);
    await store.put('k', 'v');
    expect(await store.get('k')).toBe('v');
  });

  it('turns serde failures into SerdeError', async () => {
    const inner = new InMemoryKeyValueStore('prefs');
    const store = new MeteredKeyValueStore(inner, stringSerde, jsonSerde);
    await inner.put(b('broken'), b('{not json'));
    const err = await store.get('broken').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerdeError);
    expect((err as SerdeError).code).toBe('DESERIALIZE_FAILED');
    expect((err as SerdeError).cause).toBeInstanceOf(SyntaxError);

    const throwing: StoreSerde<string> = {
      serialize: () => {
        throw new Error('nope');
      },
      deserialize: (x) => x.toString(),
    };
    const store2 = new MeteredKeyValueStore(inner, throwing, stringSerde);
    await expect(store2.put('k', 'v')).rejects.toMatchObject({ code: 'SERIALIZE_FAILED' });
  });
});
