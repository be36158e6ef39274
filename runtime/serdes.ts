/**
 * Serializers and deserializers. A serde is synchronous on the hot path; anything that needs I/O
 * (a schema registry look-up) happens in `init()` (at start, for the schemas we write) or in
 * `prepare()` (once per batch, for writer schemas not yet seen), so a batch is decoded without an
 * await per record.
 */
import { SerdeError } from './errors.js';

export interface Serde<T> {
  /** Called once at start (register or verify schemas, open clients). */
  init?(): Promise<void>;
  /** Called with a batch of raw values before `deserialize` is called on them (warm caches). */
  prepare?(data: readonly (Buffer | null)[]): Promise<void>;
  serialize(topic: string, value: T): Buffer;
  /** Throws SerdeError (with a code) on bad input. */
  deserialize(topic: string, data: Buffer): T;
}

export const stringSerde: Serde<string> = {
  serialize: (_t, v) => Buffer.from(v, 'utf8'),
  deserialize: (_t, b) => b.toString('utf8'),
};

export const bufferSerde: Serde<Buffer> = {
  serialize: (_t, v) => v,
  deserialize: (_t, b) => b,
};

/** JSON values; bad JSON raises SerdeError JSON_INVALID. Meant for tests and internal topics. */
export function jsonSerde<T>(): Serde<T> {
  return {
    serialize: (_t, v) => Buffer.from(JSON.stringify(v), 'utf8'),
    deserialize: (topic, b) => {
      try {
        return JSON.parse(b.toString('utf8')) as T;
      } catch (e) {
        throw new SerdeError('JSON_INVALID', `record on ${topic} is not valid JSON`, { cause: e });
      }
    },
  };
}

/** 64-bit integers as 8 bytes big-endian (numbers within Number.MAX_SAFE_INTEGER). */
export const longSerde: Serde<number> = {
  serialize: (_t, v) => {
    const b = Buffer.allocUnsafe(8);
    b.writeBigInt64BE(BigInt(v));
    return b;
  },
  deserialize: (topic, b) => {
    if (b.length !== 8) throw new SerdeError('LONG_SIZE', `record on ${topic} is ${b.length} bytes, a long is 8`);
    return Number(b.readBigInt64BE());
  },
};

/**
 * A serde whose deserialized values must pass `check` (which throws a StreamsError with a code,
 * e.g. a ProcessingError): a value that fails raises SerdeError with that code, so the record is
 * treated as undecodable (dead-lettered, or skipped by a global table, where the last good value
 * of the key stays in force). Serialization is not checked.
 */
export function validatedSerde<T>(inner: Serde<T>, check: (value: T) => void): Serde<T> {
  return {
    ...(inner.init ? { init: () => inner.init!() } : {}),
    ...(inner.prepare ? { prepare: (d: readonly (Buffer | null)[]) => inner.prepare!(d) } : {}),
    serialize: (topic, value) => inner.serialize(topic, value),
    deserialize: (topic, data) => {
      const value = inner.deserialize(topic, data);
      try {
        check(value);
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        throw new SerdeError(
          typeof code === 'string' ? code : 'INVALID_VALUE',
          `record on ${topic}: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      }
      return value;
    },
  };
}
