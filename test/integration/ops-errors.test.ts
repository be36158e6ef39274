/**
 * Start-up errors a user can act on, against the real registry and broker: one line naming the
 * setting and the fix, within seconds, from `um run` itself.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../cli/config.js';
import { checkRegistry, preflight } from '../../cli/preflight.js';
import { ConfigError } from '../../runtime/errors.js';
import { freePort } from '../../scripts/kafka/local.js';
import { brokers, registryUrl } from './helpers.js';

function um(args: string[], env: Record<string, string>) {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(KAFKA_|SCHEMA_REGISTRY_|UM_)/.test(k)),
  ) as Record<string, string>;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['bin/um.mjs', ...args], {
    encoding: 'utf8',
    env: { ...clean, ...env },
    timeout: 60_000,
  });
  return { ...r, ms: Date.now() - t0 };
}

describe('start-up errors on the real broker and registry', () => {
  it('the real registry without /apis/ccompat/v7: HTTP 404, named, with the suffix to add', async () => {
    const base = registryUrl().replace(/\/apis\/ccompat\/v7\/?$/, '');
    expect(base).not.toBe(registryUrl());
    const cfg = loadConfig({ KAFKA_BROKERS: brokers().join(','), SCHEMA_REGISTRY_URL: base });
    const e = await checkRegistry(cfg).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).setting).toBe('SCHEMA_REGISTRY_URL');
    expect((e as Error).message).toContain('HTTP 404');
    expect((e as Error).message).toContain('/apis/ccompat/v7');
    // and the right URL passes, with the broker
    await preflight(loadConfig({ KAFKA_BROKERS: brokers().join(','), SCHEMA_REGISTRY_URL: registryUrl() }));
  });

  it('`um run`: one line on stderr naming the setting, exit 2, within seconds', async () => {
    const wrongRegistry = um(['run'], {
      KAFKA_BROKERS: brokers().join(','),
      SCHEMA_REGISTRY_URL: registryUrl().replace(/\/apis\/ccompat\/v7\/?$/, ''),
    });
    expect(wrongRegistry.status).toBe(2);
    expect(wrongRegistry.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrongRegistry.stderr).toMatch(/^configuration error: SCHEMA_REGISTRY_URL: .*HTTP 404/);
    expect(wrongRegistry.stdout).toBe('');

    const port = await freePort();
    const wrongBrokers = um(['run'], { KAFKA_BROKERS: `127.0.0.1:${port}`, SCHEMA_REGISTRY_URL: registryUrl() });
    expect(wrongBrokers.status).toBe(2);
    expect(wrongBrokers.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrongBrokers.stderr).toMatch(
      new RegExp(`^configuration error: KAFKA_BROKERS: cannot reach Kafka at 127\\.0\\.0\\.1:${port} `),
    );
    // tsx start-up included; the check itself gives up within 8 s
    expect(wrongBrokers.ms).toBeLessThan(20_000);

    const registryDown = um(['run'], {
      KAFKA_BROKERS: brokers().join(','),
      SCHEMA_REGISTRY_URL: `http://127.0.0.1:${await freePort()}/apis/ccompat/v7`,
    });
    expect(registryDown.status).toBe(2);
    expect(registryDown.stderr).toMatch(/^configuration error: SCHEMA_REGISTRY_URL: cannot reach the schema registry/);
  });
});
