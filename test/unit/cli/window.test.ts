import { createServer } from 'node:http';
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { localInstanceUrl, preferencesFromInstance } from '../../../cli/preferences.js';
import { histogramBuckets, SnapshotWindow, windowQuantile } from '../../../cli/window.js';
import { loadConfig } from '../../../cli/config.js';
import { freePort } from '../../../scripts/kafka/local.js';

describe('windowed quantiles (the demo summary)', () => {
  it('counts only what was observed since the oldest snapshot', async () => {
    const h = new Histogram({ name: 'd', help: 'd', buckets: [0.1, 1, 10], registers: [new Registry()] });
    // a slow start: 100 observations at 5 s
    for (let i = 0; i < 100; i++) h.observe(5);
    const w = new SnapshotWindow(2);
    const s0 = await histogramBuckets(h);
    expect(windowQuantile(undefined, s0, 0.99)).toBeGreaterThan(1);
    w.push(s0);
    // then fast: 1000 at 50 ms
    for (let i = 0; i < 1000; i++) h.observe(0.05);
    const s1 = await histogramBuckets(h);
    expect(w.oldest()).toBe(s0);
    expect(windowQuantile(w.oldest(), s1, 0.99)).toBeLessThanOrEqual(0.1);
    w.push(s1);
    for (let i = 0; i < 1000; i++) h.observe(0.05);
    const s2 = await histogramBuckets(h);
    // since start the slow ones still weigh in; over the window they do not
    expect(windowQuantile(undefined, s2, 0.99)).toBeGreaterThan(1);
    expect(windowQuantile(w.oldest(), s2, 0.99)).toBeLessThanOrEqual(0.1);
    w.push(s2);
    // the window slides (2 snapshots): s0 is gone
    expect(w.oldest()).toBe(s1);
    expect(windowQuantile(s2, s2, 0.5)).toBeUndefined();
  });
});

describe('um preferences asks the local instance first', () => {
  it('uses UM_HTTP_HOST/UM_HTTP_PORT, sends the token, and reports no instance as undefined', async () => {
    expect(localInstanceUrl(loadConfig({ UM_HTTP_PORT: '8080' }))).toBe('http://127.0.0.1:8080');
    expect(localInstanceUrl(loadConfig({ UM_HTTP_HOST: '0.0.0.0', UM_HTTP_AUTH: 'none', UM_HTTP_PORT: '9' }))).toBe(
      'http://127.0.0.1:9',
    );
    let auth: string | undefined;
    let path: string | undefined;
    const server = createServer((req, res) => {
      auth = req.headers.authorization;
      path = req.url;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"key":"mbx 1","value":{"version":3}}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      expect(await preferencesFromInstance(url, 'mbx 1', 'tok-0123456789abcdef')).toEqual({
        status: 200,
        body: { key: 'mbx 1', value: { version: 3 } },
      });
      expect(auth).toBe('Bearer tok-0123456789abcdef');
      expect(path).toBe('/v1/preferences/mbx%201');
    } finally {
      server.close();
    }
    expect(await preferencesFromInstance(`http://127.0.0.1:${await freePort()}`, 'x', undefined)).toBeUndefined();
  });
});
