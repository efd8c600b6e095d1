import { join } from 'node:path';
import { MessageChannel, MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { IndexerOptions } from './builder';
import type { ImportIndexCommand, ImportIndexReport, ImportWorkerData } from './import-worker';

/**
 * Segments a thread holds at most (its memory is the index state of each). One: the import writes faster than a
 * thread indexes, and indexes a segment itself when no thread is free.
 */
const AHEAD = 1;
/** A thread that neither reports nor indexes for this long while the import waits on it has died (e.g. out of memory). */
const STALL_MS = 5 * 60_000;

interface Thread {
  worker: Worker;
  port: MessagePort;
  /** Segments given and not yet sealed or abandoned. */
  held: number;
  /** Runs given to the thread to write and index: `ring` bytes, in use from `done[0]` to `given` (counts of bytes ever given). */
  ring: Buffer;
  given: number;
  done: BigInt64Array;
}

/** A place in a thread's ring: `buf[at]`, `start` in the count of ring bytes ever given to the thread. */
export interface RingSpace {
  path: string;
  buf: Buffer;
  at: number;
  start: number;
}

/** A failure a thread reported: the segment, and the system error's code when it was one (import.ts words what to do). */
export class ImportThreadError extends Error {
  constructor(readonly path: string, message: string, readonly code: string | null) {
    super(message);
  }
}

/**
 * ring import's index threads (import-worker.ts): the import writes segments on its own thread and a segment
 * given to one of these is indexed and sealed there as it is written, so that indexing, most of an import's
 * CPU, runs on more than one core. Synchronous for the import's loop: it takes reports with
 * receiveMessageOnPort and waits for the last on a shared counter (Atomics), never through its event loop.
 */
export class ImportIndexPool {
  private readonly threads: Thread[] = [];
  private readonly owner = new Map<string, Thread>();
  /** [0]: reports posted by every thread; [1]: catch-ups they finished (they are alive). */
  private readonly posted = new Int32Array(new SharedArrayBuffer(8));
  private failure: Error | null = null;

  /**
   * `ringBytes`: each thread's ring of runs (shared memory: what the import has read and a thread has not yet
   * written and indexed), at least the biggest run. Memory is touched only as far as the import gets ahead.
   */
  constructor(size: number, opts: IndexerOptions, ringBytes: number) {
    const { onMessage: _m, onRtcp: _r, ...plain } = opts;
    for (let i = 0; i < size; i++) {
      const { port1, port2 } = new MessageChannel();
      const ring = new SharedArrayBuffer(ringBytes);
      const done = new SharedArrayBuffer(8);
      const data: ImportWorkerData = { port: port2, posted: this.posted.buffer as SharedArrayBuffer, ring, ringDone: done, opts: plain };
      const worker = new Worker(join(__dirname, 'import-worker.js'), { workerData: data, transferList: [port2] });
      // A thread that fails outside a command has no segment to name; the stall bound reports it.
      worker.on('error', () => {});
      this.threads.push({ worker, port: port1, held: 0, ring: Buffer.from(ring), given: 0, done: new BigInt64Array(done) });
    }
  }

  /** A new segment (created, its PCAP `header` written), given to a free thread (true); false when every thread holds AHEAD. */
  tryOpen(path: string, indexPath: string, header: Buffer): boolean {
    this.collect();
    this.throwFailure();
    const t = this.least();
    if (t.held >= AHEAD) return false;
    t.held++;
    this.owner.set(path, t);
    this.send(path, { type: 'open', path, indexPath, header });
    return true;
  }

  /**
   * Room for `n` bytes in the ring of the segment's thread, for the import to read a segment's records into and
   * hand them from (handRun); null when the thread is that far behind (a ring of unindexed runs). Taken only
   * by handRun: asked again, the same place (or the ring's start, at its wrap).
   */
  ringSpace(path: string, n: number): RingSpace | null {
    const t = this.owner.get(path);
    if (!t) throw new Error(`ring import: segment ${path} was not given to an index thread`);
    const size = t.ring.length;
    if (n > size) return null;
    let start = t.given;
    // A read is contiguous in the ring: one that would cross its end starts over at its beginning.
    if ((start % size) + n > size) start += size - (start % size);
    if (start + n - Number(Atomics.load(t.done, 0)) > size) return null;
    return { path, buf: t.ring, at: start % size, start };
  }

  /**
   * Whole records of the segment at file offset `at`, read into its thread's ring at `start` (a place ringSpace
   * gave, counted in ring bytes ever given): the thread writes and indexes them from there.
   */
  handRun(path: string, start: number, len: number, at: number): void {
    const t = this.owner.get(path);
    if (!t) throw new Error(`ring import: segment ${path} was not given to an index thread`);
    const size = t.ring.length;
    if (start < t.given || (start % size) + len > size) throw new Error(`ring import: a run at ${start} of ${len} bytes is not in the ring's free space`);
    t.given = start + len;
    this.send(path, { type: 'run', path, at, ringAt: start % size, len, ringEnd: t.given });
  }

  /** The caller wrote these whole records of the segment itself (not read into the ring): the thread reads them back. */
  written(path: string, at: number, len: number): void {
    this.send(path, { type: 'written', path, at, len });
  }

  /** Records written one by one (no range): the thread indexes what whole records the file has. */
  grown(path: string): void {
    this.send(path, { type: 'grown', path });
  }

  /** The segment is complete and closed: seal it. */
  seal(path: string): void {
    this.send(path, { type: 'seal', path });
    this.owner.delete(path);
  }

  /** Left unsealed (the import failed while writing it). */
  abandon(path: string): void {
    this.send(path, { type: 'abandon', path });
    this.owner.delete(path);
  }

  /** Waits until every segment given is sealed or abandoned; throws the first error a thread reported. */
  drain(): void {
    while (this.threads.some((t) => t.held > 0)) this.waitReport();
    this.throwFailure();
  }

  /** abandon() and drain() for an import that is failing already: its own error is the one to throw. */
  abandonQuietly(path: string): void {
    const t = this.owner.get(path);
    this.owner.delete(path);
    t?.port.postMessage({ type: 'abandon', path } satisfies ImportIndexCommand);
  }

  drainQuietly(): void {
    try {
      this.drain();
    } catch {
      // see abandonQuietly
    }
  }

  /** Ends the threads (after drain(), or after a failure: what they held is left unsealed). */
  async stop(): Promise<void> {
    await Promise.all(
      this.threads.map((t) => {
        t.port.postMessage({ type: 'stop' } satisfies ImportIndexCommand);
        t.port.close();
        return t.worker.terminate();
      }),
    );
  }

  private send(path: string, c: ImportIndexCommand): void {
    this.collect();
    this.throwFailure();
    const t = this.owner.get(path);
    if (!t) throw new Error(`ring import: segment ${path} was not given to an index thread`);
    t.port.postMessage(c);
  }

  private least(): Thread {
    let best = this.threads[0];
    for (const t of this.threads) if (t.held < best.held) best = t;
    return best;
  }

  private throwFailure(): void {
    if (this.failure) throw this.failure;
  }

  /** Takes every report posted so far; true if there was one. */
  private collect(): boolean {
    let any = false;
    for (const t of this.threads) {
      for (let m = receiveMessageOnPort(t.port); m !== undefined; m = receiveMessageOnPort(t.port)) {
        any = true;
        const r = m.message as ImportIndexReport;
        t.held--;
        if (r.type === 'error' && !this.failure) this.failure = new ImportThreadError(r.path, r.message, r.code);
      }
    }
    return any;
  }

  /** Blocks until a thread reports (a segment sealed, abandoned or failed). */
  private waitReport(): void {
    let start = Date.now();
    let alive = Atomics.load(this.posted, 1);
    for (;;) {
      const seen = Atomics.load(this.posted, 0);
      if (this.collect()) return;
      if (Atomics.load(this.posted, 1) !== alive) {
        alive = Atomics.load(this.posted, 1);
        start = Date.now();
      }
      if (Date.now() - start > STALL_MS) throw new Error(`ring import: no index thread reported or indexed for ${STALL_MS / 1000} s (one has stopped)`);
      Atomics.wait(this.posted, 0, seen, 1000);
    }
  }
}
