import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ensureTopics, kafkaFor, startApp } from '../../cli/app.js';
import { loadConfig } from '../../cli/config.js';
import { createRegistryClient } from '../../runtime/serdes/registry.js';
import { startLocalStack } from '../../scripts/kafka/local.js';
import { mailSerdes } from '../../topology/serdes.js';
import { topicNames } from '../../topology/topics.js';
import { TrafficProducer, Workload } from '../generator.js';
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const stack = await startLocalStack({ nodes: 1 });
const stateDir = mkdtempSync(join(tmpdir(), 'um-diag-'));
try {
  const cfg = loadConfig({ KAFKA_BROKERS: stack.brokers.join(','), SCHEMA_REGISTRY_URL: stack.registryUrl, UM_APP_ID: 'diag', UM_TOPIC_PREFIX: 'diag-', UM_STATE_DIR: stateDir, UM_LOG_LEVEL: 'warn' });
  const kafka = kafkaFor(cfg, 'diag');
  await ensureTopics(kafka, cfg);
  const topics = topicNames('diag-');
  const tp = new TrafficProducer({ kafka, serdes: mailSerdes(createRegistryClient({ url: stack.registryUrl }), topics), topics, workload: new Workload({ seed: 42 }) });
  await tp.seed(0.5);
  await tp.produceMany(200_000);
  await tp.stop();
  const app = await startApp(cfg, { logger: pino({ level: 'warn' }, pino.destination(2)), http: false });
  const s = app.streams as any;
  const times: Record<string, number[]> = {};
  const wrap = (obj: any, name: string, label: string) => {
    const orig = obj[name].bind(obj);
    obj[name] = async (...a: unknown[]) => { const t = performance.now(); try { return await orig(...a); } finally { (times[label] ??= []).push(performance.now() - t); } };
  };
  wrap(s.collector, 'flush', 'collector.flush');
  const wrapped = new Set();
  const t0 = performance.now();
  for (;;) {
    for (const h of s.tasks.values()) if (h.task && !wrapped.has(h.task)) { wrapped.add(h.task); wrap(h.task, 'quiesce', 'quiesce'); wrap(h.task, 'flushStores', 'flushStores'); wrap(h.state, 'checkpoint', 'checkpoint'); for (const [n, st] of h.task.opts.stores) wrap(st, 'flush', `store ${n}.flush`); }
    const d = (await app.metrics.decisions.get()).values.reduce((n, v) => n + v.value, 0);
    if (d >= 200_000 || performance.now() - t0 > 120_000) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log('secs', ((performance.now() - t0) / 1000).toFixed(1));
  for (const [k, v] of Object.entries(times)) { v.sort((a, b) => a - b); console.log(k.padEnd(40), 'n', v.length, 'sum', v.reduce((a, b) => a + b, 0).toFixed(0), 'p50', v[v.length >> 1]!.toFixed(1), 'max', v.at(-1)!.toFixed(1)); }
  const reg = app.streams.metrics.registry;
  for (const n of ['um_produce_request_seconds', 'um_records_produced_total', 'um_process_batch_seconds', 'um_commit_seconds']) {
    const m = await reg.getSingleMetric(n)!.get();
    console.log(n, m.values.filter((v: any) => !v.metricName?.endsWith('_bucket')).map((v: any) => `${v.metricName ?? n}=${v.value.toFixed(2)}`).join(' '));
  }
  await app.close();
} finally { await stack.stop(); rmSync(stateDir, { recursive: true, force: true }); }
