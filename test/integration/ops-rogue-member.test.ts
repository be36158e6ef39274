/**
 * A rogue member joins the application's consumer group (a plain kafkajs consumer speaking the
 * co-partitioning assignor protocol) and advertises a URL of its choosing. It takes partitions;
 * queries for their keys must not reach it, and the bearer token must never be sent to it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { coPartitionedAssigner } from '../../runtime/assignor.js';
import { streamsConfig } from '../../runtime/config.js';
import { queryStore, startHttpServer } from '../../runtime/http.js';
import { KafkaStreams } from '../../runtime/streams.js';
import { freePort } from '../../scripts/kafka/local.js';
import { seqTopology } from './fixtures/seq-topology.js';
import { brokers, createTopics, kafkaClient, uniqueName, waitUntil } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-rogue-'));
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  rmSync(stateRoot, { recursive: true, force: true });
});

const PARTITIONS = 4;
const TOKEN = 'rogue-test-token-0123456789';

describe('a rogue group member advertising its own URL', () => {
  it('gets no forwarded query and never sees the token', async () => {
    const appId = uniqueName('rogue-app');
    const input = uniqueName('rogue-in');
    const output = uniqueName('rogue-out');
    await createTopics([
      { topic: input, partitions: PARTITIONS },
      { topic: output, partitions: PARTITIONS },
    ]);

    // the rogue's HTTP endpoint: records what reaches it and answers a made-up value
    const seen: { url: string; auth: string | undefined }[] = [];
    const rogueHttp: Server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', auth: req.headers.authorization });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ key: 'x', value: { last: 666, count: 666, gaps: 0, dups: 0 }, servedBy: 'rogue' }));
    });
    await new Promise<void>((r) => rogueHttp.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => rogueHttp.close(r)));
    const rogueUrl = `http://127.0.0.1:${(rogueHttp.address() as { port: number }).port}`;

    // the real instance: token on, forwards only to its listed peers (none of them is the rogue)
    const port = await freePort();
    const logger = pino({ level: 'silent' });
    const streams = new KafkaStreams(
      seqTopology(input, output),
      streamsConfig({
        applicationId: appId,
        instanceId: 'real',
        brokers: brokers(),
        stateDir: join(stateRoot, 'real'),
        advertisedUrl: `http://127.0.0.1:${port}`,
        commitIntervalMs: 200,
        sessionTimeoutMs: 10_000,
        heartbeatIntervalMs: 1000,
      }),
      { logger },
    );
    const http = await startHttpServer({
      streams,
      host: '127.0.0.1',
      port,
      logger,
      authToken: TOKEN,
      peers: ['http://127.0.0.1:1'],
    });
    cleanups.push(() => http.close());
    cleanups.push(() => streams.close());
    await streams.start();
    await waitUntil('real instance running', () => streams.state === 'RUNNING');

    // the rogue joins the group, claiming every task and advertising its own URL
    const rogue = kafkaClient(uniqueName('rogue')).consumer({
      groupId: appId,
      partitionAssigners: [
        coPartitionedAssigner(() => ({
          endpoint: rogueUrl,
          owned: [...Array(PARTITIONS).keys()],
          stateful: [...Array(PARTITIONS).keys()],
        })),
      ],
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
    });
    cleanups.push(() => rogue.disconnect());
    await rogue.connect();
    await rogue.subscribe({ topics: [input] });
    await rogue.run({ eachBatch: async () => undefined });

    await waitUntil(
      'the rogue holds partitions',
      () =>
        streams.state === 'RUNNING' &&
        streams.assignedTasks().length > 0 &&
        streams.assignedTasks().length < PARTITIONS,
    );
    const owned = new Set(streams.assignedTasks());
    const roguePartition = [...Array(PARTITIONS).keys()].find((p) => !owned.has(p))!;
    const key = Array.from({ length: 200 }, (_, i) => `k-${i}`).find(
      (k) => streams.partitionFor(k) === roguePartition,
    )!;
    // the group description names the rogue's URL as the owner (the attack is real)
    await waitUntil(
      'owner look-up names the rogue',
      async () => (await streams.ownerEndpoint(roguePartition)) === rogueUrl,
    );

    const res = await fetch(`${http.url}/v1/stores/seq/${key}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: 'UNTRUSTED_OWNER', store: 'seq', partition: roguePartition });
    expect(seen).toEqual([]);
    // without the token the API is closed before any look-up
    expect((await fetch(`${http.url}/v1/stores/seq/${key}`)).status).toBe(401);

    // what the defence prevents: trusting every advertised URL sends the query, and the token,
    // to the rogue, and returns its made-up answer
    const trusting = await queryStore(streams, 'seq', key, { peers: 'any', token: TOKEN });
    expect(trusting.status).toBe(200);
    expect((trusting.body as { servedBy: string }).servedBy).toBe('rogue');
    expect(seen).toEqual([{ url: `/v1/stores/seq/${key}`, auth: `Bearer ${TOKEN}` }]);
  });
});
