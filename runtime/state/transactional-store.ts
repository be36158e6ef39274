import {
  bytesKey,
  keyFromBytesKey,
  storeClosedError,
  type BatchRestorable,
  type BytesStore,
  type Entry,
  type RestorableBytesStore,
  type RestoreRecord,
} from './store.js';

/**
 * An innermost store that can apply a set of writes as one atomic (optionally synced) batch.
 * RocksDB does it with a WriteBatch; the in-memory store trivially.
 */
export interface AtomicBatchStore extends RestorableBytesStore {
  writeAtomic(entries: readonly (readonly [Buffer, Buffer | null])[], opts: { sync: boolean }): Promise<void>;
}

/**
 * Transactional state (the idea of Kafka Streams' KIP-892): the writes of a commit interval stay
 * in an in-memory write buffer and reach the persistent store only when the commit they belong
 * to is complete, as ONE atomic, synced batch. So after a crash the persistent store holds the
 * state of a commit, never half an interval and never writes whose changelog records were not
 * acknowledged.
 *
 * Two buffers:
 * - `open`: what processing writes now;
 * - `sealed`: the writes of the commit in progress (taken by `seal()` at the commit's step 3),
 *   written down by `commitSealed()` once the commit is durable in Kafka, or dropped by `abort()`.
 * Reads see open, then sealed, then the persistent store. `restoreBatch` writes straight to the
 * persistent store (restore happens before processing, with empty buffers).
 */
export class TransactionalStore implements RestorableBytesStore {
  readonly name: string;
  private open = new Map<string, Buffer | null>();
  private sealed: Map<string, Buffer | null> | undefined;
  private closed = false;

  constructor(readonly inner: AtomicBatchStore) {
    this.name = inner.name;
  }

  /** entries written and not yet committed (both buffers) */
  get uncommittedEntries(): number {
    return this.open.size + (this.sealed?.size ?? 0);
  }

  async get(key: Buffer): Promise<Buffer | undefined> {
    this.checkOpen();
    const k = bytesKey(key);
    const o = this.open.get(k);
    if (o !== undefined) return o ?? undefined;
    const s = this.sealed?.get(k);
    if (s !== undefined) return s ?? undefined;
    return this.inner.get(key);
  }

  async getAll(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
    this.checkOpen();
    const out: (Buffer | undefined)[] = new Array(keys.length);
    const missIdx: number[] = [];
    for (let i = 0; i < keys.length; i++) {
      const k = bytesKey(keys[i]!);
      let v = this.open.get(k);
      if (v === undefined) v = this.sealed?.get(k);
      if (v === undefined) missIdx.push(i);
      else out[i] = v ?? undefined;
    }
    if (missIdx.length) {
      const got = await this.inner.getAll(missIdx.map((i) => keys[i]!));
      for (let j = 0; j < missIdx.length; j++) out[missIdx[j]!] = got[j];
    }
    return out;
  }

  async put(key: Buffer, value: Buffer): Promise<void> {
    this.checkOpen();
    if (key.length === 0) return this.inner.put(key, value); // the inner store raises INVALID_KEY
    this.open.set(bytesKey(key), value);
  }

  async putAll(entries: readonly (readonly [Buffer, Buffer | null])[]): Promise<void> {
    this.checkOpen();
    for (const [key, value] of entries) {
      if (key.length === 0) await this.inner.put(key, value ?? Buffer.alloc(0));
      this.open.set(bytesKey(key), value);
    }
  }

  async delete(key: Buffer): Promise<void> {
    this.checkOpen();
    if (key.length === 0) return this.inner.delete(key);
    this.open.set(bytesKey(key), null);
  }

  range(from?: Buffer, to?: Buffer): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.merged(from, to);
  }

  all(): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.merged(undefined, undefined);
  }

  /** The persistent store's estimate plus buffered inserts (deletes are not subtracted). */
  async approximateNumEntries(): Promise<number> {
    this.checkOpen();
    return (await this.inner.approximateNumEntries()) + this.open.size + (this.sealed?.size ?? 0);
  }

  /** Nothing to do: buffered writes go down only through `seal` + `commitSealed`. */
  async flush(): Promise<void> {
    this.checkOpen();
  }

  async restoreBatch(records: readonly RestoreRecord[]): Promise<void> {
    this.checkOpen();
    return this.inner.restoreBatch(records);
  }

  /**
   * Takes the open buffer as the commit's writes. If a sealed buffer is still there (its commit
   * failed and the task went on), the new writes are added on top of it.
   */
  seal(): void {
    this.checkOpen();
    if (!this.sealed) this.sealed = this.open;
    else for (const [k, v] of this.open) this.sealed.set(k, v);
    this.open = new Map();
  }

  /** Writes the sealed buffer to the persistent store in one atomic, synced batch. */
  async commitSealed(opts: { sync: boolean } = { sync: true }): Promise<number> {
    this.checkOpen();
    const s = this.sealed;
    if (!s || s.size === 0) {
      this.sealed = undefined;
      return 0;
    }
    const entries: [Buffer, Buffer | null][] = [];
    for (const [k, v] of s) entries.push([keyFromBytesKey(k), v]);
    await this.inner.writeAtomic(entries, opts);
    // a later seal() may have merged into the same map meanwhile only if a commit failed; the
    // runtime runs one commit at a time, so the map is still ours
    if (this.sealed === s) this.sealed = undefined;
    return entries.length;
  }

  /** Drops every uncommitted write (a dirty close: the task is re-created from the last commit). */
  abort(): void {
    this.open = new Map();
    this.sealed = undefined;
  }

  /** Closes the persistent store. Uncommitted writes are dropped. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort();
    await this.inner.close();
  }

  private checkOpen(): void {
    if (this.closed) throw storeClosedError(this.name);
  }

  /** The persistent store's entries with the buffers laid over them, in key-byte order. */
  private async *merged(from: Buffer | undefined, to: Buffer | undefined): AsyncGenerator<Entry<Buffer, Buffer>> {
    this.checkOpen();
    const lo = from !== undefined && from.length > 0 ? bytesKey(from) : undefined;
    const hi = to !== undefined ? bytesKey(to) : undefined;
    const overlay = new Map<string, Buffer | null>();
    const within = (k: string) => (lo === undefined || k >= lo) && (hi === undefined || k < hi);
    if (this.sealed) for (const [k, v] of this.sealed) if (within(k)) overlay.set(k, v);
    for (const [k, v] of this.open) if (within(k)) overlay.set(k, v);
    const keys = [...overlay.keys()].sort();
    let i = 0;
    for await (const [key, value] of this.inner.range(from, to)) {
      const k = bytesKey(key);
      while (i < keys.length && keys[i]! < k) {
        const v = overlay.get(keys[i]!)!;
        if (v !== null) yield [keyFromBytesKey(keys[i]!), v];
        i++;
      }
      if (i < keys.length && keys[i] === k) {
        const v = overlay.get(k)!;
        if (v !== null) yield [key, v];
        i++;
        continue;
      }
      yield [key, value];
    }
    for (; i < keys.length; i++) {
      const v = overlay.get(keys[i]!)!;
      if (v !== null) yield [keyFromBytesKey(keys[i]!), v];
    }
  }
}

export function isAtomicBatchStore(s: unknown): s is AtomicBatchStore {
  return typeof (s as { writeAtomic?: unknown })?.writeAtomic === 'function';
}

export type { BatchRestorable, BytesStore };
