/**
 * The runtime's HTTP server: health, readiness, Prometheus metrics, the topology, and interactive
 * queries of state stores.
 *
 * Interactive queries: a key lives in the task of its partition (`streams.partitionFor(key)`). If
 * this instance owns that task the store is read locally; otherwise the request is forwarded to the
 * owner's advertised URL (taken from the consumer group description) with the `x-um-forwarded`
 * header. A forwarded request is never forwarded again: the receiver answers 503 NOT_OWNER instead,
 * so a request cannot loop between instances while the group rebalances.
 *
 * Keys are never logged: log lines carry a short sha256 hash of the key (`keyHash`).
 *
 * Security. With `authToken` set, every route except those marked public (route config
 * `{ public: true }`: /metrics, /healthz, /readyz) needs `Authorization: Bearer <token>`
 * (@fastify/bearer-auth, constant-time comparison). A query is forwarded only to a peer whose base
 * URL is in `peers`: any member of the consumer group can advertise any URL, so an advertised URL
 * alone is never trusted, and the token (which forwarded queries carry) is never sent elsewhere.
 * An owner outside the list answers 503 UNTRUSTED_OWNER and is logged once at WARN.
 */
import { createHash } from 'node:crypto';
import bearerAuth from '@fastify/bearer-auth';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import pino, { type Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { StreamsState } from './streams.js';
import type { KeyValueStore } from './state/store.js';

/** The header that marks a forwarded interactive query. */
export const FORWARDED_HEADER = 'x-um-forwarded';

/** How long an owner look-up (a describeGroups round trip) is reused. */
export const OWNER_CACHE_TTL_MS = 2000;

const FORWARD_TIMEOUT_MS = 5000;

/**
 * The members of KafkaStreams the HTTP server uses. KafkaStreams satisfies it; tests may pass a
 * smaller object.
 */
export interface QueryableStreams {
  readonly state: StreamsState;
  isReady(): boolean;
  restoreProgress(): unknown[];
  partitionFor(key: string): number;
  localStore(storeName: string, partition: number): Pick<KeyValueStore<string, unknown>, 'get'> | undefined;
  ownerEndpoint(partition: number): Promise<string | undefined>;
  /** GET /v1/tasks (optional for fakes in tests: 404 without it) */
  tasksInfo?(): unknown;
  readonly metrics: { readonly registry: Registry };
  readonly topology: {
    describe(): string;
    mermaid(): string;
    readonly stores: { has(name: string): boolean };
  };
  readonly config: { readonly instanceId: string; readonly advertisedUrl?: string | undefined };
  readonly logger?: Logger;
}

/** Renders a store value as JSON (default: as it is). */
export type ValueRenderer = (value: unknown, store: string) => unknown;

/**
 * Where queries may be forwarded: a list of peer base URLs (e.g. `http://um-1:8080`), or 'any'
 * (trust every URL a group member advertises: only for tests and closed networks).
 */
export type PeerPolicy = readonly string[] | 'any';

export interface QueryOptions {
  /** the request was forwarded by another instance: never forward it again */
  forwarded?: boolean;
  render?: ValueRenderer;
  logger?: Logger;
  /** peers queries may be forwarded to (default: none, i.e. no forwarding) */
  peers?: PeerPolicy;
  /** bearer token sent with forwarded queries (to allowed peers only) */
  token?: string;
}

export interface QueryHit {
  key: string;
  value: unknown;
  partition: number;
  servedBy: string;
}

export interface QueryError {
  error:
    | 'UNKNOWN_STORE'
    | 'NOT_FOUND'
    | 'NOT_OWNER'
    | 'NO_OWNER'
    | 'UNTRUSTED_OWNER'
    | 'NOT_STARTED'
    | 'FORWARD_FAILED'
    | 'BAD_REQUEST';
  store?: string;
  partition?: number;
}

/** An answer to an interactive query: an HTTP status and a JSON body. */
export interface QueryResult {
  status: number;
  /** a QueryHit or QueryError, or whatever the owner answered to a forwarded query */
  body: unknown;
}

export interface HttpServerOptions {
  streams: QueryableStreams;
  /** default '0.0.0.0' */
  host?: string;
  /** 0 = a random free port */
  port: number;
  logger?: Logger;
  /**
   * extra routes registered by the application; they need the token unless their route config is
   * `{ public: true }`. `helpers.queryStore` applies the server's peers and token.
   */
  routes?: (app: FastifyInstance, helpers: { queryStore: typeof queryStore }) => void | Promise<void>;
  /** how a store value is rendered as JSON (default: as is) */
  renderValue?: ValueRenderer;
  /** bearer token required on every non-public route; undefined = no authentication */
  authToken?: string;
  /** peers queries may be forwarded to (default: none) */
  peers?: PeerPolicy;
}

export interface HttpServer {
  /** the base URL, e.g. http://127.0.0.1:34567 */
  url: string;
  port: number;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** A short, stable, non-reversible tag for a key, for logs. */
export function keyHash(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex').slice(0, 12);
}

// ---------------------------------------------------------------------------------------------
// owner look-ups, cached per streams instance and partition

interface CachedOwner {
  at: number;
  endpoint: Promise<string | undefined>;
}

const ownerCaches = new WeakMap<QueryableStreams, Map<number, CachedOwner>>();

function lookupOwner(
  streams: QueryableStreams,
  partition: number,
): { endpoint: Promise<string | undefined>; cached: boolean } {
  let cache = ownerCaches.get(streams);
  if (!cache) {
    cache = new Map();
    ownerCaches.set(streams, cache);
  }
  const hit = cache.get(partition);
  if (hit && Date.now() - hit.at < OWNER_CACHE_TTL_MS) return { endpoint: hit.endpoint, cached: true };
  const entry: CachedOwner = { at: Date.now(), endpoint: streams.ownerEndpoint(partition) };
  // a failed look-up is not cached
  entry.endpoint.catch(() => {
    if (cache.get(partition) === entry) cache.delete(partition);
  });
  cache.set(partition, entry);
  return { endpoint: entry.endpoint, cached: false };
}

function forgetOwner(streams: QueryableStreams, partition: number): void {
  ownerCaches.get(streams)?.delete(partition);
}

/**
 * The canonical form of a peer base URL (scheme, host, port, path without trailing slash), or
 * undefined when it is not a plain http(s) URL (credentials, query and fragment are refused).
 */
export function canonicalPeerUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.username || u.password || u.search || u.hash) return undefined;
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/** Whether `endpoint` (a URL a group member advertised) may receive forwarded queries. */
export function isAllowedPeer(endpoint: string, peers: PeerPolicy | undefined): boolean {
  const c = canonicalPeerUrl(endpoint);
  if (c === undefined || peers === undefined) return false;
  if (peers === 'any') return true;
  return peers.some((p) => canonicalPeerUrl(p) === c);
}

const warnedUntrusted = new WeakMap<QueryableStreams, Set<string>>();

function warnUntrustedOnce(streams: QueryableStreams, endpoint: string, log: Logger | undefined): void {
  let seen = warnedUntrusted.get(streams);
  if (!seen) warnedUntrusted.set(streams, (seen = new Set()));
  if (seen.has(endpoint) || seen.size > 100) return;
  seen.add(endpoint);
  log?.warn(
    { owner: endpoint.slice(0, 200) },
    'a group member advertises a URL that is not an allowed peer: queries for its partitions are not forwarded (add it to the peer list if it is one of ours, else find the rogue member)',
  );
}

// ---------------------------------------------------------------------------------------------
// interactive queries

/**
 * Reads `key` from `store` wherever it lives: locally if this instance owns the key's partition,
 * else from the owner (one forward, never more).
 */
export async function queryStore(
  streams: QueryableStreams,
  store: string,
  key: string,
  opts: QueryOptions = {},
): Promise<QueryResult> {
  const log = opts.logger ?? streams.logger;
  const kh = keyHash(key);
  if (key === '') return { status: 400, body: { error: 'BAD_REQUEST', store } };
  if (!streams.topology.stores.has(store)) return { status: 404, body: { error: 'UNKNOWN_STORE', store } };
  let partition: number;
  try {
    partition = streams.partitionFor(key);
  } catch {
    return { status: 503, body: { error: 'NOT_STARTED' } };
  }

  const local = streams.localStore(store, partition);
  if (local) {
    const value = await local.get(key);
    log?.debug({ store, keyHash: kh, partition, hit: value !== undefined }, 'store query served locally');
    if (value === undefined) return { status: 404, body: { error: 'NOT_FOUND', store, partition } };
    const rendered = opts.render ? opts.render(value, store) : value;
    return { status: 200, body: { key, value: rendered, partition, servedBy: streams.config.instanceId } };
  }

  if (opts.forwarded) {
    log?.debug({ store, keyHash: kh, partition }, 'forwarded store query for a partition not owned here');
    return { status: 503, body: { error: 'NOT_OWNER', store, partition } };
  }

  for (let attempt = 0; ; attempt++) {
    const { endpoint: pending, cached } = lookupOwner(streams, partition);
    let endpoint: string | undefined;
    try {
      endpoint = await pending;
    } catch (e) {
      log?.warn({ store, partition, err: (e as Error).message }, 'owner look-up failed');
      return { status: 503, body: { error: 'NO_OWNER', store, partition } };
    }
    // unknown, or (while this instance still restores the task) ourselves: nobody can answer now
    const self = streams.config.advertisedUrl;
    if (!endpoint || (self !== undefined && trimSlash(endpoint) === trimSlash(self))) {
      log?.debug({ store, keyHash: kh, partition, self: !!endpoint }, 'no owner to forward the store query to');
      return { status: 503, body: { error: 'NO_OWNER', store, partition } };
    }
    if (!isAllowedPeer(endpoint, opts.peers)) {
      warnUntrustedOnce(streams, endpoint, log);
      return { status: 503, body: { error: 'UNTRUSTED_OWNER', store, partition } };
    }
    const url = `${trimSlash(endpoint)}/v1/stores/${encodeURIComponent(store)}/${encodeURIComponent(key)}`;
    let res: Response;
    let body: unknown;
    try {
      res = await fetch(url, {
        headers: {
          [FORWARDED_HEADER]: '1',
          accept: 'application/json',
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        },
        // an allowed peer must answer itself: a redirect could lead the token elsewhere
        redirect: 'error',
        signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
      });
      body = await res.json();
    } catch (e) {
      forgetOwner(streams, partition);
      log?.warn(
        { store, keyHash: kh, partition, owner: endpoint, err: (e as Error).name },
        'store query forward failed',
      );
      return { status: 502, body: { error: 'FORWARD_FAILED', store, partition } };
    }
    if (res.status === 401) {
      log?.warn(
        { owner: endpoint, partition },
        'a peer refused the bearer token of a forwarded query: the instances do not share the same HTTP auth token',
      );
      return { status: 502, body: { error: 'FORWARD_FAILED', store, partition } };
    }
    // the cached owner has lost the partition since: look it up again, once
    if (res.status === 503 && (body as QueryError | null)?.error === 'NOT_OWNER') {
      forgetOwner(streams, partition);
      if (cached && attempt === 0) continue;
    }
    log?.debug({ store, keyHash: kh, partition, owner: endpoint, status: res.status }, 'store query forwarded');
    return { status: res.status, body };
  }
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

function sendQuery(reply: FastifyReply, r: QueryResult): FastifyReply {
  return reply.code(r.status).send(r.body);
}

// ---------------------------------------------------------------------------------------------
// the server

const UNHEALTHY: ReadonlySet<StreamsState> = new Set<StreamsState>(['ERROR', 'NOT_RUNNING']);

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const { streams } = opts;
  const host = opts.host ?? '0.0.0.0';
  const logger = (opts.logger ?? streams.logger ?? pino({ level: 'info' })).child({ component: 'http' });
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // no per-request log lines: the hot path stays quiet, and URLs (which carry keys) are never logged
    logController: new LogController({ disableRequestLogging: true }),
    // keys may be long (ids, addresses, composite keys)
    routerOptions: { maxParamLength: 1024 },
  });

  if (opts.authToken !== undefined) {
    if (opts.authToken.length < 16) throw new Error('the HTTP auth token must have at least 16 characters');
    await app.register(bearerAuth, {
      keys: new Set([opts.authToken]),
      addHook: false,
      verifyErrorLogLevel: 'debug',
      errorResponse: () => ({ error: 'UNAUTHORIZED' }),
    });
    const verify = (
      app as unknown as { verifyBearerAuth: (req: unknown, reply: unknown, done: (e?: Error) => void) => void }
    ).verifyBearerAuth;
    // deny by default: every matched route needs the token unless it is marked public
    app.addHook('onRequest', (req, reply, done) => {
      const cfg = req.routeOptions.config as { public?: boolean } | undefined;
      if (req.routeOptions.url === undefined || cfg?.public === true) return done();
      verify(req, reply, done);
    });
  }
  const peerOpts = {
    ...(opts.peers !== undefined ? { peers: opts.peers } : {}),
    ...(opts.authToken !== undefined ? { token: opts.authToken } : {}),
  };

  app.setErrorHandler((err: Error & { statusCode?: number }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    if (status >= 500) req.log.error({ route: req.routeOptions.url, err: err.message }, 'request failed');
    void reply
      .code(status)
      .send({ error: status >= 500 ? 'INTERNAL' : status === 401 ? 'UNAUTHORIZED' : 'BAD_REQUEST' });
  });
  app.setNotFoundHandler((_req, reply) => {
    void reply.code(404).send({ error: 'NO_ROUTE' });
  });

  const open = { config: { public: true } };
  app.get('/metrics', open, async (_req, reply) => {
    const text = await streams.metrics.registry.metrics();
    return reply.header('content-type', streams.metrics.registry.contentType).send(text);
  });

  app.get('/healthz', open, async (_req, reply) => {
    const state = streams.state;
    if (UNHEALTHY.has(state)) return reply.code(503).send({ status: 'down', state });
    return reply.send({ status: 'ok', state });
  });

  app.get('/readyz', open, async (_req, reply) => {
    if (streams.isReady()) return reply.send({ ready: true, state: streams.state });
    return reply.code(503).send({ ready: false, state: streams.state, restore: streams.restoreProgress() });
  });

  app.get<{ Querystring: { format?: string } }>('/v1/topology', async (req, reply) => {
    if (req.query.format === 'text')
      return reply.header('content-type', 'text/plain; charset=utf-8').send(streams.topology.describe());
    return reply.send({ text: streams.topology.describe(), mermaid: streams.topology.mermaid() });
  });

  // this instance's active and standby tasks, with their offsets and lag
  app.get('/v1/tasks', async (_req, reply) =>
    streams.tasksInfo ? reply.send(streams.tasksInfo()) : reply.code(404).send({ error: 'NO_ROUTE' }),
  );

  app.get<{ Params: { store: string; key: string } }>('/v1/stores/:store/:key', async (req, reply) => {
    const r = await queryStore(streams, req.params.store, req.params.key, {
      forwarded: req.headers[FORWARDED_HEADER] !== undefined,
      logger: req.log as Logger,
      ...(opts.renderValue ? { render: opts.renderValue } : {}),
      ...peerOpts,
    });
    return sendQuery(reply, r);
  });

  await opts.routes?.(app, {
    queryStore: (s2, store, key, o = {}) => queryStore(s2, store, key, { ...peerOpts, ...o }),
  });

  await app.listen({ host, port: opts.port });
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('the HTTP server has no TCP address');
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const url = `http://${urlHost}:${addr.port}`;
  logger.info(
    {
      port: addr.port,
      ...(logger.bindings().instance === undefined ? { instance: streams.config.instanceId } : {}),
      auth: opts.authToken !== undefined ? 'token' : 'none',
    },
    'http server listening',
  );
  return {
    url,
    port: addr.port,
    app,
    close: () => app.close(),
  };
}
