import { WriteStream } from 'node:fs';
import { finished } from 'node:stream';

/** Bytes gathered before one write to the stream: the stream's highWaterMark within these bounds (a file stream's: FILE_BATCH). */
const MIN_BATCH = 64 * 1024;
const MAX_BATCH = 256 * 1024;
/**
 * A file stream's batch. With MAX_BATCH's, and so a quarter of these bytes
 * in flight, a one-host merge of 200 MiB to a file took 0.38 s and 0.29 s
 * of CPU against 0.35 s and 0.23 s with these (paired, same load): four
 * times fewer writes, callbacks and trips through the thread pool, and the
 * merge waits for 'drain' a quarter as often.
 */
const FILE_BATCH = 1024 * 1024;
/**
 * The bound for a stream that asks for more than MAX_BATCH: the agent's
 * chunk stream (agent/trace/chunks.ts) asks for a chunk, 1 MiB when the
 * dispatcher offers MAX_CHUNK_BYTES, and sends a write of half a chunk or
 * more as it is. Batches of MAX_BATCH were each copied into a fresh 1 MiB
 * chunk there: a second copy of every byte of a result, and 200 MiB more of
 * fresh Buffers per 200 MiB sent.
 */
const MAX_STREAM_BATCH = 1024 * 1024;
/**
 * Batches handed to the stream and not yet written before the caller is
 * asked to wait: a small-highWaterMark stream (a file's is 16 KiB) would
 * otherwise say "wait" after every batch, and the writer would sit idle for
 * each write(2) to finish instead of building the next batch meanwhile.
 */
const BATCHES_IN_FLIGHT = 4;

/**
 * TypedArray.prototype.set, called as such: `batch.set` on a Buffer looks it
 * up through Buffer.prototype, which holds so many methods that V8 keeps it
 * as a dictionary, and optimised code made that a generic property load per
 * call (callgrind: 70 instructions a record when the merge copies records
 * one at a time).
 */
const typedArraySet = Uint8Array.prototype.set;
const typedArrayCopyWithin = Uint8Array.prototype.copyWithin;

/**
 * Bytes a caller may lend a file stream's writer for its batches (see
 * lendBatches()): as many as it ever holds in flight or spare.
 */
export const LENDABLE_BATCH_BYTES = (BATCHES_IN_FLIGHT + 1) * MAX_BATCH;

/**
 * A stream that says when it is done with a buffer written to it, later
 * than its write callback: the agent's chunk stream (agent/trace/chunks.ts),
 * once the dispatcher acknowledged the chunk. A writer over it builds its
 * later batches in those buffers, as over a file stream.
 */
export interface ReleasesBuffers {
  onReleased(listener: (b: Buffer) => void): void;
}

/**
 * A stream told, before each batch is written to it, how many records the
 * batch holds: -1 when the writer does not know (bytes put as a range,
 * which may cut a record, or a writer that does not count). The agent's
 * chunk stream, whose progress reports count the packets sent: walking
 * every chunk's framing again to count them was 4-5% of the agent's CPU
 * serving a big result, where the writer had just walked it to cut its
 * batches.
 */
export interface CountsRecords {
  recordsWritten(chunk: Buffer, records: number): void;
}

/**
 * What the streaming capture writers (PCAP, PCAPNG) share: writes with
 * backpressure over any writable stream, and stream errors caught here (an
 * unhandled 'error' event would kill the process) that surface as a
 * rejection of waitDrain()/end() or a throw from the next write.
 *
 * Records are built straight into a batch buffer (the stream's
 * highWaterMark, within MIN_BATCH..MAX_STREAM_BATCH; a file stream's FILE_BATCH) and written a batch at a time: a write
 * per packet made Node's stream machinery (and writev of hundreds of
 * thousands of small buffers) most of a merge's CPU. What is gathered goes
 * out when the batch is full, on flush() and on end(); a caller that waits
 * for its input between packets flushes first so its reader is not kept
 * waiting.
 */
export abstract class StreamSink {
  protected readonly out: NodeJS.WritableStream;
  private error: Error | null = null;
  private blocked = false;
  private ending: Promise<void> | null = null;
  private batchSize: number;
  private inFlight: number;
  /** Where records are built; replaced after each write, since the stream keeps the one written. */
  protected batch: Buffer | null = null;
  private used = 0;
  /** The memory lent by lendBatches(), whole, and where the batch is in it (-1: the batch is not in it). */
  private within: Uint8Array | null = null;
  /** within's ArrayBuffer: a typed array's `buffer` is a call into C++ each time it is read. */
  private withinAb: ArrayBuffer | null = null;
  private batchAt = -1;
  /** Records in the batch, every byte of which came whole from a commit that counted them; -1 once some did not. */
  private batchRecords = 0;
  private readonly counts: CountsRecords | null;
  /**
   * Batches a file stream has written, to build the next ones in: a file
   * stream is done with a chunk once its write callback runs (the bytes are
   * in the kernel), and a fresh batch per write cost a merge more system
   * time in page faults than its own parsing. Batches a ReleasesBuffers
   * stream released, likewise. Null for any other stream (a PassThrough,
   * say, still holds a chunk after its callback).
   */
  private readonly spare: Buffer[] | null;
  /** Whether a batch is spare again at its write callback (a file stream). */
  private readonly spareAtCallback: boolean;
  /** Ends a waitDrain() early (see written()). */
  private drainWaiter: (() => void) | null = null;

  protected constructor(
    out: NodeJS.WritableStream,
    private readonly what: string,
  ) {
    this.out = out;
    const hwm = (out as { writableHighWaterMark?: number }).writableHighWaterMark;
    const file = out instanceof WriteStream;
    // A file stream's highWaterMark (16 KiB) made 64 KiB batches: each a write(2) and a trip through the thread pool, and
    // the merge of 200 MiB to a file waited for 'drain' 787 times (four batches in flight). FILE_BATCH divides both by
    // 16, and the batches are reused (`spare`), so it costs about 5 MiB per writer.
    this.batchSize = file ? FILE_BATCH : Math.min(MAX_STREAM_BATCH, Math.max(MIN_BATCH, typeof hwm === 'number' ? hwm : 0));
    // Bytes, not batches: a stream of bigger batches holds no more queued than one of MAX_BATCH did (a file's four FILE_BATCH).
    this.inFlight = BATCHES_IN_FLIGHT * (file ? FILE_BATCH : Math.min(this.batchSize, MAX_BATCH));
    const releases = typeof (out as Partial<ReleasesBuffers>).onReleased === 'function';
    this.spareAtCallback = file;
    this.spare = file || releases ? [] : null;
    if (releases) (out as unknown as ReleasesBuffers).onReleased((b) => this.takeBack(b));
    this.counts = typeof (out as Partial<CountsRecords>).recordsWritten === 'function' ? (out as unknown as CountsRecords) : null;
    out.on('error', (err: Error) => {
      this.error ??= err;
    });
  }

  /** Throws the stream's error, or when the sink was ended: call before building a record. */
  protected check(): void {
    if (this.error) throw this.error;
    if (this.ending) throw new Error(`${this.what}.write() after end()`);
  }

  /**
   * Room for `len` bytes in this.batch at the offset returned: fill them,
   * then commit(len). A record bigger than a batch gets a buffer of its own.
   */
  protected reserve(len: number): number {
    if (this.batch !== null && this.used + len > this.batch.length) this.flush();
    if (this.batch === null) {
      this.setBatch(len <= this.batchSize ? this.newBatch() : Buffer.allocUnsafe(len));
    }
    return this.used;
  }

  /**
   * Counts the bytes reserved as written: `records` whole records (0 for a
   * file header), or undefined when they are not known to be whole ones.
   * Returns false when the stream wants the caller to wait for waitDrain().
   */
  protected commit(len: number, records?: number): boolean {
    this.batchRecords = records === undefined || this.batchRecords < 0 ? -1 : this.batchRecords + records;
    this.used += len;
    if (this.used >= this.batchSize) this.flush();
    return !this.blocked;
  }

  /** Bytes the batch being filled still takes without going out first (a fresh batch's when none is). */
  protected get room(): number {
    return this.batch === null ? this.batchSize : this.batch.length - this.used;
  }

  /**
   * Queues src[start, end) in one batch, as reserve() places a record: a
   * fresh batch when it does not fit the one being filled.
   */
  protected putWhole(src: Buffer, start: number, end: number, records?: number): boolean {
    const at = this.reserve(end - start);
    src.copy(this.batch!, at, start, end);
    return this.commit(end - start, records);
  }

  /** Queues whole bytes (headers, blocks built elsewhere); `records` as commit() takes them. */
  protected put(b: Buffer, records?: number): boolean {
    const at = this.reserve(b.length);
    b.copy(this.batch!, at);
    return this.commit(b.length, records);
  }

  /**
   * Queues src[start, end) as it is (records already encoded for this
   * file), copied batch by batch: the caller may reuse src once it returns.
   * Returns false when the stream wants the caller to wait for waitDrain().
   */
  protected putRange(src: Buffer, start: number, end: number): boolean {
    while (start < end) {
      if (this.batch !== null && this.used === this.batch.length) this.flush();
      if (this.batch === null) this.setBatch(this.newBatch());
      const batch = this.batch!;
      const n = Math.min(end - start, batch.length - this.used);
      // A range may end within a record, in this batch or the next: not counted.
      this.batchRecords = -1;
      src.copy(batch, this.used, start, start + n);
      this.used += n;
      start += n;
    }
    if (this.used >= this.batchSize) this.flush();
    return !this.blocked;
  }

  /**
   * putRange() of a whole view, copied with set(): a fraction of the cost of
   * Buffer#copy() of a range, which in Node 20 makes a view and fetches the
   * ArrayBuffer (a call into C++) every time; the merge copies a record a time.
   */
  protected putView(v: Uint8Array): boolean {
    if (this.batch === null || this.used + v.length > this.batch.length) return this.putRange(Buffer.from(v.buffer, v.byteOffset, v.length), 0, v.length);
    typedArraySet.call(this.batch, v, this.used);
    this.batchRecords = -1;
    this.used += v.length;
    if (this.used >= this.batchSize) this.flush();
    return !this.blocked;
  }

  /**
   * Queues `len` bytes at `at` of the memory lent by lendBatches() (records
   * already encoded for this file, as putView()), copied with copyWithin():
   * no view made per call, which with the copy was a fifth of a merge's
   * instructions when it copies one record at a time. Bytes anywhere else
   * (ab is not the lent memory, or the batch is not in it) go by putView().
   */
  protected putWithin(ab: ArrayBuffer, at: number, len: number): boolean {
    if (this.batch !== null && this.used + len > this.batch.length) this.flush();
    if (this.batch === null) this.setBatch(this.newBatch());
    const w = this.within;
    if (w === null || this.batchAt < 0 || this.withinAb !== ab || this.used + len > this.batch!.length) return this.putView(new Uint8Array(ab, at, len));
    typedArrayCopyWithin.call(w, this.batchAt + this.used, at, at + len);
    this.batchRecords = -1;
    this.used += len;
    if (this.used >= this.batchSize) this.flush();
    return !this.blocked;
  }

  /**
   * Whether putBorrowed() hands bytes to the stream as they are: a file
   * stream, which is done with a chunk once its write callback runs.
   */
  canBorrow(): boolean {
    return this.spareAtCallback;
  }

  /**
   * Queues `v` itself, no copy, after what is gathered (a file stream only,
   * see canBorrow()); `done` runs once the stream is done with it, and the
   * caller leaves those bytes as they are until then. Returns false when
   * the stream wants the caller to wait for waitDrain().
   */
  protected putBorrowed(v: Buffer, done: () => void): boolean {
    this.flush();
    // Lent bytes may be any part of a run: not counted, so a counting stream walks them itself.
    this.counts?.recordsWritten(v, -1);
    const ok = this.out.write(v, (e) => {
      done();
      if (!e) this.written();
    });
    const queued = (this.out as { writableLength?: number }).writableLength;
    this.blocked = !ok && (typeof queued !== 'number' || queued >= this.inFlight);
    return !this.blocked;
  }

  /**
   * Builds this writer's batches in `mem`, from byte `at` on (at least
   * LENDABLE_BATCH_BYTES there), when its stream is a file stream (whose
   * batches are reused, see `spare`); returns false, and uses none of it,
   * otherwise. The caller then copies its bytes in the same memory to the
   * output with putWithin(). `mem` is the writer's from here on.
   */
  lendBatches(mem: Uint8Array, at: number): boolean {
    const spare = this.spare;
    if (spare === null || this.within !== null || mem.byteOffset !== 0 || at + LENDABLE_BATCH_BYTES > mem.length) return false;
    // MAX_BATCH, not FILE_BATCH, here: with 1 MiB batches lent, a 4-host merge of 200 MiB to a file spent 0.3-0.5 s more
    // in the kernel in a third to a half of its runs (0.23-0.26 s otherwise); with these it never did.
    this.batchSize = MAX_BATCH;
    this.inFlight = BATCHES_IN_FLIGHT * MAX_BATCH;
    // The batch being filled (the file header) is written at MAX_BATCH and not kept: spare holds lent batches only.
    spare.length = 0;
    this.within = mem;
    this.withinAb = mem.buffer as ArrayBuffer;
    for (let i = 0; i + this.batchSize <= LENDABLE_BATCH_BYTES && spare.length <= BATCHES_IN_FLIGHT; i += this.batchSize) {
      spare.push(Buffer.from(mem.buffer, at + i, this.batchSize));
    }
    return true;
  }

  private setBatch(b: Buffer): void {
    this.batch = b;
    this.used = 0;
    this.batchRecords = 0;
    this.batchAt = this.withinAb !== null && b.buffer === this.withinAb ? b.byteOffset : -1;
  }

  /** A buffer the stream released: kept when it is a whole batch of this writer's, in memory of its own, and fewer than the most in flight are spare. */
  private takeBack(b: Buffer): void {
    const spare = this.spare!;
    if (b.byteOffset !== 0 || b.buffer.byteLength !== this.batchSize || spare.length > BATCHES_IN_FLIGHT) return;
    spare.push(b.length === this.batchSize ? b : Buffer.from(b.buffer, 0, this.batchSize));
  }

  private newBatch(): Buffer {
    return this.spare?.pop() ?? Buffer.allocUnsafe(this.batchSize);
  }

  /** Hands what is gathered to the stream now. Returns false when the stream wants the caller to wait for waitDrain(). */
  flush(): boolean {
    if (this.batch !== null && this.used > 0 && !this.error) {
      const b = this.batch;
      const chunk = this.used === b.length ? b : b.subarray(0, this.used);
      const spare = this.spare;
      this.counts?.recordsWritten(chunk, this.batchRecords);
      // Bounded: at most the batches in flight come back, and those lent (lendBatches()) are kept over the others.
      const ok =
        spare !== null && this.spareAtCallback && b.length === this.batchSize
          ? this.out.write(chunk, (e) => {
              if (e) return;
              if (spare.length < BATCHES_IN_FLIGHT + 1 || b.buffer === this.withinAb) spare.push(b);
              this.written();
            })
          : this.out.write(chunk);
      const queued = (this.out as { writableLength?: number }).writableLength;
      // A stream whose highWaterMark is above inFlight is waited for when it says so.
      this.blocked = !ok && (typeof queued !== 'number' || queued >= this.inFlight);
      this.batch = null;
      this.batchAt = -1;
      this.used = 0;
    }
    return !this.blocked;
  }

  /**
   * A file stream wrote a batch (its callback): a caller waiting for room
   * goes on once fewer than inFlight bytes are queued, not at 'drain', which
   * is when none are: the thread pool then sat idle while the next batch
   * was built, and a 4-host merge to a file waited 60 ms in 0.24 s for it.
   */
  private written(): void {
    const w = this.drainWaiter;
    if (w !== null && (this.out as { writableLength?: number }).writableLength! < this.inFlight) w();
  }

  waitDrain(): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (!this.blocked) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        this.drainWaiter = null;
        this.out.removeListener('drain', onDrain);
        this.out.removeListener('error', onError);
        this.out.removeListener('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => {
        this.blocked = false;
        done();
      };
      const onError = (err: Error) => done(err);
      const onClose = () => done(this.error ?? new Error('stream closed before it drained'));
      this.drainWaiter = onDrain;
      this.out.on('drain', onDrain);
      this.out.on('error', onError);
      this.out.on('close', onClose);
    });
  }

  /** Ends the stream; resolves once all data is flushed, rejects on a stream error. */
  end(): Promise<void> {
    if (!this.ending) {
      this.ending = new Promise<void>((resolve, reject) => {
        if (this.error) {
          reject(this.error);
          return;
        }
        this.flush();
        finished(this.out, (err) => {
          const e = this.error ?? err;
          if (e) reject(e);
          else resolve();
        });
        this.out.end();
      });
    }
    return this.ending;
  }
}
