/**
 * KafkaJS log entries at the level an operator needs: routine rebalance and protocol chatter at
 * debug, what needs action at WARN/ERROR; one message key per line.
 */
import { logLevel } from 'kafkajs';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { kafkaClientLogLevel, kafkaLogCreator, kafkaLogLevel } from '../../../runtime/kafka-log.js';

const entry = (level: logLevel, message: string, extra: Record<string, unknown> = {}) => ({
  namespace: 'Runner',
  level,
  label: 'ERROR',
  log: { timestamp: '2026-01-01T00:00:00.000Z', logger: 'kafkajs', message, ...extra },
});

describe('kafkajs log levels', () => {
  it.each([
    [entry(logLevel.ERROR, 'The group is rebalancing, re-joining', { groupId: 'g', memberId: 'm' })],
    [
      entry(logLevel.ERROR, 'Response Heartbeat(key: 12, version: 3)', {
        error: 'The group is rebalancing, re-joining',
      }),
    ],
    [
      entry(logLevel.ERROR, 'Response OffsetCommit(key: 8, version: 5)', {
        error: 'The coordinator is not aware of this member',
      }),
    ],
    [
      entry(logLevel.WARN, 'Response Metadata(key: 3, version: 6)', {
        error: 'There is no leader for this topic-partition as we are in the middle of a leadership election',
      }),
    ],
    [entry(logLevel.WARN, 'KafkaJS v2.0.0 switched default partitioner. To retain the same partitioning behavior...')],
    [entry(logLevel.INFO, 'Consumer has joined the group')],
    [entry(logLevel.ERROR, 'Response CreateTopics(key: 19, version: 3)', { error: 'Topic creation errors' })],
    [
      entry(logLevel.ERROR, 'Response GroupCoordinator(key: 10, version: 2)', {
        error: 'The group coordinator is not available',
      }),
    ],
  ])('routine: %j goes to debug', (e) => {
    expect(kafkaLogLevel(e)).toBe('debug');
  });

  it('a consumer restart after a retriable crash is info (the crash line carries the cause)', () => {
    expect(kafkaLogLevel(entry(logLevel.ERROR, 'Restarting the consumer in 300ms', { retryCount: 0 }))).toBe('info');
    expect(
      kafkaLogLevel(entry(logLevel.ERROR, 'Crash: KafkaJSError: The coordinator is not aware of this member')),
    ).toBe('debug');
  });

  it('keeps what needs action at WARN/ERROR', () => {
    expect(kafkaLogLevel(entry(logLevel.ERROR, 'Connection error: connect ECONNREFUSED 127.0.0.1:1'))).toBe('error');
    expect(kafkaLogLevel(entry(logLevel.ERROR, 'Crash: KafkaJSNumberOfRetriesExceeded: ...'))).toBe('error');
    expect(kafkaLogLevel(entry(logLevel.ERROR, 'SASL PLAIN authentication failed'))).toBe('error');
    expect(kafkaLogLevel(entry(logLevel.WARN, 'Connection timeout', { broker: 'k:9092' }))).toBe('warn');
    expect(kafkaLogLevel(entry(logLevel.DEBUG, 'Request Fetch'))).toBe('trace');
  });

  it('writes one line per entry, the client message as msg, once', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(c: Buffer, _e, cb) {
        lines.push(c.toString());
        cb();
      },
    });
    const log = pino({ level: 'info' }, sink);
    const write = kafkaLogCreator(log)(logLevel.WARN);
    write(entry(logLevel.ERROR, 'The group is rebalancing, re-joining'));
    write(entry(logLevel.ERROR, 'Connection error: connect ECONNREFUSED', { broker: 'k:9092', error: 'boom' }));
    expect(lines).toHaveLength(1);
    expect(lines[0]!.match(/"msg"/g)).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 50,
      msg: 'Connection error: connect ECONNREFUSED',
      kafkajs: 'Runner',
      broker: 'k:9092',
      error: 'boom',
    });
    expect(kafkaClientLogLevel(log)).toBe(logLevel.WARN);
    expect(kafkaClientLogLevel(pino({ level: 'debug' }))).toBe(logLevel.INFO);
    expect(kafkaClientLogLevel(pino({ level: 'trace' }))).toBe(logLevel.DEBUG);
  });
});
