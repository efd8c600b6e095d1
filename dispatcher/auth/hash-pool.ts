/*
 * Password hashing off the event loop and off libuv's thread pool: scrypt
 * runs on worker threads of its own (hash-worker.ts), so a flood of logins
 * costs CPU on those threads but never holds up the file and DNS work every
 * trace waits on. Jobs beyond a small queue are refused at once (AuthError
 * 'busy', a 429) instead of piling up behind each other.
 */

import { Worker } from 'node:worker_threads';
import { AuthError } from './errors';

export interface ScryptJobParams {
  N: number;
  r: number;
  p: number;
  maxmem: number;
}

export interface HashJob {
  id: number;
  password: string;
  salt: Uint8Array;
  keyBytes: number;
  params: ScryptJobParams;
}

export type HashReply = { id: number; key: Uint8Array } | { id: number; error: string };

export interface HashPoolOptions {
  /** Worker threads; default 1, leaving the other cores to the traces. */
  threads?: number;
  /** Jobs waiting for a thread beyond which new ones are refused; default 32. */
  maxQueued?: number;
}

interface Pending {
  job: HashJob;
  resolve(key: Buffer): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  current: Pending | null;
}

export class HashPool {
  readonly threads: number;
  readonly maxQueued: number;
  private readonly queue: Pending[] = [];
  private readonly slots: Slot[] = [];
  private nextId = 1;
  /** Jobs refused because the queue was full, since start (for /healthz and /metrics). */
  refused = 0;
  /** When a job was last refused (ms since the epoch), 0 if never. */
  lastRefusedAt = 0;

  constructor(opts: HashPoolOptions = {}) {
    this.threads = Math.max(1, Math.floor(opts.threads ?? 1));
    this.maxQueued = Math.max(0, Math.floor(opts.maxQueued ?? 32));
  }

  /** Jobs waiting for a thread. */
  get queued(): number {
    return this.queue.length;
  }

  /** Jobs being hashed now. */
  get running(): number {
    return this.slots.filter((s) => s.current).length;
  }

  derive(password: string, salt: Buffer, keyBytes: number, params: ScryptJobParams): Promise<Buffer> {
    const idle = this.idleSlot();
    if (!idle && this.queue.length >= this.maxQueued) {
      this.refused++;
      this.lastRefusedAt = Date.now();
      return Promise.reject(
        new AuthError('busy', `the dispatcher is checking ${this.running + this.queue.length} passwords already: try again in a few seconds`, 2000),
      );
    }
    return new Promise<Buffer>((resolve, reject) => {
      const p: Pending = { job: { id: this.nextId++, password, salt: new Uint8Array(salt), keyBytes, params }, resolve, reject };
      if (idle) this.run(idle, p);
      else this.queue.push(p);
    });
  }

  private idleSlot(): Slot | null {
    const free = this.slots.find((s) => !s.current);
    if (free) return free;
    if (this.slots.length < this.threads) return this.spawn();
    return null;
  }

  private spawn(): Slot {
    const worker = new Worker(require.resolve('./hash-worker'));
    // Idle workers must not keep a CLI command or a test process alive.
    worker.unref();
    const slot: Slot = { worker, current: null };
    worker.on('message', (r: HashReply) => {
      const p = slot.current;
      slot.current = null;
      if (p && p.job.id === r.id) {
        if ('key' in r) p.resolve(Buffer.from(r.key));
        else p.reject(new Error(r.error));
      }
      this.pump(slot);
    });
    const lost = (why: string): void => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      slot.current?.reject(new Error(`password hashing failed: ${why}`));
      slot.current = null;
      // The queue moves on to a fresh worker.
      const next = this.queue.shift();
      if (next) this.run(this.idleSlot() ?? this.spawn(), next);
    };
    worker.on('error', (e) => lost(e.message));
    worker.on('exit', (code) => lost(`the hashing thread exited with code ${code}`));
    this.slots.push(slot);
    return slot;
  }

  private run(slot: Slot, p: Pending): void {
    slot.current = p;
    slot.worker.ref();
    slot.worker.postMessage(p.job);
  }

  private pump(slot: Slot): void {
    const next = this.queue.shift();
    if (next) this.run(slot, next);
    else slot.worker.unref();
  }
}

/** The process's pool: every password check and new hash goes through it. */
export const hashPool = new HashPool();
