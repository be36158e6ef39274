/**
 * The start-up checks: a wrong broker list or registry URL ends in one ConfigError naming the
 * setting and the likely fix, within seconds. Local HTTP servers stand in for registries; a
 * closed port for a broker.
 */
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../cli/config.js';
import { checkKafka, checkRegistry } from '../../../cli/preflight.js';
import { ConfigError } from '../../../runtime/errors.js';
import { freePort } from '../../../scripts/kafka/local.js';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function registry(handler: (url: string, auth: string | undefined) => [number, string]): Promise<string> {
  const s = createServer((req, res) => {
    const [status, body] = handler(req.url ?? '', req.headers.authorization);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
}

async function refusal(p: Promise<void>): Promise<ConfigError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ConfigError);
  return e as ConfigError;
}

const cfgFor = (url: string, extra: Record<string, string> = {}) =>
  loadConfig({ KAFKA_BROKERS: 'localhost:1', SCHEMA_REGISTRY_URL: url, ...extra });

describe('registry check', () => {
  it('accepts a Confluent-compatible API (a JSON list of subjects), with basic auth from the URL', async () => {
    let seenAuth: string | undefined;
    const base = await registry((url, auth) => {
      seenAuth = auth;
      return url === '/apis/ccompat/v7/subjects' ? [200, '["a-value"]'] : [404, '{}'];
    });
    const withCreds = base.replace('http://', 'http://u%40x:p@ss@');
    await checkRegistry(cfgFor(`${withCreds}/apis/ccompat/v7`));
    expect(seenAuth).toBe(`Basic ${Buffer.from('u@x:p@ss').toString('base64')}`);
  });

  it('404 (the /apis/ccompat/v7 suffix missing): names SCHEMA_REGISTRY_URL and the suffix', async () => {
    const base = await registry((url) => (url === '/apis/ccompat/v7/subjects' ? [200, '[]'] : [404, '{"error":1}']));
    const e = await refusal(checkRegistry(cfgFor(base)));
    expect(e.setting).toBe('SCHEMA_REGISTRY_URL');
    expect(e.message).toContain('HTTP 404');
    expect(e.message).toContain('/apis/ccompat/v7');
    expect(e.message).not.toContain('[object Object]');
  });

  it('registry down: names SCHEMA_REGISTRY_URL, says it cannot be reached, within the timeout', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const e = await refusal(checkRegistry(cfgFor(`http://127.0.0.1:${port}/apis/ccompat/v7`)));
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(e.setting).toBe('SCHEMA_REGISTRY_URL');
    expect(e.message).toMatch(
      /^SCHEMA_REGISTRY_URL: cannot reach the schema registry at http:\/\/127\.0\.0\.1:\d+\/apis\/ccompat\/v7 \(.*ECONNREFUSED/,
    );
  });

  it('refused credentials name SCHEMA_REGISTRY_USERNAME and mask the URL', async () => {
    const base = await registry(() => [401, '{"message":"unauthorized"}']);
    const e = await refusal(checkRegistry(cfgFor(base.replace('http://', 'http://me:secretpw@'))));
    expect(e.setting).toBe('SCHEMA_REGISTRY_USERNAME');
    expect(e.message).not.toContain('secretpw');
  });

  it('something that is not a registry: names the URL and the status', async () => {
    const base = await registry(() => [500, 'oops']);
    const e = await refusal(checkRegistry(cfgFor(base)));
    expect(e.message).toContain('HTTP 500');
    const html = await registry(() => [200, '<html></html>']);
    expect((await refusal(checkRegistry(cfgFor(html)))).message).toContain('not a JSON list');
  });
});

describe('broker check', () => {
  it('an unreachable broker list: one ConfigError naming KAFKA_BROKERS, within a few seconds', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const e = await refusal(
      checkKafka(loadConfig({ KAFKA_BROKERS: `127.0.0.1:${port}`, SCHEMA_REGISTRY_URL: 'http://r:1' })),
    );
    expect(Date.now() - t0).toBeLessThan(9000);
    expect(e.setting).toBe('KAFKA_BROKERS');
    expect(e.message).toMatch(
      new RegExp(`^KAFKA_BROKERS: cannot reach Kafka at 127\\.0\\.0\\.1:${port} \\(.+\\): check the host:port list`),
    );
  });

  it('gives up within the deadline on a broker that never answers', async () => {
    // a listening socket that never speaks Kafka
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    servers.push(silent);
    const port = (silent.address() as { port: number }).port;
    const t0 = Date.now();
    const e = await refusal(
      checkKafka(
        loadConfig({ KAFKA_BROKERS: `127.0.0.1:${port}`, SCHEMA_REGISTRY_URL: 'http://r:1' }),
        undefined,
        1500,
      ),
    );
    expect(Date.now() - t0).toBeLessThan(4000);
    expect(e.setting).toBe('KAFKA_BROKERS');
  });
});
