/**
 * A thin client for a Confluent-compatible schema registry (Confluent, or Apicurio's `ccompat`
 * API), on top of `@kafkajs/confluent-schema-registry`. It turns the library's HTTP errors into
 * runtime errors with stable codes:
 *
 * - `SerdeError SCHEMA_INCOMPATIBLE`  the registry refused the schema (HTTP 409); the message is the
 *   registry's own (Apicurio: `RuleViolationException: Incompatible artifact: ...`).
 * - `SerdeError SCHEMA_INVALID`       the registry (HTTP 422) or the library could not parse it.
 * - `SerdeError SCHEMA_COMPATIBILITY_MISMATCH`  the subject's compatibility level is not the expected
 *   one (the library checks `GET /config/<subject>` before registering a new version).
 * - `SerdeError SCHEMA_NOT_REGISTERED` the subject does not exist, or does not hold this schema.
 * - `SerdeError SUBJECT_NOT_FOUND`    `latestId` on a subject that does not exist.
 * - `SerdeError UNKNOWN_SCHEMA_ID`    no schema with this id (HTTP 404).
 * - `SerdeError SCHEMA_NOT_AVRO`      the id names a JSON Schema or Protobuf schema.
 * - `ConfigError`                     bad settings, or the registry refused the credentials (401/403).
 * - `StreamsError REGISTRY_UNAVAILABLE` (retriable) network failures, 5xx, anything else.
 */
import { COMPATIBILITY, SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import type { Type } from 'avsc';
import { ConfigError, SerdeError, StreamsError } from '../errors.js';

/**
 * Options for every avsc Type the runtime builds (our reader types and writer types fetched from the
 * registry): none. Logical types without an implementation (e.g. `timestamp-millis`) are read as
 * their underlying type, so timestamps stay `number` epoch millis; avsc's default `long` type
 * refuses (on write and on read) a value outside ±2^53, so longs always fit a JS number.
 */
export const AVRO_TYPE_OPTIONS: Readonly<Record<string, never>> = Object.freeze({});

export interface RegistryConfig {
  /** Base URL of the Confluent API, e.g. `http://host:8081` or `http://host:8080/apis/ccompat/v7`. */
  url: string;
  /** HTTP basic auth (Confluent Cloud: API key and secret). Both or neither. */
  username?: string;
  password?: string;
  /** A bearer token (OAuth). Not together with username/password. */
  bearer?: string;
  /** The compatibility level subjects must have before we register a new version. BACKWARD. */
  compatibility?: COMPATIBILITY;
  /** HTTP client id sent to the registry. */
  clientId?: string;
}

/** What the Avro serde needs from a registry. */
export interface RegistryClient {
  /**
   * Registers `schema` (a schema object or its JSON text) under `subject` and returns its id; when
   * the subject already holds this schema, returns the existing id without registering.
   */
  register(subject: string, schema: object | string): Promise<number>;
  /** The id of `schema` under `subject`; SerdeError SCHEMA_NOT_REGISTERED when it is not there. */
  lookup(subject: string, schema: object | string): Promise<number>;
  /** The Avro type of schema `id` (cached; concurrent look-ups of one id share a request). */
  schemaById(id: number): Promise<Type>;
  /** The id of the latest version of `subject`. */
  latestId(subject: string): Promise<number>;
}

function validateConfig(cfg: RegistryConfig): void {
  let url: URL;
  try {
    url = new URL(cfg.url);
  } catch (e) {
    throw new ConfigError('schemaRegistry.url', `not a URL: ${JSON.stringify(cfg.url)}`, { cause: e });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ConfigError('schemaRegistry.url', `must be http(s), got ${url.protocol}`);
  if (url.username || url.password)
    throw new ConfigError('schemaRegistry.url', 'put credentials in username/password, not in the URL');
  if ((cfg.username === undefined) !== (cfg.password === undefined))
    throw new ConfigError('schemaRegistry.username', 'username and password go together');
  if (cfg.bearer !== undefined && cfg.username !== undefined)
    throw new ConfigError('schemaRegistry.bearer', 'use either a bearer token or username/password, not both');
  if (cfg.bearer === '') throw new ConfigError('schemaRegistry.bearer', 'empty token');
}

/**
 * The library's client, configured from `cfg`. Basic auth is the library's own `auth` option
 * (mappersmith's BasicAuthMiddleware: `Authorization: Basic base64(username:password)` on every
 * request); a bearer token is added by a small middleware.
 *
 * Retries are the library's defaults (GET requests only, on HTTP 5xx, 3 times within ~1 s). They
 * are deliberately not configurable here: the library merges a `retry` option into a module-level
 * default object (`Object.assign(DEFAULT_RETRY, retry)`), so it would change every client in the
 * process.
 */
export function createSchemaRegistry(cfg: RegistryConfig): SchemaRegistry {
  validateConfig(cfg);
  const bearer = cfg.bearer;
  return new SchemaRegistry(
    {
      host: cfg.url.replace(/\/+$/, ''),
      ...(cfg.username !== undefined ? { auth: { username: cfg.username, password: cfg.password ?? '' } } : {}),
      ...(cfg.clientId !== undefined ? { clientId: cfg.clientId } : {}),
      ...(bearer !== undefined
        ? {
            middlewares: [
              () => ({
                prepareRequest: async (next) =>
                  (await next()).enhance({ headers: { authorization: `Bearer ${bearer}` } }),
              }),
            ],
          }
        : {}),
    },
    { [SchemaType.AVRO]: { ...AVRO_TYPE_OPTIONS } },
  );
}

/** Creates the registry client the Avro serde uses. `.schemaRegistry` is the library's client. */
export function createRegistryClient(cfg: RegistryConfig): ConfluentRegistryClient {
  return new ConfluentRegistryClient(createSchemaRegistry(cfg), cfg.compatibility ?? COMPATIBILITY.BACKWARD);
}

/** The library's ResponseError (not exported): `status` is the HTTP status. */
interface HttpError {
  name: string;
  message: string;
  status?: number;
}

function asHttpError(e: unknown): HttpError {
  if (e && typeof e === 'object' && 'message' in e) return e as HttpError;
  return { name: 'Error', message: String(e) };
}

/** The registry's message without the library's `<clientId> - ` prefix. */
function registryMessage(e: HttpError): string {
  const i = e.message.indexOf(' - ');
  return e.name === 'ResponseError' || e.name === 'ConfluentSchemaRegistryError'
    ? i >= 0
      ? e.message.slice(i + 3)
      : e.message
    : e.message;
}

export class ConfluentRegistryClient implements RegistryClient {
  private readonly types = new Map<number, Promise<Type>>();

  constructor(
    readonly schemaRegistry: SchemaRegistry,
    private readonly compatibility: COMPATIBILITY = COMPATIBILITY.BACKWARD,
  ) {}

  /**
   * Registers (or finds) the schema. Several instances starting together may create a new subject
   * at the same moment; the registry then refuses all but one (Apicurio: "A rule named
   * 'COMPATIBILITY' already exists"), or one sees the subject before its compatibility level is
   * set: such a refusal is tried again (5 times within 1.5 s), and finds the schema.
   */
  async register(subject: string, schema: object | string): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.registerOnce(subject, schema);
      } catch (e) {
        // or sees the subject another instance has just created before that one set its
        // compatibility level: both settle within moments
        const race =
          e instanceof SerdeError &&
          ((e.code === 'SCHEMA_INCOMPATIBLE' && /already exists/i.test(e.message)) ||
            e.code === 'SCHEMA_COMPATIBILITY_MISMATCH');
        if (!race || attempt >= 5) throw e;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  private async registerOnce(subject: string, schema: object | string): Promise<number> {
    const text = schemaText(schema);
    try {
      return await this.lookup(subject, text);
    } catch (e) {
      if (!(e instanceof SerdeError && e.code === 'SCHEMA_NOT_REGISTERED')) throw e;
    }
    try {
      const { id } = await this.schemaRegistry.register(
        { type: SchemaType.AVRO, schema: text },
        { subject, compatibility: this.compatibility },
      );
      return id;
    } catch (e) {
      throw this.mapError(e, `registering a schema under subject ${subject}`, {
        409: (m) =>
          new SerdeError('SCHEMA_INCOMPATIBLE', `registry refused the schema for subject ${subject}: ${m}`, {
            cause: e,
          }),
      });
    }
  }

  async lookup(subject: string, schema: object | string): Promise<number> {
    try {
      return await this.schemaRegistry.getRegistryIdBySchema(subject, {
        type: SchemaType.AVRO,
        schema: schemaText(schema),
      });
    } catch (e) {
      // the library rethrows a 404 as a ConfluentSchemaRegistryError, dropping the status
      const err = asHttpError(e);
      if (err.name === 'ConfluentSchemaRegistryError' || err.status === 404)
        throw new SerdeError(
          'SCHEMA_NOT_REGISTERED',
          `schema is not registered under subject ${subject}: ${registryMessage(err)}`,
          { cause: e },
        );
      throw this.mapError(e, `looking up a schema under subject ${subject}`);
    }
  }

  schemaById(id: number): Promise<Type> {
    let p = this.types.get(id);
    if (!p) {
      p = this.fetchType(id);
      this.types.set(id, p);
      // do not cache failures: a 404 or an outage may be over next time
      p.catch(() => this.types.delete(id));
    }
    return p;
  }

  async latestId(subject: string): Promise<number> {
    try {
      return await this.schemaRegistry.getLatestSchemaId(subject);
    } catch (e) {
      throw this.mapError(e, `reading the latest version of subject ${subject}`, {
        404: (m) => new SerdeError('SUBJECT_NOT_FOUND', `subject ${subject} not found: ${m}`, { cause: e }),
      });
    }
  }

  private async fetchType(id: number): Promise<Type> {
    if (!Number.isInteger(id) || id < 0) throw new SerdeError('UNKNOWN_SCHEMA_ID', `invalid schema id ${id}`);
    let schema: unknown;
    try {
      schema = await this.schemaRegistry.getSchema(id);
    } catch (e) {
      throw this.mapError(e, `fetching schema id ${id}`, {
        404: (m) => new SerdeError('UNKNOWN_SCHEMA_ID', `schema id ${id} is not in the registry: ${m}`, { cause: e }),
      });
    }
    if (!avro.Type.isType(schema)) throw new SerdeError('SCHEMA_NOT_AVRO', `schema id ${id} is not an Avro schema`);
    return schema as Type;
  }

  private mapError(e: unknown, doing: string, byStatus: Record<number, (message: string) => Error> = {}): Error {
    if (e instanceof StreamsError) return e;
    const err = asHttpError(e);
    const m = registryMessage(err);
    const special = err.status !== undefined ? byStatus[err.status] : undefined;
    if (special) return special(m);
    if (err.status === 401 || err.status === 403)
      return new ConfigError(
        'schemaRegistry.username',
        `the registry refused the credentials (HTTP ${err.status}) ${doing}: ${m}`,
        {
          cause: e,
        },
      );
    if (
      err.status === 422 ||
      err.name === 'ConfluentSchemaRegistryInvalidSchemaError' ||
      err.name === 'ConfluentSchemaRegistryArgumentError'
    )
      return new SerdeError('SCHEMA_INVALID', `invalid schema ${doing}: ${m}`, { cause: e });
    if (err.name === 'ConfluentSchemaRegistryCompatibilityError')
      return new SerdeError(
        'SCHEMA_COMPATIBILITY_MISMATCH',
        `${doing}: ${m} (the subject's compatibility level must be ${this.compatibility}; set it with PUT /config/<subject>)`,
        { cause: e },
      );
    if (err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429)
      return new SerdeError('REGISTRY_REQUEST_FAILED', `HTTP ${err.status} ${doing}: ${m}`, { cause: e });
    return new StreamsError('REGISTRY_UNAVAILABLE', `schema registry failed ${doing}: ${m}`, {
      retriable: true,
      cause: e,
    });
  }
}

function schemaText(schema: object | string): string {
  return typeof schema === 'string' ? schema : JSON.stringify(schema);
}
