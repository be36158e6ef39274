import { describe, expect, it } from 'vitest';
import { kafkaSecurity, streamsConfig, type StreamsConfigInput } from '../../../runtime/config.js';
import { ConfigError } from '../../../runtime/errors.js';

const valid: StreamsConfigInput = { applicationId: 'unwanted-mail', brokers: ['localhost:9092'], stateDir: '/tmp/um' };

function configError(input: unknown): ConfigError {
  try {
    streamsConfig(input as StreamsConfigInput);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('streamsConfig', () => {
  it('fills defaults and freezes', () => {
    const cfg = streamsConfig(valid);
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(cfg).toMatchObject({
      applicationId: 'unwanted-mail',
      brokers: ['localhost:9092'],
      stateDir: '/tmp/um',
      clientId: 'unwanted-mail',
      commitIntervalMs: 5000,
      maxTaskIdleMs: 0,
      maxStreamTimeJumpMs: 86_400_000,
      maxBufferedBytesPerPartition: 4 * 1024 * 1024,
      maxFetchBytesPerPartition: 1024 * 1024,
      cacheMaxEntries: 10_000,
      maxBatchRecords: 1000,
      processingGuarantee: 'at_least_once',
      deserializationErrorPolicy: 'dlq',
      processingErrorPolicy: 'dlq',
      dlqTopic: 'unwanted-mail-dlq',
      replicationFactor: 1,
    });
    expect(cfg.instanceId).toMatch(/^instance-\d+$/);
    expect(() => {
      (cfg as { commitIntervalMs: number }).commitIntervalMs = 1;
    }).toThrow(TypeError);
  });

  it('keeps explicit settings, including the dead-letter topic', () => {
    const cfg = streamsConfig({
      ...valid,
      dlqTopic: 'dead',
      commitIntervalMs: 100,
      processingErrorPolicy: 'fail',
      sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' },
      ssl: { ca: 'PEM' },
    });
    expect(cfg.dlqTopic).toBe('dead');
    expect(cfg.commitIntervalMs).toBe(100);
    expect(cfg.processingErrorPolicy).toBe('fail');
    expect(cfg.ssl).toEqual({ ca: 'PEM', rejectUnauthorized: true });
  });

  it.each([
    ['applicationId', { applicationId: 'bad id/with spaces' }],
    ['applicationId', { applicationId: '' }],
    ['brokers', { brokers: [] }],
    ['brokers.0', { brokers: ['localhost'] }],
    ['brokers.1', { brokers: ['a:1', 'b:port'] }],
    ['commitIntervalMs', { commitIntervalMs: -1 }],
    ['commitIntervalMs', { commitIntervalMs: 1.5 }],
    ['maxTaskIdleMs', { maxTaskIdleMs: -5 }],
    ['cacheMaxEntries', { cacheMaxEntries: -1 }],
    ['processingErrorPolicy', { processingErrorPolicy: 'ignore' }],
    ['sasl.mechanism', { sasl: { mechanism: 'gssapi', username: 'u', password: 'p' } }],
    ['sasl.password', { sasl: { mechanism: 'plain', username: 'u', password: '' } }],
    ['advertisedUrl', { advertisedUrl: 'not a url' }],
    ['stateDir', { stateDir: undefined }],
  ])('names %s when it is invalid', (setting, patch) => {
    const err = configError({ ...valid, ...patch });
    expect(err.setting).toBe(setting);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message.startsWith(`${setting}: `)).toBe(true);
  });

  it('names an unknown key in the message', () => {
    const err = configError({ ...valid, comitIntervalMs: 10 });
    expect(err.message).toContain('comitIntervalMs');
  });

  it('names an unknown key in `setting`', () => {
    expect(configError({ ...valid, comitIntervalMs: 10 }).setting).toBe('comitIntervalMs');
  });

  it('names a non-object input as (root)', () => {
    expect(configError(undefined).setting).toBe('(root)');
  });
});

describe('kafkaSecurity', () => {
  it('maps ssl and sasl to kafkajs options', () => {
    expect(kafkaSecurity({})).toEqual({});
    expect(kafkaSecurity({ ssl: true })).toEqual({ ssl: true });
    expect(
      kafkaSecurity({
        ssl: { ca: 'CA', cert: 'C', key: 'K', rejectUnauthorized: false },
        sasl: { mechanism: 'plain', username: 'u', password: 'p' },
      }),
    ).toEqual({
      ssl: { ca: ['CA'], cert: 'C', key: 'K', rejectUnauthorized: false },
      sasl: { mechanism: 'plain', username: 'u', password: 'p' },
    });
  });
});

describe('processing guarantee', () => {
  it('defaults to at_least_once; exactly_once commits every 100 ms unless told, within the transaction timeout', () => {
    const base = { applicationId: 'a', brokers: ['b:1'], stateDir: '/tmp/x' };
    const alos = streamsConfig(base);
    expect(alos.processingGuarantee).toBe('at_least_once');
    expect(alos.commitIntervalMs).toBe(5000);
    const eos = streamsConfig({ ...base, processingGuarantee: 'exactly_once' });
    expect(eos.commitIntervalMs).toBe(100);
    expect(eos.transactionTimeoutMs).toBe(10_000);
    expect(
      streamsConfig({ ...base, processingGuarantee: 'exactly_once', commitIntervalMs: 250 }).commitIntervalMs,
    ).toBe(250);
    let err: unknown;
    try {
      streamsConfig({ ...base, processingGuarantee: 'exactly_once', commitIntervalMs: 20_000 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).setting).toBe('transactionTimeoutMs');
  });
});
