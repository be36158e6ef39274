// Validates docker-compose.yml with the Docker Compose client (`docker compose config -q`, or the
// standalone `docker-compose`). No Docker engine is needed for this check.
import { spawnSync } from 'node:child_process';

const tries = [
  ['docker', ['compose', 'config', '-q']],
  ['docker-compose', ['config', '-q']],
];
for (const [cmd, args] of tries) {
  const probe = spawnSync(cmd, [...args.slice(0, -2), 'version'], { encoding: 'utf8' });
  if (probe.status !== 0) continue;
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`docker-compose.yml is not valid (${cmd} ${args.join(' ')}):\n${r.stderr}`);
    process.exit(1);
  }
  console.log(`docker-compose.yml is valid (${cmd} ${args.join(' ')})`);
  process.exit(0);
}
console.error('no Docker Compose client found (docker compose or docker-compose); docker-compose.yml not checked');
process.exit(process.env.CI ? 1 : 0);
