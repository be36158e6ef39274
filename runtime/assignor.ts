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

export function decodeMemberInfo(userData: Buffer | null | undefined): MemberInfo {
  if (!userData || !userData.length) return { owned: [], stateful: [] };
  try {
    const v = JSON.parse(userData.toString('utf8')) as Partial<MemberInfo>;
    return { endpoint: v.endpoint, owned: v.owned ?? [], stateful: v.stateful ?? [] };
  } catch {
    return { owned: [], stateful: [] };
  }
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
  // the first `extra` members (by id) may take one more
  const capacity = new Map(ids.map((id, i) => [id, base + (i < extra ? 1 : 0)]));
  const info = new Map(members.map((m) => [m.id, m.info]));
  const taken = new Set<number>();
  const give = (id: string, t: number): boolean => {
    if (taken.has(t) || t < 0 || t >= taskCount) return false;
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
