/**
 * A small read-only status page at `/ui` (with its data at `/ui/status.json`): the instance, its
 * tasks with their lag, restore progress, and, where the migration tooling provides them, the mode,
 * live percentage and parity rate of each tenant against the promotion gate. Open like /metrics (no
 * token): it shows operational figures, never a mailbox's data.
 */
import type { FastifyInstance } from 'fastify';
import type { QueryableStreams } from '../runtime/http.js';

export interface TenantStatus {
  tenant: string;
  mode: string;
  livePercent: number | null;
  /** matched pairs / all pairs, null when unknown */
  parityRate: number | null;
  pairs: number | null;
  /** whether the tenant meets the promotion gate */
  gateMet: boolean | null;
}

export interface StatusSources {
  streams: Pick<QueryableStreams, 'state' | 'isReady' | 'restoreProgress' | 'metrics' | 'config'> & {
    assignedTasks?(): number[];
  };
  /** per-tenant migration status, when the migration tooling is present */
  tenants?: () => Promise<TenantStatus[]> | TenantStatus[];
  /** the promotion gate, for the page's caption */
  gate?: { minRate: number; minPairs: number };
}

export interface Status {
  instance: string;
  state: string;
  ready: boolean;
  tasks: { task: number; lag: number }[];
  restore: unknown[];
  tenants: TenantStatus[] | null;
  gate: { minRate: number; minPairs: number } | null;
}

export async function collectStatus(s: StatusSources): Promise<Status> {
  const lagByPartition = new Map<number, number>();
  const lag = s.streams.metrics.registry.getSingleMetric('um_consumer_lag');
  if (lag)
    for (const v of (await lag.get()).values) {
      const p = Number(v.labels.partition);
      lagByPartition.set(p, (lagByPartition.get(p) ?? 0) + v.value);
    }
  const tasks = (s.streams.assignedTasks?.() ?? [...lagByPartition.keys()])
    .slice()
    .sort((a, b) => a - b)
    .map((task) => ({ task, lag: lagByPartition.get(task) ?? 0 }));
  return {
    instance: s.streams.config.instanceId,
    state: s.streams.state,
    ready: s.streams.isReady(),
    tasks,
    restore: s.streams.restoreProgress(),
    tenants: s.tenants ? await s.tenants() : null,
    gate: s.gate ?? null,
  };
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>unwanted-mail status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
  table { border-collapse: collapse; } td, th { padding: .25rem .75rem; border-bottom: 1px solid #ddd; text-align: left; }
  .ok { color: #1a7f37; } .bad { color: #b42318; } .muted { color: #777; }
</style>
</head>
<body>
<h1>unwanted-mail <span id="instance" class="muted"></span></h1>
<p>State: <strong id="state">…</strong> · <span id="ready"></span> · <span id="updated" class="muted"></span></p>
<h2>Tasks</h2>
<table id="tasks"><thead><tr><th>task</th><th>lag (records)</th></tr></thead><tbody></tbody></table>
<h2>Restore</h2>
<div id="restore"></div>
<h2>Migration</h2>
<p id="gate" class="muted"></p>
<table id="tenants"><thead><tr><th>tenant</th><th>mode</th><th>live %</th><th>parity</th><th>pairs</th><th>gate</th></tr></thead><tbody></tbody></table>
<p id="no-tenants" class="muted" hidden>No migration data in this instance.</p>
<script>
  const el = (id) => document.getElementById(id);
  function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; }
  function fill(tbody, rows, render) { tbody.replaceChildren(); for (const r of rows) render(tbody.insertRow(), r); }
  async function refresh() {
    let s;
    try { s = await (await fetch('ui/status.json', { cache: 'no-store' })).json(); }
    catch (e) { el('updated').textContent = 'cannot reach the instance'; return; }
    el('instance').textContent = s.instance;
    el('state').textContent = s.state;
    el('ready').textContent = s.ready ? 'ready' : 'not ready';
    el('ready').className = s.ready ? 'ok' : 'bad';
    el('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    fill(el('tasks').tBodies[0], s.tasks, (row, t) => { cell(row, String(t.task)); cell(row, String(t.lag)); });
    el('restore').textContent = s.restore.length ? JSON.stringify(s.restore) : 'nothing to restore';
    el('gate').textContent = s.gate ? 'Promotion gate: parity at least ' + (s.gate.minRate * 100).toFixed(1) + '% over at least ' + s.gate.minPairs + ' pairs' : '';
    const tenants = s.tenants || [];
    el('no-tenants').hidden = tenants.length > 0;
    el('tenants').hidden = tenants.length === 0;
    fill(el('tenants').tBodies[0], tenants, (row, t) => {
      cell(row, t.tenant); cell(row, t.mode);
      cell(row, t.livePercent === null ? '–' : String(t.livePercent));
      cell(row, t.parityRate === null ? '–' : (t.parityRate * 100).toFixed(2) + '%');
      cell(row, t.pairs === null ? '–' : String(t.pairs));
      cell(row, t.gateMet === null ? '–' : t.gateMet ? 'met' : 'not met', t.gateMet === null ? '' : t.gateMet ? 'ok' : 'bad');
    });
  }
  refresh();
  setInterval(refresh, 2000);
</script>
</body>
</html>
`;

/** Registers GET /ui and GET /ui/status.json (public routes). */
export function registerStatusPage(app: FastifyInstance, sources: StatusSources): void {
  const open = { config: { public: true } };
  app.get('/ui', open, async (_req, reply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header(
        'content-security-policy',
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
      )
      .send(PAGE),
  );
  app.get('/ui/status.json', open, async (_req, reply) => reply.send(await collectStatus(sources)));
}
