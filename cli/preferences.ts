/**
 * Reads one mailbox's preferences straight from the `user-preferences` table topic: the key's
 * partition (Kafka's default partitioner) is read to its end and the newest record for the key
 * wins. No running instance is needed.
 */
import type { UserPreferences } from '../processors/logic/model.js';
import { readRanges, endOffsets } from '../runtime/partition-reader.js';
import { partitionForKey } from '../runtime/partitioner.js';
import { mailSerdes } from '../topology/serdes.js';
import { topicNames } from '../topology/topics.js';
import { kafkaFor, registryFor } from './app.js';
import type { AppConfig } from './config.js';

export async function readPreferences(cfg: AppConfig, mailboxId: string): Promise<UserPreferences | undefined> {
  const kafka = kafkaFor(cfg, 'um-cli');
  const topic = topicNames(cfg.topicPrefix).userPreferences;
  const serde = mailSerdes(registryFor(cfg), topicNames(cfg.topicPrefix)).userPreferences;
  const ends = await endOffsets(kafka, [topic]);
  const partitions = ends.size;
  const partition = partitionForKey(mailboxId, partitions);
  const to = ends.get(`${topic}:${partition}`) ?? 0;
  let latest: Buffer | null | undefined;
  const key = Buffer.from(mailboxId, 'utf8');
  await readRanges(kafka, 'um-cli-preferences', [{ topic, partition, from: 0, to }], async (_r, records) => {
    for (const r of records) if (r.key && r.key.equals(key)) latest = r.value;
  });
  if (!latest) return undefined;
  await serde.prepare([latest]);
  return serde.deserialize(topic, latest);
}
