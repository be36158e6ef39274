/** The `um` command as a user runs it (a child process). */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };

function um(args: string[], env: Record<string, string> = {}) {
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(KAFKA_|SCHEMA_REGISTRY_|UM_)/.test(k)),
  ) as Record<string, string>;
  return spawnSync(process.execPath, ['bin/um.mjs', ...args], {
    encoding: 'utf8',
    env: { ...clean, ...env },
    timeout: 60_000,
  });
}

describe('um', () => {
  it('--version and -v print the version', () => {
    for (const flag of ['--version', '-v']) {
      const r = um([flag]);
      expect(r.status).toBe(0);
      expect(r.stdout.trim()).toBe(`unwanted-mail ${pkg.version} (node ${process.versions.node})`);
    }
  });

  it('config masks the credentials in SCHEMA_REGISTRY_URL and the API token', () => {
    const r = um(['config'], {
      KAFKA_BROKERS: 'k:9092',
      SCHEMA_REGISTRY_URL: 'http://alice:hunter22@registry:8080/apis/ccompat/v7',
      UM_HTTP_HOST: '0.0.0.0',
      UM_HTTP_AUTH_TOKEN: 'tok-0123456789abcdef',
    });
    expect(r.status).toBe(0);
    expect(r.stdout).not.toContain('hunter22');
    expect(r.stdout).not.toContain('alice');
    expect(r.stdout).not.toContain('tok-0123456789abcdef');
    const printed = JSON.parse(r.stdout) as { registry: { url: string }; http: { authToken: string } };
    expect(printed.registry.url).toBe('http://***:***@registry:8080/apis/ccompat/v7');
    expect(printed.http.authToken).toBe('***');
  });

  it('refuses to serve the API on every interface without a token: one line, exit 2', () => {
    const r = um(['run'], { KAFKA_BROKERS: 'k:9092', SCHEMA_REGISTRY_URL: 'http://r:1', UM_HTTP_HOST: '0.0.0.0' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^configuration error: UM_HTTP_AUTH_TOKEN: is required when the API listens on 0\.0\.0\.0/,
    );
  });
});
