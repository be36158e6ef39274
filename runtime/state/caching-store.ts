import { ConfigError } from '../errors.js';
import { bytesKey, storeClosedError, type BytesStore, type Entry } from './store.js';

export interface CachingStoreOptions {
  /** most entries (clean, dirty and cached tombstones) kept before evicting the least recently used */
  maxEntries: number;
  /**
   * Write-through instead of write-back: every write goes to the inner store (and so to the
   * changelog) at once, and the cache serves reads only. For stores whose every change must be
   * emitted (no collapsing of writes between flushes).
   */
  writeThrough?: boolean;
}

interface CacheEntry {
  readonly key: Buffer;
  /** null = a (dirty or flushed) delete */
  value: Buffer | null;
  dirty: boolean;
  /** bumped on every write, so a flush can tell whether an entry changed while it was in flight */
  version: number;
}

/**
 * Write-back LRU cache in front of a byte store (Kafka Streams' CachingKeyValueStore).
 *
 * - Reads are served from the cache, else from the inner store (and then cached; misses are
 *   cached as clean tombstones, so a key that does not exist costs one inner read). `getAll` fetches every miss with one inner `getAll`.
 * - Writes only touch the cache and mark the entry dirty; deletes are dirty tombstones. Writes
 *   to the same key between flushes collapse to the latest value.
 * - `flush()` hands all dirty entries to the inner store in ONE `putAll`, in the order the keys
 *   were last written, then flushes the inner store.
 * - Over `maxEntries`, least recently used entries are evicted; if one is dirty, every dirty
 *   entry is flushed first (flush-on-evict), so the inner store sees whole batches.
 * - `range`/`all`/`approximateNumEntries` flush dirty entries first and then ask the inner store,
 *   so they see every write made before the call.
 * - `close()` DISCARDS unflushed writes (the runtime flushes and commits before a clean close;
 *   after a failure, uncommitted writes must not reach the changelog).
 *
 * Buffers passed in are kept by reference until flushed: callers must not mutate them.
 */
export class CachingStore implements BytesStore {
  readonly name: string;
  readonly inner: BytesStore;
  readonly maxEntries: number;
  readonly writeThrough: boolean;
  /** Map iteration order is the LRU order: first = least recently used */
  private readonly lru = new Map<string, CacheEntry>();
  /** dirty entries in last-write order */
  private readonly dirty = new Map<string, CacheEntry>();
  /** flushes run one at a time */
  private flushChain: Promise<void> = Promise.resolve();
  private version = 0;
  private closed = false;

  constructor(inner: BytesStore, opts: CachingStoreOptions) {
    if (!Number.isSafeInteger(opts.maxEntries) || opts.maxEntries < 1) {
      throw new ConfigError(
        'cacheMaxEntries',
        `must be an integer >= 1 for store "${inner.name}", got ${opts.maxEntries}`,
      );
    }
    this.inner = inner;
    this.name = inner.name;
    this.maxEntries = opts.maxEntries;
    this.writeThrough = opts.writeThrough ?? false;
  }

  /** entries currently cached (for tests and metrics) */
  get cachedEntries(): number {
    return this.lru.size;
  }

  /** entries written since the last flush (for tests and metrics) */
  get dirtyEntries(): number {
    return this.dirty.size;
  }

  async get(key: Buffer): Promise<Buffer | undefined> {
    this.checkOpen();
    const k = bytesKey(key);
    const cached = this.lru.get(k);
    if (cached !== undefined) {
      this.touch(k, cached);
      return cached.value ?? undefined;
    }
    const value = await this.inner.get(key);
    // misses are cached too (as clean tombstones): a key that is absent stays absent until written
    if (this.cacheClean(k, key, value ?? null)) await this.evictIfNeeded();
    return value;
  }

  async getAll(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
    this.checkOpen();
    const results = new Array<Buffer | undefined>(keys.length);
    const missing: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const k = bytesKey(keys[i]!);
      const cached = this.lru.get(k);
      if (cached !== undefined) {
        this.touch(k, cached);
        results[i] = cached.value ?? undefined;
      } else {
        missing.push(i);
      }
    }
    if (missing.length > 0) {
      const values = await this.inner.getAll(missing.map((i) => keys[i]!));
      let added = false;
      for (let j = 0; j < missing.length; j++) {
        const i = missing[j]!;
        const value = values[j];
        results[i] = value;
        if (this.cacheClean(bytesKey(keys[i]!), keys[i]!, value ?? null)) added = true;
      }
      if (added) await this.evictIfNeeded();
    }
    return results;
  }

  async put(key: Buffer, value: Buffer): Promise<void> {
    this.checkOpen();
    if (this.writeThrough) return this.writeDown([[key, value]]);
    this.write(key, value);
    await this.evictIfNeeded();
  }

  async putAll(entries: readonly (readonly [Buffer, Buffer | null])[]): Promise<void> {
    this.checkOpen();
    if (this.writeThrough) return this.writeDown(entries);
    for (const [key, value] of entries) this.write(key, value);
    await this.evictIfNeeded();
  }

  async delete(key: Buffer): Promise<void> {
    this.checkOpen();
    if (this.writeThrough) return this.writeDown([[key, null]]);
    this.write(key, null);
    await this.evictIfNeeded();
  }

  range(from?: Buffer, to?: Buffer): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.flushThenIterate(() => this.inner.range(from, to));
  }

  all(): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.flushThenIterate(() => this.inner.all());
  }

  async approximateNumEntries(): Promise<number> {
    this.checkOpen();
    await this.flushDirty();
    return this.inner.approximateNumEntries();
  }

  async flush(): Promise<void> {
    this.checkOpen();
    await this.flushDirty();
    await this.inner.flush();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lru.clear();
    this.dirty.clear();
    await this.flushChain; // let an in-flight putAll finish before the inner store goes away
    await this.inner.close();
  }

  private async *flushThenIterate(
    open: () => AsyncIterable<Entry<Buffer, Buffer>>,
  ): AsyncGenerator<Entry<Buffer, Buffer>> {
    this.checkOpen();
    await this.flushDirty();
    yield* open();
  }

  /** write-through: the inner store first, then the cache holds the value clean */
  private async writeDown(entries: readonly (readonly [Buffer, Buffer | null])[]): Promise<void> {
    await this.inner.putAll(entries);
    for (const [key, value] of entries) {
      const k = bytesKey(key);
      this.lru.delete(k);
      this.lru.set(k, { key, value, dirty: false, version: 0 });
    }
    await this.evictIfNeeded();
  }

  private write(key: Buffer, value: Buffer | null): void {
    const k = bytesKey(key);
    let entry = this.lru.get(k);
    if (entry === undefined) {
      entry = { key, value, dirty: true, version: ++this.version };
    } else {
      this.lru.delete(k);
      entry.value = value;
      entry.dirty = true;
      entry.version = ++this.version;
    }
    this.lru.set(k, entry);
    this.dirty.delete(k); // re-insert: dirty order is last-write order
    this.dirty.set(k, entry);
  }

  /** caches a value just read from the inner store, unless a write got there first; true if added */
  private cacheClean(k: string, key: Buffer, value: Buffer | null): boolean {
    if (this.closed || this.lru.has(k)) return false;
    this.lru.set(k, { key, value, dirty: false, version: 0 });
    return true;
  }

  private touch(k: string, entry: CacheEntry): void {
    this.lru.delete(k);
    this.lru.set(k, entry);
  }

  private async evictIfNeeded(): Promise<void> {
    while (this.lru.size > this.maxEntries) {
      const first = this.lru.entries().next();
      if (first.done) return;
      const [k, entry] = first.value;
      if (entry.dirty) {
        // flush-on-evict: write every dirty entry down in one batch, then evict clean ones
        await this.flushDirty();
        continue;
      }
      this.lru.delete(k);
    }
  }

  private flushDirty(): Promise<void> {
    const run = this.flushChain.then(() => this.writeDirty());
    this.flushChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async writeDirty(): Promise<void> {
    if (this.dirty.size === 0 || this.closed) return;
    const batch = [...this.dirty.values()].map((entry) => ({ entry, version: entry.version, value: entry.value }));
    await this.inner.putAll(batch.map(({ entry, value }) => [entry.key, value] as const));
    for (const { entry, version } of batch) {
      if (entry.version !== version) continue; // rewritten while in flight: still dirty
      entry.dirty = false;
      const k = bytesKey(entry.key);
      if (this.dirty.get(k) === entry) this.dirty.delete(k);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw storeClosedError(this.name);
  }
}
