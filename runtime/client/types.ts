/**
 * A narrow Kafka client interface: what the engine needs from a client library, and nothing more
 * (issue 11, "Client cost"). A spike: the engine still uses kafkajs directly (streams.ts,
 * record-collector.ts, partition-reader.ts); two adapters implement this interface so that their
 * cost can be measured side by side (bench/clients.ts) and checked against a real broker
 * (test/integration/client-adapters.test.ts):
 *
 * - kafkajs-client.ts: kafkajs, as the engine uses it today;
 * - platformatic-client.ts: @platformatic/kafka (pure TypeScript, maintained).
 *
 * Shaped after the engine: the record collector picks every record's partition itself and sends
 * batches through one idempotent producer, acks=all, one request in flight; tasks read given
 * partitions from given offsets in batches and need each partition's high watermark (caught up or
 * not); offsets are committed explicitly. Group membership and partition assignment are not part of
 * this interface yet (the engine's assignor runs inside kafkajs' group protocol).
 *
 * Offsets are JavaScript numbers: exact up to 2^53, far beyond any partition's offsets here.
 */

/** A record as the engine produces it: the partition is always chosen by the caller. */
export interface OutgoingRecord {
  topic: string;
  partition: number;
  key: Buffer | null;
  value: Buffer | null;
  /** epoch milliseconds */
  timestamp: number;
  headers?: Record<string, Buffer>;
}

/** What the broker wrote for one partition of a send: `count` records from `baseOffset` on. */
export interface PartitionAck {
  topic: string;
  partition: number;
  baseOffset: number;
  count: number;
}

/** A record read from a partition. */
export interface IncomingRecord {
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  /** epoch milliseconds */
  timestamp: number;
  headers: Record<string, Buffer>;
}

/** Records of one partition, in offset order, as one fetch answered them. */
export interface PartitionBatch {
  topic: string;
  partition: number;
  /** possibly empty (control records, or only records before the start offset) */
  records: IncomingRecord[];
  /** where the next fetch of this partition starts */
  nextOffset: number;
  /** the partition's high watermark when the broker answered: caught up when nextOffset >= it */
  highWatermark: number;
}

export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  offset: number;
}

export interface ClientProducer {
  /**
   * Sends the records in one go (one request per broker), idempotent, acks=all; resolves when every
   * record is acknowledged, with one entry per (topic, partition) of the batch. Calls must not
   * overlap: the engine keeps one request in flight, and so do both adapters' sequence numbers.
   */
  send(records: readonly OutgoingRecord[]): Promise<PartitionAck[]>;
  close(): Promise<void>;
}

export interface ClientReader {
  /**
   * Reads the given partitions from the given offsets (manual assignment) and calls `onBatch` for
   * fetched batches; the next fetch of a partition waits for its call to resolve (calls for
   * different partitions may overlap). Runs until `stop()`; a failure of the client or of `onBatch` stops it and rejects
   * `done`.
   */
  start(from: readonly TopicPartitionOffset[], onBatch: (batch: PartitionBatch) => void | Promise<void>): void;
  /** settles when the reader has stopped */
  readonly done: Promise<void>;
  /**
   * Commits `offset` (the next one to read) for each partition, in this reader's group. Between
   * start() and stop(): kafkajs commits only as a member of the group, which its reader becomes
   * when started (the call waits for the join).
   */
  commit(offsets: readonly TopicPartitionOffset[]): Promise<void>;
  /** the group's committed offsets of the partitions (-1 where none) */
  committed(partitions: readonly { topic: string; partition: number }[]): Promise<TopicPartitionOffset[]>;
  stop(): Promise<void>;
}

export interface ReaderOptions {
  /** the group whose offsets `commit` writes */
  groupId: string;
  /** how long the broker may hold a fetch when there is nothing new (default 100, as the engine) */
  maxWaitMs?: number;
  /** per partition and fetch (default 2 MiB, as the engine) */
  maxBytesPerPartition?: number;
}

export interface StreamClient {
  /** which library: `kafkajs` or `platformatic` */
  readonly name: string;
  producer(): Promise<ClientProducer>;
  reader(opts: ReaderOptions): Promise<ClientReader>;
  close(): Promise<void>;
}

export interface ClientConfig {
  clientId: string;
  brokers: string[];
}
