// Checks docker-compose.yml (run by `npm run lint`):
// 1. security rules, always (no Docker needed): every published port is bound to 127.0.0.1 unless
//    the user sets UM_PUBLISH_HOST; no password, token or secret has a default (each is a
//    required `${VAR:?...}` read from .env); every service instance has an API token and a peer
//    list; .env.example names every variable the file reads; .env is git-ignored.
// 2. the file as Docker Compose reads it (`docker compose config -q`), where a Compose client exists.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

const PUBLISH_HOST = '${UM_PUBLISH_HOST:-127.0.0.1}';
const SECRET = /password|secret|token/i;

/** Variables of `.env` syntax text (NAME=value lines). */
export function envNames(text) {
  return new Set(
    text
      .split('\n')
      .map((l) => /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(l)?.[1])
      .filter(Boolean),
  );
}

/** The problems of a compose file, as messages (empty = fine). */
export function composeProblems(composeText, envExampleText, gitignoreText) {
  const problems = [];
  const doc = parse(composeText, { merge: true });
  const services = doc?.services ?? {};
  const envExample = envNames(envExampleText);
  for (const [name, svc] of Object.entries(services)) {
    for (const p of svc.ports ?? []) {
      const spec = typeof p === 'object' ? `${p.host_ip ?? ''}:${p.published}` : String(p);
      const hostIp =
        typeof p === 'object'
          ? p.host_ip
          : spec.startsWith(`${PUBLISH_HOST}:`)
            ? PUBLISH_HOST
            : spec.split(':').length >= 3
              ? spec.split(':')[0]
              : undefined;
      if (hostIp !== PUBLISH_HOST && hostIp !== '127.0.0.1')
        problems.push(`${name}: port ${spec} is published on every interface; bind it to ${PUBLISH_HOST}`);
    }
    const env = Array.isArray(svc.environment)
      ? Object.fromEntries(svc.environment.map((e) => e.split(/=(.*)/s).slice(0, 2)))
      : (svc.environment ?? {});
    for (const [k, v] of Object.entries(env)) {
      if (!SECRET.test(k)) continue;
      if (!/^\$\{[A-Z0-9_]+:\?[^}]*\}$/.test(String(v)))
        problems.push(`${name}: ${k} must come from .env as a required variable (\${VAR:?message}), not a default`);
    }
    if (String(svc.image ?? '').startsWith('grafana/') && !env.GF_SECURITY_ADMIN_PASSWORD)
      problems.push(`${name}: GF_SECURITY_ADMIN_PASSWORD is unset, so Grafana's admin password is the default one`);
    if (svc.image === 'unwanted-mail:local' || svc.build !== undefined) {
      if (!env.UM_HTTP_AUTH_TOKEN) problems.push(`${name}: the service needs UM_HTTP_AUTH_TOKEN`);
      if (!env.UM_PEER_URLS) problems.push(`${name}: the service needs UM_PEER_URLS (its peers for forwarded queries)`);
    }
  }
  for (const m of composeText.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g))
    if (!envExample.has(m[1])) problems.push(`.env.example does not name ${m[1]}, which docker-compose.yml reads`);
  if (!gitignoreText.split('\n').some((l) => l.trim() === '.env' || l.trim() === '/.env'))
    problems.push('.gitignore must list .env (it holds the secrets)');
  return [...new Set(problems)];
}

function main() {
  const read = (f) => readFileSync(fileURLToPath(new globalThis.URL(`../${f}`, import.meta.url)), 'utf8');
  const problems = composeProblems(read('docker-compose.yml'), read('.env.example'), read('.gitignore'));
  if (problems.length) {
    console.error(`docker-compose.yml:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    process.exit(1);
  }
  // the Compose client needs the required variables: placeholders, for the check only
  const env = { ...process.env };
  for (const n of envNames(read('.env.example')))
    env[n] ||= n.includes('HOST') ? '127.0.0.1' : 'check-placeholder-0123456789';
  const tries = [
    ['docker', ['compose', 'config', '-q']],
    ['docker-compose', ['config', '-q']],
  ];
  for (const [cmd, args] of tries) {
    const probe = spawnSync(cmd, [...args.slice(0, -2), 'version'], { encoding: 'utf8' });
    if (probe.status !== 0) continue;
    const r = spawnSync(cmd, args, { encoding: 'utf8', env });
    if (r.status !== 0) {
      console.error(`docker-compose.yml is not valid (${cmd} ${args.join(' ')}):\n${r.stderr}`);
      process.exit(1);
    }
    console.log(`docker-compose.yml is valid and follows the security rules (${cmd} ${args.join(' ')})`);
    return;
  }
  console.log(
    'docker-compose.yml follows the security rules (no Docker Compose client here: syntax not checked by Compose)',
  );
  if (process.env.CI) process.exit(1);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
