/**
 * KafkaJS log entries → the application's pino logger, at the level an operator needs.
 *
 * KafkaJS logs routine group and protocol events as ERROR or WARN: every rebalance prints "The
 * group is rebalancing, re-joining" and failed Heartbeat / OffsetCommit responses, a fresh topic
 * prints LEADER_NOT_AVAILABLE until its leader is elected, and every error response of any request
 * is logged by the connection although the caller gets it too (and retries it, or reports it). These are retried by the client and
 * need nothing from anyone: they go to debug. KafkaJS INFO (joins, starts, stops) goes to debug
 * too, and its DEBUG to trace. What remains at WARN or ERROR (a broker that cannot be reached,
 * refused authentication, a crashed consumer...) is what an operator must act on.
 *
 * Each line carries `kafkajs` (the namespace, e.g. "Connection"), `broker` and the client's
 * `error` when there is one; the message is the client's message. Nothing else is copied from
 * the entry (no payloads, no duplicate `msg`).
 */
import { logLevel as KafkaLogLevel, type LogEntry, type logCreator } from 'kafkajs';
import type { Logger } from 'pino';

type PinoLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Client messages (or their `error`) that describe a routine, self-healing event. */
const ROUTINE: readonly RegExp[] = [
  // an error response: the connection logs it, and the caller receives it as an error and retries
  // or reports it (a request that finally fails is reported there, once)
  /^Response \w+\(key: \d+, version: \d+\)/,
  /group is rebalancing/i,
  /REBALANCE_IN_PROGRESS/,
  /^Response Heartbeat/,
  /^Response OffsetCommit/,
  /^Response JoinGroup/,
  /^Response SyncGroup/,
  /coordinator is not aware of this member/i,
  /UNKNOWN_MEMBER_ID/,
  /ILLEGAL_GENERATION/,
  /generation id is not valid/i,
  /There is no leader for this topic-partition/i,
  /LEADER_NOT_AVAILABLE/,
  /NOT_LEADER_OR_FOLLOWER/,
  /This server does not host this topic-partition/i,
  /This is not the correct coordinator/i,
  /NOT_COORDINATOR/,
  /coordinator is loading/i,
  /COORDINATOR_LOAD_IN_PROGRESS/,
  /COORDINATOR_NOT_AVAILABLE/,
  /switched default partitioner/i,
  // the engine bounds kafkajs' retries on purpose and retries whole requests itself (same sequence numbers)
  /Limiting retries for the idempotent producer/,
  // a transaction begun while the coordinator still writes the previous one's markers: retried
  /concurrent operation on the same transaction/i,
  /CONCURRENT_TRANSACTIONS/,
];

/** Recoveries: worth a line at info, nothing to act on (the cause, if it matters, is logged apart). */
const RECOVERY: readonly RegExp[] = [/^Restarting the consumer in \d+ms/];

function text(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** The pino level of a KafkaJS log entry (see the module comment). */
export function kafkaLogLevel(entry: Pick<LogEntry, 'level' | 'log'>): PinoLevel {
  const message = text(entry.log.message);
  const error = text((entry.log as { error?: unknown }).error);
  switch (entry.level) {
    case KafkaLogLevel.ERROR:
    case KafkaLogLevel.WARN:
      if (ROUTINE.some((r) => r.test(message) || r.test(error))) return 'debug';
      if (RECOVERY.some((r) => r.test(message))) return 'info';
      return entry.level === KafkaLogLevel.ERROR ? 'error' : 'warn';
    case KafkaLogLevel.INFO:
      return 'debug';
    default:
      return 'trace';
  }
}

/** The fields of a log line for an entry: namespace, broker, error; never the whole entry. */
export function kafkaLogFields(entry: Pick<LogEntry, 'namespace' | 'log'>): Record<string, unknown> {
  const log = entry.log as { broker?: unknown; error?: unknown; groupId?: unknown };
  return {
    kafkajs: entry.namespace,
    ...(log.broker !== undefined ? { broker: log.broker } : {}),
    ...(log.groupId !== undefined ? { groupId: log.groupId } : {}),
    ...(log.error !== undefined ? { error: String(log.error) } : {}),
  };
}

/**
 * A KafkaJS `logCreator` writing to `logger`. Give the client `logLevel: kafkaClientLogLevel(logger)`
 * too, so that KafkaJS does not build entries nobody will see.
 */
export function kafkaLogCreator(logger: Logger): logCreator {
  return () => (entry) => {
    const level = kafkaLogLevel(entry);
    if (!logger.isLevelEnabled(level)) return;
    logger[level](kafkaLogFields(entry), text(entry.log.message) || 'kafkajs');
  };
}

/** The KafkaJS log level to configure for a pino logger: no more detail than it will print. */
export function kafkaClientLogLevel(logger: Logger): KafkaLogLevel {
  if (logger.isLevelEnabled('trace')) return KafkaLogLevel.DEBUG;
  // routine ERROR/WARN entries are printed at debug; INFO entries too
  if (logger.isLevelEnabled('debug')) return KafkaLogLevel.INFO;
  return KafkaLogLevel.WARN;
}
