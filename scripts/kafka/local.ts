/**
 * A real Apache Kafka (KRaft) broker and a real Confluent-API schema registry (Apicurio Registry),
 * resolved from Maven Central and run with the machine's Java, on loopback.
 *
 * Used by the vitest global set-up, by `um start` when no cluster is configured, and by the
 * benchmarks. Everything is cached outside the repository's tracked files
 * (`$UM_CACHE_DIR`, default `$XDG_CACHE_HOME/unwanted-mail` or `~/.cache/unwanted-mail`).
 *
 *   installKafka()            mvn dependency:copy-dependencies on scripts/kafka/pom.xml
 *   installRegistry()         mvn dependency:copy io.apicurio:apicurio-registry-app:<v>:tar.gz:all
 *   startKafka({ nodes })     format + start 1 or 3 combined broker/controller nodes (static voters)
 *   startRegistry()           start Apicurio with BACKWARD global compatibility
 *
 * Readiness is checked with a metadata request (broker) or an HTTP call (registry), never by
 * sleeping. Every process started is tracked by pid and stopped by `stop()`; a process exit handler
 * kills whatever is still running so no Java process outlives its parent.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  rmSync,
  renameSync,
  openSync,
  closeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';

export const KAFKA_VERSION = '4.1.2';
/** Apicurio 3.x needs Java 21+. Where only Java 17 exists, 2.6.x (same ccompat v7 API) is used. */
export const REGISTRY_VERSION = '3.3.3';
export const REGISTRY_FALLBACK_VERSION = '2.6.13.Final';

const here = dirname(fileURLToPath(import.meta.url));

export function cacheDir(): string {
  const explicit = process.env.UM_CACHE_DIR;
  if (explicit) return explicit;
  const xdg = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(xdg, 'unwanted-mail');
}

function log(msg: string): void {
  if (process.env.UM_LOCAL_QUIET !== '1') process.stderr.write(`[local-kafka] ${msg}\n`);
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): void {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd} could not be run: ${r.error.message}`);
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} failed with exit code ${r.status}:\n${out}`);
  }
}

/** Simple inter-process lock so that two processes do not install into the cache at once. */
async function withLock<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  const dir = cacheDir();
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, `${name}.lock`);
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`timed out waiting for install lock ${lock}; remove it if stale`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Resolves the Kafka broker jars into the cache (once) and returns the directory of jars. */
export async function installKafka(): Promise<string> {
  const target = join(cacheDir(), `kafka-${KAFKA_VERSION}`);
  if (existsSync(join(target, '.complete'))) return target;
  return withLock('kafka', () => {
    if (existsSync(join(target, '.complete'))) return target;
    const started = Date.now();
    log(`resolving org.apache.kafka:kafka_2.13:${KAFKA_VERSION} from Maven Central into ${target}`);
    const tmp = `${target}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    run('mvn', [
      '-q',
      '-B',
      '-f',
      join(here, 'pom.xml'),
      `-Dkafka.version=${KAFKA_VERSION}`,
      'dependency:copy-dependencies',
      `-DoutputDirectory=${join(tmp, 'libs')}`,
      '-DincludeScope=runtime',
    ]);
    writeFileSync(join(tmp, '.complete'), new Date().toISOString());
    rmSync(target, { recursive: true, force: true });
    renameSync(tmp, target);
    log(`kafka installed in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return target;
  });
}

interface JavaInfo {
  bin: string;
  major: number;
}

function javaMajor(bin: string): number | undefined {
  const r = spawnSync(bin, ['-version'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const m = /version "(\d+)(?:\.(\d+))?/.exec(`${r.stderr}${r.stdout}`);
  if (!m) return undefined;
  const first = Number(m[1]);
  return first === 1 ? Number(m[2]) : first;
}

/** All Java runtimes we can find: UM_JAVA, JAVA_HOME, PATH, /usr/lib/jvm/*. */
export function findJavas(): JavaInfo[] {
  const candidates: string[] = [];
  if (process.env.UM_JAVA) candidates.push(process.env.UM_JAVA);
  if (process.env.JAVA_HOME) candidates.push(join(process.env.JAVA_HOME, 'bin', 'java'));
  candidates.push('java');
  for (const root of ['/usr/lib/jvm', '/usr/local/lib/jvm', '/opt/java']) {
    if (!existsSync(root)) continue;
    for (const d of readdirSync(root)) candidates.push(join(root, d, 'bin', 'java'));
  }
  const seen = new Set<string>();
  const out: JavaInfo[] = [];
  for (const bin of candidates) {
    if (seen.has(bin)) continue;
    seen.add(bin);
    if (bin !== 'java' && !existsSync(bin)) continue;
    const major = javaMajor(bin);
    if (major !== undefined) out.push({ bin, major });
  }
  return out;
}

function kafkaJava(): string {
  const javas = findJavas().filter((j) => j.major >= 17);
  const first = javas[0];
  if (!first) throw new Error('Java 17 or newer is needed for the local Kafka broker (set UM_JAVA or JAVA_HOME)');
  return first.bin;
}

/** The registry release to run, and the Java to run it with. */
export function registryRuntime(): { version: string; java: string } {
  // UM_REGISTRY_JAVA picks the Java for the registry (and so the Apicurio release)
  const forced = process.env.UM_REGISTRY_JAVA;
  const forcedMajor = forced ? javaMajor(forced) : undefined;
  if (forced && forcedMajor === undefined) throw new Error(`UM_REGISTRY_JAVA=${forced} is not a working java`);
  const javas = forced ? [{ bin: forced, major: forcedMajor! }] : findJavas();
  const modern = javas.filter((j) => j.major >= 21).sort((a, b) => a.major - b.major)[0];
  if (modern) return { version: process.env.UM_REGISTRY_VERSION || REGISTRY_VERSION, java: modern.bin };
  const old = javas.find((j) => j.major >= 17);
  if (!old) throw new Error('Java 17 or newer is needed for the local schema registry (set UM_JAVA or JAVA_HOME)');
  log(
    `no Java 21+ found: Apicurio ${REGISTRY_VERSION} needs it, using Apicurio ${REGISTRY_FALLBACK_VERSION} on Java ${old.major}`,
  );
  return { version: REGISTRY_FALLBACK_VERSION, java: old.bin };
}

/** Resolves and unpacks the Apicurio Registry app into the cache (once). */
export async function installRegistry(version = registryRuntime().version): Promise<string> {
  const target = join(cacheDir(), `apicurio-registry-${version}`);
  if (existsSync(join(target, '.complete'))) return target;
  return withLock('registry', () => {
    if (existsSync(join(target, '.complete'))) return target;
    const started = Date.now();
    log(`resolving io.apicurio:apicurio-registry-app:${version}:tar.gz:all from Maven Central into ${target}`);
    const tmp = `${target}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    run('mvn', [
      '-q',
      '-B',
      '-f',
      join(here, 'pom.xml'),
      'dependency:copy',
      `-Dartifact=io.apicurio:apicurio-registry-app:${version}:tar.gz:all`,
      `-DoutputDirectory=${tmp}`,
    ]);
    const archive = readdirSync(tmp).find((f) => f.endsWith('.tar.gz'));
    if (!archive) throw new Error(`no tar.gz found after resolving apicurio-registry-app ${version}`);
    run('tar', ['xzf', archive], { cwd: tmp });
    rmSync(join(tmp, archive));
    writeFileSync(join(tmp, '.complete'), new Date().toISOString());
    rmSync(target, { recursive: true, force: true });
    renameSync(tmp, target);
    log(`registry installed in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    return target;
  });
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Process tracking: everything we start is killed when this process exits.

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    });
  }
}

async function stopProcess(child: ChildProcess, graceMs = 20_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Starts Java in its own process group, with a watchdog shell that ends the group if this Node
 * process dies in any way (even SIGKILL), so no broker or registry outlives its parent.
 */
function spawnJava(java: string, args: string[], logFile: string, cwd?: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(java, args, { cwd, stdio: ['ignore', fd, fd], detached: true });
  closeSync(fd);
  track(child);
  if (child.pid !== undefined) {
    const watchdog = spawn(
      'bash',
      [
        '-c',
        'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; ' +
          'if kill -0 "$2" 2>/dev/null; then kill -TERM -- "-$2"; sleep 15; kill -KILL -- "-$2" 2>/dev/null; fi',
        'um-watchdog',
        String(process.pid),
        String(child.pid),
      ],
      { stdio: 'ignore', detached: true },
    );
    watchdog.unref();
    child.once('exit', () => watchdog.kill('SIGKILL'));
  }
  return child;
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  opts: { timeoutMs: number; children: ChildProcess[]; logFile: string },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    for (const c of opts.children) {
      if (c.exitCode !== null || c.signalCode !== null)
        throw new Error(`${what} exited (code ${c.exitCode ?? c.signalCode}) before it was ready; see ${opts.logFile}`);
    }
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} not ready after ${opts.timeoutMs} ms (${String(lastError)}); see ${opts.logFile}`);
}

// ---------------------------------------------------------------------------------------------
// Kafka

export interface KafkaNode {
  nodeId: number;
  port: number;
  controllerPort: number;
  saslPort: number | undefined;
  tlsPort: number | undefined;
  dataDir: string;
  logFile: string;
  process: ChildProcess | undefined;
}

export interface LocalKafka {
  brokers: string[];
  /** SASL_PLAINTEXT (PLAIN) addresses, when started with `saslUsers` */
  saslBrokers: string[];
  /** SSL addresses, when started with `tls` */
  tlsBrokers: string[];
  nodes: KafkaNode[];
  workDir: string;
  startupMs: number;
  /** stop one node (for failover tests), by SIGTERM or SIGKILL */
  stopNode(nodeId: number, signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** start a stopped node again with the same data */
  startNode(nodeId: number): Promise<void>;
  /**
   * The node id of the active KRaft controller (the metadata quorum's leader), from the running
   * nodes' persisted quorum state (the highest epoch wins); undefined while there is none.
   * (Clients cannot ask: in KRaft mode the metadata's "controller" is a random broker.)
   */
  activeController(): number | undefined;
  stop(opts?: { keepData?: boolean }): Promise<void>;
}

export interface StartKafkaOptions {
  nodes?: 1 | 3;
  /**
   * Also open a SASL_PLAINTEXT listener (mechanism PLAIN) with these users; its addresses are
   * `saslBrokers`. The PLAINTEXT listener stays for the broker's own use and for set-up.
   */
  saslUsers?: Record<string, string>;
  /** Also open an SSL listener with this PKCS12 keystore; its addresses are `tlsBrokers`. */
  tls?: { keystore: string; password: string };
  /** directory for data and logs; default a fresh one under the OS temp dir */
  workDir?: string;
  heap?: string;
  timeoutMs?: number;
  /**
   * the broker's group.initial.rebalance.delay.ms: how long an empty group waits for more members
   * before its first rebalance. Default 0 here (tests start members one by one); Kafka's own
   * default is 3000
   */
  initialRebalanceDelayMs?: number;
}

function randomClusterId(): string {
  // a base64url UUID; one starting with '-' would be read as an option by the storage tool
  for (;;) {
    const id = randomBytes(16).toString('base64url').slice(0, 22);
    if (!id.startsWith('-')) return id;
  }
}

function saslProperties(node: KafkaNode, users: Record<string, string> | undefined): string[] {
  if (!users || node.saslPort === undefined) return [];
  const q = (v: string): string => JSON.stringify(v); // JAAS values are double-quoted strings
  const entries = Object.entries(users);
  const [adminUser, adminPass] = entries[0]!;
  const jaas =
    `org.apache.kafka.common.security.plain.PlainLoginModule required username=${q(adminUser)} password=${q(adminPass)} ` +
    entries.map(([u, p]) => `user_${u}=${q(p)}`).join(' ') +
    ';';
  return ['sasl.enabled.mechanisms=PLAIN', `listener.name.sasl_plaintext.plain.sasl.jaas.config=${jaas}`];
}

function serverProperties(
  node: KafkaNode,
  voters: string,
  replication: number,
  saslUsers?: Record<string, string>,
  tls?: { keystore: string; password: string },
  initialRebalanceDelayMs = 0,
): string {
  const minIsr = replication > 1 ? 2 : 1;
  const sasl = saslUsers && node.saslPort !== undefined;
  const extra = [
    ...(sasl ? [`SASL_PLAINTEXT://127.0.0.1:${node.saslPort}`] : []),
    ...(tls && node.tlsPort !== undefined ? [`SSL://127.0.0.1:${node.tlsPort}`] : []),
  ];
  const more = extra.length ? `,${extra.join(',')}` : '';
  const tlsProps =
    tls && node.tlsPort !== undefined
      ? [
          'ssl.keystore.type=PKCS12',
          `ssl.keystore.location=${tls.keystore}`,
          `ssl.keystore.password=${tls.password}`,
          `ssl.key.password=${tls.password}`,
          'ssl.client.auth=none',
        ]
      : [];
  return [
    'process.roles=broker,controller',
    `node.id=${node.nodeId}`,
    `controller.quorum.voters=${voters}`,
    `listeners=PLAINTEXT://127.0.0.1:${node.port},CONTROLLER://127.0.0.1:${node.controllerPort}${more}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${node.port}${more}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL',
    ...saslProperties(node, saslUsers),
    ...tlsProps,
    `log.dirs=${node.dataDir}`,
    'num.partitions=1',
    `default.replication.factor=${replication}`,
    `min.insync.replicas=${minIsr}`,
    'auto.create.topics.enable=false',
    `offsets.topic.replication.factor=${replication}`,
    'offsets.topic.num.partitions=1',
    `transaction.state.log.replication.factor=${replication}`,
    `transaction.state.log.min.isr=${minIsr}`,
    'transaction.state.log.num.partitions=1',
    `share.coordinator.state.topic.replication.factor=${replication}`,
    `share.coordinator.state.topic.min.isr=${minIsr}`,
    'share.coordinator.state.topic.num.partitions=1',
    `group.initial.rebalance.delay.ms=${initialRebalanceDelayMs}`,
    'num.network.threads=2',
    'num.io.threads=4',
    'log.cleaner.threads=1',
    'log.cleaner.dedupe.buffer.size=8388608',
    'log.cleaner.io.buffer.size=524288',
    'log.cleaner.backoff.ms=1000',
    'log.segment.bytes=67108864',
    // tests and demos write records with historic event-time timestamps: never delete by age
    'log.retention.ms=-1',
    'log.retention.bytes=-1',
    'log.retention.check.interval.ms=60000',
    'delete.topic.enable=true',
    'group.min.session.timeout.ms=1000',
    // a stopped node is fenced (and its partitions move) within seconds, for failover tests
    'broker.session.timeout.ms=4000',
    'broker.heartbeat.interval.ms=500',
    '',
  ].join('\n');
}

function log4jConfig(): string {
  return [
    'status = warn',
    'appender.console.type = Console',
    'appender.console.name = STDOUT',
    'appender.console.layout.type = PatternLayout',
    'appender.console.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.stdout.ref = STDOUT',
    'logger.kafka.name = kafka',
    'logger.kafka.level = WARN',
    'logger.apache.name = org.apache.kafka',
    'logger.apache.level = WARN',
    'logger.started.name = kafka.server.KafkaRaftServer',
    'logger.started.level = INFO',
    '',
  ].join('\n');
}

/**
 * Starts a KRaft cluster of 1 or 3 combined broker+controller nodes on loopback. The ports are
 * picked free just before the nodes bind them; another process can take one in between (seen in a
 * benchmark series: "Socket server failed to bind ... Address already in use"), so a start that
 * fails that way is tried again with new ports, twice at most (not with a fixed `workDir`).
 */
export async function startKafka(opts: StartKafkaOptions = {}): Promise<LocalKafka> {
  for (let attempt = 1; ; attempt++) {
    const workDir = opts.workDir ?? join(tmpdir(), `um-kafka-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      return await startKafkaOnce({ ...opts, workDir });
    } catch (e) {
      const portTaken =
        existsSync(workDir) &&
        readdirSync(workDir, { withFileTypes: true }).some(
          (d) =>
            d.isDirectory() &&
            existsSync(join(workDir, d.name, 'server.log')) &&
            /Address already in use/.test(readFileSync(join(workDir, d.name, 'server.log'), 'utf8')),
        );
      if (!portTaken || opts.workDir || attempt >= 3) throw e;
      log(`a port was taken before kafka bound it; starting again with new ports (attempt ${attempt + 1})`);
    }
  }
}

async function startKafkaOnce(opts: StartKafkaOptions & { workDir: string }): Promise<LocalKafka> {
  const t0 = Date.now();
  const home = await installKafka();
  const java = kafkaJava();
  const count = opts.nodes ?? 1;
  const workDir = opts.workDir ?? join(tmpdir(), `um-kafka-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(workDir, { recursive: true });
  const log4j = join(workDir, 'log4j2.properties');
  writeFileSync(log4j, log4jConfig());
  const nodes: KafkaNode[] = [];
  for (let i = 1; i <= count; i++) {
    nodes.push({
      nodeId: i,
      port: await freePort(),
      controllerPort: await freePort(),
      saslPort: opts.saslUsers ? await freePort() : undefined,
      tlsPort: opts.tls ? await freePort() : undefined,
      dataDir: join(workDir, `node-${i}`, 'data'),
      logFile: join(workDir, `node-${i}`, 'server.log'),
      process: undefined,
    });
  }
  const voters = nodes.map((n) => `${n.nodeId}@127.0.0.1:${n.controllerPort}`).join(',');
  const clusterId = randomClusterId();
  const classpath = join(home, 'libs', '*');
  const heap = opts.heap ?? (count === 1 ? '1g' : '512m');
  const jvm = [
    `-Xms${count === 1 ? '256m' : '128m'}`,
    `-Xmx${heap}`,
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:+ExitOnOutOfMemoryError',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4j}`,
    '-cp',
    classpath,
  ];
  for (const n of nodes) {
    mkdirSync(n.dataDir, { recursive: true });
    const props = join(workDir, `node-${n.nodeId}`, 'server.properties');
    writeFileSync(
      props,
      serverProperties(n, voters, count === 1 ? 1 : 3, opts.saslUsers, opts.tls, opts.initialRebalanceDelayMs),
    );
    run(java, [
      ...jvm,
      'kafka.tools.StorageTool',
      'format',
      `--cluster-id=${clusterId}`,
      '-c',
      props,
      '--ignore-formatted',
    ]);
  }

  const startNode = async (nodeId: number): Promise<void> => {
    const n = nodes.find((x) => x.nodeId === nodeId);
    if (!n) throw new Error(`no node ${nodeId}`);
    const props = join(workDir, `node-${n.nodeId}`, 'server.properties');
    n.process = spawnJava(java, [...jvm, 'kafka.Kafka', props], n.logFile);
  };
  const brokers = nodes.map((n) => `127.0.0.1:${n.port}`);
  try {
    for (const n of nodes) await startNode(n.nodeId);
    await waitForKafka(
      brokers,
      count,
      nodes.flatMap((n) => (n.process ? [n.process] : [])),
      nodes[0]!.logFile,
      opts.timeoutMs ?? 90_000,
    );
  } catch (e) {
    // a node that failed takes the others down with it: nothing is left running
    for (const n of nodes)
      if (n.process && n.process.exitCode === null) await stopProcess(n.process).catch(() => undefined);
    throw e;
  }
  const startupMs = Date.now() - t0;
  log(`kafka ${KAFKA_VERSION} (${count} node${count > 1 ? 's' : ''}) ready at ${brokers.join(',')} in ${startupMs} ms`);

  return {
    brokers,
    saslBrokers: nodes.flatMap((n) => (n.saslPort === undefined ? [] : [`127.0.0.1:${n.saslPort}`])),
    tlsBrokers: nodes.flatMap((n) => (n.tlsPort === undefined ? [] : [`127.0.0.1:${n.tlsPort}`])),
    nodes,
    workDir,
    startupMs,
    async stopNode(nodeId, signal = 'SIGTERM') {
      const n = nodes.find((x) => x.nodeId === nodeId);
      if (!n?.process) return;
      if (signal === 'SIGKILL') {
        const exited = new Promise<void>((r) => n.process!.once('exit', () => r()));
        n.process.kill('SIGKILL');
        await exited;
      } else await stopProcess(n.process);
      n.process = undefined;
    },
    activeController() {
      let best: { leaderId: number; epoch: number } | undefined;
      for (const n of nodes) {
        if (!n.process) continue;
        const file = join(n.dataDir, '__cluster_metadata-0', 'quorum-state');
        if (!existsSync(file)) continue;
        try {
          const q = JSON.parse(readFileSync(file, 'utf8')) as { leaderId?: number; leaderEpoch?: number };
          if (typeof q.leaderId !== 'number' || q.leaderId < 0 || typeof q.leaderEpoch !== 'number') continue;
          if (!best || q.leaderEpoch > best.epoch) best = { leaderId: q.leaderId, epoch: q.leaderEpoch };
        } catch {
          // being rewritten: the other nodes tell
        }
      }
      return best?.leaderId;
    },
    async startNode(nodeId) {
      await startNode(nodeId);
      const n = nodes.find((x) => x.nodeId === nodeId)!;
      await waitForKafka([`127.0.0.1:${n.port}`], 1, [n.process!], n.logFile, opts.timeoutMs ?? 90_000, count);
    },
    async stop(stopOpts = {}) {
      await Promise.all(nodes.map((n) => (n.process ? stopProcess(n.process) : undefined)));
      for (const n of nodes) n.process = undefined;
      if (!stopOpts.keepData && !opts.workDir) rmSync(workDir, { recursive: true, force: true });
    },
  };
}

async function waitForKafka(
  brokers: string[],
  expectedBrokers: number,
  children: ChildProcess[],
  logFile: string,
  timeoutMs: number,
  clusterSize = expectedBrokers,
): Promise<void> {
  const kafka = new Kafka({
    clientId: 'um-local-probe',
    brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
    connectionTimeout: 1000,
  });
  await waitFor(
    'kafka',
    async () => {
      const admin = kafka.admin();
      try {
        await admin.connect();
        const d = await admin.describeCluster();
        // metadata answered, a controller is elected and every node we expect is registered
        return d.brokers.length >= clusterSize && d.controller !== null && d.controller !== undefined
          ? true
          : undefined;
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },
    { timeoutMs, children, logFile },
  );
}

// ---------------------------------------------------------------------------------------------
// Schema registry

export interface LocalRegistry {
  url: string;
  version: string;
  startupMs: number;
  stop(): Promise<void>;
}

/** 3.x ships the Quarkus fast-jar layout (quarkus-run.jar); 2.x a legacy *-runner.jar. */
function registryJar(home: string): string {
  if (existsSync(join(home, 'quarkus-run.jar'))) return join(home, 'quarkus-run.jar');
  const runner = readdirSync(home).find((f) => f.endsWith('-runner.jar'));
  if (!runner) throw new Error(`no runnable jar in ${home}; delete it to reinstall`);
  return join(home, runner);
}

export async function startRegistry(
  opts: { workDir?: string; timeoutMs?: number; port?: number } = {},
): Promise<LocalRegistry> {
  // a port picked free can be taken by another process before the registry binds it: try again
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRegistryOnce(opts);
    } catch (e) {
      if (attempt >= 3 || opts.port !== undefined || !(e instanceof PortInUseError)) throw e;
      log(`registry port was taken (${(e as Error).message}); retrying on another port`);
    }
  }
}

class PortInUseError extends Error {}

async function startRegistryOnce(opts: {
  workDir?: string;
  timeoutMs?: number;
  port?: number;
}): Promise<LocalRegistry> {
  const t0 = Date.now();
  const { version, java } = registryRuntime();
  const home = await installRegistry(version);
  const port = opts.port ?? (await freePort());
  const workDir = opts.workDir ?? join(tmpdir(), `um-registry-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(workDir, { recursive: true });
  const logFile = join(workDir, 'registry.log');
  const args = [
    '-Xms64m',
    '-Xmx512m',
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    '-XX:+ExitOnOutOfMemoryError',
    `-Djava.io.tmpdir=${workDir}`,
    '-Dquarkus.http.host=127.0.0.1',
    `-Dquarkus.http.port=${port}`,
    '-Dquarkus.http.access-log.enabled=false',
    // the management interface is fixed at build time in Apicurio 3: give it a free loopback port
    '-Dquarkus.management.host=127.0.0.1',
    `-Dquarkus.management.port=${await freePort()}`,
    '-Dquarkus.log.level=WARN',
    '-Dquarkus.log.category."io.quarkus".level=INFO',
    '-jar',
    registryJar(home),
  ];
  const child = spawnJava(java, args, logFile, home);
  const url = `http://127.0.0.1:${port}/apis/ccompat/v7`;
  const cleanup = (): void => {
    if (!opts.workDir) rmSync(workDir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      'schema registry',
      async () => {
        const r = await fetch(`${url}/subjects`);
        return r.ok ? true : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 90_000, children: [child], logFile },
    );
  } catch (e) {
    await stopProcess(child);
    const inUse = existsSync(logFile) && readFileSync(logFile, 'utf8').includes('Address already in use');
    cleanup();
    if (inUse) throw new PortInUseError((e as Error).message);
    throw e;
  }
  const put = await fetch(`${url}/config`, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ compatibility: 'BACKWARD' }),
  });
  if (!put.ok) throw new Error(`could not set global compatibility BACKWARD on the registry: HTTP ${put.status}`);
  const startupMs = Date.now() - t0;
  log(`apicurio registry ${version} ready at ${url} in ${startupMs} ms`);
  return {
    url,
    version,
    startupMs,
    async stop() {
      await stopProcess(child);
      cleanup();
    },
  };
}

export interface LocalStack {
  brokers: string[];
  registryUrl: string;
  kafka: LocalKafka;
  registry: LocalRegistry;
  stop(): Promise<void>;
}

/** Broker and registry together, started in parallel. */
export async function startLocalStack(opts: StartKafkaOptions = {}): Promise<LocalStack> {
  // install sequentially (both use Maven's local repository), then start in parallel
  await installKafka();
  await installRegistry();
  const [k, r] = await Promise.allSettled([startKafka(opts), startRegistry()]);
  if (k.status === 'rejected' || r.status === 'rejected') {
    if (k.status === 'fulfilled') await k.value.stop();
    if (r.status === 'fulfilled') await r.value.stop();
    throw k.status === 'rejected' ? k.reason : (r as PromiseRejectedResult).reason;
  }
  const kafka = k.value;
  const registry = r.value;
  return {
    brokers: kafka.brokers,
    registryUrl: registry.url,
    kafka,
    registry,
    async stop() {
      await Promise.all([kafka.stop(), registry.stop()]);
    },
  };
}
