import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';

/** What one read of a followed spool file takes at most (as Spool.pcapStream). */
const FEED_READ = 1 << 20;

/**
 * A host's spool file while its run writes it, for readers that follow it
 * as it grows: the store upload of packets.pcap and, for a one-host trace,
 * the merge, both running while the host is still being received instead of
 * after it (the path was receive, upload, merge and upload, one after the
 * other). A reader sees only bytes whose write has completed, waits for
 * more at the end, and ends only when the run says the file is complete:
 * then it has given exactly the file's bytes. When the run ends otherwise
 * (a host cut short whose file was trimmed, the dispatcher stopping), the
 * readers fail and whatever they fed is aborted; the spool file is still
 * there for the store job that follows, as before.
 *
 * Memory is a read at a time per reader: a reader behind the writer reads
 * from the disk, not from anything kept here.
 */
export class SpoolFeed {
  private written = 0;
  private complete = false;
  private failure: Error | null = null;
  private readonly waiting = new Set<() => void>();

  constructor(readonly path: string) {}

  /** Bytes 0..bytes of the file are written. */
  grew(bytes: number): void {
    this.written = bytes;
    this.wake();
  }

  /** The file is complete at `bytes` (what grew() said last). */
  end(bytes: number): void {
    if (this.failure || this.complete) return;
    if (bytes !== this.written) return this.abort(new Error(`the spool file ended at ${bytes} bytes, ${this.written} were followed`));
    this.complete = true;
    this.wake();
  }

  /** The file is not what its readers followed (or will not be finished): they fail with `err`. */
  abort(err: Error): void {
    if (this.complete || this.failure) return;
    this.failure = err;
    this.wake();
  }

  get ended(): boolean {
    return this.complete;
  }

  /** A new reader from the file's first byte. */
  reader(): Readable {
    let fh: FileHandle | null = null;
    let pos = 0;
    const next = async (r: Readable): Promise<void> => {
      for (;;) {
        if (this.failure) throw this.failure;
        if (pos < this.written) {
          if (!fh) {
            const opened = await open(this.path, 'r');
            // Destroyed while it opened: destroy() had nothing to close.
            if (r.destroyed) return void opened.close().catch(() => {});
            fh = opened;
          }
          const want = Math.min(FEED_READ, this.written - pos);
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(buf, 0, want, pos);
          if (r.destroyed) return;
          // Bytes that were written cannot go missing unless the file was cut or replaced under us.
          if (bytesRead < want) throw this.failure ?? new Error(`the spool file ${this.path} is shorter than what was written to it`);
          pos += bytesRead;
          r.push(bytesRead === want ? buf : buf.subarray(0, bytesRead));
          return;
        }
        if (this.complete) {
          r.push(null);
          return;
        }
        await new Promise<void>((resolve) => this.waiting.add(resolve));
        if (r.destroyed) return;
      }
    };
    return new Readable({
      highWaterMark: FEED_READ,
      read() {
        next(this).catch((e: Error) => this.destroy(e));
      },
      destroy(err, cb) {
        const f = fh;
        fh = null;
        if (!f) return cb(err);
        f.close().then(
          () => cb(err),
          () => cb(err),
        );
      },
    });
  }

  private wake(): void {
    const w = [...this.waiting];
    this.waiting.clear();
    for (const f of w) f();
  }
}
