/*
 * Whether the dispatcher itself keeps up, for /healthz: a store that answers
 * is not enough when the event loop is held up (every trace with it) or the
 * password checks are queued to their limit (a login flood). The event-loop
 * delay is the largest seen in the current or the previous window, so a stall
 * that just ended still shows on the next poll.
 */

import { IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import { HashPool, hashPool } from '../auth/hash-pool';

export interface HealthOptions {
  /** Event-loop delay above which the dispatcher is unhealthy; default 1000 ms. */
  maxDelayMs?: number;
  /** Default 5 s. */
  windowMs?: number;
  pool?: HashPool;
}

export interface HealthReport {
  healthy: boolean;
  problems: string[];
  eventLoopDelayMs: number;
  hashing: { running: number; queued: number; maxQueued: number };
}

export class DispatcherHealth {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  private readonly timer: NodeJS.Timeout;
  private previousMaxMs = 0;
  private readonly maxDelayMs: number;
  private readonly windowMs: number;
  private readonly pool: HashPool;

  constructor(opts: HealthOptions = {}) {
    this.maxDelayMs = opts.maxDelayMs ?? 1000;
    this.windowMs = opts.windowMs ?? 5000;
    this.pool = opts.pool ?? hashPool;
    this.histogram.enable();
    this.timer = setInterval(() => {
      this.previousMaxMs = this.histogram.max / 1e6;
      this.histogram.reset();
    }, this.windowMs);
    this.timer.unref();
  }

  check(): HealthReport {
    const delay = Math.round(Math.max(this.previousMaxMs, this.histogram.count > 0 ? this.histogram.max / 1e6 : 0));
    const problems: string[] = [];
    if (delay > this.maxDelayMs) problems.push(`the event loop was held up for ${delay} ms (more than ${this.maxDelayMs} ms): traces and requests are waiting`);
    const p = this.pool;
    if (p.queued >= p.maxQueued || Date.now() - p.lastRefusedAt < this.windowMs) {
      problems.push(`password checks are queued to their limit (${p.maxQueued}): logins are being refused`);
    }
    return { healthy: problems.length === 0, problems, eventLoopDelayMs: delay, hashing: { running: p.running, queued: p.queued, maxQueued: p.maxQueued } };
  }

  close(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}
