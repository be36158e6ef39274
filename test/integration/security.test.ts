/**
 * SASL to Kafka through configuration: the service runs against a broker that has a
 * SASL_PLAINTEXT (PLAIN) listener, using KAFKA_SASL_* settings only; wrong credentials fail at
 * start with an authentication error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp } from '../../cli/app.js';
import { loadConfig, type AppConfig } from '../../cli/config.js';
import type { Decision, MailEvent } from '../../processors/logic/model.js';
import { endOffsets, readRanges } from '../../runtime/partition-reader.js';
import { startKafka, type LocalKafka } from '../../scripts/kafka/local.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { registryUrl, uniqueName, waitUntil } from './helpers.js';

let broker: LocalKafka;
const stateRoot = mkdtempSync(join(tmpdir(), 'um-sec-'));
beforeAll(async () => {
  broker = await startKafka({ saslUsers: { admin: 'admin-secret', um: 'um-secret' } });
});
afterAll(async () => {
  await broker?.stop();
  rmSync(stateRoot, { recursive: true, force: true });
});

function config(password: string, prefix: string): AppConfig {
  return loadConfig({
    KAFKA_BROKERS: broker.saslBrokers.join(','),
    KAFKA_SASL_MECHANISM: 'plain',
    KAFKA_SASL_USERNAME: 'um',
    KAFKA_SASL_PASSWORD: password,
    SCHEMA_REGISTRY_URL: registryUrl(),
    UM_TOPIC_PREFIX: prefix,
    UM_APP_ID: uniqueName('um-sec'),
    UM_STATE_DIR: stateRoot,
    UM_PARTITIONS: '1',
    UM_LOG_LEVEL: 'warn',
  });
}

describe('security', () => {
  it('runs against a SASL listener with credentials from the configuration', async () => {
    const prefix = `${uniqueName('sec')}.`;
    const cfg = config('um-secret', prefix);
    const kafka = kafkaFor(cfg, 'sec-test');
    await ensureTopics(kafka, cfg);
    const topics = topicNames(prefix);
    const serdes = mailSerdes(registryFor(cfg), topics);
    await serdes.mailEvents.init();
    const event: MailEvent = {
      eventId: 'e1',
      tenantId: 't',
      mailboxId: 'm',
      messageId: 'msg-1',
      receivedAt: Date.now(),
      senderAddress: 'a@b.example',
      senderDomain: 'b.example',
      spf: 'PASS',
      dkim: 'PASS',
      dmarc: 'PASS',
      spamScore: 0.99,
      bulkScore: 0,
      hasListUnsubscribe: false,
    };
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: topics.mailEvents,
      acks: -1,
      messages: [{ key: 'm', value: serdes.mailEvents.serialize(topics.mailEvents, event) }],
    });
    await producer.disconnect();

    const app = await startApp(cfg, { logger: pino({ level: 'warn' }), http: false });
    try {
      await waitUntil(
        'a decision',
        async () => ((await endOffsets(kafka, [topics.mailDecisions])).get(`${topics.mailDecisions}:0`) ?? 0) > 0,
      );
      const decisions: Decision[] = [];
      await serdes.mailDecisions.init();
      await readRanges(
        kafka,
        'sec-reader',
        [{ topic: topics.mailDecisions, partition: 0, from: 0, to: 1 }],
        async (_r, recs) => {
          await serdes.mailDecisions.prepare(recs.map((r) => r.value));
          for (const r of recs) decisions.push(serdes.mailDecisions.deserialize(topics.mailDecisions, r.value!));
        },
      );
      expect(decisions).toHaveLength(1);
      expect(decisions[0]).toMatchObject({ messageId: 'msg-1', action: 'JUNK', reason: 'HIGH_CONFIDENCE_SPAM' });
    } finally {
      await app.close();
    }
  });

  it('refuses to start with wrong SASL credentials, with an authentication error', async () => {
    const cfg = config('wrong-password', `${uniqueName('sec-bad')}.`);
    await expect(startApp(cfg, { logger: pino({ level: 'silent' }), http: false })).rejects.toThrow(
      /SASL|[Aa]uthentication/,
    );
  });
});
