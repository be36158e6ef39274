/**
 * TaskStateManager's local commit (commit step 7): one at a time, in the order asked, so a
 * checkpoint written in the background (a task's first commit) never lands after a later one;
 * and `close()` waits for the local commits in flight.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type * as Checkpoint from '../../../runtime/state/checkpoint.js';

const gate = vi.hoisted(() => ({ wait: undefined as Promise<void> | undefined, calls: [] as string[] }));
vi.mock('../../../runtime/state/checkpoint.js', async (original) => {
  const mod = await original<typeof Checkpoint>();
  return {
    ...mod,
    writeCheckpoint: async (file: string, offsets: ReadonlyMap<string, number>) => {
      const label = JSON.stringify([...offsets.values()]);
      gate.calls.push(`start ${label}`);
      if (gate.wait) await gate.wait;
      await mod.writeCheckpoint(file, offsets);
      gate.calls.push(`done ${label}`);
    },
  };
});

const { TaskStateManager } = await import('../../../runtime/state-manager.js');
const { MemoryRecordCollector } = await import('../../../runtime/record-collector.js');
const { TopologyBuilder } = await import('../../../runtime/topology.js');
const { stringSerde } = await import('../../../runtime/serdes.js');
const { readCheckpoint, tpKey } = await import('../../../runtime/state/checkpoint.js');

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  gate.wait = undefined;
  gate.calls = [];
});

async function manager() {
  const topology = new TopologyBuilder()
    .source('a', { topic: 'A', key: stringSerde, value: stringSerde })
    .processor('p', () => ({ process: () => undefined }), 'a')
    .store({ name: 's', key: stringSerde, value: stringSerde }, 'p')
    .build();
  const dir = mkdtempSync(join(tmpdir(), 'um-sm-'));
  dirs.push(dir);
  const m = new TaskStateManager({
    taskId: '0_0',
    applicationId: 'app',
    partition: 0,
    taskDir: dir,
    stores: topology.resolvedStores('app'),
    collector: new MemoryRecordCollector(),
    cacheMaxEntries: 0,
  });
  await m.open(new Map());
  const topic = topology.resolvedStores('app')[0]!.changelogTopic!;
  return { m, dir, key: tpKey(topic, 0) };
}

describe('TaskStateManager.commitLocal', () => {
  it('writes checkpoints one at a time, in the order the commits asked, the last one last', async () => {
    const { m, dir, key } = await manager();
    let release!: () => void;
    gate.wait = new Promise<void>((r) => (release = r));
    const first = m.commitLocal(new Map([[key, 10]]));
    const second = m.commitLocal(new Map([[key, 20]]));
    await new Promise((r) => setTimeout(r, 20));
    // the second has not started while the first waits
    expect(gate.calls).toEqual(['start [10]']);
    release();
    await Promise.all([first, second]);
    expect(gate.calls).toEqual(['start [10]', 'done [10]', 'start [20]', 'done [20]']);
    expect((await readCheckpoint(join(dir, '.checkpoint')))?.get(key)).toBe(20);
    await m.close();
  });

  it('close waits for a local commit in flight', async () => {
    const { m, key } = await manager();
    let release!: () => void;
    gate.wait = new Promise<void>((r) => (release = r));
    void m.commitLocal(new Map([[key, 5]]));
    let closed = false;
    const closing = m.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(closed).toBe(false);
    release();
    await closing;
    expect(gate.calls).toEqual(['start [5]', 'done [5]']);
  });
});
