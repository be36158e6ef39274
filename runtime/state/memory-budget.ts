/**
 * How an instance's memory settings become each store's share.
 *
 * - RocksDB. The `rocksdb` binding opens every store with a block cache of its own (no cache can
 *   be shared between RocksDB instances through it) and keeps up to 2 memtables of
 *   `writeBufferSize` per instance (RocksDB's default `max_write_buffer_number`, which the binding
 *   does not expose). So the instance's budgets are split evenly over the RocksDB instances it can
 *   hold at most: persistent stores per task × tasks (the partition count: one instance may own
 *   every task). Then the budgets hold however the tasks are spread.
 * - Record caches. A store whose spec has `cacheMaxBytes` gets one `CacheBudget` per instance,
 *   shared by that store's caches in every task the instance holds (each keeps within an equal
 *   share; see `CacheBudget`).
 */
import { CacheBudget } from './caching-store.js';
import type { RocksDBStoreOptions } from './rocksdb-store.js';

/** RocksDB keeps up to this many memtables per instance (its default max_write_buffer_number). */
export const ROCKSDB_MEMTABLES_PER_STORE = 2;
/** the smallest memtable a store gets, however small the budget (RocksDB works poorly below) */
export const ROCKSDB_MIN_WRITE_BUFFER_BYTES = 256 * 1024;
/** the binding reads its sizes as unsigned 32-bit integers */
const UINT32_MAX = 0xffff_ffff;

export interface StoreMemoryOptions {
  /** block cache of all the instance's RocksDB stores together; undefined: the binding's 8 MiB per store */
  rocksdbCacheBytes?: number | undefined;
  /** memtables of all the instance's RocksDB stores together; undefined: the binding's 4 MiB (×2) per store */
  rocksdbWriteBufferBytes?: number | undefined;
}

/** The cache settings a store's stack is built with. */
export interface StoreCacheSettings {
  /** 0 with no budget: no cache; 0 with a budget: no entry bound */
  cacheMaxEntries: number;
  cacheBudget?: CacheBudget;
  cacheValueBytesFactor?: number;
}

export class StoreMemory {
  private readonly budgets = new Map<string, CacheBudget>();

  /** `maxTasks`: the most tasks this instance can hold (the partition count, known once started) */
  constructor(
    readonly opts: StoreMemoryOptions,
    private readonly maxTasks: () => number,
  ) {}

  /** RocksDB options of one store instance, for a topology with `persistentStores` RocksDB stores per task. */
  rocksdbOptions(persistentStores: number): RocksDBStoreOptions {
    const instances = Math.max(1, persistentStores) * Math.max(1, this.maxTasks());
    const out: RocksDBStoreOptions = {};
    const { rocksdbCacheBytes: cache, rocksdbWriteBufferBytes: wb } = this.opts;
    if (cache !== undefined) out.cacheSize = Math.min(UINT32_MAX, Math.floor(cache / instances));
    if (wb !== undefined)
      out.writeBufferSize = Math.min(
        UINT32_MAX,
        Math.max(ROCKSDB_MIN_WRITE_BUFFER_BYTES, Math.floor(wb / (instances * ROCKSDB_MEMTABLES_PER_STORE))),
      );
    return out;
  }

  /** The instance's byte budget of one store's caches (created on first use). */
  cacheBudget(store: string, maxBytes: number): CacheBudget {
    let b = this.budgets.get(store);
    if (b === undefined || b.maxBytes !== maxBytes) {
      b = new CacheBudget(maxBytes);
      this.budgets.set(store, b);
    }
    return b;
  }

  /** estimated bytes held by each store's caches on this instance */
  cacheUsage(): Map<string, number> {
    return new Map([...this.budgets].map(([k, b]) => [k, b.usedBytes()]));
  }
}

/**
 * A store's cache settings: `cacheMaxBytes` (a per-instance byte budget, shared through `memory`;
 * without `memory` each task's cache gets the whole of it) and/or `cacheMaxEntries` (per task; the
 * runtime's default when the spec sets neither). 0 for either disables the cache.
 */
export function storeCacheSettings(
  spec: { name: string; cacheMaxEntries?: number; cacheMaxBytes?: number; cacheValueBytesFactor?: number },
  defaultMaxEntries: number,
  memory: StoreMemory | undefined,
): StoreCacheSettings {
  if (spec.cacheMaxBytes === undefined) return { cacheMaxEntries: spec.cacheMaxEntries ?? defaultMaxEntries };
  if (spec.cacheMaxBytes === 0 || spec.cacheMaxEntries === 0) return { cacheMaxEntries: 0 };
  return {
    cacheMaxEntries: spec.cacheMaxEntries ?? 0,
    cacheBudget: memory ? memory.cacheBudget(spec.name, spec.cacheMaxBytes) : new CacheBudget(spec.cacheMaxBytes),
    ...(spec.cacheValueBytesFactor !== undefined ? { cacheValueBytesFactor: spec.cacheValueBytesFactor } : {}),
  };
}
