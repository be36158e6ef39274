/** Shared set-up of the migration integration tests: configuration, decoding, mail events. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type AppConfig } from '../../cli/config.js';
import type { MailEvent } from '../../processors/logic/model.js';
import type { Serde } from '../../runtime/serdes.js';
import { mail as fixtureMail } from '../unit/processors/fixtures.js';
import { brokers, readAll, registryUrl } from './helpers.js';

export const stateRoot = mkdtempSync(join(tmpdir(), 'um-migration-'));

export function migrationConfig(
  prefix: string,
  appId: string,
  instance: string,
  env: Record<string, string> = {},
): AppConfig {
  return loadConfig({
    KAFKA_BROKERS: brokers().join(','),
    SCHEMA_REGISTRY_URL: registryUrl(),
    UM_TOPIC_PREFIX: prefix,
    UM_APP_ID: appId,
    UM_INSTANCE_ID: instance,
    UM_STATE_DIR: join(stateRoot, `${appId}-${instance}`),
    UM_PARTITIONS: '3',
    UM_COMMIT_INTERVAL_MS: '200',
    UM_HTTP_HOST: '127.0.0.1',
    UM_HTTP_PORT: '0',
    UM_LOG_LEVEL: 'warn',
    ...env,
  });
}

let seq = 0;
export function mailEvent(tenantId: string, mailboxId: string, at: number, over: Partial<MailEvent> = {}): MailEvent {
  seq++;
  return fixtureMail({
    eventId: `ev-${seq}`,
    tenantId,
    mailboxId,
    messageId: `msg-${seq}`,
    receivedAt: at,
    senderAddress: `s${seq % 7}@sender.example`,
    senderDomain: 'sender.example',
    spamScore: 0.05,
    bulkScore: 0,
    ...over,
  });
}

/** Reads and decodes a topic (at least `atLeast` records, or what is there at the deadline). */
export async function readDecoded<T>(
  topic: string,
  serde: Serde<T>,
  atLeast = 0,
  timeoutMs = 60_000,
): Promise<{ value: T; headers: Record<string, string>; timestamp: number }[]> {
  const recs = await readAll(topic, { atLeast, timeoutMs });
  const vals = recs.filter((r) => r.value !== null);
  await serde.prepare?.(vals.map((r) => r.value));
  return vals.map((r) => ({ value: serde.deserialize(topic, r.value!), headers: r.headers, timestamp: r.timestamp }));
}
