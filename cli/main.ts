/**
 * `um`: the front door.
 *
 *   um run                 the service, against KAFKA_BROKERS / SCHEMA_REGISTRY_URL
 *   um start               the service with an embedded local Kafka + registry and demo traffic
 *                          (or, when KAFKA_BROKERS is set, exactly `um run --create-topics`)
 *   um describe            the topology (text or Mermaid)
 *   um preferences <id>    a mailbox's preferences, from the table
 *   um topics create       create the topics of the spec
 *   um config              the effective configuration (secrets masked)
 *   um flags set|list|bucket   rollout flags (§6)
 *   um parity report       parity with the legacy system and the promotion gate
 *   um replay              re-decide a time window of mail-events
 */
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { MailMetrics } from '../processors/metrics.js';
import { ConfigError, StreamsError } from '../runtime/errors.js';
import { RuntimeMetrics } from '../runtime/metrics.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { unwantedMailTopology } from '../topology/unwanted-mail.js';
import { ensureTopics, kafkaFor, registryFor, startApp, type App } from './app.js';
import { loadConfig, redact, SETTINGS, type AppConfig } from './config.js';
import { createLogger } from './log.js';
import { localInstanceUrl, preferencesFromInstance, readPreferences } from './preferences.js';
import { buildFlag, formatBucket, formatFlags, listFlags, setFlag } from './flags.js';
import { formatReport, gateHolds, parityReportFromTopics } from './parity.js';
import { parseResume, replay, resumeArg } from './replay.js';
import { parseTime } from './topic-reader.js';

function logger(cfg: AppConfig): Logger {
  return createLogger(cfg);
}

/** Runs until SIGINT/SIGTERM, then closes cleanly (commit, state kept on disk). */
function untilSignal(close: () => Promise<void>, log: Logger): void {
  let closing = false;
  const stop = (signal: string): void => {
    if (closing) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    closing = true;
    log.info({ signal }, 'shutting down');
    close().then(
      () => process.exit(0),
      (e: unknown) => {
        log.error({ err: (e as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

/** The package version: package.json next to cli/ (sources) or one level up (dist/cli). */
function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'unwanted-mail' && pkg.version) return pkg.version;
    } catch {
      // not there: try the next
    }
  }
  return 'unknown';
}
const version = packageVersion();

const program = new Command()
  .name('um')
  .version(`unwanted-mail ${version} (node ${process.versions.node})`, '-v, --version', 'print the version')
  .description("unwanted-mail: decides where unwanted mail goes and learns each user's sender preferences")
  .addHelpText(
    'after',
    `\nConfiguration (environment variables, or a JSON file named by UM_CONFIG_FILE):\n${Object.entries(SETTINGS)
      .map(([k, v]) => `  ${k.padEnd(30)} ${v}`)
      .join('\n')}`,
  );

program
  .command('run')
  .description('run the service against KAFKA_BROKERS and SCHEMA_REGISTRY_URL')
  .option('--create-topics', 'create missing topics of the spec first', false)
  .action(async (opts: { createTopics: boolean }) => {
    const cfg = loadConfig();
    if (!cfg.brokers)
      throw new ConfigError('KAFKA_BROKERS', 'is required by `um run` (or use `um start` for a local Kafka)');
    const log = logger(cfg);
    const ref: { app?: App } = {};
    const app = await startApp(cfg, {
      logger: log,
      createTopics: opts.createTopics,
      // a fatal error stops the engine; exit so that a supervisor restarts the instance
      onStateChange: (to) => {
        const running = ref.app;
        if (to !== 'ERROR' || !running) return; // during start the error is thrown to us instead
        log.error(
          { err: String((running.streams.failure() as Error | undefined)?.message) },
          'stream engine failed: exiting',
        );
        void running.close().finally(() => process.exit(1));
      },
    });
    ref.app = app;
    untilSignal(() => app.close(), log);
  });

program
  .command('start')
  .description('the service with an embedded local Kafka and registry and demo traffic (when nothing is configured)')
  .option('--rate <n>', 'demo mail events per second', '500')
  .option('--no-demo', 'no demo traffic')
  .option(
    '--legacy-disagree <fraction>',
    'demo: share of mails the simulated legacy system decides differently',
    '0.01',
  )
  .option('--legacy-delay-ms <ms>', 'demo: event-time delay of the legacy decisions', '2000')
  .action(async (opts: { rate: string; demo: boolean; legacyDisagree: string; legacyDelayMs: string }) => {
    const legacyDisagree = Number(opts.legacyDisagree);
    if (!(legacyDisagree >= 0 && legacyDisagree <= 1))
      throw new ConfigError('--legacy-disagree', 'must be within 0..1');
    const legacyDelayMs = Number(opts.legacyDelayMs);
    if (!(legacyDelayMs >= 0)) throw new ConfigError('--legacy-delay-ms', 'must be >= 0');
    const { start } = await import('./start.js');
    await start({ rate: Number(opts.rate), demo: opts.demo, legacyDisagree, legacyDelayMs });
  });

program
  .command('describe')
  .description('print the topology')
  .addOption(new Option('--format <format>', 'text or mermaid').choices(['text', 'mermaid']).default('text'))
  .action((opts: { format: 'text' | 'mermaid' }) => {
    const cfg = loadConfig();
    const topics = topicNames(cfg.topicPrefix);
    // serdes are not contacted for a description; a placeholder registry URL is enough
    const serdes = mailSerdes(
      registryFor({ ...cfg, registry: { url: cfg.registry.url ?? 'http://localhost:0' } }),
      topics,
    );
    const topology = unwantedMailTopology({
      topics,
      serdes,
      metrics: new MailMetrics(new RuntimeMetrics('um_', undefined, { defaultMetrics: false }).registry),
    });
    console.log(opts.format === 'mermaid' ? topology.mermaid() : topology.describe());
  });

program
  .command('preferences')
  .description(
    "print a mailbox's preferences: from a running instance (--url, else the local one on UM_HTTP_PORT), else from the user-preferences topic",
  )
  .argument('<mailboxId>')
  .option('--url <url>', 'base URL of a running instance')
  .action(async (mailboxId: string, opts: { url?: string }) => {
    const cfg = loadConfig();
    const base = opts.url ?? localInstanceUrl(cfg);
    const r = await preferencesFromInstance(base, mailboxId, cfg.http.authToken);
    if (r) {
      if (r.status === 401)
        throw new ConfigError(
          'UM_HTTP_AUTH_TOKEN',
          `the instance at ${base} needs its API token: set UM_HTTP_AUTH_TOKEN`,
        );
      console.log(JSON.stringify(r.body, null, 2));
      process.exitCode = r.status === 200 ? 0 : 1;
      return;
    }
    if (opts.url) throw new StreamsError('UNREACHABLE', `no instance answers at ${opts.url}`);
    if (!cfg.brokers)
      throw new ConfigError(
        'KAFKA_BROKERS',
        `no instance answers at ${base} and KAFKA_BROKERS is not set: start one (npm start), pass --url, or set KAFKA_BROKERS to read the user-preferences topic`,
      );
    const prefs = await readPreferences(cfg, mailboxId);
    if (!prefs) {
      console.error(`no preferences for this mailbox`);
      process.exitCode = 1;
      return;
    }
    console.log(JSON.stringify(prefs, null, 2));
  });

program
  .command('topics')
  .description('topic administration')
  .command('create')
  .description('create the missing topics of the spec (UM_PARTITIONS partitions, compacted tables)')
  .action(async () => {
    const cfg = loadConfig();
    const created = await ensureTopics(kafkaFor(cfg, 'um-cli'), cfg);
    console.log(created.length ? `created: ${created.join(', ')}` : 'all topics exist');
  });

const flags = program
  .command('flags')
  .description('rollout flags: OFF, SHADOW or LIVE per tenant, or globally (scope *)');
flags
  .command('set')
  .description('set the flag of a scope ("*" = global cap, else a tenantId)')
  .argument('<scope>')
  .argument('<mode>', 'OFF | SHADOW | LIVE')
  .option('--percent <n>', 'in LIVE, the share of mailboxes (by bucket) that are LIVE, 0..100 (default 100)')
  .requiredOption('--reason <text>', 'why (kept in the flag record and logged)')
  .option('--by <who>', 'who sets it (default user@host)')
  .action(async (scope: string, mode: string, opts: { percent?: string; reason: string; by?: string }) => {
    const flag = buildFlag({
      scope,
      mode,
      percent: opts.percent,
      reason: opts.reason,
      ...(opts.by ? { by: opts.by } : {}),
    });
    const cfg = loadConfig();
    await setFlag(cfg, flag);
    console.log(
      `flag ${flag.scope} set to ${flag.mode}${flag.mode === 'LIVE' ? ` ${flag.livePercent}%` : ''} (${flag.reason})`,
    );
  });
flags
  .command('list')
  .description('the flags in force (the newest well-formed record per scope)')
  .option('--json', 'JSON output', false)
  .action(async (opts: { json: boolean }) => {
    const cfg = loadConfig();
    const list = await listFlags(cfg);
    console.log(opts.json ? JSON.stringify(list, null, 2) : formatFlags(list, cfg.defaultMode));
  });
flags
  .command('bucket')
  .description("a mailbox's rollout bucket: murmur3_x86_32(tenantId:mailboxId, seed 0) % 100")
  .argument('<tenantId>')
  .argument('<mailboxId>')
  .action((tenantId: string, mailboxId: string) => {
    console.log(formatBucket(tenantId, mailboxId));
  });

program
  .command('parity')
  .description('parity with the legacy system')
  .command('report')
  .description('per tenant: pairs, match rate, mismatches by class, top mismatches, and the promotion gate')
  .option('--tenant <tenantId>', 'one tenant only')
  .option('--since <time>', 'ISO time, epoch ms, or an age like 24h, 90m, 7d', '24h')
  .option('--gate', 'exit 1 when the gate does not hold (for the named tenant, else for any tenant)', false)
  .option('--min-rate <r>', 'gate: minimum match rate, 0..1', '0.995')
  .option('--min-pairs <n>', 'gate: minimum pairs', '10000')
  .option('--hours <n>', 'gate: the last N hourly windows must each meet the rate', '3')
  .option('--json', 'JSON output', false)
  .action(
    async (opts: {
      tenant?: string;
      since: string;
      gate: boolean;
      minRate: string;
      minPairs: string;
      hours: string;
      json: boolean;
    }) => {
      const cfg = loadConfig();
      const gate = { minRate: Number(opts.minRate), minPairs: Number(opts.minPairs), hours: Number(opts.hours) };
      if (!(gate.minRate >= 0 && gate.minRate <= 1)) throw new ConfigError('--min-rate', 'must be within 0..1');
      if (!Number.isInteger(gate.minPairs) || gate.minPairs < 0)
        throw new ConfigError('--min-pairs', 'must be an integer >= 0');
      if (!Number.isInteger(gate.hours) || gate.hours < 0) throw new ConfigError('--hours', 'must be an integer >= 0');
      const r = await parityReportFromTopics(cfg, {
        sinceMs: parseTime(opts.since),
        gate,
        ...(opts.tenant ? { tenant: opts.tenant } : {}),
      });
      console.log(opts.json ? JSON.stringify(r, null, 2) : formatReport(r.tenants, gate));
      if (r.unreadable) console.error(`${r.unreadable} records could not be read and were left out`);
      if (opts.gate && !gateHolds(r.tenants, opts.tenant)) process.exitCode = 1;
    },
  );

program
  .command('replay')
  .description(
    're-decide the mail-events of [from, to) in a consumer group of its own, with the preferences as they are now',
  )
  .requiredOption('--from <time>', 'start (inclusive): ISO time, epoch ms, or an age like 2h')
  .requiredOption('--to <time>', 'end (exclusive): ISO time, epoch ms, or an age like 1h')
  .option('--tenant <tenantId>', 'one tenant only')
  .option('--partitions <list>', 'only these partitions, e.g. 0,3')
  .option('--output <topic>', 'output topic (default <prefix>mail-decisions-replay)')
  .option('--live', 'write to the live topics (LIVE → mail-decisions, SHADOW → shadow), marked with a header', false)
  .option('--dry-run', 'print the offset plan and the record count only', false)
  .option('--id <id>', 'replay id (header um.replay.id)')
  .option('--resume <offsets>', 'partition:offset list printed by a stopped replay')
  .action(
    async (opts: {
      from: string;
      to: string;
      tenant?: string;
      partitions?: string;
      output?: string;
      live: boolean;
      dryRun: boolean;
      id?: string;
      resume?: string;
    }) => {
      const cfg = loadConfig();
      if (opts.live && opts.output) throw new ConfigError('--output', 'cannot be combined with --live');
      const partitions = opts.partitions?.split(',').map((p) => {
        if (!/^\d+$/.test(p.trim())) throw new ConfigError('--partitions', `"${p}" is not a partition number`);
        return Number(p);
      });
      const fromMs = parseTime(opts.from);
      const toMs = parseTime(opts.to);
      if (!(fromMs < toMs)) throw new ConfigError('--from', 'must be before --to');
      const ac = new AbortController();
      const onSigint = (): void => ac.abort(new Error('interrupted'));
      process.once('SIGINT', onSigint);
      const s = await replay(
        cfg,
        {
          fromMs,
          toMs,
          live: opts.live,
          dryRun: opts.dryRun,
          signal: ac.signal,
          ...(opts.tenant ? { tenant: opts.tenant } : {}),
          ...(partitions ? { partitions } : {}),
          ...(opts.output ? { output: opts.output } : {}),
          ...(opts.id ? { id: opts.id } : {}),
          ...(opts.resume ? { resume: parseResume(opts.resume) } : {}),
        },
        {
          out: (l) => (process.stdout.isTTY && l.startsWith('\r') ? process.stdout.write(l) : console.log(l)),
          tty: process.stdout.isTTY,
        },
      );
      process.off('SIGINT', onSigint);
      if (opts.dryRun) return;
      console.log(
        `replay ${s.id}: read ${s.read}, wrote ${s.written} (${
          Object.entries(s.byTopic)
            .map(([t, n]) => `${t}: ${n}`)
            .join(', ') || 'nothing'
        }); skipped ${JSON.stringify(s.skipped)}`,
      );
      if (s.stopped) {
        const args = process.argv
          .slice(2)
          .filter(
            (a, i, all) =>
              a !== '--resume' && all[i - 1] !== '--resume' && !a.startsWith('--id') && all[i - 1] !== '--id',
          );
        console.log(`stopped. To resume: um ${args.join(' ')} --id ${s.id} --resume ${resumeArg(s)}`);
        process.exitCode = 130;
      }
    },
  );

program
  .command('reset')
  .description(
    'start the application over (all instances stopped): input offsets to earliest, latest or a time, internal topics deleted, local state wiped',
  )
  .option('--to <target>', 'earliest | latest | an ISO-8601 time | epoch milliseconds', 'earliest')
  .option('--dry-run', 'print what would be done and change nothing', false)
  .action(async (opts: { to: string; dryRun: boolean }) => {
    const { parseResetTarget, runReset } = await import('./reset.js');
    const target = parseResetTarget(opts.to);
    const cfg = loadConfig();
    const topology = unwantedMailTopology({
      topics: topicNames(cfg.topicPrefix),
      serdes: mailSerdes(registryFor({ ...cfg, registry: { url: 'http://localhost:0' } }), topicNames(cfg.topicPrefix)),
    });
    console.log(
      await runReset(kafkaFor(cfg, 'um-reset'), {
        applicationId: cfg.applicationId,
        stateDir: cfg.stateDir,
        topology,
        target,
        dryRun: opts.dryRun,
      }),
    );
  });

const dlq = program.command('dlq').description('dead letters (the <UM_APP_ID>-dlq topic)');
dlq
  .command('list')
  .description('one line per dead letter: id (partition:offset), time, error code, source, key hash, message')
  .option('--code <code>', 'only this error code')
  .action(async (opts: { code?: string }) => {
    const { listDeadLetters, deadLetterLine } = await import('./inspect.js');
    const cfg = loadConfig();
    const letters = await listDeadLetters(kafkaFor(cfg, 'um-cli'), `${cfg.applicationId}-dlq`, opts.code);
    for (const d of letters) console.log(deadLetterLine(d));
    console.error(`${letters.length} dead letter(s)`);
  });
dlq
  .command('show')
  .description('dead letters in full: headers decoded, the value decoded when its schema is known')
  .argument('<ids...>', 'partition:offset, as listed')
  .action(async (ids: string[]) => {
    const { listDeadLetters, parseDeadLetterIds, topicDecoder } = await import('./inspect.js');
    const cfg = loadConfig();
    const wanted = parseDeadLetterIds(ids);
    const letters = (await listDeadLetters(kafkaFor(cfg, 'um-cli'), `${cfg.applicationId}-dlq`)).filter((d) =>
      wanted.some((w) => w.partition === d.partition && w.offset === d.offset),
    );
    for (const d of letters) {
      const value = d.source ? await topicDecoder(cfg, d.source.topic)(d.value) : d.value?.toString('base64');
      console.log(
        JSON.stringify(
          {
            id: `${d.partition}:${d.offset}`,
            timestamp: d.timestamp,
            source: d.source,
            error: d.error,
            headers: d.headers,
            key: d.key?.toString('utf8') ?? null,
            value,
          },
          null,
          2,
        ),
      );
    }
    if (letters.length < wanted.length) {
      console.error(`${wanted.length - letters.length} id(s) not found`);
      process.exitCode = 1;
    }
  });
dlq
  .command('replay')
  .description('send dead letters back to their source topic (after fixing the cause), by id or by --code / --all')
  .argument('[ids...]', 'partition:offset, as listed')
  .option('--code <code>', 'every dead letter with this error code')
  .option('--all', 'every dead letter', false)
  .option('--dry-run', 'list what would be replayed', false)
  .action(async (ids: string[], opts: { code?: string; all: boolean; dryRun: boolean }) => {
    const { listDeadLetters, parseDeadLetterIds, replayDeadLetters, deadLetterLine } = await import('./inspect.js');
    if (!ids.length && !opts.code && !opts.all)
      throw new StreamsError('NOTHING_CHOSEN', 'name dead letters (partition:offset), or use --code CODE or --all');
    const cfg = loadConfig();
    const kafka = kafkaFor(cfg, 'um-cli');
    const dlqTopic = `${cfg.applicationId}-dlq`;
    const wanted = parseDeadLetterIds(ids);
    const letters = (await listDeadLetters(kafka, dlqTopic, opts.code)).filter(
      (d) => opts.all || opts.code || wanted.some((w) => w.partition === d.partition && w.offset === d.offset),
    );
    for (const d of letters) console.log(deadLetterLine(d));
    if (opts.dryRun) {
      console.error(`dry run: ${letters.length} dead letter(s) would be replayed`);
      return;
    }
    console.error(`replayed ${await replayDeadLetters(kafka, letters, dlqTopic)} dead letter(s)`);
  });

program
  .command('tail')
  .description('print the records of a topic as JSON lines (Avro decoded), from its end, until Ctrl-C')
  .argument('<topic>', 'a topic name (the UM_TOPIC_PREFIX may be left out)')
  .option('--key <key>', 'only this key (e.g. a mailbox id)')
  .option('--from-beginning', 'from the start of the topic', false)
  .option('--limit <n>', 'stop after n records')
  .action(async (topic: string, opts: { key?: string; fromBeginning: boolean; limit?: string }) => {
    const { tail } = await import('./inspect.js');
    const cfg = loadConfig();
    const known = Object.values(topicNames(cfg.topicPrefix));
    const name = known.includes(topic) || !known.includes(cfg.topicPrefix + topic) ? topic : cfg.topicPrefix + topic;
    const ac = new AbortController();
    process.once('SIGINT', () => ac.abort());
    process.once('SIGTERM', () => ac.abort());
    await tail(kafkaFor(cfg, 'um-cli'), cfg, name, {
      ...(opts.key !== undefined ? { key: opts.key } : {}),
      fromBeginning: opts.fromBeginning,
      ...(opts.limit !== undefined ? { limit: Number(opts.limit) } : {}),
      signal: ac.signal,
    });
  });

program
  .command('config')
  .description('print the effective configuration (secrets masked)')
  .action(() => {
    console.log(JSON.stringify(redact(loadConfig()), null, 2));
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof ConfigError) {
    console.error(`configuration error: ${e.message}`);
    process.exit(2);
  }
  if (e instanceof StreamsError) {
    console.error(`error ${e.code}: ${e.message}`);
    process.exit(1);
  }
  // client errors (an unreachable broker, a refused login...): one clear line, the stack on request
  const err = e as Error & { name?: string };
  console.error(`error: ${err.name ?? 'Error'}: ${err.message}`);
  if (process.env.UM_LOG_LEVEL === 'debug' || process.env.UM_LOG_LEVEL === 'trace') console.error(err.stack);
  process.exit(1);
}
