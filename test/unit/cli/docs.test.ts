/**
 * docs/ and the README stay in step with the code: the numbers and names they state are the ones
 * the code uses, every setting is documented, and nothing points outside the repository.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../../cli/config.js';
import * as M from '../../../processors/logic/model.js';

const doc = (f: string) => readFileSync(`docs/${f}`, 'utf8');
const days = (ms: number) => `${ms / M.MS_PER_DAY} days`;

describe('docs', () => {
  it('decisions.md states the rule order, reasons and thresholds of the code', () => {
    const d = doc('decisions.md');
    const rows = [...d.matchAll(/^\| (\d) \|.*$/gm)].map((m) => m[0]);
    expect(rows).toHaveLength(7);
    // every reason, in the code's order
    const order = M.DECISION_REASONS.map((r) => d.indexOf(`\`${r}\``));
    expect(order.every((i) => i > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(d).toContain(`\`spamScore\` ≥ ${M.HIGH_CONFIDENCE_SPAM_SCORE}`);
    expect(d).toContain(`default ${M.DEFAULT_SPAM_THRESHOLD})`);
    expect(d).toContain(`default ${M.DEFAULT_BULK_THRESHOLD})`);
    expect(d).toContain(`\`bulkScore\` ≥ ${M.BULK_WITH_LIST_UNSUBSCRIBE_THRESHOLD} with a List-Unsubscribe`);
    expect(d).toContain(`evidence has reached ${M.INFERRED_JUNK_LIVE_EVIDENCE}`);
  });

  it('learning.md states the windows and limits of the code', () => {
    const l = doc('learning.md');
    expect(l).toContain(`more than ${days(M.LEARNING_WINDOW_MS)} after`);
    expect(l).toContain(`within ${days(M.DEDUPE_WINDOW_MS)} teaches once`);
    expect(l).toContain(`more than ${days(M.EVIDENCE_RESTART_MS)} old`);
    expect(l).toContain(`expire ${days(M.INFERRED_EXPIRY_MS)} after`);
    expect(l).toContain(`At most ${M.MAX_ADDRESS_ENTRIES} address entries and ${M.MAX_DOMAIN_ENTRIES} domain entries`);
    expect(l).toContain(`evidence ${M.UNSUBSCRIBE_EVIDENCE}`);
  });

  it('every setting is in the README; nothing points at the private specification', () => {
    const readme = readFileSync('README.md', 'utf8');
    expect(Object.keys(SETTINGS).filter((k) => !readme.includes(`\`${k}\``))).toEqual([]);
    for (const f of ['README.md', ...readdirSync('docs').map((f) => `docs/${f}`)])
      expect(readFileSync(f, 'utf8'), f).not.toMatch(/shared\/PRODUCT\.md|PRODUCT\.md §/);
    // every page the index names exists
    const index = doc('README.md');
    for (const m of index.matchAll(/\]\(([\w-]+\.md)\)/g)) expect(readdirSync('docs')).toContain(m[1]);
  });
});
