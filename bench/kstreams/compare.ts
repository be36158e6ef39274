/**
 * Compares the outputs of two bench runs (`bench/run.ts throughput --dump-outputs FILE`, same seed
 * and options, e.g. --system um and --system kstreams):
 *
 *   npx tsx bench/kstreams/compare.ts um.json kstreams.json
 *
 * Prints the decision counts per (output topic, action, reason) side by side, how many decisions
 * differ (by eventId) and how, and the preference records written and the final preferences per
 * mailbox. Exit code 1 when the decision counts differ.
 */
import { readFileSync } from 'node:fs';
import type { OutputDump } from './outputs.js';

function load(file: string): OutputDump {
  return JSON.parse(readFileSync(file, 'utf8')) as OutputDump;
}

function main(argv: string[]): number {
  if (argv.length !== 2) {
    process.stderr.write('usage: npx tsx bench/kstreams/compare.ts A.json B.json\n');
    return 2;
  }
  const [a, b] = argv.map(load) as [OutputDump, OutputDump];
  const out: string[] = [];
  out.push(`A: ${a.system} (seed ${a.seed}, ${a.produced.mails} mails + ${a.produced.interactions} interactions)`);
  out.push(`B: ${b.system} (seed ${b.seed}, ${b.produced.mails} mails + ${b.produced.interactions} interactions)`);
  const counts = (d: OutputDump) => {
    const m = new Map<string, number>();
    for (const [kind, action, reason] of Object.values(d.decisions)) {
      const k = `${kind === 'L' ? 'mail-decisions' : 'mail-decisions-shadow'} ${action} ${reason}`;
      m.set(k, (m.get(k) ?? 0) + 1);
    }
    return m;
  };
  const ca = counts(a);
  const cb = counts(b);
  let countsDiffer = false;
  out.push('', 'decisions per (topic, action, reason)        A          B');
  for (const k of [...new Set([...ca.keys(), ...cb.keys()])].sort()) {
    const x = ca.get(k) ?? 0;
    const y = cb.get(k) ?? 0;
    if (x !== y) countsDiffer = true;
    out.push(`  ${k.padEnd(42)} ${String(x).padStart(8)}   ${String(y).padStart(8)}${x === y ? '' : '   DIFFERENT'}`);
  }
  const na = Object.keys(a.decisions).length;
  const nb = Object.keys(b.decisions).length;
  out.push(`  ${'total'.padEnd(42)} ${String(na).padStart(8)}   ${String(nb).padStart(8)}`);

  let same = 0;
  let onlyA = 0;
  const diffs = new Map<string, number>();
  const examples: string[] = [];
  for (const [id, da] of Object.entries(a.decisions)) {
    const db = b.decisions[id];
    if (!db) {
      onlyA++;
      continue;
    }
    if (JSON.stringify(da) === JSON.stringify(db)) {
      same++;
      continue;
    }
    const field =
      da[1] !== db[1] || da[2] !== db[2]
        ? `${da[1]}/${da[2]} -> ${db[1]}/${db[2]}`
        : da[3] !== db[3]
          ? 'matchedKey'
          : da[4] !== db[4]
            ? 'preferencesVersion only'
            : 'topic';
    diffs.set(field, (diffs.get(field) ?? 0) + 1);
    if (examples.length < 5) examples.push(`  ${id}: A ${JSON.stringify(da)}  B ${JSON.stringify(db)}`);
  }
  const onlyB = Object.keys(b.decisions).filter((id) => !a.decisions[id]).length;
  out.push(
    '',
    `per eventId: ${same} identical (action, reason, matchedKey, preferencesVersion, topic), ${na - same - onlyA} different, ${onlyA} only in A, ${onlyB} only in B`,
  );
  for (const [k, v] of [...diffs].sort((x, y) => y[1] - x[1])) out.push(`  ${v.toString().padStart(6)}  ${k}`);
  if (examples.length) out.push('examples:', ...examples);

  const recs = (d: OutputDump) => Object.values(d.preferenceVersions).reduce((s, v) => s + v.length, 0);
  const fa = a.finalPreferences;
  const fb = b.finalPreferences;
  const mailboxes = new Set([...Object.keys(fa), ...Object.keys(fb)]);
  let finalSame = 0;
  for (const m of mailboxes) if (JSON.stringify(fa[m]) === JSON.stringify(fb[m])) finalSame++;
  const maxVersion = (d: OutputDump) => Object.values(d.preferenceVersions).reduce((s, v) => s + Math.max(...v), 0);
  out.push(
    '',
    `user-preferences records (seeded + written): A ${recs(a)}, B ${recs(b)}; sum of the newest versions: A ${maxVersion(a)}, B ${maxVersion(b)}`,
    `final preferences: ${finalSame} of ${mailboxes.size} mailboxes identical`,
    `dead letters: A ${a.deadLetters}, B ${b.deadLetters}`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
  return countsDiffer ? 1 : 0;
}

process.exit(main(process.argv.slice(2)));
