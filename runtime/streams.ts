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
 * co-partitioning sticky assignor. Task lifecycle (task.ts): CREATED -> RESTORING -> RUNNING <->
 * SUSPENDED -> CLOSED.
 *
 * Fetching is apart from processing: the kafkajs consumer only fills each task's per-partition
 * record queues (its eachBatch never waits for processing), and pauses a partition whose queue
 * holds too many bytes; each task takes records from its queues in timestamp order on its own
 * (task.ts says when it waits for a partition).
 *
 * Rebalances (eager protocol): before the member re-joins the group, every task is suspended
 * (finishes its batch) and committed while the generation is still valid (kafkajs-hooks.ts);
 * after the assignment, kept tasks go on, revoked ones are closed, new ones are restored. A
 * commit refused because the generation is over means the tasks may already have another owner:
 * they are closed dirty (uncommitted writes dropped) and re-created from the last commit if they
 * come back. A member that has had no successful heartbeat for a session timeout stops
 * processing until it has one again, so two owners never write at the same time for long.
 */
// first: a correction to kafkajs that applies only if kafkajs is not loaded yet
import './kafkajs-preload.js';
import type { Admin, Consumer, EachBatchPayload, Kafka, KafkaConfig, Producer } from 'kafkajs';
import { AssignerProtocol, Kafka as KafkaClient } from 'kafkajs';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { coPartitionedAssigner, decodeAssignmentInfo, decodeMemberInfo, type MemberInfo } from './assignor.js';
import { kafkaSecurity, type StreamsConfig } from './config.js';
import { IllegalStateError, StreamsError, TopologyError } from './errors.js';
import {
  HOOKS,
  assignmentUserData,
  commitWithSession,
  installKafkaJsHooks,
  isCoordinatorError,
  isGenerationError,
  type GroupHooks,
  type GroupSession,
} from './kafkajs-hooks.js';
import { RuntimeMetrics } from './metrics.js';
import { endOffsets, followTopics, readRanges, toRawRecord, topicOffsets } from './partition-reader.js';
import { partitionForKey } from './partitioner.js';
import { withRetries } from './retry.js';
import { kafkaClientLogLevel, kafkaLogCreator } from './kafka-log.js';
import { MapGlobalTable, type GlobalTableView } from './processor.js';
import { KafkaRecordCollector, TopicLimits, type KafkaRecordCollectorOptions } from './record-collector.js';
import { TaskProducer, isTransactionLost } from './eos.js';
import { StandbyManager, type StandbyStatus } from './standby.js';
import { TaskStateManager, type RestoreSource } from './state-manager.js';
import { StoreMemory } from './state/memory-budget.js';
import { tpKey } from './state/checkpoint.js';
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

/** a task held back this long by a partition whose records do not arrive counts as stuck */
const STUCK_AFTER_MS = 30_000;

interface TaskHandle {
  partition: number;
  task?: StreamTask;
  state?: TaskStateManager;
  /** resolves when the task object exists (records can be queued), undefined if it never will */
  created: Promise<StreamTask | undefined>;
  /** resolves when the task is restored and running */
  ready: Promise<StreamTask | undefined>;
  closed: boolean;
  /** cancels the restore */
  abort: AbortController;
  /** exactly-once: the task's transactional producer and its own record collector */
  producer?: TaskProducer;
  collector?: KafkaRecordCollector;
}

/** What a commit's offset metadata carries for the task (see `commit`). */
export interface CommitMetadata {
  v: 1;
  /** changelog `topic:partition` -> offset the committed state corresponds to */
  cl: Record<string, number>;
  /** stream time */
  st: number;
}

export function encodeCommitMetadata(m: CommitMetadata): string {
  return JSON.stringify(m);
}

export function decodeCommitMetadata(s: string | null | undefined): CommitMetadata | undefined {
  if (!s) return undefined;
  try {
    const v = JSON.parse(s) as Partial<CommitMetadata>;
    if (v.v !== 1 || typeof v.cl !== 'object' || v.cl === null) return undefined;
    const cl: Record<string, number> = {};
    for (const [k, o] of Object.entries(v.cl)) if (Number.isSafeInteger(o) && (o as number) >= 0) cl[k] = o as number;
    return { v: 1, cl, st: typeof v.st === 'number' && Number.isFinite(v.st) ? v.st : -1 };
  } catch {
    return undefined;
  }
}

/** A commit was refused because the member's generation is over. */
class TaskMigratedError extends StreamsError {
  constructor(cause: unknown) {
    super('TASK_MIGRATED', `the group moved on without this member: ${(cause as Error)?.message}`, {
      retriable: true,
      cause,
    });
  }
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

/** A fresh task's commit: none of its records is in flight (see `commitTasks`). */
const NOTHING_ACKED: ReadonlyMap<string, number> = new Map();

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
  /** the consumer's group session (kafkajs' consumer group), known from its first join */
  private session: GroupSession | undefined;
  private lastHeartbeatOk = Date.now();
  /** processing held back: no successful heartbeat for a session timeout */
  private sessionSuspect = false;
  private lastLagRefresh = 0;
  private revoking: Promise<void> | undefined;
  private limits: TopicLimits | undefined;
  /** options every record collector shares (the process-wide one, and each task's under exactly-once) */
  private collectorOptions: Omit<KafkaRecordCollectorOptions, 'producer'> | undefined;
  /** the assignment of the last join, and since when tasks wait to be opened again (exactly-once) */
  private lastAssignment: Record<string, number[]> | undefined;
  private reopenAfter: number | undefined;
  private recovering: Promise<void> | undefined;
  private standby: StandbyManager | undefined;
  /** a revocation or shutdown holds the tasks paused until their final commit (no commit resumes them) */
  private holdTasks = false;
  /** revoked tasks still closing (a standby of the same task waits for its stores) */
  private readonly closing = new Map<number, Promise<void>>();

  constructor(
    readonly topology: Topology,
    readonly config: StreamsConfig,
    private readonly opts: KafkaStreamsOptions = {},
  ) {
    installKafkaJsHooks();
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
    this.metrics.ready.set(0);
  }

  private advertised: string | undefined;
  /** the memory budgets of this instance's stores (split over the partitions: see memory-budget.ts) */
  private storeMemory: StoreMemory | undefined;

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
    this.updateReady();
    this.opts.onStateChange?.(to, from);
  }

  /**
   * Ready: running, with at least one task, every assigned task restored and running, and a
   * healthy group session (a heartbeat within the session timeout).
   */
  isReady(): boolean {
    return this.notReadyReason() === undefined;
  }

  /** Why the instance is not ready, or undefined when it is. */
  notReadyReason(): string | undefined {
    if (this._state !== 'RUNNING') return `state ${this._state}`;
    if (this.sessionSuspect) return 'no group heartbeat for a session timeout';
    if (!this.tasks.size) return 'no tasks assigned';
    const now = Date.now();
    for (const h of this.tasks.values()) {
      if (h.task?.state !== 'RUNNING') return `task 0_${h.partition} not running`;
      const since = h.task.lagWaitSince;
      if (since !== undefined && now - since > STUCK_AFTER_MS)
        return `task 0_${h.partition} has waited ${Math.round((now - since) / 1000)} s for records the broker holds`;
    }
    return undefined;
  }

  private updateReady(): void {
    this.metrics.ready.set(this.isReady() ? 1 : 0);
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
        // a new topic's leaders are still being elected: routine at start, not an operator's matter
        onRetry: (e) => this.logger.debug({ err: (e as Error).message }, 'topic check failed, retrying'),
      });
      await this.initSerdes();
      // producing (issue 7): one request in flight, requests capped by the topics'
      // max.message.bytes; records the broker cannot take go to the dead-letter topic
      const newProducer = async (): Promise<Producer> => {
        const p = this.kafka.producer({
          allowAutoTopicCreation: false,
          // idempotent: a request re-sent after a timeout or a lost connection carries the same
          // sequence numbers and the broker writes it once. kafkajs retries a few times; after that
          // the collector re-sends the request (kafkajs has rolled its sequence numbers back).
          // kafkajs' own retry has a flaw: when a request to several brokers half fails and a
          // partition moves to a broker that already answered, it reports success for records it
          // never re-sent; the collector picks every record's partition and re-sends those
          // missing from the answer (seen as lost decisions in the fault suite before)
          idempotent: true,
          maxInFlightRequests: 1,
          retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
        });
        // (connecting also asks for a producer id: retried here, as kafkajs no longer does)
        await withRetries('connecting the producer', () => p.connect(), { attempts: 30, maxDelayMs: 1000 });
        return p;
      };
      this.producer = await newProducer();
      const producedTopics = [
        ...this.topology.sinkTopics(),
        ...this.topology
          .resolvedStores(this.config.applicationId)
          .flatMap((s) => (s.changelogTopic && !s.sourceChangelog ? [s.changelogTopic] : [])),
        this.config.dlqTopic,
      ];
      this.limits = await TopicLimits.fromAdmin(this.admin, producedTopics);
      this.collectorOptions = {
        limits: this.limits,
        dlqTopic: this.config.dlqTopic,
        applicationId: this.config.applicationId,
        onSent: (n, ms) => {
          this.metrics.recordsProduced.inc(n);
          this.metrics.produceLatency.observe(ms / 1000);
        },
        onDeadLetter: (topic, code) => {
          this.metrics.deadLetters.inc({ topic, code });
          this.logger.warn({ topic, code }, 'record sent to the dead-letter topic instead');
        },
        onDropped: (topic, code) => this.logger.error({ topic, code }, 'dead letter refused by the broker: dropped'),
        onRetry: (e, attempt) =>
          (attempt >= 5 ? this.logger.warn : this.logger.debug).call(
            this.logger,
            { err: (e as Error).message, attempt },
            'produce request failed, retrying',
          ),
      };
      this.collector = new KafkaRecordCollector({
        ...this.collectorOptions,
        producer: this.producer,
        resetProducer: async () => {
          const old = this.producer;
          this.producer = await newProducer();
          await old?.disconnect().catch(() => undefined);
          return this.producer;
        },
      });
      await this.startGlobalTables();
      await this.startConsumer();
      this.wallClockTimer = setInterval(() => void this.tick(), Math.min(1000, this.config.commitIntervalMs));
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
        [spec.topic],
        async (topic, partition, records) => {
          await spec.value.prepare?.(records.map((r) => r.value));
          for (const r of records) {
            if (r.key === null) continue;
            try {
              const key = spec.key.deserialize(topic, r.key);
              if (r.value === null) table.map.delete(key);
              else table.map.set(key, spec.value.deserialize(topic, r.value));
            } catch (e) {
              const code = e instanceof StreamsError ? e.code : 'DESERIALIZATION_FAILED';
              this.metrics.deadLetters.inc({ topic, code });
              // the entry keeps its last good value; the refused record goes to the dead-letter
              // topic (once per instance: every instance reads the whole global table)
              this.collector?.send({
                topic: this.config.dlqTopic,
                key: r.key,
                value: r.value,
                timestamp: r.timestamp,
                headers: {
                  'dlq.source.topic': topic,
                  'dlq.source.partition': String(partition),
                  'dlq.source.offset': String(r.offset),
                  'dlq.error.code': code,
                  'dlq.error.message': (e instanceof Error ? e.message : String(e)).slice(0, 1000),
                  'dlq.error.kind': 'global-table',
                  'dlq.application.id': this.config.applicationId,
                  'dlq.instance.id': this.config.instanceId,
                },
              });
              this.logger.warn(
                { topic, offset: r.offset, code: (e as StreamsError).code },
                'global table record skipped',
              );
            }
          }
        },
        {
          onError: (e) =>
            this.logger.warn({ table: spec.name, err: (e as Error).message }, 'global table reader failed; retrying'),
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
    const offsets: Record<string, number> = {};
    const appDir = join(this.config.stateDir, this.config.applicationId);
    if (existsSync(appDir)) {
      for (const d of readdirSync(appDir)) {
        const m = /^0_(\d+)$/.exec(d);
        if (!m || !existsSync(join(appDir, d, '.checkpoint'))) continue;
        const t = Number(m[1]);
        stateful.push(t);
        // how far the local state goes: a standby's live positions, else the checkpoint's
        const sum = this.standby?.offsetSum(t) ?? checkpointSum(join(appDir, d, '.checkpoint'));
        if (sum > 0) offsets[String(t)] = sum;
      }
    }
    return { endpoint: this.advertised ?? this.config.advertisedUrl, owned, stateful, offsets };
  }

  private groupHooks(): GroupHooks {
    return {
      beforeJoin: async (session) => {
        this.session = session;
        await this.revokeAll('rebalance').catch((e) =>
          this.logger.warn({ err: (e as Error).message }, 'revocation before re-joining failed'),
        );
      },
      onCoordinatorChange: (reason) => {
        this.metrics.coordinatorChanges.inc();
        this.logger.info({ reason }, 'group coordinator looked up again');
      },
    };
  }

  private async startConsumer(): Promise<void> {
    const assigner = coPartitionedAssigner(() => this.memberInfo(), {
      standbyReplicas: this.config.numStandbyReplicas,
    });
    const hooks = this.groupHooks();
    const withHooks = ((args: unknown) => {
      const a = (assigner as unknown as (x: unknown) => Record<symbol, unknown>)(args);
      a[HOOKS] = hooks;
      return a;
    }) as unknown as typeof assigner;
    const consumer = this.kafka.consumer({
      groupId: this.config.applicationId,
      partitionAssigners: [withHooks],
      sessionTimeout: this.config.sessionTimeoutMs,
      heartbeatInterval: this.config.heartbeatIntervalMs,
      rebalanceTimeout: this.config.rebalanceTimeoutMs,
      maxBytesPerPartition: this.config.maxFetchBytesPerPartition,
      maxWaitTimeInMs: 100,
      allowAutoTopicCreation: false,
      // broker and coordinator loss are handled in kafkajs-hooks.ts; keep kafkajs' own back-off short
      retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.REBALANCING, () => {
      this.metrics.rebalances.inc();
      if (this._state === 'RUNNING') this.transition('REBALANCING');
    });
    consumer.on(consumer.events.HEARTBEAT, () => {
      this.lastHeartbeatOk = Date.now();
      // exactly-once: tasks closed after a lost transaction are opened again once a heartbeat
      // proves the generation still holds (a member that lost it re-joins instead)
      if (this.reopenAfter !== undefined && this.lastHeartbeatOk > this.reopenAfter && !this.recovering) {
        this.reopenAfter = undefined;
        if (this.lastAssignment) {
          this.logger.info('generation still valid: opening the tasks again');
          this.onAssignment(this.lastAssignment);
        }
      }
      if (this.sessionSuspect) {
        this.sessionSuspect = false;
        this.logger.info('group heartbeat healthy again: processing goes on');
        if (!this.holdTasks) for (const h of this.tasks.values()) if (h.task?.state === 'RUNNING') h.task.resume();
        this.updateReady();
      }
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.lastHeartbeatOk = Date.now();
      this.sessionSuspect = false;
      this.reopenAfter = undefined;
      this.lastAssignment = e.payload.memberAssignment;
      this.onAssignment(e.payload.memberAssignment);
      this.onStandbyAssignment(e.payload.memberAssignment);
    });
    // batches that carried no records (control records, aborted transactions) still move the position
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const p = e.payload as {
        topic: string;
        partition: number;
        firstOffset: string | null;
        lastOffset: string;
        highWatermark: string;
      };
      const h = this.tasks.get(p.partition);
      if (h?.task && !h.closed)
        h.task.noteFetched(
          p.topic,
          Number(p.lastOffset) + 1,
          Number(p.highWatermark),
          p.firstOffset === null || p.firstOffset === undefined ? null : Number(p.firstOffset),
        );
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart) {
        void this.die(e.payload.error);
        return;
      }
      // kafkajs leaves the group and joins again as a new member: what is not committed is lost
      this.logger.info({ err: e.payload.error?.message }, 'consumer restarting');
      void this.closeAllDirty('consumer restart');
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

  /**
   * Before the member re-joins: every task finishes its batch and is suspended, and everything
   * processed is committed with the current generation. If that commit is refused (the group
   * already moved on), the tasks are closed dirty.
   */
  private revokeAll(reason: string): Promise<void> {
    if (this.revoking) return this.revoking;
    const run = async () => {
      if (this._state === 'PENDING_SHUTDOWN' || this._state === 'NOT_RUNNING' || this._state === 'ERROR') return;
      // tasks still opening would start processing during the rebalance (after this commit, with
      // nothing suspending them): a second owner of their partitions for a moment, whose writes
      // belong to no commit. They are closed; the assignment opens them again if they stay here
      const opening = [...this.tasks.values()].filter(
        (h) => !h.closed && h.task?.state !== 'RUNNING' && h.task?.state !== 'SUSPENDED',
      );
      // all at once: each is marked closed before any close is awaited (closed one after the
      // other, a task still waiting for its first commit finished opening and processed meanwhile)
      for (const h of opening) this.tasks.delete(h.partition);
      await Promise.all(opening.map((h) => this.closeTask(h, 'dirty', 'rebalance while opening')));
      const running = [...this.tasks.values()].filter((h) => h.task?.state === 'RUNNING' && !h.closed);
      if (!running.length) return;
      // a commit in progress must not resume them: what they processed after it would be
      // nobody's commit when the next owner starts
      this.holdTasks = true;
      for (const h of running) h.task!.pause();
      try {
        await this.commit(reason);
      } catch (e) {
        if (e instanceof TaskMigratedError || isGenerationError(e)) {
          await this.closeAllDirty('generation over at revocation');
          return;
        }
        this.logger.warn({ err: (e as Error).message }, 'commit before re-joining failed: closing tasks dirty');
        await this.closeAllDirty('commit failed at revocation');
        return;
      }
      for (const h of running) if (!h.closed) await h.task!.suspend();
    };
    this.revoking = run().finally(() => {
      this.revoking = undefined;
      this.holdTasks = false;
    });
    return this.revoking;
  }

  private onAssignment(assignment: Record<string, number[]>): void {
    if (this._state === 'PENDING_SHUTDOWN' || this._state === 'NOT_RUNNING' || this._state === 'ERROR') return;
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
      // suspended and committed before the join (or closed dirty if that failed)
      const closed = this.closeTask(h, h.task?.state === 'SUSPENDED' ? 'clean' : 'dirty', 'revoked')
        .catch(() => undefined)
        .finally(() => {
          if (this.closing.get(p) === closed) this.closing.delete(p);
        });
      this.closing.set(p, closed);
    }
    // kept tasks go on from their committed position: kafkajs fetches from there again
    for (const p of now) this.tasks.get(p)?.task?.resumeRunning();
    for (const p of added) {
      let created!: (t: StreamTask | undefined) => void;
      const h: TaskHandle = {
        partition: p,
        created: new Promise((r) => (created = r)),
        ready: Promise.resolve(undefined),
        closed: false,
        abort: new AbortController(),
      };
      h.ready = this.openTask(h, created).catch(async (e) => {
        created(undefined);
        if (h.closed) return undefined;
        if (e instanceof TaskMigratedError) {
          await this.closeTask(h, 'dirty', 'generation over at start');
          this.tasks.delete(p);
          return undefined;
        }
        void this.die(e);
        return undefined;
      });
      this.tasks.set(p, h);
    }
    this.metrics.assignedTasks.set(now.size);
    void Promise.all([...this.tasks.values()].map((h) => h.ready)).then(() => {
      if (this._state === 'REBALANCING' && [...this.tasks.values()].every((h) => h.task || h.closed))
        this.transition('RUNNING');
      this.updateReady();
    });
  }

  /** Standby tasks of the new assignment (never a task that is active here). */
  private onStandbyAssignment(assignment: Record<string, number[]>): void {
    if (this.config.numStandbyReplicas <= 0) return;
    const active = new Set<number>();
    for (const topic of this.topology.sourceTopics()) for (const p of assignment[topic] ?? []) active.add(p);
    const standby = decodeAssignmentInfo(assignmentUserData(this.session)).standby.filter((p) => !active.has(p));
    this.logger.info({ instance: this.config.instanceId, standby }, 'standby assignment');
    this.standby ??= new StandbyManager({
      kafka: this.kafka,
      intervalMs: this.config.standbyIntervalMs,
      metrics: this.metrics,
      logger: this.logger,
      openState: (p) => this.openStandbyState(p),
      committedTargets: async (partitions) => {
        const out = new Map<number, Map<string, number>>();
        for (const p of partitions) {
          const c = await this.committedFor(p);
          if (c.metadata) out.set(p, new Map(Object.entries(c.metadata.cl)));
        }
        return out;
      },
    });
    void this.standby
      .update(standby)
      .catch((e) =>
        this.logger.warn(
          { err: (e as Error).message },
          'standby tasks could not be opened; retried at the next assignment',
        ),
      );
  }

  /** A standby's stores: opened at the last commit's offsets (state ahead of them is wiped). */
  private async openStandbyState(partition: number): Promise<TaskStateManager> {
    const taskId = `0_${partition}`;
    // the task was active here until this assignment: its stores close first
    await this.closing.get(partition);
    const committed = await this.committedFor(partition);
    const state = new TaskStateManager({
      taskId,
      applicationId: this.config.applicationId,
      partition,
      taskDir: join(this.config.stateDir, this.config.applicationId, taskId),
      stores: this.topology.resolvedStores(this.config.applicationId),
      // a standby never writes: its stores have no changelog records to send
      collector: this.collector!,
      cacheMaxEntries: 0,
      logger: this.logger,
    });
    await state.open(committed.metadata ? new Map(Object.entries(committed.metadata.cl)) : undefined);
    return state;
  }

  /** Active and standby tasks of this instance, with their offsets (GET /v1/tasks). */
  tasksInfo(): {
    instance: string;
    active: {
      task: string;
      partition: number;
      state: string;
      inputs: { topic: string; committable: number | undefined; lag: number | undefined }[];
    }[];
    standby: StandbyStatus[];
  } {
    const active = [...this.tasks.values()]
      .sort((a, b) => a.partition - b.partition)
      .map((h) => {
        const committable = h.task?.committableOffsets() ?? new Map<string, number>();
        const lag = h.task?.lag() ?? new Map<string, number>();
        return {
          task: `0_${h.partition}`,
          partition: h.partition,
          state: h.closed ? 'CLOSED' : (h.task?.state ?? 'CREATED'),
          inputs: this.topology.sourceTopics().map((topic) => ({
            topic,
            committable: committable.get(topic),
            lag: lag.get(topic),
          })),
        };
      });
    return { instance: this.config.instanceId, active, standby: this.standby?.status() ?? [] };
  }

  private restoreSource(taskId: string): RestoreSource {
    return {
      endOffset: async (topic, partition) => (await endOffsets(this.admin!, [topic])).get(`${topic}:${partition}`) ?? 0,
      read: (ranges, onRecords, signal) =>
        readRanges(this.kafka, ranges, (range, records) => onRecords(range.topic, records), {
          ...(signal ? { signal } : {}),
          onRetry: (e, attempt) =>
            this.logger.debug({ task: taskId, attempt, err: e.message }, 'restore fetch failed; retrying'),
        }),
    };
  }

  /** Committed offsets and their metadata for one task's source partitions. */
  private async committedFor(partition: number): Promise<{
    offsets: Map<string, number>;
    metadata: CommitMetadata | undefined;
    anyMissing: boolean;
  }> {
    const topics = this.topology.sourceTopics();
    const res = await withRetries('committed offsets', async () => {
      const r = await this.admin!.fetchOffsets({ groupId: this.config.applicationId, topics });
      // kafkajs asks only for the partitions its metadata knows: while that is incomplete (a
      // leader election, a refresh in flight) a partition is left out of the answer, which must
      // not read as "never committed" (the task would start again from the log start)
      for (const topic of topics)
        if (!r.find((t) => t.topic === topic)?.partitions.some((p) => p.partition === partition))
          throw Object.assign(new Error(`no committed-offset answer for ${topic}:${partition}`), { retriable: true });
      return r;
    });
    const offsets = new Map<string, number>();
    let metadata: CommitMetadata | undefined;
    let anyMissing = false;
    for (const topic of topics) {
      const c = res.find((t) => t.topic === topic)?.partitions.find((p) => p.partition === partition);
      const o = c ? Number(c.offset) : -1;
      if (o >= 0) offsets.set(topic, o);
      else anyMissing = true;
      metadata ??= decodeCommitMetadata(c?.metadata);
    }
    return { offsets, metadata, anyMissing };
  }

  /**
   * Opens a task: reads the last commit (offsets, and the changelog offsets its state stands
   * at), opens the stores, restores them to exactly that state, and starts processing. A task
   * that has never been committed is committed once before it processes anything, so every
   * later restore has a commit to stop at.
   */
  private async openTask(h: TaskHandle, created: (t: StreamTask | undefined) => void): Promise<StreamTask | undefined> {
    const taskId = `0_${h.partition}`;
    // a standby of this task on this instance: closed first, the active task restores from its state
    await this.standby?.release(h.partition);
    if (h.closed) return undefined;
    let collector = this.collector!;
    if (this.config.processingGuarantee === 'exactly_once') {
      // the transactional id first: it fences the previous owner and ends its open transaction,
      // so the offsets read next are the last committed ones for good
      const producer = new TaskProducer({
        kafka: this.kafka,
        applicationId: this.config.applicationId,
        taskId,
        transactionTimeoutMs: this.config.transactionTimeoutMs,
      });
      h.producer = producer;
      await producer.init();
      if (h.closed) return undefined;
      collector = h.collector = new KafkaRecordCollector({
        ...this.collectorOptions!,
        producer,
        transactional: { taskId },
      });
    }
    const committed = await this.committedFor(h.partition);
    this.logger.debug(
      {
        task: taskId,
        committed: Object.fromEntries(committed.offsets),
        anyMissing: committed.anyMissing,
        metadata: committed.metadata,
      },
      'last commit read',
    );
    const targets = committed.metadata ? new Map(Object.entries(committed.metadata.cl)) : undefined;
    const stores = this.topology.resolvedStores(this.config.applicationId);
    if (!committed.metadata && !committed.anyMissing) {
      // committed by a version without metadata: restore to the changelogs' end, as it did
      this.logger.info({ task: taskId }, 'last commit has no state positions: restoring to the changelog end');
    }
    // never committed: no changelog record of an internal store belongs to a commit yet
    const effectiveTargets = targets ?? (committed.offsets.size === 0 ? new Map<string, number>() : undefined);
    if (effectiveTargets && !targets)
      for (const s of stores)
        if (s.changelogTopic && !s.sourceChangelog) effectiveTargets.set(tpKey(s.changelogTopic, h.partition), 0);
    const state = new TaskStateManager({
      taskId,
      applicationId: this.config.applicationId,
      partition: h.partition,
      taskDir: join(this.config.stateDir, this.config.applicationId, taskId),
      stores,
      collector,
      cacheMaxEntries: this.config.cacheMaxEntries,
      memory: (this.storeMemory ??= new StoreMemory(
        {
          rocksdbCacheBytes: this.config.rocksdbCacheBytes,
          rocksdbWriteBufferBytes: this.config.rocksdbWriteBufferBytes,
        },
        () => this.partitionCount,
      )),
      ...(this.config.metricsRecordingLevel === 'DEBUG' ? { metrics: { opLatency: this.metrics.storeOpLatency } } : {}),
      logger: this.logger,
    });
    h.state = state;
    const t0 = Date.now();
    const { wiped } = await state.open(effectiveTargets);
    const task = new StreamTask({
      applicationId: this.config.applicationId,
      partition: h.partition,
      topology: this.topology,
      stores: state.storeMap(),
      globalTables: this.globals,
      collector,
      coPartitioned: this.coPartitioned,
      maxTaskIdleMs: this.config.maxTaskIdleMs,
      maxStreamTimeJumpMs: this.config.maxStreamTimeJumpMs,
      maxBufferedBytes: this.config.maxBufferedBytesPerPartition,
      onBackpressure: (topic, full) => {
        if (h.closed || !this.consumer) return;
        if (full) this.consumer.pause([{ topic, partitions: [h.partition] }]);
        else this.consumer.resume([{ topic, partitions: [h.partition] }]);
      },
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
    if (committed.metadata && committed.metadata.st >= 0) task.streamTime = committed.metadata.st;
    h.task = task;
    if (h.closed) {
      created(undefined);
      return undefined;
    }
    task.transition('RESTORING');
    await this.positionTask(task, state, committed.offsets, h.partition);
    // the consumer may fetch from elsewhere (where it was before the task was opened again without
    // a join, or offsets it read before the previous owner's last transaction ended): from the
    // task's position; until then the task drops what does not continue it (task.ts `enqueue`)
    for (const topic of this.topology.sourceTopics()) {
      this.consumer?.seek({
        topic,
        partition: h.partition,
        offset: String(task.committableOffsets().get(topic) ?? committed.offsets.get(topic) ?? 0),
      });
      // a previous task of this partition may have left it paused (its queue was full when it closed)
      this.consumer?.resume([{ topic, partitions: [h.partition] }]);
    }
    created(task);
    if (h.closed) return undefined;
    const restored = await state.restore(
      this.restoreSource(taskId),
      (p) => {
        this.restoreStatus.set(`${p.taskId}/${p.store}`, {
          task: p.taskId,
          store: p.store,
          restored: (this.restoreStatus.get(`${p.taskId}/${p.store}`)?.restored ?? 0) + p.restored,
          remaining: p.remaining,
        });
        this.metrics.restoreRecords.inc({ store: p.store }, p.restored);
        this.metrics.restoreRemaining.set({ store: p.store, task: p.taskId }, p.remaining);
      },
      h.abort.signal,
    );
    if (h.closed) return undefined;
    const ms = Date.now() - t0;
    this.logger.info(
      { task: taskId, restored, wiped, ms, recordsPerSec: ms ? Math.round((restored * 1000) / ms) : restored },
      'task restored',
    );
    // a table starts where its restore ended when it has no committed offset
    for (const topic of this.tableTopics) {
      if (committed.offsets.has(topic)) continue;
      const restoredTo = state.position(topic);
      if (restoredTo !== undefined && restoredTo > 0) {
        this.consumer?.seek({ topic, partition: h.partition, offset: String(restoredTo) });
        task.resetPosition(topic, restoredTo);
      }
    }
    if (h.closed) return undefined;
    if (committed.anyMissing || !committed.metadata) await this.commitTasks([h], 'first', { fresh: true });
    if (h.closed) return undefined;
    await task.init();
    h.task = task;
    if (h.closed) return undefined;
    this.updateReady();
    return task;
  }

  /** Committed offsets (else the log start) and high watermarks of the task's source partitions. */
  private async positionTask(
    task: StreamTask,
    _state: TaskStateManager,
    committed: Map<string, number>,
    partition: number,
  ): Promise<void> {
    for (const topic of this.topology.sourceTopics()) {
      const ends = await topicOffsets(this.admin!, topic);
      const end = ends.find((e) => e.partition === partition);
      const offset = committed.get(topic);
      // without a committed offset the group starts at the log start (fromBeginning)
      task.setPosition(topic, offset ?? Number(end?.low ?? 0), Number(end?.high ?? 0));
    }
  }

  /**
   * Closes a task. Clean: it was committed (suspended after a commit); its state stays on disk.
   * Dirty: its uncommitted writes are dropped; the next owner restores the last commit.
   */
  private async closeTask(h: TaskHandle, mode: 'clean' | 'dirty', reason: string): Promise<void> {
    h.closed = true;
    h.abort.abort(new StreamsError('TASK_CLOSED', `task 0_${h.partition} closed (${reason})`, { retriable: true }));
    const task = h.task ?? (await h.created.catch(() => undefined));
    if (task) {
      await task.suspend().catch(() => undefined);
      await task.close().catch(() => undefined);
    }
    // a task still opening stops at its next step (h.closed); never wait on it for long
    await Promise.race([h.ready.catch(() => undefined), new Promise((r) => setTimeout(r, 10_000).unref())]);
    if (mode === 'dirty') {
      this.metrics.tasksClosedDirty.inc({ reason });
      h.state?.abort();
      if (task && task.processedSinceCommit > 0)
        this.logger.info(
          { task: `0_${h.partition}`, reason, uncommitted: task.processedSinceCommit },
          'task closed dirty: its uncommitted records will be processed again by its next owner',
        );
    }
    await h.state?.close().catch(() => undefined);
    if (h.producer) {
      // exactly-once: a dirty close ends the open transaction without effect (best effort: a
      // fenced producer cannot, and its successor has ended it already)
      h.collector?.close();
      if (mode === 'dirty') await h.producer.abort();
      await h.producer.close();
    }
  }

  /**
   * Exactly-once: a task's transaction was lost (its producer fenced, the transaction timed out
   * or was refused). Every task is closed dirty, as Kafka Streams does on a migrated task; they
   * are opened again from the last commit at the next join, or after the next heartbeat proves
   * this member still holds its generation.
   */
  private recoverTasks(reason: string, e: unknown): Promise<void> {
    if (this.recovering) return this.recovering;
    this.logger.info({ reason, err: (e as Error)?.message }, 'transaction lost: closing the tasks dirty');
    this.metrics.transactions.inc({ result: 'lost' });
    this.recovering = this.closeAllDirty(reason).finally(() => {
      this.recovering = undefined;
      this.reopenAfter = Date.now();
    });
    return this.recovering;
  }

  /** A task failed: a lost transaction closes the tasks; anything else stops the instance. */
  private onTaskFailure(e: unknown): void {
    if (this.config.processingGuarantee === 'exactly_once' && isTransactionLost(e))
      void this.recoverTasks('transaction lost', e);
    else void this.die(e);
  }

  /** Every task closed dirty (the member lost its generation, or the consumer restarts). */
  private async closeAllDirty(reason: string): Promise<void> {
    const handles = [...this.tasks.values()];
    this.tasks.clear();
    this.metrics.assignedTasks.set(0);
    await Promise.all(handles.map((h) => this.closeTask(h, 'dirty', reason)));
    this.updateReady();
  }

  // -------------------------------------------------------------------------------------------
  // processing

  /**
   * Fetched records go to their task's queue; this never waits for processing, so the consumer
   * keeps fetching every partition while tasks work (and pauses a partition whose queue is full).
   */
  private async onBatch({ batch }: EachBatchPayload): Promise<void> {
    const h = this.tasks.get(batch.partition);
    if (!h || h.closed) return;
    try {
      await this.queueBatch(h, batch);
    } catch (e) {
      // the task was closed meanwhile (revoked, shut down): its records are fetched again by its next owner
      if (h.closed) return;
      throw e;
    }
  }

  private async queueBatch(h: TaskHandle, batch: EachBatchPayload['batch']): Promise<void> {
    const task = h.task ?? (await h.created);
    if (!task || h.closed || task.state === 'SUSPENDED' || task.state === 'CLOSED') return;
    const records = batch.messages.map(toRawRecord);
    this.metrics.recordsConsumed.inc({ topic: batch.topic }, records.length);
    const src = this.topology.sourceNodeFor(batch.topic);
    const spec = src.source ?? src.table!;
    // serde look-ups (e.g. writer schemas by id) for the whole batch before it is queued
    if (spec.value.prepare) await spec.value.prepare(records.map((r) => r.value));
    if (spec.key.prepare) await spec.key.prepare(records.map((r) => r.key));
    if (h.closed) return;
    const fetchedFrom = Number((batch as { fetchedOffset?: string }).fetchedOffset);
    const staleBefore = task.staleBatches;
    task
      .enqueue(
        batch.topic,
        records,
        Number(batch.highWatermark),
        Number.isFinite(fetchedFrom) ? fetchedFrom : undefined,
      )
      .catch((e) => {
        // a task that failed (the `fail` error policy, or infrastructure) stops the instance
        if (task.failure() !== undefined) this.onTaskFailure(task.failure());
        else if (!(e instanceof StreamsError) || !e.retriable) this.onTaskFailure(e);
      });
    // a batch that did not continue the task's position: fetch from the position (again)
    if (task.staleBatches !== staleBefore) {
      const at = task.fetchPosition(batch.topic);
      if (at !== undefined) this.consumer?.seek({ topic: batch.topic, partition: batch.partition, offset: String(at) });
    }
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    // a member without a heartbeat for a session timeout may have been replaced: hold still
    const age = now - this.lastHeartbeatOk;
    this.metrics.heartbeatAge.set(age / 1000);
    if (!this.sessionSuspect && age > this.config.sessionTimeoutMs && this.tasks.size) {
      this.sessionSuspect = true;
      this.logger.warn(
        { secondsWithoutHeartbeat: Math.round(age / 1000) },
        'no group heartbeat for a session timeout: processing paused until the group answers',
      );
      for (const h of this.tasks.values()) h.task?.pause();
      this.updateReady();
    }
    for (const h of this.tasks.values()) {
      if (!h.task || h.closed || h.task.state !== 'RUNNING') continue;
      try {
        await h.task.punctuateWallClock();
      } catch (e) {
        this.onTaskFailure(e);
      }
      if (h.task?.failure() !== undefined) this.onTaskFailure(h.task!.failure());
    }
    this.updateReady();
    if (now - this.lastLagRefresh >= 2000) {
      this.lastLagRefresh = now;
      void this.refreshLag().catch(() => undefined);
    }
    // commit processed work even when no new batch arrives; at-least-once also while other tasks
    // still open (their restore and first commit can take seconds; what the running ones process
    // meanwhile would be processed again if a rebalance came first). Exactly-once loses nothing
    // uncommitted to a rebalance (it is aborted), and keeps its transactions out of the opening
    const eos = this.config.processingGuarantee === 'exactly_once';
    if (
      (this._state === 'RUNNING' || (this._state === 'REBALANCING' && !eos)) &&
      !this.revoking &&
      !this.sessionSuspect &&
      now - this.lastCommit >= this.config.commitIntervalMs
    ) {
      await this.commit('interval').catch((e) => {
        if (e instanceof TaskMigratedError) return;
        this.logger.warn({ err: (e as Error).message }, 'commit failed; it is retried at the next interval');
      });
    }
  }

  /** End offsets of the source partitions: tasks learn them even when a fetch brings nothing. */
  private async refreshLag(): Promise<void> {
    if (!this.admin || !this.tasks.size) return;
    for (const topic of this.topology.sourceTopics()) {
      const ends = await topicOffsets(this.admin, topic);
      for (const e of ends) {
        const h = this.tasks.get(e.partition);
        if (!h?.task || h.closed) continue;
        h.task.setHighWatermark(topic, Number(e.high));
        const lag = h.task.lag().get(topic);
        if (lag !== undefined) this.metrics.consumerLag.set({ topic, partition: String(e.partition) }, lag);
      }
    }
    for (const h of this.tasks.values())
      if (h.task && h.task.lagWaits) {
        this.metrics.lagWaits.inc({ task: h.task.id }, h.task.lagWaits);
        h.task.lagWaits = 0;
      }
  }

  /**
   * The commit protocol (at-least-once). The steps, in this order:
   *   1. pause the tasks at a batch boundary (no record half-processed);
   *   2. take each task's next input offsets: everything before them is processed;
   *   3. flush every task's stores (caches write down: changelog records go to the record
   *      collector, the writes into each store's write buffer), seal the write buffers (the
   *      commit's writes), and mark the collector's position; resume the tasks (at-least-once:
   *      their next writes go into fresh write buffers, their records after the mark);
   *   4. wait until the collector has every record before the mark acknowledged by the brokers
   *      (acks=all); the collector keeps the offset of each partition's last record before the
   *      mark, so the changelog offsets are exactly those of this commit's state;
   *   5. take, per task, the changelog offsets its sealed state corresponds to;
   *   6. commit the offsets of step 2 to the group, as this member's generation, with the
   *      offsets of step 5 and the stream time in the offset metadata. A refusal because the
   *      generation is over means the tasks may have another owner: they are closed dirty;
   *   7. write each store's sealed buffer to RocksDB in one atomic synced batch, then the
   *      checkpoint file.
   * A crash between any two steps loses nothing and applies nothing twice: on disk a store is
   * the state of a commit at most as new as the group's last commit, and a restore replays the
   * changelog from the checkpoint up to exactly the offsets of the group's last commit; input
   * is processed again from that commit's offsets.
   */
  async commit(reason: 'interval' | 'rebalance' | 'shutdown' | 'manual' | string = 'manual'): Promise<void> {
    const handles = [...this.tasks.values()].filter((h) => h.task?.state === 'RUNNING' && !h.closed);
    return this.commitTasks(handles, reason);
  }

  private commitTasks(handles: TaskHandle[], reason: string, opts: { fresh?: boolean } = {}): Promise<void> {
    // `fresh`: a task's first commit (it opened and has processed nothing): no record of it is in the
    // collector and its state is what the restore left, so steps 1-4 have nothing to wait for.
    // It runs beside a commit in progress instead of after it (a commit at full load waits for
    // every buffered record of every task: tasks opening one after another behind such commits
    // took seconds each at start-up). The interval commits leave it out (the task is not
    // RUNNING yet), and the task processes nothing before it is done.
    const fresh = opts.fresh === true;
    if (this.committing && !fresh) {
      // one commit at a time; a caller that needs its own commit waits and commits again
      return this.committing.catch(() => undefined).then(() => this.commitTasks(handles, reason));
    }
    if (!this.consumer || !this.collector) return Promise.resolve();
    const run = async (): Promise<void> => {
      const t0 = performance.now();
      const session = this.session;
      if (!session)
        throw new StreamsError('NOT_JOINED', 'the consumer has not joined the group yet', { retriable: true });
      const eos = this.config.processingGuarantee === 'exactly_once';
      const live = handles.filter((h) => h.task && !h.closed);
      const offsets: { topic: string; partition: number; offset: number; metadata: string | null }[] = [];
      const taskOffsets = new Map<TaskHandle, typeof offsets>();
      const positions = new Map<TaskHandle, Map<string, number>>();
      const wasPaused = new Map<TaskHandle, boolean>();
      let resumed = false;
      const resume = () => {
        // once; never while a revocation or shutdown holds the tasks for their final commit
        if (resumed || this.holdTasks) return;
        resumed = true;
        for (const h of live) if (!wasPaused.get(h) && !this.sessionSuspect && !h.closed) h.task!.resume();
      };
      // 1.
      for (const h of live) {
        wasPaused.set(h, h.task!.isPaused());
        h.task!.pause();
      }
      try {
        try {
          for (const h of live) await h.task!.quiesce();
          // 2.
          const next = new Map<TaskHandle, Map<string, number>>();
          for (const h of live) next.set(h, h.task!.committableOffsets());
          // 3.
          for (const h of live) await h.task!.flushStores();
          for (const h of live) h.state!.seal();
          const collectors = new Map<KafkaRecordCollector, number>();
          if (!fresh)
            for (const h of live) {
              const c = h.collector ?? this.collector!;
              if (!collectors.has(c)) collectors.set(c, c.mark());
            }
          // (the caches are clean now, so counting entries costs no extra flush)
          for (const h of live)
            for (const [name, st] of h.state!.stores)
              this.metrics.storeEntries.set({ store: name, task: h.task!.id }, await st.store.approximateNumEntries());
          for (const h of live) h.task!.processedSinceCommit = 0;
          if (!eos) resume();
          // 4.
          await Promise.all([...collectors].map(([c, position]) => c.flushUpTo(position)));
          const atMark = new Map<KafkaRecordCollector, ReadonlyMap<string, number> | undefined>();
          for (const [c, position] of collectors) atMark.set(c, c.ackedOffsetsAt(position));
          // 5.
          for (const h of live) {
            const consumed = next.get(h)!;
            const acked = fresh ? NOTHING_ACKED : atMark.get(h.collector ?? this.collector!);
            if (!acked && !eos)
              throw new StreamsError('COMMIT_MARK_LOST', 'the record collector no longer knows the commit mark', {
                retriable: true,
              });
            const pos = h.state!.commitPositions(consumed, acked);
            positions.set(h, pos);
            const metadata = encodeCommitMetadata({ v: 1, cl: Object.fromEntries(pos), st: h.task!.streamTime });
            const mine: typeof offsets = [];
            for (const [topic, offset] of consumed) mine.push({ topic, partition: h.partition, offset, metadata });
            taskOffsets.set(h, mine);
            offsets.push(...mine);
          }
        } finally {
          // at-least-once: resumed at step 3 (or here, if a step before failed);
          // exactly-once: nothing is sent until the transaction is over (step 6)
          if (!eos) resume();
        }
        // 6.
        if (eos) {
          // one transaction per task: its records (sent and acknowledged in step 4) and its input
          // offsets with the metadata; a task whose producer was fenced or whose transaction the
          // broker ended has lost its work since the last commit: every task is closed dirty.
          // Meanwhile the tasks go on processing into their write buffers and held collectors:
          // nothing they produce is sent before the transaction is over (it is the next one's)
          for (const h of live) h.collector?.hold();
          resume();
          try {
            await Promise.all(
              // (a task closed meanwhile, revoked or shut down, ended its transaction itself)
              live
                .filter((h) => !h.closed)
                .map(async (h) => {
                  const had = h.producer!.inTransaction();
                  await h.producer!.commit(this.config.applicationId, taskOffsets.get(h) ?? []);
                  if (had || taskOffsets.get(h)?.length) this.metrics.transactions.inc({ result: 'committed' });
                }),
            );
          } catch (e) {
            if (isTransactionLost(e)) {
              await this.recoverTasks(`transaction lost at commit (${reason})`, e);
              throw new TaskMigratedError(e);
            }
            throw e;
          }
        } else if (offsets.length) {
          try {
            await commitWithSession(session, offsets, { deadlineMs: this.config.sessionTimeoutMs });
          } catch (e) {
            if (isGenerationError(e)) {
              this.logger.info({ reason, err: (e as Error).message }, 'commit refused: the group moved on');
              await this.closeAllDirty('generation over at commit');
              throw new TaskMigratedError(e);
            }
            throw e;
          }
        }
      } catch (e) {
        if (eos && !(e instanceof TaskMigratedError) && isTransactionLost(e)) {
          await this.recoverTasks(`transaction lost at commit (${reason})`, e);
          throw new TaskMigratedError(e);
        }
        throw e;
      } finally {
        if (eos) {
          for (const h of live) h.collector?.release();
          resume();
        }
      }
      // 7. (a task's first commit: in the background, see TaskStateManager.commitLocal; its
      //    checkpoint only records where the restore ended, and an fsync under a busy disk took
      //    up to 0.8 s at start-up)
      //    Tasks write theirs side by side (each its own stores and checkpoint file).
      const local = live.filter((h) => !h.closed).map((h) => h.state!.commitLocal(positions.get(h)!));
      if (!fresh) await Promise.all(local);
      else
        for (const l of local)
          l.catch((e: unknown) =>
            this.logger.warn({ err: (e as Error).message }, 'checkpoint after a first commit failed'),
          );
      if (!fresh) this.lastCommit = Date.now();
      this.metrics.commits.inc({ result: 'ok' });
      this.metrics.commitLatency.observe((performance.now() - t0) / 1000);
      if (this.logger.isLevelEnabled('trace'))
        this.logger.trace(
          { reason, offsets: offsets.map((o) => `${o.topic.split('.').pop()}-${o.partition}@${o.offset}`) },
          'committed',
        );
      else this.logger.debug({ reason, partitions: offsets.length }, 'committed');
    };
    const done = run().catch((e) => {
      this.metrics.commits.inc({ result: 'failed' });
      if (!(e instanceof TaskMigratedError))
        this.logger.debug({ reason, err: (e as Error).message, coordinator: isCoordinatorError(e) }, 'commit failed');
      throw e;
    });
    if (fresh) return done;
    this.committing = done.finally(() => {
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

  /** Clean shutdown: suspend the tasks, commit, close them (state kept on disk), leave the group. */
  async close(): Promise<void> {
    if (this._state === 'NOT_RUNNING' || this._state === 'PENDING_SHUTDOWN') return;
    const wasError = this._state === 'ERROR';
    // a revocation in progress finishes first (it commits with the same protocol)
    await this.revoking?.catch(() => undefined);
    this.transition('PENDING_SHUTDOWN');
    if (this.wallClockTimer) clearInterval(this.wallClockTimer);
    if (!wasError) {
      try {
        this.holdTasks = true;
        for (const h of this.tasks.values()) h.task?.pause();
        await this.consumer?.pause(this.topology.sourceTopics().map((topic) => ({ topic })));
        await this.commit('shutdown');
        for (const h of this.tasks.values()) if (h.task?.state === 'RUNNING') await h.task.suspend();
      } catch (e) {
        if (!(e instanceof TaskMigratedError))
          this.logger.warn(
            { err: (e as Error).message },
            'final commit failed; uncommitted records will be reprocessed',
          );
      }
    }
    await this.shutdownClients();
    this.transition('NOT_RUNNING');
  }

  private async shutdownClients(): Promise<void> {
    if (this.wallClockTimer) clearInterval(this.wallClockTimer);
    const handles = [...this.tasks.values()];
    this.tasks.clear();
    // tasks still opening stop at their next step instead of committing or restoring further
    for (const h of handles) {
      h.closed = true;
      h.abort.abort(new StreamsError('TASK_CLOSED', `task 0_${h.partition} closed (shutdown)`, { retriable: true }));
    }
    await this.consumer?.disconnect().catch(() => undefined);
    for (const h of handles)
      await this.closeTask(h, h.task?.state === 'SUSPENDED' ? 'clean' : 'dirty', 'shutdown').catch(() => undefined);
    for (const r of this.globalReaders) await r.stop();
    await this.standby?.close().catch(() => undefined);
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}

/** The sum of a checkpoint file's offsets (0 if unreadable): how far a task's local state goes. */
function checkpointSum(file: string): number {
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { offsets?: Record<string, unknown> };
    let n = 0;
    for (const v of Object.values(doc.offsets ?? {})) if (typeof v === 'number' && Number.isFinite(v)) n += v;
    return n;
  } catch {
    return 0;
  }
}
