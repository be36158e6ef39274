/**
 * The Unwanted Mail service, assembled: configuration → Kafka and registry clients → topics →
 * topology → KafkaStreams → HTTP (metrics, health, API). Used by `um run`, `um start`, the tests
 * and the benchmarks.
 */
import { Kafka, logLevel as KafkaLogLevel, type KafkaConfig } from 'kafkajs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { MailMetrics } from '../processors/metrics.js';
import { PREFERENCES_STORE } from '../processors/decide-processor.js';
import { RolloutFlagBook, type FlagDeadLetter } from '../processors/rollout-flags.js';
import { kafkaSecurity, streamsConfig } from '../runtime/config.js';
import { ConfigError } from '../runtime/errors.js';
import { startHttpServer } from '../runtime/http.js';
import { kafkaClientLogLevel, kafkaLogCreator } from '../runtime/kafka-log.js';
import { RuntimeMetrics } from '../runtime/metrics.js';
import { createRegistryClient } from '../runtime/serdes/registry.js';
import { KafkaStreams, type StreamsState } from '../runtime/streams.js';
import { mailSerdes, type MailSerdes } from '../topology/serdes.js';
import { topicNames, topicSpecs, type Topics } from '../topology/topics.js';
import { unwantedMailTopology } from '../topology/unwanted-mail.js';
import type { AppConfig } from './config.js';
import { preflight } from './preflight.js';
import { registerStatusPage, type TenantStatus } from './ui.js';
import { capMode } from '../processors/logic/rollout.js';
import { applyOffsetResetForNewGroup } from './reset.js';
import { lockStateDir, type StateDirLock } from '../runtime/state-dir-lock.js';
import { createIngest, IngestMetrics, Mirror, type Ingest } from './ingest.js';

/**
 * Fetched bytes a task buffers per source partition before fetching pauses (about 900 mail
 * events, near Kafka Streams' buffered.records.per.partition of 1,000), and the most one fetch
 * brings per partition. Records buffered longer than a few young-generation collections are
 * promoted and cost old-generation collections: 1 MiB / 2 MiB held ~20,000 records and gave
 * ~7% fewer events/s and ~45 MiB more RSS than these (BENCHMARKS.md, session 9).
 */
export const SOURCE_BUFFER_BYTES_PER_PARTITION = 256 * 1024;
export const FETCH_BYTES_PER_PARTITION = 512 * 1024;
export interface App {
  streams: KafkaStreams;
  flags: RolloutFlagBook;
  topics: Topics;
  serdes: MailSerdes;
  metrics: MailMetrics;
  url: string | undefined;
  close(): Promise<void>;
}

export function kafkaFor(cfg: AppConfig, clientId: string, logger?: Logger): Kafka {
  if (!cfg.brokers) throw new ConfigError('KAFKA_BROKERS', 'is not set');
  const opts: KafkaConfig = {
    clientId,
    brokers: [...cfg.brokers],
    logLevel: logger ? kafkaClientLogLevel(logger) : KafkaLogLevel.NOTHING,
    ...(kafkaSecurity({ sasl: cfg.sasl, ssl: cfg.ssl }) as Pick<KafkaConfig, 'ssl' | 'sasl'>),
  };
  if (logger) opts.logCreator = kafkaLogCreator(logger);
  return new Kafka(opts);
}

export function registryFor(cfg: AppConfig) {
  if (!cfg.registry.url) throw new ConfigError('SCHEMA_REGISTRY_URL', 'is not set');
  return createRegistryClient({
    url: cfg.registry.url,
    ...(cfg.registry.username ? { username: cfg.registry.username, password: cfg.registry.password } : {}),
  });
}

/** Creates the topics of §1 that are missing (partitions and cleanup policy per the spec). */
export async function ensureTopics(kafka: Kafka, cfg: AppConfig, logger?: Logger): Promise<string[]> {
  const topics = topicNames(cfg.topicPrefix);
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topicSpecs(topics).filter((s) => !existing.has(s.topic));
    if (missing.length) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((s) => ({
          topic: s.topic,
          numPartitions: s.coPartitioned || !s.compact ? cfg.partitions : 1,
          replicationFactor: cfg.replicationFactor,
          configEntries: [{ name: 'cleanup.policy', value: s.compact ? 'compact' : 'delete' }],
        })),
      });
      logger?.info({ topics: missing.map((s) => s.topic) }, 'topics created');
    }
    return missing.map((s) => s.topic);
  } finally {
    await admin.disconnect();
  }
}

export async function startApp(
  cfg: AppConfig,
  opts: {
    logger?: Logger;
    createTopics?: boolean;
    http?: boolean;
    /** called on every lifecycle change of the stream engine (e.g. to exit on ERROR) */
    onStateChange?: (to: StreamsState, from: StreamsState) => void;
    /** check the brokers and the registry first, failing fast with a ConfigError (default true) */
    preflight?: boolean;
  } = {},
): Promise<App> {
  const logger = opts.logger ?? pino({ level: cfg.logLevel });
  if (!cfg.brokers) throw new ConfigError('KAFKA_BROKERS', 'is not set (use `um start` for a local Kafka)');
  if (opts.preflight ?? true) await preflight(cfg, logger);
  // one instance per state directory: a second one is refused here, before it touches the stores
  const lock = await lockStateDir(cfg.stateDir, cfg.applicationId, {
    onLost: (e) => logger.error({ err: e.message }, 'the state directory lock was lost: another instance may use it'),
  });
  try {
    return await startLocked(cfg, opts, logger, lock);
  } catch (e) {
    await lock.release();
    throw e;
  }
}

async function startLocked(
  cfg: AppConfig,
  opts: Parameters<typeof startApp>[1] & object,
  logger: Logger,
  lock: StateDirLock,
): Promise<App> {
  if (!cfg.brokers) throw new ConfigError('KAFKA_BROKERS', 'is not set (use `um start` for a local Kafka)');
  const kafka = kafkaFor(cfg, `${cfg.applicationId}-${cfg.instanceId}`, logger);
  if (opts.createTopics) await ensureTopics(kafka, cfg, logger);
  const topics = topicNames(cfg.topicPrefix);
  const serdes = mailSerdes(registryFor(cfg), topics);
  const runtimeMetrics = new RuntimeMetrics();
  const metrics = new MailMetrics(runtimeMetrics.registry);
  const dlqTopic = `${cfg.applicationId}-dlq`;
  const dlqProducer = kafka.producer({ allowAutoTopicCreation: false });
  let dlqConnected: Promise<void> | undefined;
  const deadLetter = async (d: FlagDeadLetter): Promise<void> => {
    dlqConnected ??= dlqProducer.connect();
    await dlqConnected;
    await dlqProducer.send({
      topic: dlqTopic,
      acks: -1,
      messages: [
        {
          key: d.scope,
          value: d.bytes ?? null,
          headers: {
            'dlq.source.topic': topics.rolloutFlags,
            'dlq.error.code': d.code,
            'dlq.error.message': d.message.slice(0, 1000),
            'dlq.error.kind': 'processing',
            'dlq.application.id': cfg.applicationId,
            'dlq.instance.id': cfg.instanceId,
          },
        },
      ],
    });
  };
  const flags = new RolloutFlagBook({ defaultMode: cfg.defaultMode, metrics, logger, deadLetter });
  const topology = unwantedMailTopology({
    topics,
    serdes,
    metrics,
    flags,
    preferenceCacheBytes: cfg.preferenceCacheBytes,
    ...(cfg.preferenceCacheEntries !== undefined ? { preferenceCacheEntries: cfg.preferenceCacheEntries } : {}),
    parity: cfg.parity.enabled ? { windowMs: cfg.parity.windowMs } : false,
  });
  if (
    await applyOffsetResetForNewGroup(kafka, cfg.applicationId, topology.sourceTopics(), cfg.offsetReset ?? 'earliest')
  )
    logger.info(
      { group: cfg.applicationId },
      'new consumer group: starts at the end of the input topics (UM_OFFSET_RESET=latest)',
    );

  // the HTTP server listens first, so that its URL can be advertised to the group
  let url: string | undefined;
  let server: Awaited<ReturnType<typeof startHttpServer>> | undefined;
  const streams = new KafkaStreams(
    topology,
    streamsConfig({
      applicationId: cfg.applicationId,
      brokers: [...cfg.brokers],
      clientId: cfg.applicationId,
      instanceId: cfg.instanceId,
      stateDir: join(cfg.stateDir),
      commitIntervalMs: cfg.commitIntervalMs,
      transactionTimeoutMs: cfg.transactionTimeoutMs,
      numStandbyReplicas: cfg.numStandbyReplicas,
      rocksdbCacheBytes: cfg.rocksdb.cacheBytes,
      // fetched records waiting per source partition (4 topics × partitions of them): as kafkajs
      // objects they take several times their bytes, and their Buffers keep whole fetch responses
      // alive; the runtime's 4 MiB default let a backlog hold hundreds of MiB (issue 11)
      maxBufferedBytesPerPartition: SOURCE_BUFFER_BYTES_PER_PARTITION,
      maxFetchBytesPerPartition: FETCH_BYTES_PER_PARTITION,
      rocksdbWriteBufferBytes: cfg.rocksdb.writeBufferBytes,
      maxTaskIdleMs: cfg.maxTaskIdleMs,
      metricsRecordingLevel: cfg.metricsRecordingLevel,
      sessionTimeoutMs: cfg.sessionTimeoutMs,
      heartbeatIntervalMs: Math.max(100, Math.min(3000, Math.floor(cfg.sessionTimeoutMs / 3))),
      processingGuarantee: cfg.processingGuarantee,
      replicationFactor: cfg.replicationFactor,
      ...(cfg.advertisedUrl ? { advertisedUrl: cfg.advertisedUrl } : {}),
      ...(cfg.sasl ? { sasl: { ...cfg.sasl } } : {}),
      ...(cfg.ssl ? { ssl: cfg.ssl === true ? true : { ...cfg.ssl } } : {}),
    }),
    { logger, metrics: runtimeMetrics, kafka, ...(opts.onStateChange ? { onStateChange: opts.onStateChange } : {}) },
  );
  let ingest: Ingest | undefined;
  if (opts.http ?? true) {
    const ingestMetrics = new IngestMetrics(runtimeMetrics.registry);
    ingest = await createIngest({
      kafka,
      topic: topics.mailEvents,
      serde: serdes.mailEvents,
      metrics: ingestMetrics,
      maxBatch: cfg.ingest.maxBatch,
      maxInFlight: cfg.ingest.maxInFlight,
      logger,
      ...(cfg.mirror.url
        ? {
            mirror: new Mirror({
              url: cfg.mirror.url,
              percent: cfg.mirror.percent,
              metrics: ingestMetrics,
              logger,
              ...(cfg.mirror.token ? { token: cfg.mirror.token } : {}),
            }),
          }
        : {}),
    });
    const ingestRoutes = ingest;
    server = await startHttpServer({
      streams,
      host: cfg.http.host,
      port: cfg.http.port,
      logger,
      ...(cfg.http.authToken ? { authToken: cfg.http.authToken } : {}),
      peers: cfg.http.peers ?? [],
      routes: (app, { queryStore }) => {
        registerStatusPage(app, {
          streams,
          gate: { minRate: PROMOTION_GATE.minRate, minPairs: PROMOTION_GATE.minPairs },
          tenants: () => tenantStatus(flags, metrics, cfg.defaultMode),
        });
        ingestRoutes.register(app);
        app.get<{ Params: { mailboxId: string } }>('/v1/preferences/:mailboxId', async (req, reply) => {
          const r = await queryStore(streams, PREFERENCES_STORE, req.params.mailboxId, {
            forwarded: req.headers['x-um-forwarded'] === '1',
          });
          return reply.code(r.status).send(r.body);
        });
      },
    }).catch(async (e: NodeJS.ErrnoException) => {
      await ingestRoutes.close();
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES')
        throw new ConfigError(
          'UM_HTTP_PORT',
          `cannot listen on ${cfg.http.host}:${cfg.http.port} (${e.code}); choose another port, or 0 for any free one`,
        );
      throw e;
    });
    url = server.url;
    if (!cfg.advertisedUrl) {
      const host = cfg.http.host === '0.0.0.0' || cfg.http.host === '::' ? hostname() : cfg.http.host;
      streams.setAdvertisedUrl(`http://${host}:${server.port}`);
    }
  }
  try {
    await streams.start();
  } catch (e) {
    await server?.close();
    await ingest?.close();
    throw e;
  }
  logger.info(
    { ...(logger.bindings().instance === undefined ? { instance: cfg.instanceId } : {}), url, app: cfg.applicationId },
    'unwanted-mail started',
  );
  return {
    streams,
    flags,
    topics,
    serdes,
    metrics,
    url,
    async close() {
      try {
        await streams.close();
        await server?.close();
        await ingest?.close();
        if (dlqConnected) await dlqProducer.disconnect().catch(() => undefined);
      } finally {
        await lock.release();
      }
    },
  };
}

/** The promotion gate the status page shows (the report's default: `um parity report --gate`). */
const PROMOTION_GATE = { minRate: 0.995, minPairs: 10_000 };

/**
 * Per tenant, for the status page: the mode and live percentage in force on this instance, and
 * this instance's parity figures (its share of the fleet's; `um parity report` has the whole).
 */
async function tenantStatus(
  flags: RolloutFlagBook,
  metrics: MailMetrics,
  defaultMode: 'OFF' | 'SHADOW' | 'LIVE',
): Promise<TenantStatus[]> {
  const inForce = flags.flags();
  const global = inForce.get('*');
  const pairs = new Map<string, { match: number; all: number }>();
  for (const v of (await metrics.parityResults.get()).values) {
    const tenant = String(v.labels.tenant ?? '');
    if (!tenant) continue;
    const p = pairs.get(tenant) ?? { match: 0, all: 0 };
    p.all += v.value;
    if (v.labels.result === 'MATCH') p.match += v.value;
    pairs.set(tenant, p);
  }
  const tenants = new Set([...inForce.keys()].filter((k) => k !== '*'));
  for (const t of pairs.keys()) tenants.add(t);
  return [...tenants].sort().map((tenant) => {
    const flag = inForce.get(tenant);
    const mode = capMode(flag?.mode ?? defaultMode, global?.mode);
    const p = pairs.get(tenant);
    const rate = p && p.all > 0 ? p.match / p.all : null;
    return {
      tenant,
      mode,
      livePercent: mode === 'LIVE' ? (flag?.livePercent ?? 100) : null,
      parityRate: rate,
      pairs: p ? p.all : null,
      gateMet: rate === null ? null : rate >= PROMOTION_GATE.minRate && p!.all >= PROMOTION_GATE.minPairs,
    };
  });
}
