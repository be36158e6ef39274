/**
 * The HTTP server on two real instances of one application: every key can be queried on either
 * instance; the instance that does not own the key forwards the query to the one that does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { streamsConfig } from '../../runtime/config.js';
import { startHttpServer, type HttpServer } from '../../runtime/http.js';
import { KafkaStreams } from '../../runtime/streams.js';
import { freePort } from '../../scripts/kafka/local.js';
import { seqTopology, type SeqState } from './fixtures/seq-topology.js';
import { brokers, createTopics, produce, uniqueName, waitUntil } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-http-'));
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  rmSync(stateRoot, { recursive: true, force: true });
});

const PARTITIONS = 4;
const KEYS = 40;
const SEQS = 5;

interface Instance {
  streams: KafkaStreams;
  http: HttpServer;
}

async function instance(appId: string, name: string, input: string, output: string): Promise<Instance> {
  const port = await freePort();
  const logger = pino({ level: 'warn' });
  const streams = new KafkaStreams(
    seqTopology(input, output),
    streamsConfig({
      applicationId: appId,
      instanceId: name,
      brokers: brokers(),
      stateDir: join(stateRoot, name),
      advertisedUrl: `http://127.0.0.1:${port}`,
      commitIntervalMs: 200,
      sessionTimeoutMs: 10_000,
      heartbeatIntervalMs: 1000,
    }),
    { logger },
  );
  const http = await startHttpServer({ streams, host: '127.0.0.1', port, logger, peers: 'any' });
  expect(http.url).toBe(streams.config.advertisedUrl);
  cleanups.push(() => http.close());
  cleanups.push(() => streams.close());
  return { streams, http };
}

async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { headers });
  return { status: res.status, body: await res.json() };
}

describe('http: interactive queries across two instances', () => {
  it('serves owned keys locally and forwards the others to their owner', async () => {
    const appId = uniqueName('http-app');
    const input = uniqueName('http-in');
    const output = uniqueName('http-out');
    await createTopics([
      { topic: input, partitions: PARTITIONS },
      { topic: output, partitions: PARTITIONS },
    ]);

    const a = await instance(appId, 'inst-a', input, output);
    await a.streams.start();
    await waitUntil('A running', () => a.streams.state === 'RUNNING');
    const b = await instance(appId, 'inst-b', input, output);
    await b.streams.start();
    await waitUntil('both running, tasks split between them', () => {
      if (a.streams.state !== 'RUNNING' || b.streams.state !== 'RUNNING') return false;
      const ta = a.streams.assignedTasks();
      const tb = b.streams.assignedTasks();
      return (
        ta.length > 0 &&
        tb.length > 0 &&
        new Set([...ta, ...tb]).size === PARTITIONS &&
        ta.length + tb.length === PARTITIONS
      );
    });

    // records only once the group is stable: no rebalance while processing, so the state is exact
    const records = [];
    for (let s = 1; s <= SEQS; s++)
      for (let k = 0; k < KEYS; k++)
        records.push({ key: `key-${k}`, value: JSON.stringify({ seq: s }), timestamp: 1_700_000_000_000 + s });
    await produce(input, records);
    const keys = Array.from({ length: KEYS }, (_, k) => `key-${k}`);
    await waitUntil('every key processed', async () => {
      for (const key of keys) {
        const p = a.streams.partitionFor(key);
        const owner = a.streams.assignedTasks().includes(p) ? a : b;
        const v = await owner.streams.localStore<string, SeqState>('seq', p)?.get(key);
        if (v?.last !== SEQS) return false;
      }
      return true;
    });

    const expected: SeqState = { last: SEQS, count: SEQS, gaps: 0, dups: 0 };
    const ownedByA = new Set(a.streams.assignedTasks());
    let local = 0;
    let forwarded = 0;
    for (const key of keys) {
      const partition = a.streams.partitionFor(key);
      const r = await getJson(`${a.http.url}/v1/stores/seq/${encodeURIComponent(key)}`);
      expect(r.status, key).toBe(200);
      const servedBy = ownedByA.has(partition) ? 'inst-a' : 'inst-b';
      expect(r.body).toEqual({ key, value: expected, partition, servedBy });
      if (servedBy === 'inst-a') local++;
      else forwarded++;
    }
    expect(local).toBeGreaterThan(0);
    expect(forwarded).toBeGreaterThan(0);
    expect(local + forwarded).toBe(KEYS);

    // a forwarded request reaching an instance that does not own the key is not forwarded again
    const keyOfA = keys.find((k) => ownedByA.has(a.streams.partitionFor(k)))!;
    const refused = await getJson(`${b.http.url}/v1/stores/seq/${keyOfA}`, { 'x-um-forwarded': '1' });
    expect(refused).toEqual({
      status: 503,
      body: { error: 'NOT_OWNER', store: 'seq', partition: a.streams.partitionFor(keyOfA) },
    });
    // and B forwards an unmarked one to A
    expect(await getJson(`${b.http.url}/v1/stores/seq/${keyOfA}`)).toMatchObject({
      status: 200,
      body: { key: keyOfA, servedBy: 'inst-a' },
    });
    expect(await getJson(`${a.http.url}/v1/stores/seq/no-such-key`)).toMatchObject({
      status: 404,
      body: { error: 'NOT_FOUND' },
    });

    for (const inst of [a, b]) {
      expect(await getJson(`${inst.http.url}/readyz`)).toMatchObject({ status: 200, body: { ready: true } });
      const m = await fetch(`${inst.http.url}/metrics`);
      expect(m.status).toBe(200);
      const text = await m.text();
      expect(text).toMatch(/^um_records_processed_total\{task="0_\d+"\} [1-9]/m);
    }

    await b.streams.close();
    await a.streams.close();
    expect(await getJson(`${a.http.url}/healthz`)).toMatchObject({ status: 503, body: { state: 'NOT_RUNNING' } });
  });
});
