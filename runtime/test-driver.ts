/**
 * TopologyTestDriver (after Kafka Streams'): runs a Topology in-process, with no broker.
 *
 * It is not a second implementation of processing: it opens one TaskStateManager and one
 * StreamTask per partition, exactly as the engine does, and feeds the tasks raw records. Inputs
 * are serialized with the source serdes and deserialized again by the task (so serde failures,
 * dead letters and error policies behave as in production); every output, changelog write and
 * dead letter goes to one MemoryRecordCollector, read back through output topics.
 *
 *   const driver = await TopologyTestDriver.create(topology, { partitions: 2 });
 *   const input = driver.createInputTopic<string, Event>('events');
 *   await input.pipe('k1', event, 1000);            // resolves once the record is processed
 *   const out = driver.createOutputTopic<string, Decision>('decisions');
 *   expect(out.readValues()).toEqual([...]);
 *   expect(await driver.getStore<string, number>('counts', input.partitionFor('k1')).get('k1')).toBe(1);
 *   await driver.close();
 *
 * Differences from the engine, on purpose:
 *  - `maxTaskIdleMs` is 0 and no high watermark is known, so a task never waits: records are
 *    processed in the order they are piped (each `pipe` awaits its record).
 *  - Wall-clock time is the driver's own clock (`wallClockStart`, moved by
 *    `advanceWallClockTime`); it is also the default timestamp of piped records.
 *  - Global tables are fed by `pipeGlobal`, not read from a topic.
 *  - Stores start empty (in memory), or from what a previous driver left under `stateDir`
 *    (RocksDB, kept only if that driver was closed cleanly and wrote its checkpoint); there is
 *    no changelog to restore from.
 *  - A key-less record goes to partition 0 (Kafka would spread them).
 */
import { join } from 'node:path';
import { StreamsError, TopologyError } from './errors.js';
import { partitionForKey } from './partitioner.js';
import { MapGlobalTable, type Headers } from './processor.js';
import { MemoryRecordCollector, type OutgoingRecord } from './record-collector.js';
import type { Serde } from './serdes.js';
import { TaskStateManager } from './state-manager.js';
import type { KeyValueStore } from './state/store.js';
import { StreamTask, type ErrorPolicy, type RawRecord } from './task.js';
import type { GlobalTableSpec, ResolvedStore, Topology } from './topology.js';

export interface TopologyTestDriverOptions {
  /** default 'test-app'; prefixes internal changelog topics and the dead-letter topic */
  applicationId?: string;
  /** partitions of the co-partitioned source topics = number of tasks; default 1 */
  partitions?: number;
  /** RocksDB stores under `<stateDir>/<applicationId>/<taskId>/<store>`; default: everything in memory */
  stateDir?: string;
  /** write-back cache entries per store (unless the store sets its own); default 10000, as the engine */
  cacheMaxEntries?: number;
  /** default 'dlq' for both, as the engine */
  errorPolicy?: { deserialization?: ErrorPolicy; processing?: ErrorPolicy };
  /** default `<applicationId>-dlq` */
  dlqTopic?: string;
  /** stores read in one batch before each batch is processed; default as the engine: every cached store */
  prefetchStores?: readonly string[];
  /** the driver's wall clock at start (epoch ms); default 0 */
  wallClockStart?: number;
}

/** A record to pipe. `timestamp` defaults to the driver's wall clock, `partition` to murmur2 of the key bytes. */
export interface TestRecord<K, V> {
  key: K | null;
  value: V | null;
  timestamp?: number;
  headers?: Headers;
  partition?: number;
}

/** A record read from an output topic. */
export interface TestOutputRecord<K, V> {
  key: K | null;
  value: V | null;
  timestamp: number;
  headers: Headers | undefined;
  /** the partition the runtime chose; undefined = the producer's default partitioner (murmur2 of the key) */
  partition: number | undefined;
}

export interface DeadLetter {
  sourceTopic: string;
  partition: number;
  offset: number;
  code: string;
  message: string;
  /** 'deserialization' | 'processing' */
  kind: string;
  key: Buffer | null;
  value: Buffer | null;
}

export interface ChangelogRecord<K, V> {
  key: K;
  /** null = tombstone (delete) */
  value: V | null;
  partition: number | undefined;
}

/** Serdes to use instead of the topology's (e.g. a buffer serde to pipe bytes that do not decode). */
export interface SerdeOverride<K, V> {
  key?: Serde<K>;
  value?: Serde<V>;
}

export class TopologyTestDriver {
  readonly applicationId: string;
  readonly partitions: number;
  readonly dlqTopic: string;
  /** every record the tasks produced (outputs, changelogs, dead letters), in order */
  readonly collector = new MemoryRecordCollector();
  private readonly tasks: StreamTask[] = [];
  private readonly states: TaskStateManager[] = [];
  private readonly globals = new Map<string, MapGlobalTable<unknown, unknown>>();
  private readonly nextOffset = new Map<string, number>();
  private readonly stores: ResolvedStore[];
  private wallClock: number;
  private closed = false;

  private constructor(
    readonly topology: Topology,
    private readonly opts: TopologyTestDriverOptions,
  ) {
    this.applicationId = opts.applicationId ?? 'test-app';
    this.partitions = opts.partitions ?? 1;
    if (!Number.isSafeInteger(this.partitions) || this.partitions < 1)
      throw new StreamsError('BAD_PARTITIONS', `partitions must be an integer >= 1, got ${opts.partitions}`);
    this.dlqTopic = opts.dlqTopic ?? `${this.applicationId}-dlq`;
    this.wallClock = opts.wallClockStart ?? 0;
    this.stores = topology.resolvedStores(this.applicationId);
    for (const g of topology.globalTables.values()) this.globals.set(g.name, new MapGlobalTable());
  }

  /** Initialises every serde, opens the stores and initialises one task per partition. */
  static async create(topology: Topology, opts: TopologyTestDriverOptions = {}): Promise<TopologyTestDriver> {
    const driver = new TopologyTestDriver(topology, opts);
    try {
      await driver.start();
    } catch (e) {
      await driver.close().catch(() => undefined);
      throw e;
    }
    return driver;
  }

  private async start(): Promise<void> {
    const serdes = new Set<Serde<unknown>>();
    for (const n of this.topology.nodes.values()) {
      const s = n.source ?? n.sink ?? n.table;
      if (s) serdes.add(s.key).add(s.value);
    }
    for (const s of this.topology.stores.values()) serdes.add(s.key).add(s.value);
    for (const g of this.topology.globalTables.values()) serdes.add(g.key).add(g.value);
    for (const s of serdes) await s.init?.();

    const coPartitioned = new Set(this.topology.sourceTopics());
    const prefetchStores =
      this.opts.prefetchStores ??
      [...this.topology.stores.values()].filter((s) => s.prefetch && s.cacheMaxEntries !== 0).map((s) => s.name);
    for (let partition = 0; partition < this.partitions; partition++) {
      const taskId = `0_${partition}`;
      const state = new TaskStateManager({
        taskId,
        applicationId: this.applicationId,
        partition,
        taskDir: this.opts.stateDir === undefined ? undefined : join(this.opts.stateDir, this.applicationId, taskId),
        stores: this.stores,
        collector: this.collector,
        cacheMaxEntries: this.opts.cacheMaxEntries ?? 10_000,
      });
      // kept before opening, so close() releases what a failed start opened
      this.states.push(state);
      await state.open();
      // changelog records carry the timestamp of the record being processed, as in the engine
      const task: StreamTask = new StreamTask({
        applicationId: this.applicationId,
        partition,
        topology: this.topology,
        stores: state.storeMap(),
        globalTables: this.globals,
        collector: this.collector,
        coPartitioned,
        maxTaskIdleMs: 0,
        deserializationErrorPolicy: this.opts.errorPolicy?.deserialization ?? 'dlq',
        processingErrorPolicy: this.opts.errorPolicy?.processing ?? 'dlq',
        dlqTopic: this.dlqTopic,
        prefetchStores,
        withoutChangelog: (fn) => state.withoutChangelog(fn),
        now: () => this.wallClock,
      });
      state.timestamp = () => (task.currentTimestamp >= 0 ? task.currentTimestamp : this.wallClock);
      this.tasks.push(task);
      await task.init();
    }
  }

  /** The driver's wall clock (epoch ms). */
  now(): number {
    return this.wallClock;
  }

  /** The partition (task) a key goes to: murmur2 of the key bytes, as Kafka's default partitioner. */
  partitionFor(keyBytes: Buffer | string): number {
    return partitionForKey(keyBytes, this.partitions);
  }

  /** An input topic: one of the topology's source or table topics. */
  createInputTopic<K, V>(topic: string, serdes: SerdeOverride<K, V> = {}): TestInputTopic<K, V> {
    const node = this.topology.sourceNodeFor(topic);
    const spec = (node.source ?? node.table)!;
    return new TestInputTopic<K, V>(
      this,
      topic,
      (serdes.key ?? spec.key) as Serde<K>,
      (serdes.value ?? spec.value) as Serde<V>,
      spec.key,
      spec.value,
    );
  }

  /** An output topic: a sink topic of the topology (its serdes), or any topic with explicit serdes. */
  createOutputTopic<K, V>(topic: string, serdes: SerdeOverride<K, V> = {}): TestOutputTopic<K, V> {
    const sink = [...this.topology.nodes.values()].find((n) => n.sink?.topic === topic)?.sink;
    const key = serdes.key ?? (sink?.key as Serde<K> | undefined);
    const value = serdes.value ?? (sink?.value as Serde<V> | undefined);
    if (!key || !value)
      throw new TopologyError('UNKNOWN_SINK', `no sink writes topic ${topic}: pass its serdes to createOutputTopic`);
    return new TestOutputTopic<K, V>(this.collector, topic, key, value);
  }

  /** @internal used by TestInputTopic: serialize-side work is done, hand the raw record to its task. */
  async enqueue(
    topic: string,
    partition: number,
    records: RawRecord[],
    keySerde: Serde<unknown>,
    valueSerde: Serde<unknown>,
  ): Promise<void> {
    this.checkOpen();
    const task = this.taskFor(partition);
    // a task stopped by a 'fail' policy stays stopped, as the engine does
    const failure = task.failure();
    if (failure !== undefined) throw failure;
    // as the engine does once per fetched batch, so serdes that look up writer schemas are warm
    if (valueSerde.prepare) await valueSerde.prepare(records.map((r) => r.value));
    if (keySerde.prepare) await keySerde.prepare(records.map((r) => r.key));
    await task.enqueue(topic, records);
    // enqueue resolves as the last record is released, possibly before the batch's end
    await task.quiesce();
  }

  /** @internal next offset of a source topic partition */
  takeOffsets(topic: string, partition: number, count: number): number {
    const k = `${topic}:${partition}`;
    const first = this.nextOffset.get(k) ?? 0;
    this.nextOffset.set(k, first + count);
    return first;
  }

  /** Dead letters written so far (not consumed by reading). */
  deadLetters(): DeadLetter[] {
    const h = (r: OutgoingRecord, name: string): string => {
      const v = r.headers?.[name];
      return v === undefined ? '' : v.toString();
    };
    return this.collector.records
      .filter((r) => r.topic === this.dlqTopic)
      .map((r) => ({
        sourceTopic: h(r, 'dlq.source.topic'),
        partition: Number(h(r, 'dlq.source.partition')),
        offset: Number(h(r, 'dlq.source.offset')),
        code: h(r, 'dlq.error.code'),
        message: h(r, 'dlq.error.message'),
        kind: h(r, 'dlq.error.kind'),
        key: r.key,
        value: r.value,
      }));
  }

  /** A task's store, as processors see it (cache included). */
  getStore<K, V>(name: string, partition = 0): KeyValueStore<K, V> {
    this.taskFor(partition);
    const s = this.states[partition]!.stores.get(name);
    if (!s) throw new TopologyError('UNKNOWN_STORE', `store ${name} is not declared`);
    return s.store as KeyValueStore<K, V>;
  }

  /**
   * Sets (or, with a null value, deletes) a key of a global table. The key and value go through
   * the table's serdes and back, as if read from its topic.
   */
  async pipeGlobal<K, V>(tableName: string, key: K, value: V | null): Promise<void> {
    this.checkOpen();
    const table = this.globals.get(tableName);
    const spec = this.topology.globalTables.get(tableName) as GlobalTableSpec<K, V> | undefined;
    if (!table || !spec) throw new TopologyError('UNKNOWN_GLOBAL_TABLE', `global table ${tableName} is not declared`);
    const keyBytes = spec.key.serialize(spec.topic, key);
    const valueBytes = value === null ? null : spec.value.serialize(spec.topic, value);
    await spec.key.prepare?.([keyBytes]);
    await spec.value.prepare?.([valueBytes]);
    const k = spec.key.deserialize(spec.topic, keyBytes);
    if (valueBytes === null) table.map.delete(k);
    else table.map.set(k, spec.value.deserialize(spec.topic, valueBytes));
  }

  /** Moves the wall clock forward and runs the wall-clock punctuations that are due, task by task. */
  async advanceWallClockTime(ms: number): Promise<void> {
    this.checkOpen();
    if (!(ms >= 0)) throw new StreamsError('BAD_TIME', `cannot move the wall clock by ${ms} ms`);
    this.wallClock += ms;
    for (const task of this.tasks) {
      await task.quiesce();
      await task.punctuateWallClock(this.wallClock);
    }
  }

  /**
   * What a commit does: flushes every store (caches write down, changelog records reach the
   * collector) and, with a stateDir, writes each task's checkpoint.
   */
  async flush(): Promise<void> {
    this.checkOpen();
    for (const task of this.tasks) await task.quiesce();
    for (const task of this.tasks) await task.flushStores();
    await this.collector.flush();
    for (const state of this.states) await state.checkpoint();
    for (const task of this.tasks) task.processedSinceCommit = 0;
  }

  /**
   * Changelog records of a store written so far (not consumed by reading), decoded with the
   * store's serdes. With a cache, writes reach the changelog on `flush()` (or on eviction).
   */
  changelog<K, V>(storeName: string): ChangelogRecord<K, V>[] {
    const r = this.stores.find((s) => s.spec.name === storeName);
    if (!r) throw new TopologyError('UNKNOWN_STORE', `store ${storeName} is not declared`);
    const topic = r.changelogTopic;
    if (!topic) return [];
    const key = r.spec.key as Serde<K>;
    const value = r.spec.value as Serde<V>;
    return this.collector.records
      .filter((x) => x.topic === topic)
      .map((x) => ({
        key: key.deserialize(topic, x.key!),
        value: x.value === null ? null : value.deserialize(topic, x.value),
        partition: x.partition,
      }));
  }

  /**
   * Closes the tasks and the stores. Unless a task failed, flushes (and checkpoints) first, as a
   * clean shutdown does, so a new driver on the same stateDir finds the state.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const healthy = this.tasks.length === this.partitions && this.tasks.every((t) => t.failure() === undefined);
    if (healthy) {
      try {
        for (const task of this.tasks) await task.quiesce();
        for (const task of this.tasks) await task.flushStores();
        for (const state of this.states) await state.checkpoint();
      } catch {
        // a failing flush leaves the state unclean: no checkpoint, the next open starts empty
      }
    }
    for (const task of this.tasks) await task.close().catch(() => undefined);
    for (const state of this.states) await state.close();
  }

  private taskFor(partition: number): StreamTask {
    const task = this.tasks[partition];
    if (!task) throw new StreamsError('BAD_PARTITION', `partition ${partition} is not in [0, ${this.partitions})`);
    return task;
  }

  private checkOpen(): void {
    if (this.closed) throw new StreamsError('DRIVER_CLOSED', 'the test driver is closed');
  }
}

export class TestInputTopic<K, V> {
  /** @internal */
  constructor(
    private readonly driver: TopologyTestDriver,
    readonly topic: string,
    private readonly keySerde: Serde<K>,
    private readonly valueSerde: Serde<V>,
    private readonly sourceKeySerde: Serde<unknown>,
    private readonly sourceValueSerde: Serde<unknown>,
  ) {}

  /** The partition a key goes to (murmur2 of the serialized key; 0 for a null key). */
  partitionFor(key: K | null): number {
    return key === null ? 0 : this.driver.partitionFor(this.keySerde.serialize(this.topic, key));
  }

  /** Serializes, enqueues into the key's task and resolves once the record is processed. */
  pipe(key: K | null, value: V | null, timestamp?: number, headers?: Headers): Promise<void> {
    const r: TestRecord<K, V> = { key, value };
    if (timestamp !== undefined) r.timestamp = timestamp;
    if (headers !== undefined) r.headers = headers;
    return this.pipeAll([r]);
  }

  /**
   * Pipes records in order. Consecutive records for the same partition are enqueued as one batch
   * (decoded and prefetched together, as a fetched batch is).
   */
  async pipeAll(records: readonly TestRecord<K, V>[]): Promise<void> {
    let run: RawRecord[] = [];
    let runPartition = -1;
    const flush = async (): Promise<void> => {
      if (!run.length) return;
      const batch = run;
      run = [];
      const first = this.driver.takeOffsets(this.topic, runPartition, batch.length);
      batch.forEach((r, i) => (r.offset = first + i));
      await this.driver.enqueue(this.topic, runPartition, batch, this.sourceKeySerde, this.sourceValueSerde);
    };
    for (const rec of records) {
      const key = rec.key === null ? null : this.keySerde.serialize(this.topic, rec.key);
      const value = rec.value === null ? null : this.valueSerde.serialize(this.topic, rec.value);
      const partition = rec.partition ?? (key === null ? 0 : this.driver.partitionFor(key));
      if (partition !== runPartition) await flush();
      runPartition = partition;
      const raw: RawRecord = { key, value, timestamp: rec.timestamp ?? this.driver.now(), offset: -1 };
      if (rec.headers) raw.headers = { ...rec.headers };
      run.push(raw);
    }
    await flush();
  }
}

export class TestOutputTopic<K, V> {
  private position = 0;

  /** @internal */
  constructor(
    private readonly collector: MemoryRecordCollector,
    readonly topic: string,
    private readonly keySerde: Serde<K>,
    private readonly valueSerde: Serde<V>,
  ) {}

  /** Records written since the last read, deserialized with the sink serdes; consumes them. */
  readRecords(): TestOutputRecord<K, V>[] {
    const all = this.collector.records;
    const out: TestOutputRecord<K, V>[] = [];
    for (; this.position < all.length; this.position++) {
      const r = all[this.position]!;
      if (r.topic !== this.topic) continue;
      out.push({
        key: r.key === null ? null : this.keySerde.deserialize(this.topic, r.key),
        value: r.value === null ? null : this.valueSerde.deserialize(this.topic, r.value),
        timestamp: r.timestamp,
        headers: r.headers,
        partition: r.partition,
      });
    }
    return out;
  }

  readValues(): (V | null)[] {
    return this.readRecords().map((r) => r.value);
  }

  readKeyValues(): [K | null, V | null][] {
    return this.readRecords().map((r) => [r.key, r.value]);
  }

  /** No record written since the last read (does not consume). */
  isEmpty(): boolean {
    const all = this.collector.records;
    for (let i = this.position; i < all.length; i++) if (all[i]!.topic === this.topic) return false;
    return true;
  }
}
