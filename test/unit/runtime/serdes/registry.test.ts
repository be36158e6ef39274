/**
 * The registry client's HTTP behaviour (auth headers, the register flow, error mapping, caching)
 * against a scripted HTTP server speaking the Confluent API. The real registry is exercised in
 * test/integration/avro-serde.test.ts.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import avro from 'avsc';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, SerdeError, StreamsError } from '../../../../runtime/errors.js';
import { createRegistryClient, createSchemaRegistry } from '../../../../runtime/serdes/registry.js';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}
type Reply = { status: number; body: unknown; delayMs?: number };
type Route = (req: Seen) => Reply | undefined;

const schema = {
  type: 'record',
  name: 'R',
  namespace: 'unwantedmail.test',
  fields: [{ name: 'a', type: 'string' }],
};

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** Starts a server answering with the first route that replies; 404 otherwise. */
async function fakeRegistry(...routes: Route[]): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  server = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body };
      seen.push(s);
      const reply = routes.reduce<Reply | undefined>((acc, r) => acc ?? r(s), undefined) ?? {
        status: 404,
        body: { error_code: 40401, message: 'Subject not found.' },
      };
      setTimeout(() => {
        res.writeHead(reply.status, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
        res.end(JSON.stringify(reply.body));
      }, reply.delayMs ?? 0);
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  const { port } = server!.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/apis/ccompat/v7`, seen };
}

const on =
  (method: string, path: string | RegExp, reply: Reply): Route =>
  (req) => {
    const p = req.url.split('?')[0]!;
    return req.method === method && (typeof path === 'string' ? p.endsWith(path) : path.test(p)) ? reply : undefined;
  };

describe('createRegistryClient: configuration and auth', () => {
  it('refuses bad settings with a ConfigError naming the setting', () => {
    expect(() => createRegistryClient({ url: 'not a url' })).toThrow(/schemaRegistry\.url/);
    expect(() => createRegistryClient({ url: 'ftp://x' })).toThrow(ConfigError);
    expect(() => createRegistryClient({ url: 'http://u:p@x' })).toThrow(/credentials/);
    expect(() => createRegistryClient({ url: 'http://x', username: 'u' })).toThrow(/schemaRegistry\.username/);
    expect(() => createRegistryClient({ url: 'http://x', username: 'u', password: 'p', bearer: 't' })).toThrow(
      /schemaRegistry\.bearer/,
    );
  });

  it('sends HTTP basic auth when given username and password', async () => {
    const reg = await fakeRegistry(
      on('GET', '/subjects/s-value/versions/latest', { status: 200, body: { id: 3, version: 1 } }),
    );
    const client = createRegistryClient({ url: reg.url, username: 'key', password: 's3cret' });
    expect(await client.latestId('s-value')).toBe(3);
    expect(reg.seen[0]!.authorization).toBe(`Basic ${Buffer.from('key:s3cret').toString('base64')}`);
  });

  it('sends a bearer token, and nothing without credentials', async () => {
    const reg = await fakeRegistry(on('GET', '/versions/latest', { status: 200, body: { id: 4, version: 1 } }));
    expect(await createRegistryClient({ url: reg.url, bearer: 'tok' }).latestId('s-value')).toBe(4);
    expect(await createSchemaRegistry({ url: `${reg.url}/` }).getLatestSchemaId('s-value')).toBe(4);
    expect(reg.seen.map((s) => s.authorization)).toEqual(['Bearer tok', undefined]);
  });

  it('a refused credential is a ConfigError', async () => {
    const reg = await fakeRegistry(
      on('GET', '/versions/latest', { status: 401, body: { error_code: 401, message: 'Unauthorized' } }),
    );
    const err = await createRegistryClient({ url: reg.url, username: 'k', password: 'bad' })
      .latestId('s')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/401.*Unauthorized/);
  });
});

describe('RegistryClient.register', () => {
  it('returns the existing id without registering when the subject already holds the schema', async () => {
    const reg = await fakeRegistry(
      on('POST', '/subjects/s-value', { status: 200, body: { subject: 's-value', version: 1, id: 12 } }),
    );
    expect(await createRegistryClient({ url: reg.url }).register('s-value', schema)).toBe(12);
    expect(reg.seen.map((s) => `${s.method} ${s.url}`)).toEqual(['POST /apis/ccompat/v7/subjects/s-value']);
    expect(JSON.parse(reg.seen[0]!.body)).toEqual({ schema: JSON.stringify(schema) });
  });

  it('registers a new schema (lookup 404, then POST versions)', async () => {
    const reg = await fakeRegistry(
      on('POST', '/subjects/s-value/versions', { status: 200, body: { id: 13 } }),
      on('PUT', '/config/s-value', { status: 200, body: { compatibility: 'BACKWARD' } }),
    );
    expect(await createRegistryClient({ url: reg.url }).register('s-value', JSON.stringify(schema))).toBe(13);
    expect(reg.seen.map((s) => `${s.method} ${s.url.replace('/apis/ccompat/v7', '')}`)).toEqual([
      'POST /subjects/s-value',
      'GET /config/s-value',
      'POST /subjects/s-value/versions',
      'PUT /config/s-value', // the library sets BACKWARD on a new subject
    ]);
  });

  it('an incompatible schema (HTTP 409) is SCHEMA_INCOMPATIBLE with the registry message', async () => {
    const msg =
      'Incompatible artifact: s-value [AVRO], num of incompatible diffs: {1}, list of diff types: [b at /fields/1]';
    const reg = await fakeRegistry(
      on('GET', '/config/s-value', { status: 200, body: { compatibilityLevel: 'BACKWARD' } }),
      on('POST', '/subjects/s-value/versions', { status: 409, body: { error_code: 409, message: msg } }),
    );
    const err = await createRegistryClient({ url: reg.url })
      .register('s-value', schema)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerdeError);
    expect(err).toMatchObject({ code: 'SCHEMA_INCOMPATIBLE' });
    expect((err as Error).message).toContain(msg);
    expect((err as Error).message).not.toContain('Confluent_Schema_Registry -');
  });

  it('two instances creating the same new subject at once: the refused one tries again and finds the schema', async () => {
    // another instance creates the subject while this one registers: Apicurio refuses the second
    // creation with 409 "rule already exists"; a moment later the lookup finds the schema
    let createdByOther = false;
    const reg = await fakeRegistry(
      on('GET', '/config/s-value', { status: 200, body: { compatibilityLevel: 'BACKWARD' } }),
      (req) => {
        const url = req.url.replace('/apis/ccompat/v7', '');
        if (req.method === 'POST' && url === '/subjects/s-value/versions') {
          createdByOther = true;
          return { status: 409, body: { error_code: 409, message: "A rule named 'COMPATIBILITY' already exists." } };
        }
        if (req.method === 'POST' && url === '/subjects/s-value' && createdByOther)
          return { status: 200, body: { subject: 's-value', version: 1, id: 21 } };
        return undefined;
      },
    );
    expect(await createRegistryClient({ url: reg.url }).register('s-value', schema)).toBe(21);
    expect(reg.seen.filter((x) => x.method === 'POST' && x.url.endsWith('/subjects/s-value/versions'))).toHaveLength(1);
  });

  it('a subject whose compatibility is not BACKWARD is refused before registering', async () => {
    const reg = await fakeRegistry(on('GET', '/config/s-value', { status: 200, body: { compatibilityLevel: 'NONE' } }));
    const err = await createRegistryClient({ url: reg.url })
      .register('s-value', schema)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SCHEMA_COMPATIBILITY_MISMATCH' });
    expect(reg.seen.some((s) => s.url.endsWith('/versions'))).toBe(false);
  });

  it('a registry failure is a retriable REGISTRY_UNAVAILABLE', async () => {
    const reg = await fakeRegistry(
      on('POST', '/subjects/s-value', { status: 500, body: { error_code: 50001, message: 'boom' } }),
    );
    const err = await createRegistryClient({ url: reg.url })
      .register('s-value', schema)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamsError);
    expect(err).toMatchObject({ code: 'REGISTRY_UNAVAILABLE', retriable: true });
  });
});

describe('RegistryClient look-ups', () => {
  it('lookup of a missing schema is SCHEMA_NOT_REGISTERED; latestId of a missing subject SUBJECT_NOT_FOUND', async () => {
    const reg = await fakeRegistry();
    const client = createRegistryClient({ url: reg.url });
    await expect(client.lookup('s-value', schema)).rejects.toMatchObject({ code: 'SCHEMA_NOT_REGISTERED' });
    await expect(client.latestId('s-value')).rejects.toMatchObject({ code: 'SUBJECT_NOT_FOUND' });
  });

  it('schemaById shares one request between concurrent callers and caches the type', async () => {
    const reg = await fakeRegistry(
      on('GET', '/schemas/ids/21', { status: 200, body: { schema: JSON.stringify(schema) }, delayMs: 30 }),
    );
    const client = createRegistryClient({ url: reg.url });
    const [a, b] = await Promise.all([client.schemaById(21), client.schemaById(21)]);
    expect(a).toBe(b);
    expect(avro.Type.isType(a)).toBe(true);
    expect(a.equals(avro.Type.forSchema(schema as avro.Schema))).toBe(true);
    expect(await client.schemaById(21)).toBe(a);
    expect(reg.seen.filter((s) => s.url.endsWith('/schemas/ids/21'))).toHaveLength(1);
  });

  it('an unknown id is UNKNOWN_SCHEMA_ID, and is asked again next time', async () => {
    let exists = false;
    const reg = await fakeRegistry((req) =>
      req.url.endsWith('/schemas/ids/22') && exists
        ? { status: 200, body: { schema: JSON.stringify(schema) } }
        : undefined,
    );
    const client = createRegistryClient({ url: reg.url });
    await expect(client.schemaById(22)).rejects.toMatchObject({ code: 'UNKNOWN_SCHEMA_ID' });
    exists = true;
    expect(avro.Type.isType(await client.schemaById(22))).toBe(true);
    expect(reg.seen.filter((s) => s.url.endsWith('/schemas/ids/22'))).toHaveLength(2);
  });

  it('a JSON Schema id is SCHEMA_NOT_AVRO', async () => {
    const reg = await fakeRegistry(
      on('GET', '/schemas/ids/23', { status: 200, body: { schemaType: 'JSON', schema: '{"type":"object"}' } }),
    );
    await expect(createRegistryClient({ url: reg.url }).schemaById(23)).rejects.toMatchObject({
      code: 'SCHEMA_NOT_AVRO',
    });
  });
});
