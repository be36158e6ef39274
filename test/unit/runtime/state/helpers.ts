import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BytesStore, Entry } from '../../../../runtime/state/index.js';

export const b = (s: string): Buffer => Buffer.from(s, 'utf8');
export const hx = (...bytes: number[]): Buffer => Buffer.from(bytes);

/** utf8 text of a value, undefined stays undefined */
export const text = (v: Buffer | undefined): string | undefined => v?.toString('utf8');

export async function collect<K, V>(it: AsyncIterable<Entry<K, V>>): Promise<Entry<K, V>[]> {
  const out: Entry<K, V>[] = [];
  for await (const e of it) out.push(e);
  return out;
}

/** entries as [hexKey, utf8Value] pairs, easy to compare and to read in a failure */
export async function collectHex(it: AsyncIterable<Entry<Buffer, Buffer>>): Promise<[string, string][]> {
  return (await collect(it)).map(([k, v]) => [k.toString('hex'), v.toString('utf8')]);
}

export async function tempDir(prefix = 'um-state-'): Promise<{ dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export type Call =
  | { op: 'get'; key: string }
  | { op: 'getAll'; keys: string[] }
  | { op: 'put'; key: string; value: string }
  | { op: 'putAll'; entries: [string, string | null][] }
  | { op: 'delete'; key: string }
  | { op: 'range' | 'all' | 'flush' | 'close' | 'approximateNumEntries' };

/** Wraps a store and records every call (keys/values as utf8), for asserting what a layer passes down. */
export class RecordingStore implements BytesStore {
  readonly calls: Call[] = [];
  readonly name: string;
  constructor(readonly inner: BytesStore) {
    this.name = inner.name;
  }
  writes(): Call[] {
    return this.calls.filter((c) => c.op === 'put' || c.op === 'putAll' || c.op === 'delete');
  }
  reads(): Call[] {
    return this.calls.filter((c) => c.op === 'get' || c.op === 'getAll');
  }
  get(key: Buffer) {
    this.calls.push({ op: 'get', key: key.toString() });
    return this.inner.get(key);
  }
  getAll(keys: readonly Buffer[]) {
    this.calls.push({ op: 'getAll', keys: keys.map((k) => k.toString()) });
    return this.inner.getAll(keys);
  }
  put(key: Buffer, value: Buffer) {
    this.calls.push({ op: 'put', key: key.toString(), value: value.toString() });
    return this.inner.put(key, value);
  }
  putAll(entries: readonly (readonly [Buffer, Buffer | null])[]) {
    this.calls.push({
      op: 'putAll',
      entries: entries.map(([k, v]) => [k.toString(), v === null ? null : v.toString()]),
    });
    return this.inner.putAll(entries);
  }
  delete(key: Buffer) {
    this.calls.push({ op: 'delete', key: key.toString() });
    return this.inner.delete(key);
  }
  range(from?: Buffer, to?: Buffer) {
    this.calls.push({ op: 'range' });
    return this.inner.range(from, to);
  }
  all() {
    this.calls.push({ op: 'all' });
    return this.inner.all();
  }
  approximateNumEntries() {
    this.calls.push({ op: 'approximateNumEntries' });
    return this.inner.approximateNumEntries();
  }
  flush() {
    this.calls.push({ op: 'flush' });
    return this.inner.flush();
  }
  close() {
    this.calls.push({ op: 'close' });
    return this.inner.close();
  }
}
