/**
 * The runtime on a real broker, in-process: restart from a checkpoint, rebuild from the changelog
 * after the state directory is wiped, and dead letters for poison records.
 */
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { streamsConfig } from '../../runtime/config.js';
import { KafkaStreams } from '../../runtime/streams.js';
import { seqTopology, type SeqState } from './fixtures/seq-topology.js';
import { brokers, createTopics, produce, readAll, uniqueName, waitUntil, withAdmin } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-rt-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const PARTITIONS = 3;

function app(
  appId: string,
  input: string,
  output: string,
  stateDir: string,
  policy: 'dlq' | 'fail' = 'dlq',
): KafkaStreams {
  return new KafkaStreams(
    seqTopology(input, output),
    streamsConfig({
      processingErrorPolicy: policy,
      applicationId: appId,
      brokers: brokers(),
      stateDir,
      commitIntervalMs: 200,
      sessionTimeoutMs: 10_000,
      heartbeatIntervalMs: 1000,
    }),
    { logger: pino({ level: 'warn' }) },
  );
}

/** A fresh app id with a one-partition input and output topic. */
async function singlePartitionApp(prefix: string): Promise<{ appId: string; input: string; output: string }> {
  const appId = uniqueName(prefix);
  const input = uniqueName('rt-in');
  const output = uniqueName('rt-out');
  await createTopics([
    { topic: input, partitions: 1 },
    { topic: output, partitions: 1 },
  ]);
  return { appId, input, output };
}

function seqRecords(keys: number, from: number, to: number): { key: string; value: string; timestamp: number }[] {
  const out = [];
  for (let s = from; s <= to; s++)
    for (let k = 0; k < keys; k++)
      out.push({ key: `k${k}`, value: JSON.stringify({ seq: s }), timestamp: 1_700_000_000_000 + s });
  return out;
}

async function storeContents(s: KafkaStreams, keys: number): Promise<Map<string, SeqState | undefined>> {
  const out = new Map<string, SeqState | undefined>();
  for (let k = 0; k < keys; k++) {
    const key = `k${k}`;
    const store = s.localStore<string, SeqState>('seq', s.partitionFor(key));
    out.set(key, await store?.get(key));
  }
  return out;
}

describe('runtime: state, checkpoints, restore, dead letters', () => {
  it('restarts from its checkpoint with exactly the state it had, then rebuilds from the changelog after a wipe', async () => {
    const appId = uniqueName('rt-app');
    const input = uniqueName('rt-in');
    const output = uniqueName('rt-out');
    const stateDir = join(stateRoot, appId);
    await createTopics([
      { topic: input, partitions: PARTITIONS },
      { topic: output, partitions: PARTITIONS },
    ]);
    const KEYS = 30;
    await produce(input, seqRecords(KEYS, 1, 20));

    // first run: process 600 records
    let s = app(appId, input, output, stateDir);
    await s.start();
    await readAll(output, { atLeast: 600 });
    await waitUntil('state caught up', async () =>
      [...(await storeContents(s, KEYS)).values()].every((v) => v?.last === 20),
    );
    await s.close();
    expect(existsSync(join(stateDir, appId, '0_0', '.checkpoint'))).toBe(true);
    const changelog = `${appId}-seq-changelog`;
    const logged = await readAll(changelog);
    expect(logged.length).toBeGreaterThanOrEqual(KEYS);

    // second run: restores nothing (checkpoint == changelog end), state is as it was
    s = app(appId, input, output, stateDir);
    await s.start();
    await waitUntil('running', () => s.state === 'RUNNING');
    const restored = s.restoreProgress().reduce((n, p) => n + p.restored, 0);
    expect(restored).toBe(0);
    const before = await storeContents(s, KEYS);
    for (const v of before.values()) expect(v).toEqual({ last: 20, count: 20, gaps: 0, dups: 0 });
    await produce(input, seqRecords(KEYS, 21, 25));
    await waitUntil('state caught up again', async () =>
      [...(await storeContents(s, KEYS)).values()].every((v) => v?.last === 25),
    );
    await s.close();

    // third run with the state directory deleted: rebuilt from the changelog, equal to its latest values
    rmSync(stateDir, { recursive: true, force: true });
    s = app(appId, input, output, stateDir);
    await s.start();
    await waitUntil('running', () => s.state === 'RUNNING');
    const allLogged = await readAll(changelog);
    const restoredAfterWipe = s.restoreProgress().reduce((n, p) => n + p.restored, 0);
    expect(restoredAfterWipe).toBe(allLogged.length);
    const latest = new Map<string, SeqState>();
    for (const r of allLogged) latest.set(r.key!.toString(), JSON.parse(r.value!.toString()) as SeqState);
    const rebuilt = await storeContents(s, KEYS);
    for (const [k, v] of latest) expect(rebuilt.get(k)).toEqual(v);
    for (const v of rebuilt.values()) expect(v).toEqual({ last: 25, count: 25, gaps: 0, dups: 0 });
    await s.close();
  });

  it('sends poison records to the dead-letter topic with their reason and goes on', async () => {
    const { appId, input, output } = await singlePartitionApp('rt-poison');
    await produce(input, [
      { key: 'a', value: JSON.stringify({ seq: 1 }) },
      { key: 'a', value: '{not json' },
      { key: 'a', value: JSON.stringify({ nope: true }) },
      { key: 'a', value: JSON.stringify({ seq: 2 }) },
    ]);
    const s = app(appId, input, output, join(stateRoot, appId));
    await s.start();
    const out = await readAll(output, { atLeast: 2 });
    expect(out.map((r) => JSON.parse(r.value!.toString()).seq)).toEqual([1, 2]);
    const dlq = await readAll(`${appId}-dlq`, { atLeast: 2 });
    expect(dlq).toHaveLength(2);
    expect(dlq[0]!.value!.toString()).toBe('{not json');
    expect(dlq[0]!.headers['dlq.error.code']).toBe('JSON_INVALID');
    expect(dlq[0]!.headers['dlq.source.topic']).toBe(input);
    expect(dlq[0]!.headers['dlq.source.offset']).toBe('1');
    expect(dlq[1]!.headers['dlq.error.code']).toBe('PROCESSING_FAILED');
    expect(dlq[1]!.headers['dlq.error.message']).toContain('numeric seq');
    expect(dlq[1]!.headers['dlq.source.offset']).toBe('2');
    await s.close();
  });

  it("stops the instance (state ERROR) on a poison record under the 'fail' policy", async () => {
    const { appId, input, output } = await singlePartitionApp('rt-fail');
    await produce(input, [
      { key: 'a', value: JSON.stringify({ seq: 1 }) },
      { key: 'a', value: JSON.stringify({ nope: true }) },
      { key: 'a', value: JSON.stringify({ seq: 2 }) },
    ]);
    const s = app(appId, input, output, join(stateRoot, appId), 'fail');
    await s.start();
    await waitUntil('ERROR', () => s.state === 'ERROR', 30_000);
    expect((s.failure() as { code?: string }).code).toBe('PROCESSING_FAILED');
    await s.close();
    expect(s.state).toBe('NOT_RUNNING');
    // the poison record was not committed: a fixed version of the app would see it again
    const committed = await withAdmin((a) => a.fetchOffsets({ groupId: appId, topics: [input] }));
    expect(Number(committed[0]!.partitions[0]!.offset)).toBeLessThanOrEqual(1);
  });
});
