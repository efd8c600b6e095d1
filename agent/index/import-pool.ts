import { join } from 'node:path';
import { MessageChannel, MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import type { IndexerOptions } from './builder';
import type { ImportIndexCommand, ImportIndexReport, ImportWorkerData } from './import-worker';

/**
 * Segments a thread holds at most (its memory is the index state of each): the one it indexes and the next,
 * queued when it is near the end of the first (see tryOpen).
 */
const AHEAD = 2;
/** A thread that neither reports nor indexes for this long while the import waits on it has died (e.g. out of memory). */
const STALL_MS = 5 * 60_000;

interface Thread {
  worker: Worker;
  port: MessagePort;
  /** Segments given and not yet sealed or abandoned. */
  held: number;
  /** Segment bytes given to the thread (see advance()), and [0]: those it has indexed. */
  given: number;
  indexed: BigInt64Array;
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
  /** Each segment's bytes counted in its thread's `given`. */
  private readonly counted = new Map<string, number>();

  /**
   * `queueBelow`: a thread still indexing takes a new segment when it has fewer bytes than this left to index
   * (half a segment: it is done with them before the importing thread would be with the new one).
   */
  constructor(size: number, opts: IndexerOptions, private readonly queueBelow: number) {
    const { onMessage: _m, onRtcp: _r, ...plain } = opts;
    for (let i = 0; i < size; i++) {
      const { port1, port2 } = new MessageChannel();
      const indexed = new BigInt64Array(new SharedArrayBuffer(8));
      const data: ImportWorkerData = { port: port2, posted: this.posted.buffer as SharedArrayBuffer, indexed: indexed.buffer as SharedArrayBuffer, opts: plain };
      const worker = new Worker(join(__dirname, 'import-worker.js'), { workerData: data, transferList: [port2] });
      // A thread that fails outside a command has no segment to name; the stall bound reports it.
      worker.on('error', () => {});
      this.threads.push({ worker, port: port1, held: 0, given: 0, indexed });
    }
  }

  /**
   * A new segment (created, its PCAP `header` written), given to the thread with the least left to index (true)
   * when that is under queueBelow; false: the importing thread indexes it itself. A thread nearly done takes
   * it queued: when only a free thread took one, a thread that finished a moment after the importing thread
   * opened the next segment left that one to the importing thread as well, and stood idle for a whole segment
   * (a segment is the unit: on two cores, 4 segments took 3 segments' time instead of 2).
   */
  tryOpen(path: string, indexPath: string, header: Buffer): boolean {
    this.collect();
    this.throwFailure();
    let t: Thread | null = null;
    for (const c of this.threads) if (c.held < AHEAD && (t === null || this.left(c) < this.left(t))) t = c;
    if (t === null || this.left(t) >= this.queueBelow) return false;
    t.held++;
    this.owner.set(path, t);
    this.counted.set(path, 0);
    this.send(path, { type: 'open', path, indexPath, header });
    return true;
  }

  /**
   * Whole records of the segment at file offset `at`, as they are at `srcAt` in the source file `src` (the
   * import checked them there, `limit` and `subMax` as copyable() takes them): the thread reads them, checks them
   * again, writes them to the segment and indexes them.
   */
  copy(path: string, src: string, srcAt: number, len: number, at: number, limit: number, subMax: number): void {
    this.send(path, { type: 'copy', path, src, srcAt, len, at, limit, subMax });
    this.advance(path, at + len);
  }

  /** Records written one by one up to `size` (no range): the thread indexes what whole records the file has. */
  grown(path: string, size: number): void {
    this.send(path, { type: 'grown', path });
    this.advance(path, size);
  }

  /** The segment is complete (`size` bytes) and closed: seal it. */
  seal(path: string, size: number): void {
    this.send(path, { type: 'seal', path });
    this.advance(path, size);
    this.owner.delete(path);
    this.counted.delete(path);
  }

  /** The segment's bytes so far are `size` (its thread indexes them): counted in the thread's `given`. */
  private advance(path: string, size: number): void {
    const t = this.owner.get(path)!;
    t.given += size - (this.counted.get(path) ?? size);
    this.counted.set(path, size);
  }

  /** Bytes given to the thread that it has not indexed yet. */
  private left(t: Thread): number {
    return t.given - Number(Atomics.load(t.indexed, 0));
  }

  /** Left unsealed (the import failed while writing it). */
  abandon(path: string): void {
    this.send(path, { type: 'abandon', path });
    this.owner.delete(path);
    this.counted.delete(path);
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
    this.counted.delete(path);
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
