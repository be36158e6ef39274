/**
 * Set-up shared by the multi-process benches (failover.ts, instances.ts): the cluster (the one in
 * KAFKA_BROKERS / SCHEMA_REGISTRY_URL, else a local broker and registry), and a fresh application
 * (unique id and topic prefix, topics created, a state root) with the environment its service
 * processes get.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { Kafka } from 'kafkajs';
import { ensureTopics, kafkaFor } from '../cli/app.js';
import { loadConfig } from '../cli/config.js';
import { TrafficProducer, Workload } from '../demo/traffic.js';
import { createRegistryClient } from '../runtime/serdes/registry.js';
import { startLocalStack } from '../scripts/kafka/local.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames, type Topics } from '../topology/topics.js';

export type Cleanups = (() => Promise<void>)[];

export async function benchCluster(
  cleanups: Cleanups,
  opts: { initialRebalanceDelayMs?: number } = {},
): Promise<{ brokers: string; registryUrl: string }> {
  const brokers = process.env.KAFKA_BROKERS;
  const registryUrl = process.env.SCHEMA_REGISTRY_URL;
  if (brokers && registryUrl) return { brokers, registryUrl };
  const stack = await startLocalStack({ nodes: 1, ...opts });
  cleanups.push(() => stack.stop());
  return { brokers: stack.brokers.join(','), registryUrl: stack.registryUrl };
}

export interface BenchApp {
  id: string;
  stateRoot: string;
  /** the service processes' environment (add UM_INSTANCE_ID, UM_STATE_DIR, UM_HTTP_PORT) */
  env: Record<string, string>;
  kafka: Kafka;
  traffic: TrafficProducer;
  workload: Workload;
  topics: Topics;
}

/** A fresh application: topics created, a traffic producer for it, `settings` in its environment. */
export async function benchApp(
  name: string,
  cluster: { brokers: string; registryUrl: string },
  partitions: number,
  settings: Record<string, string>,
  cleanups: Cleanups,
): Promise<BenchApp> {
  const id = `${name}-${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`;
  const stateRoot = mkdtempSync(join(tmpdir(), `um-${name}-`));
  cleanups.push(async () => rmSync(stateRoot, { recursive: true, force: true }));
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined),
  );
  const env: Record<string, string> = {
    ...inherited,
    KAFKA_BROKERS: cluster.brokers,
    SCHEMA_REGISTRY_URL: cluster.registryUrl,
    UM_APP_ID: id,
    UM_TOPIC_PREFIX: `${id}-`,
    UM_PARTITIONS: String(partitions),
    UM_HTTP_HOST: '127.0.0.1',
    UM_LOG_LEVEL: process.env.UM_LOG_LEVEL ?? 'warn',
    ...settings,
  };
  const cfg = loadConfig({ ...env, UM_STATE_DIR: stateRoot, UM_HTTP_PORT: '0' });
  const kafka = kafkaFor(cfg, `${id}-bench`);
  await ensureTopics(kafka, cfg);
  const topics = topicNames(cfg.topicPrefix);
  const workload = new Workload({ seed: 42, mailboxes: 20_000, tenants: 20 });
  const traffic = new TrafficProducer({
    kafka,
    serdes: mailSerdes(createRegistryClient({ url: cluster.registryUrl }), topics),
    topics,
    workload,
    logger: pino({ level: 'warn' }, pino.destination(2)),
  });
  cleanups.push(() => traffic.stop());
  return { id, stateRoot, env, kafka, traffic, workload, topics };
}
