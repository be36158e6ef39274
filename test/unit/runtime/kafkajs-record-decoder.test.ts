/**
 * The record decoder put in place of kafkajs' (runtime/kafkajs-record-decoder.ts) returns what
 * kafkajs' own returns (compiled here from its source file), for records encoded by kafkajs' own
 * encoder: null and empty keys and values, repeated header keys, timestamp deltas of every size and
 * sign (up to the ones left to Long arithmetic), offsets near 2^53 and beyond, log-append time,
 * control batches; and kafkajs' batch decoder uses it once the preload has run.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { decodeRecord, type BatchContext } from '../../../runtime/kafkajs-record-decoder.js';
import { kafkajsOriginal } from './kafkajs-original.js';

const require = createRequire(import.meta.url);

type Decoder = { offset: number; buffer: Buffer };
const KDecoder = require('kafkajs/src/protocol/decoder.js') as new (b: Buffer) => Decoder;
const encodeRecord = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: {
  offsetDelta?: number;
  timestampDelta?: unknown;
  key: Buffer | string | null;
  value: Buffer | string | null;
  headers?: Record<string, string | Buffer | (string | Buffer)[]>;
}) => { buffer: Buffer };
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): unknown; fromString(s: string): unknown };

const original = kafkajsOriginal<(d: Decoder, ctx: object) => Record<string, unknown>>(
  'kafkajs/src/protocol/recordBatch/record/v0/decoder.js',
);

/** Decodes one encoded record with both decoders (each from its own Decoder, the record's length read first). */
function both(
  encoded: Buffer,
  ctx: () => BatchContext,
): [Record<string, unknown>, Record<string, unknown>, number, number] {
  const a = new KDecoder(encoded) as Decoder & { readVarInt(): number };
  a.readVarInt();
  const b = new KDecoder(encoded) as Decoder & { readVarInt(): number };
  b.readVarInt();
  const theirs = original(a, ctx());
  const mine = decodeRecord(b as never, ctx()) as unknown as Record<string, unknown>;
  return [mine, theirs, b.offset, a.offset];
}

const ctxOf =
  (over: Partial<BatchContext> = {}) =>
  () =>
    ({
      firstOffset: '1234567',
      firstTimestamp: '1764000000000',
      magicByte: 2,
      isControlBatch: false,
      timestampType: 0,
      maxTimestamp: '1764000009999',
      ...over,
    }) as BatchContext;

describe('kafkajs record decoder without Longs', () => {
  it('returns what kafkajs returns: keys, values, headers, deltas of every size and sign', () => {
    const deltas = [
      0,
      1,
      -1,
      63,
      64,
      -64,
      -65,
      127,
      128,
      8191,
      8192,
      1_000_000,
      -1_000_000,
      2 ** 31,
      -(2 ** 31),
      2 ** 40,
      -(2 ** 40),
      2 ** 47 - 1,
      -(2 ** 47),
    ];
    const bodies: Parameters<typeof encodeRecord>[0][] = [
      { key: 'k', value: 'v' },
      { key: null, value: 'v' },
      { key: 'k', value: null },
      { key: Buffer.alloc(0), value: Buffer.alloc(0) },
      {
        key: 'clé-é',
        value: Buffer.from([0, 1, 2, 255]),
        headers: { a: '1', b: ['x', 'y', 'z'], 'dlq.source': Buffer.from('t') },
      },
      { key: 'k', value: 'v'.repeat(300), headers: { only: '' } },
    ];
    let n = 0;
    for (const timestampDelta of deltas)
      for (const [i, body] of bodies.entries()) {
        const offsetDelta = (i * 37 + n) % 5000;
        const enc = encodeRecord({ ...body, offsetDelta, timestampDelta: Long.fromValue(timestampDelta) }).buffer;
        const [mine, theirs, mineAt, theirsAt] = both(enc, ctxOf());
        expect(mine).toEqual(theirs);
        expect(mineAt).toBe(theirsAt);
        n++;
      }
    expect(n).toBe(deltas.length * bodies.length);
  });

  it('falls back to Long arithmetic beyond 2^53 and for long varlongs; log-append time; control batches', () => {
    const cases: [Partial<BatchContext>, unknown, number][] = [
      [{ firstOffset: '9007199254740990' }, 5, 10], // offset sum beyond 2^53
      [{ firstOffset: '18014398509481984' }, 5, 1], // base itself beyond 2^53
      [{ firstTimestamp: '9007199254740000' }, 5000, 1], // timestamp sum beyond 2^53
      [{}, Long.fromString('281474976710656'), 3], // 2^48: an 8-byte varlong
      [{}, Long.fromString('-4611686018427387904'), 3], // a 9-byte varlong
      [{ timestampType: 1 }, 12345, 2], // log-append time: the batch's max timestamp
      [{ isControlBatch: true }, 0, 0],
      [{ firstTimestamp: '-1' }, 0, 0], // no timestamp
    ];
    for (const [over, timestampDelta, offsetDelta] of cases) {
      const enc = encodeRecord({
        key: 'k',
        value: 'v',
        offsetDelta,
        timestampDelta: Long.fromValue(timestampDelta),
      }).buffer;
      const [mine, theirs, mineAt, theirsAt] = both(enc, ctxOf(over));
      expect(mine).toEqual(theirs);
      expect(mineAt).toBe(theirsAt);
    }
  });

  it('parses a batch base once, on the context the batch shares', () => {
    const ctx = ctxOf()();
    const enc = (d: number) =>
      encodeRecord({ key: 'k', value: 'v', offsetDelta: d, timestampDelta: Long.fromValue(d * 10) }).buffer;
    const offsets: unknown[] = [];
    for (let d = 0; d < 3; d++) {
      const dec = new KDecoder(enc(d)) as Decoder & { readVarInt(): number };
      dec.readVarInt();
      const r = decodeRecord(dec as never, ctx);
      offsets.push([r.offset, r.timestamp]);
      // a later change of the context's strings is not seen: the bases were taken at the first record
      ctx.firstOffset = '0';
    }
    expect(offsets).toEqual([
      ['1234567', '1764000000000'],
      ['1234568', '1764000000010'],
      ['1234569', '1764000000020'],
    ]);
  });

  it('is the decoder kafkajs uses after the preload', async () => {
    const { kafkajsRecordDecoderPatched } = await import('../../../runtime/kafkajs-preload.js');
    expect(kafkajsRecordDecoderPatched()).toBe(true);
  });
});
