import type { BytesStore, Entry } from './store.js';

export interface ChangelogSink {
  /** append a change record; value null = tombstone. Must not block; the runtime awaits delivery at commit. */
  log(key: Buffer, value: Buffer | null): void;
}

/**
 * Mirrors every write to a changelog: the inner store is written first, then each change is
 * handed to the sink in order. Reads pass straight through. If the inner write fails nothing
 * is logged, so the changelog never gets ahead of a store write that did not happen.
 */
export class ChangeLoggingStore implements BytesStore {
  readonly name: string;
  readonly inner: BytesStore;
  private readonly sink: ChangelogSink;

  constructor(inner: BytesStore, sink: ChangelogSink) {
    this.inner = inner;
    this.sink = sink;
    this.name = inner.name;
  }

  get(key: Buffer): Promise<Buffer | undefined> {
    return this.inner.get(key);
  }

  getAll(keys: readonly Buffer[]): Promise<(Buffer | undefined)[]> {
    return this.inner.getAll(keys);
  }

  async put(key: Buffer, value: Buffer): Promise<void> {
    await this.inner.put(key, value);
    this.sink.log(key, value);
  }

  async putAll(entries: readonly (readonly [Buffer, Buffer | null])[]): Promise<void> {
    if (entries.length === 0) return;
    await this.inner.putAll(entries);
    for (const [key, value] of entries) this.sink.log(key, value);
  }

  async delete(key: Buffer): Promise<void> {
    await this.inner.delete(key);
    this.sink.log(key, null);
  }

  range(from?: Buffer, to?: Buffer): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.inner.range(from, to);
  }

  all(): AsyncIterable<Entry<Buffer, Buffer>> {
    return this.inner.all();
  }

  approximateNumEntries(): Promise<number> {
    return this.inner.approximateNumEntries();
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
