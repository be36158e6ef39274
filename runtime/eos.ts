/**
 * Exactly-once: one transactional producer per task (`transactionalId = <app>-<taskId>`).
 *
 * Why one per task and not one per process (Kafka Streams' exactly_once_v2, KIP-447): v2 fences a
 * zombie through the consumer group's generation, which the transactional offset commit carries
 * (TxnOffsetCommit v3+). kafkajs sends TxnOffsetCommit v0 without member id or generation, so a
 * process-wide producer could not be fenced when its tasks move. A transactional id per task is
 * stable across owners: the task's new owner initialises the same id, which bumps the epoch, aborts
 * whatever transaction the previous owner left open and fences that owner's producer (its next
 * send, offset commit or EndTxn is refused). The price is a producer (and its connections) per task.
 *
 * A transaction begins lazily on the first send after a commit; `commit()` puts the task's input
 * offsets (with the commit metadata) into it and ends it. `abort()` ends it without effect.
 */
import type { Kafka, Producer, ProducerBatch, RecordMetadata, Transaction } from 'kafkajs';
import { StreamsError } from './errors.js';
import { withRetries } from './retry.js';

/** Broker errors that mean another producer with this transactional id has taken over. */
const FENCED = new Set([
  'PRODUCER_FENCED',
  'INVALID_PRODUCER_EPOCH',
  'INVALID_PRODUCER_ID_MAPPING',
  'TRANSACTIONAL_ID_NOT_FOUND',
]);

/** Errors that end the transaction: the broker aborted it (timeout) or its state is lost. */
const TXN_LOST = new Set(['INVALID_TXN_STATE', 'UNKNOWN_PRODUCER_ID', 'OUT_OF_ORDER_SEQUENCE_NUMBER']);

function errorType(e: unknown): string | undefined {
  for (
    let c: unknown = e, i = 0;
    c && i < 8;
    c = (c as { cause?: unknown; originalError?: unknown }).cause ?? (c as { originalError?: unknown }).originalError,
      i++
  ) {
    const t = (c as { type?: unknown }).type;
    if (typeof t === 'string') return t;
  }
  return undefined;
}

/** Whether an error (or one it wraps) means the task's transaction is over: fenced, timed out, or refused. */
export function isTransactionLost(e: unknown): boolean {
  for (let c: unknown = e, i = 0; c && i < 8; c = (c as { cause?: unknown }).cause, i++)
    if (c instanceof StreamsError && (c.code === 'TASK_FENCED' || c.code === 'TRANSACTION_LOST')) return true;
  const t = errorType(e);
  return t !== undefined && (FENCED.has(t) || TXN_LOST.has(t));
}

/** The task's transaction ended without effect; the task must be closed dirty and opened again. */
export function transactionLostError(taskId: string, e: unknown): StreamsError {
  const t = errorType(e);
  const fenced = t !== undefined && FENCED.has(t);
  return new StreamsError(
    fenced ? 'TASK_FENCED' : 'TRANSACTION_LOST',
    fenced
      ? `task ${taskId}: another producer took over its transactional id (${t})`
      : `task ${taskId}: its transaction is over (${t ?? (e as Error)?.message})`,
    { retriable: true, cause: e },
  );
}

/** Broker answers to a transactional request that mean "again, in a moment" (nothing changed). */
const TRANSIENT = new Set([
  'CONCURRENT_TRANSACTIONS',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR',
  'REQUEST_TIMED_OUT',
]);

async function retryTransactional<T>(fn: () => Promise<T>, budgetMs: number): Promise<T> {
  const deadline = Date.now() + budgetMs;
  let delay = 20;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      const t = errorType(e);
      const transient =
        (t !== undefined && TRANSIENT.has(t)) || (e as { name?: string }).name === 'KafkaJSConnectionError';
      if (!transient || Date.now() + delay > deadline) throw e;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 500);
    }
  }
}

export interface TaskProducerOptions {
  kafka: Kafka;
  applicationId: string;
  taskId: string;
  transactionTimeoutMs: number;
}

export interface OffsetToCommit {
  topic: string;
  partition: number;
  offset: number;
  metadata: string | null;
}

export class TaskProducer {
  readonly transactionalId: string;
  private producer: Producer | undefined;
  private txn: Transaction | undefined;
  private beginning: Promise<Transaction> | undefined;
  private closed = false;
  /** transactions committed and aborted (for tests and metrics) */
  readonly stats = { commits: 0, aborts: 0, empty: 0 };

  constructor(private readonly opts: TaskProducerOptions) {
    this.transactionalId = `${opts.applicationId}-${opts.taskId}`;
  }

  /**
   * Connects and initialises the transactional id: from here on the previous owner's producer is
   * fenced and no transaction of it is pending (InitProducerId returns only once the coordinator
   * has aborted it), so the committed offsets read after this are final.
   */
  async init(): Promise<void> {
    const p = this.opts.kafka.producer({
      idempotent: true,
      transactionalId: this.transactionalId,
      transactionTimeout: this.opts.transactionTimeoutMs,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      // retriable errors (CONCURRENT_TRANSACTIONS while the previous transaction's markers are
      // written, leader moves) are retried by kafkajs for longer than the transaction timeout: a
      // request it gives up on may be half written, so the collector gives the transaction up
      retry: { retries: 40, initialRetryTime: 50, maxRetryTime: 500 },
    });
    this.producer = p;
    await withRetries('connecting a task producer', () => p.connect(), { attempts: 30, maxDelayMs: 1000 });
    // the first transaction() runs InitProducerId for the transactional id; an empty transaction
    // ends locally without a request
    await withRetries(
      'initialising the transactional id',
      async () => {
        const t = await p.transaction();
        await t.abort();
      },
      { attempts: 30, maxDelayMs: 1000 },
    );
  }

  private begin(): Promise<Transaction> {
    if (this.txn) return Promise.resolve(this.txn);
    if (!this.producer || this.closed)
      return Promise.reject(new StreamsError('PRODUCER_CLOSED', `task producer ${this.transactionalId} is closed`));
    this.beginning ??= this.producer.transaction().then(
      (t) => {
        this.txn = t;
        this.beginning = undefined;
        return t;
      },
      (e) => {
        this.beginning = undefined;
        throw e;
      },
    );
    return this.beginning;
  }

  /** The record collector's producer: sends inside the current transaction (begun if needed). */
  async sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]> {
    const t = await this.begin();
    return t.sendBatch(batch);
  }

  /** Whether a transaction is open (records were sent since the last commit). */
  inTransaction(): boolean {
    return this.txn !== undefined;
  }

  /**
   * Commits the open transaction with these input offsets (begun if only offsets moved). Throws a
   * `TASK_FENCED` / `TRANSACTION_LOST` StreamsError when the transaction cannot be committed.
   */
  async commit(groupId: string, offsets: OffsetToCommit[]): Promise<void> {
    if (!this.txn && !offsets.length) {
      this.stats.empty++;
      return;
    }
    try {
      const t = await this.begin();
      if (offsets.length) {
        const byTopic = new Map<string, { partition: number; offset: string; metadata: string | null }[]>();
        for (const o of offsets) {
          let l = byTopic.get(o.topic);
          if (!l) byTopic.set(o.topic, (l = []));
          l.push({ partition: o.partition, offset: String(o.offset), metadata: o.metadata });
        }
        const topics = [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
        // kafkajs sends AddOffsetsToTxn without retrying it; the coordinator answers
        // CONCURRENT_TRANSACTIONS while it still writes the previous transaction's markers (our
        // commits are 100 ms apart). Both requests are idempotent: retried here, briefly
        await retryTransactional(
          () => t.sendOffsets({ consumerGroupId: groupId, topics }),
          this.opts.transactionTimeoutMs / 2,
        );
      }
      await t.commit();
      this.txn = undefined;
      this.stats.commits++;
    } catch (e) {
      // whatever failed (a fenced producer, a broker that went away mid-EndTxn and left kafkajs'
      // transaction state in COMMITTING), this transaction cannot be finished here: the task is
      // closed dirty and opened again, and its new producer's initialisation ends the transaction
      // (if EndTxn did reach the coordinator, the commit stands and the offsets show it)
      throw isTransactionLost(e)
        ? transactionLostError(this.opts.taskId, e)
        : new StreamsError(
            'TRANSACTION_LOST',
            `task ${this.opts.taskId}: its transaction could not be committed (${(e as Error)?.message})`,
            { retriable: true, cause: e },
          );
    }
  }

  /** Aborts the open transaction, if any (best effort: a fenced producer cannot). */
  async abort(): Promise<void> {
    const t = this.txn ?? (await this.beginning?.catch(() => undefined));
    this.txn = undefined;
    if (!t) return;
    this.stats.aborts++;
    await t.abort().catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.producer?.disconnect().catch(() => undefined);
  }
}
