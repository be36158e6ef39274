/**
 * KafkaStreams: runs a Topology as one member of a consumer group (the application id).
 *
 * Lifecycle states and the transitions allowed between them:
 *
 *   CREATED ──start──> STARTING ──joined──> REBALANCING ──restored──> RUNNING
 *                                               ^  |                     |
 *                                               |  └──── rebalance ──────┘
 *   any ──close──> PENDING_SHUTDOWN ──> NOT_RUNNING;   a fatal error ──> ERROR ──close──> ...
 *
 * Tasks: one per partition number of the co-partitioned source topics, assigned with the
 * co-partitioning sticky assignor. A task is opened and restored when assigned, processes only
 * while owned, and is closed (its state kept on disk) when revoked.
 */
import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaConfig, Producer } from 'kafkajs';
import { AssignerProtocol, Kafka as KafkaClient } from 'kafkajs';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { coPartitionedAssigner, decodeMemberInfo, type MemberInfo } from './assignor.js';
import { kafkaSecurity, type StreamsConfig } from './config.js';
import { IllegalStateError, StreamsError, TopologyError } from './errors.js';
import { RuntimeMetrics } from './metrics.js';
import { endOffsets, followTopics, readRanges, toRawRecord } from './partition-reader.js';
import { partitionForKey } from './partitioner.js';
import { withRetries } from './retry.js';
import { kafkaClientLogLevel, kafkaLogCreator } from './kafka-log.js';
import { MapGlobalTable, type GlobalTableView } from './processor.js';
import { KafkaRecordCollector } from './record-collector.js';
import { TaskStateManager, type RestoreSource } from './state-manager.js';
import type { KeyValueStore } from './state/store.js';
import { StreamTask } from './task.js';
import type { Topology } from './topology.js';

export type StreamsState =
  'CREATED' | 'STARTING' | 'REBALANCING' | 'RUNNING' | 'PENDING_SHUTDOWN' | 'NOT_RUNNING' | 'ERROR';

const TRANSITIONS: Record<StreamsState, readonly StreamsState[]> = {
  CREATED: ['STARTING', 'PENDING_SHUTDOWN'],
  STARTING: ['REBALANCING', 'PENDING_SHUTDOWN', 'ERROR'],
  REBALANCING: ['REBALANCING', 'RUNNING', 'PENDING_SHUTDOWN', 'ERROR'],
  RUNNING: ['REBALANCING', 'PENDING_SHUTDOWN', 'ERROR'],
  PENDING_SHUTDOWN: ['NOT_RUNNING', 'ERROR'],
  NOT_RUNNING: [],
  ERROR: ['PENDING_SHUTDOWN'],
};

interface TaskHandle {
  partition: number;
  task?: StreamTask;
  state?: TaskStateManager;
  ready: Promise<StreamTask | undefined>;
  closed: boolean;
}

export interface KafkaStreamsOptions {
  logger?: Logger;
  metrics?: RuntimeMetrics;
  /** called whenever the state changes */
  onStateChange?: (to: StreamsState, from: StreamsState) => void;
  /** a kafkajs client to use instead of one built from the config */
  kafka?: Kafka;
}

export interface RestoreStatus {
  task: string;
  store: string;
  restored: number;
  remaining: number;
}

export class KafkaStreams {
  readonly metrics: RuntimeMetrics;
  readonly logger: Logger;
  private _state: StreamsState = 'CREATED';
  private readonly kafka: Kafka;
  private consumer: Consumer | undefined;
  /** one admin client for the instance's metadata look-ups (end offsets, group description) */
  private admin: Admin | undefined;
  private producer: Producer | undefined;
  private collector: KafkaRecordCollector | undefined;
  private readonly tasks = new Map<number, TaskHandle>();
  private readonly globals = new Map<string, MapGlobalTable<unknown, unknown>>();
  private readonly globalReaders: { stop(): Promise<void> }[] = [];
  private partitionCount = 0;
  private lastCommit = Date.now();
  private committing: Promise<void> | undefined;
  private fatal: unknown;
  private wallClockTimer: NodeJS.Timeout | undefined;
  private readonly restoreStatus = new Map<string, RestoreStatus>();
  private readonly coPartitioned: Set<string>;
  private readonly prefetchStores: string[];
  private readonly tableTopics: Set<string>;

  constructor(
    readonly topology: Topology,
    readonly config: StreamsConfig,
    private readonly opts: KafkaStreamsOptions = {},
  ) {
    this.logger = opts.logger ?? pino({ level: 'info' });
    this.metrics = opts.metrics ?? new RuntimeMetrics();
    this.kafka =
      opts.kafka ??
      new KafkaClient({
        clientId: `${config.clientId}-${config.instanceId}`,
        brokers: [...config.brokers],
        connectionTimeout: config.connectionTimeoutMs,
        logLevel: kafkaClientLogLevel(this.logger),
        logCreator: kafkaLogCreator(this.logger),
        ...(kafkaSecurity(config) as Pick<KafkaConfig, 'ssl' | 'sasl'>),
      });
    this.coPartitioned = new Set(topology.sourceTopics());
    this.tableTopics = new Set([...topology.nodes.values()].flatMap((n) => (n.table ? [n.table.topic] : [])));
    this.prefetchStores = [...topology.stores.values()]
      .filter((s) => s.prefetch && s.cacheMaxEntries !== 0)
      .map((s) => s.name);
    this.metrics.state.set({ state: 'CREATED' }, 1);
  }

  private advertised: string | undefined;

  /** The URL other instances use to reach this one (set before start when the port is dynamic). */
  setAdvertisedUrl(url: string): void {
    if (this._state !== 'CREATED') throw new IllegalStateError('the advertised URL must be set before start');
    this.advertised = url;
  }

  get state(): StreamsState {
    return this._state;
  }

  private transition(to: StreamsState): void {
    const from = this._state;
    if (from === to && to !== 'REBALANCING') return;
    if (!TRANSITIONS[from].includes(to)) throw new IllegalStateError(`illegal transition ${from} -> ${to}`);
    this._state = to;
    this.metrics.state.set({ state: from }, 0);
    this.metrics.state.set({ state: to }, 1);
    this.logger.info({ from, to, instance: this.config.instanceId }, 'state change');
    this.opts.onStateChange?.(to, from);
  }

  /** Ready: running, every assigned task restored, every global table caught up. */
  isReady(): boolean {
    return this._state === 'RUNNING';
  }

  restoreProgress(): RestoreStatus[] {
    return [...this.restoreStatus.values()];
  }

  assignedTasks(): number[] {
    return [...this.tasks.keys()].sort((a, b) => a - b);
  }

  numPartitions(): number {
    return this.partitionCount;
  }

  kafkaClient(): Kafka {
    return this.kafka;
  }

  // -------------------------------------------------------------------------------------------
  // start

  async start(): Promise<void> {
    this.transition('STARTING');
    try {
      this.admin = this.kafka.admin();
      await this.admin.connect();
      await withRetries('checking topics', () => this.prepareTopics(), {
        onRetry: (e) => this.logger.warn({ err: (e as Error).message }, 'topic check failed, retrying'),
      });
      await this.initSerdes();
      this.producer = this.kafka.producer({ allowAutoTopicCreation: false, retry: { retries: 10 } });
      await this.producer.connect();
      this.collector = new KafkaRecordCollector({
        producer: this.producer,
        onSent: (n, ms) => {
          this.metrics.recordsProduced.inc(n);
          this.metrics.produceLatency.observe(ms / 1000);
        },
      });
      await this.startGlobalTables();
      await this.startConsumer();
      this.wallClockTimer = setInterval(() => void this.tick(), 1000);
      this.wallClockTimer.unref();
    } catch (e) {
      this.fatal = e;
      if (this._state !== 'ERROR') this.transition('ERROR');
      await this.shutdownClients();
      throw e;
    }
  }

  /** Checks sources exist and are co-partitioned; creates internal topics. */
  private async prepareTopics(): Promise<void> {
    const admin = this.admin!;
    const existing = new Set(await admin.listTopics());
    const sources = this.topology.sourceTopics();
    const missing = [
      ...sources,
      ...this.topology.sinkTopics(),
      ...[...this.topology.globalTables.values()].map((g) => g.topic),
    ].filter((t) => !existing.has(t));
    if (missing.length)
      throw new TopologyError(
        'MISSING_TOPICS',
        `topics do not exist: ${[...new Set(missing)].join(', ')} (create them first, e.g. with "um topics create")`,
      );
    const md = await admin.fetchTopicMetadata({ topics: sources });
    const counts = md.topics.map((t) => [t.name, t.partitions.length] as const);
    const distinct = new Set(counts.map(([, n]) => n));
    if (distinct.size > 1)
      throw new TopologyError(
        'NOT_COPARTITIONED',
        `co-partitioned topics must have the same number of partitions: ${counts.map(([t, n]) => `${t}=${n}`).join(', ')}`,
      );
    this.partitionCount = counts[0]![1];
    const toCreate = this.topology
      .resolvedStores(this.config.applicationId)
      .filter((s) => s.changelogTopic && !s.sourceChangelog && !existing.has(s.changelogTopic))
      .map((s) => ({
        topic: s.changelogTopic!,
        numPartitions: this.partitionCount,
        replicationFactor: this.config.replicationFactor,
        configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
      }));
    if (!existing.has(this.config.dlqTopic))
      toCreate.push({
        topic: this.config.dlqTopic,
        numPartitions: this.partitionCount,
        replicationFactor: this.config.replicationFactor,
        configEntries: [{ name: 'cleanup.policy', value: 'delete' }],
      });
    if (toCreate.length) {
      await admin.createTopics({ topics: toCreate, waitForLeaders: true }).catch((e: Error) => {
        if (!/already exists/i.test(e.message)) throw e;
      });
    }
    // existing changelogs must match too
    const changelogs = this.topology
      .resolvedStores(this.config.applicationId)
      .flatMap((s) => (s.changelogTopic && !s.sourceChangelog ? [s.changelogTopic] : []));
    if (changelogs.length) {
      const cmd = await admin.fetchTopicMetadata({ topics: changelogs });
      for (const t of cmd.topics)
        if (t.partitions.length !== this.partitionCount)
          throw new TopologyError(
            'NOT_COPARTITIONED',
            `changelog ${t.name} has ${t.partitions.length} partitions, the sources have ${this.partitionCount}`,
          );
    }
  }

  private async initSerdes(): Promise<void> {
    const serdes = new Set<{ init?(): Promise<void> }>();
    for (const n of this.topology.nodes.values()) {
      const s = n.source ?? n.sink ?? n.table;
      if (s) {
        serdes.add(s.key);
        serdes.add(s.value);
      }
    }
    for (const s of this.topology.stores.values()) {
      serdes.add(s.key);
      serdes.add(s.value);
    }
    for (const g of this.topology.globalTables.values()) {
      serdes.add(g.key);
      serdes.add(g.value);
    }
    for (const s of serdes) await s.init?.();
  }

  private async startGlobalTables(): Promise<void> {
    const readies: Promise<void>[] = [];
    for (const spec of this.topology.globalTables.values()) {
      const table = new MapGlobalTable<unknown, unknown>();
      this.globals.set(spec.name, table);
      const reader = await followTopics(
        this.kafka,
        `${this.config.applicationId}-global-${this.config.instanceId}`,
        [spec.topic],
        async (topic, _p, records) => {
          await spec.value.prepare?.(records.map((r) => r.value));
          for (const r of records) {
            if (r.key === null) continue;
            try {
              const key = spec.key.deserialize(topic, r.key);
              if (r.value === null) table.map.delete(key);
              else table.map.set(key, spec.value.deserialize(topic, r.value));
            } catch (e) {
              this.metrics.deadLetters.inc({
                topic,
                code: e instanceof StreamsError ? e.code : 'DESERIALIZATION_FAILED',
              });
              this.logger.warn(
                { topic, offset: r.offset, code: (e as StreamsError).code },
                'global table record skipped',
              );
            }
          }
        },
      );
      this.globalReaders.push(reader);
      readies.push(reader.ready);
    }
    await Promise.all(readies);
    if (readies.length) this.logger.info({ tables: [...this.globals.keys()] }, 'global tables caught up');
  }

  private memberInfo(): MemberInfo {
    const owned = [...this.tasks.keys()];
    const stateful: number[] = [];
    const appDir = join(this.config.stateDir, this.config.applicationId);
    if (existsSync(appDir)) {
      for (const d of readdirSync(appDir)) {
        const m = /^0_(\d+)$/.exec(d);
        if (m && existsSync(join(appDir, d, '.checkpoint'))) stateful.push(Number(m[1]));
      }
    }
    return { endpoint: this.advertised ?? this.config.advertisedUrl, owned, stateful };
  }

  private async startConsumer(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: this.config.applicationId,
      partitionAssigners: [coPartitionedAssigner(() => this.memberInfo())],
      sessionTimeout: this.config.sessionTimeoutMs,
      heartbeatInterval: this.config.heartbeatIntervalMs,
      rebalanceTimeout: this.config.rebalanceTimeoutMs,
      maxBytesPerPartition: 2 * 1024 * 1024,
      maxWaitTimeInMs: 100,
      allowAutoTopicCreation: false,
      retry: { retries: 10 },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.REBALANCING, () => {
      this.metrics.rebalances.inc();
      if (this._state === 'RUNNING') this.transition('REBALANCING');
      // best effort: commit what is processed before the group moves partitions
      void this.commit('rebalance').catch(() => undefined);
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => this.onAssignment(e.payload.memberAssignment));
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart) void this.die(e.payload.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: this.topology.sourceTopics(), fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: true,
      partitionsConsumedConcurrently: this.config.partitionsConsumedConcurrently,
      eachBatch: (payload) => this.onBatch(payload),
    });
    if (this._state === 'STARTING') this.transition('REBALANCING');
  }

  // -------------------------------------------------------------------------------------------
  // assignment

  private onAssignment(assignment: Record<string, number[]>): void {
    if (this._state === 'PENDING_SHUTDOWN' || this._state === 'NOT_RUNNING') return;
    if (this._state === 'STARTING' || this._state === 'RUNNING') this.transition('REBALANCING');
    const now = new Set<number>();
    for (const topic of this.topology.sourceTopics()) for (const p of assignment[topic] ?? []) now.add(p);
    const revoked = [...this.tasks.keys()].filter((p) => !now.has(p));
    const added = [...now].filter((p) => !this.tasks.has(p));
    this.logger.info(
      { instance: this.config.instanceId, tasks: [...now].sort((a, b) => a - b), added, revoked },
      'assignment',
    );
    for (const p of revoked) {
      const h = this.tasks.get(p)!;
      this.tasks.delete(p);
      void this.closeTask(h);
    }
    // kafkajs restarts every partition at the group's committed offset after a rebalance; a task
    // kept here goes on from where it is instead (its processed and buffered records are its own)
    for (const p of now) {
      const task = this.tasks.get(p)?.task;
      if (!task) continue;
      for (const [topic, offset] of task.fetchPositions())
        this.consumer?.seek({ topic, partition: p, offset: String(offset) });
    }
    for (const p of added) {
      const h: TaskHandle = { partition: p, ready: Promise.resolve(undefined), closed: false };
      h.ready = this.openTask(h).catch((e) => {
        void this.die(e);
        return undefined;
      });
      this.tasks.set(p, h);
    }
    this.metrics.assignedTasks.set(now.size);
    void Promise.all([...this.tasks.values()].map((h) => h.ready)).then(() => {
      if (this._state === 'REBALANCING' && [...this.tasks.values()].every((h) => h.task || h.closed))
        this.transition('RUNNING');
    });
  }

  private restoreSource(taskId: string): RestoreSource {
    return {
      endOffset: async (topic, partition) => (await endOffsets(this.admin!, [topic])).get(`${topic}:${partition}`) ?? 0,
      read: (ranges, onRecords) =>
        readRanges(this.kafka, `${this.config.applicationId}-restore-${taskId}`, ranges, (range, records) =>
          onRecords(range.topic, records),
        ),
    };
  }

  private async openTask(h: TaskHandle): Promise<StreamTask | undefined> {
    const taskId = `0_${h.partition}`;
    const state = new TaskStateManager({
      taskId,
      partition: h.partition,
      taskDir: join(this.config.stateDir, this.config.applicationId, taskId),
      stores: this.topology.resolvedStores(this.config.applicationId),
      collector: this.collector!,
      cacheMaxEntries: this.config.cacheMaxEntries,
      metrics: { opLatency: this.metrics.storeOpLatency },
      logger: this.logger,
    });
    h.state = state;
    const t0 = Date.now();
    const { wiped } = await state.open();
    const restored = await state.restore(this.restoreSource(taskId), (p) => {
      this.restoreStatus.set(`${p.taskId}/${p.store}`, {
        task: p.taskId,
        store: p.store,
        restored: (this.restoreStatus.get(`${p.taskId}/${p.store}`)?.restored ?? 0) + p.restored,
        remaining: p.remaining,
      });
      this.metrics.restoreRecords.inc({ store: p.store }, p.restored);
      this.metrics.restoreRemaining.set({ store: p.store, task: p.taskId }, p.remaining);
    });
    if (h.closed) {
      await state.close();
      return undefined;
    }
    const ms = Date.now() - t0;
    this.logger.info(
      { task: taskId, restored, wiped, ms, recordsPerSec: ms ? Math.round((restored * 1000) / ms) : restored },
      'task restored',
    );
    const task = new StreamTask({
      applicationId: this.config.applicationId,
      partition: h.partition,
      topology: this.topology,
      stores: state.storeMap(),
      globalTables: this.globals,
      collector: this.collector!,
      coPartitioned: this.coPartitioned,
      maxTaskIdleMs: this.config.maxTaskIdleMs,
      deserializationErrorPolicy: this.config.deserializationErrorPolicy,
      processingErrorPolicy: this.config.processingErrorPolicy,
      dlqTopic: this.config.dlqTopic,
      prefetchStores: this.prefetchStores,
      withoutChangelog: (fn) => state.withoutChangelog(fn),
      maxBatchRecords: this.config.maxBatchRecords,
      onDeadLetter: (topic, code) => {
        this.metrics.deadLetters.inc({ topic, code });
        this.logger.warn({ task: taskId, topic, code }, 'record sent to the dead-letter topic');
      },
      onProcessed: (n, s) => {
        this.metrics.recordsProcessed.inc({ task: taskId }, n);
        this.metrics.processLatency.observe({ task: taskId }, s);
      },
    });
    state.timestamp = () => (task.currentTimestamp >= 0 ? task.currentTimestamp : Date.now());
    await this.positionTask(task, state);
    await task.init();
    h.task = task;
    return task;
  }

  /** Committed offsets and high watermarks of the task's source partitions. */
  private async positionTask(task: StreamTask, state: TaskStateManager): Promise<void> {
    const admin = this.admin!;
    const topics = this.topology.sourceTopics();
    const committed = await admin.fetchOffsets({ groupId: this.config.applicationId, topics });
    for (const topic of topics) {
      const ends = await admin.fetchTopicOffsets(topic);
      const end = ends.find((e) => e.partition === task.partition);
      const c = committed.find((t) => t.topic === topic)?.partitions.find((p) => p.partition === task.partition);
      let offset = c ? Number(c.offset) : -1;
      // a table's topic is its store's changelog: with no committed offset, consumption starts
      // where the restore ended instead of reading the whole table a second time
      const restoredTo = this.tableTopics.has(topic) ? state.position(topic) : undefined;
      if (offset < 0 && restoredTo !== undefined && restoredTo > 0) {
        offset = restoredTo;
        this.consumer?.seek({ topic, partition: task.partition, offset: String(restoredTo) });
      }
      // without a committed offset the group starts at the log start (fromBeginning)
      task.setPosition(topic, offset >= 0 ? offset : Number(end?.low ?? 0), Number(end?.high ?? 0));
    }
  }

  /** Closes a revoked task. Clean (flushed, checkpointed) if nothing was processed since the last commit. */
  private async closeTask(h: TaskHandle): Promise<void> {
    h.closed = true;
    const task = await h.ready;
    if (!task) return;
    const clean = task.processedSinceCommit === 0;
    await task.close();
    if (!clean)
      this.logger.warn(
        { task: task.id },
        'task revoked with uncommitted records: closed without flushing (they will be reprocessed by the new owner)',
      );
    await h.state?.close();
  }

  // -------------------------------------------------------------------------------------------
  // processing

  private async onBatch({ batch, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const h = this.tasks.get(batch.partition);
    if (!h || h.closed || !isRunning() || isStale()) return;
    let task = h.task;
    if (!task) {
      task = await this.waitWithHeartbeat(h.ready, heartbeat);
      // a seek made while the task was restoring (a table starting where its restore ended)
      // makes this batch stale
      if (!task || h.closed || isStale()) return;
    }
    const records = batch.messages.map(toRawRecord);
    this.metrics.recordsConsumed.inc({ topic: batch.topic }, records.length);
    const src = this.topology.sourceNodeFor(batch.topic);
    const spec = src.source ?? src.table!;
    if (spec.value.prepare) await spec.value.prepare(records.map((r) => r.value));
    if (spec.key.prepare) await spec.key.prepare(records.map((r) => r.key));
    if (h.closed) return;
    try {
      await this.waitWithHeartbeat(task.enqueue(batch.topic, records, Number(batch.highWatermark)), heartbeat);
    } catch (e) {
      // a task that failed (the `fail` error policy, or a store error) stops the instance
      if (task.failure() !== undefined) void this.die(task.failure());
      throw e;
    }
    const last = records[records.length - 1];
    if (last)
      this.metrics.consumerLag.set(
        { topic: batch.topic, partition: String(batch.partition) },
        Math.max(0, Number(batch.highWatermark) - last.offset - 1),
      );
    if (Date.now() - this.lastCommit >= this.config.commitIntervalMs) await this.commit('interval');
    try {
      await heartbeat();
    } catch (e) {
      // the group is rebalancing: commit what we have while our generation is still valid
      await this.commit('rebalance').catch(() => undefined);
      throw e;
    }
  }

  private async waitWithHeartbeat<T>(p: Promise<T>, heartbeat: () => Promise<void>): Promise<T> {
    let done = false;
    const wrapped = p.finally(() => {
      done = true;
    });
    for (;;) {
      const r = await Promise.race([
        wrapped.then(() => 'done' as const),
        new Promise<'tick'>((res) => setTimeout(() => res('tick'), 1000)),
      ]);
      if (r === 'done' || done) return wrapped;
      await heartbeat();
    }
  }

  private async tick(): Promise<void> {
    for (const h of this.tasks.values()) {
      if (!h.task || h.closed) continue;
      try {
        await h.task.punctuateWallClock();
      } catch (e) {
        void this.die(e);
      }
    }
    // commit processed work even when no new batch arrives
    if (this._state === 'RUNNING' && Date.now() - this.lastCommit >= this.config.commitIntervalMs) {
      await this.commit('interval').catch((e) => this.logger.warn({ err: (e as Error).message }, 'commit failed'));
    }
  }

  /**
   * The commit protocol (at-least-once). The steps, in this order:
   *   1. pause every task at a batch boundary (no record half-processed);
   *   2. take each task's next input offsets: everything before them is processed;
   *   3. flush every task's stores: caches write down to RocksDB, changes go to the changelogs;
   *      note the record collector's position: every output and changelog record of the
   *      processing covered by step 2 was handed to it before this point;
   *   4. resume the tasks (what they do next is not part of this commit);
   *   5. wait until the collector has every record before that position acknowledged by the
   *      brokers (acks=all);
   *   6. write each task's checkpoint file (changelog offsets acknowledged, all of them in the
   *      local stores, since a store writes RocksDB before it logs a change);
   *   7. commit the offsets of step 2 to the group coordinator.
   * A crash between any two steps loses nothing: the offsets of step 7 are only ever committed
   * after everything they cover is durable in Kafka, so the worst case is reprocessing.
   */
  async commit(reason: 'interval' | 'rebalance' | 'shutdown' | 'manual' = 'manual'): Promise<void> {
    if (this.committing) return this.committing;
    if (!this.consumer || !this.collector) return;
    const run = async (): Promise<void> => {
      const t0 = performance.now();
      const handles = [...this.tasks.values()].filter((h) => h.task && !h.closed);
      const offsets: { topic: string; partition: number; offset: string }[] = [];
      let position: number;
      // 1.
      for (const h of handles) h.task!.pause();
      try {
        for (const h of handles) await h.task!.quiesce();
        // 2.
        for (const h of handles)
          for (const [topic, offset] of h.task!.committableOffsets())
            offsets.push({ topic, partition: h.partition, offset: String(offset) });
        // 3.
        for (const h of handles) await h.task!.flushStores();
        position = this.collector!.mark();
        // (the caches are clean now, so counting entries costs no extra flush)
        for (const h of handles)
          for (const [name, st] of h.state!.stores)
            this.metrics.storeEntries.set({ store: name, task: h.task!.id }, await st.store.approximateNumEntries());
        for (const h of handles) h.task!.processedSinceCommit = 0;
      } finally {
        // 4.
        for (const h of handles) h.task!.resume();
      }
      // 5.
      await this.collector!.flushUpTo(position);
      // 6.
      for (const h of handles) if (!h.closed) await h.state!.checkpoint();
      // 7.
      if (offsets.length) await this.consumer!.commitOffsets(offsets);
      this.lastCommit = Date.now();
      this.metrics.commits.inc({ result: 'ok' });
      this.metrics.commitLatency.observe((performance.now() - t0) / 1000);
      this.logger.debug({ reason, partitions: offsets.length }, 'committed');
    };
    this.committing = run()
      .catch((e) => {
        this.metrics.commits.inc({ result: 'failed' });
        this.logger.warn({ reason, err: (e as Error).message }, 'commit failed');
        throw e;
      })
      .finally(() => {
        this.committing = undefined;
      });
    return this.committing;
  }

  // -------------------------------------------------------------------------------------------
  // queries

  /** Which task owns a key (by Kafka's default partitioner on the key bytes). */
  partitionFor(key: Buffer | string): number {
    if (!this.partitionCount) throw new StreamsError('NOT_STARTED', 'the instance has not started');
    return partitionForKey(key, this.partitionCount);
  }

  /** A store of a task this instance owns and has restored, or undefined. */
  localStore<K, V>(storeName: string, partition: number): KeyValueStore<K, V> | undefined {
    const h = this.tasks.get(partition);
    if (!h?.task || h.closed) return undefined;
    return h.state?.stores.get(storeName)?.store as KeyValueStore<K, V> | undefined;
  }

  globalTable<K, V>(name: string): GlobalTableView<K, V> | undefined {
    return this.globals.get(name) as GlobalTableView<K, V> | undefined;
  }

  /** The advertised endpoint of the member that owns a partition (from the group description). */
  async ownerEndpoint(partition: number): Promise<string | undefined> {
    const admin = this.admin;
    if (!admin) return undefined;
    const { groups } = await admin.describeGroups([this.config.applicationId]);
    const topic = this.topology.sourceTopics()[0]!;
    for (const m of groups[0]?.members ?? []) {
      const a = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
      if (a?.assignment[topic]?.includes(partition)) {
        const md = AssignerProtocol.MemberMetadata.decode(m.memberMetadata);
        return decodeMemberInfo(md?.userData).endpoint;
      }
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------------
  // shutdown

  private async die(e: unknown): Promise<void> {
    if (this._state === 'ERROR' || this._state === 'PENDING_SHUTDOWN' || this._state === 'NOT_RUNNING') return;
    this.fatal = e;
    this.logger.error(
      { err: e instanceof Error ? e.message : String(e), code: (e as StreamsError).code },
      'fatal error: stopping',
    );
    this.transition('ERROR');
    await this.shutdownClients();
  }

  failure(): unknown {
    return this.fatal;
  }

  /** Clean shutdown: commit, close tasks (state kept on disk), leave the group. */
  async close(): Promise<void> {
    if (this._state === 'NOT_RUNNING' || this._state === 'PENDING_SHUTDOWN') return;
    const wasError = this._state === 'ERROR';
    this.transition('PENDING_SHUTDOWN');
    if (this.wallClockTimer) clearInterval(this.wallClockTimer);
    if (!wasError) {
      try {
        await this.consumer?.pause(this.topology.sourceTopics().map((topic) => ({ topic })));
        await this.commit('shutdown');
      } catch (e) {
        this.logger.warn({ err: (e as Error).message }, 'final commit failed; uncommitted records will be reprocessed');
      }
    }
    await this.shutdownClients();
    this.transition('NOT_RUNNING');
  }

  private async shutdownClients(): Promise<void> {
    if (this.wallClockTimer) clearInterval(this.wallClockTimer);
    const handles = [...this.tasks.values()];
    this.tasks.clear();
    await this.consumer?.disconnect().catch(() => undefined);
    for (const h of handles) await this.closeTask(h).catch(() => undefined);
    for (const r of this.globalReaders) await r.stop();
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}
