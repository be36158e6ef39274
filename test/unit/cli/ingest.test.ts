import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { IngestMetrics, Mirror, mirrored, parseMailEvents } from '../../../cli/ingest.js';
import type { MailEvent } from '../../../processors/logic/model.js';

const good = {
  eventId: 'e1',
  tenantId: 't1',
  mailboxId: 'mb1',
  messageId: 'm1',
  receivedAt: 1767225600000,
  senderAddress: 'news@Shop.example',
  senderDomain: 'Shop.Example',
  spf: 'PASS',
  dkim: 'NONE',
  dmarc: 'FAIL',
  spamScore: 0.2,
  bulkScore: 3,
  hasListUnsubscribe: true,
};

describe('ingest validation', () => {
  it('accepts one event or an array; lower-cases the domain; takes ISO timestamps', () => {
    const one = parseMailEvents(good, 10);
    expect(one).toEqual({ ok: true, events: [{ ...good, senderDomain: 'shop.example' }] });
    const two = parseMailEvents([good, { ...good, eventId: 'e2', receivedAt: '2026-01-01T00:00:00Z', extra: 1 }], 10);
    expect(two.ok && two.events.map((e) => [e.eventId, e.receivedAt])).toEqual([
      ['e1', 1767225600000],
      ['e2', 1767225600000],
    ]);
  });
  it('names each bad field of each bad event', () => {
    const r = parseMailEvents([good, { ...good, spamScore: 1.5, spf: 'MAYBE' }, { ...good, mailboxId: undefined }], 10);
    expect(r).toEqual({
      ok: false,
      errors: [
        { index: 1, field: 'spf', message: "Invalid enum value. Expected 'PASS' | 'FAIL' | 'NONE', received 'MAYBE'" },
        { index: 1, field: 'spamScore', message: 'Number must be less than or equal to 1' },
        { index: 2, field: 'mailboxId', message: 'Required' },
      ],
    });
  });
  it('says what a timestamp must be', () => {
    expect(parseMailEvents({ ...good, receivedAt: 'yesterday' }, 1)).toEqual({
      ok: false,
      errors: [{ index: 0, field: 'receivedAt', message: 'must be epoch milliseconds or an ISO 8601 date-time' }],
    });
    expect(parseMailEvents({ ...good, receivedAt: undefined }, 1)).toEqual({
      ok: false,
      errors: [{ index: 0, field: 'receivedAt', message: 'Required' }],
    });
  });
  it('refuses batches over the limit, empty arrays and non-objects', () => {
    expect(parseMailEvents([good, good, good], 2)).toEqual({
      ok: false,
      errors: [{ index: 2, field: '(body)', message: 'at most 2 events per request, got 3' }],
    });
    expect(parseMailEvents([], 2).ok).toBe(false);
    expect(parseMailEvents('x', 2)).toEqual({
      ok: false,
      errors: [{ index: 0, field: '(event)', message: 'Expected object, received string' }],
    });
  });
});

describe('mirror tee', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  async function staging(handler: (body: MailEvent[]) => number | Promise<number>): Promise<string> {
    server = createServer((req, res) => {
      let data = '';
      req.on('data', (c: Buffer) => (data += c.toString()));
      req.on('end', () => {
        void Promise.resolve(handler(JSON.parse(data) as MailEvent[])).then((status) => {
          res.statusCode = status;
          res.end('{}');
        });
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async function count(reg: Registry, outcome: string): Promise<number> {
    const m = await reg.getSingleMetric('um_ingest_mirror_events_total')!.get();
    return m.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  }

  it('samples tenants stickily by murmur3(tenantId) % 100', () => {
    const tenants = Array.from({ length: 1000 }, (_, i) => `tenant-${i}`);
    const in30 = tenants.filter((t) => mirrored(t, 30));
    expect(in30.length).toBeGreaterThan(250);
    expect(in30.length).toBeLessThan(350);
    for (const t of in30) expect(mirrored(t, 60)).toBe(true);
    expect(tenants.filter((t) => mirrored(t, 0))).toEqual([]);
    expect(tenants.filter((t) => mirrored(t, 100)).length).toBe(1000);
  });

  it('sends accepted events of sampled tenants; a full queue drops (counted) without waiting', async () => {
    const got: MailEvent[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const url = await staging(async (b) => {
      await gate;
      got.push(...b);
      return 202;
    });
    const reg = new Registry();
    const metrics = new IngestMetrics(reg);
    const m = new Mirror({ url, percent: 100, maxQueue: 3, batch: 2, metrics });
    const ev = (i: number): MailEvent => ({ ...(good as unknown as MailEvent), eventId: `e${i}` });
    const t0 = Date.now();
    m.offer([ev(1), ev(2)]); // taken by the sender at once (in flight, held by the staging)
    m.offer([ev(3), ev(4), ev(5), ev(6)]); // queue of 3: one dropped
    expect(Date.now() - t0).toBeLessThan(50);
    expect(await count(reg, 'dropped')).toBe(1);
    release();
    // (the staging has the events before the mirror has its answer and counts them as sent)
    for (let i = 0; i < 100 && (got.length < 5 || (await count(reg, 'sent')) < 5); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(got.map((e) => e.eventId)).toEqual(['e1', 'e2', 'e3', 'e4', 'e5']);
    expect(await count(reg, 'sent')).toBe(5);
  });

  it('a failing staging is counted and does not stop later sends', async () => {
    let calls = 0;
    const url = await staging(() => (++calls === 1 ? 500 : 202));
    const reg = new Registry();
    const m = new Mirror({ url, percent: 100, metrics: new IngestMetrics(reg) });
    m.offer([good as unknown as MailEvent]);
    for (let i = 0; i < 100 && (await count(reg, 'failed')) < 1; i++) await new Promise((r) => setTimeout(r, 20));
    m.offer([good as unknown as MailEvent]);
    for (let i = 0; i < 100 && (await count(reg, 'sent')) < 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect([await count(reg, 'failed'), await count(reg, 'sent')]).toEqual([1, 1]);
  });
});
