/**
 * `um dlq list|show|replay` and `um tail` against the real broker and registry: dead letters with
 * their headers decoded, replay to the source topic, decoded decisions filtered by key; the
 * readers' consumer groups are deleted when they are done.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp } from '../../cli/app.js';
import { loadConfig } from '../../cli/config.js';
import { deadLetterLine, listDeadLetters, replayDeadLetters, tail } from '../../cli/inspect.js';
import { keyHash } from '../../runtime/http.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { mail } from '../unit/processors/fixtures.js';
import { brokers, produce, readAll, registryUrl, uniqueName, waitUntil, withAdmin } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-ops-tools-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

describe('um dlq and um tail', () => {
  it('lists, shows and replays dead letters; tails decoded decisions by key', async () => {
    const prefix = `${uniqueName('tools')}.`;
    const appId = uniqueName('tools-app');
    const cfg = loadConfig({
      KAFKA_BROKERS: brokers().join(','),
      SCHEMA_REGISTRY_URL: registryUrl(),
      UM_TOPIC_PREFIX: prefix,
      UM_APP_ID: appId,
      UM_STATE_DIR: join(stateRoot, appId),
      UM_PARTITIONS: '2',
      UM_COMMIT_INTERVAL_MS: '200',
      // the test reads mail-decisions
      UM_DEFAULT_MODE: 'LIVE',
    });
    const topics = topicNames(prefix);
    const kafka = kafkaFor(cfg, 'tools-test');
    await ensureTopics(kafka, cfg);
    const serdes = mailSerdes(registryFor(cfg), topics);
    await serdes.mailEvents.init();
    const good = (id: string, mailboxId: string) =>
      serdes.mailEvents.serialize(topics.mailEvents, mail({ eventId: id, messageId: id, mailboxId, spamScore: 0.99 }));
    await produce(topics.mailEvents, [
      { key: 'mbx-a', value: Buffer.from('not avro') },
      { key: 'mbx-b', value: good('e-2', 'mbx-other') }, // key is not the mailbox: KEY_MISMATCH
      { key: 'mbx-c', value: good('e-3', 'mbx-c') },
      { key: 'mbx-d', value: good('e-4', 'mbx-d') },
    ]);

    const app = await startApp(cfg, { logger: pino({ level: 'silent' }), http: false });
    try {
      await waitUntil('2 dead letters and 2 decisions', async () => {
        const d = await withAdmin((a) => a.fetchTopicOffsets(`${appId}-dlq`));
        const m = await withAdmin((a) => a.fetchTopicOffsets(topics.mailDecisions));
        return d.reduce((n, p) => n + Number(p.high), 0) === 2 && m.reduce((n, p) => n + Number(p.high), 0) === 2;
      });
    } finally {
      await app.close();
    }

    // list: headers decoded, source named, the key hashed
    const letters = await listDeadLetters(kafka, `${appId}-dlq`);
    expect(letters.map((d) => d.error.code).sort()).toEqual(['BAD_MAGIC_BYTE', 'KEY_MISMATCH']);
    const bad = letters.find((d) => d.error.code === 'BAD_MAGIC_BYTE')!;
    expect(bad.source?.topic).toBe(topics.mailEvents);
    expect(bad.error.kind).toBe('deserialization');
    expect(bad.key?.toString()).toBe('mbx-a');
    const line = deadLetterLine(bad);
    expect(line).toContain(`BAD_MAGIC_BYTE  ${topics.mailEvents}[${bad.source!.partition}]@${bad.source!.offset}`);
    expect(line).toContain(`key#${keyHash('mbx-a')}`);
    expect(line).not.toContain('mbx-a');
    expect(await listDeadLetters(kafka, `${appId}-dlq`, 'KEY_MISMATCH')).toHaveLength(1);

    // the readers left no consumer group behind
    const groups = await withAdmin(async (a) => (await a.listGroups()).groups.map((g) => g.groupId));
    expect(groups.filter((g) => g.startsWith(`um-cli-dlq-${process.pid}-`))).toEqual([]);

    // replay: the original record back on its source topic, marked
    expect(await replayDeadLetters(kafka, [bad], `${appId}-dlq`)).toBe(1);
    const back = await readAll(topics.mailEvents, { atLeast: 5 });
    const replayed = back.filter((r) => r.headers['dlq.replayed.from']);
    expect(replayed).toHaveLength(1);
    expect(replayed[0]!.key?.toString()).toBe('mbx-a');
    expect(replayed[0]!.value?.toString()).toBe('not avro');
    expect(replayed[0]!.headers['dlq.replayed.from']).toBe(`${appId}-dlq:${bad.partition}:${bad.offset}`);

    // tail: decoded decisions, only the key asked for
    const lines: string[] = [];
    const n = await tail(kafka, cfg, topics.mailDecisions, {
      key: 'mbx-d',
      fromBeginning: true,
      limit: 1,
      print: (l) => lines.push(l),
      signal: AbortSignal.timeout(60_000),
    });
    expect(n).toBe(1);
    const rec = JSON.parse(lines[0]!) as { key: string; value: { mailboxId: string; action: string; reason: string } };
    expect(rec.key).toBe('mbx-d');
    expect(rec.value).toMatchObject({ mailboxId: 'mbx-d', action: 'JUNK', reason: 'HIGH_CONFIDENCE_SPAM' });
    const after = await withAdmin(async (a) => (await a.listGroups()).groups.map((g) => g.groupId));
    expect(after.filter((g) => g.startsWith(`um-cli-tail-${process.pid}-`))).toEqual([]);
  });
});
