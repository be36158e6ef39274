/**
 * Replay on the real broker: 10,000+ mails decided by the running service, then a time window of
 * them replayed to the replay topic. The replay decides exactly as the live run did (the
 * preferences did not change since), reads in a consumer group of its own (the live group's
 * committed offsets are untouched), and the dry run's plan counts exactly the window's records.
 */
import { rmSync } from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp } from '../../cli/app.js';
import { replay, replayOutputTopic } from '../../cli/replay.js';
import type { Decision, MailEvent, UserInteraction } from '../../processors/logic/model.js';
import { partitionForKey } from '../../runtime/partitioner.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { interaction } from '../unit/processors/fixtures.js';
import { produce, uniqueName, withAdmin } from './helpers.js';
import { mailEvent, migrationConfig, readDecoded, stateRoot } from './migration-helpers.js';

afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const N = 10_500;
const STEP = 300;

describe('um replay', () => {
  it('re-decides a window of 10,000+ mails like the live run, without moving the live offsets', async () => {
    const prefix = `${uniqueName('mig-rep')}-`;
    const appId = uniqueName('mig-rep-app');
    const cfg = migrationConfig(prefix, appId, 'i1', { UM_DEFAULT_MODE: 'LIVE', UM_PARITY: 'false' });
    const topics = topicNames(prefix);
    await ensureTopics(kafkaFor(cfg, 'mig-rep'), cfg);
    const serdes = mailSerdes(registryFor(cfg), topics);
    await Promise.all([serdes.mailEvents.init(), serdes.userInteractions.init(), serdes.mailDecisions.init()]);
    const T = Date.now() - 6 * 3_600_000;
    const boxes = Array.from({ length: 150 }, (_, i) => `rbox-${i}`);
    const senders = ['s0@sender.example', 's1@sender.example', 's2@sender.example', 's3@sender.example'];
    // preferences, all learned before the mails
    const interactions: UserInteraction[] = [];
    boxes.forEach((b, i) => {
      const action = (['ALLOW_SENDER', 'BLOCK_SENDER', 'MOVED_TO_PROMOTIONS'] as const)[i % 3]!;
      interactions.push(
        interaction(action, {
          eventId: `ri-${i}`,
          tenantId: i % 2 ? 'r1' : 'r2',
          mailboxId: b,
          messageId: `rim-${i}`,
          senderAddress: senders[i % 4]!,
          senderDomain: 'sender.example',
          occurredAt: T - 60_000,
          messageReceivedAt: T - 120_000,
        }),
      );
    });
    const mails: MailEvent[] = [];
    for (let i = 0; i < N; i++) {
      const b = i % boxes.length;
      mails.push(
        mailEvent(b % 2 ? 'r1' : 'r2', boxes[b]!, T + i * STEP, {
          senderAddress: senders[i % 4]!,
          spamScore: (i % 97) / 100,
          bulkScore: i % 10,
          hasListUnsubscribe: i % 3 === 0,
        }),
      );
    }
    await produce(
      topics.userInteractions,
      interactions.map((x) => ({
        key: x.mailboxId,
        value: serdes.userInteractions.serialize(topics.userInteractions, x),
        timestamp: x.occurredAt,
      })),
    );
    await produce(
      topics.mailEvents,
      mails.map((e) => ({
        key: e.mailboxId,
        value: serdes.mailEvents.serialize(topics.mailEvents, e),
        timestamp: e.receivedAt,
      })),
    );
    const app = await startApp(cfg, { logger: pino({ level: 'warn' }), http: false });
    let live: Decision[];
    try {
      live = (await readDecoded<Decision>(topics.mailDecisions, serdes.mailDecisions, N, 120_000)).map((r) => r.value);
      expect(live.length).toBe(N);
    } finally {
      await app.close();
    }
    const offsets = () =>
      withAdmin((a) => a.fetchOffsets({ groupId: appId, topics: [topics.mailEvents] })).then((x) =>
        JSON.stringify(x[0]!.partitions.map((p) => [p.partition, p.offset]).sort()),
      );
    const before = await offsets();

    const fromMs = T + 100 * STEP;
    const toMs = T + 10_400 * STEP;
    const inWindow = mails.filter((e) => e.receivedAt >= fromMs && e.receivedAt < toMs);
    expect(inWindow.length).toBe(10_300);
    const printed: string[] = [];
    const dry = await replay(cfg, { fromMs, toMs, dryRun: true }, { out: (l) => printed.push(l) });
    const lines = printed.join('\n').split('\n');
    expect(dry.planned).toBe(10_300);
    for (const p of dry.plan)
      expect(p.to - p.from).toBe(inWindow.filter((e) => partitionForKey(e.mailboxId, 3) === p.partition).length);
    expect(lines[1]).toBe('partition  from offset  to offset  records');
    expect(lines.at(-1)).toBe('total 10300 records (before the tenant and timestamp filters)');

    const progress: string[] = [];
    const s = await replay(cfg, { fromMs, toMs, id: 'rep-1' }, { out: (l) => progress.push(l), progressEveryMs: 200 });
    expect([s.read, s.written, s.stopped]).toEqual([10_300, 10_300, false]);
    expect(s.skipped).toEqual({ outsideWindow: 0, otherTenant: 0, off: 0, invalid: 0, undecodable: 0 });
    expect(progress.at(-1)).toMatch(
      /^\[#{30}\] 100\.0% 10300\/10300 records, \d+\/s, ETA 0 s, 10300 decisions written$/,
    );
    const replayed = await readDecoded<Decision>(replayOutputTopic(cfg), serdes.mailDecisions, 10_300);
    expect(replayed.length).toBe(10_300);
    expect(new Set(replayed.map((r) => r.headers['um.replay.id']))).toEqual(new Set(['rep-1']));
    const key = (d: Decision) => JSON.stringify([d.action, d.reason, d.matchedKey, d.preferencesVersion, d.mode]);
    const liveBy = new Map(live.map((d) => [d.messageId, key(d)]));
    const differing = replayed.filter((r) => liveBy.get(r.value.messageId) !== key(r.value));
    expect(differing.map((r) => r.value.messageId)).toEqual([]);
    // the decisions are not all alike: the preferences and the scores matter
    expect(new Set(replayed.map((r) => r.value.reason)).size).toBeGreaterThanOrEqual(5);

    // one tenant, one partition, another output topic
    const out2 = `${prefix}replay-r2-p0`;
    const s2 = await replay(
      cfg,
      { fromMs, toMs, tenant: 'r2', partitions: [0], output: out2 },
      { out: () => undefined },
    );
    const want2 = inWindow.filter((e) => e.tenantId === 'r2' && partitionForKey(e.mailboxId, 3) === 0).length;
    expect(s2.written).toBe(want2);
    expect(s2.skipped.otherTenant).toBe(
      inWindow.filter((e) => e.tenantId !== 'r2' && partitionForKey(e.mailboxId, 3) === 0).length,
    );

    // stopped midway (Ctrl-C), then resumed from the printed offsets: every record written, once
    // or (for the batch in hand when it stopped) twice, never skipped
    const out3 = `${prefix}replay-resumed`;
    const ac = new AbortController();
    const first = await replay(
      cfg,
      { fromMs, toMs, output: out3, id: 'rep-3', signal: ac.signal },
      { out: () => ac.abort(new Error('interrupted')), progressEveryMs: 0 },
    );
    expect(first.stopped).toBe(true);
    expect(first.read).toBeLessThan(10_300);
    const { parseResume, resumeArg } = await import('../../cli/replay.js');
    const rest = await replay(
      cfg,
      { fromMs, toMs, output: out3, id: 'rep-3', resume: parseResume(resumeArg(first)) },
      { out: () => undefined },
    );
    expect(rest.stopped).toBe(false);
    const resumed = await readDecoded<Decision>(out3, serdes.mailDecisions, 10_300);
    expect(new Set(resumed.map((r) => r.value.messageId)).size).toBe(10_300);
    expect(first.written + rest.written).toBe(resumed.length);

    // the live group's committed offsets did not move
    expect(await offsets()).toBe(before);
    // (the live group has committed offsets on every partition, so "untouched" means something;
    // whether its close committed the very last batch is the engine's business, not the replay's)
    const committed = JSON.parse(before) as [number, string][];
    expect(committed.map(([p]) => p)).toEqual([0, 1, 2]);
    for (const [, off] of committed) expect(Number(off)).toBeGreaterThan(0);
  });
});
