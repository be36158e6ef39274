/**
 * The co-partitioning assignor. A task is a partition number of the co-partitioned source
 * topics, and all its partitions must go to the same member (kafkajs' default round-robin
 * assignor would split them). The leader balances tasks (each member gets floor or ceil of
 * tasks/members) and keeps them where they were (sticky), else where their state already is on
 * disk, so a rebalance moves as few tasks, and restores as little state, as it can.
 *
 * Each member's subscription carries JSON user data: its endpoint (for forwarding interactive
 * queries), the tasks it owns and the tasks it has local state for.
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
  // 1. keep owned tasks; 2. then tasks with local state; 3. then the rest, round-robin
  for (const id of ids) for (const t of info.get(id)!.owned) give(id, t);
  for (const id of ids) for (const t of info.get(id)!.stateful) give(id, t);
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

export function coPartitionedAssigner(getInfo: () => MemberInfo): PartitionAssigner {
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
            userData: Buffer.alloc(0),
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
