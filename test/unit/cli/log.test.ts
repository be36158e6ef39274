import { describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../../../cli/config.js';
import { createLogger, usePretty } from '../../../cli/log.js';

describe('log format', () => {
  it('readable on a terminal, JSON lines when piped, overridable with UM_LOG_FORMAT', () => {
    expect(usePretty('auto', { isTTY: true })).toBe(true);
    expect(usePretty('auto', { isTTY: false })).toBe(false);
    expect(usePretty('auto', {})).toBe(false);
    expect(usePretty('json', { isTTY: true })).toBe(false);
    expect(usePretty('pretty', { isTTY: false })).toBe(true);
    expect(loadConfig({}).logFormat).toBe('auto');
    expect(loadConfig({ UM_LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(() => loadConfig({ UM_LOG_FORMAT: 'xml' })).toThrow(/UM_LOG_FORMAT/);
  });
});

describe('JSON log lines', () => {
  it('carry instance once, also when a line has its own', () => {
    const writes: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    try {
      const log = createLogger({ logLevel: 'info', instanceId: 'i-1', logFormat: 'json' });
      log.info({ instance: 'i-1', from: 'A' }, 'state change');
      log.child({ component: 'http' }).info({ port: 1 }, 'listening');
      log.flush();
    } finally {
      spy.mockRestore();
    }
    const lines = writes.join('').trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const l of lines) {
      expect(l.match(/"instance"/g)).toHaveLength(1);
      expect(l.match(/"msg"/g)).toHaveLength(1);
    }
    // no field of one line leaks into the next
    const second = JSON.parse(lines[1]!) as Record<string, unknown>;
    delete second.time;
    expect(second).toEqual({ level: 30, instance: 'i-1', component: 'http', port: 1, msg: 'listening' });
  });
});
