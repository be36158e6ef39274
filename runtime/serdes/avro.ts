/**
 * Avro values in the Confluent wire format, with schemas in a registry:
 *
 *   byte 0      magic byte 0
 *   bytes 1-4   schema id, big-endian int32
 *   bytes 5-    the Avro binary encoding of the value, written with that schema
 *
 * We write with our own schema (registered, or verified, at `init()`). We read anything written
 * with a schema the registry knows and that resolves to ours (Avro schema resolution): a record
 * written with an older version gets the defaults of the fields it lacks, a record written with a
 * newer version loses the fields we do not know. Writer schemas are fetched in `prepare()` (once
 * per id, in parallel), so `deserialize` never waits.
 *
 * Timestamps (`timestamp-millis`) stay `number` epoch millis; `long` values must be within ±2^53.
 *
 * Errors (SerdeError codes): RECORD_TOO_LARGE, RECORD_TRUNCATED, BAD_MAGIC_BYTE, UNKNOWN_SCHEMA_ID,
 * SCHEMA_UNRESOLVABLE, AVRO_DECODE, AVRO_ENCODE; at init, the registry client's codes
 * (SCHEMA_INCOMPATIBLE, SCHEMA_NOT_REGISTERED, ...). Messages never include field values (they may
 * be personal data), only paths and types.
 */
import avro from 'avsc';
import type { Resolver, Type } from 'avsc';
import { ConfigError, IllegalStateError, SerdeError } from '../errors.js';
import type { Serde } from '../serdes.js';
import { AVRO_TYPE_OPTIONS, type RegistryClient } from './registry.js';

export const MAGIC_BYTE = 0;
export const HEADER_SIZE = 5;
export const DEFAULT_MAX_BYTES = 1024 * 1024;

export interface AvroSerdeOptions {
  registry: RegistryClient;
  /** The subject of our schema; TopicNameStrategy: `<topic>-value`. */
  subject: string;
  /** Our schema (the current version): the one we write with and read into. */
  schema: object;
  /** Register the schema at init (default), or only verify that the subject holds it. */
  register?: boolean;
  /** Largest record accepted (and produced), header included. Default 1 MiB. */
  maxBytes?: number;
}

export type AvroSerde<T> = Serde<T> & {
  init(): Promise<void>;
  prepare(data: readonly (Buffer | null)[]): Promise<void>;
  /** The registry id of our schema (after init). */
  schemaId(): number;
};

/** How to read the body of a record written with some schema id. */
type Reader =
  | { kind: 'direct' } // same schema as ours (canonically): no resolution needed
  | { kind: 'resolve'; resolver: Resolver }
  | { kind: 'unresolvable'; message: string }
  | { kind: 'unknown'; message: string }; // not in the registry when last asked (re-asked next batch)

export function avroSerde<T>(opts: AvroSerdeOptions): AvroSerde<T> {
  const { registry, subject } = opts;
  const register = opts.register ?? true;
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (typeof subject !== 'string' || subject === '') throw new ConfigError('subject', 'must be a non-empty string');
  if (!Number.isInteger(maxBytes) || maxBytes < HEADER_SIZE)
    throw new ConfigError('maxBytes', `must be an integer >= ${HEADER_SIZE}, got ${maxBytes}`);

  let type: Type;
  try {
    type = avro.Type.forSchema(opts.schema as avro.Schema, { ...AVRO_TYPE_OPTIONS });
  } catch (e) {
    throw new ConfigError('schema', `invalid Avro schema for subject ${subject}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const schemaJson = JSON.stringify(opts.schema);

  let ownId: number | undefined;
  let initializing: Promise<void> | undefined;
  const readers = new Map<number, Reader>();
  let scratch = Buffer.allocUnsafe(Math.min(4096, maxBytes));

  function readerFor(id: number, writer: Type): Reader {
    if (writer.equals(type)) return { kind: 'direct' };
    try {
      return { kind: 'resolve', resolver: type.createResolver(writer) };
    } catch (e) {
      return {
        kind: 'unresolvable',
        message: `schema id ${id} cannot be read as the schema of subject ${subject}: ${(e as Error).message}`,
      };
    }
  }

  async function doInit(): Promise<void> {
    const id = register ? await registry.register(subject, schemaJson) : await registry.lookup(subject, schemaJson);
    ownId = id;
    readers.set(id, { kind: 'direct' });
  }

  function encodeError(topic: string, value: unknown, cause: unknown): SerdeError {
    let first: string | undefined;
    try {
      type.isValid(value, {
        errorHook: (path: string[], v: unknown, t: Type) => {
          if (first === undefined)
            first = `field ${path.length ? path.join('.') : '<root>'} (${describeValue(v)} is not a valid ${typeName(t)})`;
        },
      });
    } catch {
      // diagnosis is best effort
    }
    const why = first ?? (cause as Error)?.message ?? String(cause);
    return new SerdeError('AVRO_ENCODE', `value for ${topic} does not match the schema of subject ${subject}: ${why}`, {
      cause,
    });
  }

  return {
    init() {
      initializing ??= doInit().catch((e: unknown) => {
        initializing = undefined;
        throw e;
      });
      return initializing;
    },

    schemaId() {
      if (ownId === undefined)
        throw new IllegalStateError(`avro serde for subject ${subject}: schemaId() before init()`);
      return ownId;
    },

    async prepare(batch) {
      const wanted = new Set<number>();
      for (const b of batch) {
        if (!b || b.length < HEADER_SIZE || b.length > maxBytes || b[0] !== MAGIC_BYTE) continue;
        const id = b.readInt32BE(1);
        const known = readers.get(id);
        if (!known || known.kind === 'unknown') wanted.add(id);
      }
      if (wanted.size === 0) return;
      const ids = [...wanted];
      const results = await Promise.allSettled(ids.map((id) => registry.schemaById(id)));
      let failure: unknown;
      results.forEach((r, i) => {
        const id = ids[i]!;
        if (r.status === 'fulfilled') readers.set(id, readerFor(id, r.value));
        else if (r.reason instanceof SerdeError && r.reason.code === 'UNKNOWN_SCHEMA_ID')
          readers.set(id, { kind: 'unknown', message: r.reason.message });
        else if (r.reason instanceof SerdeError) readers.set(id, { kind: 'unresolvable', message: r.reason.message });
        else failure ??= r.reason; // registry unavailable: the batch cannot be decoded now
      });
      if (failure !== undefined) throw failure;
    },

    serialize(topic, value) {
      const id = ownId;
      if (id === undefined) throw new IllegalStateError(`avro serde for subject ${subject}: serialize() before init()`);
      let end: number;
      for (;;) {
        try {
          end = type.encode(value, scratch, HEADER_SIZE);
        } catch (e) {
          throw encodeError(topic, value, e);
        }
        if (end >= 0) break;
        // avsc returns minus the number of missing bytes: grow the scratch buffer and encode again
        const needed = scratch.length - end;
        if (needed > maxBytes)
          throw new SerdeError(
            'RECORD_TOO_LARGE',
            `value for ${topic} (subject ${subject}) encodes to ${needed} bytes, more than maxBytes=${maxBytes}`,
          );
        scratch = Buffer.allocUnsafe(Math.min(maxBytes, Math.max(needed, scratch.length * 2)));
      }
      const out = Buffer.allocUnsafe(end);
      scratch.copy(out, HEADER_SIZE, HEADER_SIZE, end);
      out[0] = MAGIC_BYTE;
      out.writeInt32BE(id, 1);
      return out;
    },

    deserialize(topic, data) {
      const len = data.length;
      if (len > maxBytes)
        throw new SerdeError('RECORD_TOO_LARGE', `record on ${topic} is ${len} bytes, more than maxBytes=${maxBytes}`);
      if (len < HEADER_SIZE)
        throw new SerdeError(
          'RECORD_TRUNCATED',
          `record on ${topic} is ${len} bytes, shorter than the ${HEADER_SIZE}-byte header`,
        );
      if (data[0] !== MAGIC_BYTE)
        throw new SerdeError(
          'BAD_MAGIC_BYTE',
          `record on ${topic} starts with byte ${data[0]}, not the Confluent magic byte 0`,
        );
      const id = data.readInt32BE(1);
      const reader = readers.get(id);
      let resolver: Resolver | undefined;
      if (reader === undefined)
        throw new SerdeError('UNKNOWN_SCHEMA_ID', `record on ${topic} has schema id ${id}, which was not prepared`);
      switch (reader.kind) {
        case 'direct':
          break;
        case 'resolve':
          resolver = reader.resolver;
          break;
        case 'unknown':
          throw new SerdeError('UNKNOWN_SCHEMA_ID', `record on ${topic}: ${reader.message}`);
        case 'unresolvable':
          throw new SerdeError('SCHEMA_UNRESOLVABLE', `record on ${topic}: ${reader.message}`);
      }
      let result: { value: unknown; offset: number };
      try {
        result = type.decode(data, HEADER_SIZE, resolver);
      } catch (e) {
        throw new SerdeError(
          'AVRO_DECODE',
          `record on ${topic} (schema id ${id}) is not valid Avro for subject ${subject}: ${(e as Error).message}`,
          { cause: e },
        );
      }
      if (result.offset === -1)
        throw new SerdeError('RECORD_TRUNCATED', `record on ${topic} (schema id ${id}) ends before its Avro body does`);
      if (result.offset !== len)
        throw new SerdeError(
          'AVRO_DECODE',
          `record on ${topic} (schema id ${id}) has ${len - result.offset} bytes after its Avro body`,
        );
      return result.value as T;
    },
  };
}

/** The type of a value, never the value itself (it may be personal data). */
function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined (missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (Buffer.isBuffer(v)) return 'a Buffer';
  if (typeof v === 'number')
    return Number.isInteger(v)
      ? Number.isSafeInteger(v)
        ? 'an integer'
        : 'an unsafe integer'
      : 'a non-integer number';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function typeName(t: Type): string {
  const n = (t as { name?: string }).name;
  return n ? `${t.typeName} ${n}` : t.typeName;
}
