/**
 * Topic I/O of the engine-correctness tests, all through the real broker and registry: creating
 * a service's topics, producing scenarios (key = mailboxId, Avro, record timestamp = event time,
 * acks=all), reading inputs and outputs back decoded, and watching progress from outside (end
 * offsets, the group's committed offsets).
 */
import { Kafka, logLevel, type Admin, type ITopicConfig, type Producer } from 'kafkajs';
import { ensureTopics, registryFor } from '../../cli/app.js';
import { loadConfig, type AppConfig } from '../../cli/config.js';
import type {
  Decision,
  MailEvent,
  TenantPolicy,
  UserInteraction,
  UserPreferences,
} from '../../processors/logic/model.js';
import { mailSerdes, type MailSerdes } from '../../topology/serdes.js';
import { topicNames, topicSpecs, type Topics } from '../../topology/topics.js';
import { readAll, type ReadRecord } from '../integration/helpers.js';
import type { SeededPreferences } from './scenario.js';

export interface ServiceTopics {
  prefix: string;
  appId: string;
  topics: Topics;
  serdes: MailSerdes;
  kafka: Kafka;
  /** env settings shared by every instance of this service (add UM_STATE_DIR, UM_INSTANCE_ID) */
  env: Record<string, string>;
}

export function testKafka(brokers: string[], clientId = 'engine-test'): Kafka {
  return new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.NOTHING,
    // brokers are killed in the fault tests: keep retrying while leadership moves
    retry: { retries: 30, initialRetryTime: 200, maxRetryTime: 2000 },
  });
}

/**
 * Creates the topics of a fresh service (prefix + app id) and registers the schemas.
 * `decisionsLogAppendTime`: mail-decisions records are stamped by the broker when appended, so a
 * decision's record timestamp tells when it arrived (the service writes the mail's event time).
 */
export async function createService(o: {
  brokers: string[];
  registryUrl: string;
  prefix: string;
  appId: string;
  partitions?: number;
  replicationFactor?: number;
  commitIntervalMs?: number;
  decisionsLogAppendTime?: boolean;
}): Promise<ServiceTopics> {
  const env: Record<string, string> = {
    KAFKA_BROKERS: o.brokers.join(','),
    SCHEMA_REGISTRY_URL: o.registryUrl,
    UM_TOPIC_PREFIX: o.prefix,
    UM_APP_ID: o.appId,
    UM_PARTITIONS: String(o.partitions ?? 6),
    UM_REPLICATION_FACTOR: String(o.replicationFactor ?? 1),
    UM_COMMIT_INTERVAL_MS: String(o.commitIntervalMs ?? 500),
    // a killed instance's tasks move after 10 s instead of 30
    UM_SESSION_TIMEOUT_MS: '10000',
    UM_LOG_LEVEL: 'info',
    // decisions go to mail-decisions (LIVE) whatever the rollout default becomes
    UM_DEFAULT_MODE: 'LIVE',
    UM_HTTP_HOST: '127.0.0.1',
    UM_HTTP_PORT: '0',
  };
  const cfg: AppConfig = loadConfig({ ...env, UM_STATE_DIR: '/nonexistent' });
  const kafka = testKafka(o.brokers);
  const topics = topicNames(o.prefix);
  // The topics of the spec, as `ensureTopics` creates them (it then finds nothing missing), except:
  // user-preferences is compacted; event times span weeks, and Kafka rolls segments by record
  // timestamp (segment.ms), so the cleaner would remove superseded versions during the test. The
  // tests read every version written: no time-based roll here (the active segment is never cleaned).
  // And mail-decisions, with `decisionsLogAppendTime`, is stamped by the broker.
  const created: ITopicConfig[] = topicSpecs(topics).map((spec) => ({
    topic: spec.topic,
    numPartitions: spec.coPartitioned || !spec.compact ? cfg.partitions : 1,
    replicationFactor: cfg.replicationFactor,
    configEntries: [
      { name: 'cleanup.policy', value: spec.compact ? 'compact' : 'delete' },
      ...(spec.topic === topics.userPreferences ? [{ name: 'segment.ms', value: String(10 * 365 * 86_400_000) }] : []),
      ...(spec.topic === topics.mailDecisions && o.decisionsLogAppendTime
        ? [{ name: 'message.timestamp.type', value: 'LogAppendTime' }]
        : []),
    ],
  }));
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: false, topics: created });
    // wait for leaders here: on a fresh broker the metadata can answer "unknown topic" for a moment,
    // which kafkajs' waitForLeaders does not retry
    const names = created.map((t) => t.topic);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const md = await admin.fetchTopicMetadata({ topics: names }).catch(() => undefined);
      if (md?.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) break;
      if (Date.now() > deadline) throw new Error(`no leaders for ${names.join(', ')} after 30 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await admin.disconnect();
  }
  await ensureTopics(kafka, cfg);
  const serdes = mailSerdes(registryFor(cfg), topics);
  await Promise.all([
    serdes.mailEvents.init(),
    serdes.userInteractions.init(),
    serdes.userPreferences.init(),
    serdes.tenantPolicies.init(),
    serdes.mailDecisions.init(),
  ]);
  return { prefix: o.prefix, appId: o.appId, topics, serdes, kafka, env };
}

export async function withProducer<T>(kafka: Kafka, fn: (p: Producer) => Promise<T>): Promise<T> {
  const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await p.connect();
  try {
    return await fn(p);
  } finally {
    await p.disconnect();
  }
}

const CHUNK = 2000;

/** `chunk`: records per produce request (the batch layout on the broker; the records are the same). */
export async function sendMails(
  p: Producer,
  s: ServiceTopics,
  mails: readonly MailEvent[],
  chunk = CHUNK,
): Promise<void> {
  for (let i = 0; i < mails.length; i += chunk)
    await p.send({
      topic: s.topics.mailEvents,
      acks: -1,
      messages: mails.slice(i, i + chunk).map((m) => ({
        key: m.mailboxId,
        value: s.serdes.mailEvents.serialize(s.topics.mailEvents, m),
        timestamp: String(m.receivedAt),
      })),
    });
}

export async function sendInteractions(
  p: Producer,
  s: ServiceTopics,
  interactions: readonly UserInteraction[],
  chunk = CHUNK,
): Promise<void> {
  for (let i = 0; i < interactions.length; i += chunk)
    await p.send({
      topic: s.topics.userInteractions,
      acks: -1,
      messages: interactions.slice(i, i + chunk).map((x) => ({
        key: x.mailboxId,
        value: s.serdes.userInteractions.serialize(s.topics.userInteractions, x),
        timestamp: String(x.occurredAt),
      })),
    });
}

/** Tenant policies and seeded preference records, before any service starts. */
export async function sendTables(
  p: Producer,
  s: ServiceTopics,
  policies: readonly TenantPolicy[],
  seeded: readonly SeededPreferences[],
): Promise<void> {
  if (policies.length)
    await p.send({
      topic: s.topics.tenantPolicies,
      acks: -1,
      messages: policies.map((x) => ({
        key: x.tenantId,
        value: s.serdes.tenantPolicies.serialize(s.topics.tenantPolicies, x),
      })),
    });
  if (seeded.length)
    await p.send({
      topic: s.topics.userPreferences,
      acks: -1,
      messages: seeded.map((x) => ({
        key: x.value.mailboxId,
        value: s.serdes.userPreferences.serialize(s.topics.userPreferences, x.value),
        timestamp: String(x.timestamp),
      })),
    });
}

export interface Decoded<T> {
  partition: number;
  offset: number;
  timestamp: number;
  key: string;
  value: T;
  /** the Avro payload without the 5-byte Confluent header */
  payload: Buffer;
}

async function decodeAll<T>(
  records: ReadRecord[],
  topic: string,
  serde: { prepare(v: readonly (Buffer | null)[]): Promise<void>; deserialize(t: string, b: Buffer): T },
): Promise<Decoded<T>[]> {
  const values = records.filter((r) => r.value !== null);
  await serde.prepare(values.map((r) => r.value));
  return values.map((r) => ({
    partition: r.partition,
    offset: r.offset,
    timestamp: r.timestamp,
    key: r.key?.toString() ?? '',
    value: serde.deserialize(topic, r.value!),
    payload: r.value!.subarray(5),
  }));
}

/** Every record of a topic, decoded, sorted by (partition, offset). */
export async function readDecoded<K extends 'mailEvents' | 'userInteractions' | 'userPreferences' | 'mailDecisions'>(
  s: ServiceTopics,
  which: K,
): Promise<
  Decoded<
    K extends 'mailEvents'
      ? MailEvent
      : K extends 'userInteractions'
        ? UserInteraction
        : K extends 'userPreferences'
          ? UserPreferences
          : Decision
  >[]
> {
  const topic = s.topics[which];
  const recs = await readAll(topic, { timeoutMs: 120_000 });
  type T = Parameters<typeof decodeAll>[2];
  return decodeAll(recs, topic, s.serdes[which] as unknown as T) as never;
}

/** Sum of the end offsets of a topic's partitions (records ever written, for a delete topic). */
export async function endOffsetSum(admin: Admin, topic: string): Promise<number> {
  const offs = await admin.fetchTopicOffsets(topic);
  return offs.reduce((n, p) => n + Number(p.high), 0);
}

/** End offsets per partition. */
export async function endOffsets(admin: Admin, topic: string): Promise<Map<number, number>> {
  return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]));
}

/** Records of `topics` not yet committed by the group (end offset minus committed offset, summed). */
export async function groupLag(admin: Admin, groupId: string, topics: string[]): Promise<number> {
  let lag = 0;
  const committed = await admin.fetchOffsets({ groupId, topics });
  for (const t of committed) {
    const ends = await endOffsets(admin, t.topic);
    for (const p of t.partitions) {
      const c = Number(p.offset);
      lag += (ends.get(p.partition) ?? 0) - (c < 0 ? 0 : c);
    }
  }
  return lag;
}

/**
 * Waits until the group has committed every record of its input topics (the service is drained),
 * or the deadline passes; returns the lag left (0 when drained).
 */
export async function waitDrained(s: ServiceTopics, admin: Admin, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let lag = Infinity;
  while (Date.now() < deadline) {
    lag = await groupLag(admin, s.appId, [s.topics.mailEvents, s.topics.userInteractions]).catch(() => Infinity);
    if (lag === 0) return 0;
    await new Promise((r) => setTimeout(r, 500));
  }
  return lag;
}

/**
 * Every record of a topic with the producer that wrote it (id and epoch), read `read_committed`,
 * for diagnosing duplicates under exactly-once.
 */
export async function readWithProducers(
  kafka: Kafka,
  topic: string,
): Promise<{ partition: number; offset: number; key: string; value: Buffer | null; producer: string }[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const left = new Map(ends.filter((e) => Number(e.high) > Number(e.low)).map((e) => [e.partition, Number(e.high)]));
  const out: { partition: number; offset: number; key: string; value: Buffer | null; producer: string }[] = [];
  if (!left.size) return out;
  const consumer = kafka.consumer({ groupId: `diag-${Date.now()}-${Math.random().toString(36).slice(2)}` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await new Promise<void>((resolve) => {
    const done = (p: number, next: number) => {
      if (left.has(p) && next >= left.get(p)!) left.delete(p);
      if (!left.size) resolve();
    };
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const b = e.payload as { partition: number; lastOffset: string };
      done(b.partition, Number(b.lastOffset) + 1);
    });
    void consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages)
          out.push({
            partition: batch.partition,
            offset: Number(m.offset),
            key: m.key?.toString() ?? '',
            value: m.value,
            producer: producerOf(m),
          });
        done(batch.partition, Number(batch.lastOffset()) + 1);
      },
    });
  });
  await consumer.disconnect();
  return out;
}

function producerOf(m: unknown): string {
  const c = (m as { batchContext?: { producerId?: string; producerEpoch?: number } }).batchContext;
  return `${c?.producerId ?? '?'}/${c?.producerEpoch ?? '?'}`;
}
