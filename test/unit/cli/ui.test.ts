/**
 * The status page at /ui in a real browser (Chromium from the Debian packages, driven by
 * playwright-core). Skipped, with the reason printed, only where no Chromium is installed.
 */
import { existsSync } from 'node:fs';
import pino from 'pino';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectStatus, registerStatusPage, type StatusSources } from '../../../cli/ui.js';
import { RuntimeMetrics } from '../../../runtime/metrics.js';
import { startHttpServer, type HttpServer, type QueryableStreams } from '../../../runtime/http.js';
import { seqTopology } from '../../integration/fixtures/seq-topology.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) =>
  existsSync(p),
);
if (!CHROMIUM) console.log('ui.test.ts: no Chromium found (apt-get install chromium): the browser test is skipped');

const TOKEN = 'ui-test-token-0123456789';

function fakeStreams(): QueryableStreams & { assignedTasks(): number[] } {
  const metrics = new RuntimeMetrics('um_', undefined, { defaultMetrics: false });
  metrics.consumerLag.set({ topic: 'mail-events', partition: '0' }, 12);
  metrics.consumerLag.set({ topic: 'user-interactions', partition: '0' }, 3);
  metrics.consumerLag.set({ topic: 'mail-events', partition: '2' }, 0);
  return {
    state: 'RUNNING',
    isReady: () => true,
    restoreProgress: () => [],
    partitionFor: () => 0,
    localStore: () => undefined,
    ownerEndpoint: async () => undefined,
    metrics,
    topology: seqTopology('in', 'out'),
    config: { instanceId: 'um-ui-1' },
    assignedTasks: () => [2, 0],
  };
}

const tenants: StatusSources['tenants'] = () => [
  { tenant: 'tenant-a', mode: 'LIVE', livePercent: 25, parityRate: 0.9971, pairs: 12000, gateMet: true },
  { tenant: 'tenant-<b>', mode: 'SHADOW', livePercent: null, parityRate: 0.97, pairs: 800, gateMet: false },
];

describe('status page', () => {
  it('collects instance, tasks with lag (summed over topics), restore and tenants', async () => {
    const s = await collectStatus({ streams: fakeStreams(), tenants, gate: { minRate: 0.995, minPairs: 10000 } });
    expect(s).toMatchObject({
      instance: 'um-ui-1',
      state: 'RUNNING',
      ready: true,
      tasks: [
        { task: 0, lag: 15 },
        { task: 2, lag: 0 },
      ],
      restore: [],
      gate: { minRate: 0.995, minPairs: 10000 },
    });
    expect(s.tenants).toHaveLength(2);
  });

  describe.skipIf(!CHROMIUM)('in Chromium', () => {
    let browser: Browser;
    const servers: HttpServer[] = [];
    beforeAll(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox', '--disable-gpu'] });
    }, 60_000);
    afterAll(async () => {
      await browser?.close();
      for (const s of servers) await s.close();
    });

    async function serve(sources: Omit<StatusSources, 'streams'>): Promise<HttpServer> {
      const streams = fakeStreams();
      const s = await startHttpServer({
        streams,
        host: '127.0.0.1',
        port: 0,
        logger: pino({ level: 'silent' }),
        authToken: TOKEN,
        routes: (app) => registerStatusPage(app, { streams, ...sources }),
      });
      servers.push(s);
      return s;
    }

    it('shows the instance, tasks with lag and each tenant against the gate, without a token', async () => {
      const s = await serve({ tenants, gate: { minRate: 0.995, minPairs: 10000 } });
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      const res = await page.goto(`${s.url}/ui`);
      expect(res?.status()).toBe(200);
      await page.waitForFunction("document.getElementById('state')?.textContent === 'RUNNING'");
      expect(await page.textContent('#instance')).toBe('um-ui-1');
      expect(await page.textContent('#ready')).toBe('ready');
      const tasks = await page.$$eval('#tasks tbody tr', (rows) =>
        rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)),
      );
      expect(tasks).toEqual([
        ['0', '15'],
        ['2', '0'],
      ]);
      const rows = await page.$$eval('#tenants tbody tr', (rs) =>
        rs.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)),
      );
      expect(rows).toEqual([
        ['tenant-a', 'LIVE', '25', '99.71%', '12000', 'met'],
        ['tenant-<b>', 'SHADOW', '–', '97.00%', '800', 'not met'],
      ]);
      // text, never markup: the tenant id with angle brackets is shown as it is
      expect(await page.$('#tenants b')).toBeNull();
      expect(await page.textContent('#gate')).toBe('Promotion gate: parity at least 99.5% over at least 10000 pairs');
      expect(await page.isHidden('#no-tenants')).toBe(true);
      expect(errors).toEqual([]);
      // the API itself still needs the token
      expect((await fetch(`${s.url}/v1/topology`)).status).toBe(401);
      await page.close();
    });

    it('says so when the instance has no migration data', async () => {
      const s = await serve({});
      const page = await browser.newPage();
      await page.goto(`${s.url}/ui`);
      await page.waitForFunction("document.getElementById('state')?.textContent === 'RUNNING'");
      expect(await page.isVisible('#no-tenants')).toBe(true);
      expect(await page.isHidden('#tenants')).toBe(true);
      await page.close();
    });
  });
});
