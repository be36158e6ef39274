/**
 * The co-partitioning assignor. A task is a partition number of the co-partitioned source
 * topics, and all its partitions must go to the same member (kafkajs' default round-robin
 * assignor would split them). The leader balances tasks (each member gets floor or ceil of
 * tasks/members) and keeps them where they were (sticky), else where their state already is on
 * disk, so a rebalance moves as few tasks, and restores as little state, as it can.
 *
 * Each member's subscription carries JSON user data: its endpoint (for forwarding interactive
 * queries), the tasks it owns, the tasks it has local state for, and how far that state goes (the
 * sum of its checkpointed changelog offsets): a task without an owner goes to the member whose
 * state of it is most caught up (a standby's, normally).
 *
 * Standby replicas: with `standbyReplicas` = n, each task also gets up to n standby members, never
 * its active owner, preferring members that already hold its state, then the least loaded. A
 * member's standby tasks travel in the user data of its assignment (JSON `{"standby":[...]}`).
 */
import {
  AssignerProtocol,
  type GroupMember,
  type GroupMemberAssignment,
  type Cluster,
  type PartitionAssigner,
} from 'kafkajs';

export const ASSIGNOR_NAME = 'CoPartitionedStickyAssignor';
const VERSION = 1;

export interface MemberInfo {
  endpoint?: string;
  owned: number[];
  stateful: number[];
  /** per stateful task: the sum of its checkpointed changelog offsets (higher = more caught up) */
  offsets?: Record<string, number>;
}

/** What the leader tells a member besides its partitions. */
export interface AssignmentInfo {
  standby: number[];
}

export function encodeAssignmentInfo(a: AssignmentInfo): Buffer {
  return Buffer.from(JSON.stringify(a), 'utf8');
}

/** Decodes an assignment's user data; anything malformed reads as "no standby tasks". */
export function decodeAssignmentInfo(userData: Buffer | null | undefined): AssignmentInfo {
  if (!userData || !userData.length) return { standby: [] };
  try {
    const v = JSON.parse(userData.toString('utf8')) as { standby?: unknown };
    return { standby: taskList(v?.standby) };
  } catch {
    return { standby: [] };
  }
}

export function encodeMemberInfo(info: MemberInfo): Buffer {
  return Buffer.from(JSON.stringify(info), 'utf8');
}

const taskList = (v: unknown): number[] =>
  Array.isArray(v) ? v.filter((t): t is number => Number.isSafeInteger(t) && (t as number) >= 0) : [];

/** Decodes a member's user data; anything malformed reads as "owns nothing". */
export function decodeMemberInfo(userData: Buffer | null | undefined): MemberInfo {
  if (!userData || !userData.length) return { owned: [], stateful: [] };
  let v: unknown;
  try {
    v = JSON.parse(userData.toString('utf8'));
  } catch {
    return { owned: [], stateful: [] };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { owned: [], stateful: [] };
  const o = v as Record<string, unknown>;
  const info: MemberInfo = { owned: taskList(o.owned), stateful: taskList(o.stateful) };
  if (typeof o.endpoint === 'string') info.endpoint = o.endpoint;
  if (typeof o.offsets === 'object' && o.offsets !== null && !Array.isArray(o.offsets)) {
    const offsets: Record<string, number> = {};
    for (const [k, v] of Object.entries(o.offsets as Record<string, unknown>))
      if (/^\d+$/.test(k) && typeof v === 'number' && Number.isFinite(v) && v >= 0) offsets[k] = v;
    info.offsets = offsets;
  }
  return info;
}

/**
 * Pure assignment: tasks 0..taskCount-1 over members, balanced and sticky.
 * Returns task numbers per member id.
 */
export function assignTasks(taskCount: number, members: { id: string; info: MemberInfo }[]): Map<string, number[]> {
  const ids = members.map((m) => m.id).sort();
  const out = new Map<string, number[]>(ids.map((id) => [id, []]));
  if (!ids.length) return out;
  const base = Math.floor(taskCount / ids.length);
  const extra = taskCount % ids.length;
  const info = new Map(members.map((m) => [m.id, m.info]));
  // the `extra` members that may take one more: those owning most, then with most state, then by id,
  // so that a balanced assignment is kept as it is
  const valid = (ts: number[]) => new Set(ts.filter((t) => t < taskCount)).size;
  const byClaim = [...ids].sort(
    (a, b) =>
      valid(info.get(b)!.owned) - valid(info.get(a)!.owned) ||
      valid(info.get(b)!.stateful) - valid(info.get(a)!.stateful) ||
      (a < b ? -1 : 1),
  );
  const plusOne = new Set(byClaim.slice(0, extra));
  const capacity = new Map(ids.map((id) => [id, base + (plusOne.has(id) ? 1 : 0)]));
  const taken = new Set<number>();
  const give = (id: string, t: number): boolean => {
    if (!Number.isInteger(t) || taken.has(t) || t < 0 || t >= taskCount) return false;
    const list = out.get(id)!;
    if (list.length >= capacity.get(id)!) return false;
    list.push(t);
    taken.add(t);
    return true;
  };
  // 1. keep owned tasks; 2. then tasks with local state, to the member whose state is most caught
  // up (by checkpointed offsets; ties by id); 3. then the rest, round-robin
  for (const id of ids) for (const t of info.get(id)!.owned) give(id, t);
  const caughtUp = (id: string, t: number) => info.get(id)!.offsets?.[String(t)] ?? 0;
  for (let t = 0; t < taskCount; t++) {
    if (taken.has(t)) continue;
    const claimants = ids.filter((id) => info.get(id)!.stateful.includes(t));
    claimants.sort((a, b) => caughtUp(b, t) - caughtUp(a, t) || (a < b ? -1 : 1));
    for (const id of claimants) if (give(id, t)) break;
  }
  let i = 0;
  for (let t = 0; t < taskCount; t++) {
    if (taken.has(t)) continue;
    for (let k = 0; k < ids.length; k++) {
      const id = ids[(i + k) % ids.length]!;
      if (give(id, t)) {
        i = (i + k + 1) % ids.length;
        break;
      }
    }
  }
  for (const list of out.values()) list.sort((a, b) => a - b);
  return out;
}

/**
 * Standby tasks: up to `replicas` per task, on members other than its active owner, preferring
 * members holding its state (most caught up first), then those with the fewest standbys.
 */
export function assignStandbys(
  taskCount: number,
  active: ReadonlyMap<string, number[]>,
  members: { id: string; info: MemberInfo }[],
  replicas: number,
): Map<string, number[]> {
  const ids = members.map((m) => m.id).sort();
  const out = new Map<string, number[]>(ids.map((id) => [id, []]));
  if (replicas <= 0 || ids.length < 2) return out;
  const info = new Map(members.map((m) => [m.id, m.info]));
  const owner = new Map<number, string>();
  for (const [id, ts] of active) for (const t of ts) owner.set(t, id);
  const load = (id: string) => out.get(id)!.length + (active.get(id)?.length ?? 0);
  for (let t = 0; t < taskCount; t++) {
    for (let r = 0; r < replicas; r++) {
      const candidates = ids.filter((id) => id !== owner.get(t) && !out.get(id)!.includes(t));
      if (!candidates.length) break;
      const state = (id: string) =>
        info.get(id)!.stateful.includes(t) ? 1 + (info.get(id)!.offsets?.[String(t)] ?? 0) : 0;
      candidates.sort((a, b) => state(b) - state(a) || load(a) - load(b) || (a < b ? -1 : 1));
      out.get(candidates[0]!)!.push(t);
    }
  }
  for (const list of out.values()) list.sort((a, b) => a - b);
  return out;
}

export function coPartitionedAssigner(
  getInfo: () => MemberInfo,
  opts: { standbyReplicas?: number } = {},
): PartitionAssigner {
  return (({ cluster }: { cluster: Cluster }) => ({
    name: ASSIGNOR_NAME,
    version: VERSION,
    async assign({ members, topics }: { members: GroupMember[]; topics: string[] }): Promise<GroupMemberAssignment[]> {
      let taskCount = 0;
      for (const topic of topics) {
        const n = cluster.findTopicPartitionMetadata(topic).length;
        taskCount = Math.max(taskCount, n);
      }
      const decoded = members.map((m) => {
        const md = AssignerProtocol.MemberMetadata.decode(m.memberMetadata);
        return { id: m.memberId, info: decodeMemberInfo(md?.userData) };
      });
      const tasks = assignTasks(taskCount, decoded);
      const standbys = assignStandbys(taskCount, tasks, decoded, opts.standbyReplicas ?? 0);
      return [...tasks].map(([memberId, list]) => {
        const assignment: Record<string, number[]> = {};
        for (const topic of topics) {
          const n = cluster.findTopicPartitionMetadata(topic).length;
          assignment[topic] = list.filter((t) => t < n);
        }
        return {
          memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({
            version: VERSION,
            assignment,
            userData: encodeAssignmentInfo({ standby: standbys.get(memberId) ?? [] }),
          }),
        };
      });
    },
    protocol({ topics }: { topics: string[] }) {
      return {
        name: ASSIGNOR_NAME,
        metadata: AssignerProtocol.MemberMetadata.encode({
          version: VERSION,
          topics,
          userData: encodeMemberInfo(getInfo()),
        }),
      };
    },
  })) as unknown as PartitionAssigner;
}
