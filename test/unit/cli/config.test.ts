import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isLoopback, loadConfig, maskUrlCredentials, redact } from '../../../cli/config.js';
import { ConfigError } from '../../../runtime/errors.js';

const dirs: string[] = [];
const tempDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'um-cfg-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const base = { KAFKA_BROKERS: 'k1:9092,k2:9093', SCHEMA_REGISTRY_URL: 'http://r:8080/apis/ccompat/v7' };

function refused(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('service configuration', () => {
  it('reads the environment with documented defaults, frozen', () => {
    const c = loadConfig({ ...base, UM_HTTP_PORT: '0' });
    expect(c.brokers).toEqual(['k1:9092', 'k2:9093']);
    expect(c.registry.url).toBe('http://r:8080/apis/ccompat/v7');
    expect(c.applicationId).toBe('unwanted-mail');
    expect(c.topicPrefix).toBe('');
    expect(c.partitions).toBe(6);
    expect(c.commitIntervalMs).toBe(1000);
    expect(c.defaultMode).toBe('SHADOW');
    expect(c.http).toEqual({ host: '127.0.0.1', port: 0, peers: [] });
    expect(c.offsetReset).toBe('earliest');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.brokers)).toBe(true);
    expect(() => ((c as { applicationId: string }).applicationId = 'x')).toThrow();
  });

  it('reads the memory settings as bytes (plain or with KiB/MiB/GiB), with defaults', () => {
    const d = loadConfig({});
    expect(d.preferenceCacheBytes).toBe(64 * 1024 ** 2);
    expect(d.preferenceCacheEntries).toBeUndefined();
    expect(d.rocksdb).toEqual({ cacheBytes: 32 * 1024 ** 2, writeBufferBytes: 48 * 1024 ** 2 });
    const c = loadConfig({
      UM_PREFERENCE_CACHE_BYTES: '1048576',
      UM_PREFERENCE_CACHE_ENTRIES: '500',
      UM_ROCKSDB_CACHE_BYTES: '0',
      UM_ROCKSDB_WRITE_BUFFER_BYTES: '2GiB',
    });
    expect(c.preferenceCacheBytes).toBe(1024 ** 2);
    expect(c.preferenceCacheEntries).toBe(500);
    expect(c.rocksdb).toEqual({ cacheBytes: 0, writeBufferBytes: 2 * 1024 ** 3 });
    expect(loadConfig({ UM_ROCKSDB_CACHE_BYTES: '16 KiB' }).rocksdb.cacheBytes).toBe(16 * 1024);
  });

  it('reads the metrics recording level (INFO by default, as Kafka Streams), refusing others by name', () => {
    expect(loadConfig(base).metricsRecordingLevel).toBe('INFO');
    expect(loadConfig({ ...base, UM_METRICS_RECORDING_LEVEL: 'DEBUG' }).metricsRecordingLevel).toBe('DEBUG');
    expect(refused({ ...base, UM_METRICS_RECORDING_LEVEL: 'TRACE' }).setting).toBe('UM_METRICS_RECORDING_LEVEL');
  });

  it('runs with nothing configured (the embedded default of `um start`)', () => {
    const c = loadConfig({});
    expect(c.brokers).toBeUndefined();
    expect(c.registry.url).toBeUndefined();
  });

  it.each([
    [{ UM_HTTP_PORT: 'eighty' }, 'UM_HTTP_PORT', /integer/],
    [{ UM_HTTP_PORT: '70000' }, 'UM_HTTP_PORT', /65535/],
    [{ KAFKA_BROKERS: 'nohostport' }, 'KAFKA_BROKERS', /host:port/],
    [{ UM_APP_ID: 'bad id!' }, 'UM_APP_ID', /letters/],
    [{ UM_LOG_LEVEL: 'loud' }, 'UM_LOG_LEVEL', /Invalid enum/],
    [{ UM_DEFAULT_MODE: 'ON' }, 'UM_DEFAULT_MODE', /Invalid enum/],
    [{ KAFKA_BROKERS: 'k:1' }, 'SCHEMA_REGISTRY_URL', /required/],
    [{ ...base, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u' }, 'KAFKA_SASL_PASSWORD', /together/],
    [{ ...base, SCHEMA_REGISTRY_USERNAME: 'u' }, 'SCHEMA_REGISTRY_PASSWORD', /both/],
    [{ ...base, KAFKA_SSL_CA_FILE: '/nonexistent/ca.pem' }, 'KAFKA_SSL_CA_FILE', /cannot read/],
    [
      { ...base, UM_PROCESSING_GUARANTEE: 'exactly_once', UM_COMMIT_INTERVAL_MS: '15000' },
      'UM_TRANSACTION_TIMEOUT_MS',
      /longer than UM_COMMIT_INTERVAL_MS/,
    ],
    [{ UM_PREFERENCE_CACHE_BYTES: '64MB' }, 'UM_PREFERENCE_CACHE_BYTES', /KiB, MiB or GiB/],
    [{ UM_PREFERENCE_CACHE_BYTES: '-1' }, 'UM_PREFERENCE_CACHE_BYTES', /number of bytes/],
    [{ UM_ROCKSDB_CACHE_BYTES: '100GiB' }, 'UM_ROCKSDB_CACHE_BYTES', /at most/],
    [{ UM_ROCKSDB_WRITE_BUFFER_BYTES: '512KiB' }, 'UM_ROCKSDB_WRITE_BUFFER_BYTES', /at least 1048576 bytes/],
  ])('refuses %j naming %s', (env, setting, message) => {
    const e = refused(env as Record<string, string>);
    expect(e.setting).toBe(setting);
    expect(e.message).toContain(setting);
    expect(e.message).toMatch(message);
  });

  it('builds SASL and TLS settings, and masks secrets when printed', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'ca.pem'), 'CA-PEM');
    const c = loadConfig({
      ...base,
      KAFKA_SASL_MECHANISM: 'scram-sha-512',
      KAFKA_SASL_USERNAME: 'svc',
      KAFKA_SASL_PASSWORD: 's3cret',
      KAFKA_SSL_CA_FILE: join(dir, 'ca.pem'),
      SCHEMA_REGISTRY_USERNAME: 'reg',
      SCHEMA_REGISTRY_PASSWORD: 'regpass',
    });
    expect(c.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'svc', password: 's3cret' });
    expect(c.ssl).toEqual({ ca: 'CA-PEM', rejectUnauthorized: true });
    const printed = JSON.stringify(redact(c));
    expect(printed).not.toContain('s3cret');
    expect(printed).not.toContain('regpass');
    expect(printed).toContain('svc');
    expect(loadConfig({ ...base, KAFKA_SSL: 'true' }).ssl).toBe(true);
  });

  it('reads a JSON file named by UM_CONFIG_FILE; the environment wins; unknown keys are refused', () => {
    const dir = tempDir();
    const file = join(dir, 'um.json');
    writeFileSync(file, JSON.stringify({ ...base, UM_APP_ID: 'from-file', UM_PARTITIONS: 12 }));
    const c = loadConfig({ UM_CONFIG_FILE: file, UM_APP_ID: 'from-env' });
    expect(c.applicationId).toBe('from-env');
    expect(c.partitions).toBe(12);
    writeFileSync(file, JSON.stringify({ UM_PARTITIONZ: 3 }));
    expect(refused({ UM_CONFIG_FILE: file }).setting).toBe('UM_PARTITIONZ');
    writeFileSync(file, '{nope');
    expect(refused({ UM_CONFIG_FILE: file }).setting).toBe('UM_CONFIG_FILE');
  });
});

describe('HTTP security settings', () => {
  const TOKEN = 'abcdefghijklmnopqrstuvwx';

  it('refuses a non-loopback bind address without a token, naming UM_HTTP_AUTH_TOKEN and the ways out', () => {
    const e = refused({ ...base, UM_HTTP_HOST: '0.0.0.0' });
    expect(e.setting).toBe('UM_HTTP_AUTH_TOKEN');
    expect(e.message).toMatch(/UM_HTTP_HOST=127\.0\.0\.1/);
    expect(e.message).toMatch(/UM_HTTP_AUTH=none/);
    expect(refused({ ...base, UM_HTTP_HOST: '10.1.2.3' }).setting).toBe('UM_HTTP_AUTH_TOKEN');
  });

  it('accepts loopback without a token, a token anywhere, and UM_HTTP_AUTH=none explicitly', () => {
    expect(loadConfig({ ...base, UM_HTTP_HOST: 'localhost' }).http.authToken).toBeUndefined();
    const c = loadConfig({ ...base, UM_HTTP_HOST: '0.0.0.0', UM_HTTP_AUTH_TOKEN: TOKEN });
    expect(c.http.authToken).toBe(TOKEN);
    expect(loadConfig({ ...base, UM_HTTP_HOST: '0.0.0.0', UM_HTTP_AUTH: 'none' }).http.authToken).toBeUndefined();
    expect(refused({ ...base, UM_HTTP_AUTH: 'none', UM_HTTP_AUTH_TOKEN: TOKEN }).setting).toBe('UM_HTTP_AUTH');
    expect(refused({ ...base, UM_HTTP_AUTH_TOKEN: 'short' }).setting).toBe('UM_HTTP_AUTH_TOKEN');
  });

  it('reads UM_PEER_URLS as a list of http(s) base URLs', () => {
    const c = loadConfig({ ...base, UM_PEER_URLS: 'http://um-1:8080, https://um-2:8443/' });
    expect(c.http.peers).toEqual(['http://um-1:8080', 'https://um-2:8443/']);
    expect(refused({ ...base, UM_PEER_URLS: 'http://um-1:8080,ftp://x' }).setting).toBe('UM_PEER_URLS');
    expect(refused({ ...base, UM_PEER_URLS: 'http://u:p@um-1:8080' }).setting).toBe('UM_PEER_URLS');
  });

  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'um-1', '128.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('masks the token and credentials embedded in URLs (um config)', () => {
    const c = loadConfig({
      ...base,
      SCHEMA_REGISTRY_URL: 'https://reguser:regs3cret@registry.example:8081/apis/ccompat/v7',
      UM_HTTP_HOST: '0.0.0.0',
      UM_HTTP_AUTH_TOKEN: TOKEN,
    });
    const printed = JSON.stringify(redact(c));
    expect(printed).not.toContain('regs3cret');
    expect(printed).not.toContain('reguser');
    expect(printed).not.toContain(TOKEN);
    expect(printed).toContain('https://***:***@registry.example:8081/apis/ccompat/v7');
    expect(maskUrlCredentials('http://u@h:1/p')).toBe('http://***@h:1/p');
    expect(maskUrlCredentials('http://h:1/p')).toBe('http://h:1/p');
  });
});
