import { Writable } from 'node:stream';
import type { CountsRecords, ReleasesBuffers } from '../../shared/pcap/sink';
import { CHUNK_BYTES, CHUNKS_IN_FLIGHT } from '../../shared/protocol/agent';

/** Sends one chunk; resolves once the receiver acknowledged it, rejects to stop the stream. */
export type SendChunk = (seq: number, data: Buffer) => Promise<void>;

/**
 * A Writable that cuts what is written into chunks of at most `chunkBytes`
 * and hands them to `send` in order, with at most
 * `inFlight` of them not yet acknowledged: the stream's callback waits
 * only when that many are out. One chunk in flight left the link idle for
 * each ack's round trip and the ring's reads waiting on it (a big result
 * went at 14 MB/s where the query alone makes 20). At most `inFlight`
 * chunks plus one being filled and the stream's own buffer are held,
 * however large the result. A write of at least half a chunk that finds
 * nothing gathered is sent as it is, not copied, so it must not be changed
 * once written; smaller writes are gathered into chunks of exactly
 * `chunkBytes` (the last one smaller). A rejected send fails the stream and
 * every later write; the stream finishes only once every chunk is
 * acknowledged.
 */
export class ChunkWriter extends Writable implements ReleasesBuffers, CountsRecords {
  private readonly send: SendChunk;
  private readonly chunkBytes: number;
  private readonly inFlight: number;
  private buf: Buffer | null = null;
  private used = 0;
  /** The seq of the next chunk sent. */
  private nextSeq = 0;
  private seq = 0;
  private sent = 0;
  private failure: Error | null = null;
  /** Sends not yet acknowledged, oldest first. */
  private readonly pending: Array<Promise<void>> = [];
  /** With `holdFirst`: the first chunk, not sent until a second one exists or release() is called. */
  private held: Buffer | null = null;
  private readonly holdFirst: boolean;
  private released: ((b: Buffer) => void) | null = null;
  /** What the PCAP writer said of the buffers it wrote: how many whole records each holds. */
  private readonly counted = new WeakMap<Buffer, number>();

  /**
   * `holdFirst`: the first chunk is kept back until a second one is cut, so that a result that fits one
   * chunk can go whole in one message (trace:result): after the stream finishes, whole() has it; else
   * release() sends it as chunk 0.
   */
  constructor(send: SendChunk, chunkBytes: number = CHUNK_BYTES, inFlight: number = CHUNKS_IN_FLIGHT, holdFirst = false) {
    // A chunk's worth: the PCAP writer sizes its batches to it, so that each goes as one chunk.
    super({ highWaterMark: Number.isInteger(chunkBytes) && chunkBytes > 0 ? chunkBytes : undefined });
    this.holdFirst = holdFirst;
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1) throw new RangeError(`chunkBytes must be a positive integer, not ${chunkBytes}`);
    if (!Number.isInteger(inFlight) || inFlight < 1) throw new RangeError(`inFlight must be a positive integer, not ${inFlight}`);
    this.send = send;
    this.chunkBytes = chunkBytes;
    this.inFlight = inFlight;
    // The failure reaches the caller through the PCAP writer's rejection; an
    // 'error' event nobody listens to would take the whole agent down.
    this.on('error', () => {});
  }

  /**
   * `listener` gets each chunk's buffer once `send` resolved (acknowledged):
   * the link has sent every byte of it and `send` is done with it, so the
   * PCAP writer builds a later batch in it rather than in a fresh buffer.
   */
  onReleased(listener: (b: Buffer) => void): void {
    this.released = listener;
  }

  /** The writer's count of a buffer it writes next (-1: unknown); a buffer it reuses is told again. */
  recordsWritten(chunk: Buffer, records: number): void {
    if (records >= 0) this.counted.set(chunk, records);
    else this.counted.delete(chunk);
  }

  /**
   * The records in `data`, a chunk given to `send`, when the writer counted
   * them and the chunk is its buffer as written (sent as it is, not gathered
   * with others); undefined otherwise.
   */
  recordsIn(data: Buffer): number | undefined {
    return this.counted.get(data);
  }

  /** Chunks sent and acknowledged so far. */
  get chunks(): number {
    return this.seq;
  }

  /** Bytes of those chunks. */
  get bytes(): number {
    return this.sent;
  }

  /** Once the stream finished: the whole result when it fit one chunk and nothing was sent (empty: nothing written), else null. */
  whole(): Buffer | null {
    return this.nextSeq > 0 ? null : this.held ?? Buffer.alloc(0);
  }

  /** Sends the held chunk as chunk 0 and waits for its ack (the result goes the chunked way after all). */
  async release(): Promise<void> {
    const h = this.held;
    this.held = null;
    if (h) await this.sendNow(h);
    while (this.pending.length > 0) await this.pending.shift();
  }

  override _write(data: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.take(data).then(() => cb(), (e: Error) => cb(e));
  }

  override _final(cb: (e?: Error | null) => void): void {
    (async () => {
      if (this.used > 0) await this.flush();
      while (this.pending.length > 0) await this.pending.shift();
    })().then(() => cb(), (e: Error) => cb(e));
  }

  private async take(data: Buffer): Promise<void> {
    // A write of half a chunk to a whole one, with nothing gathered before it, goes as it is: the PCAP
    // writer's batches are this stream's highWaterMark (a chunk) less a record at most, each its own
    // buffer, given once. Copying them into chunks of exactly chunkBytes cost the agent a copy of every
    // byte and a fresh buffer per chunk (V8 runs a full collection every few MB of buffers).
    if (this.used === 0 && data.length * 2 >= this.chunkBytes && data.length <= this.chunkBytes) return this.sendChunk(data);
    let i = 0;
    while (i < data.length) {
      if (this.failure) throw this.failure;
      // A fresh buffer per chunk: the one sent may still be referenced by the socket.
      this.buf ??= Buffer.allocUnsafe(this.chunkBytes);
      const n = Math.min(this.chunkBytes - this.used, data.length - i);
      data.copy(this.buf, this.used, i, i + n);
      this.used += n;
      i += n;
      if (this.used === this.chunkBytes) await this.flush();
    }
  }

  /** Sends the chunk being filled. */
  private flush(): Promise<void> {
    const data = this.buf!.subarray(0, this.used);
    this.buf = null;
    this.used = 0;
    return this.sendChunk(data);
  }

  /** Sends one chunk (with holdFirst the first is kept back); waits while `inFlight` chunks are unacknowledged. */
  private async sendChunk(data: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.holdFirst && this.nextSeq === 0 && this.held === null) {
      this.held = data;
      return;
    }
    if (this.held) {
      const h = this.held;
      this.held = null;
      await this.sendNow(h);
    }
    await this.sendNow(data);
  }

  private async sendNow(data: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    const sent = this.send(this.nextSeq++, data).then(
      () => {
        this.seq++;
        this.sent += data.length;
        this.released?.(data);
      },
      (e: Error) => {
        this.failure ??= e;
        throw e;
      },
    );
    // Awaited below or by _final; a failure meanwhile is kept in `failure`.
    sent.catch(() => {});
    this.pending.push(sent);
    while (this.pending.length >= this.inFlight) await this.pending.shift();
    if (this.failure) throw this.failure;
  }
}
