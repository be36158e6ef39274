/**
 * Reading partitions by manual assignment, outside any consumer group: what Kafka Streams' restore,
 * global and standby consumers do with `assign()`.
 *
 * kafkajs has no manual assignment, so these readers used to be consumers alone in a group of their
 * own. Joining that group cost a FindCoordinator, JoinGroup and SyncGroup round, and a broker
 * delays the first rebalance of an empty group by `group.initial.rebalance.delay.ms` (3 s by
 * default): on a broker with Kafka's defaults every task restore, every global table and every
 * standby follower waited 3 s before its first fetch (an instance was RUNNING 14 s after start
 * instead of 4 s, and a task moved by a fail-over restored 3 s late). The reader here fetches from
 * the partitions' leaders itself through kafkajs' own cluster object (metadata, connections,
 * SASL/TLS, the Fetch request and its record decoding are kafkajs'); it keeps the positions.
 *
 * Reads are `read_committed` (records of aborted transactions and transaction markers are skipped;
 * a partition's end is its last stable offset). A position moves past every record batch a fetch
 * returned, markers and batches emptied by compaction included.
 */
import { createRequire } from 'node:module';
import type { Kafka, KafkaMessage } from 'kafkajs';
import { withRetries } from './retry.js';
import type { RawRecord } from './task.js';

const require = createRequire(import.meta.url);
const READ_COMMITTED = 1;

interface PartitionData {
  partition: number;
  highWatermark: string;
  lastStableOffset?: string;
  messages: (KafkaMessage & {
    isControlRecord?: boolean;
    batchContext?: { firstOffset: string; lastOffsetDelta: number };
  })[];
  abortedTransactions?: unknown[];
}

interface FetchBroker {
  fetch(req: {
    replicaId?: number;
    isolationLevel: number;
    maxWaitTime: number;
    minBytes: number;
    maxBytes: number;
    topics: { topic: string; partitions: { partition: number; fetchOffset: string; maxBytes: number }[] }[];
  }): Promise<{ responses: { topicName: string; partitions: PartitionData[] }[] }>;
}

/** The parts of kafkajs' internal Cluster used here. */
interface Cluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  refreshMetadata(): Promise<void>;
  refreshMetadataIfNecessary(): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(req: { nodeId: string }): Promise<FetchBroker>;
  fetchTopicsOffset(
    topics: { topic: string; partitions: { partition: number }[]; fromBeginning: boolean }[],
  ): Promise<{ topic: string; partitions: { partition: number; offset: string }[] }[]>;
  removeBroker(req: { host: string; port: number }): void;
}

type FetchedMessage = PartitionData['messages'][number];

/** kafkajs' filter of the records of aborted transactions (by the fetch's aborted-transaction list). */
const filterAborted = require('kafkajs/src/consumer/filterAbortedMessages.js') as (a: {
  messages: FetchedMessage[];
  abortedTransactions: unknown[];
}) => FetchedMessage[];

/** A cluster object of kafkajs, made by the client with its own settings (brokers, SASL, TLS). */
function clusterOf(kafka: Kafka): Cluster {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.description === 'private:Kafka:createCluster');
  const create = sym ? (kafka as unknown as Record<symbol, unknown>)[sym] : undefined;
  if (typeof create !== 'function')
    throw new Error('kafkajs internals changed: the client has no cluster factory (private:Kafka:createCluster)');
  return (create as (o: object) => Cluster)({
    allowAutoTopicCreation: false,
    isolationLevel: READ_COMMITTED,
    maxInFlightRequests: null,
  });
}

/** What one fetch brought for one partition. */
export interface FetchedPartition {
  topic: string;
  partition: number;
  /** the records from the position on (aborted ones and transaction markers left out) */
  records: RawRecord[];
  /** the position after this fetch (past markers and compacted-away records too) */
  next: number;
  /** the partition's end: its last stable offset (the high watermark when no transaction is open) */
  end: number;
}

export interface AssignedReaderOptions {
  /** longest a fetch waits at the broker for records (ms) */
  maxWaitMs?: number;
  /** most bytes a fetch response holds */
  maxBytes?: number;
  /** most bytes per partition in a fetch response (a larger first batch still comes whole) */
  maxBytesPerPartition?: number;
  /** give up after failing this long without one good fetch (ms); default 5 minutes */
  failAfterMs?: number;
  /** told about each retriable failure before the reader retries */
  onRetry?: (e: Error, attempt: number) => void;
}

interface Assigned {
  topic: string;
  partition: number;
  position: number;
  paused: boolean;
  /** bumped at every seek: a fetch answer for an older epoch is dropped */
  epoch: number;
}

const RETRIABLE_NAMES = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSRequestTimeoutError',
  'KafkaJSLockTimeout',
  'KafkaJSNumberOfRetriesExceeded',
  'KafkaJSStaleTopicMetadataAssignment',
]);

function isRetriable(e: unknown): boolean {
  const err = e as { retriable?: boolean; name?: string; message?: string };
  if (err.retriable) return true;
  if (err.name && RETRIABLE_NAMES.has(err.name)) return true;
  // findLeaderForPartitions while a partition has no leader (an election)
  return err.name === 'KafkaJSError' && /Invalid partition metadata/.test(err.message ?? '');
}

const key = (topic: string, partition: number) => `${topic}:${partition}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fetched kafkajs message as the engine's raw record. */
export function toRawRecord(m: KafkaMessage): RawRecord {
  const r: RawRecord = {
    key: m.key ?? null,
    value: m.value ?? null,
    timestamp: Number(m.timestamp),
    offset: Number(m.offset),
  };
  if (m.headers && Object.keys(m.headers).length) r.headers = m.headers as RawRecord['headers'];
  return r;
}

/**
 * A group-less reader of assigned partitions. `fetch()` asks every leader of the assigned,
 * unpaused partitions at once and returns what came back; calls must not overlap.
 */
export class AssignedReader {
  private readonly cluster: Cluster;
  private readonly assigned = new Map<string, Assigned>();
  private readonly topics = new Set<string>();
  private readonly opts: Required<Omit<AssignedReaderOptions, 'onRetry'>> & Pick<AssignedReaderOptions, 'onRetry'>;
  private connected = false;
  private closed = false;
  private failingSince: number | undefined;
  private attempt = 0;
  /** a fatal failure met while other leaders answered: thrown at the next fetch */
  private pending: unknown;

  constructor(kafka: Kafka, opts: AssignedReaderOptions = {}) {
    this.cluster = clusterOf(kafka);
    this.opts = {
      maxWaitMs: opts.maxWaitMs ?? 500,
      maxBytes: opts.maxBytes ?? 10 * 1024 * 1024,
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 1024 * 1024,
      failAfterMs: opts.failAfterMs ?? 5 * 60_000,
      onRetry: opts.onRetry,
    };
  }

  async connect(): Promise<void> {
    if (this.connected) return;
    // a broker restarting or a leader election: retried, as kafkajs' consumer retries its connect
    await withRetries('connecting a group-less reader', () => this.cluster.connect());
    this.connected = true;
  }

  /** Reads `topic`/`partition` from `offset` on (assigning it again moves its position). */
  async assign(topic: string, partition: number, offset: number): Promise<void> {
    if (!this.topics.has(topic)) {
      await withRetries(`metadata of ${topic}`, () => this.cluster.addMultipleTargetTopics([...this.topics, topic]));
      this.topics.add(topic);
    }
    const k = key(topic, partition);
    const a = this.assigned.get(k);
    if (a) {
      a.position = offset;
      a.epoch++;
    } else this.assigned.set(k, { topic, partition, position: offset, paused: false, epoch: 0 });
  }

  unassign(topic: string, partition: number): void {
    this.assigned.delete(key(topic, partition));
  }

  isAssigned(topic: string, partition: number): boolean {
    return this.assigned.has(key(topic, partition));
  }

  position(topic: string, partition: number): number | undefined {
    return this.assigned.get(key(topic, partition))?.position;
  }

  pause(topic: string, partition: number): void {
    const a = this.assigned.get(key(topic, partition));
    if (a) a.paused = true;
  }

  resume(topic: string, partition: number): void {
    const a = this.assigned.get(key(topic, partition));
    if (a) a.paused = false;
  }

  /** Whether any assigned partition is not paused. */
  active(): boolean {
    for (const a of this.assigned.values()) if (!a.paused) return true;
    return false;
  }

  /**
   * One fetch from every leader of the assigned, unpaused partitions, side by side. Resolves with
   * the partitions that answered (positions already moved past what they returned). With nothing
   * to fetch it waits `maxWaitMs` and returns nothing. A retriable failure (a leader moving, a
   * broker down) refreshes the metadata and returns nothing after a back-off; the reader fails
   * only when no fetch has succeeded for `failAfterMs`.
   */
  async fetch(signal?: AbortSignal): Promise<FetchedPartition[]> {
    if (this.closed) return [];
    if (this.pending !== undefined) {
      const e = this.pending;
      this.pending = undefined;
      throw e;
    }
    const wanted = [...this.assigned.values()].filter((a) => !a.paused);
    if (!wanted.length) {
      await sleep(this.opts.maxWaitMs);
      return [];
    }
    try {
      await this.cluster.refreshMetadataIfNecessary();
      const byLeader = new Map<string, Assigned[]>();
      const byTopic = new Map<string, Assigned[]>();
      for (const a of wanted) {
        let l = byTopic.get(a.topic);
        if (!l) byTopic.set(a.topic, (l = []));
        l.push(a);
      }
      let unled = 0;
      for (const [topic, list] of byTopic) {
        const leaders = this.cluster.findLeaderForPartitions(
          topic,
          list.map((a) => a.partition),
        );
        let found = 0;
        for (const [nodeId, partitions] of Object.entries(leaders)) {
          let l = byLeader.get(nodeId);
          if (!l) byLeader.set(nodeId, (l = []));
          for (const p of partitions) {
            l.push(this.assigned.get(key(topic, p))!);
            found++;
          }
        }
        unled += list.length - found;
      }
      if (unled) {
        // partitions the metadata does not know yet (a topic just created): look again
        await this.cluster.refreshMetadata();
        if (!byLeader.size)
          throw Object.assign(new Error(`no leader known for ${unled} partitions`), { retriable: true });
      }
      // every leader's answer is kept even when another leader's request fails: the positions of
      // the partitions that answered have moved past their records already
      const settled = await Promise.allSettled(
        [...byLeader].map(([nodeId, list]) => this.fetchFrom(nodeId, list, signal)),
      );
      const got: FetchedPartition[] = [];
      let failure: unknown;
      for (const r of settled) {
        if (r.status === 'fulfilled') got.push(...r.value);
        else failure ??= r.reason;
      }
      if (failure === undefined) {
        this.failingSince = undefined;
        this.attempt = 0;
        return got;
      }
      if (!got.length) throw failure;
      // some answered: theirs now, the failure handled without a back-off (a fatal one is thrown
      // at the next fetch)
      await this.recover(failure, false).catch((e: unknown) => {
        this.pending = e;
      });
      return got;
    } catch (e) {
      if (this.closed) return [];
      return this.recover(e, true).then(() => []);
    }
  }

  /** After a failed fetch: moves past a position out of range, refreshes, backs off; throws if fatal. */
  private async recover(e: unknown, backOff: boolean): Promise<void> {
    const err = e as Error & { type?: string; topic?: string; partition?: number };
    if (err.name === 'KafkaJSOffsetOutOfRange' && err.topic !== undefined && err.partition !== undefined) {
      await this.resetOutOfRange(err.topic, err.partition);
      return;
    }
    if (err.name === 'KafkaJSConnectionClosedError') {
      const c = err as unknown as { host?: string; port?: number };
      if (c.host && c.port) this.cluster.removeBroker({ host: c.host, port: c.port });
    }
    if (!isRetriable(err)) throw err;
    this.failingSince ??= Date.now();
    if (Date.now() - this.failingSince > this.opts.failAfterMs) throw err;
    this.attempt++;
    this.opts.onRetry?.(err, this.attempt);
    if (backOff) await sleep(Math.min(2000, 100 * 2 ** Math.min(this.attempt - 1, 5)));
    await this.cluster.refreshMetadata().catch(() => undefined);
  }

  private async fetchFrom(nodeId: string, list: Assigned[], signal?: AbortSignal): Promise<FetchedPartition[]> {
    signal?.throwIfAborted();
    const broker = await this.cluster.findBroker({ nodeId });
    const asked = new Map(list.map((a) => [key(a.topic, a.partition), { a, position: a.position, epoch: a.epoch }]));
    const topics = new Map<string, { partition: number; fetchOffset: string; maxBytes: number }[]>();
    for (const a of list) {
      let l = topics.get(a.topic);
      if (!l) topics.set(a.topic, (l = []));
      l.push({ partition: a.partition, fetchOffset: String(a.position), maxBytes: this.opts.maxBytesPerPartition });
    }
    const res = await broker.fetch({
      replicaId: -1,
      isolationLevel: READ_COMMITTED,
      maxWaitTime: this.opts.maxWaitMs,
      minBytes: 1,
      maxBytes: this.opts.maxBytes,
      topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })),
    });
    const out: FetchedPartition[] = [];
    for (const t of res.responses) {
      for (const p of t.partitions) {
        const q = asked.get(key(t.topicName, p.partition));
        // unassigned or sought elsewhere while the fetch was out: the answer is stale
        if (!q || this.assigned.get(key(t.topicName, p.partition)) !== q.a || q.a.epoch !== q.epoch) continue;
        const lso = Number(p.lastStableOffset);
        const hw = Number(p.highWatermark);
        const end = Number.isFinite(lso) && lso >= 0 ? Math.min(lso, hw) : hw;
        // the position passes every batch returned (markers, compacted gaps); the records are
        // those from the position on, without aborted ones and markers (what kafkajs' Batch keeps,
        // without its Long per record)
        let next = q.position;
        let from: FetchedMessage[] = [];
        for (const m of p.messages) {
          const ctx = m.batchContext;
          const offset = Number(m.offset);
          const last = ctx ? Number(ctx.firstOffset) + ctx.lastOffsetDelta : offset;
          if (last + 1 > next) next = last + 1;
          if (offset >= q.position) from.push(m);
        }
        if (p.abortedTransactions?.length)
          from = filterAborted({ messages: from, abortedTransactions: p.abortedTransactions });
        const records: RawRecord[] = [];
        for (const m of from) if (!m.isControlRecord) records.push(toRawRecord(m));
        q.a.position = next;
        out.push({ topic: t.topicName, partition: p.partition, records, next, end });
      }
    }
    return out;
  }

  /** A position outside the log (records deleted by retention): on from the log start, or its end. */
  private async resetOutOfRange(topic: string, partition: number): Promise<void> {
    const a = this.assigned.get(key(topic, partition));
    if (!a) return;
    const [earliest = 0, latest = 0] = await Promise.all(
      [true, false].map(async (fromBeginning) => {
        const r = await this.cluster.fetchTopicsOffset([{ topic, partitions: [{ partition }], fromBeginning }]);
        return Number(r[0]?.partitions.find((p) => p.partition === partition)?.offset ?? 0);
      }),
    );
    a.position = a.position < earliest ? earliest : Math.min(a.position, latest);
    a.epoch++;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.assigned.clear();
    if (this.connected) await this.cluster.disconnect().catch(() => undefined);
  }
}
