/**
 * The service's logger: on a terminal, readable lines (pino-pretty; colours only when stdout is a
 * terminal and NO_COLOR is unset), otherwise one JSON object per line for log collectors.
 * UM_LOG_FORMAT=json|pretty overrides the choice.
 */
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import type { AppConfig } from './config.js';

export function usePretty(
  format: AppConfig['logFormat'] = 'auto',
  stdout: { isTTY?: boolean } = process.stdout,
): boolean {
  return format === 'pretty' || (format === 'auto' && stdout.isTTY === true);
}

export function createLogger(
  cfg: Pick<AppConfig, 'logLevel' | 'instanceId' | 'logFormat'>,
  env: Record<string, string | undefined> = process.env,
): Logger {
  // `instance` through a mixin, not the base bindings: a line that carries its own `instance`
  // then has the key once (pino writes bindings and the line's fields independently)
  // (a fresh object per line: pino merges the line's fields into it)
  const options = { level: cfg.logLevel, base: undefined, mixin: () => ({ instance: cfg.instanceId }) };
  if (!usePretty(cfg.logFormat)) return pino(options);
  return pino(
    options,
    pretty({
      colorize: process.stdout.isTTY === true && !env.NO_COLOR,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,instance',
      singleLine: true,
      sync: true,
    }),
  );
}
