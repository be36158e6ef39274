/**
 * The docker-compose security rules that `npm run lint` enforces (scripts/check-compose.mjs), on
 * the real files and on bad variants of them.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { composeProblems, envNames } from '../../../scripts/check-compose.mjs';

const compose = readFileSync('docker-compose.yml', 'utf8');
const envExample = readFileSync('.env.example', 'utf8');
const gitignore = readFileSync('.gitignore', 'utf8');

describe('docker-compose.yml security rules', () => {
  it('the shipped files follow them', () => {
    expect(composeProblems(compose, envExample, gitignore)).toEqual([]);
    expect(envNames(envExample)).toEqual(
      new Set(['UM_HTTP_AUTH_TOKEN', 'GRAFANA_ADMIN_USER', 'GRAFANA_ADMIN_PASSWORD', 'UM_PUBLISH_HOST']),
    );
    // the secrets have no value in the example: Compose refuses to start until .env sets them
    expect(envExample).toMatch(/^UM_HTTP_AUTH_TOKEN=$/m);
    expect(envExample).toMatch(/^GRAFANA_ADMIN_PASSWORD=$/m);
  });

  it('finds a port published on every interface', () => {
    const bad = compose.replace("'${UM_PUBLISH_HOST:-127.0.0.1}:3000:3000'", "'3000:3000'");
    expect(bad).not.toBe(compose);
    expect(composeProblems(bad, envExample, gitignore)).toEqual([
      'grafana: port 3000:3000 is published on every interface; bind it to ${UM_PUBLISH_HOST:-127.0.0.1}',
    ]);
  });

  it('finds a default password, a missing Grafana password and a service without token (also through a merge key)', () => {
    const withDefault = compose.replace(
      /GF_SECURITY_ADMIN_PASSWORD: .*/,
      "GF_SECURITY_ADMIN_PASSWORD: '${GRAFANA_ADMIN_PASSWORD:-admin}'",
    );
    expect(composeProblems(withDefault, envExample, gitignore)).toEqual([
      'grafana: GF_SECURITY_ADMIN_PASSWORD must come from .env as a required variable (${VAR:?message}), not a default',
    ]);
    const without = compose.replace(/ +GF_SECURITY_ADMIN_PASSWORD: .*\n/, '');
    expect(composeProblems(without, envExample, gitignore)).toEqual([
      "grafana: GF_SECURITY_ADMIN_PASSWORD is unset, so Grafana's admin password is the default one",
    ]);
    const noToken = compose.replace(/ +UM_HTTP_AUTH_TOKEN: .*\n/, '');
    expect(composeProblems(noToken, envExample, gitignore)).toEqual([
      'um-1: the service needs UM_HTTP_AUTH_TOKEN',
      'um-2: the service needs UM_HTTP_AUTH_TOKEN',
    ]);
  });

  it('needs every variable in .env.example and .env git-ignored', () => {
    expect(composeProblems(compose, envExample.replace(/^UM_PUBLISH_HOST=.*$/m, ''), gitignore)).toEqual([
      '.env.example does not name UM_PUBLISH_HOST, which docker-compose.yml reads',
    ]);
    expect(composeProblems(compose, envExample, 'node_modules/\n')).toEqual([
      '.gitignore must list .env (it holds the secrets)',
    ]);
  });
});
