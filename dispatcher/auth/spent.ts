/*
 * Download tokens spent: a download link opens one download, so that a link
 * left in a browser's history, a proxy's log or a chat is worthless once
 * followed (it is worthless anyway once it expires, minutes later). Only ids
 * of unexpired tokens are kept, so the set stays small; dispatchers sharing
 * Redis share it (dispatcher/daemon/redis.ts).
 */

import { TracefleetError } from '../../shared/errors/catalogue';

export interface SpentTokens {
  /** True the first time the token `id` is spent, false after. `expiresAt`: when the token is refused anyway (ms since the epoch). */
  spend(id: string, expiresAt: number): Promise<boolean>;
  /** Whether `id` was spent already, without spending it. */
  isSpent(id: string): Promise<boolean>;
}

/** Kept past a token's expiry by as much as a session's clock grace (session.ts), so no dispatcher still honours it. */
export const SPENT_GRACE_MS = 60_000;

/** Ids remembered at once by default: ~300 downloads a second for five minutes, a few MB. */
export const MAX_SPENT_TOKENS = 100_000;

/** The spent set of one dispatcher, in memory. */
export class LocalSpentTokens implements SpentTokens {
  /** id -> when it may be forgotten; in spending order, which is close to expiry order (one token lifetime). */
  private readonly spent = new Map<string, number>();

  constructor(private readonly max = MAX_SPENT_TOKENS) {}

  get size(): number {
    return this.spent.size;
  }

  async spend(id: string, expiresAt: number, now = Date.now()): Promise<boolean> {
    return this.spendNow(id, expiresAt, now);
  }

  /** spend(), synchronously (for a shared set that mirrors its spends here). */
  spendNow(id: string, expiresAt: number, now = Date.now()): boolean {
    this.sweep(now);
    if (this.isSpentNow(id, now)) return false;
    if (this.spent.size >= this.max) {
      // Forgetting a live id would let its link be used again: refuse instead, for the minutes it takes ids to expire.
      throw new TracefleetError('TF_RATE_LIMITED', {
        message: `the dispatcher has started ${this.spent.size} downloads in the last few minutes, as many as it tracks: try again in a minute`,
      });
    }
    this.spent.set(id, expiresAt + SPENT_GRACE_MS);
    return true;
  }

  async isSpent(id: string, now = Date.now()): Promise<boolean> {
    return this.isSpentNow(id, now);
  }

  private isSpentNow(id: string, now: number): boolean {
    const until = this.spent.get(id);
    return until !== undefined && until > now;
  }

  private sweep(now: number): void {
    for (const [id, until] of this.spent) {
      if (until > now) break;
      this.spent.delete(id);
    }
  }
}
