/** Retries an operation on retriable errors (kafkajs marks them `retriable`), with backoff. */
export async function withRetries<T>(
  what: string,
  fn: () => Promise<T>,
  opts: {
    attempts?: number;
    initialDelayMs?: number;
    maxDelayMs?: number;
    onRetry?: (e: unknown, attempt: number) => void;
  } = {},
): Promise<T> {
  const attempts = opts.attempts ?? 10;
  let delay = opts.initialDelayMs ?? 100;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      const retriable = (e as { retriable?: boolean }).retriable === true;
      if (!retriable || attempt >= attempts) {
        if (e instanceof Error && retriable) e.message = `${what}: ${e.message} (after ${attempt} attempts)`;
        throw e;
      }
      opts.onRetry?.(e, attempt);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, opts.maxDelayMs ?? 2000);
    }
  }
}
