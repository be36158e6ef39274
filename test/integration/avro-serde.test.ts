/**
 * The Avro serde against the real schema registry (Apicurio, Confluent API) and the real broker:
 * registration at init, verification, schema evolution both ways, the registry refusing an
 * incompatible version, unknown ids, and a produce/consume round trip.
 */
import { describe, expect, it } from 'vitest';
import { SerdeError } from '../../runtime/errors.js';
import { avroSerde } from '../../runtime/serdes/avro.js';
import { createRegistryClient } from '../../runtime/serdes/registry.js';
import { kafkaClient, registryUrl, uniqueName, withAdmin } from './helpers.js';

const v1 = {
  type: 'record',
  name: 'AvroSerdeTest',
  namespace: 'unwantedmail.test',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'n', type: 'int' },
    { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } },
  ],
};
/** v1 plus an optional field with a default: BACKWARD compatible. */
const v2 = { ...v1, fields: [...v1.fields, { name: 'label', type: ['null', 'string'], default: null }] };
/** v2 plus a required field without a default: not BACKWARD compatible. */
const v3 = { ...v2, fields: [...v2.fields, { name: 'required', type: 'string' }] };

interface V1 {
  id: string;
  n: number;
  at: number;
}
interface V2 extends V1 {
  label: string | null;
}

const client = () => createRegistryClient({ url: registryUrl() });
const subjectName = (p: string) => `${uniqueName(p)}-value`;

describe('avroSerde against the real registry', () => {
  it('registers at init; the id is the subject latest; registering again and verifying give the same id', async () => {
    const subject = subjectName('avro-init');
    const registry = client();
    const serde = avroSerde<V1>({ registry, subject, schema: v1 });
    await serde.init();
    expect(serde.schemaId()).toBeGreaterThan(0);
    expect(await registry.latestId(subject)).toBe(serde.schemaId());

    const again = avroSerde<V1>({ registry: client(), subject, schema: v1 });
    await again.init();
    expect(again.schemaId()).toBe(serde.schemaId());
    const verified = avroSerde<V1>({ registry: client(), subject, schema: v1, register: false });
    await verified.init();
    expect(verified.schemaId()).toBe(serde.schemaId());

    const bytes = serde.serialize('t', { id: 'a', n: 1, at: 1_700_000_000_000 });
    expect(bytes[0]).toBe(0);
    expect(bytes.readInt32BE(1)).toBe(serde.schemaId());
    expect(verified.deserialize('t', bytes)).toEqual({ id: 'a', n: 1, at: 1_700_000_000_000 });
  });

  it('register: false fails with a clear SerdeError when the subject does not exist', async () => {
    const subject = subjectName('avro-missing');
    const serde = avroSerde<V1>({ registry: client(), subject, schema: v1, register: false });
    const err = await serde.init().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerdeError);
    expect(err).toMatchObject({ code: 'SCHEMA_NOT_REGISTERED' });
    expect((err as Error).message).toContain(subject);
    expect(() => serde.schemaId()).toThrow(/before init/);
    await expect(client().latestId(subject)).rejects.toMatchObject({ code: 'SUBJECT_NOT_FOUND' });
  });

  it('evolves v1 -> v2 and reads both ways; refuses an incompatible v3; reports unknown ids', async () => {
    const subject = subjectName('avro-evolve');
    const w1 = avroSerde<V1>({ registry: client(), subject, schema: v1 });
    await w1.init();
    const w2 = avroSerde<V2>({ registry: client(), subject, schema: v2 });
    await w2.init();
    expect(w2.schemaId()).not.toBe(w1.schemaId());
    expect(await client().latestId(subject)).toBe(w2.schemaId());

    const r1 = { id: 'one', n: 1, at: 1_700_000_000_001 };
    const r2 = { id: 'two', n: 2, at: 1_700_000_000_002, label: 'new' };
    const b1 = w1.serialize('t', r1);
    const b2 = w2.serialize('t', r2);

    // fresh readers, fresh clients: every writer schema comes from the registry
    const reader1 = avroSerde<V1>({ registry: client(), subject, schema: v1, register: false });
    await reader1.init();
    expect(() => reader1.deserialize('t', b2)).toThrow(expect.objectContaining({ code: 'UNKNOWN_SCHEMA_ID' }));
    await reader1.prepare([b1, b2, null]);
    expect(reader1.deserialize('t', b1)).toEqual(r1);
    const newer = reader1.deserialize('t', b2);
    expect(newer).toEqual({ id: 'two', n: 2, at: 1_700_000_000_002 });
    expect(newer).not.toHaveProperty('label');

    const reader2 = avroSerde<V2>({ registry: client(), subject, schema: v2, register: false });
    await reader2.init();
    await reader2.prepare([b1, b2]);
    expect(reader2.deserialize('t', b1)).toEqual({ ...r1, label: null });
    expect(reader2.deserialize('t', b2)).toEqual(r2);

    // the registry refuses v3, and it is never used
    const w3 = avroSerde({ registry: client(), subject, schema: v3 });
    const err = await w3.init().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SerdeError);
    expect(err).toMatchObject({ code: 'SCHEMA_INCOMPATIBLE' });
    expect((err as Error).message).toContain(subject);
    expect((err as Error).message).toMatch(/incompatib/i);
    expect(() => w3.serialize('t', { ...r2, required: 'x' })).toThrow(/before init/);
    expect(await client().latestId(subject)).toBe(w2.schemaId());

    // an id the registry does not have
    const ghost = Buffer.from(b1);
    ghost.writeInt32BE(2_147_483_000, 1);
    await expect(reader1.prepare([ghost])).resolves.toBeUndefined();
    const unknown = (() => {
      try {
        reader1.deserialize('t', ghost);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(unknown).toBeInstanceOf(SerdeError);
    expect(unknown).toMatchObject({ code: 'UNKNOWN_SCHEMA_ID' });
    expect((unknown as Error).message).toMatch(/2147483000.*not in the registry/);
  });

  it('round-trips through the broker, reading v1 and v2 records with a v1 reader', async () => {
    const topic = uniqueName('avro-serde');
    const subject = `${topic}-value`;
    await withAdmin((a) => a.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true }));
    const w1 = avroSerde<V1>({ registry: client(), subject, schema: v1 });
    const w2 = avroSerde<V2>({ registry: client(), subject, schema: v2 });
    await w1.init();
    await w2.init();
    const sent1 = Array.from({ length: 5 }, (_, i) => ({ id: `a${i}`, n: i, at: 1_700_000_000_000 + i }));
    const sent2 = Array.from({ length: 5 }, (_, i) => ({
      id: `b${i}`,
      n: 10 + i,
      at: 1_700_000_001_000 + i,
      label: `l${i}`,
    }));

    const kafka = kafkaClient();
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic,
      acks: -1,
      messages: [
        ...sent1.map((v) => ({ key: v.id, value: w1.serialize(topic, v) })),
        ...sent2.map((v) => ({ key: v.id, value: w2.serialize(topic, v) })),
      ],
    });
    await producer.disconnect();

    const reader = avroSerde<V1>({ registry: client(), subject, schema: v1, register: false });
    await reader.init();
    const consumer = kafka.consumer({ groupId: uniqueName('avro-serde-group') });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: V1[] = [];
    const total = sent1.length + sent2.length;
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachBatch: async ({ batch }) => {
            await reader.prepare(batch.messages.map((m) => m.value));
            for (const m of batch.messages) received.push(reader.deserialize(topic, m.value!));
            if (received.length >= total) resolve();
          },
        })
        .catch(reject);
    });
    await consumer.disconnect();
    expect(received).toEqual([...sent1, ...sent2.map(({ label: _label, ...rest }) => rest)]);
  });
});
