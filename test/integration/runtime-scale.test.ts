/**
 * Several instances as separate OS processes in one consumer group: scaling 1 -> 2 -> 3 -> 1
 * while 100,000 keyed records flow, and a SIGKILL mid-stream. Nothing may be lost: every input
 * record produces its output (duplicates are allowed under at-least-once and are counted), and
 * the state per key equals the reference computed here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { SeqOut, SeqState } from './fixtures/seq-topology.js';
import { brokers, createTopics, produce, readAll, uniqueName, waitUntil, withAdmin } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-scale-'));
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(stateRoot, { recursive: true, force: true });
});

interface Instance {
  id: string;
  proc: ChildProcess;
  states: string[];
}

function startInstance(appId: string, input: string, output: string, id: string): Instance {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'seq-app.ts')], {
    env: {
      ...process.env,
      KAFKA_BROKERS: brokers().join(','),
      APP_ID: appId,
      IN_TOPIC: input,
      OUT_TOPIC: output,
      STATE_DIR: join(stateRoot, id),
      INSTANCE_ID: id,
      COMMIT_MS: '300',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(proc);
  proc.once('exit', () => children.delete(proc));
  const inst: Instance = { id, proc, states: [] };
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        inst.states.push((JSON.parse(line) as { state: string }).state);
      } catch {
        /* not a state line */
      }
    }
  });
  return inst;
}

async function stopInstance(inst: Instance, signal: 'SIGTERM' | 'SIGKILL'): Promise<number | null> {
  if (inst.proc.exitCode !== null) return inst.proc.exitCode;
  const exited = new Promise<number | null>((r) => inst.proc.once('exit', (code) => r(code)));
  inst.proc.kill(signal);
  return exited;
}

function records(keys: number, from: number, to: number) {
  const out = [];
  for (let s = from; s <= to; s++)
    for (let k = 0; k < keys; k++)
      out.push({ key: `key-${k}`, value: JSON.stringify({ seq: s }), timestamp: 1_700_000_000_000 + s });
  return out;
}

async function verify(appId: string, output: string, keys: number, seqs: number): Promise<{ duplicates: number }> {
  const total = keys * seqs;
  // outputs may still be arriving (duplicates count towards the raw total): poll until the
  // distinct outputs and the changelog are complete, or the deadline passes, then assert
  const deadline = Date.now() + 120_000;
  let seen = new Set<string>();
  let duplicates = 0;
  let latest = new Map<string, SeqState>();
  for (;;) {
    seen = new Set<string>();
    duplicates = 0;
    for (const r of await readAll(output)) {
      const v = JSON.parse(r.value!.toString()) as SeqOut;
      const id = `${v.key}/${v.seq}`;
      if (seen.has(id)) duplicates++;
      seen.add(id);
    }
    latest = new Map<string, SeqState>();
    for (const r of await readAll(`${appId}-seq-changelog`))
      latest.set(r.key!.toString(), JSON.parse(r.value!.toString()) as SeqState);
    const complete = seen.size === total && latest.size === keys && [...latest.values()].every((s) => s.last === seqs);
    if (complete || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  // every input record produced its output
  expect(seen.size).toBe(total);
  // the state per key (latest changelog value) equals the reference: all seqs applied once, no gaps
  expect(latest.size).toBe(keys);
  for (const [, st] of latest) {
    expect(st.last).toBe(seqs);
    expect(st.count).toBe(seqs);
    expect(st.gaps).toBe(0);
  }
  return { duplicates };
}

async function waitForOutputs(output: string, n: number): Promise<void> {
  await readAll(output, { atLeast: n, timeoutMs: 120_000 });
}

describe('runtime: several instances as separate processes', () => {
  it('scales 1 -> 2 -> 3 -> 1 while 100,000 records flow, losing none', { timeout: 300_000 }, async () => {
    const appId = uniqueName('scale');
    const input = uniqueName('scale-in');
    const output = uniqueName('scale-out');
    await createTopics([
      { topic: input, partitions: 6 },
      { topic: output, partitions: 6 },
    ]);
    const KEYS = 500;
    const SEQS = 200; // 100,000 records
    const a = startInstance(appId, input, output, 'a');
    await produce(input, records(KEYS, 1, 40));
    await waitUntil('a running', () => a.states.includes('RUNNING'));
    const b = startInstance(appId, input, output, 'b');
    await produce(input, records(KEYS, 41, 80));
    await waitUntil('b running', () => b.states.includes('RUNNING'));
    const c = startInstance(appId, input, output, 'c');
    await produce(input, records(KEYS, 81, 120));
    await waitUntil('c running', () => c.states.includes('RUNNING'));
    await produce(input, records(KEYS, 121, 160));
    expect(await stopInstance(b, 'SIGTERM')).toBe(0);
    expect(await stopInstance(c, 'SIGTERM')).toBe(0);
    await produce(input, records(KEYS, 161, 200));
    await waitForOutputs(output, KEYS * SEQS);
    const { duplicates } = await verify(appId, output, KEYS, SEQS);
    console.log(`scale test: ${KEYS * SEQS} records, ${duplicates} duplicate outputs (at-least-once)`);
    expect(await stopInstance(a, 'SIGTERM')).toBe(0);
  });

  it('loses no record when an instance is killed with SIGKILL mid-stream', { timeout: 300_000 }, async () => {
    const appId = uniqueName('crash');
    const input = uniqueName('crash-in');
    const output = uniqueName('crash-out');
    await createTopics([
      { topic: input, partitions: 3 },
      { topic: output, partitions: 3 },
    ]);
    const KEYS = 300;
    const SEQS = 100;
    await produce(input, records(KEYS, 1, 20));
    const a = startInstance(appId, input, output, 'crash-a');
    // the rest arrives while the instance runs, so the kill always lands mid-stream
    let producing = true;
    const rest = (async () => {
      // from when it processes, so the producer is still busy when the kill comes
      await waitUntil('instance running', () => a.states.includes('RUNNING'), 60_000);
      for (let s = 21; s <= SEQS; s += 5) {
        await produce(input, records(KEYS, s, s + 4));
        await new Promise((r) => setTimeout(r, 100));
      }
      producing = false;
    })();
    // kill it while it is processing: some outputs written and some offsets committed, not all
    await waitUntil('some output', async () => (await readAll(output)).length > 3000, 60_000);
    await waitUntil(
      'a commit',
      async () =>
        (await withAdmin((ad) => ad.fetchOffsets({ groupId: appId, topics: [input] })))[0]!.partitions.some(
          (p) => Number(p.offset) > 0,
        ),
      60_000,
    );
    // and a little more processed after that commit, so the kill loses uncommitted work
    await new Promise((r) => setTimeout(r, 150));
    expect(producing).toBe(true);
    expect(await stopInstance(a, 'SIGKILL')).toBeNull();
    const before = (await readAll(output)).length;
    await rest;
    const a2 = startInstance(appId, input, output, 'crash-a');
    await waitForOutputs(output, KEYS * SEQS);
    const { duplicates } = await verify(appId, output, KEYS, SEQS).catch((e: unknown) => {
      // say where the restarted instance got to
      console.error(`restarted instance states: ${a2.states.join(' -> ')}`);
      throw e;
    });
    console.log(`crash test: ${KEYS * SEQS} records, killed after ${before} outputs, ${duplicates} duplicate outputs`);
    // only what was processed after the last commit is processed again
    expect(duplicates).toBeLessThanOrEqual(before);
    expect(await stopInstance(a2, 'SIGTERM')).toBe(0);
  });
});
