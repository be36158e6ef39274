import { ConfigError } from '../errors.js';
import { bytesKey, storeClosedError, type BytesStore, type Entry } from './store.js';

/**
 * What one cached entry is counted as, on top of its key and value bytes: the Map entries, the
 * latin1 key string, the entry object and the Buffer objects (V8 on x64: a cache of 50,000
 * clean 11-byte keys and 265-byte values measured 554 B per entry on the heap and in external
 * memory, i.e. 278 B over key + value).
 */
export const CACHE_ENTRY_OVERHEAD_BYTES = 280;

/**
 * The bytes a cache entry is counted as: key + value × `valueFactor` + `CACHE_ENTRY_OVERHEAD_BYTES`.
 * `valueFactor` (default 1) lets a store count what else a cached value keeps alive, e.g. the
 * decoded object the metered store memoizes per cached value.
 */
export function cacheEntryBytes(key: Buffer, value: Buffer | null, valueFactor = 1): number {
  return Math.ceil(key.length + (value?.length ?? 0) * valueFactor) + CACHE_ENTRY_OVERHEAD_BYTES;
}

/**
 * A byte budget shared by several caches (e.g. one store's caches in every task of an instance):
 * each cache keeps itself within an equal share, `maxBytes / caches open`, so the caches together
 * stay within `maxBytes` however many tasks the instance holds. A cache that joins makes the
 * others shrink at their next insertion (a read miss or a write; hits evict nothing).
 */
export class CacheBudget {
  private readonly members = new Set<{ readonly cachedBytes: number }>();
  constructor(readonly maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0)
      throw new ConfigError('cacheMaxBytes', `must be an integer >= 0, got ${maxBytes}`);
  }
  join(cache: { readonly cachedBytes: number }): void {
    this.members.add(cache);
  }
  leave(cache: { readonly cachedBytes: number }): void {
    this.members.delete(cache);
  }
  /** caches sharing the budget now */
  get caches(): number {
    return this.members.size;
  }
  /** each cache's share */
  share(): number {
    return Math.floor(this.maxBytes / Math.max(1, this.members.size));
  }
  /** the estimated bytes held by every cache of the budget */
  usedBytes(): number {
    let n = 0;
    for (const m of this.members) n += m.cachedBytes;
    return n;
  }
}

export interface CachingStoreOptions {
  /**
   * most entries (clean, dirty and cached tombstones) kept before evicting the least recently
   * used; unbounded when left out (then `maxBytes` or `budget` must bound the cache)
   */
  maxEntries?: number;
  /** most bytes (estimated with `cacheEntryBytes`) kept before evicting the least recently used */
  maxBytes?: number;
  /** a byte budget shared with other caches: this cache keeps within its share */
  budget?: CacheBudget;
  /** an entry counts as key + value × this + overhead (see `cacheEntryBytes`); default 1 */
  valueBytesFactor?: number;
  /**
   * Write-through instead of write-back: every write goes to the inner store (and so to the
   * changelog) at once, and the cache serves reads only. For stores whose every change must be
   * emitted (no collapsing of writes between flushes).
   */
  writeThrough?: boolean;
}

interface CacheEntry {
  readonly key: Buffer;
  /** what the entry counts for in the cache's bytes (cacheEntryBytes) */
  bytes: number;
  /** null = a (dirty or flushed) delete */
  value: Buffer | null;
  dirty: boolean;
  /** bumped on every write, so a flush can tell whether an entry changed while it was in flight */
  version: number;
  /** the cache's move count when the entry last went to the most recent end (see `touch`) */
  moved: number;
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
 * - Over `maxEntries`, or over its bytes (`maxBytes`, or its share of a shared `budget`; an entry
 *   counts as its key and value bytes plus `CACHE_ENTRY_OVERHEAD_BYTES`), least recently used
 *   entries are evicted; if one is dirty, every dirty entry is flushed first (flush-on-evict), so
 *   the inner store sees whole batches.
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
  readonly maxBytes: number;
  readonly budget: CacheBudget | undefined;
  readonly valueBytesFactor: number;
  readonly writeThrough: boolean;
  private bytes = 0;
  /** Map iteration order is the LRU order: first = least recently used */
  private readonly lru = new Map<string, CacheEntry>();
  /** moves of entries to the most recent end so far (see `touch`) */
  private moves = 0;
  /** dirty entries in last-write order */
  private readonly dirty = new Map<string, CacheEntry>();
  /** flushes run one at a time */
  private flushChain: Promise<void> = Promise.resolve();
  private version = 0;
  private closed = false;

  constructor(inner: BytesStore, opts: CachingStoreOptions) {
    if (opts.maxEntries !== undefined && (!Number.isSafeInteger(opts.maxEntries) || opts.maxEntries < 1)) {
      throw new ConfigError(
        'cacheMaxEntries',
        `must be an integer >= 1 for store "${inner.name}", got ${opts.maxEntries}`,
      );
    }
    if (opts.maxBytes !== undefined && (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 0)) {
      throw new ConfigError('cacheMaxBytes', `must be an integer >= 0 for store "${inner.name}", got ${opts.maxBytes}`);
    }
    if (opts.maxEntries === undefined && opts.maxBytes === undefined && opts.budget === undefined) {
      throw new ConfigError('cacheMaxEntries', `store "${inner.name}": a cache needs maxEntries, maxBytes or a budget`);
    }
    this.inner = inner;
    this.name = inner.name;
    this.maxEntries = opts.maxEntries ?? Infinity;
    this.maxBytes = opts.maxBytes ?? Infinity;
    this.budget = opts.budget;
    this.valueBytesFactor = opts.valueBytesFactor ?? 1;
    if (!(this.valueBytesFactor >= 1)) {
      throw new ConfigError(
        'cacheValueBytesFactor',
        `must be >= 1 for store "${inner.name}", got ${this.valueBytesFactor}`,
      );
    }
    this.budget?.join(this);
    this.writeThrough = opts.writeThrough ?? false;
  }

  /** the estimated bytes of the cached entries (see `cacheEntryBytes`) */
  get cachedBytes(): number {
    return this.bytes;
  }

  /** the most bytes this cache keeps now: maxBytes, or its share of the budget if smaller */
  get limitBytes(): number {
    const share = this.budget?.share() ?? Infinity;
    return share < this.maxBytes ? share : this.maxBytes;
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
    this.bytes = 0;
    this.budget?.leave(this);
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
      const old = this.lru.get(k);
      if (old !== undefined) {
        this.lru.delete(k);
        this.bytes -= old.bytes;
      }
      const bytes = cacheEntryBytes(key, value, this.valueBytesFactor);
      this.bytes += bytes;
      this.lru.set(k, { key, value, bytes, dirty: false, version: 0, moved: ++this.moves });
    }
    await this.evictIfNeeded();
  }

  private write(key: Buffer, value: Buffer | null): void {
    const k = bytesKey(key);
    let entry = this.lru.get(k);
    const bytes = cacheEntryBytes(key, value, this.valueBytesFactor);
    if (entry === undefined) {
      entry = { key, value, bytes, dirty: true, version: ++this.version, moved: 0 };
      this.bytes += bytes;
    } else {
      this.lru.delete(k);
      this.bytes += bytes - entry.bytes;
      entry.value = value;
      entry.bytes = bytes;
      entry.dirty = true;
      entry.version = ++this.version;
    }
    entry.moved = ++this.moves;
    this.lru.set(k, entry);
    this.dirty.delete(k); // re-insert: dirty order is last-write order
    this.dirty.set(k, entry);
  }

  /** caches a value just read from the inner store, unless a write got there first; true if added */
  private cacheClean(k: string, key: Buffer, value: Buffer | null): boolean {
    if (this.closed || this.lru.has(k)) return false;
    const bytes = cacheEntryBytes(key, value, this.valueBytesFactor);
    this.bytes += bytes;
    this.lru.set(k, { key, value, bytes, dirty: false, version: 0, moved: ++this.moves });
    return true;
  }

  /**
   * A read moves the entry to the most recent end, unless it is in the newer half already (fewer
   * moves since its last one than half the entries): an approximate LRU that spares the Map a
   * delete and an insert on most reads of a hot key (a batch's prefetch and its `get`s read each
   * key twice in a row). Eviction still takes the oldest end first.
   */
  private touch(k: string, entry: CacheEntry): void {
    if (this.moves - entry.moved < this.lru.size >> 1) return;
    entry.moved = ++this.moves;
    this.lru.delete(k);
    this.lru.set(k, entry);
  }

  private async evictIfNeeded(): Promise<void> {
    while (this.lru.size > this.maxEntries || (this.bytes > this.limitBytes && this.lru.size > 0)) {
      const first = this.lru.entries().next();
      if (first.done) return;
      const [k, entry] = first.value;
      if (entry.dirty) {
        // flush-on-evict: write every dirty entry down in one batch, then evict clean ones
        await this.flushDirty();
        continue;
      }
      this.lru.delete(k);
      this.bytes -= entry.bytes;
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
