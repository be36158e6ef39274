import { describe, expect, it } from 'vitest';
import {
  commitWithSession,
  isCoordinatorError,
  isGenerationError,
  type GroupSession,
} from '../../../runtime/kafkajs-hooks.js';
import { decodeCommitMetadata, encodeCommitMetadata } from '../../../runtime/streams.js';

const protocolError = (type: string) => Object.assign(new Error(type), { name: 'KafkaJSProtocolError', type });

describe('commit metadata', () => {
  it('round-trips changelog offsets and stream time', () => {
    const m = { v: 1 as const, cl: { 'app-dedupe-changelog:3': 42, 'user-preferences:3': 7 }, st: 1_700_000_000_000 };
    expect(decodeCommitMetadata(encodeCommitMetadata(m))).toEqual(m);
  });

  it('reads anything else (no metadata, another format, bad offsets) as no positions', () => {
    expect(decodeCommitMetadata(null)).toBeUndefined();
    expect(decodeCommitMetadata('')).toBeUndefined();
    expect(decodeCommitMetadata('not json')).toBeUndefined();
    expect(decodeCommitMetadata('{"v":2,"cl":{}}')).toBeUndefined();
    expect(decodeCommitMetadata('{"v":1,"cl":{"a:0":-1,"b:0":3.5,"c:0":9}}')).toEqual({
      v: 1,
      cl: { 'c:0': 9 },
      st: -1,
    });
  });
});

describe('group errors', () => {
  it('tells a moved or dead coordinator from a generation that is over', () => {
    for (const t of ['NOT_COORDINATOR_FOR_GROUP', 'GROUP_COORDINATOR_NOT_AVAILABLE', 'GROUP_LOAD_IN_PROGRESS'])
      expect([isCoordinatorError(protocolError(t)), isGenerationError(protocolError(t))]).toEqual([true, false]);
    expect(isCoordinatorError(Object.assign(new Error('refused'), { name: 'KafkaJSConnectionError' }))).toBe(true);
    expect(isCoordinatorError(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(true);
    for (const t of ['ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'REBALANCE_IN_PROGRESS', 'FENCED_INSTANCE_ID'])
      expect([isCoordinatorError(protocolError(t)), isGenerationError(protocolError(t))]).toEqual([false, true]);
    expect(isCoordinatorError(protocolError('TOPIC_AUTHORIZATION_FAILED'))).toBe(false);
  });
});

describe('commitWithSession', () => {
  function session(answers: (Error | undefined)[]) {
    const calls: { coordinator: string; generation: number; metadata: (string | null | undefined)[] }[] = [];
    let lookups = 0;
    const coordinator = (name: string): GroupSession['coordinator'] => ({
      async offsetCommit(req) {
        calls.push({
          coordinator: name,
          generation: req.groupGenerationId,
          metadata: req.topics.flatMap((t) => t.partitions.map((p) => p.metadata)),
        });
        const a = answers.shift();
        if (a) throw a;
      },
      async heartbeat() {},
    });
    const s: GroupSession = {
      groupId: 'g',
      memberId: 'm-1',
      generationId: 7,
      coordinator: coordinator('c0'),
      cluster: {
        findGroupCoordinator: async () => coordinator(`c${++lookups}`),
        refreshMetadata: async () => {},
      },
      heartbeat: async () => {},
    };
    return { s, calls };
  }

  const offsets = [{ topic: 't', partition: 0, offset: 10, metadata: '{"v":1,"cl":{},"st":1}' }];

  it('commits as the member of its generation, with the metadata', async () => {
    const { s, calls } = session([undefined]);
    await commitWithSession(s, offsets, { deadlineMs: 1000 });
    expect(calls).toEqual([{ coordinator: 'c0', generation: 7, metadata: ['{"v":1,"cl":{},"st":1}'] }]);
  });

  it('looks the coordinator up again and retries when it moved or died', async () => {
    const { s, calls } = session([
      Object.assign(new Error('refused'), { name: 'KafkaJSConnectionError' }),
      protocolError('NOT_COORDINATOR_FOR_GROUP'),
      undefined,
    ]);
    await commitWithSession(s, offsets, { deadlineMs: 10_000 });
    expect(calls.map((c) => c.coordinator)).toEqual(['c0', 'c1', 'c2']);
  });

  it('fails at once when the generation is over (the tasks may have another owner)', async () => {
    const { s, calls } = session([protocolError('ILLEGAL_GENERATION')]);
    await expect(commitWithSession(s, offsets, { deadlineMs: 10_000 })).rejects.toMatchObject({
      type: 'ILLEGAL_GENERATION',
    });
    expect(calls).toHaveLength(1);
  });

  it('a member that left the group does not commit', async () => {
    const { s, calls } = session([]);
    s.memberId = null;
    await expect(commitWithSession(s, offsets, { deadlineMs: 1000 })).rejects.toMatchObject({
      type: 'UNKNOWN_MEMBER_ID',
    });
    expect(calls).toHaveLength(0);
  });
});
