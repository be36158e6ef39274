/**
 * Every metric that a provisioned Grafana dashboard or a Prometheus alert rule queries exists in
 * the /metrics of a running instance, so that none goes stale when a metric is renamed.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startApp } from '../../cli/app.js';
import { loadConfig } from '../../cli/config.js';
import { brokers, registryUrl, uniqueName } from './helpers.js';

const stateRoot = mkdtempSync(join(tmpdir(), 'um-ops-dash-'));
afterAll(() => rmSync(stateRoot, { recursive: true, force: true }));

const DASHBOARDS = 'deploy/grafana/provisioning/dashboards';
/** series Prometheus makes itself, not served by the instance */
const SYNTHETIC = new Set(['up']);
/** PromQL words that look like metric names */
const PROMQL = new Set(['sum', 'by', 'rate', 'increase', 'deriv', 'histogram_quantile', 'max', 'and', 'le']);

function metricNames(expr: string): string[] {
  const noLabels = expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '');
  return [...noLabels.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b/g)]
    .map((m) => m[1]!)
    .filter((n) => !PROMQL.has(n) && /_/.test(n) && !/^\d/.test(n))
    .filter((n, i, a) => a.indexOf(n) === i);
}

function queried(): Map<string, string[]> {
  const where = new Map<string, string[]>();
  const add = (name: string, from: string) => where.set(name, [...(where.get(name) ?? []), from]);
  for (const f of readdirSync(DASHBOARDS).filter((f) => f.endsWith('.json'))) {
    const d = JSON.parse(readFileSync(join(DASHBOARDS, f), 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    for (const p of d.panels)
      for (const t of p.targets) for (const n of metricNames(t.expr)) add(n, `${f}: ${p.title}`);
  }
  const rules = parse(readFileSync('deploy/alerts.yml', 'utf8')) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  };
  for (const g of rules.groups)
    for (const r of g.rules) for (const n of metricNames(r.expr)) add(n, `alert ${r.alert}`);
  for (const n of [...where.keys()]) if (SYNTHETIC.has(n)) where.delete(n);
  return where;
}

describe('dashboards and alert rules', () => {
  it('parse, and name metrics', () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le) (rate(um_dwell_seconds_bucket[1m])))')).toEqual([
      'um_dwell_seconds_bucket',
    ]);
    expect(metricNames('max by (instance) (um_instance_state{state=~"ERROR|X_Y"}) == 1')).toEqual([
      'um_instance_state',
    ]);
    const q = queried();
    expect(q.size).toBeGreaterThanOrEqual(12);
    const prom = parse(readFileSync('deploy/prometheus.yml', 'utf8')) as { rule_files: string[] };
    expect(prom.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
  });

  it('query only metrics that a running instance serves', async () => {
    const appId = uniqueName('dash-app');
    const cfg = loadConfig({
      KAFKA_BROKERS: brokers().join(','),
      SCHEMA_REGISTRY_URL: registryUrl(),
      UM_TOPIC_PREFIX: `${uniqueName('dash')}.`,
      UM_APP_ID: appId,
      UM_STATE_DIR: join(stateRoot, appId),
      UM_PARTITIONS: '1',
      UM_HTTP_PORT: '0',
    });
    const app = await startApp(cfg, { logger: pino({ level: 'silent' }), createTopics: true });
    let text: string;
    try {
      text = await (await fetch(`${app.url}/metrics`)).text();
    } finally {
      await app.close();
    }
    // every declared metric, with the series names a histogram or summary adds
    const served = new Set<string>();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      const [, name, type] = m;
      served.add(name!);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) served.add(name! + s);
      if (type === 'summary') for (const s of ['_sum', '_count']) served.add(name! + s);
    }
    const missing = [...queried()].filter(([n]) => !served.has(n)).map(([n, from]) => `${n} (${from.join('; ')})`);
    expect(missing).toEqual([]);
  });
});
