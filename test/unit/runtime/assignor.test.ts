import { describe, expect, it } from 'vitest';
import {
  assignStandbys,
  assignTasks,
  decodeAssignmentInfo,
  decodeMemberInfo,
  encodeAssignmentInfo,
  encodeMemberInfo,
  type MemberInfo,
} from '../../../runtime/assignor.js';

type Members = { id: string; info: MemberInfo }[];

const member = (id: string, owned: number[] = [], stateful: number[] = []) => ({ id, info: { owned, stateful } });

/** Every task exactly once, every member floor or ceil of tasks/members. */
function expectValid(result: Map<string, number[]>, taskCount: number, memberCount: number): void {
  expect(result.size).toBe(memberCount);
  const all = [...result.values()].flat().sort((a, b) => a - b);
  expect(all).toEqual(Array.from({ length: taskCount }, (_, i) => i));
  if (!memberCount) return;
  const lo = Math.floor(taskCount / memberCount);
  const hi = Math.ceil(taskCount / memberCount);
  for (const [id, list] of result) {
    expect(list.length, `member ${id}`).toBeGreaterThanOrEqual(lo);
    expect(list.length, `member ${id}`).toBeLessThanOrEqual(hi);
    expect(list).toEqual([...list].sort((a, b) => a - b));
  }
}

/** Tasks that changed owner between two assignments. */
function moved(before: Map<string, number[]>, after: Map<string, number[]>): number[] {
  const owner = new Map<number, string>();
  for (const [id, list] of before) for (const t of list) owner.set(t, id);
  const out: number[] = [];
  for (const [id, list] of after) for (const t of list) if (owner.get(t) !== id) out.push(t);
  return out.sort((a, b) => a - b);
}

const asMembers = (m: Map<string, number[]>, extra: string[] = []): Members => [
  ...[...m].map(([id, owned]) => member(id, owned)),
  ...extra.map((id) => member(id)),
];

describe('assignTasks', () => {
  it('balances tasks over members and assigns each exactly once', () => {
    for (const taskCount of [0, 1, 5, 6, 7, 12, 13, 64]) {
      for (const memberCount of [1, 2, 3, 4, 5, 7]) {
        const members = Array.from({ length: memberCount }, (_, i) => member(`m${i}`));
        expectValid(assignTasks(taskCount, members), taskCount, memberCount);
      }
    }
  });

  it('returns an empty map for zero members', () => {
    expect(assignTasks(12, [])).toEqual(new Map());
  });

  it('gives some members nothing when there are more members than tasks', () => {
    const members = ['a', 'b', 'c', 'd', 'e'].map((id) => member(id));
    const r = assignTasks(3, members);
    expectValid(r, 3, 5);
    expect([...r.values()].filter((l) => l.length === 0)).toHaveLength(2);
  });

  it('keeps owned tasks in place when the assignment is already balanced', () => {
    const owned = new Map([
      ['a', [0, 5, 8, 9]],
      ['b', [1, 2, 3]],
      ['c', [4, 6, 7]],
    ]);
    const r = assignTasks(10, asMembers(owned));
    expectValid(r, 10, 3);
    expect(moved(owned, r)).toEqual([]);
  });

  it('keeps a balanced assignment when the member owning the extra task is not first by id', () => {
    const owned = new Map([
      ['a', [4, 5, 6]],
      ['b', [0, 1, 2, 3]],
      ['c', [7, 8, 9]],
    ]);
    expect(moved(owned, assignTasks(10, asMembers(owned)))).toEqual([]);
  });

  it('moves the minimum number of tasks when a member joins (12 tasks, 3 -> 4 members: exactly 3)', () => {
    const three = assignTasks(
      12,
      ['a', 'b', 'c'].map((id) => member(id)),
    );
    expectValid(three, 12, 3);
    const four = assignTasks(12, asMembers(three, ['d']));
    expectValid(four, 12, 4);
    expect(moved(three, four)).toHaveLength(3);
    expect(four.get('d')).toHaveLength(3);
    // every old member kept 3 of its 4 tasks
    for (const id of ['a', 'b', 'c']) expect(four.get(id)!.every((t) => three.get(id)!.includes(t))).toBe(true);
  });

  it('moves only the leaving member tasks when a member leaves', () => {
    const four = assignTasks(
      12,
      ['a', 'b', 'c', 'd'].map((id) => member(id)),
    );
    const remaining = new Map([...four].filter(([id]) => id !== 'b'));
    const three = assignTasks(12, asMembers(remaining));
    expectValid(three, 12, 3);
    expect(moved(remaining, three)).toEqual([...four.get('b')!].sort((x, y) => x - y));
  });

  it('prefers members with local state for tasks nobody owns', () => {
    const r = assignTasks(4, [member('a', [], [0, 1]), member('b', [], []), member('c', [], [3])]);
    expectValid(r, 4, 3);
    expect(r.get('a')).toEqual([0, 1]);
    expect(r.get('c')).toEqual([3]);
    expect(r.get('b')).toEqual([2]);
  });

  it('owned beats stateful, and capacity still bounds both', () => {
    const r = assignTasks(4, [member('a', [0, 1, 2, 3]), member('b', [], [0, 1, 2, 3])]);
    expectValid(r, 4, 2);
    expect(r.get('a')).toEqual([0, 1]);
    expect(r.get('b')).toEqual([2, 3]);
  });

  it('ignores owned/stateful tasks out of range and tasks claimed twice', () => {
    const r = assignTasks(3, [member('a', [0, 7, -1]), member('b', [0, 1]), member('c', [], [99])]);
    expectValid(r, 3, 3);
    expect(r.get('a')).toEqual([0]);
    expect(r.get('b')).toEqual([1]);
    expect(r.get('c')).toEqual([2]);
  });

  it('is deterministic: same input (in any member order) gives the same output', () => {
    const members: Members = [member('z', [1], [2]), member('m', [], [5]), member('a', [7, 8], []), member('q')];
    const first = assignTasks(9, members);
    for (let i = 0; i < 5; i++) {
      expect(assignTasks(9, members)).toEqual(first);
      expect(assignTasks(9, [...members].reverse())).toEqual(first);
    }
    expect([...first.keys()]).toEqual(['a', 'm', 'q', 'z']);
  });
});

describe('member info user data', () => {
  it('round-trips', () => {
    const info: MemberInfo = { endpoint: 'http://10.0.0.1:8080', owned: [1, 3], stateful: [1, 3, 4] };
    expect(decodeMemberInfo(encodeMemberInfo(info))).toEqual(info);
    expect(decodeMemberInfo(encodeMemberInfo({ owned: [], stateful: [] }))).toEqual({
      endpoint: undefined,
      owned: [],
      stateful: [],
    });
  });

  it('tolerates missing, empty and unparsable user data', () => {
    const empty = { owned: [], stateful: [] };
    expect(decodeMemberInfo(null)).toEqual(empty);
    expect(decodeMemberInfo(undefined)).toEqual(empty);
    expect(decodeMemberInfo(Buffer.alloc(0))).toEqual(empty);
    expect(decodeMemberInfo(Buffer.from('{not json'))).toMatchObject(empty);
    expect(decodeMemberInfo(Buffer.from([0xff, 0x00, 0x13]))).toMatchObject(empty);
    expect(decodeMemberInfo(Buffer.from('null'))).toMatchObject(empty);
    expect(decodeMemberInfo(Buffer.from('{}'))).toMatchObject(empty);
  });

  it('tolerates well-formed JSON of the wrong shape', () => {
    const garbage = decodeMemberInfo(
      Buffer.from(JSON.stringify({ endpoint: 42, owned: 'abc', stateful: [1.5, '2', null, 3] })),
    );
    expect(garbage).toEqual({ endpoint: undefined, owned: [], stateful: [3] });
    const r = assignTasks(4, [
      { id: 'a', info: garbage },
      { id: 'b', info: decodeMemberInfo(Buffer.from('{"owned":["2", 2.5]}')) },
    ]);
    expectValid(r, 4, 2);
  });
});

describe('standby replicas and failover', () => {
  it('a task without an owner goes to the member whose state of it is most caught up', () => {
    const a = { id: 'a', info: { owned: [], stateful: [0, 1], offsets: { '0': 10, '1': 500 } } };
    const b = { id: 'b', info: { owned: [], stateful: [0, 1], offsets: { '0': 900, '1': 20 } } };
    const r = assignTasks(2, [a, b]);
    expect(r.get('a')).toEqual([1]);
    expect(r.get('b')).toEqual([0]);
  });

  it('places standbys on other members than the active owner, preferring local state, balanced', () => {
    const members = [member('a'), member('b'), member('c', [], [4])];
    const active = assignTasks(6, members);
    const standby = assignStandbys(6, active, members, 1);
    const all = [...standby.values()].flat().sort((x, y) => x - y);
    expect(all).toEqual([0, 1, 2, 3, 4, 5]);
    for (const [id, ts] of standby) for (const t of ts) expect(active.get(id)).not.toContain(t);
    // c holds state of 4 (and does not run it): its standby goes there
    if (!active.get('c')!.includes(4)) expect(standby.get('c')).toContain(4);
    for (const ts of standby.values()) expect(ts.length).toBe(2);
    // two replicas on three members: every task on both other members
    const two = assignStandbys(6, active, members, 2);
    for (let t = 0; t < 6; t++) expect([...two.values()].filter((ts) => ts.includes(t))).toHaveLength(2);
    // one member, or no replicas: none
    expect([...assignStandbys(6, new Map([['a', [0, 1, 2, 3, 4, 5]]]), [member('a')], 1).values()].flat()).toEqual([]);
    expect([...assignStandbys(6, active, members, 0).values()].flat()).toEqual([]);
  });

  it('encodes standby tasks in the assignment user data; malformed data reads as none', () => {
    expect(decodeAssignmentInfo(encodeAssignmentInfo({ standby: [1, 3] }))).toEqual({ standby: [1, 3] });
    expect(decodeAssignmentInfo(Buffer.from('{oops'))).toEqual({ standby: [] });
    expect(decodeAssignmentInfo(undefined)).toEqual({ standby: [] });
    expect(decodeAssignmentInfo(Buffer.from('{"standby":[-1,"x",2]}'))).toEqual({ standby: [2] });
    const info = decodeMemberInfo(encodeMemberInfo({ owned: [1], stateful: [2], offsets: { '2': 42 } }));
    expect(info.offsets).toEqual({ '2': 42 });
    expect(decodeMemberInfo(Buffer.from('{"owned":[],"stateful":[],"offsets":{"x":1,"3":-2,"4":7}}')).offsets).toEqual({
      '4': 7,
    });
  });
});
