import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import {
  AUTH_RESULTS,
  DECISION_MODES,
  DECISION_REASONS,
  ENTRY_SCOPES,
  ENTRY_SOURCES,
  INTERACTION_ACTIONS,
  MAIL_ACTIONS,
  PARITY_OUTCOMES,
  ROLLOUT_MODES,
  TOPIC_VALUE_SCHEMAS,
  VERDICTS,
  decide,
  learn,
  type Decision,
  type LegacyDecision,
  type MailEvent,
  type ParityResult,
  type RolloutFlag,
  type TenantPolicy,
  type UserInteraction,
  type UserPreferences,
} from '../../../processors/logic/index.js';
import { T0, entry, inferred, interaction, mail, policy, prefs } from './fixtures.js';

const SCHEMA_DIR = fileURLToPath(new URL('../../../schemas/v1/', import.meta.url));

interface FieldJson {
  name: string;
  type: unknown;
  default?: unknown;
  doc?: string;
}
interface RecordJson {
  type: 'record';
  name: string;
  namespace: string;
  doc?: string;
  fields: FieldJson[];
}

function load(name: string): RecordJson {
  return JSON.parse(readFileSync(`${SCHEMA_DIR}${name}.avsc`, 'utf8')) as RecordJson;
}

/** §2 field names, in the order of the spec. */
const FIELDS: Record<string, string[]> = {
  MailEvent: [
    'eventId',
    'tenantId',
    'mailboxId',
    'messageId',
    'receivedAt',
    'senderAddress',
    'senderDomain',
    'spf',
    'dkim',
    'dmarc',
    'spamScore',
    'bulkScore',
    'hasListUnsubscribe',
  ],
  UserInteraction: [
    'eventId',
    'tenantId',
    'mailboxId',
    'messageId',
    'senderAddress',
    'senderDomain',
    'action',
    'messageReceivedAt',
    'occurredAt',
  ],
  UserPreferences: ['mailboxId', 'tenantId', 'version', 'updatedAt', 'entries'],
  Decision: [
    'eventId',
    'messageId',
    'tenantId',
    'mailboxId',
    'action',
    'reason',
    'matchedKey',
    'preferencesVersion',
    'mode',
    'decidedAt',
    'dwellMs',
  ],
  LegacyDecision: ['messageId', 'tenantId', 'mailboxId', 'action', 'decidedAt'],
  ParityResult: ['messageId', 'tenantId', 'mailboxId', 'legacyAction', 'newAction', 'newReason', 'result'],
  RolloutFlag: ['scope', 'mode', 'livePercent', 'updatedAt', 'updatedBy', 'reason'],
  TenantPolicy: ['tenantId', 'allow', 'block', 'spamThreshold', 'bulkThreshold'],
};
const ENTRY_FIELDS = ['key', 'scope', 'verdict', 'source', 'evidence', 'firstSeenAt', 'updatedAt', 'expiresAt'];

const TIMESTAMPS: Record<string, string[]> = {
  MailEvent: ['receivedAt'],
  UserInteraction: ['messageReceivedAt', 'occurredAt'],
  UserPreferences: ['updatedAt'],
  Decision: ['decidedAt'],
  LegacyDecision: ['decidedAt'],
  ParityResult: [],
  RolloutFlag: ['updatedAt'],
  TenantPolicy: [],
};

const NULLABLE: Record<string, string[]> = {
  MailEvent: [],
  UserInteraction: [],
  UserPreferences: [],
  Decision: ['matchedKey', 'preferencesVersion'],
  LegacyDecision: [],
  ParityResult: ['legacyAction', 'newAction', 'newReason'],
  RolloutFlag: [],
  TenantPolicy: ['spamThreshold', 'bulkThreshold'],
};

const decision: Decision = {
  eventId: 'ev-1',
  messageId: 'msg-1',
  tenantId: 't',
  mailboxId: 'm',
  action: 'PROMOTIONS',
  reason: 'BULK',
  matchedKey: null,
  preferencesVersion: 3,
  mode: 'SHADOW',
  decidedAt: T0 + 120,
  dwellMs: 120,
};

/** One sample of each record, typed with the TypeScript model (a compile-time check of the mirror). */
const SAMPLES: Record<string, unknown[]> = {
  MailEvent: [
    mail({ spf: 'FAIL', dkim: 'NONE', spamScore: 0.42, bulkScore: 6, hasListUnsubscribe: true }) satisfies MailEvent,
  ],
  UserInteraction: INTERACTION_ACTIONS.map((action) => interaction(action) satisfies UserInteraction),
  UserPreferences: [
    prefs([
      entry(),
      inferred({ key: 'x@y.com', verdict: 'JUNK', evidence: 2 }),
      entry({ scope: 'DOMAIN', key: 'y.com', verdict: 'PROMOTIONS' }),
    ]) satisfies UserPreferences,
    prefs([], 1) satisfies UserPreferences,
  ],
  Decision: [
    decision,
    {
      ...decision,
      action: 'JUNK',
      reason: 'USER_JUNK',
      matchedKey: 'a@b.c',
      preferencesVersion: null,
      mode: 'LIVE',
    } satisfies Decision,
  ],
  LegacyDecision: [
    { messageId: 'msg-1', tenantId: 't', mailboxId: 'm', action: 'JUNK', decidedAt: T0 } satisfies LegacyDecision,
  ],
  ParityResult: [
    {
      messageId: 'msg-1',
      tenantId: 't',
      mailboxId: 'm',
      legacyAction: 'INBOX',
      newAction: 'JUNK',
      newReason: 'SPAM_SCORE',
      result: 'MISMATCH',
    } satisfies ParityResult,
    {
      messageId: 'msg-2',
      tenantId: 't',
      mailboxId: 'm',
      legacyAction: null,
      newAction: 'INBOX',
      newReason: 'CLEAN',
      result: 'LEGACY_MISSING',
    } satisfies ParityResult,
    {
      messageId: 'msg-3',
      tenantId: 't',
      mailboxId: 'm',
      legacyAction: 'PROMOTIONS',
      newAction: null,
      newReason: null,
      result: 'NEW_MISSING',
    } satisfies ParityResult,
  ],
  RolloutFlag: [
    {
      scope: '*',
      mode: 'LIVE',
      livePercent: 25,
      updatedAt: T0,
      updatedBy: 'ops@corp',
      reason: 'ramp',
    } satisfies RolloutFlag,
  ],
  TenantPolicy: [
    policy({
      allow: ['ceo@corp.com', 'corp.com'],
      block: ['spam.biz'],
      spamThreshold: 0.85,
      bulkThreshold: 6,
    }) satisfies TenantPolicy,
    policy() satisfies TenantPolicy,
  ],
};

const NAMES = Object.keys(FIELDS);

describe('Avro schemas v1 (§2)', () => {
  it('schemas/v1 holds exactly the eight records', () => {
    const files = readdirSync(SCHEMA_DIR)
      .filter((f) => f.endsWith('.avsc'))
      .sort();
    expect(files).toEqual(NAMES.map((n) => `${n}.avsc`).sort());
  });

  it.each(NAMES)('%s parses with avsc, is named unwantedmail.%s and documented', (name) => {
    const json = load(name);
    const type = avro.Type.forSchema(json as avro.Schema);
    expect(type.name).toBe(`unwantedmail.${name}`);
    expect(json.namespace).toBe('unwantedmail');
    expect(json.doc).toBeTruthy();
    for (const f of json.fields) expect(f.doc, `${name}.${f.name}`).toBeTruthy();
  });

  it.each(NAMES)('%s has the field names of §2', (name) => {
    const names = load(name).fields.map((f) => f.name);
    for (const f of FIELDS[name]!) expect(names).toContain(f);
    expect(names).toEqual(FIELDS[name]); // v1 has exactly these, in this order
  });

  it('PreferenceEntry is a nested record with the fields of §2', () => {
    const entries = load('UserPreferences').fields.find((f) => f.name === 'entries')!;
    const t = entries.type as { type: string; items: RecordJson };
    expect(t.type).toBe('array');
    expect(t.items.name).toBe('PreferenceEntry');
    expect(t.items.fields.map((f) => f.name)).toEqual(ENTRY_FIELDS);
    const expiresAt = t.items.fields.find((f) => f.name === 'expiresAt')!;
    expect(expiresAt.type).toEqual(['null', { type: 'long', logicalType: 'timestamp-millis' }]);
    expect(expiresAt.default).toBeNull();
    for (const ts of ['firstSeenAt', 'updatedAt']) {
      expect(t.items.fields.find((f) => f.name === ts)!.type).toEqual({
        type: 'long',
        logicalType: 'timestamp-millis',
      });
    }
  });

  it.each(NAMES)('%s timestamps are long timestamp-millis', (name) => {
    const fields = load(name).fields;
    for (const ts of TIMESTAMPS[name]!) {
      expect(fields.find((f) => f.name === ts)!.type, ts).toEqual({ type: 'long', logicalType: 'timestamp-millis' });
    }
  });

  it.each(NAMES)('%s nullable fields are ["null", T] with default null, and only those', (name) => {
    for (const f of load(name).fields) {
      const isUnion = Array.isArray(f.type);
      expect(isUnion, `${name}.${f.name}`).toBe(NULLABLE[name]!.includes(f.name));
      if (isUnion) {
        expect((f.type as unknown[])[0]).toBe('null');
        expect(f.default).toBeNull();
      }
    }
  });

  it('types of the remaining fields', () => {
    const type = (record: string, field: string): unknown => load(record).fields.find((f) => f.name === field)!.type;
    expect(type('MailEvent', 'spamScore')).toBe('double');
    expect(type('MailEvent', 'bulkScore')).toBe('int');
    expect(type('MailEvent', 'hasListUnsubscribe')).toBe('boolean');
    expect(type('UserPreferences', 'version')).toBe('long');
    expect(type('Decision', 'reason')).toBe('string');
    expect(type('Decision', 'dwellMs')).toBe('long');
    expect(type('Decision', 'preferencesVersion')).toEqual(['null', 'long']);
    expect(type('RolloutFlag', 'livePercent')).toBe('int');
    expect(type('TenantPolicy', 'allow')).toEqual({ type: 'array', items: 'string' });
    expect(type('TenantPolicy', 'spamThreshold')).toEqual(['null', 'double']);
    expect(type('TenantPolicy', 'bulkThreshold')).toEqual(['null', 'int']);
  });

  it('enum symbols match the TypeScript model', () => {
    const enums = new Map<string, { symbols: string[]; default?: string }>();
    const visit = (t: unknown): void => {
      if (Array.isArray(t)) return t.forEach(visit);
      if (t === null || typeof t !== 'object') return;
      const o = t as Record<string, unknown>;
      if (o.type === 'enum') {
        const prev = enums.get(o.name as string);
        const cur = { symbols: o.symbols as string[], default: o.default as string | undefined };
        if (prev !== undefined) expect(cur.symbols, `${String(o.name)} consistent`).toEqual(prev.symbols);
        enums.set(o.name as string, cur);
      }
      if (o.type === 'record') (o.fields as FieldJson[]).forEach((f) => visit(f.type));
      if (o.type === 'array') visit(o.items);
    };
    NAMES.forEach((n) => visit(load(n)));
    expect(Object.fromEntries([...enums].map(([k, v]) => [k, v.symbols]))).toEqual({
      AuthResult: [...AUTH_RESULTS],
      InteractionAction: [...INTERACTION_ACTIONS],
      EntryScope: [...ENTRY_SCOPES],
      Verdict: [...VERDICTS],
      EntrySource: [...ENTRY_SOURCES],
      MailAction: [...MAIL_ACTIONS],
      DecisionMode: [...DECISION_MODES],
      ParityOutcome: [...PARITY_OUTCOMES],
      RolloutMode: [...ROLLOUT_MODES],
    });
    expect(enums.get('AuthResult')!.default).toBe('NONE');
    expect(enums.get('InteractionAction')!.default).toBe('UNKNOWN');
    expect(enums.get('RolloutMode')!.default).toBe('SHADOW');
    expect(enums.get('MailAction')!.default).toBeUndefined();
  });

  it.each(NAMES)('a sample %s round-trips', (name) => {
    const type = avro.Type.forSchema(load(name) as avro.Schema);
    for (const sample of SAMPLES[name]!) {
      expect(type.isValid(sample), JSON.stringify(sample)).toBe(true);
      const back = type.fromBuffer(type.toBuffer(sample)) as unknown;
      expect(JSON.parse(JSON.stringify(back))).toEqual(sample);
    }
  });

  it('rejects records that break the contract', () => {
    const t = avro.Type.forSchema(load('Decision') as avro.Schema);
    expect(t.isValid({ ...decision, action: 'ARCHIVE' })).toBe(false);
    expect(t.isValid({ ...decision, mode: 'OFF' })).toBe(false);
    const { eventId: _omit, ...missing } = decision;
    expect(t.isValid(missing)).toBe(false);
    expect(t.isValid({ ...decision, preferencesVersion: 'v3' })).toBe(false);
    const m = avro.Type.forSchema(load('MailEvent') as avro.Schema);
    expect(m.isValid({ ...mail(), spf: 'SOFTFAIL' })).toBe(false);
  });

  it('outputs of decide and learn are valid records', () => {
    const d = decide(mail(), prefs([entry()]), policy());
    const out: Decision = {
      eventId: 'e',
      messageId: 'm',
      tenantId: 't',
      mailboxId: 'x',
      ...d,
      mode: 'LIVE',
      decidedAt: T0 + 5,
      dwellMs: 5,
    };
    expect(avro.Type.forSchema(load('Decision') as avro.Schema).isValid(out)).toBe(true);
    const p = avro.Type.forSchema(load('UserPreferences') as avro.Schema);
    for (const action of ['ALLOW_SENDER', 'MOVED_TO_JUNK', 'UNSUBSCRIBED', 'BLOCK_DOMAIN'] as const) {
      const r = learn(prefs([inferred({ key: 'z@z.com' })]), interaction(action), { duplicate: false });
      expect(p.isValid(r.next)).toBe(true);
    }
  });

  it('an interaction action unknown to this reader resolves to UNKNOWN (enum default)', () => {
    const reader = load('UserInteraction');
    const writer = structuredClone(reader);
    const action = writer.fields.find((f) => f.name === 'action')!.type as { symbols: string[] };
    action.symbols = [...action.symbols, 'SNOOZED']; // a newer producer's schema
    const w = avro.Type.forSchema(writer as avro.Schema);
    const r = avro.Type.forSchema(reader as avro.Schema);
    const buf = w.toBuffer({ ...interaction('REPLIED'), action: 'SNOOZED' });
    const got = r.fromBuffer(buf, r.createResolver(w)) as UserInteraction;
    expect(got.action).toBe('UNKNOWN');
    expect(learn(undefined, got, { duplicate: false }).ignored).toBe('UNKNOWN_ACTION');
  });

  it('BACKWARD: a v2 reader with an added optional field reads v1 data', () => {
    const v1 = load('UserPreferences');
    const v2 = structuredClone(v1);
    v2.fields.push({ name: 'note', type: ['null', 'string'], default: null, doc: 'added in v2' });
    const w = avro.Type.forSchema(v1 as avro.Schema);
    const r = avro.Type.forSchema(v2 as avro.Schema);
    const sample = SAMPLES.UserPreferences![0] as UserPreferences;
    const got = r.fromBuffer(w.toBuffer(sample), r.createResolver(w)) as UserPreferences & { note: unknown };
    expect(got.note).toBeNull();
    expect(got.entries).toHaveLength(3);
  });

  it('every decision reason of §3 is distinct and the topic map names only the eight records', () => {
    expect(new Set(DECISION_REASONS).size).toBe(9);
    const used = new Set(Object.values(TOPIC_VALUE_SCHEMAS));
    for (const full of used) expect(NAMES).toContain(full.replace('unwantedmail.', ''));
    expect(TOPIC_VALUE_SCHEMAS['mail-decisions-shadow']).toBe('unwantedmail.Decision');
  });
});
