/**
 * Issue 7, finding 3: one very busy mailbox must not kill the service. Thousands of interactions
 * for one mailbox, with ever new sender addresses, grow its preference record to the 1024-address
 * cap (tens of KiB per version, every version written to `user-preferences`), while mails of other
 * mailboxes keep arriving. The service stays RUNNING, decides every mail, and the busy mailbox ends
 * with exactly the preferences the learning rules give.
 *
 * `npm test` runs 2,500 interactions; UM_BUSY_INTERACTIONS=100000 runs the full size.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp } from '../../cli/app.js';
import { loadConfig } from '../../cli/config.js';
import { learn } from '../../processors/logic/learn.js';
import type { Decision, UserInteraction, UserPreferences } from '../../processors/logic/model.js';
import type { StreamsState } from '../../runtime/streams.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { interaction as fixtureInteraction, mail as fixtureMail } from '../unit/processors/fixtures.js';
import { brokers, produce, readAll, registryUrl, uniqueName, waitUntil, withAdmin } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-busy-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const N = Number(process.env.UM_BUSY_INTERACTIONS ?? 2500);
const OTHER_MAILBOXES = 30;
const MAILS = 600;
const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);
const ACTIONS: UserInteraction['action'][] = ['ALLOW_SENDER', 'BLOCK_SENDER', 'MOVED_TO_JUNK', 'MOVED_TO_PROMOTIONS'];

function interactions(): UserInteraction[] {
  const out: UserInteraction[] = [];
  for (let i = 0; i < N; i++) {
    const at = T0 + i * 1000;
    // 1,500 distinct senders: the record reaches the 1024-address cap and then evicts
    const sender = `sender-${i % 1500}@domain-${i % 97}.example`;
    out.push(
      fixtureInteraction(ACTIONS[i % ACTIONS.length]!, {
        eventId: `busy-int-${i}`,
        tenantId: 'tenant-busy',
        mailboxId: 'busy',
        messageId: `busy-msg-${i}`,
        senderAddress: sender,
        senderDomain: sender.split('@')[1]!,
        messageReceivedAt: at - 3_600_000,
        occurredAt: at,
      }),
    );
  }
  return out;
}

describe('a very busy mailbox', () => {
  it(
    `${N} interactions for one mailbox: the service stays RUNNING and other mailboxes keep being decided`,
    async () => {
      const prefix = `${uniqueName('busy')}.`;
      const appId = uniqueName('um-busy');
      const cfg = loadConfig({
        KAFKA_BROKERS: brokers().join(','),
        SCHEMA_REGISTRY_URL: registryUrl(),
        UM_TOPIC_PREFIX: prefix,
        UM_APP_ID: appId,
        UM_STATE_DIR: join(stateRoot, appId),
        UM_PARTITIONS: '3',
        UM_COMMIT_INTERVAL_MS: '500',
        UM_LOG_LEVEL: 'warn',
        // the test reads mail-decisions
        UM_DEFAULT_MODE: 'LIVE',
      });
      const topics = topicNames(prefix);
      await ensureTopics(kafkaFor(cfg, 'busy-test'), cfg);
      const serdes = mailSerdes(registryFor(cfg), topics);
      await Promise.all([
        serdes.mailEvents.init(),
        serdes.userInteractions.init(),
        serdes.mailDecisions.init(),
        serdes.userPreferences.init(),
      ]);

      const ints = interactions();
      // the reference: the learning rules applied one interaction at a time
      let expected: UserPreferences | undefined;
      let versions = 0;
      for (const i of ints) {
        const r = learn(expected, i, { duplicate: false });
        if (r.next) {
          expected = r.next;
          versions++;
        }
      }
      const span = N * 1000;
      const mails = Array.from({ length: MAILS }, (_, j) =>
        fixtureMail({
          eventId: `mail-${j}`,
          tenantId: 'tenant-other',
          mailboxId: j % 10 === 0 ? 'busy' : `other-${j % OTHER_MAILBOXES}`,
          messageId: `mail-msg-${j}`,
          receivedAt: T0 + Math.floor((j * span) / MAILS) + 500,
          senderAddress: `news-${j}@shop.example`,
          senderDomain: 'shop.example',
          spamScore: 0.05,
        }),
      );
      const t0 = Date.now();
      await produce(
        topics.userInteractions,
        ints.map((i) => ({
          key: i.mailboxId,
          value: serdes.userInteractions.serialize(topics.userInteractions, i),
          timestamp: i.occurredAt,
        })),
      );
      await produce(
        topics.mailEvents,
        mails.map((m) => ({
          key: m.mailboxId,
          value: serdes.mailEvents.serialize(topics.mailEvents, m),
          timestamp: m.receivedAt,
        })),
      );
      const produceMs = Date.now() - t0;

      const states: StreamsState[] = [];
      const app = await startApp(
        { ...cfg, http: { host: '127.0.0.1', port: 0 } },
        { logger: pino({ level: 'warn' }), onStateChange: (to) => states.push(to) },
      );
      const t1 = Date.now();
      let decisions: Decision[];
      let prefs: UserPreferences;
      try {
        await waitUntil(
          'every mail decided',
          async () => {
            if (app.streams.state === 'ERROR') throw new Error(`the service failed: ${String(app.streams.failure())}`);
            const ends = await withAdmin((a) => a.fetchTopicOffsets(topics.mailDecisions));
            return ends.reduce((n, p) => n + Number(p.high), 0) >= MAILS;
          },
          900_000,
        );
        const recs = await readAll(topics.mailDecisions);
        await serdes.mailDecisions.prepare(recs.map((r) => r.value));
        decisions = recs.map((r) => serdes.mailDecisions.deserialize(topics.mailDecisions, r.value!));
        // every interaction learned: the busy mailbox reaches the reference's version
        await waitUntil(
          'the busy mailbox at its last version',
          async () => {
            if (app.streams.state === 'ERROR') throw new Error(`the service failed: ${String(app.streams.failure())}`);
            const r = await fetch(`${app.url}/v1/preferences/busy`);
            if (r.status !== 200) return false;
            prefs = ((await r.json()) as { value: UserPreferences }).value;
            return prefs.version >= versions;
          },
          900_000,
        );
        expect(app.streams.state).toBe('RUNNING');
        expect(app.streams.failure()).toBeUndefined();
      } finally {
        await app.close();
      }
      const processMs = Date.now() - t1;
      expect(states).not.toContain('ERROR');
      expect(new Set(decisions.map((d) => d.messageId)).size).toBe(MAILS);
      expect(prefs!).toEqual(expected);
      expect(prefs!.entries.filter((e) => e.scope === 'ADDRESS')).toHaveLength(
        Math.min(1024, new Set(ints.map((i) => i.senderAddress)).size),
      );
      // nothing went to the dead-letter topic: every version fitted the topic
      expect(await readAll(`${appId}-dlq`)).toEqual([]);
      // records written to the (compacted) table topic, before compaction
      const written = (await withAdmin((a) => a.fetchTopicOffsets(topics.userPreferences))).reduce(
        (n, p) => n + Number(p.high),
        0,
      );
      const prefRecords = await readAll(topics.userPreferences);
      const bytes = prefRecords.reduce((n, r) => n + (r.value?.length ?? 0), 0);
      const largest = prefRecords.reduce((n, r) => Math.max(n, r.value?.length ?? 0), 0);
      // (the store's cache writes the newest version of a key per flush, so fewer records than versions)
      const busy = prefRecords.filter((r) => String(r.key) === 'busy');
      await serdes.userPreferences.prepare([busy[busy.length - 1]!.value]);
      expect(serdes.userPreferences.deserialize(topics.userPreferences, busy[busy.length - 1]!.value!)).toEqual(
        expected,
      );
      console.log(
        `busy mailbox: ${N} interactions → ${versions} versions, ${written} user-preferences records written ` +
          `(${busy.length} of the busy mailbox left after compaction), ` +
          `${(bytes / 1048576).toFixed(1)} MiB (largest ${largest} bytes); ${MAILS} mails decided; ` +
          `produce ${produceMs} ms, process ${processMs} ms; states ${states.join(' → ')}`,
      );
    },
    N > 10_000 ? 3_600_000 : 180_000,
  );
});
