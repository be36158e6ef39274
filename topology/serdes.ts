/**
 * The Avro serdes of every topic: our schemas from `schemas/v1`, in the Confluent wire format,
 * registered under TopicNameStrategy subjects (`<topic>-value`). Keys are UTF-8 strings.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  Decision,
  LegacyDecision,
  MailEvent,
  ParityResult,
  RolloutFlag,
  TenantPolicy,
  UserInteraction,
  UserPreferences,
} from '../processors/logic/model.js';
import { avroSerde, type AvroSerde } from '../runtime/serdes/avro.js';
import type { RegistryClient } from '../runtime/serdes/registry.js';
import type { Serde } from '../runtime/serdes.js';
import type { Topics } from './topics.js';

const schemaDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas', 'v1');

export type SchemaName =
  | 'MailEvent'
  | 'UserInteraction'
  | 'UserPreferences'
  | 'Decision'
  | 'LegacyDecision'
  | 'ParityResult'
  | 'RolloutFlag'
  | 'TenantPolicy';

const cache = new Map<SchemaName, object>();
export function loadSchema(name: SchemaName): object {
  let s = cache.get(name);
  if (!s) cache.set(name, (s = JSON.parse(readFileSync(join(schemaDir, `${name}.avsc`), 'utf8')) as object));
  return s;
}

export interface MailSerdes {
  mailEvents: AvroSerde<MailEvent>;
  userInteractions: AvroSerde<UserInteraction>;
  userPreferences: AvroSerde<UserPreferences>;
  legacyDecisions: AvroSerde<LegacyDecision>;
  mailDecisions: AvroSerde<Decision>;
  mailDecisionsShadow: AvroSerde<Decision>;
  parityMismatches: AvroSerde<ParityResult>;
  rolloutFlags: AvroSerde<RolloutFlag>;
  tenantPolicies: AvroSerde<TenantPolicy>;
}

/** The serdes the topology needs, per topic: Avro through the registry in production, any serde in tests. */
export type TopicSerdes = { [K in keyof MailSerdes]: Serde<MailSerdes[K] extends AvroSerde<infer T> ? T : never> };

export function mailSerdes(registry: RegistryClient, topics: Topics): MailSerdes {
  const serde = <T>(topic: string, name: SchemaName): AvroSerde<T> =>
    avroSerde<T>({ registry, subject: `${topic}-value`, schema: loadSchema(name) });
  return {
    mailEvents: serde(topics.mailEvents, 'MailEvent'),
    userInteractions: serde(topics.userInteractions, 'UserInteraction'),
    userPreferences: serde(topics.userPreferences, 'UserPreferences'),
    legacyDecisions: serde(topics.legacyDecisions, 'LegacyDecision'),
    mailDecisions: serde(topics.mailDecisions, 'Decision'),
    mailDecisionsShadow: serde(topics.mailDecisionsShadow, 'Decision'),
    parityMismatches: serde(topics.parityMismatches, 'ParityResult'),
    rolloutFlags: serde(topics.rolloutFlags, 'RolloutFlag'),
    tenantPolicies: serde(topics.tenantPolicies, 'TenantPolicy'),
  };
}
