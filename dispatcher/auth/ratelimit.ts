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

  /** Failures of `key` in the window, up to maxFailures. */
  count(key: string, now = Date.now()): number {
    return this.recent(key, now).length;
  }

  /** Keys remembered now (for /metrics and tests). */
  get size(): number {
    return this.failures.size;
  }
}

/** The longest a login waits for its user's recent failures (FailureDelay). */
export const LOGIN_MAX_DELAY_MS = 3000;

export interface FailureDelayOptions {
  /** Failures in the window before logins wait at all; default 5. */
  freeFailures?: number;
  /** The first wait, doubled for each further failure; default 250 ms. */
  baseMs?: number;
  /** The longest wait; default LOGIN_MAX_DELAY_MS. */
  maxMs?: number;
  /** Default 5 minutes. */
  windowMs?: number;
  /** Keys remembered at most (the longest quiet are forgotten first); default 10 000. */
  maxKeys?: number;
}

/**
 * A wait before each password check that grows with the user's recent
 * failures from any address: what FailureLimiter cannot do against a guesser
 * with many addresses, each under its own (user, address) limit. It is a
 * delay, never a refusal, so the user's own right password from another
 * client always gets in, at most maxMs later.
 */
export class FailureDelay {
  readonly maxMs: number;
  private readonly freeFailures: number;
  private readonly baseMs: number;
  private readonly failures: FailureLimiter;

  constructor(opts: FailureDelayOptions = {}) {
    this.freeFailures = Math.max(0, Math.floor(opts.freeFailures ?? 5));
    this.baseMs = Math.max(1, opts.baseMs ?? 250);
    this.maxMs = Math.max(this.baseMs, opts.maxMs ?? LOGIN_MAX_DELAY_MS);
    // Failures past the one that reaches maxMs change nothing: no need to keep their times.
    const steps = Math.ceil(Math.log2(this.maxMs / this.baseMs)) + 1;
    this.failures = new FailureLimiter({ maxFailures: this.freeFailures + steps, windowMs: opts.windowMs, maxKeys: opts.maxKeys });
  }

  /** Milliseconds a login for `key` waits now. */
  delayFor(key: string, now = Date.now()): number {
    const over = this.failures.count(key, now) - this.freeFailures;
    return over < 0 ? 0 : Math.min(this.maxMs, this.baseMs * 2 ** over);
  }

  fail(key: string, now = Date.now()): void {
    this.failures.fail(key, now);
  }

  get size(): number {
    return this.failures.size;
  }
}
