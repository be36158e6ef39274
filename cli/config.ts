/**
 * The service's configuration: environment variables, optionally a JSON file (UM_CONFIG_FILE)
 * holding the same names; the environment wins. Checked once at start, then frozen. A bad value
 * fails with a ConfigError that names the setting.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from '../runtime/errors.js';
import { canonicalPeerUrl } from '../runtime/http.js';

/** Every setting: its variable, what it does, its default. The README's table is this list. */
export const SETTINGS = {
  KAFKA_BROKERS:
    'Comma-separated host:port list. Unset: `um start` brings up a local Kafka; `um run` refuses to start.',
  SCHEMA_REGISTRY_URL: 'Confluent-compatible registry base URL (Apicurio: http://host:port/apis/ccompat/v7).',
  SCHEMA_REGISTRY_USERNAME: 'Registry basic-auth user (optional).',
  SCHEMA_REGISTRY_PASSWORD: 'Registry basic-auth password (optional).',
  KAFKA_SASL_MECHANISM: 'plain | scram-sha-256 | scram-sha-512 (optional; needs KAFKA_SASL_USERNAME/PASSWORD).',
  KAFKA_SASL_USERNAME: 'SASL user.',
  KAFKA_SASL_PASSWORD: 'SASL password.',
  KAFKA_SSL: 'true to use TLS to the brokers.',
  KAFKA_SSL_CA_FILE: 'PEM file of CA certificates to trust (implies KAFKA_SSL=true).',
  KAFKA_SSL_CERT_FILE: 'PEM client certificate for mutual TLS.',
  KAFKA_SSL_KEY_FILE: 'PEM client key for mutual TLS.',
  KAFKA_SSL_REJECT_UNAUTHORIZED: 'false to accept self-signed broker certificates (default true).',
  UM_APP_ID: 'Application id: consumer group, internal topic prefix, state directory name (default unwanted-mail).',
  UM_TOPIC_PREFIX: 'Prefix of every topic name (default empty).',
  UM_STATE_DIR: 'Directory of the RocksDB state stores (default ./state).',
  UM_INSTANCE_ID: 'Name of this instance in logs and metrics (default hostname-pid).',
  UM_HTTP_HOST: 'HTTP bind address (default 127.0.0.1; 0.0.0.0 to serve other hosts, which needs UM_HTTP_AUTH_TOKEN).',
  UM_HTTP_AUTH_TOKEN:
    'Bearer token (16+ characters) required on /v1/*; /metrics, /healthz, /readyz stay open. Same on every instance.',
  UM_HTTP_AUTH:
    'token (default): a non-loopback UM_HTTP_HOST needs UM_HTTP_AUTH_TOKEN; none: serve /v1/* without authentication.',
  UM_PEER_URLS:
    'Comma-separated base URLs of the other instances (their UM_ADVERTISED_URL). Queries are forwarded only to these; unset = no forwarding.',
  UM_OFFSET_RESET: 'Where a new consumer group starts reading the input topics: earliest (default) | latest.',
  UM_HTTP_PORT: 'HTTP port for /metrics, /healthz, /readyz and the API (default 8080; 0 = any free port).',
  UM_ADVERTISED_URL:
    'URL other instances use to reach this one, for forwarded queries (default http://<hostname>:<port>).',
  UM_PARTITIONS:
    'Partitions of the co-partitioned topics when `um topics create` or `um start` creates them (default 6).',
  UM_REPLICATION_FACTOR: 'Replication factor of topics the service creates (default 1).',
  UM_COMMIT_INTERVAL_MS:
    'How often processed offsets are committed (default 1000; 100 with UM_PROCESSING_GUARANTEE=exactly_once).',
  UM_NUM_STANDBY_REPLICAS:
    "Warm copies of each task's state kept on other instances, following its changelogs (default 0).",
  UM_TRANSACTION_TIMEOUT_MS:
    'exactly_once: the broker aborts a task transaction open longer than this (default 10000; above the commit interval).',
  UM_SESSION_TIMEOUT_MS:
    "Group session timeout: how soon the group gives a dead instance's tasks to others (default 30000).",
  UM_METRICS_RECORDING_LEVEL:
    'INFO (default) or DEBUG: DEBUG adds um_store_op_seconds, the latency of every state store operation (as Kafka Streams records store metrics at DEBUG only).',
  UM_MAX_TASK_IDLE_MS:
    'How long a task waits for an empty, caught-up partition before going on without it (default 0).',
  UM_PROCESSING_GUARANTEE:
    'at_least_once (default) or exactly_once (one Kafka transaction per task and commit: outputs, changelogs and input offsets).',
  UM_DEFAULT_MODE: 'Rollout mode of a tenant without a flag: OFF | SHADOW (default) | LIVE.',
  UM_PREFERENCE_CACHE_BYTES:
    'Memory of the preference cache of the whole instance, shared by its tasks (default 64MiB; 0 disables it). An entry counts as its key + 5.5 × its Avro bytes + 280 B: the decoded record kept with a cached value is about 4.5 × its Avro size. Bytes, or with KiB/MiB/GiB.',
  UM_PREFERENCE_CACHE_ENTRIES:
    'Deprecated (use UM_PREFERENCE_CACHE_BYTES): also bounds the preference records cached per task; unset by default (0 disables the cache).',
  UM_ROCKSDB_CACHE_BYTES:
    'RocksDB block cache of the whole instance (default 32MiB), split evenly over its RocksDB stores (stores per task × partitions: the rocksdb binding gives every store a cache of its own). Bytes, or with KiB/MiB/GiB.',
  UM_ROCKSDB_WRITE_BUFFER_BYTES:
    'RocksDB memtables of the whole instance (default 48MiB), split the same way; each store keeps up to 2 memtables of its share / 2 (at least 256KiB). Bytes, or with KiB/MiB/GiB.',
  UM_PARITY: 'true (default) to pair new decisions with legacy-decisions; false leaves legacy-decisions unread.',
  UM_PARITY_WINDOW_MS: 'Parity pairing window in event time, either order (default 600000 = 10 minutes).',
  UM_INGEST_MAX_BATCH: 'Most events one POST /v1/mail-events may carry (default 1000).',
  UM_INGEST_MAX_IN_FLIGHT:
    'Events accepted but not yet acknowledged by the broker above which ingest answers 503 with Retry-After (default 20000).',
  UM_MIRROR_TO_URL: "Another instance's base URL: accepted ingest events are also sent (tee) to its /v1/mail-events.",
  UM_MIRROR_PERCENT: 'Share of tenants (by tenant bucket) whose events are mirrored, 0..100 (default 100).',
  UM_MIRROR_TOKEN: 'Bearer token sent to UM_MIRROR_TO_URL (optional).',
  UM_LOG_LEVEL: 'fatal | error | warn | info (default) | debug | trace.',
  UM_LOG_FORMAT: 'auto (default: readable on a terminal, JSON lines otherwise) | json | pretty.',
  UM_CONFIG_FILE: 'JSON file with any of these settings (environment variables win).',
} as const;

export type SettingName = keyof typeof SETTINGS;

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^-?\d+$/, 'must be an integer')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const UNITS: Record<string, number> = { '': 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
/** a byte size: an integer, optionally with KiB, MiB or GiB */
const byteSize = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+\s*(KiB|MiB|GiB)?$/, 'must be a number of bytes, optionally with KiB, MiB or GiB (e.g. 64MiB)')
    .transform((v) => {
      const m = /^(\d+)\s*(KiB|MiB|GiB)?$/.exec(v)!;
      return Number(m[1]) * UNITS[m[2] ?? '']!;
    })
    .pipe(z.number().int().min(min, `must be at least ${min} bytes`).max(max, `must be at most ${max} bytes`));

const schema = z.object({
  KAFKA_BROKERS: z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((b) => b.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().regex(/^[^:\s]+:\d+$/, 'each broker must be host:port')).min(1))
    .optional(),
  SCHEMA_REGISTRY_URL: z.string().url().optional(),
  SCHEMA_REGISTRY_USERNAME: z.string().min(1).optional(),
  SCHEMA_REGISTRY_PASSWORD: z.string().min(1).optional(),
  KAFKA_SASL_MECHANISM: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']).optional(),
  KAFKA_SASL_USERNAME: z.string().min(1).optional(),
  KAFKA_SASL_PASSWORD: z.string().min(1).optional(),
  KAFKA_SSL: bool.optional(),
  KAFKA_SSL_CA_FILE: z.string().min(1).optional(),
  KAFKA_SSL_CERT_FILE: z.string().min(1).optional(),
  KAFKA_SSL_KEY_FILE: z.string().min(1).optional(),
  KAFKA_SSL_REJECT_UNAUTHORIZED: bool.optional(),
  UM_APP_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, ".", "_" and "-" only')
    .default('unwanted-mail'),
  UM_TOPIC_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" and "-" only')
    .default(''),
  UM_STATE_DIR: z.string().min(1).default('./state'),
  UM_INSTANCE_ID: z.string().min(1).default(`${hostname()}-${process.pid}`),
  UM_HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  UM_HTTP_AUTH_TOKEN: z.string().min(16, 'must have at least 16 characters').optional(),
  UM_HTTP_AUTH: z.enum(['token', 'none']).default('token'),
  UM_PEER_URLS: z
    .string()
    .transform((s) =>
      s
        .split(',')
        .map((u) => u.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().refine((u) => canonicalPeerUrl(u) !== undefined, 'each peer must be an http(s) base URL')))
    .optional(),
  UM_OFFSET_RESET: z.enum(['earliest', 'latest']).default('earliest'),
  UM_HTTP_PORT: int(0, 65535).default('8080'),
  UM_ADVERTISED_URL: z.string().url().optional(),
  UM_PARTITIONS: int(1, 10_000).default('6'),
  UM_REPLICATION_FACTOR: int(1, 100).default('1'),
  UM_COMMIT_INTERVAL_MS: int(10, 600_000).optional(),
  UM_TRANSACTION_TIMEOUT_MS: int(1000, 900_000).default('10000'),
  UM_MAX_TASK_IDLE_MS: int(0, 60_000).default('0'),
  UM_METRICS_RECORDING_LEVEL: z.enum(['INFO', 'DEBUG']).default('INFO'),
  UM_SESSION_TIMEOUT_MS: int(1000, 600_000).default('30000'),
  UM_PROCESSING_GUARANTEE: z.enum(['at_least_once', 'exactly_once']).default('at_least_once'),
  UM_NUM_STANDBY_REPLICAS: int(0, 10).default('0'),
  UM_DEFAULT_MODE: z.enum(['OFF', 'SHADOW', 'LIVE']).default('SHADOW'),
  UM_PREFERENCE_CACHE_ENTRIES: int(0, 10_000_000).optional(),
  UM_PREFERENCE_CACHE_BYTES: byteSize(0, 64 * 1024 ** 3).default('64MiB'),
  UM_ROCKSDB_CACHE_BYTES: byteSize(0, 64 * 1024 ** 3).default('32MiB'),
  UM_ROCKSDB_WRITE_BUFFER_BYTES: byteSize(1024 * 1024, 64 * 1024 ** 3).default('48MiB'),
  UM_PARITY: bool.default('true'),
  UM_PARITY_WINDOW_MS: int(1000, 7 * 86_400_000).default('600000'),
  UM_INGEST_MAX_BATCH: int(1, 100_000).default('1000'),
  UM_INGEST_MAX_IN_FLIGHT: int(1, 10_000_000).default('20000'),
  UM_MIRROR_TO_URL: z.string().url().optional(),
  UM_MIRROR_PERCENT: int(0, 100).default('100'),
  UM_MIRROR_TOKEN: z.string().min(1).optional(),
  UM_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  UM_LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
  UM_CONFIG_FILE: z.string().optional(),
});

export interface AppConfig {
  readonly brokers: readonly string[] | undefined;
  readonly registry: { readonly url: string | undefined; readonly username?: string; readonly password?: string };
  readonly sasl?: {
    readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512';
    readonly username: string;
    readonly password: string;
  };
  readonly ssl?:
    | true
    | { readonly ca?: string; readonly cert?: string; readonly key?: string; readonly rejectUnauthorized: boolean };
  readonly applicationId: string;
  readonly topicPrefix: string;
  readonly stateDir: string;
  readonly instanceId: string;
  readonly http: {
    readonly host: string;
    readonly port: number;
    /** undefined: /v1/* is served without authentication (loopback, or UM_HTTP_AUTH=none) */
    readonly authToken?: string;
    /** base URLs queries may be forwarded to */
    readonly peers?: readonly string[];
  };
  readonly offsetReset?: 'earliest' | 'latest';
  readonly advertisedUrl: string | undefined;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly commitIntervalMs: number;
  readonly transactionTimeoutMs: number;
  readonly numStandbyReplicas: number;
  readonly maxTaskIdleMs: number;
  readonly metricsRecordingLevel: 'INFO' | 'DEBUG';
  readonly sessionTimeoutMs: number;
  readonly processingGuarantee: 'at_least_once' | 'exactly_once';
  readonly defaultMode: 'OFF' | 'SHADOW' | 'LIVE';
  /** per task; undefined: only the byte bound */
  readonly preferenceCacheEntries: number | undefined;
  /** the instance's preference cache, shared by its tasks */
  readonly preferenceCacheBytes: number;
  /** the instance's RocksDB block cache and memtables, split over its stores */
  readonly rocksdb: { readonly cacheBytes: number; readonly writeBufferBytes: number };
  readonly parity: { readonly enabled: boolean; readonly windowMs: number };
  readonly ingest: { readonly maxBatch: number; readonly maxInFlight: number };
  readonly mirror: { readonly url: string | undefined; readonly percent: number; readonly token?: string };
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  readonly logFormat?: 'auto' | 'json' | 'pretty';
}

function readFile(setting: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(setting, `cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Reads the settings from `env` (and the file it names), validates and freezes them. */
export function loadConfig(env: Record<string, string | undefined> = process.env): AppConfig {
  let merged: Record<string, string | undefined> = {};
  const file = env.UM_CONFIG_FILE;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFile('UM_CONFIG_FILE', file));
    } catch (e) {
      if (e instanceof ConfigError) throw e;
      throw new ConfigError('UM_CONFIG_FILE', `${file} is not valid JSON`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new ConfigError('UM_CONFIG_FILE', `${file} must hold a JSON object of settings`);
    for (const [k, v] of Object.entries(parsed)) {
      if (!(k in SETTINGS)) throw new ConfigError(k, `unknown setting in ${file}`);
      merged[k] = v === null || v === undefined ? undefined : String(v);
    }
  }
  for (const k of Object.keys(SETTINGS)) {
    const v = env[k];
    if (v !== undefined && v !== '') merged[k] = v;
  }
  merged = Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== undefined));
  const r = schema.safeParse(merged);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? '(config)'), issue.message);
  }
  const c = r.data;
  const saslParts = [c.KAFKA_SASL_MECHANISM, c.KAFKA_SASL_USERNAME, c.KAFKA_SASL_PASSWORD];
  if (saslParts.some(Boolean) && !saslParts.every(Boolean)) {
    const missing = (['KAFKA_SASL_MECHANISM', 'KAFKA_SASL_USERNAME', 'KAFKA_SASL_PASSWORD'] as const).find(
      (k) => !c[k],
    )!;
    throw new ConfigError(
      missing,
      'SASL needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD together',
    );
  }
  if ((c.SCHEMA_REGISTRY_USERNAME === undefined) !== (c.SCHEMA_REGISTRY_PASSWORD === undefined))
    throw new ConfigError(
      c.SCHEMA_REGISTRY_USERNAME ? 'SCHEMA_REGISTRY_PASSWORD' : 'SCHEMA_REGISTRY_USERNAME',
      'registry auth needs both SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD',
    );
  const commitIntervalMs = c.UM_COMMIT_INTERVAL_MS ?? (c.UM_PROCESSING_GUARANTEE === 'exactly_once' ? 100 : 1000);
  if (c.UM_PROCESSING_GUARANTEE === 'exactly_once' && c.UM_TRANSACTION_TIMEOUT_MS <= commitIntervalMs)
    throw new ConfigError(
      'UM_TRANSACTION_TIMEOUT_MS',
      `must be longer than UM_COMMIT_INTERVAL_MS (${commitIntervalMs}): a transaction stays open between commits`,
    );
  if (c.KAFKA_BROKERS && !c.SCHEMA_REGISTRY_URL)
    throw new ConfigError('SCHEMA_REGISTRY_URL', 'is required when KAFKA_BROKERS is set');
  if (c.UM_HTTP_AUTH === 'none' && c.UM_HTTP_AUTH_TOKEN)
    throw new ConfigError('UM_HTTP_AUTH', 'is none but UM_HTTP_AUTH_TOKEN is set; unset one of them');
  if (c.UM_HTTP_AUTH === 'token' && !c.UM_HTTP_AUTH_TOKEN && !isLoopback(c.UM_HTTP_HOST))
    throw new ConfigError(
      'UM_HTTP_AUTH_TOKEN',
      `is required when the API listens on ${c.UM_HTTP_HOST} (UM_HTTP_HOST), which other hosts can reach: set a token (e.g. \`openssl rand -hex 24\`), bind UM_HTTP_HOST=127.0.0.1, or set UM_HTTP_AUTH=none to serve /v1/* to anyone`,
    );
  let ssl: AppConfig['ssl'];
  const tlsFiles = c.KAFKA_SSL_CA_FILE || c.KAFKA_SSL_CERT_FILE || c.KAFKA_SSL_KEY_FILE;
  if (c.KAFKA_SSL === false && tlsFiles) throw new ConfigError('KAFKA_SSL', 'is false but TLS files are set');
  if (tlsFiles || c.KAFKA_SSL_REJECT_UNAUTHORIZED === false) {
    ssl = {
      ...(c.KAFKA_SSL_CA_FILE ? { ca: readFile('KAFKA_SSL_CA_FILE', c.KAFKA_SSL_CA_FILE) } : {}),
      ...(c.KAFKA_SSL_CERT_FILE ? { cert: readFile('KAFKA_SSL_CERT_FILE', c.KAFKA_SSL_CERT_FILE) } : {}),
      ...(c.KAFKA_SSL_KEY_FILE ? { key: readFile('KAFKA_SSL_KEY_FILE', c.KAFKA_SSL_KEY_FILE) } : {}),
      rejectUnauthorized: c.KAFKA_SSL_REJECT_UNAUTHORIZED ?? true,
    };
  } else if (c.KAFKA_SSL) ssl = true;
  const cfg: AppConfig = {
    brokers: c.KAFKA_BROKERS,
    registry: {
      url: c.SCHEMA_REGISTRY_URL,
      ...(c.SCHEMA_REGISTRY_USERNAME
        ? { username: c.SCHEMA_REGISTRY_USERNAME, password: c.SCHEMA_REGISTRY_PASSWORD! }
        : {}),
    },
    ...(c.KAFKA_SASL_MECHANISM
      ? {
          sasl: {
            mechanism: c.KAFKA_SASL_MECHANISM,
            username: c.KAFKA_SASL_USERNAME!,
            password: c.KAFKA_SASL_PASSWORD!,
          },
        }
      : {}),
    ...(ssl ? { ssl } : {}),
    applicationId: c.UM_APP_ID,
    topicPrefix: c.UM_TOPIC_PREFIX,
    stateDir: c.UM_STATE_DIR,
    instanceId: c.UM_INSTANCE_ID,
    http: {
      host: c.UM_HTTP_HOST,
      port: c.UM_HTTP_PORT,
      ...(c.UM_HTTP_AUTH_TOKEN ? { authToken: c.UM_HTTP_AUTH_TOKEN } : {}),
      peers: c.UM_PEER_URLS ?? [],
    },
    offsetReset: c.UM_OFFSET_RESET,
    advertisedUrl: c.UM_ADVERTISED_URL,
    partitions: c.UM_PARTITIONS,
    replicationFactor: c.UM_REPLICATION_FACTOR,
    commitIntervalMs,
    transactionTimeoutMs: c.UM_TRANSACTION_TIMEOUT_MS,
    numStandbyReplicas: c.UM_NUM_STANDBY_REPLICAS,
    maxTaskIdleMs: c.UM_MAX_TASK_IDLE_MS,
    metricsRecordingLevel: c.UM_METRICS_RECORDING_LEVEL,
    sessionTimeoutMs: c.UM_SESSION_TIMEOUT_MS,
    processingGuarantee: c.UM_PROCESSING_GUARANTEE,
    defaultMode: c.UM_DEFAULT_MODE,
    preferenceCacheEntries: c.UM_PREFERENCE_CACHE_ENTRIES,
    preferenceCacheBytes: c.UM_PREFERENCE_CACHE_BYTES,
    rocksdb: { cacheBytes: c.UM_ROCKSDB_CACHE_BYTES, writeBufferBytes: c.UM_ROCKSDB_WRITE_BUFFER_BYTES },
    parity: { enabled: c.UM_PARITY, windowMs: c.UM_PARITY_WINDOW_MS },
    ingest: { maxBatch: c.UM_INGEST_MAX_BATCH, maxInFlight: c.UM_INGEST_MAX_IN_FLIGHT },
    mirror: {
      url: c.UM_MIRROR_TO_URL,
      percent: c.UM_MIRROR_PERCENT,
      ...(c.UM_MIRROR_TOKEN ? { token: c.UM_MIRROR_TOKEN } : {}),
    },
    logLevel: c.UM_LOG_LEVEL,
    logFormat: c.UM_LOG_FORMAT,
  };
  return deepFreeze(cfg);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** Whether a bind address is reachable from this host only. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || h === '::ffff:127.0.0.1';
}

/** A URL with the credentials it embeds (user:pass@) masked. */
export function maskUrlCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (!u.username && !u.password) return url;
    u.username = '***';
    u.password = u.password ? '***' : '';
    return u.toString();
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//***@');
  }
}

/** The configuration with secrets masked, for logs and `um config`. */
export function redact(cfg: AppConfig): unknown {
  return JSON.parse(
    JSON.stringify(cfg, (k, v: unknown) => {
      if (typeof v !== 'string') return v;
      if (/password|key|cert|token|secret/i.test(k)) return '***';
      return /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? maskUrlCredentials(v) : v;
    }),
  ) as unknown;
}
