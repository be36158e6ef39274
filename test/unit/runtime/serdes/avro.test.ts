/**
 * The Avro serde without a registry: wire format, every error code, schema resolution both ways,
 * and how prepare() fetches writer schemas. A tiny in-memory RegistryClient stands in for the
 * registry (the real one is exercised in test/integration/avro-serde.test.ts).
 */
import avro from 'avsc';
import type { Type } from 'avsc';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, IllegalStateError, SerdeError, StreamsError } from '../../../../runtime/errors.js';
import { avroSerde, DEFAULT_MAX_BYTES } from '../../../../runtime/serdes/avro.js';
import type { RegistryClient } from '../../../../runtime/serdes/registry.js';

/**
 * An in-memory RegistryClient. Ids are per distinct schema text, like a registry's content ids. It
 * counts look-ups and measures how many ran at once.
 */
class FakeRegistry implements RegistryClient {
  private nextId = 100;
  private readonly byText = new Map<string, number>();
  private readonly texts = new Map<number, string>();
  private readonly subjects = new Map<string, number[]>();
  /** ids whose look-up fails with a (retriable) outage error */
  readonly failing = new Set<number>();
  /** ids that are, say, JSON Schemas */
  readonly notAvro = new Set<number>();
  readonly lookups: number[] = [];
  inFlight = 0;
  maxInFlight = 0;

  /** Adds a schema to the registry (under `subject` when given) and returns its id. */
  add(schema: object | string, subject?: string): number {
    const text = typeof schema === 'string' ? schema : JSON.stringify(schema);
    let id = this.byText.get(text);
    if (id === undefined) {
      id = this.nextId++;
      this.byText.set(text, id);
      this.texts.set(id, text);
    }
    if (subject !== undefined) {
      const versions = this.subjects.get(subject) ?? [];
      if (!versions.includes(id)) versions.push(id);
      this.subjects.set(subject, versions);
    }
    return id;
  }

  async register(subject: string, schema: object | string): Promise<number> {
    return this.add(schema, subject);
  }

  async lookup(subject: string, schema: object | string): Promise<number> {
    const text = typeof schema === 'string' ? schema : JSON.stringify(schema);
    const id = this.byText.get(text);
    if (id === undefined || !this.subjects.get(subject)?.includes(id))
      throw new SerdeError('SCHEMA_NOT_REGISTERED', `schema is not registered under subject ${subject}`);
    return id;
  }

  async schemaById(id: number): Promise<Type> {
    this.lookups.push(id);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, 5));
      if (this.failing.has(id)) throw new StreamsError('REGISTRY_UNAVAILABLE', 'registry down', { retriable: true });
      if (this.notAvro.has(id)) throw new SerdeError('SCHEMA_NOT_AVRO', `schema id ${id} is not an Avro schema`);
      const text = this.texts.get(id);
      if (text === undefined) throw new SerdeError('UNKNOWN_SCHEMA_ID', `schema id ${id} is not in the registry`);
      return avro.Type.forSchema(JSON.parse(text) as avro.Schema);
    } finally {
      this.inFlight--;
    }
  }

  async latestId(subject: string): Promise<number> {
    const v = this.subjects.get(subject);
    if (!v?.length) throw new SerdeError('SUBJECT_NOT_FOUND', `subject ${subject} not found`);
    return v[v.length - 1]!;
  }
}

const SUBJECT = 'mail-value';
const TOPIC = 'mail';

const v1 = {
  type: 'record',
  name: 'Mail',
  namespace: 'unwantedmail.test',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'n', type: 'int' },
    { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } },
    {
      name: 'sender',
      type: {
        type: 'record',
        name: 'Sender',
        fields: [{ name: 'address', type: 'string' }],
      },
    },
  ],
};
/** v1 plus two optional fields with defaults (a BACKWARD-compatible evolution). */
const v2 = {
  ...v1,
  fields: [
    ...v1.fields,
    { name: 'subject', type: ['null', 'string'], default: null },
    { name: 'score', type: 'double', default: 0.5 },
  ],
};
/** `n` changed from int to string: cannot be read as v1. */
const unrelated = {
  ...v1,
  fields: [
    { name: 'id', type: 'string' },
    { name: 'n', type: 'string' },
  ],
};

interface MailV1 {
  id: string;
  n: number;
  at: number;
  sender: { address: string };
}
interface MailV2 extends MailV1 {
  subject: string | null;
  score: number;
}

const mail1: MailV1 = { id: 'm1', n: 7, at: 1_700_000_000_123, sender: { address: 'alice@example.com' } };
const mail2: MailV2 = { ...mail1, subject: 'hello', score: 0.9 };

/** Confluent framing around an Avro body. */
function frame(id: number, body: Buffer, magic = 0): Buffer {
  const h = Buffer.alloc(5);
  h[0] = magic;
  h.writeInt32BE(id, 1);
  return Buffer.concat([h, body]);
}

/** Bytes written by another producer with `schema`, registered in `reg`. */
function writtenWith(reg: FakeRegistry, schema: object, value: unknown): Buffer {
  const id = reg.add(schema, SUBJECT);
  return frame(id, avro.Type.forSchema(schema as avro.Schema).toBuffer(value));
}

function zigzagVarint(n: bigint): Buffer {
  let z = n >= 0n ? n << 1n : (-n << 1n) - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number((z & 0x7fn) | 0x80n));
    z >>= 7n;
  }
  out.push(Number(z));
  return Buffer.from(out);
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SerdeError) return e.code;
    throw e;
  }
  throw new Error('expected a SerdeError, nothing was thrown');
}

function errorOf(fn: () => unknown): SerdeError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SerdeError) return e;
    throw e;
  }
  throw new Error('expected a SerdeError, nothing was thrown');
}

async function ready<T>(schema: object, reg = new FakeRegistry(), extra: { maxBytes?: number } = {}) {
  const serde = avroSerde<T>({ registry: reg, subject: SUBJECT, schema, ...extra });
  await serde.init();
  return { serde, reg };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('avroSerde: configuration and init', () => {
  it('refuses an invalid schema or maxBytes at construction', () => {
    const reg = new FakeRegistry();
    expect(() => avroSerde({ registry: reg, subject: SUBJECT, schema: { type: 'record', name: 'X' } })).toThrow(
      ConfigError,
    );
    expect(() => avroSerde({ registry: reg, subject: SUBJECT, schema: v1, maxBytes: 4 })).toThrow(/maxBytes/);
    expect(() => avroSerde({ registry: reg, subject: '', schema: v1 })).toThrow(ConfigError);
  });

  it('registers the schema at init and remembers its id', async () => {
    const reg = new FakeRegistry();
    const serde = avroSerde<MailV1>({ registry: reg, subject: SUBJECT, schema: v1 });
    expect(() => serde.schemaId()).toThrow(IllegalStateError);
    expect(() => serde.serialize(TOPIC, mail1)).toThrow(IllegalStateError);
    await serde.init();
    expect(serde.schemaId()).toBe(await reg.latestId(SUBJECT));
    expect(await reg.lookup(SUBJECT, v1)).toBe(serde.schemaId());
  });

  it('with register: false, only verifies the schema is there', async () => {
    const reg = new FakeRegistry();
    const missing = avroSerde({ registry: reg, subject: SUBJECT, schema: v1, register: false });
    await expect(missing.init()).rejects.toMatchObject({ code: 'SCHEMA_NOT_REGISTERED' });
    await expect(reg.latestId(SUBJECT)).rejects.toMatchObject({ code: 'SUBJECT_NOT_FOUND' }); // nothing registered
    const id = reg.add(v1, SUBJECT);
    const present = avroSerde({ registry: reg, subject: SUBJECT, schema: v1, register: false });
    await present.init();
    expect(present.schemaId()).toBe(id);
  });
});

describe('avroSerde: wire format and round trip', () => {
  it('writes magic byte 0, the big-endian schema id, then the Avro body', async () => {
    const { serde } = await ready<MailV1>(v1);
    const bytes = serde.serialize(TOPIC, mail1);
    expect(bytes[0]).toBe(0);
    expect(bytes.readInt32BE(1)).toBe(serde.schemaId());
    expect(bytes.subarray(5)).toEqual(avro.Type.forSchema(v1 as avro.Schema).toBuffer(mail1));
    expect(serde.deserialize(TOPIC, bytes)).toEqual(mail1);
  });

  it('keeps timestamp-millis as a number, not a Date', async () => {
    const { serde } = await ready<MailV1>(v1);
    const back = serde.deserialize(TOPIC, serde.serialize(TOPIC, mail1));
    expect(typeof back.at).toBe('number');
    expect(back.at).toBe(1_700_000_000_123);
  });

  it('round-trips values larger than the initial scratch buffer', async () => {
    const { serde } = await ready<MailV1>(v1);
    const big = { ...mail1, id: 'x'.repeat(200_000) };
    const bytes = serde.serialize(TOPIC, big);
    expect(bytes.length).toBeGreaterThan(200_000);
    expect(serde.deserialize(TOPIC, bytes)).toEqual(big);
    // and a small one after it is not polluted by the bigger one
    expect(serde.deserialize(TOPIC, serde.serialize(TOPIC, mail1))).toEqual(mail1);
  });

  it('does not validate separately on the happy path', async () => {
    const { serde } = await ready<MailV1>(v1);
    const isValid = vi.spyOn(avro.Type.prototype, 'isValid');
    serde.serialize(TOPIC, mail1);
    expect(isValid).not.toHaveBeenCalled();
  });
});

describe('avroSerde: serialize errors', () => {
  it('AVRO_ENCODE names the subject and the first invalid field path, never the value', async () => {
    const { serde } = await ready<MailV1>(v1);
    const bad = { ...mail1, sender: { address: 42 } } as unknown as MailV1;
    const e = errorOf(() => serde.serialize(TOPIC, bad));
    expect(e.code).toBe('AVRO_ENCODE');
    expect(e.message).toContain(SUBJECT);
    expect(e.message).toContain('sender.address');
    const missing = { ...mail1, id: undefined } as unknown as MailV1;
    const e2 = errorOf(() => serde.serialize(TOPIC, missing));
    expect(e2.code).toBe('AVRO_ENCODE');
    expect(e2.message).toMatch(/field id \(undefined/);
    expect(e2.message).not.toContain('alice@example.com');
    // two invalid fields: the first one (in schema order) is named
    const twoBad = { ...mail1, n: 'seven', sender: { address: 42 } } as unknown as MailV1;
    const e3 = errorOf(() => serde.serialize(TOPIC, twoBad));
    expect(e3.message).toMatch(/field n \(a string is not a valid int\)/);
    expect(e3.message).not.toContain('sender.address');
  });

  it('AVRO_ENCODE for a long outside the safe integer range, and for a non-object', async () => {
    const { serde } = await ready<MailV1>(v1);
    expect(codeOf(() => serde.serialize(TOPIC, { ...mail1, at: 2 ** 60 }))).toBe('AVRO_ENCODE');
    expect(errorOf(() => serde.serialize(TOPIC, null as unknown as MailV1)).message).toContain('<root>');
  });

  it('RECORD_TOO_LARGE when the encoding exceeds maxBytes', async () => {
    const { serde } = await ready<MailV1>(v1, new FakeRegistry(), { maxBytes: 64 });
    expect(serde.serialize(TOPIC, mail1).length).toBeLessThanOrEqual(64);
    expect(codeOf(() => serde.serialize(TOPIC, { ...mail1, id: 'y'.repeat(100) }))).toBe('RECORD_TOO_LARGE');
  });
});

describe('avroSerde: deserialize errors', () => {
  it('RECORD_TOO_LARGE is checked before anything else', async () => {
    const { serde } = await ready<MailV1>(v1, new FakeRegistry(), { maxBytes: 100 });
    expect(codeOf(() => serde.deserialize(TOPIC, Buffer.alloc(101, 0xff)))).toBe('RECORD_TOO_LARGE');
    expect(DEFAULT_MAX_BYTES).toBe(1024 * 1024);
    const { serde: dflt } = await ready<MailV1>(v1);
    expect(codeOf(() => dflt.deserialize(TOPIC, Buffer.alloc(DEFAULT_MAX_BYTES + 1)))).toBe('RECORD_TOO_LARGE');
  });

  it('RECORD_TRUNCATED for fewer than 5 bytes, or a body that ends early', async () => {
    const { serde } = await ready<MailV1>(v1);
    expect(codeOf(() => serde.deserialize(TOPIC, Buffer.alloc(0)))).toBe('RECORD_TRUNCATED');
    expect(codeOf(() => serde.deserialize(TOPIC, Buffer.from([0, 0, 0, 0])))).toBe('RECORD_TRUNCATED');
    const bytes = serde.serialize(TOPIC, mail1);
    expect(codeOf(() => serde.deserialize(TOPIC, bytes.subarray(0, bytes.length - 3)))).toBe('RECORD_TRUNCATED');
    expect(codeOf(() => serde.deserialize(TOPIC, bytes.subarray(0, 5)))).toBe('RECORD_TRUNCATED');
  });

  it('BAD_MAGIC_BYTE', async () => {
    const { serde } = await ready<MailV1>(v1);
    const bytes = Buffer.from(serde.serialize(TOPIC, mail1));
    bytes[0] = 1;
    const e = errorOf(() => serde.deserialize(TOPIC, bytes));
    expect(e.code).toBe('BAD_MAGIC_BYTE');
    expect(e.message).toContain(TOPIC);
  });

  it('UNKNOWN_SCHEMA_ID for an id that was not prepared, or that the registry does not know', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    const body = avro.Type.forSchema(v1 as avro.Schema).toBuffer(mail1);
    const other = writtenWith(reg, v2, mail2);
    expect(errorOf(() => serde.deserialize(TOPIC, other)).message).toMatch(/not prepared/);
    const ghost = frame(999_999, body);
    await expect(serde.prepare([ghost])).resolves.toBeUndefined(); // prepare does not throw for it
    const e = errorOf(() => serde.deserialize(TOPIC, ghost));
    expect(e.code).toBe('UNKNOWN_SCHEMA_ID');
    expect(e.message).toMatch(/999999.*not in the registry/);
  });

  it('SCHEMA_UNRESOLVABLE for a writer schema that cannot be read as ours (cached per id)', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    const bytes = writtenWith(reg, unrelated, { id: 'a', n: 'b' });
    await serde.prepare([bytes]);
    const e = errorOf(() => serde.deserialize(TOPIC, bytes));
    expect(e.code).toBe('SCHEMA_UNRESOLVABLE');
    expect(e.message).toContain(String(bytes.readInt32BE(1)));
    const before = reg.lookups.length;
    await serde.prepare([bytes]);
    expect(reg.lookups.length).toBe(before); // schemas by id never change: not asked again
  });

  it('SCHEMA_UNRESOLVABLE for a schema id that is not Avro', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    const bytes = writtenWith(reg, v2, mail2);
    reg.notAvro.add(bytes.readInt32BE(1));
    await serde.prepare([bytes]);
    expect(codeOf(() => serde.deserialize(TOPIC, bytes))).toBe('SCHEMA_UNRESOLVABLE');
  });

  it('AVRO_DECODE for trailing bytes, an invalid union index, or a long beyond 2^53', async () => {
    const { serde } = await ready<MailV1>(v1);
    const bytes = serde.serialize(TOPIC, mail1);
    const trailing = errorOf(() => serde.deserialize(TOPIC, Buffer.concat([bytes, Buffer.from([1, 2])])));
    expect(trailing.code).toBe('AVRO_DECODE');
    expect(trailing.message).toMatch(/2 bytes after/);

    const { serde: s2 } = await ready<MailV2>(v2);
    // id "m", n 1, at 0, sender "a", then union index 7 (there are 2 branches)
    const badUnion = Buffer.concat([
      Buffer.from([2, 0x6d]),
      zigzagVarint(1n),
      zigzagVarint(0n),
      Buffer.from([2, 0x61]),
      zigzagVarint(7n),
    ]);
    expect(codeOf(() => s2.deserialize(TOPIC, frame(s2.schemaId(), badUnion)))).toBe('AVRO_DECODE');

    const hugeLong = Buffer.concat([
      Buffer.from([2, 0x6d]),
      zigzagVarint(1n),
      zigzagVarint(1n << 60n),
      Buffer.from([2, 0x61]),
    ]);
    const e = errorOf(() => serde.deserialize(TOPIC, frame(serde.schemaId(), hugeLong)));
    expect(e.code).toBe('AVRO_DECODE');
    expect(e.message).toMatch(/precision/);
  });

  it('every error is a non-retriable SerdeError', async () => {
    const { serde } = await ready<MailV1>(v1, new FakeRegistry(), { maxBytes: 50 });
    for (const data of [Buffer.alloc(51), Buffer.alloc(2), Buffer.from([9, 0, 0, 0, 1, 0])]) {
      try {
        serde.deserialize(TOPIC, data);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(SerdeError);
        expect((e as SerdeError).retriable).toBe(false);
      }
    }
  });
});

describe('avroSerde: schema resolution', () => {
  it('older writer -> newer reader: the missing optional fields get their defaults', async () => {
    const { serde, reg } = await ready<MailV2>(v2);
    const old = writtenWith(reg, v1, mail1);
    expect(old.readInt32BE(1)).not.toBe(serde.schemaId());
    await serde.prepare([old]);
    expect(serde.deserialize(TOPIC, old)).toEqual({ ...mail1, subject: null, score: 0.5 });
  });

  it('newer writer -> older reader: the unknown fields are dropped', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    const newer = writtenWith(reg, v2, mail2);
    await serde.prepare([newer]);
    const back = serde.deserialize(TOPIC, newer);
    expect(back).toEqual(mail1);
    expect(back).not.toHaveProperty('subject');
  });

  it('a writer schema equal to ours under another id decodes directly', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    // same canonical schema, different text (a doc string) -> a different id
    const withDoc = { ...v1, doc: 'the same record' };
    const bytes = writtenWith(reg, withDoc, mail1);
    expect(bytes.readInt32BE(1)).not.toBe(serde.schemaId());
    await serde.prepare([bytes]);
    expect(serde.deserialize(TOPIC, bytes)).toEqual(mail1);
  });
});

describe('avroSerde: prepare', () => {
  it('fetches each distinct unknown id once, in parallel, and skips our own id, nulls and junk', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    const a = writtenWith(reg, v2, mail2);
    const b = writtenWith(reg, { ...v1, doc: 'b' }, mail1);
    const own = serde.serialize(TOPIC, mail1);
    await serde.prepare([a, null, b, a, own, b, Buffer.from([1, 2]), Buffer.from([7, 0, 0, 0, 1, 0])]);
    expect([...reg.lookups].sort()).toEqual([a.readInt32BE(1), b.readInt32BE(1)].sort());
    expect(reg.maxInFlight).toBe(2);
    await serde.prepare([a, b]);
    expect(reg.lookups.length).toBe(2); // cached
    expect(serde.deserialize(TOPIC, a)).toEqual(mail1);
    expect(serde.deserialize(TOPIC, b)).toEqual(mail1);
  });

  it('asks again, in the next batch, about an id that was unknown', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    const text = JSON.stringify(v2);
    const body = avro.Type.forSchema(v2 as avro.Schema).toBuffer(mail2);
    const nextId = reg.add({ ...v1, doc: 'probe' }) + 1; // the id the next new schema will get
    const bytes = frame(nextId, body);
    await serde.prepare([bytes]);
    expect(codeOf(() => serde.deserialize(TOPIC, bytes))).toBe('UNKNOWN_SCHEMA_ID');
    expect(reg.add(text, SUBJECT)).toBe(nextId); // now registered (e.g. replication caught up)
    await serde.prepare([bytes]);
    expect(serde.deserialize(TOPIC, bytes)).toEqual(mail1);
  });

  it('throws a registry outage (retriable), after preparing the ids it could', async () => {
    const { serde, reg } = await ready<MailV1>(v1);
    const ok = writtenWith(reg, v2, mail2);
    const down = writtenWith(reg, { ...v1, doc: 'down' }, mail1);
    reg.failing.add(down.readInt32BE(1));
    const err = await serde.prepare([ok, down]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamsError);
    expect(err).not.toBeInstanceOf(SerdeError);
    expect((err as StreamsError).retriable).toBe(true);
    expect(serde.deserialize(TOPIC, ok)).toEqual(mail1);
    expect(codeOf(() => serde.deserialize(TOPIC, down))).toBe('UNKNOWN_SCHEMA_ID');
    reg.failing.clear();
    await serde.prepare([down]);
    expect(serde.deserialize(TOPIC, down)).toEqual(mail1);
  });
});
