import { mkdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import {
  StoreError,
  StoreErrorCodes,
  storeClosedError,
  type BatchRestorable,
  type BytesStore,
  type Entry,
  type RestoreRecord,
} from './store.js';

// ---------------------------------------------------------------------------------------------
// The `rocksdb` package (Level, abstract-leveldown 7 callback API) ships no type declarations;
// this is the subset we use. It is loaded lazily so that importing the state layer (e.g. for
// in-memory stores in tests) never requires the native binding.

type ErrCallback = (err?: Error | null) => void;
type ValueCallback<T> = (err: Error | null | undefined, value?: T) => void;

interface LevelIterator {
  next(cb: (err: Error | null | undefined, key?: Buffer, value?: Buffer) => void): void;
  end(cb: ErrCallback): void;
}

type BatchOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

interface IteratorOptions {
  gte?: Buffer;
  lt?: Buffer;
  keys: true;
  values: true;
  keyAsBuffer: true;
  valueAsBuffer: true;
}

interface LevelDown {
  readonly status: string;
  open(options: Record<string, unknown>, cb: ErrCallback): void;
  close(cb: ErrCallback): void;
  get(key: Buffer, options: { asBuffer: true }, cb: ValueCallback<Buffer>): void;
  getMany?(keys: Buffer[], options: { asBuffer: true }, cb: ValueCallback<(Buffer | undefined)[]>): void;
  put(key: Buffer, value: Buffer, options: { sync: boolean }, cb: ErrCallback): void;
  del(key: Buffer, options: { sync: boolean }, cb: ErrCallback): void;
  batch(ops: BatchOp[], options: { sync: boolean }, cb: ErrCallback): void;
  iterator(options: IteratorOptions): LevelIterator;
  getProperty(property: string): string;
}

type LevelDownFactory = (location: string) => LevelDown;

let rocksdbFactory: LevelDownFactory | undefined;
function loadRocksDB(): LevelDownFactory {
  if (rocksdbFactory === undefined) {
    const require = createRequire(import.meta.url);
    rocksdbFactory = require('rocksdb') as LevelDownFactory;
  }
  return rocksdbFactory;
}

// ---------------------------------------------------------------------------------------------

/** Every RocksDB store open in this process, for the memory figures below. */
const openStores = new Set<RocksDBStore>();

/** Native memory of the RocksDB stores open in this process, in bytes (RocksDB's own estimates). */
export interface RocksDBMemoryUsage {
  /** open RocksDB instances */
  instances: number;
  /** `rocksdb.block-cache-usage`, summed (each instance has its own cache) */
  blockCache: number;
  /** `rocksdb.cur-size-all-mem-tables`: active and immutable memtables */
  memtables: number;
  /** `rocksdb.estimate-table-readers-mem`: index and filter blocks held outside the block cache */
  tableReaders: number;
}

export function rocksdbMemoryUsage(): RocksDBMemoryUsage {
  const out: RocksDBMemoryUsage = { instances: 0, blockCache: 0, memtables: 0, tableReaders: 0 };
  for (const s of openStores) {
    const u = s.memoryUsage();
    if (!u) continue;
    out.instances++;
    out.blockCache += u.blockCache;
    out.memtables += u.memtables;
    out.tableReaders += u.tableReaders;
  }
  return out;
}

export interface RocksDBStoreOptions {
  /**
   * fsync the WAL on every write (default false). Without it, acknowledged writes survive a
   * process crash (the WAL is in the OS page cache) but not an OS crash / power loss.
   */
  sync?: boolean;
  /** block cache size in bytes (binding default 8 MiB) */
  cacheSize?: number;
  /** memtable size in bytes (binding default 4 MiB) */
  writeBufferSize?: number;
  blockSize?: number;
  maxOpenFiles?: number;
  /** snappy compression (binding default true) */
  compression?: boolean;
  infoLogLevel?: 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'header';
}

/**
 * A byte store persisted in a RocksDB directory. Writes go through the WAL; `flush()` is a
 * no-op (see `RocksDBStoreOptions.sync`). Iterators read from a snapshot taken when iteration
 * starts and are always released: on normal end, on early exit (`break`/`return`/throw in a
 * `for await`), and at `close()` for any still open.
 */
export class RocksDBStore implements BytesStore, BatchRestorable {
  readonly name: string;
  readonly dir: string;
  private readonly db: LevelDown;
  private readonly writeOptions: { sync: boolean };
  private readonly openIterators = new Set<LevelIterator>();
  private closed = false;

  private constructor(name: string, dir: string, db: LevelDown, opts: RocksDBStoreOptions) {
    this.name = name;
    this.dir = dir;
    this.db = db;
    this.writeOptions = { sync: opts.sync ?? false };
  }

  /**
   * Opens (creating if missing) the store in `dir`. Throws a `StoreError`:
   * `STORE_CORRUPT` when RocksDB reports damaged files (wipe with `destroy` and restore),
   * `STORE_OPEN_FAILED` otherwise (`retriable: true` when the directory lock is held).
   */
  static async open(name: string, dir: string, opts: RocksDBStoreOptions = {}): Promise<RocksDBStore> {
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      throw new StoreError(
        StoreErrorCodes.OPEN_FAILED,
        `store "${name}": cannot create directory ${dir}: ${message(err)}`,
        {
          cause: err,
        },
      );
    }
    let db: LevelDown;
    try {
      db = loadRocksDB()(dir);
    } catch (err) {
      throw new StoreError(StoreErrorCodes.OPEN_FAILED, `store "${name}": cannot load rocksdb: ${message(err)}`, {
        cause: err,
      });
    }
    const { sync: _sync, ...dbOptions } = opts;
    try {
      await new Promise<void>((resolve, reject) =>
        db.open({ ...dbOptions, createIfMissing: true, errorIfExists: false }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
    } catch (err) {
      throw classifyOpenError(name, dir, err);
    }
    const store = new RocksDBStore(name, dir, db, opts);
    openStores.add(store);
    return store;
  }

  /** Deletes the store directory and everything in it (the store must be closed). */
  static async destroy(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** native iterators currently held by unfinished range/all iterations (for leak checks) */
  get openIteratorCount(): number {
    return this.openIterators.size;
  }

  async get(key: Buffer): Promise<Buffer | undefined> {
    this.checkOpen();
    checkKey(this.name, key);
    return new Promise((resolve, reject) => {
      this.db.get(key, { asBuffer: true }, (err, value) => {
        if (err) {
          if (isNotFound(err)) resolve(undefined);
          else reject(this.opError(StoreErrorCodes.READ_FAILED, 'get', err));
        } else {
          resolve(value);
        }
      });
    });
  }

  async getAll(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
    this.checkOpen();
    if (keys.length === 0) return [];
    for (const k of keys) checkKey(this.name, k);
    const getMany = this.db.getMany;
    if (typeof getMany !== 'function') return Promise.all(keys.map((k) => this.get(k)));
    return new Promise((resolve, reject) => {
      getMany.call(this.db, [...keys], { asBuffer: true }, (err, values) => {
        if (err) reject(this.opError(StoreErrorCodes.READ_FAILED, 'getAll', err));
        else resolve(values ?? keys.map(() => undefined));
      });
    });
  }

  async put(key: Buffer, value: Buffer): Promise<void> {
    this.checkOpen();
    checkKey(this.name, key);
    return new Promise((resolve, reject) => {
      this.db.put(key, value, this.writeOptions, (err) =>
        err ? reject(this.opError(StoreErrorCodes.WRITE_FAILED, 'put', err)) : resolve(),
      );
    });
  }

  async putAll(entries: readonly (readonly [Buffer, Buffer | null])[]): Promise<void> {
    this.checkOpen();
    const ops: BatchOp[] = [];
    for (const [key, value] of entries) {
      checkKey(this.name, key);
      ops.push(value === null ? { type: 'del', key } : { type: 'put', key, value });
    }
    await this.writeBatch(ops, 'putAll');
  }

  async delete(key: Buffer): Promise<void> {
    this.checkOpen();
    checkKey(this.name, key);
    return new Promise((resolve, reject) => {
      this.db.del(key, this.writeOptions, (err) =>
        err ? reject(this.opError(StoreErrorCodes.WRITE_FAILED, 'delete', err)) : resolve(),
      );
    });
  }

  /**
   * Applies the writes as ONE atomic RocksDB WriteBatch; with `sync` the WAL is fsynced before
   * it resolves (a commit's writes survive an OS crash too).
   */
  async writeAtomic(entries: readonly (readonly [Buffer, Buffer | null])[], opts: { sync: boolean }): Promise<void> {
    this.checkOpen();
    const ops: BatchOp[] = [];
    for (const [key, value] of entries) {
      checkKey(this.name, key);
      ops.push(value === null ? { type: 'del', key } : { type: 'put', key, value });
    }
    if (ops.length === 0) return;
    await new Promise<void>((resolve, reject) => {
      this.db.batch(ops, { sync: opts.sync }, (err) =>
        err ? reject(this.opError(StoreErrorCodes.WRITE_FAILED, 'writeAtomic', err)) : resolve(),
      );
    });
  }

  /** Applies changelog records in one atomic batch, straight to RocksDB. */
  async restoreBatch(records: readonly RestoreRecord[]): Promise<void> {
    this.checkOpen();
    const ops: BatchOp[] = [];
    for (const r of records) {
      checkKey(this.name, r.key);
      ops.push(r.value === null ? { type: 'del', key: r.key } : { type: 'put', key: r.key, value: r.value });
    }
    await this.writeBatch(ops, 'restoreBatch');
  }

  range(from?: Buffer, to?: Buffer): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.iterate(from, to);
  }

  all(): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.iterate(undefined, undefined);
  }

  /** RocksDB's `rocksdb.estimate-num-keys`: exact for fresh inserts, approximate once keys are overwritten, deleted or compacted. */
  async approximateNumEntries(): Promise<number> {
    this.checkOpen();
    let raw: string;
    try {
      raw = this.db.getProperty('rocksdb.estimate-num-keys');
    } catch (err) {
      throw this.opError(StoreErrorCodes.READ_FAILED, 'approximateNumEntries', err);
    }
    const n = Number.parseInt(raw, 10);
    return Number.isFinite(n) && n > 0 ? n : 0;
  }

  /** This instance's native memory (RocksDB's estimates, bytes); undefined once closed. */
  memoryUsage(): Omit<RocksDBMemoryUsage, 'instances'> | undefined {
    if (this.closed) return undefined;
    const prop = (p: string): number => {
      try {
        const n = Number.parseInt(this.db.getProperty(p), 10);
        return Number.isFinite(n) && n > 0 ? n : 0;
      } catch {
        return 0;
      }
    };
    return {
      blockCache: prop('rocksdb.block-cache-usage'),
      memtables: prop('rocksdb.cur-size-all-mem-tables'),
      tableReaders: prop('rocksdb.estimate-table-readers-mem'),
    };
  }

  /** No-op: every acknowledged write is already in the WAL (fsynced if `sync` was set). */
  async flush(): Promise<void> {
    this.checkOpen();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    openStores.delete(this);
    // End our iterators ourselves: the binding also ends them on close, but then a later
    // `end()` from an abandoned generator's `finally` would never get its callback.
    const iterators = [...this.openIterators];
    this.openIterators.clear();
    await Promise.all(iterators.map((it) => endIterator(it).catch(() => undefined)));
    await new Promise<void>((resolve, reject) =>
      this.db.close((err) =>
        err
          ? reject(
              new StoreError(StoreErrorCodes.CLOSE_FAILED, `store "${this.name}": close failed: ${message(err)}`, {
                cause: err,
              }),
            )
          : resolve(),
      ),
    );
  }

  private async *iterate(from: Buffer | undefined, to: Buffer | undefined): AsyncGenerator<Entry<Buffer, Buffer>> {
    this.checkOpen();
    // The binding treats a zero-length bound as "no bound"; nothing sorts below the empty key.
    if (to !== undefined && to.length === 0) return;
    if (from !== undefined && to !== undefined && Buffer.compare(from, to) >= 0) return;
    const options: IteratorOptions = { keys: true, values: true, keyAsBuffer: true, valueAsBuffer: true };
    if (from !== undefined && from.length > 0) options.gte = from;
    if (to !== undefined) options.lt = to;

    let it: LevelIterator;
    try {
      it = this.db.iterator(options);
    } catch (err) {
      throw this.opError(StoreErrorCodes.READ_FAILED, 'range', err);
    }
    this.openIterators.add(it);
    try {
      for (;;) {
        let entry: Entry<Buffer, Buffer> | undefined;
        try {
          entry = await nextEntry(it);
        } catch (err) {
          if (this.closed) throw storeClosedError(this.name);
          throw this.opError(StoreErrorCodes.READ_FAILED, 'range', err);
        }
        if (entry === undefined) return;
        yield entry;
      }
    } finally {
      // close() may already have ended it
      if (this.openIterators.delete(it)) await endIterator(it).catch(() => undefined);
    }
  }

  private writeBatch(ops: BatchOp[], op: string): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.db.batch(ops, this.writeOptions, (err) =>
        err ? reject(this.opError(StoreErrorCodes.WRITE_FAILED, op, err)) : resolve(),
      );
    });
  }

  private checkOpen(): void {
    if (this.closed) throw storeClosedError(this.name);
  }

  private opError(code: string, op: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const msg = message(err);
    // RocksDB reports damaged SST/WAL data as "Corruption: ..." at read time as well
    const finalCode = msg.startsWith('Corruption') ? StoreErrorCodes.CORRUPT : code;
    return new StoreError(finalCode, `store "${this.name}": ${op} failed: ${msg}`, { cause: err });
  }
}

function nextEntry(it: LevelIterator): Promise<Entry<Buffer, Buffer> | undefined> {
  return new Promise((resolve, reject) => {
    it.next((err, key, value) => {
      if (err) reject(err);
      else if (key === undefined) resolve(undefined);
      else resolve([key, value ?? Buffer.alloc(0)]);
    });
  });
}

function endIterator(it: LevelIterator): Promise<void> {
  return new Promise((resolve, reject) => it.end((err) => (err ? reject(err) : resolve())));
}

function checkKey(name: string, key: Buffer): void {
  if (!Buffer.isBuffer(key) || key.length === 0) {
    throw new StoreError(StoreErrorCodes.INVALID_KEY, `store "${name}": key must be a non-empty Buffer`);
  }
}

function isNotFound(err: Error): boolean {
  return (err as { notFound?: unknown }).notFound === true || /^NotFound/.test(err.message);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * RocksDB status strings: "Corruption: ..." for damaged CURRENT/MANIFEST/SST/WAL files;
 * "IO error: ... lock ..." when another handle holds the directory; a CURRENT naming a
 * MANIFEST that is gone is also a damaged store.
 */
function classifyOpenError(name: string, dir: string, err: unknown): StoreError {
  const msg = message(err);
  const prefix = `store "${name}": cannot open RocksDB at ${dir}: `;
  if (/lock/i.test(msg)) {
    return new StoreError(StoreErrorCodes.OPEN_FAILED, prefix + msg, { retriable: true, cause: err });
  }
  if (/^Corruption/.test(msg) || /MANIFEST|CURRENT|\.sst|\.log\b/.test(msg)) {
    return new StoreError(StoreErrorCodes.CORRUPT, prefix + msg, { cause: err });
  }
  return new StoreError(StoreErrorCodes.OPEN_FAILED, prefix + msg, { cause: err });
}
