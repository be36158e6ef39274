/**
 * kafkajs' Produce request (v3; v4–v7 reuse it), encoded in one pass into one buffer. kafkajs'
 * own encoder copies every message into a new object, encodes each record into an encoder of its
 * own and each varint into a Buffer of its own, then concatenates: with the per-record Buffer
 * copies it was ~8% of the service's CPU in `bench/run.ts throughput --profile` (issue 11).
 *
 * Same wire format, byte for byte (test/unit/runtime/kafkajs-produce-request.test.ts compares with
 * kafkajs' encoder), with one deliberate difference: a batch's first and max timestamps are the
 * numeric min and max of its records' timestamps (kafkajs sorts them as strings, which differs
 * only when they have different numbers of digits). Installed by kafkajs-preload.ts under kafkajs'
 * module name; compressed batches use kafkajs' codecs.
 *
 *   Produce Request (v3) => transactional_id acks timeout [topic [partition record_set]]
 *   record_set           => firstOffset:int64 length:int32 RecordBatch
 *   RecordBatch          => partitionLeaderEpoch:int32 magic:int8(2) crc:uint32 body
 *   body                 => attributes:int16 lastOffsetDelta:int32 firstTimestamp:int64
 *                           maxTimestamp:int64 producerId:int64 producerEpoch:int16
 *                           firstSequence:int32 count:int32 records (or their compressed bytes)
 *   Record               => length:varint attributes:int8 timestampDelta:varlong
 *                           offsetDelta:varint key:varbytes value:varbytes [header]
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
type KafkaEncoder = { writeBuffer(b: Buffer): KafkaEncoder; buffer: Buffer };
const Encoder = require('kafkajs/src/protocol/encoder.js') as new (initialSize?: number) => KafkaEncoder;
const { Produce: apiKey } = require('kafkajs/src/protocol/requests/apiKeys.js') as { Produce: number };
const { Types, lookupCodec } = require('kafkajs/src/protocol/message/compression/index.js') as {
  Types: { None: number };
  lookupCodec: (type: number) => { compress(encoder: KafkaEncoder): Promise<Buffer> } | null;
};
const crc32C = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
const Long = require('kafkajs/src/utils/long.js') as { fromValue(v: unknown): { toString(): string } };

const MAGIC_BYTE = 2;
const TRANSACTIONAL_MASK = 16;
const COMPRESSION_CODEC_MASK = 0x07;

type Value = Buffer | string | number | null | undefined;
interface Message {
  key?: Value;
  value?: Value;
  timestamp?: string | number | null;
  headers?: Record<string, Value | Value[]>;
}
interface PartitionData {
  partition: number;
  firstSequence?: number;
  messages: Message[];
}
interface TopicData {
  topic: string;
  partitions: PartitionData[];
}
export interface ProduceRequestArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: TopicData[];
}

/** Bytes of a zigzag varint (any safe integer, so also the varlongs). */
function varintSize(n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let size = 1;
  while (z >= 0x80) {
    z = Math.floor(z / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, offset: number, n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  while (z >= 0x80) {
    buf[offset++] = (z % 128) | 0x80;
    z = Math.floor(z / 128);
  }
  buf[offset++] = z;
  return offset;
}

/** header names as bytes: a few names on every record (bounded: names are not data) */
const headerKeys = new Map<string, Buffer>();
function headerKey(k: string): Buffer {
  let b = headerKeys.get(k);
  if (!b) {
    b = Buffer.from(k, 'utf8');
    if (headerKeys.size < 1024) headerKeys.set(k, b);
  }
  return b;
}

/** key, value and header values: bytes as kafkajs writes them (null → -1; other values as strings) */
function asBytes(v: Value): Buffer | null {
  if (v === null || v === undefined) return null;
  return Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'utf8');
}

interface EncodedRecord {
  bodySize: number;
  timestampDelta: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: [Buffer, Buffer | null][];
}

function bytesSize(b: Buffer | null): number {
  return b === null ? varintSize(-1) : varintSize(b.length) + b.length;
}

function writeBytes(buf: Buffer, offset: number, b: Buffer | null): number {
  if (b === null) return writeVarint(buf, offset, -1);
  offset = writeVarint(buf, offset, b.length);
  b.copy(buf, offset);
  return offset + b.length;
}

/** The records of one partition batch, without the batch header (as many as `messages`). */
function encodeRecords(messages: Message[], firstTimestamp: number, dateNow: number): Buffer {
  const recs: EncodedRecord[] = new Array(messages.length);
  let total = 0;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const key = asBytes(m.key);
    const value = asBytes(m.value);
    const headers: [Buffer, Buffer | null][] = [];
    if (m.headers)
      for (const k of Object.keys(m.headers)) {
        const hv = m.headers[k];
        const kb = headerKey(k);
        if (Array.isArray(hv)) for (const v of hv) headers.push([kb, asBytes(v)]);
        else headers.push([kb, asBytes(hv)]);
      }
    const timestampDelta = Number(m.timestamp || dateNow) - firstTimestamp;
    let bodySize = 1 + varintSize(timestampDelta) + varintSize(i) + bytesSize(key) + bytesSize(value);
    bodySize += varintSize(headers.length);
    for (const [hk, hv] of headers) bodySize += varintSize(hk.length) + hk.length + bytesSize(hv);
    recs[i] = { bodySize, timestampDelta, key, value, headers };
    total += varintSize(bodySize) + bodySize;
  }
  const buf = Buffer.allocUnsafe(total);
  let o = 0;
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]!;
    o = writeVarint(buf, o, r.bodySize);
    buf[o++] = 0; // record attributes: none
    o = writeVarint(buf, o, r.timestampDelta);
    o = writeVarint(buf, o, i);
    o = writeBytes(buf, o, r.key);
    o = writeBytes(buf, o, r.value);
    o = writeVarint(buf, o, r.headers.length);
    for (const [hk, hv] of r.headers) {
      o = writeVarint(buf, o, hk.length);
      hk.copy(buf, o);
      o += hk.length;
      o = writeBytes(buf, o, hv);
    }
  }
  return buf;
}

/** One partition's record_set: firstOffset, length and the RecordBatch. */
async function encodeRecordSet(
  p: PartitionData,
  opts: { compression: number; transactional: boolean; producerId: bigint; producerEpoch: number },
): Promise<Buffer> {
  const dateNow = Date.now();
  let first = Infinity;
  let max = -Infinity;
  for (const m of p.messages) {
    if (m.timestamp === null || m.timestamp === undefined) continue;
    const t = Number(m.timestamp);
    if (t < first) first = t;
    if (t > max) max = t;
  }
  if (first === Infinity) first = max = dateNow;
  let records = encodeRecords(p.messages, first, dateNow);
  const codec = opts.compression & COMPRESSION_CODEC_MASK;
  if (opts.compression !== Types.None) {
    const c = lookupCodec(opts.compression);
    if (!c) throw new Error(`unsupported compression ${opts.compression}`);
    records = await c.compress(new Encoder(records.length).writeBuffer(records));
  }
  const attributes = codec | (opts.transactional ? TRANSACTIONAL_MASK : 0);
  // body: 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4 (count) bytes, then the records
  const bodyStart = 8 + 4 + 4 + 1 + 4;
  const out = Buffer.allocUnsafe(bodyStart + 40 + records.length);
  let o = 0;
  out.writeBigInt64BE(0n, o); // firstOffset
  o += 8;
  out.writeInt32BE(out.length - 12, o); // length of what follows
  o += 4;
  out.writeInt32BE(0, o); // partitionLeaderEpoch
  o += 4;
  out.writeInt8(MAGIC_BYTE, o);
  o += 1;
  const crcAt = o;
  o += 4;
  out.writeInt16BE(attributes, o);
  o += 2;
  out.writeInt32BE(p.messages.length - 1, o); // lastOffsetDelta
  o += 4;
  out.writeBigInt64BE(BigInt(Math.trunc(first)), o);
  o += 8;
  out.writeBigInt64BE(BigInt(Math.trunc(max)), o);
  o += 8;
  out.writeBigInt64BE(opts.producerId, o);
  o += 8;
  out.writeInt16BE(opts.producerEpoch, o);
  o += 2;
  out.writeInt32BE(p.firstSequence ?? 0, o);
  o += 4;
  out.writeInt32BE(p.messages.length, o);
  o += 4;
  records.copy(out, o);
  out.writeUInt32BE(crc32C(out.subarray(bodyStart)), crcAt);
  return out;
}

/** Drop-in for kafkajs' `protocol/requests/produce/v3/request.js`. */
export function produceRequestV3({
  acks,
  timeout,
  transactionalId = null,
  producerId = -1,
  producerEpoch = 0,
  compression = Types.None,
  topicData,
}: ProduceRequestArgs) {
  return {
    apiKey,
    apiVersion: 3,
    apiName: 'Produce',
    expectResponse: () => acks !== 0,
    encode: async (): Promise<KafkaEncoder> => {
      const opts = {
        compression,
        transactional: !!transactionalId,
        producerId: BigInt(Long.fromValue(producerId).toString()),
        producerEpoch,
      };
      const parts: Buffer[] = [];
      const head = Buffer.allocUnsafe(
        2 + (transactionalId == null ? 0 : Buffer.byteLength(transactionalId)) + 2 + 4 + 4,
      );
      let o = 0;
      if (transactionalId == null) o = head.writeInt16BE(-1, o);
      else {
        o = head.writeInt16BE(Buffer.byteLength(transactionalId), o);
        o += head.write(transactionalId, o, 'utf8');
      }
      o = head.writeInt16BE(acks, o);
      o = head.writeInt32BE(timeout, o);
      head.writeInt32BE(topicData.length, o);
      parts.push(head);
      for (const t of topicData) {
        const name = Buffer.from(t.topic, 'utf8');
        const th = Buffer.allocUnsafe(2 + name.length + 4);
        th.writeInt16BE(name.length, 0);
        name.copy(th, 2);
        th.writeInt32BE(t.partitions.length, 2 + name.length);
        parts.push(th);
        for (const p of t.partitions) {
          const set = await encodeRecordSet(p, opts);
          const ph = Buffer.allocUnsafe(8);
          ph.writeInt32BE(p.partition, 0);
          ph.writeInt32BE(set.length, 4);
          parts.push(ph, set);
        }
      }
      const body = Buffer.concat(parts);
      return new Encoder(body.length).writeBuffer(body);
    },
  };
}
