/*
 * Failed password attempts per (user, address) in a sliding window: past the
 * limit that pair is refused, right password or not, until old failures age
 * out. In memory and per dispatcher: it slows an online guesser down, which is
 * all it is for.
 */

export interface FailureLimitOptions {
  /** Failures allowed in the window; default 10. */
  maxFailures?: number;
  /** Default 5 minutes. */
  windowMs?: number;
  /** Pairs remembered at most (the oldest are forgotten first); default 10 000. */
  maxKeys?: number;
}

export class FailureLimiter {
  readonly maxFailures: number;
  readonly windowMs: number;
  private readonly maxKeys: number;
  /** Failure times, oldest first, at most maxFailures per key. */
  private readonly failures = new Map<string, number[]>();

  constructor(opts: FailureLimitOptions = {}) {
    this.maxFailures = Math.max(1, Math.floor(opts.maxFailures ?? 10));
    this.windowMs = Math.max(1, opts.windowMs ?? 5 * 60_000);
    this.maxKeys = Math.max(1, Math.floor(opts.maxKeys ?? 10_000));
  }

  private recent(key: string, now: number): number[] {
    const times = (this.failures.get(key) ?? []).filter((t) => now - t < this.windowMs);
    if (times.length === 0) this.failures.delete(key);
    return times;
  }

  /** Milliseconds until `key` may try again; 0 when it may now. */
  retryAfter(key: string, now = Date.now()): number {
    const times = this.recent(key, now);
    if (times.length < this.maxFailures) return 0;
    return times[times.length - this.maxFailures] + this.windowMs - now;
  }

  fail(key: string, now = Date.now()): void {
    const times = this.recent(key, now);
    times.push(now);
    // Re-inserted last, so that the Map's first key is the longest quiet one.
    this.failures.delete(key);
    this.failures.set(key, times.slice(-this.maxFailures));
    while (this.failures.size > this.maxKeys) {
      const oldest = this.failures.keys().next().value as string;
      this.failures.delete(oldest);
    }
  }

  succeed(key: string): void {
    this.failures.delete(key);
  }

  /** Keys remembered now (for /metrics and tests). */
  get size(): number {
    return this.failures.size;
  }
}
