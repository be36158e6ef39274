/**
 * The runtime's configuration: one frozen object, validated at start. A bad setting fails with a
 * ConfigError naming the setting.
 */
import { z } from 'zod';
import { ConfigError } from './errors.js';

const sasl = z
  .object({
    mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
    username: z.string().min(1),
    password: z.string().min(1),
  })
  .strict();

const ssl = z
  .object({
    /** PEM CA bundle contents (not a path) */
    ca: z.string().optional(),
    cert: z.string().optional(),
    key: z.string().optional(),
    rejectUnauthorized: z.boolean().default(true),
  })
  .strict();

export const streamsConfigSchema = z
  .object({
    /** consumer group id, prefix of internal topics, state directory name */
    applicationId: z
      .string()
      .min(1)
      .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only'),
    brokers: z.array(z.string().regex(/^[^:\s]+:\d+$/, 'host:port')).min(1),
    /** Kafka client id prefix (default: the applicationId) */
    clientId: z.string().min(1).optional(),
    /** identifies this instance in logs, metrics and the group */
    instanceId: z.string().min(1).default(`instance-${process.pid}`),
    stateDir: z.string().min(1),
    /** how often tasks commit; default 5000 (at-least-once) or 100 (exactly-once, as Kafka Streams) */
    commitIntervalMs: z.number().int().min(10).max(600_000).optional(),
    /**
     * how long a task waits for a partition that is empty AND caught up before going on without
     * it (a partition the broker holds more of is always waited for); 0 = go on at once
     */
    maxTaskIdleMs: z.number().int().min(0).max(60_000).default(0),
    /**
     * Kafka Streams' metrics.recording.level: INFO records task, commit, produce and application
     * metrics; DEBUG adds the state stores' per-operation latency (a timer and a histogram
     * observation on every store read and write)
     */
    metricsRecordingLevel: z.enum(['INFO', 'DEBUG']).default('INFO'),
    /** the most one record moves stream time forward (a record stamped far ahead cannot purge state) */
    maxStreamTimeJumpMs: z.number().int().min(1).default(86_400_000),
    /**
     * per source partition: the most one fetch brings (the consumer's max.partition.fetch.bytes;
     * a record batch larger than this still comes whole)
     */
    maxFetchBytesPerPartition: z
      .number()
      .int()
      .min(1024)
      .default(1024 * 1024),
    /** per source partition: fetching pauses above this many buffered bytes */
    maxBufferedBytesPerPartition: z
      .number()
      .int()
      .min(64 * 1024)
      .default(4 * 1024 * 1024),
    cacheMaxEntries: z.number().int().min(0).default(10_000),
    /**
     * RocksDB block cache of the instance's stores together, split evenly over the RocksDB
     * instances it can hold (stores per task × partitions); unset: the binding's 8 MiB per store
     */
    rocksdbCacheBytes: z.number().int().min(0).optional(),
    /**
     * RocksDB memtables of the instance's stores together (each store: 2 × write_buffer_size),
     * split the same way; unset: the binding's 4 MiB write buffer per store
     */
    rocksdbWriteBufferBytes: z.number().int().min(0).optional(),
    maxBatchRecords: z.number().int().min(1).max(100_000).default(1000),
    partitionsConsumedConcurrently: z.number().int().min(1).max(1024).default(64),
    sessionTimeoutMs: z.number().int().min(1000).default(30_000),
    /** how long the group waits for members to rejoin during a rebalance */
    rebalanceTimeoutMs: z.number().int().min(1000).default(60_000),
    heartbeatIntervalMs: z.number().int().min(100).default(3000),
    processingGuarantee: z.enum(['at_least_once', 'exactly_once']).default('at_least_once'),
    /** warm copies of each task's stores kept on other instances (Kafka Streams' num.standby.replicas) */
    numStandbyReplicas: z.number().int().min(0).max(10).default(0),
    /** how often standby tasks apply what the active tasks have committed */
    standbyIntervalMs: z.number().int().min(50).max(60_000).default(1000),
    /** exactly-once: the broker aborts a task's transaction open longer than this */
    transactionTimeoutMs: z.number().int().min(1000).max(900_000).default(10_000),
    deserializationErrorPolicy: z.enum(['dlq', 'fail']).default('dlq'),
    processingErrorPolicy: z.enum(['dlq', 'fail']).default('dlq'),
    /** dead-letter topic; default `<applicationId>-dlq` */
    dlqTopic: z.string().min(1).optional(),
    /** partitions and replication of internal topics the runtime creates */
    replicationFactor: z.number().int().min(1).default(1),
    /** this instance's HTTP address as other instances reach it, for forwarded queries */
    advertisedUrl: z.string().url().optional(),
    sasl: sasl.optional(),
    ssl: z.union([z.literal(true), ssl]).optional(),
    connectionTimeoutMs: z.number().int().min(100).default(3000),
  })
  .strict();

export type StreamsConfigInput = z.input<typeof streamsConfigSchema>;
export type StreamsConfig = Readonly<
  z.output<typeof streamsConfigSchema> & { clientId: string; dlqTopic: string; commitIntervalMs: number }
>;

/** Validates and freezes. Throws ConfigError naming the first bad setting. */
export function streamsConfig(input: StreamsConfigInput): StreamsConfig {
  const r = streamsConfigSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const setting =
      issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]].join('.') : issue.path.join('.') || '(root)';
    throw new ConfigError(setting, issue.message);
  }
  const eos = r.data.processingGuarantee === 'exactly_once';
  const commitIntervalMs = r.data.commitIntervalMs ?? (eos ? 100 : 5000);
  if (eos && r.data.transactionTimeoutMs <= commitIntervalMs)
    throw new ConfigError(
      'transactionTimeoutMs',
      `must be longer than the commit interval (${commitIntervalMs} ms): a transaction stays open between commits`,
    );
  const cfg = {
    ...r.data,
    commitIntervalMs,
    clientId: r.data.clientId ?? r.data.applicationId,
    dlqTopic: r.data.dlqTopic ?? `${r.data.applicationId}-dlq`,
  };
  return Object.freeze(cfg);
}

/** kafkajs client options for the security settings. */
export function kafkaSecurity(cfg: Pick<StreamsConfig, 'sasl' | 'ssl'>): {
  ssl?: boolean | { ca?: string[]; cert?: string; key?: string; rejectUnauthorized: boolean };
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
} {
  const out: ReturnType<typeof kafkaSecurity> = {};
  if (cfg.ssl === true) out.ssl = true;
  else if (cfg.ssl) {
    out.ssl = { rejectUnauthorized: cfg.ssl.rejectUnauthorized };
    if (cfg.ssl.ca) out.ssl.ca = [cfg.ssl.ca];
    if (cfg.ssl.cert) out.ssl.cert = cfg.ssl.cert;
    if (cfg.ssl.key) out.ssl.key = cfg.ssl.key;
  }
  if (cfg.sasl) out.sasl = { ...cfg.sasl };
  return out;
}
