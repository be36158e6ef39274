/**
 * kafkajs' decoder of one record of a record batch (`protocol/recordBatch/record/v0/decoder.js`),
 * with the same output, without 64-bit `Long` objects. kafkajs parses the batch's first offset and
 * first timestamp from their decimal strings for every record, adds the record's deltas as Longs
 * (its varlong reader builds a few Longs per byte) and prints the sums back to strings: on the
 * service's fetch path that was most of the decoding time and about a sixth of all allocations.
 * Here the batch's bases are parsed once per batch (kept on the batch context kafkajs shares among
 * its records) and the sums are plain numbers, exact up to 2^53 (offsets and millisecond
 * timestamps are far below it; anything larger falls back to kafkajs' Long arithmetic).
 *
 * Installed by kafkajs-preload.ts before kafkajs loads; the output (field names, string offsets and
 * timestamps, headers with repeated keys as arrays) is kafkajs' own, checked against kafkajs'
 * decoder by test/unit/runtime/kafkajs-record-decoder.test.ts.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface LongLike {
  add(o: LongLike | number | string): LongLike;
  toString(): string;
}
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: string | number): LongLike };
const LOG_APPEND_TIME = 1;

interface KafkaDecoder {
  buffer: Buffer;
  offset: number;
  readInt8(): number;
  readVarInt(): number;
  readVarIntString(): string | null;
  readVarIntBytes(): Buffer | null;
  readVarLong(): LongLike;
}

export interface BatchContext {
  firstOffset: string;
  firstTimestamp: string;
  magicByte?: number;
  isControlBatch?: boolean;
  timestampType?: number;
  maxTimestamp?: string;
  /** the parsed bases, cached on the context kafkajs shares among a batch's records */
  [BASES]?: { offset: number; timestamp: number };
}

const BASES = Symbol('record-bases');

/**
 * A zig-zag varlong as a number. Exact (|value| < 2^48: seven bytes) (a delta within a batch always is);
 * returns undefined for longer encodings (the caller reads it again as a Long).
 */
function readVarLongNumber(d: KafkaDecoder): number | undefined {
  const buf = d.buffer;
  let result = 0;
  let scale = 1;
  let b: number;
  let n = 0;
  do {
    if (n === 7) return undefined; // an 8th byte: beyond 2^49, left to Long
    b = buf[d.offset++]!;
    result += (b & 0x7f) * scale;
    scale *= 128;
    n++;
  } while (b >= 0x80);
  // zig-zag: even -> n/2, odd -> -(n+1)/2
  return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
}

/** The batch's bases as numbers (NaN when not exact: the Long path is taken then). */
function basesOf(ctx: BatchContext): { offset: number; timestamp: number } {
  let b = ctx[BASES];
  if (!b) {
    const exact = (s: string) => {
      const n = Number(s);
      return Number.isSafeInteger(n) ? n : NaN;
    };
    b = { offset: exact(ctx.firstOffset), timestamp: exact(ctx.firstTimestamp) };
    // not enumerable: the context is handed out with every record and must look as kafkajs made it
    Object.defineProperty(ctx, BASES, { value: b, enumerable: false });
  }
  return b;
}

function readHeaders(d: KafkaDecoder): Record<string, Buffer | null | (Buffer | null)[]> {
  const headers: Record<string, Buffer | null | (Buffer | null)[]> = {};
  const n = d.readVarInt();
  for (let i = 0; i < n; i++) {
    const key = d.readVarIntString() as string;
    const value = d.readVarIntBytes();
    const prev = headers[key];
    if (prev === undefined) headers[key] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else headers[key] = [prev, value];
  }
  return headers;
}

/** The module kafkajs requires as `../record/v0/decoder`. */
export function decodeRecord(decoder: KafkaDecoder, batchContext: BatchContext = {} as BatchContext) {
  const { magicByte, isControlBatch = false, timestampType, maxTimestamp } = batchContext;
  const attributes = decoder.readInt8();
  const at = decoder.offset;
  let tsDelta: number | LongLike | undefined = readVarLongNumber(decoder);
  if (tsDelta === undefined) {
    decoder.offset = at;
    tsDelta = decoder.readVarLong();
  }
  const offsetDelta = decoder.readVarInt();
  const bases = basesOf(batchContext);
  let timestamp: string;
  if (timestampType === LOG_APPEND_TIME && maxTimestamp) timestamp = maxTimestamp;
  else if (typeof tsDelta === 'number' && Number.isSafeInteger(bases.timestamp + tsDelta))
    timestamp = String(bases.timestamp + tsDelta);
  else timestamp = Long.fromValue(batchContext.firstTimestamp).add(tsDelta).toString();
  const off = bases.offset + offsetDelta;
  const offset = Number.isSafeInteger(off)
    ? String(off)
    : Long.fromValue(batchContext.firstOffset).add(offsetDelta).toString();
  const key = decoder.readVarIntBytes();
  const value = decoder.readVarIntBytes();
  const headers = readHeaders(decoder);
  return {
    magicByte,
    attributes,
    timestamp,
    offset,
    key,
    value,
    headers,
    isControlRecord: isControlBatch,
    batchContext,
  };
}
