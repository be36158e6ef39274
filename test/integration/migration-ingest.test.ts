/**
 * Mirror ingest on the real broker: POST /v1/mail-events produces valid events to mail-events
 * (keyed by mailboxId, partitioned like every producer of the co-partitioned topics) and answers
 * 202 after the broker acknowledged; a bad batch is refused whole with 400 naming each field;
 * a backed-up producer answers 503 with Retry-After; the tee copies accepted events to a staging
 * instance's endpoint.
 */
import { rmSync } from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureTopics, kafkaFor, registryFor, startApp, type App } from '../../cli/app.js';
import type { MailEvent } from '../../processors/logic/model.js';
import { partitionForKey } from '../../runtime/partitioner.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { readAll, uniqueName, waitUntil } from './helpers.js';
import { mailEvent, migrationConfig, stateRoot } from './migration-helpers.js';

afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const post = (url: string, body: unknown) =>
  fetch(`${url}/v1/mail-events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe('POST /v1/mail-events', () => {
  it('validates, produces with acks=all, refuses bad batches whole, backs off, and mirrors to staging', async () => {
    const logger = pino({ level: 'warn' });
    const stagingPrefix = `${uniqueName('mig-stg')}-`;
    const stagingCfg = migrationConfig(stagingPrefix, uniqueName('mig-stg-app'), 's1');
    await ensureTopics(kafkaFor(stagingCfg, 'mig-ing'), stagingCfg);
    const apps: App[] = [];
    try {
      const staging = await startApp(stagingCfg, { logger });
      apps.push(staging);
      const prefix = `${uniqueName('mig-ing')}-`;
      const cfg = migrationConfig(prefix, uniqueName('mig-ing-app'), 'i1', {
        UM_INGEST_MAX_BATCH: '50',
        UM_MIRROR_TO_URL: staging.url!,
        UM_MIRROR_PERCENT: '100',
      });
      await ensureTopics(kafkaFor(cfg, 'mig-ing'), cfg);
      const app = await startApp(cfg, { logger });
      apps.push(app);
      const topics = topicNames(prefix);
      const serdes = mailSerdes(registryFor(cfg), topics);

      const events = Array.from({ length: 30 }, (_, i) => mailEvent('ti', `ing-box-${i % 7}`, Date.now() - 1000 + i));
      const ok = await post(app.url!, events);
      expect(ok.status).toBe(202);
      expect(await ok.json()).toEqual({ accepted: 30 });
      // acknowledged: the records are on the topic as soon as the answer came
      const recs = await readAll(topics.mailEvents);
      expect(recs.length).toBe(30);
      await serdes.mailEvents.prepare(recs.map((r) => r.value));
      for (const r of recs) {
        const e = serdes.mailEvents.deserialize(topics.mailEvents, r.value!);
        expect(r.key!.toString()).toBe(e.mailboxId);
        expect(r.partition).toBe(partitionForKey(e.mailboxId, 3));
        expect(r.timestamp).toBe(e.receivedAt);
      }
      expect(recs.map((r) => r.timestamp).sort()).toEqual(events.map((e) => e.receivedAt).sort());

      // one bad event: 400 naming it, nothing of the batch produced
      const bad = await post(app.url!, [
        mailEvent('ti', 'x', Date.now()),
        { ...mailEvent('ti', 'y', Date.now()), bulkScore: 12, dkim: 'OK' },
      ]);
      expect(bad.status).toBe(400);
      expect(await bad.json()).toEqual({
        error: 'INVALID_MAIL_EVENTS',
        message: 'nothing was produced',
        errors: [
          { index: 1, field: 'dkim', message: "Invalid enum value. Expected 'PASS' | 'FAIL' | 'NONE', received 'OK'" },
          { index: 1, field: 'bulkScore', message: 'Number must be less than or equal to 9' },
        ],
      });
      const tooMany = await post(
        app.url!,
        Array.from({ length: 51 }, () => events[0]),
      );
      expect(tooMany.status).toBe(400);
      // the alias under /v1/ingest/
      const alias = await fetch(`${app.url}/v1/ingest/mail-events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(mailEvent('ti', 'alias-box', Date.now())),
      });
      expect(alias.status).toBe(202);
      expect((await readAll(topics.mailEvents)).length).toBe(31);

      // the tee: staging received every accepted event
      const stagingTopic = topicNames(stagingPrefix).mailEvents;
      await waitUntil('mirrored events on staging', async () => (await readAll(stagingTopic)).length >= 31, 20_000);
      expect((await readAll(stagingTopic)).length).toBe(31);
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toMatch(/um_ingest_events_total\{outcome="accepted"\} 31/);
      expect(metrics).toMatch(/um_ingest_events_total\{outcome="rejected"\} 53/);
      expect(metrics).toMatch(/um_ingest_mirror_events_total\{outcome="sent"\} 31/);
    } finally {
      for (const a of apps.reverse()) await a.close();
    }
  });

  it('answers 503 with Retry-After when more events wait for the broker than allowed', async () => {
    const prefix = `${uniqueName('mig-bp')}-`;
    const cfg = migrationConfig(prefix, uniqueName('mig-bp-app'), 'i1', { UM_INGEST_MAX_IN_FLIGHT: '5' });
    await ensureTopics(kafkaFor(cfg, 'mig-bp'), cfg);
    const app = await startApp(cfg, { logger: pino({ level: 'warn' }) });
    try {
      const batch = (n: number): MailEvent[] =>
        Array.from({ length: n }, (_, i) => mailEvent('tb', `bp-${i}`, Date.now()));
      const r = await post(app.url!, batch(6));
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('1');
      expect(((await r.json()) as { error: string }).error).toBe('BACKED_UP');
      // concurrent requests over the limit: some are refused, none is lost or half-produced
      const answers = await Promise.all(Array.from({ length: 8 }, () => post(app.url!, batch(3))));
      const statuses = answers.map((a) => a.status);
      expect(statuses.every((s) => s === 202 || s === 503)).toBe(true);
      const accepted = statuses.filter((s) => s === 202).length;
      expect(accepted).toBeGreaterThan(0);
      expect((await readAll(topicNames(prefix).mailEvents)).length).toBe(accepted * 3);
    } finally {
      await app.close();
    }
  });
});
