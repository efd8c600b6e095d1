/*
 * What keeps one `/client` connection (or one user's many) from taking the
 * dispatcher for itself: token buckets on the events sent, a bound on the
 * handlers running at once, and reads shared by everyone asking the same
 * thing at the same time.
 */

export interface ClientLimits {
  /** Events a socket may send at once (its bucket's size). */
  socketBurst: number;
  /** Events a second a socket's bucket refills with. */
  socketPerSec: number;
  /** The same for all of one user's sockets on this dispatcher together. */
  userBurst: number;
  userPerSec: number;
  /** Handlers of one socket running at once; more are refused until one ends. */
  socketInFlight: number;
  /** Traces one socket may watch at once (rooms joined). */
  socketWatches: number;
  /**
   * Refusals in a row after which a socket is disconnected: a client that
   * goes on after "slow down" is not listening, and each further event, even
   * refused, costs the dispatcher its decoding and its answer.
   */
  socketRefusedMax: number;
}

/**
 * A person clicking, the page (one watch per trace opened) and the CLI (one
 * request at a time) stay far below these; a script looping on events
 * without waiting for the acks does not.
 */
export const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  socketBurst: 100,
  socketPerSec: 50,
  userBurst: 200,
  userPerSec: 100,
  socketInFlight: 8,
  socketWatches: 200,
  socketRefusedMax: 200,
};

export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(
    private readonly size: number,
    private readonly perSec: number,
    now = Date.now(),
  ) {
    this.tokens = size;
    this.at = now;
  }

  /** Takes one token when there is one; otherwise says how many ms until there is. */
  take(now = Date.now()): { ok: true } | { ok: false; retryMs: number } {
    this.tokens = Math.min(this.size, this.tokens + ((now - this.at) / 1000) * this.perSec);
    this.at = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return { ok: true };
    }
    return { ok: false, retryMs: Math.ceil(((1 - this.tokens) / this.perSec) * 1000) };
  }
}

/**
 * Concurrent reads of the same key share one. A caller arriving while a
 * read is in flight gets the next one, started when that one ends (and
 * shared by everyone who arrived meanwhile): it never gets an answer read
 * before it asked, so a watcher that joined a trace's room cannot be handed
 * a state older than its join.
 */
export class FreshReads<V> {
  private readonly inFlight = new Map<string, Promise<V>>();
  private readonly next = new Map<string, Promise<V>>();

  read(key: string, load: () => Promise<V>): Promise<V> {
    const queued = this.next.get(key);
    if (queued) return queued;
    const current = this.inFlight.get(key);
    if (!current) return this.start(key, load);
    const after = current.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      this.next.delete(key);
      return this.start(key, load);
    });
    this.next.set(key, after);
    return after;
  }

  private start(key: string, load: () => Promise<V>): Promise<V> {
    const p = load();
    this.inFlight.set(key, p);
    const done = () => {
      if (this.inFlight.get(key) === p) this.inFlight.delete(key);
    };
    p.then(done, done);
    return p;
  }
}
