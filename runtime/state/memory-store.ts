import {
  StoreError,
  StoreErrorCodes,
  bytesKey,
  keyFromBytesKey,
  storeClosedError,
  type BatchRestorable,
  type BytesStore,
  type Entry,
  type RestoreRecord,
} from './store.js';

/**
 * A heap-backed byte store. Values live in a Map keyed by the latin1 form of the key (which
 * sorts like the bytes); a sorted key index is rebuilt lazily, only when a range scan follows
 * an insert or delete of a key, so point reads and overwrites stay O(1).
 *
 * Range iterators walk a snapshot of the key index taken when iteration starts: keys added
 * afterwards are not seen, keys deleted afterwards are skipped, values are read live.
 *
 * Values are copied on write; returned Buffers belong to the store and must not be mutated.
 */
export class InMemoryKeyValueStore implements BytesStore, BatchRestorable {
  readonly name: string;
  private readonly map = new Map<string, Buffer>();
  /** sorted keys, or null when a key was added/removed since the last sort */
  private sorted: string[] | null = [];
  private closed = false;

  constructor(name: string) {
    this.name = name;
  }

  async get(key: Buffer): Promise<Buffer | undefined> {
    this.checkOpen();
    return this.map.get(bytesKey(key));
  }

  async getAll(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
    this.checkOpen();
    return keys.map((k) => this.map.get(bytesKey(k)));
  }

  async put(key: Buffer, value: Buffer): Promise<void> {
    this.checkOpen();
    this.write(key, value);
  }

  async putAll(entries: readonly (readonly [Buffer, Buffer | null])[]): Promise<void> {
    this.checkOpen();
    // validate everything first so a bad entry leaves the store untouched (batch semantics)
    for (const [k] of entries) checkKey(this.name, k);
    for (const [k, v] of entries) this.write(k, v);
  }

  async delete(key: Buffer): Promise<void> {
    this.checkOpen();
    this.write(key, null);
  }

  /** One atomic batch (trivially: nothing else runs in between). */
  async writeAtomic(entries: readonly (readonly [Buffer, Buffer | null])[]): Promise<void> {
    return this.putAll(entries);
  }

  async restoreBatch(records: readonly RestoreRecord[]): Promise<void> {
    this.checkOpen();
    for (const r of records) checkKey(this.name, r.key);
    for (const r of records) this.write(r.key, r.value);
  }

  range(from?: Buffer, to?: Buffer): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.iterate(from === undefined ? undefined : bytesKey(from), to === undefined ? undefined : bytesKey(to));
  }

  all(): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.range();
  }

  async approximateNumEntries(): Promise<number> {
    this.checkOpen();
    return this.map.size;
  }

  async flush(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.map.clear();
    this.sorted = [];
  }

  private async *iterate(from: string | undefined, to: string | undefined): AsyncGenerator<Entry<Buffer, Buffer>> {
    this.checkOpen();
    const keys = this.sortedKeys();
    let i = from === undefined ? 0 : lowerBound(keys, from);
    for (; i < keys.length; i++) {
      const k = keys[i]!;
      if (to !== undefined && k >= to) return;
      if (this.closed) throw storeClosedError(this.name);
      const v = this.map.get(k);
      if (v === undefined) continue; // deleted since the scan began
      yield [keyFromBytesKey(k), v];
    }
  }

  private write(key: Buffer, value: Buffer | null): void {
    checkKey(this.name, key);
    const k = bytesKey(key);
    if (value === null) {
      if (this.map.delete(k)) this.sorted = null;
      return;
    }
    if (!this.map.has(k)) this.sorted = null;
    this.map.set(k, Buffer.from(value));
  }

  private sortedKeys(): string[] {
    if (this.sorted === null) {
      // `<` on latin1 strings is unsigned byte order
      this.sorted = [...this.map.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    }
    return this.sorted;
  }

  private checkOpen(): void {
    if (this.closed) throw storeClosedError(this.name);
  }
}

function checkKey(name: string, key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length === 0) {
    throw new StoreError(StoreErrorCodes.INVALID_KEY, `store "${name}": key must be a non-empty Buffer`);
  }
}

/** first index i with keys[i] >= target */
function lowerBound(keys: readonly string[], target: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < target) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
