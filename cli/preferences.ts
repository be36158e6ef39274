/**
 * Reads one mailbox's preferences straight from the `user-preferences` table topic: the key's
 * partition (Kafka's default partitioner) is read to its end and the newest record for the key
 * wins. No running instance is needed.
 */
import type { UserPreferences } from '../processors/logic/model.js';
import { StreamsError } from '../runtime/errors.js';
import { readRanges, endOffsets } from '../runtime/partition-reader.js';
import { partitionForKey } from '../runtime/partitioner.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { kafkaFor, registryFor } from './app.js';
import type { AppConfig } from './config.js';

export async function readPreferences(cfg: AppConfig, mailboxId: string): Promise<UserPreferences | undefined> {
  const kafka = kafkaFor(cfg, 'um-cli');
  const topic = topicNames(cfg.topicPrefix).userPreferences;
  const serde = mailSerdes(registryFor(cfg), topicNames(cfg.topicPrefix)).userPreferences;
  const ends = await endOffsets(kafka, [topic]);
  const partitions = ends.size;
  const partition = partitionForKey(mailboxId, partitions);
  const to = ends.get(`${topic}:${partition}`) ?? 0;
  let latest: Buffer | null | undefined;
  const key = Buffer.from(mailboxId, 'utf8');
  await readRanges(kafka, [{ topic, partition, from: 0, to }], async (_r, records) => {
    for (const r of records) if (r.key && r.key.equals(key)) latest = r.value;
  });
  if (!latest) return undefined;
  await serde.prepare([latest]);
  return serde.deserialize(topic, latest);
}

/** The base URL of an instance on this host, from UM_HTTP_HOST / UM_HTTP_PORT. */
export function localInstanceUrl(cfg: Pick<AppConfig, 'http'>): string {
  const h = cfg.http.host;
  const host = h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h.includes(':') ? `[${h}]` : h;
  return `http://${host}:${cfg.http.port}`;
}

/**
 * Asks a running instance (`GET /v1/preferences/<id>`, with the API token when one is set).
 * Undefined when nothing answers at `baseUrl` (connection refused, timeout).
 */
export async function preferencesFromInstance(
  baseUrl: string,
  mailboxId: string,
  token: string | undefined,
  timeoutMs = 10_000,
): Promise<{ status: number; body: unknown } | undefined> {
  let res: Response;
  try {
    res = await fetch(`${baseUrl.replace(/\/+$/, '')}/v1/preferences/${encodeURIComponent(mailboxId)}`, {
      headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    // nothing listens there: the caller falls back to the topic
    const code = ((e as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EADDRNOTAVAIL') return undefined;
    throw new StreamsError(
      'INSTANCE_UNAVAILABLE',
      `the instance at ${baseUrl} did not answer (${(e as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (e as Error).message})`,
      { retriable: true, cause: e },
    );
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: shown as text
  }
  return { status: res.status, body };
}
