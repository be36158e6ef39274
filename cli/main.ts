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
import pino, { type Logger } from 'pino';
import { MailMetrics } from '../processors/metrics.js';
import { ConfigError, StreamsError } from '../runtime/errors.js';
import { RuntimeMetrics } from '../runtime/metrics.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { unwantedMailTopology } from '../topology/unwanted-mail.js';
import { ensureTopics, kafkaFor, registryFor, startApp, type App } from './app.js';
import { loadConfig, redact, SETTINGS, type AppConfig } from './config.js';
import { buildFlag, formatBucket, formatFlags, listFlags, setFlag } from './flags.js';
import { formatReport, gateHolds, parityReportFromTopics } from './parity.js';
import { readPreferences } from './preferences.js';
import { parseResume, replay, resumeArg } from './replay.js';
import { parseTime } from './topic-reader.js';

function logger(cfg: AppConfig): Logger {
  return pino({ level: cfg.logLevel, base: { instance: cfg.instanceId } });
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

const program = new Command()
  .name('um')
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
    "print a mailbox's preferences (from a running instance with --url, else from the user-preferences topic)",
  )
  .argument('<mailboxId>')
  .option('--url <url>', 'base URL of a running instance')
  .action(async (mailboxId: string, opts: { url?: string }) => {
    if (opts.url) {
      const r = await fetch(`${opts.url.replace(/\/$/, '')}/v1/preferences/${encodeURIComponent(mailboxId)}`);
      console.log(JSON.stringify(await r.json(), null, 2));
      process.exitCode = r.ok ? 0 : 1;
      return;
    }
    const cfg = loadConfig();
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
