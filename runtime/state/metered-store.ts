import type { Histogram } from 'prom-client';
import { SerdeError, StreamsError } from '../errors.js';
import type { BytesStore, Entry, KeyValueStore, StoreSerde } from './store.js';

/** Metrics a store records into; created once by the runtime's metrics registry and shared. */
export interface StoreMetrics {
  /** seconds per store operation, labelled by store name and operation */
  opLatency: Histogram<'store' | 'op'>;
}

export type StoreOp =
  'get' | 'getAll' | 'put' | 'putAll' | 'delete' | 'range' | 'all' | 'approximateNumEntries' | 'flush';

type Observer = { observe(value: number): void };

/**
 * The outermost layer: turns typed keys/values into bytes with the serdes and times every
 * operation into `metrics.opLatency{store, op}` (seconds). `range`/`all` are timed from the
 * first `next()` until the iteration ends or is abandoned with `break`/`return`.
 *
 * Values read are decoded once per cached byte buffer and shared between reads: treat them as
 * immutable (write a new value with `put` instead of changing one).
 *
 * Serde failures surface as `SerdeError` (codes `SERIALIZE_FAILED` / `DESERIALIZE_FAILED`)
 * unless the serde already threw a `StreamsError`. `V` must not itself admit `null`: in
 * `putAll` a null value means delete.
 */
export class MeteredKeyValueStore<K, V> implements KeyValueStore<K, V> {
  readonly name: string;
  readonly inner: BytesStore;
  private readonly keySerde: StoreSerde<K>;
  private readonly valueSerde: StoreSerde<V>;
  private readonly metrics: StoreMetrics | undefined;
  private readonly observers = new Map<StoreOp, Observer>();
  /** decoded values by the bytes they came from; values are shared, so callers must not mutate them */
  private readonly decoded = new WeakMap<Buffer, V & object>();

  constructor(inner: BytesStore, keySerde: StoreSerde<K>, valueSerde: StoreSerde<V>, metrics?: StoreMetrics) {
    this.inner = inner;
    this.name = inner.name;
    this.keySerde = keySerde;
    this.valueSerde = valueSerde;
    this.metrics = metrics;
  }

  async get(key: K): Promise<V | undefined> {
    const start = this.start();
    try {
      const bytes = await this.inner.get(this.serializeKey(key));
      return bytes === undefined ? undefined : this.deserializeValue(bytes);
    } finally {
      this.record('get', start);
    }
  }

  async getAll(keys: readonly K[]): Promise<(V | undefined)[]> {
    const start = this.start();
    try {
      const values = await this.inner.getAll(keys.map((k) => this.serializeKey(k)));
      return values.map((v) => (v === undefined ? undefined : this.deserializeValue(v)));
    } finally {
      this.record('getAll', start);
    }
  }

  async put(key: K, value: V): Promise<void> {
    const start = this.start();
    try {
      const bytes = this.serializeValue(value);
      // the next read of these bytes (from the cache) needs no decoding
      if (typeof value === 'object' && value !== null) this.decoded.set(bytes, value);
      await this.inner.put(this.serializeKey(key), bytes);
    } finally {
      this.record('put', start);
    }
  }

  async putAll(entries: readonly (readonly [K, V | null])[]): Promise<void> {
    const start = this.start();
    try {
      await this.inner.putAll(
        entries.map(([k, v]) => [this.serializeKey(k), v === null ? null : this.serializeValue(v)] as const),
      );
    } finally {
      this.record('putAll', start);
    }
  }

  async delete(key: K): Promise<void> {
    const start = this.start();
    try {
      await this.inner.delete(this.serializeKey(key));
    } finally {
      this.record('delete', start);
    }
  }

  range(from?: K, to?: K): AsyncIterable<Entry<K, V>> {
    return this.iterate('range', () =>
      this.inner.range(
        from === undefined ? undefined : this.serializeKey(from),
        to === undefined ? undefined : this.serializeKey(to),
      ),
    );
  }

  all(): AsyncIterable<Entry<K, V>> {
    return this.iterate('all', () => this.inner.all());
  }

  async approximateNumEntries(): Promise<number> {
    const start = this.start();
    try {
      return await this.inner.approximateNumEntries();
    } finally {
      this.record('approximateNumEntries', start);
    }
  }

  async flush(): Promise<void> {
    const start = this.start();
    try {
      await this.inner.flush();
    } finally {
      this.record('flush', start);
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async *iterate(op: StoreOp, open: () => AsyncIterable<Entry<Buffer, Buffer>>): AsyncGenerator<Entry<K, V>> {
    const start = this.start();
    try {
      for await (const [k, v] of open()) {
        yield [this.deserializeKey(k), this.deserializeValue(v)];
      }
    } finally {
      this.record(op, start);
    }
  }

  private start(): number {
    return this.metrics === undefined ? 0 : performance.now();
  }

  private record(op: StoreOp, start: number): void {
    if (this.metrics === undefined) return;
    let observer = this.observers.get(op);
    if (observer === undefined) {
      observer = this.metrics.opLatency.labels({ store: this.name, op });
      this.observers.set(op, observer);
    }
    observer.observe((performance.now() - start) / 1000);
  }

  private serializeKey(key: K): Buffer {
    try {
      return this.keySerde.serialize(key);
    } catch (err) {
      throw serdeError('SERIALIZE_FAILED', `store "${this.name}": cannot serialize key`, err);
    }
  }

  private serializeValue(value: V): Buffer {
    try {
      return this.valueSerde.serialize(value);
    } catch (err) {
      throw serdeError('SERIALIZE_FAILED', `store "${this.name}": cannot serialize value`, err);
    }
  }

  private deserializeKey(bytes: Buffer): K {
    try {
      return this.keySerde.deserialize(bytes);
    } catch (err) {
      throw serdeError('DESERIALIZE_FAILED', `store "${this.name}": cannot deserialize key`, err);
    }
  }

  private deserializeValue(bytes: Buffer): V {
    // the cache below hands back the same Buffer for the same cached value: decode it once
    const memo = this.decoded.get(bytes);
    if (memo !== undefined) return memo;
    try {
      const v = this.valueSerde.deserialize(bytes);
      if (typeof v === 'object' && v !== null) this.decoded.set(bytes, v);
      return v;
    } catch (err) {
      throw serdeError('DESERIALIZE_FAILED', `store "${this.name}": cannot deserialize value`, err);
    }
  }
}

function serdeError(code: string, message: string, cause: unknown): StreamsError {
  if (cause instanceof StreamsError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new SerdeError(code, `${message}: ${detail}`, { cause });
}
