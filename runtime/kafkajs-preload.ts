/**
 * A correction to kafkajs that must be in place before kafkajs is loaded (import this module
 * first). kafkajs groups a produce request's messages by partition with `[...current, message]`
 * for every message: quadratic in the records per partition (a request of 10,000 records spent 5%
 * of the service's CPU there). The same grouping in linear time is put into Node's module cache
 * under kafkajs' own file name, so kafkajs' `require` finds it. If kafkajs was loaded already,
 * nothing changes (kafkajs keeps its own, slower version; the results are the same).
 *
 * The same way, kafkajs' `producer/sendMessages.js` is replaced by kafkajs-send-messages.ts, which
 * keeps its progress per partition (kafkajs' version writes records twice, or not at all, when a
 * request to several brokers half fails), and its Produce request encoder (v3, which v4–v7 reuse)
 * by kafkajs-produce-request.ts, which writes the same bytes in one pass; and its decoder of a
 * fetched record by kafkajs-record-decoder.ts, which returns the same without 64-bit Longs.
 */
import { createRequire } from 'node:module';
import { produceRequestV3 } from './kafkajs-produce-request.js';
import { decodeRecord } from './kafkajs-record-decoder.js';
import { createSendMessages } from './kafkajs-send-messages.js';

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;

function groupMessagesPerPartition({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: Partitioner;
}): Record<number, unknown[]> {
  const result: Record<number, unknown[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) (result[partitioner({ topic, partitionMetadata, message })] ??= []).push(message);
  return result;
}

const require = createRequire(import.meta.url);
/** Puts `exports` in Node's module cache under kafkajs' file `id`, unless kafkajs loaded it already. */
function preload(id: string, exports: unknown): void {
  const file = require.resolve(id);
  if (require.cache[file]) return;
  const { Module } = require('node:module') as {
    Module: new (id: string) => NodeJS.Module & { filename: string; loaded: boolean };
  };
  const m = new Module(file);
  m.filename = file;
  m.loaded = true;
  m.exports = exports;
  require.cache[file] = m;
}

preload('kafkajs/src/producer/groupMessagesPerPartition.js', groupMessagesPerPartition);
// kafkajs' produce path, with progress kept per partition (see kafkajs-send-messages.ts)
preload('kafkajs/src/producer/sendMessages.js', createSendMessages);
// the Produce request in one pass (see kafkajs-produce-request.ts)
preload('kafkajs/src/protocol/requests/produce/v3/request.js', produceRequestV3);
// fetched records decoded without 64-bit Long objects (see kafkajs-record-decoder.ts)
preload('kafkajs/src/protocol/recordBatch/record/v0/decoder.js', decodeRecord);

/** Whether the linear grouping is the one kafkajs uses (for tests). */
export function kafkajsGroupingPatched(): boolean {
  return require('kafkajs/src/producer/groupMessagesPerPartition.js') === groupMessagesPerPartition;
}

/** Whether kafkajs encodes Produce requests with the one-pass encoder (for tests). */
export function kafkajsProduceRequestPatched(): boolean {
  return require('kafkajs/src/protocol/requests/produce/v3/request.js') === produceRequestV3;
}

/** Whether kafkajs decodes fetched records with the decoder without Longs (for tests). */
export function kafkajsRecordDecoderPatched(): boolean {
  return require('kafkajs/src/protocol/recordBatch/record/v0/decoder.js') === decodeRecord;
}

/** Whether the engine's produce path is the one kafkajs uses (for tests). */
export function kafkajsSendPatched(): boolean {
  return require('kafkajs/src/producer/sendMessages.js') === createSendMessages;
}
