import { Writable } from 'node:stream';
import { CHUNK_BYTES } from '../../shared/protocol/agent';

/** Sends one chunk; resolves once the receiver acknowledged it, rejects to stop the stream. */
export type SendChunk = (seq: number, data: Buffer) => Promise<void>;

/**
 * A Writable that cuts what is written into chunks of exactly `chunkBytes`
 * (the last one smaller) and hands them to `send` one at a time, calling
 * the stream's callback only once `send` resolved: at most one chunk is in
 * flight and at most one chunk plus the stream's own buffer is held, however
 * large the result. A rejected send fails the stream and every later write.
 */
export class ChunkWriter extends Writable {
  private readonly send: SendChunk;
  private readonly chunkBytes: number;
  private buf: Buffer | null = null;
  private used = 0;
  private seq = 0;
  private sent = 0;
  private failure: Error | null = null;

  constructor(send: SendChunk, chunkBytes: number = CHUNK_BYTES) {
    super();
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1) throw new RangeError(`chunkBytes must be a positive integer, not ${chunkBytes}`);
    this.send = send;
    this.chunkBytes = chunkBytes;
    // The failure reaches the caller through the PCAP writer's rejection; an
    // 'error' event nobody listens to would take the whole agent down.
    this.on('error', () => {});
  }

  /** Chunks sent and acknowledged so far. */
  get chunks(): number {
    return this.seq;
  }

  /** Bytes of those chunks. */
  get bytes(): number {
    return this.sent;
  }

  override _write(data: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.take(data).then(() => cb(), (e: Error) => cb(e));
  }

  override _final(cb: (e?: Error | null) => void): void {
    (this.used > 0 ? this.flush() : Promise.resolve()).then(() => cb(), (e: Error) => cb(e));
  }

  private async take(data: Buffer): Promise<void> {
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

  private async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    const data = this.buf!.subarray(0, this.used);
    this.buf = null;
    this.used = 0;
    try {
      await this.send(this.seq, data);
    } catch (e) {
      this.failure = e as Error;
      throw e;
    }
    this.seq++;
    this.sent += data.length;
  }
}
