/**
 * Schema evolution while the service runs: a producer registers a new, compatible MailEvent
 * version (an added optional field with a default) and writes with it; the service decides on
 * those records as on any other. An incompatible version is refused by the registry and the
 * service keeps running.
 */
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, startApp } from '../../cli/app.js';
import { loadConfig } from '../../cli/config.js';
import type { Decision, MailEvent } from '../../processors/logic/model.js';
import { loadSchema } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { mail as fixtureMail } from '../unit/processors/fixtures.js';
import { brokers, produce, readAll, registryUrl, uniqueName, waitUntil } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-evo-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

function mail(n: number, over: Partial<MailEvent> = {}): MailEvent {
  return fixtureMail({
    eventId: `ev-${n}`,
    tenantId: 't1',
    mailboxId: `mb-${n % 3}`,
    messageId: `msg-${n}`,
    receivedAt: Date.UTC(2026, 1, 1) + n * 1000,
    senderAddress: `s${n}@x.example`,
    senderDomain: 'x.example',
    ...over,
  });
}

describe('schema evolution', () => {
  it('decides on records written with a newer compatible schema; an incompatible one is refused', async () => {
    const prefix = `${uniqueName('evo')}.`;
    const cfg = loadConfig({
      KAFKA_BROKERS: brokers().join(','),
      SCHEMA_REGISTRY_URL: registryUrl(),
      UM_TOPIC_PREFIX: prefix,
      UM_APP_ID: uniqueName('um-evo'),
      UM_STATE_DIR: stateRoot,
      UM_PARTITIONS: '2',
      UM_COMMIT_INTERVAL_MS: '200',
      UM_DEFAULT_MODE: 'LIVE', // every tenant LIVE: decisions on mail-decisions
      UM_LOG_LEVEL: 'warn',
    });
    const topics = topicNames(prefix);
    await ensureTopics(kafkaFor(cfg, 'evo'), cfg);
    const app = await startApp(cfg, { logger: pino({ level: 'warn' }), http: false });
    try {
      const registry = new SchemaRegistry({ host: registryUrl() });
      const subject = `${topics.mailEvents}-value`;
      // v1, as the service registered it
      const v1Id = await registry.getLatestSchemaId(subject);
      await produce(topics.mailEvents, [{ key: 'mb-1', value: await registry.encode(v1Id, mail(1)) }]);

      // v2: an added optional field with a default, registered by another producer while we run
      const v1 = loadSchema('MailEvent') as { fields: object[] };
      const v2 = { ...v1, fields: [...v1.fields, { name: 'threatLabel', type: ['null', 'string'], default: null }] };
      const { id: v2Id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v2) }, { subject });
      expect(v2Id).not.toBe(v1Id);
      await produce(topics.mailEvents, [
        {
          key: 'mb-2',
          value: await registry.encode(v2Id, { ...mail(2, { spamScore: 0.95 }), threatLabel: 'phish-kit' }),
        },
        { key: 'mb-0', value: await registry.encode(v2Id, { ...mail(3, { bulkScore: 8 }), threatLabel: null }) },
      ]);

      // v3: a new required field without a default is not backward compatible: refused
      const v3 = { ...v1, fields: [...v1.fields, { name: 'mandatory', type: 'string' }] };
      await expect(
        registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v3) }, { subject }),
      ).rejects.toThrow(/incompatib|409|compatib/i);
      expect(await registry.getLatestSchemaId(subject)).toBe(v2Id);

      // the service keeps running and decides on v1 again
      await produce(topics.mailEvents, [
        { key: 'mb-1', value: await registry.encode(v1Id, mail(4, { spamScore: 0.99 })) },
      ]);
      const recs = await readAll(topics.mailDecisions, { atLeast: 4 });
      const decisions = await Promise.all(recs.map(async (r) => (await registry.decode(r.value!)) as Decision));
      const by = new Map(decisions.map((d) => [d.messageId, d]));
      expect(by.get('msg-1')).toMatchObject({ action: 'INBOX', reason: 'CLEAN', eventId: 'ev-1' });
      expect(by.get('msg-2')).toMatchObject({ action: 'JUNK', reason: 'SPAM_SCORE', eventId: 'ev-2' });
      expect(by.get('msg-3')).toMatchObject({ action: 'PROMOTIONS', reason: 'BULK', eventId: 'ev-3' });
      expect(by.get('msg-4')).toMatchObject({ action: 'JUNK', reason: 'HIGH_CONFIDENCE_SPAM', eventId: 'ev-4' });
      expect(decisions).toHaveLength(4);
      await waitUntil('still running', () => app.streams.state === 'RUNNING', 5000);
      // nothing went to the dead-letter topic
      expect(await readAll(`${cfg.applicationId}-dlq`)).toHaveLength(0);
    } finally {
      await app.close();
    }
  });
});
