import { finished } from 'node:stream';

/**
 * What the streaming capture writers (PCAP, PCAPNG) share: writes with
 * backpressure over any writable stream, and stream errors caught here (an
 * unhandled 'error' event would kill the process) that surface as a
 * rejection of waitDrain()/end() or a throw from the next write.
 */
export abstract class StreamSink {
  protected readonly out: NodeJS.WritableStream;
  private error: Error | null = null;
  private blocked = false;
  private ending: Promise<void> | null = null;

  protected constructor(
    out: NodeJS.WritableStream,
    private readonly what: string,
  ) {
    this.out = out;
    out.on('error', (err: Error) => {
      this.error ??= err;
    });
  }

  /** Throws the stream's error, or when the sink was ended: call before building a record. */
  protected check(): void {
    if (this.error) throw this.error;
    if (this.ending) throw new Error(`${this.what}.write() after end()`);
  }

  /** Returns false when the stream wants the caller to wait for waitDrain(). */
  protected put(b: Buffer): boolean {
    const ok = this.out.write(b);
    this.blocked = !ok;
    return ok;
  }

  waitDrain(): Promise<void> {
    if (this.error) return Promise.reject(this.error);
    if (!this.blocked) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
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
