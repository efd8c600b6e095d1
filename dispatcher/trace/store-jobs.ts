import type { Counter, Gauge } from 'prom-client';
import { StoreError, StoreUnreachableError } from '../store/store';
import type { Logger } from '../../shared/log/log';

/** Store work; `after` runs once it succeeded and left the pending list. */
interface Job {
  run: () => Promise<void>;
  after?: () => void;
}

/** A job that must wait for another (a merge for its hosts' results). */
export class RetryLater extends Error {}

export interface StoreJobsOptions {
  /** How often work the store could not take is tried again (ms). */
  retryMs: number;
  log: Logger;
  /** Counted with kind="store" on every failure. */
  errors: Counter<'kind'>;
  pending: Gauge;
}

/**
 * Work for the store that must not be lost when the store is away: a job the
 * store refused for being unreachable, busy (5xx) or conflicting stays
 * pending, by key, and is tried again every retryMs (host results before
 * merges) until it succeeds or fails for good.
 */
export class StoreJobs {
  private readonly pending = new Map<string, Job>();
  /** Jobs being tried now: the retry loop leaves them be. */
  private readonly inFlight = new Set<Job>();
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly opts: StoreJobsOptions) {}

  /** Runs a store job now; if the store is away it stays pending and is tried again every retryMs. */
  enqueue(key: string, run: () => Promise<void>, after?: () => void): void {
    const job: Job = { run, after };
    this.pending.set(key, job);
    this.opts.pending.set(this.pending.size);
    void this.runJob(key, job);
  }

  has(key: string): boolean {
    return this.pending.has(key);
  }

  /** True while a job whose key starts with `prefix` is pending. */
  hasPrefix(prefix: string): boolean {
    for (const k of this.pending.keys()) if (k.startsWith(prefix)) return true;
    return false;
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private async runJob(key: string, job: Job): Promise<void> {
    if (this.inFlight.has(job)) return;
    this.inFlight.add(job);
    try {
      await job.run();
      if (this.pending.get(key) === job) this.pending.delete(key);
      this.opts.pending.set(this.pending.size);
      job.after?.();
    } catch (e) {
      if (e instanceof RetryLater || e instanceof StoreUnreachableError || (e instanceof StoreError && e.statusCode !== undefined && (e.statusCode >= 500 || e.statusCode === 409))) {
        if (!(e instanceof RetryLater)) {
          this.opts.errors.inc({ kind: 'store' });
          this.opts.log.warn({ job: key, err: e, retryMs: this.opts.retryMs }, 'store write failed; kept in the spool, trying again');
        }
        this.scheduleRetry();
      } else {
        this.opts.errors.inc({ kind: 'store' });
        this.opts.log.error({ job: key, err: e }, 'store write failed; giving up');
        if (this.pending.get(key) === job) this.pending.delete(key);
      }
    } finally {
      this.inFlight.delete(job);
    }
    this.opts.pending.set(this.pending.size);
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      // Host results before merges: a merge waits for its hosts.
      const jobs = [...this.pending.entries()].sort(([a], [b]) => Number(a.startsWith('merge:')) - Number(b.startsWith('merge:')));
      void (async () => {
        for (const [k, j] of jobs) if (this.pending.get(k) === j) await this.runJob(k, j);
      })();
    }, this.opts.retryMs);
    this.retryTimer.unref();
  }
}
