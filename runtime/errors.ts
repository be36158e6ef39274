/**
 * One root for every error the runtime raises (the KafkaJS pattern): a stable `code` for
 * programs and dashboards, `retriable` to tell transient failures from permanent ones, and the
 * original `cause`.
 */
export class StreamsError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  override readonly cause?: unknown;

  constructor(code: string, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.retriable = opts.retriable ?? false;
    if (opts.cause !== undefined) this.cause = opts.cause;
  }
}

/** A setting is missing or invalid. The message names the setting. Raised at start. */
export class ConfigError extends StreamsError {
  readonly setting: string;
  constructor(setting: string, message: string, opts: { cause?: unknown } = {}) {
    super('CONFIG_INVALID', `${setting}: ${message}`, opts);
    this.setting = setting;
  }
}

/** The topology is not valid (undeclared outputs, co-partitioning mismatch, unknown store...). */
export class TopologyError extends StreamsError {
  constructor(code: string, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, opts);
  }
}

/** A record could not be serialized or deserialized. Never retriable for the same bytes. */
export class SerdeError extends StreamsError {
  constructor(code: string, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { retriable: false, ...opts });
  }
}

/** A processor failed on a record. */
export class ProcessingError extends StreamsError {
  constructor(code: string, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(code, message, opts);
  }
}

/** A state store failed (open, read, write, corrupt). */
export class StoreError extends StreamsError {
  constructor(code: string, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(code, message, opts);
  }
}

/** An illegal lifecycle transition was attempted. */
export class IllegalStateError extends StreamsError {
  constructor(message: string) {
    super('ILLEGAL_STATE', message);
  }
}
