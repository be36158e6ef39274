/**
 * The HTTP server against a fake KafkaStreams (only the members the server uses): health,
 * readiness, metrics, topology, and interactive queries (local, forwarded, refused).
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import {
  canonicalPeerUrl,
  isAllowedPeer,
  keyHash,
  startHttpServer,
  type HttpServer,
  type HttpServerOptions,
  type QueryableStreams,
} from '../../../runtime/http.js';
import { RuntimeMetrics } from '../../../runtime/metrics.js';
import type { StreamsState } from '../../../runtime/streams.js';
import { seqTopology } from '../../integration/fixtures/seq-topology.js';

interface Fake extends QueryableStreams {
  state: StreamsState;
  ready: boolean;
  /** partition -> contents of store `seq`, for the partitions this fake owns */
  owned: Map<number, Map<string, unknown>>;
  owner: (partition: number) => Promise<string | undefined>;
  ownerCalls: number;
  metrics: RuntimeMetrics;
}

/** Keys starting with "a" are in partition 0, all others in partition 1. */
function fakeStreams(instanceId: string, over: Partial<Fake> = {}): Fake {
  const metrics = new RuntimeMetrics('um_', undefined, { defaultMetrics: false });
  const topology = seqTopology('in', 'out');
  const fake: Fake = {
    state: 'RUNNING',
    ready: true,
    owned: new Map(),
    owner: async () => undefined,
    ownerCalls: 0,
    isReady: () => fake.ready,
    restoreProgress: () => [{ task: '0_1', store: 'seq', restored: 10, remaining: 90 }],
    partitionFor: (key) => (key.startsWith('a') ? 0 : 1),
    localStore: (store, partition) => {
      const m = store === 'seq' ? fake.owned.get(partition) : undefined;
      return m && { get: async (k: string) => m.get(k) };
    },
    ownerEndpoint: (p) => {
      fake.ownerCalls++;
      return fake.owner(p);
    },
    metrics,
    topology,
    config: { instanceId },
    ...over,
  };
  return fake;
}

const servers: HttpServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function serve(
  streams: QueryableStreams,
  logger = pino({ level: 'silent' }),
  more: Partial<HttpServerOptions> = {},
): Promise<HttpServer> {
  const s = await startHttpServer({ streams, host: '127.0.0.1', port: 0, logger, ...more });
  servers.push(s);
  return s;
}

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; type: string; body: unknown; text: string }> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, type, text, body: type.includes('json') ? JSON.parse(text) : undefined };
}

describe('http: health, readiness, metrics, topology', () => {
  it('/healthz is 200 while running or rebalancing and 503 in ERROR and NOT_RUNNING', async () => {
    const streams = fakeStreams('i1');
    const { url } = await serve(streams);
    expect(await get(`${url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok', state: 'RUNNING' } });
    streams.state = 'REBALANCING';
    expect(await get(`${url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok', state: 'REBALANCING' } });
    streams.state = 'ERROR';
    expect(await get(`${url}/healthz`)).toMatchObject({ status: 503, body: { state: 'ERROR' } });
    streams.state = 'NOT_RUNNING';
    expect(await get(`${url}/healthz`)).toMatchObject({ status: 503, body: { state: 'NOT_RUNNING' } });
  });

  it('/readyz is 200 when ready, else 503 with the state and the restore progress', async () => {
    const streams = fakeStreams('i1');
    const { url } = await serve(streams);
    expect(await get(`${url}/readyz`)).toMatchObject({ status: 200, body: { ready: true, state: 'RUNNING' } });
    streams.ready = false;
    streams.state = 'REBALANCING';
    const r = await get(`${url}/readyz`);
    expect(r.status).toBe(503);
    expect(r.body).toEqual({
      ready: false,
      state: 'REBALANCING',
      restore: [{ task: '0_1', store: 'seq', restored: 10, remaining: 90 }],
    });
  });

  it('/metrics serves the registry in Prometheus text format', async () => {
    const streams = fakeStreams('i1');
    streams.metrics.recordsProcessed.inc({ task: '0_0' }, 3);
    const { url } = await serve(streams);
    const r = await get(`${url}/metrics`);
    expect(r.status).toBe(200);
    expect(r.type).toBe(streams.metrics.registry.contentType);
    expect(r.type).toMatch(/^text\/plain/);
    expect(r.text).toContain('# TYPE um_records_processed_total counter');
    expect(r.text).toContain('um_records_processed_total{task="0_0"} 3');
  });

  it('/v1/topology returns text and mermaid as JSON, or plain text with ?format=text', async () => {
    const streams = fakeStreams('i1');
    const { url } = await serve(streams);
    const json = await get(`${url}/v1/topology`);
    expect(json.status).toBe(200);
    expect(json.body).toEqual({ text: streams.topology.describe(), mermaid: streams.topology.mermaid() });
    expect((json.body as { text: string }).text).toContain('Processor: seq-processor (stores: [seq])');
    expect((json.body as { mermaid: string }).mermaid).toMatch(/^flowchart TD/);
    const text = await get(`${url}/v1/topology?format=text`);
    expect(text.status).toBe(200);
    expect(text.type).toMatch(/^text\/plain/);
    expect(text.text).toBe(streams.topology.describe());
  });

  it('answers unknown routes with a JSON 404', async () => {
    const { url } = await serve(fakeStreams('i1'));
    expect(await get(`${url}/nope`)).toMatchObject({ status: 404, body: { error: 'NO_ROUTE' } });
  });
});

describe('http: interactive queries', () => {
  it('serves an owned key locally and 404s a missing key or an unknown store', async () => {
    const streams = fakeStreams('i1');
    streams.owned.set(0, new Map([['alice@example.com', { last: 3 }]]));
    const { url } = await serve(streams);
    expect(await get(`${url}/v1/stores/seq/${encodeURIComponent('alice@example.com')}`)).toEqual(
      expect.objectContaining({
        status: 200,
        body: { key: 'alice@example.com', value: { last: 3 }, partition: 0, servedBy: 'i1' },
      }),
    );
    const missing = await get(`${url}/v1/stores/seq/anne`);
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ error: 'NOT_FOUND', store: 'seq', partition: 0 });
    const unknown = await get(`${url}/v1/stores/nope/alice`);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ error: 'UNKNOWN_STORE', store: 'nope' });
    expect(streams.ownerCalls).toBe(0);
  });

  it('serves keys longer than the router default parameter limit (100)', async () => {
    const key = 'a'.repeat(300);
    const streams = fakeStreams('i1');
    streams.owned.set(0, new Map([[key, 1]]));
    const { url } = await serve(streams);
    expect(await get(`${url}/v1/stores/seq/${key}`)).toMatchObject({ status: 200, body: { key, value: 1 } });
  });

  it('applies renderValue to served values', async () => {
    const streams = fakeStreams('i1');
    streams.owned.set(0, new Map([['a1', { last: 3 }]]));
    const s = await startHttpServer({
      streams,
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
      renderValue: (v, store) => ({ store, wrapped: v }),
    });
    servers.push(s);
    expect(await get(`${s.url}/v1/stores/seq/a1`)).toMatchObject({
      status: 200,
      body: { value: { store: 'seq', wrapped: { last: 3 } } },
    });
  });

  it('refuses a forwarded request for a partition it does not own (NOT_OWNER), without looking up the owner', async () => {
    const streams = fakeStreams('i1', { owner: async () => 'http://127.0.0.1:1' });
    const { url } = await serve(streams);
    const r = await get(`${url}/v1/stores/seq/bob`, { 'x-um-forwarded': '1' });
    expect(r.status).toBe(503);
    expect(r.body).toEqual({ error: 'NOT_OWNER', store: 'seq', partition: 1 });
    expect(streams.ownerCalls).toBe(0);
  });

  it('answers NO_OWNER when no owner is known, or when the owner is this instance (still restoring)', async () => {
    const streams = fakeStreams('i1');
    const { url } = await serve(streams);
    const r = await get(`${url}/v1/stores/seq/bob`);
    expect(r.status).toBe(503);
    expect(r.body).toEqual({ error: 'NO_OWNER', store: 'seq', partition: 1 });

    const self = fakeStreams('i2', { config: { instanceId: 'i2', advertisedUrl: 'http://self.example:8080/' } });
    self.owner = async () => 'http://self.example:8080';
    const s2 = await serve(self);
    expect(await get(`${s2.url}/v1/stores/seq/bob`)).toMatchObject({
      status: 503,
      body: { error: 'NO_OWNER', partition: 1 },
    });
  });

  it('answers 503 NOT_STARTED while the partition count is unknown', async () => {
    const streams = fakeStreams('i1', {
      partitionFor: () => {
        throw new Error('the instance has not started');
      },
    });
    const { url } = await serve(streams);
    expect(await get(`${url}/v1/stores/seq/bob`)).toMatchObject({ status: 503, body: { error: 'NOT_STARTED' } });
  });

  it('forwards to the owner once, returns its answer and status, and caches the owner look-up', async () => {
    const b = fakeStreams('i-b');
    b.owned.set(1, new Map([['bob', { last: 7 }]]));
    const sb = await serve(b);
    const a = fakeStreams('i-a', { owner: async (p) => (p === 1 ? sb.url : undefined) });
    a.owned.set(0, new Map());
    const sa = await serve(a, undefined, { peers: [sb.url] });

    expect(await get(`${sa.url}/v1/stores/seq/bob`)).toMatchObject({
      status: 200,
      body: { key: 'bob', value: { last: 7 }, partition: 1, servedBy: 'i-b' },
    });
    // the owner's 404 comes back as a 404
    expect(await get(`${sa.url}/v1/stores/seq/bert`)).toMatchObject({
      status: 404,
      body: { error: 'NOT_FOUND', partition: 1 },
    });
    expect(a.ownerCalls).toBe(1);

    // B loses the partition: B answers NOT_OWNER; A drops the cached owner, looks it up again once
    b.owned.delete(1);
    const r = await get(`${sa.url}/v1/stores/seq/bob`);
    expect(r).toMatchObject({ status: 503, body: { error: 'NOT_OWNER', partition: 1 } });
    expect(a.ownerCalls).toBe(2);
  });

  it('answers 502 FORWARD_FAILED when the owner cannot be reached, and forgets that owner', async () => {
    const dead = await serve(fakeStreams('dead'));
    const deadUrl = dead.url;
    await servers.pop()!.close();
    const a = fakeStreams('i-a', { owner: async () => deadUrl });
    const { url } = await serve(a, undefined, { peers: 'any' });
    expect(await get(`${url}/v1/stores/seq/bob`)).toMatchObject({
      status: 502,
      body: { error: 'FORWARD_FAILED', partition: 1 },
    });
    await get(`${url}/v1/stores/seq/bob`);
    expect(a.ownerCalls).toBe(2);
  });

  it('logs a hash of the key, never the key', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const streams = fakeStreams('i1');
    const key = 'alice.secret@example.com';
    streams.owned.set(0, new Map([[key, 1]]));
    const { url } = await serve(streams, pino({ level: 'debug' }, sink));
    await get(`${url}/v1/stores/seq/${encodeURIComponent(key)}`);
    await get(`${url}/v1/stores/seq/bob.secret@example.com`);
    const all = lines.join('');
    expect(all).toContain(keyHash(key));
    expect(all).toContain(keyHash('bob.secret@example.com'));
    expect(all).not.toContain('secret');
  });

  it('registers application routes that can use queryStore (an alias)', async () => {
    const streams = fakeStreams('i1');
    streams.owned.set(0, new Map([['a-mailbox', { senders: 2 }]]));
    const s = await startHttpServer({
      streams,
      host: '127.0.0.1',
      port: 0,
      logger: pino({ level: 'silent' }),
      routes: (app, { queryStore }) => {
        app.get<{ Params: { id: string } }>('/v1/prefs/:id', async (req, reply) => {
          const r = await queryStore(streams, 'seq', req.params.id, {
            forwarded: req.headers['x-um-forwarded'] !== undefined,
          });
          return reply.code(r.status).send(r.body);
        });
      },
    });
    servers.push(s);
    expect(await get(`${s.url}/v1/prefs/a-mailbox`)).toMatchObject({
      status: 200,
      body: { key: 'a-mailbox', value: { senders: 2 }, servedBy: 'i1' },
    });
  });
});

const TOKEN = 'test-token-0123456789abcdef';

describe('http: bearer token', () => {
  it('needs the token on /v1/* (and application routes), not on /metrics, /healthz, /readyz', async () => {
    const streams = fakeStreams('i1');
    streams.owned.set(0, new Map([['a1', 1]]));
    const s = await serve(streams, undefined, {
      authToken: TOKEN,
      routes: (app, { queryStore }) => {
        app.get<{ Params: { id: string } }>('/v1/prefs/:id', async (req, reply) => {
          const r = await queryStore(streams, 'seq', req.params.id);
          return reply.code(r.status).send(r.body);
        });
        app.get('/open-extra', { config: { public: true } }, async () => ({ open: true }));
        app.get('/closed-extra', async () => ({ open: false }));
      },
    });
    const auth = { authorization: `Bearer ${TOKEN}` };
    for (const path of ['/v1/stores/seq/a1', '/v1/prefs/a1', '/v1/topology', '/closed-extra']) {
      expect(await get(`${s.url}${path}`), path).toMatchObject({ status: 401, body: { error: 'UNAUTHORIZED' } });
      expect(await get(`${s.url}${path}`, { authorization: `Bearer ${TOKEN}x` }), path).toMatchObject({
        status: 401,
      });
      expect(await get(`${s.url}${path}`, { authorization: `Basic ${TOKEN}` }), path).toMatchObject({ status: 401 });
      expect((await get(`${s.url}${path}`, auth)).status, path).toBe(200);
    }
    for (const path of ['/metrics', '/healthz', '/readyz', '/open-extra'])
      expect((await get(`${s.url}${path}`)).status, path).toBe(200);
    expect(await get(`${s.url}/nothing-here`)).toMatchObject({ status: 404, body: { error: 'NO_ROUTE' } });
  });

  it('refuses a token shorter than 16 characters', async () => {
    await expect(
      startHttpServer({ streams: fakeStreams('i1'), host: '127.0.0.1', port: 0, authToken: 'short' }),
    ).rejects.toThrow(/at least 16 characters/);
  });

  it('answers 400 to an empty key instead of 500', async () => {
    const s = await serve(fakeStreams('i1'));
    expect(await get(`${s.url}/v1/stores/seq/`)).toMatchObject({ status: 400, body: { error: 'BAD_REQUEST' } });
  });
});

/** A plain HTTP server that records what it receives and answers a made-up value. */
async function rogueServer(): Promise<{
  url: string;
  seen: { url: string; auth: string | undefined }[];
  server: Server;
}> {
  const seen: { url: string; auth: string | undefined }[] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', auth: req.headers.authorization });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ key: 'bob', value: { last: 666 }, partition: 1, servedBy: 'rogue' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return { url: `http://127.0.0.1:${addr.port}`, seen, server };
}

describe('http: forwarding only to allowed peers', () => {
  it('canonicalises peer URLs and refuses anything but plain http(s) base URLs', () => {
    expect(canonicalPeerUrl('http://UM-1:8080/')).toBe('http://um-1:8080');
    expect(canonicalPeerUrl('https://um-1:443')).toBe('https://um-1');
    expect(canonicalPeerUrl('http://um-1:8080/base//')).toBe('http://um-1:8080/base');
    expect(canonicalPeerUrl('http://user:pw@um-1:8080')).toBeUndefined();
    expect(canonicalPeerUrl('http://um-1:8080/?x=1')).toBeUndefined();
    expect(canonicalPeerUrl('file:///etc/passwd')).toBeUndefined();
    expect(canonicalPeerUrl('not a url')).toBeUndefined();
    expect(isAllowedPeer('http://um-1:8080/', ['http://um-1:8080'])).toBe(true);
    expect(isAllowedPeer('http://um-1:8081', ['http://um-1:8080'])).toBe(false);
    expect(isAllowedPeer('http://um-1.evil.example:8080', ['http://um-1:8080'])).toBe(false);
    expect(isAllowedPeer('http://um-1:8080', undefined)).toBe(false);
    expect(isAllowedPeer('http://anything:1', 'any')).toBe(true);
    expect(isAllowedPeer('http://u:p@anything:1', 'any')).toBe(false);
  });

  it('never contacts an owner outside the peer list: 503 UNTRUSTED_OWNER, logged once at WARN', async () => {
    const rogue = await rogueServer();
    try {
      const lines: string[] = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      });
      const a = fakeStreams('i-a', { owner: async () => rogue.url });
      const s = await serve(a, pino({ level: 'info' }, sink), {
        authToken: TOKEN,
        peers: ['http://um-2:8080'],
      });
      const auth = { authorization: `Bearer ${TOKEN}` };
      for (let i = 0; i < 3; i++)
        expect(await get(`${s.url}/v1/stores/seq/bob`, auth)).toMatchObject({
          status: 503,
          body: { error: 'UNTRUSTED_OWNER', store: 'seq', partition: 1 },
        });
      expect(rogue.seen).toEqual([]);
      const warns = lines.map((l) => JSON.parse(l) as { level: number; msg: string; owner?: string });
      expect(warns.filter((l) => l.level === 40 && l.owner === rogue.url)).toHaveLength(1);
      // without a list nothing is forwarded either
      const b = fakeStreams('i-b', { owner: async () => rogue.url });
      const sb = await serve(b);
      expect(await get(`${sb.url}/v1/stores/seq/bob`)).toMatchObject({
        status: 503,
        body: { error: 'UNTRUSTED_OWNER' },
      });
      expect(rogue.seen).toEqual([]);
    } finally {
      rogue.server.close();
    }
  });

  it('sends the token to an allowed peer, which needs it', async () => {
    const b = fakeStreams('i-b');
    b.owned.set(1, new Map([['bob', { last: 7 }]]));
    const sb = await serve(b, undefined, { authToken: TOKEN });
    const a = fakeStreams('i-a', { owner: async () => sb.url });
    const sa = await serve(a, undefined, { authToken: TOKEN, peers: [sb.url] });
    expect(await get(`${sa.url}/v1/stores/seq/bob`, { authorization: `Bearer ${TOKEN}` })).toMatchObject({
      status: 200,
      body: { value: { last: 7 }, servedBy: 'i-b' },
    });
    // a peer with another token refuses: the caller gets 502, not the peer's 401
    const c = fakeStreams('i-c', { owner: async () => sb.url });
    const sc = await serve(c, undefined, { authToken: `${TOKEN}-other`, peers: [sb.url] });
    expect(await get(`${sc.url}/v1/stores/seq/bob`, { authorization: `Bearer ${TOKEN}-other` })).toMatchObject({
      status: 502,
      body: { error: 'FORWARD_FAILED' },
    });
  });

  it('does not follow a redirect from a peer (the token would go along)', async () => {
    const rogue = await rogueServer();
    const redirector = createServer((_req, res) => {
      res.writeHead(307, { location: `${rogue.url}/v1/stores/seq/bob` });
      res.end();
    });
    await new Promise<void>((r) => redirector.listen(0, '127.0.0.1', r));
    try {
      const peer = `http://127.0.0.1:${(redirector.address() as { port: number }).port}`;
      const a = fakeStreams('i-a', { owner: async () => peer });
      const s = await serve(a, undefined, { authToken: TOKEN, peers: [peer] });
      expect(await get(`${s.url}/v1/stores/seq/bob`, { authorization: `Bearer ${TOKEN}` })).toMatchObject({
        status: 502,
        body: { error: 'FORWARD_FAILED' },
      });
      expect(rogue.seen).toEqual([]);
    } finally {
      redirector.close();
      rogue.server.close();
    }
  });
});
