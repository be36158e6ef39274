/**
 * Operator tools on the real broker: `um reset` (offsets, internal topics, helper groups, local
 * state; refused while the group has members; --dry-run), UM_OFFSET_RESET=latest for a new group,
 * and the state directory lock between two instances.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp, type App } from '../../cli/app.js';
import { loadConfig, type AppConfig } from '../../cli/config.js';
import { GroupActiveError, parseResetTarget, runReset } from '../../cli/reset.js';
import { StateDirLockedError } from '../../runtime/state-dir-lock.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { unwantedMailTopology } from '../../topology/unwanted-mail.js';
import { brokers, produce, registryUrl, uniqueName, waitUntil, withAdmin } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-ops-reset-'));
const apps: App[] = [];
afterAll(async () => {
  for (const a of apps) await a.close().catch(() => undefined);
  rmSync(stateRoot, { recursive: true, force: true });
});

const PARTITIONS = 2;

function config(prefix: string, appId: string, extra: Record<string, string> = {}): AppConfig {
  return loadConfig({
    KAFKA_BROKERS: brokers().join(','),
    SCHEMA_REGISTRY_URL: registryUrl(),
    UM_TOPIC_PREFIX: prefix,
    UM_APP_ID: appId,
    UM_STATE_DIR: join(stateRoot, appId),
    UM_PARTITIONS: String(PARTITIONS),
    UM_COMMIT_INTERVAL_MS: '200',
    UM_LOG_LEVEL: 'warn',
    ...extra,
  });
}

function topologyFor(cfg: AppConfig) {
  const topics = topicNames(cfg.topicPrefix);
  return unwantedMailTopology({ topics, serdes: mailSerdes(registryFor(cfg), topics) });
}

async function committed(groupId: string, topic: string): Promise<number[]> {
  return withAdmin(async (a) => {
    const [t] = await a.fetchOffsets({ groupId, topics: [topic] });
    return t!.partitions.sort((x, y) => x.partition - y.partition).map((p) => Number(p.offset));
  });
}

async function ends(topic: string): Promise<number[]> {
  return withAdmin(async (a) =>
    (await a.fetchTopicOffsets(topic)).sort((x, y) => x.partition - y.partition).map((p) => Number(p.high)),
  );
}

/** Records that are not Avro: each goes to the dead-letter topic, and its offset is committed. */
async function garbage(topic: string, n: number, t0: number): Promise<void> {
  await produce(
    topic,
    Array.from({ length: n }, (_, i) => ({
      key: `mbx-${i}`,
      value: Buffer.from(`not avro ${i}`),
      partition: i % PARTITIONS,
      timestamp: t0 + i * 1000,
    })),
  );
}

describe('um reset', () => {
  it('refuses while instances run; --dry-run changes nothing; resets offsets, internal topics, helper groups and state', async () => {
    const prefix = `${uniqueName('rst')}.`;
    const appId = uniqueName('rst-app');
    const cfg = config(prefix, appId);
    const topics = topicNames(prefix);
    const kafka = kafkaFor(cfg, 'reset-test');
    await ensureTopics(kafka, cfg);
    const T0 = Date.UTC(2026, 0, 1);
    const N = 10; // 5 per partition, timestamps T0 + i s
    await garbage(topics.mailEvents, N, T0);

    const app = await startApp(cfg, { logger: pino({ level: 'silent' }), http: false });
    apps.push(app);
    await waitUntil('every record processed and committed', async () => {
      const c = await committed(appId, topics.mailEvents);
      return c.length === PARTITIONS && c.every((o) => o === N / PARTITIONS);
    });
    const topology = topologyFor(cfg);
    const internal = topology
      .resolvedStores(appId)
      .flatMap((s) => (s.changelogTopic && !s.sourceChangelog ? [s.changelogTopic] : []));
    expect(internal.length).toBeGreaterThan(0);
    const opts = { applicationId: appId, stateDir: cfg.stateDir, topology, target: parseResetTarget('earliest') };

    // 1. refused while the group has a member
    await expect(runReset(kafka, { ...opts, dryRun: true })).rejects.toBeInstanceOf(GroupActiveError);
    await expect(runReset(kafka, { ...opts, dryRun: false })).rejects.toThrow(
      new RegExp(`consumer group ${appId} has 1 active member.*stop every instance`),
    );
    await app.close();
    apps.pop();
    const stateDir = join(cfg.stateDir, appId);
    expect(readdirSync(stateDir).filter((f) => f !== '.lock').length).toBeGreaterThan(0);
    const groupsOf = async (prefix: string) =>
      withAdmin(async (a) => (await a.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix)));
    // this version's readers (restore, global tables, standbys) join no consumer group: none is left
    expect(await groupsOf(`${appId}-`)).toEqual([]);
    // a helper group an older version's global-table reader left behind (empty, with offsets)
    const leftover = `${appId}-global-${appId}-i1-0123456789ab`;
    await withAdmin((a) =>
      a.setOffsets({ groupId: leftover, topic: topics.rolloutFlags, partitions: [{ partition: 0, offset: '0' }] }),
    );
    const helperGroups = await groupsOf(`${appId}-global-`);
    expect(helperGroups).toEqual([leftover]);

    // 2. dry run: the plan, and nothing changed
    const dry = await runReset(kafka, { ...opts, dryRun: true });
    expect(dry).toContain(`consumer group ${appId}: input offsets to earliest`);
    expect(dry).toContain(`${topics.mailEvents}[0]  5 -> 0`);
    expect(dry).toContain(`${topics.mailEvents}[1]  5 -> 0`);
    for (const t of internal) expect(dry).toContain(t);
    expect(dry).toContain(helperGroups[0]);
    expect(dry).toContain('dry run: nothing changed');
    expect(await committed(appId, topics.mailEvents)).toEqual([5, 5]);
    const topicsBefore = await withAdmin((a) => a.listTopics());
    for (const t of internal) expect(topicsBefore).toContain(t);

    // 3. the reset
    const out = await runReset(kafka, { ...opts, dryRun: false });
    expect(out).toMatch(/\ndone$/);
    expect(await committed(appId, topics.mailEvents)).toEqual([0, 0]);
    await waitUntil('internal topics deleted', async () => {
      const now = await withAdmin((a) => a.listTopics());
      return internal.every((t) => !now.includes(t));
    });
    const after = await withAdmin((a) => a.listTopics());
    expect(after).toContain(`${appId}-dlq`); // dead letters are kept
    expect(after).toContain(topics.mailEvents);
    expect(after).toContain(topics.userPreferences);
    expect(
      (await withAdmin((a) => a.listGroups())).groups.map((g) => g.groupId).filter((g) => helperGroups.includes(g)),
    ).toEqual([]);
    expect(existsSync(stateDir) ? readdirSync(stateDir).filter((f) => f !== '.lock') : []).toEqual([]);

    // 4. to latest, and to a time (the first record at or after it)
    await runReset(kafka, { ...opts, target: parseResetTarget('latest'), dryRun: false });
    expect(await committed(appId, topics.mailEvents)).toEqual(await ends(topics.mailEvents));
    // record i is on partition i % 2 at T0 + i s: from T0 + 4.5 s, partition 0 starts at i=6 (its 4th
    // record, offset 3) and partition 1 at i=5 (offset 2)
    await runReset(kafka, {
      ...opts,
      target: parseResetTarget(new Date(T0 + 4500).toISOString()),
      dryRun: false,
    });
    expect(await committed(appId, topics.mailEvents)).toEqual([3, 2]);
    // after the last record: the log ends
    await runReset(kafka, { ...opts, target: parseResetTarget(String(T0 + 3_600_000)), dryRun: false });
    expect(await committed(appId, topics.mailEvents)).toEqual([5, 5]);
  });

  it('parses --to targets and refuses others', () => {
    expect(parseResetTarget('earliest')).toEqual({ kind: 'earliest' });
    expect(parseResetTarget('latest')).toEqual({ kind: 'latest' });
    expect(parseResetTarget('2026-03-01T12:00:00Z')).toEqual({ kind: 'time', at: Date.UTC(2026, 2, 1, 12) });
    expect(parseResetTarget('1767225600000')).toEqual({ kind: 'time', at: 1767225600000 });
    expect(() => parseResetTarget('yesterday')).toThrow(/--to yesterday: expected earliest, latest/);
  });
});

describe('start-up behaviour on the real broker', () => {
  it('UM_OFFSET_RESET=latest: a new group skips what is already in the input topics', async () => {
    const prefix = `${uniqueName('ofr')}.`;
    const appId = uniqueName('ofr-app');
    const cfg = config(prefix, appId, { UM_OFFSET_RESET: 'latest' });
    const topics = topicNames(prefix);
    await ensureTopics(kafkaFor(cfg, 'ofr-test'), cfg);
    await garbage(topics.mailEvents, 6, Date.UTC(2026, 0, 1));
    const app = await startApp(cfg, { logger: pino({ level: 'silent' }), http: false });
    apps.push(app);
    const end = await ends(topics.mailEvents);
    expect(end.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(6);
    expect(await committed(appId, topics.mailEvents)).toEqual(end);
    // nothing old was processed: no dead letters from the 6 records
    const dlqEnds = await ends(`${appId}-dlq`);
    expect(dlqEnds.reduce((a, b) => a + b, 0)).toBe(0);
    await app.close();
    apps.pop();
  });

  it('a second instance on the same state directory is refused with a message', async () => {
    const prefix = `${uniqueName('lck')}.`;
    const appId = uniqueName('lck-app');
    const cfg = config(prefix, appId);
    const app = await startApp(cfg, { logger: pino({ level: 'silent' }), http: false, createTopics: true });
    apps.push(app);
    const second = config(prefix, appId, { UM_INSTANCE_ID: 'second' });
    await expect(startApp(second, { logger: pino({ level: 'silent' }), http: false })).rejects.toBeInstanceOf(
      StateDirLockedError,
    );
    await app.close();
    apps.pop();
    // free again once the first has stopped
    const third = await startApp(second, { logger: pino({ level: 'silent' }), http: false });
    apps.push(third);
    await third.close();
    apps.pop();
  });
});
