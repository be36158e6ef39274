import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { StoreError } from '../errors.js';
import { StoreErrorCodes } from './store.js';

/**
 * Checkpoint files record, per changelog topic-partition, the offset up to which a store's
 * contents are known to be flushed (Kafka Streams' `.checkpoint`). Format:
 *
 *   { "version": 1, "offsets": { "app-store-changelog:0": 42 } }
 */
export const CHECKPOINT_VERSION = 1;

/** `topic:partition` */
export function tpKey(topic: string, partition: number): string {
  if (topic.length === 0) throw new StoreError(StoreErrorCodes.CHECKPOINT_INVALID, 'topic must not be empty');
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new StoreError(StoreErrorCodes.CHECKPOINT_INVALID, `invalid partition ${partition} for topic ${topic}`);
  }
  return `${topic}:${partition}`;
}

/** inverse of `tpKey`; splits on the last ':' (Kafka topic names cannot contain ':') */
export function parseTpKey(key: string): { topic: string; partition: number } {
  const i = key.lastIndexOf(':');
  const topic = i > 0 ? key.slice(0, i) : '';
  const part = i > 0 ? key.slice(i + 1) : '';
  if (topic.length === 0 || !/^\d+$/.test(part) || !Number.isSafeInteger(Number(part))) {
    throw new StoreError(StoreErrorCodes.CHECKPOINT_INVALID, `not a topic:partition key: ${JSON.stringify(key)}`);
  }
  return { topic, partition: Number(part) };
}

/**
 * Reads a checkpoint. `undefined` if the file does not exist; a `StoreError` with code
 * `CHECKPOINT_CORRUPT` if it cannot be read or is not a valid version-1 checkpoint.
 */
export async function readCheckpoint(file: string): Promise<Map<string, number> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw corrupt(file, `cannot read: ${(err as Error).message}`, err);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw corrupt(file, 'not valid JSON', err);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw corrupt(file, 'not a JSON object');
  const { version, offsets } = doc as { version?: unknown; offsets?: unknown };
  if (version !== CHECKPOINT_VERSION) throw corrupt(file, `unsupported version ${JSON.stringify(version)}`);
  if (typeof offsets !== 'object' || offsets === null || Array.isArray(offsets)) {
    throw corrupt(file, '"offsets" is not an object');
  }
  const result = new Map<string, number>();
  for (const [key, offset] of Object.entries(offsets)) {
    try {
      parseTpKey(key);
    } catch (err) {
      throw corrupt(file, `bad key ${JSON.stringify(key)}`, err);
    }
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
      throw corrupt(file, `bad offset for ${key}: ${JSON.stringify(offset)}`);
    }
    result.set(key, offset);
  }
  return result;
}

/**
 * Writes a checkpoint atomically: a temp file in the same directory is written and fsynced,
 * renamed over `file`, and the directory is fsynced so the rename itself is durable.
 */
export async function writeCheckpoint(file: string, offsets: ReadonlyMap<string, number>): Promise<void> {
  const sorted: Record<string, number> = {};
  for (const key of [...offsets.keys()].sort()) {
    const offset = offsets.get(key)!;
    parseTpKey(key);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new StoreError(StoreErrorCodes.CHECKPOINT_INVALID, `invalid offset ${offset} for ${key}`);
    }
    sorted[key] = offset;
  }
  const body = JSON.stringify({ version: CHECKPOINT_VERSION, offsets: sorted }) + '\n';

  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true });
    const handle = await open(tmp, 'w', 0o644);
    try {
      await handle.writeFile(body, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
    await fsyncDir(dir);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new StoreError(
      StoreErrorCodes.CHECKPOINT_WRITE_FAILED,
      `cannot write checkpoint ${file}: ${(err as Error).message}`,
      {
        retriable: true,
        cause: err,
      },
    );
  }
}

async function fsyncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
  } catch {
    return; // some platforms (Windows) cannot open directories; the rename is still atomic
  }
  try {
    await handle.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    await handle.close();
  }
}

function corrupt(file: string, detail: string, cause?: unknown): StoreError {
  return new StoreError(StoreErrorCodes.CHECKPOINT_CORRUPT, `checkpoint ${file} is unreadable: ${detail}`, { cause });
}
