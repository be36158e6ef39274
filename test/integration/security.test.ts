/**
 * SASL and TLS to Kafka through configuration: the service runs against a broker's
 * SASL_PLAINTEXT (PLAIN) listener using KAFKA_SASL_* settings only, and against its SSL listener
 * trusting the broker's certificate through KAFKA_SSL_CA_FILE; wrong credentials or an untrusted
 * certificate fail at start.
 */
import { execFileSync } from 'node:child_process';
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
let caFile: string;
beforeAll(async () => {
  // a self-signed broker certificate for 127.0.0.1, made with the JDK's keytool
  const keystore = join(stateRoot, 'broker.p12');
  caFile = join(stateRoot, 'broker.pem');
  const keytool = (...args: string[]) => execFileSync('keytool', args, { stdio: 'pipe' });
  keytool(
    '-genkeypair',
    '-alias',
    'broker',
    '-keyalg',
    'RSA',
    '-keysize',
    '2048',
    '-dname',
    'CN=localhost',
    '-ext',
    'SAN=IP:127.0.0.1,DNS:localhost',
    '-validity',
    '2',
    '-keystore',
    keystore,
    '-storetype',
    'PKCS12',
    '-storepass',
    'changeit',
    '-keypass',
    'changeit',
  );
  keytool('-exportcert', '-alias', 'broker', '-keystore', keystore, '-storepass', 'changeit', '-rfc', '-file', caFile);
  broker = await startKafka({
    saslUsers: { admin: 'admin-secret', um: 'um-secret' },
    tls: { keystore, password: 'changeit' },
  });
});
afterAll(async () => {
  await broker?.stop();
  rmSync(stateRoot, { recursive: true, force: true });
});

function config(
  password: string,
  prefix: string,
  transport: 'sasl' | 'tls' = 'sasl',
  tlsEnv: Record<string, string> = {},
): AppConfig {
  const security =
    transport === 'sasl'
      ? {
          KAFKA_BROKERS: broker.saslBrokers.join(','),
          KAFKA_SASL_MECHANISM: 'plain',
          KAFKA_SASL_USERNAME: 'um',
          KAFKA_SASL_PASSWORD: password,
        }
      : { KAFKA_BROKERS: broker.tlsBrokers.join(','), ...tlsEnv };
  return loadConfig({
    ...security,
    SCHEMA_REGISTRY_URL: registryUrl(),
    UM_TOPIC_PREFIX: prefix,
    UM_APP_ID: uniqueName('um-sec'),
    UM_STATE_DIR: stateRoot,
    UM_PARTITIONS: '1',
    UM_DEFAULT_MODE: 'LIVE', // every tenant LIVE: decisions on mail-decisions
    UM_LOG_LEVEL: 'warn',
  });
}

async function decidesOneMail(cfg: AppConfig, prefix: string): Promise<void> {
  {
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
      await readRanges(kafka, [{ topic: topics.mailDecisions, partition: 0, from: 0, to: 1 }], async (_r, recs) => {
        await serdes.mailDecisions.prepare(recs.map((r) => r.value));
        for (const r of recs) decisions.push(serdes.mailDecisions.deserialize(topics.mailDecisions, r.value!));
      });
      expect(decisions).toHaveLength(1);
      expect(decisions[0]).toMatchObject({ messageId: 'msg-1', action: 'JUNK', reason: 'HIGH_CONFIDENCE_SPAM' });
    } finally {
      await app.close();
    }
  }
}

describe('security', () => {
  it('runs against a SASL listener with credentials from the configuration', async () => {
    const prefix = `${uniqueName('sec')}.`;
    await decidesOneMail(config('um-secret', prefix), prefix);
  });

  it('runs over TLS, trusting the broker certificate from KAFKA_SSL_CA_FILE', async () => {
    const prefix = `${uniqueName('tls')}.`;
    const cfg = config('', prefix, 'tls', { KAFKA_SSL_CA_FILE: caFile });
    expect(cfg.ssl).toMatchObject({ rejectUnauthorized: true });
    await decidesOneMail(cfg, prefix);
  });

  it('refuses a broker certificate it does not trust', async () => {
    const cfg = config('', `${uniqueName('tls-bad')}.`, 'tls', { KAFKA_SSL: 'true' });
    await expect(startApp(cfg, { logger: pino({ level: 'silent' }), http: false })).rejects.toThrow(
      /certificate|self[- ]signed|SSL|TLS|Connection/i,
    );
  });

  it('refuses to start with wrong SASL credentials, with an authentication error', async () => {
    const cfg = config('wrong-password', `${uniqueName('sec-bad')}.`);
    await expect(startApp(cfg, { logger: pino({ level: 'silent' }), http: false })).rejects.toThrow(
      /SASL|[Aa]uthentication/,
    );
  });
});
