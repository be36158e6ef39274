import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../cli/config.js';
import { usePretty } from '../../../cli/log.js';

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
