/**
 * What kafkajs' consumer lacks for a stream processor, added at its seams (the same module
 * instance kafkajs itself uses, so every consumer built afterwards has it):
 *
 * 1. A revocation hook. kafkajs uses the eager rebalance protocol but has no
 *    `onPartitionsRevoked`: it re-joins the group on its own. Before every JoinGroup, the
 *    consumer group now awaits `beforeJoin()` of the assignor that carries hooks, so the
 *    application can stop its tasks and commit while its generation is still valid (a member
 *    that has not re-joined yet may still commit during PreparingRebalance).
 * 2. Access to the group session (member id, generation, coordinator) for commits that carry
 *    offset metadata and are checked against the generation (a stale owner's commit fails).
 * 3. Coordinator fail-over. kafkajs keeps heart-beating (and committing to) the coordinator it
 *    found at join time, so when that broker dies the member loses its session and the whole
 *    group stalls until the client crashes and restarts (about two minutes). Here a heartbeat
 *    that fails for a coordinator reason looks the coordinator up again (in the background) and
 *    goes on with the same generation, as the Java client does.
 * 4. Broker loss during fetch. kafkajs re-throws a refused connection from a fetch and backs off
 *    up to the consumer's retry budget with stale metadata, and answers a partition leader's move
 *    by re-joining the group (a rebalance of every member for a leader change); here both only
 *    refresh metadata, wait a moment and fetch again (the new leader is found once elected).
 * 5. Read-committed ends. A read_committed fetch can read only up to the last stable offset
 *    (records of open transactions lie beyond it), but kafkajs reports the high watermark, and
 *    its offset look-ups ask with read_uncommitted unless told. A task waiting for records the
 *    broker holds would wait on records it cannot see until some transaction ends. Here a
 *    read_committed fetch reports the last stable offset as the partition's end, and offset
 *    look-ups default to read_committed: every end the engine sees is one its readers can reach
 *    (the same as the high watermark when no transaction is open).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';

/** The parts of kafkajs' internal ConsumerGroup used here. */
export interface GroupSession {
  groupId: string;
  memberId: string | null;
  generationId: number;
  coordinator: {
    offsetCommit(req: {
      groupId: string;
      memberId: string;
      groupGenerationId: number;
      topics: { topic: string; partitions: { partition: number; offset: string; metadata?: string | null }[] }[];
    }): Promise<unknown>;
    heartbeat(req: { groupId: string; memberId: string; groupGenerationId: number }): Promise<unknown>;
  };
  cluster: {
    findGroupCoordinator(req: { groupId: string }): Promise<GroupSession['coordinator']>;
    refreshMetadata(): Promise<void>;
  };
  offsetManager?: { coordinator: unknown };
  heartbeat(opts: { interval: number }): Promise<void>;
}

export interface GroupHooks {
  /** awaited before each JoinGroup; errors are logged by the caller, never block the join */
  beforeJoin(session: GroupSession): Promise<void>;
  /** a heartbeat succeeded */
  onHeartbeat?(session: GroupSession): void;
  /** the coordinator was looked up again after `reason` */
  onCoordinatorChange?(reason: string): void;
}

export const HOOKS = Symbol.for('streams-runtime.group-hooks');

interface ConsumerGroupProto {
  joinAndSync(this: GroupInternal): Promise<void>;
  heartbeat(this: GroupInternal, opts: { interval: number }): Promise<void>;
  recoverFromFetch(this: GroupInternal, e: unknown): Promise<void>;
  [k: symbol]: unknown;
}

type GroupInternal = GroupSession & {
  assigners: Record<symbol, GroupHooks | undefined>[];
  [REFRESHING]?: Promise<void>;
};

const REFRESHING = Symbol('coordinator-refresh');
const ASSIGNMENT_USER_DATA = Symbol.for('streams-runtime.assignment-user-data');
/** the consumer group whose join is running (kafkajs decodes the assignment inside it) */
const joining = new AsyncLocalStorage<GroupInternal>();
let joins = 0;

/**
 * The user data of the member's last assignment (kafkajs decodes it and drops it; the
 * co-partitioning assignor puts the member's standby tasks there).
 */
export function assignmentUserData(session: GroupSession | undefined): Buffer | undefined {
  return (session as (GroupSession & { [ASSIGNMENT_USER_DATA]?: Buffer }) | undefined)?.[ASSIGNMENT_USER_DATA];
}
const PATCHED = Symbol.for('streams-runtime.kafkajs-patched');

const COORDINATOR_ERRORS = new Set([
  'NOT_COORDINATOR_FOR_GROUP',
  'NOT_COORDINATOR',
  'GROUP_COORDINATOR_NOT_AVAILABLE',
  'COORDINATOR_NOT_AVAILABLE',
  'GROUP_LOAD_IN_PROGRESS',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'REQUEST_TIMED_OUT',
  'NETWORK_EXCEPTION',
]);

const CONNECTION_ERRORS = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSBrokerNotFound',
]);

/** The group's coordinator is gone or moved (as opposed to the member's session being over). */
export function isCoordinatorError(e: unknown): boolean {
  const err = e as { type?: string; name?: string; code?: string } | undefined;
  if (!err) return false;
  if (err.type && COORDINATOR_ERRORS.has(err.type)) return true;
  if (err.name && CONNECTION_ERRORS.has(err.name)) return true;
  return err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'EPIPE';
}

/** The member's generation is over: its tasks may already have another owner. */
export function isGenerationError(e: unknown): boolean {
  const t = (e as { type?: string } | undefined)?.type;
  return (
    t === 'ILLEGAL_GENERATION' ||
    t === 'UNKNOWN_MEMBER_ID' ||
    t === 'REBALANCE_IN_PROGRESS' ||
    t === 'FENCED_INSTANCE_ID'
  );
}

function hooksOf(group: GroupInternal): GroupHooks | undefined {
  for (const a of group.assigners ?? []) {
    const h = a[HOOKS];
    if (h) return h;
  }
  return undefined;
}

/** Looks the coordinator up again (one look-up at a time per group). */
export function refreshCoordinator(session: GroupSession, reason: string): Promise<void> {
  const g = session as GroupInternal;
  if (!g[REFRESHING]) {
    g[REFRESHING] = (async () => {
      try {
        const c = await g.cluster.findGroupCoordinator({ groupId: g.groupId });
        g.coordinator = c;
        if (g.offsetManager) g.offsetManager.coordinator = c;
        hooksOf(g)?.onCoordinatorChange?.(reason);
      } finally {
        g[REFRESHING] = undefined;
      }
    })();
  }
  return g[REFRESHING]!;
}

const LEADER_ERRORS = new Set([
  'LEADER_NOT_AVAILABLE',
  'NOT_LEADER_FOR_PARTITION',
  'NOT_LEADER_OR_FOLLOWER',
  'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH',
]);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const READ_COMMITTED = 1;

interface FetchResponse {
  responses?: { partitions?: { highWatermark: string; lastStableOffset?: string }[] }[];
}
interface BrokerProto {
  fetch(this: unknown, req: { isolationLevel?: number }): Promise<FetchResponse>;
  listOffsets(this: unknown, req: { isolationLevel?: number }): Promise<unknown>;
}

/** Installs the hooks into kafkajs (once per process). */
export function installKafkaJsHooks(): void {
  const require = createRequire(import.meta.url);
  const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup.js') as { prototype: ConsumerGroupProto };
  const proto = ConsumerGroup.prototype;
  if (proto[PATCHED]) return;
  proto[PATCHED] = true;

  const Broker = require('kafkajs/src/broker/index.js') as { prototype: BrokerProto };
  const bproto = Broker.prototype;
  const fetch = bproto.fetch;
  bproto.fetch = async function (this: unknown, req: { isolationLevel?: number }) {
    const res = await fetch.call(this, req);
    if (req.isolationLevel === READ_COMMITTED)
      for (const t of res.responses ?? [])
        for (const p of t.partitions ?? []) {
          const lso = Number(p.lastStableOffset);
          if (Number.isFinite(lso) && lso >= 0 && lso < Number(p.highWatermark)) p.highWatermark = String(lso);
        }
    return res;
  };
  const listOffsets = bproto.listOffsets;
  bproto.listOffsets = function (this: unknown, req: { isolationLevel?: number }) {
    return listOffsets.call(this, { ...req, isolationLevel: req.isolationLevel ?? READ_COMMITTED });
  };

  const protocol = require('kafkajs/src/consumer/assignerProtocol.js') as {
    MemberAssignment: { decode(b: Buffer): { userData?: Buffer } | null };
  };
  const decodeAssignment = protocol.MemberAssignment.decode;
  protocol.MemberAssignment.decode = function (b: Buffer) {
    const decoded = decodeAssignment.call(this, b);
    const group = joining.getStore();
    if (group) (group as GroupInternal & { [ASSIGNMENT_USER_DATA]?: Buffer })[ASSIGNMENT_USER_DATA] = decoded?.userData;
    return decoded;
  };

  const joinAndSync = proto.joinAndSync;
  proto.joinAndSync = async function (this: GroupInternal) {
    const hooks = hooksOf(this);
    if (hooks) await hooks.beforeJoin(this);
    joins++;
    try {
      return await joining.run(this, () => joinAndSync.call(this));
    } finally {
      // an AsyncLocalStorage in use turns on promise hooks for the whole process (a cost on every
      // promise): only while some group is joining
      if (--joins === 0) joining.disable();
    }
  };

  const heartbeat = proto.heartbeat;
  proto.heartbeat = async function (this: GroupInternal, opts: { interval: number }) {
    try {
      await heartbeat.call(this, opts);
      hooksOf(this)?.onHeartbeat?.(this);
    } catch (e) {
      if (!isCoordinatorError(e)) throw e;
      // the coordinator moved or died: find the new one and go on with the same generation;
      // the next heartbeat goes there (a member whose session did end learns it from that one)
      void refreshCoordinator(this, (e as Error).message).catch(() => undefined);
    }
  };

  const recoverFromFetch = proto.recoverFromFetch;
  proto.recoverFromFetch = async function (this: GroupInternal, e: unknown) {
    const name = (e as { name?: string }).name;
    const type = (e as { type?: string }).type;
    if (
      name === 'KafkaJSConnectionError' ||
      name === 'KafkaJSRequestTimeoutError' ||
      (type !== undefined && LEADER_ERRORS.has(type))
    ) {
      // a partition's leader moved: new metadata is enough (kafkajs would re-join the group,
      // which makes every member of the group stop, commit and re-join for a leader change)
      await sleep(200);
      await this.cluster.refreshMetadata().catch(() => undefined);
      return;
    }
    return recoverFromFetch.call(this, e);
  };
}

/**
 * Commits offsets (with metadata) as the member of the session's generation, retrying while
 * the coordinator moves. Throws the broker's error when the generation is over.
 */
export async function commitWithSession(
  session: GroupSession,
  offsets: { topic: string; partition: number; offset: number; metadata: string | null }[],
  opts: { deadlineMs: number },
): Promise<void> {
  const byTopic = new Map<string, { partition: number; offset: string; metadata: string | null }[]>();
  for (const o of offsets) {
    let l = byTopic.get(o.topic);
    if (!l) byTopic.set(o.topic, (l = []));
    l.push({ partition: o.partition, offset: String(o.offset), metadata: o.metadata });
  }
  const topics = [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
  const deadline = Date.now() + opts.deadlineMs;
  let wait = 100;
  for (;;) {
    const memberId = session.memberId;
    if (!memberId) {
      const err = new Error('the member has left the group') as Error & { type: string };
      err.type = 'UNKNOWN_MEMBER_ID';
      throw err;
    }
    try {
      await session.coordinator.offsetCommit({
        groupId: session.groupId,
        memberId,
        groupGenerationId: session.generationId,
        topics,
      });
      return;
    } catch (e) {
      if (!isCoordinatorError(e) || Date.now() > deadline) throw e;
      await sleep(wait);
      wait = Math.min(wait * 2, 1000);
      await refreshCoordinator(session, (e as Error).message).catch(() => undefined);
    }
  }
}
