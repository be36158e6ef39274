/**
 * Checks at start that the brokers and the schema registry answer, so that a wrong setting ends
 * in one line naming the setting and the likely fix, within seconds, instead of client retries
 * and protocol errors. The client's details go to the log at debug.
 */
import { Kafka, logLevel as KafkaLogLevel, type KafkaConfig } from 'kafkajs';
import type { Logger } from 'pino';
import { kafkaSecurity } from '../runtime/config.js';
import { ConfigError } from '../runtime/errors.js';
import { maskUrlCredentials, type AppConfig } from './config.js';

const KAFKA_DEADLINE_MS = 8000;
const REGISTRY_TIMEOUT_MS = 5000;

function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function chain(e: unknown): string {
  const parts: string[] = [];
  for (let c: unknown = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++) {
    const err = c as { name?: string; message?: string; code?: string };
    parts.push(`${err.name ?? 'Error'}: ${err.message ?? String(c)}${err.code ? ` (${err.code})` : ''}`);
  }
  return parts.join(' <- ');
}

/** Connects to the brokers once (no long retries); a failure is a ConfigError naming the setting. */
export async function checkKafka(cfg: AppConfig, log?: Logger, deadlineMs = KAFKA_DEADLINE_MS): Promise<void> {
  if (!cfg.brokers) throw new ConfigError('KAFKA_BROKERS', 'is not set');
  const brokers = cfg.brokers.join(',');
  const kafka = new Kafka({
    clientId: 'um-preflight',
    brokers: [...cfg.brokers],
    logLevel: KafkaLogLevel.NOTHING,
    connectionTimeout: 3000,
    authenticationTimeout: 5000,
    retry: { retries: 1, initialRetryTime: 300, maxRetryTime: 1000 },
    ...(kafkaSecurity({ sasl: cfg.sasl, ssl: cfg.ssl }) as Pick<KafkaConfig, 'ssl' | 'sasl'>),
  });
  const admin = kafka.admin();
  try {
    await withDeadline(
      (async () => {
        await admin.connect();
        await admin.describeCluster();
      })(),
      deadlineMs,
      () => new Error(`no answer within ${deadlineMs} ms`),
    );
  } catch (e) {
    log?.debug({ err: chain(e) }, 'broker check failed');
    const text = chain(e);
    if (/SASL|Authentication|authenticat/i.test(text))
      throw new ConfigError(
        cfg.sasl ? 'KAFKA_SASL_USERNAME' : 'KAFKA_SASL_MECHANISM',
        cfg.sasl
          ? `the brokers ${brokers} refused the SASL login: check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM`
          : `the brokers ${brokers} require authentication: set KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`,
      );
    if (/certificate|self[- ]signed|EPROTO|SSL|TLS|wrong version number/i.test(text))
      throw new ConfigError(
        'KAFKA_SSL',
        `TLS to ${brokers} failed (${(e as Error).message}): check KAFKA_SSL, KAFKA_SSL_CA_FILE, or that the port is a TLS listener`,
      );
    throw new ConfigError(
      'KAFKA_BROKERS',
      `cannot reach Kafka at ${brokers} (${(e as Error).message}): check the host:port list and that the brokers are running${cfg.ssl ? '' : ' (or whether they need KAFKA_SSL=true)'}`,
    );
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Asks the registry for its subjects (GET <url>/subjects). A Confluent-compatible API answers a
 * JSON list; anything else is a ConfigError naming the setting and the likely fix.
 */
export async function checkRegistry(cfg: AppConfig, log?: Logger, timeoutMs = REGISTRY_TIMEOUT_MS): Promise<void> {
  const url = cfg.registry.url;
  if (!url) throw new ConfigError('SCHEMA_REGISTRY_URL', 'is not set');
  const shown = maskUrlCredentials(url);
  const headers: Record<string, string> = { accept: 'application/vnd.schemaregistry.v1+json, application/json' };
  const u = new URL(url);
  const user = cfg.registry.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
  const pass = cfg.registry.password ?? (u.password ? decodeURIComponent(u.password) : undefined);
  u.username = '';
  u.password = '';
  if (user !== undefined) headers.authorization = `Basic ${Buffer.from(`${user}:${pass ?? ''}`).toString('base64')}`;
  const subjects = `${u.toString().replace(/\/+$/, '')}/subjects`;
  let res: Response;
  try {
    res = await fetch(subjects, { headers, signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
  } catch (e) {
    log?.debug({ err: chain(e) }, 'registry check failed');
    throw new ConfigError(
      'SCHEMA_REGISTRY_URL',
      `cannot reach the schema registry at ${shown} (${(e as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : chain((e as Error).cause ?? e)}): check the URL and that the registry is running`,
    );
  }
  const body = await res.text().catch(() => '');
  log?.debug({ status: res.status, body: body.slice(0, 200) }, 'registry check answer');
  if (res.status === 401 || res.status === 403)
    throw new ConfigError(
      'SCHEMA_REGISTRY_USERNAME',
      `the schema registry at ${shown} refused the credentials (HTTP ${res.status}): check SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD`,
    );
  if (res.status === 404)
    throw new ConfigError(
      'SCHEMA_REGISTRY_URL',
      `${shown} has no Confluent-compatible API (HTTP 404 on /subjects): for Apicurio Registry the URL ends in /apis/ccompat/v7, e.g. http://registry:8080/apis/ccompat/v7`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (!res.ok || !Array.isArray(parsed))
    throw new ConfigError(
      'SCHEMA_REGISTRY_URL',
      `${shown} does not answer like a schema registry (HTTP ${res.status} on /subjects${res.ok ? ', not a JSON list' : ''}): check the URL and the registry's health`,
    );
}

/** Both checks, at once. */
export async function preflight(cfg: AppConfig, log?: Logger): Promise<void> {
  const [k, r] = await Promise.allSettled([checkKafka(cfg, log), checkRegistry(cfg, log)]);
  if (k.status === 'rejected') throw k.reason;
  if (r.status === 'rejected') throw r.reason;
}
