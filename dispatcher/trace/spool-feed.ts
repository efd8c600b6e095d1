import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';

/** What one read of a followed spool file takes at most (as Spool.pcapStream). */
const FEED_READ = 1 << 20;

/**
 * The received chunks a followed feed keeps, newest last: a reader that
 * keeps up takes them from memory instead of reading back what was just
 * written (three reads of every byte, the packets.pcap upload's, the live
 * merge's and its comparison's, were a good part of the dispatcher's CPU per
 * byte, with an allocation each). A reader further behind reads the disk.
 */
const WINDOW_BYTES = 4 << 20;
/**
 * How far behind the file's end its slowest reader may be when a chunk is
 * to be acknowledged (caughtUp()): within it, the reader takes the next
 * chunks from the window. A reader left further behind (the store slower
 * than the agent) read a third of a 200 MiB result back from the disk, a
 * fresh buffer per MiB (bench:stream, embedded store).
 */
const LAG_BYTES = WINDOW_BYTES / 2;
/** The longest caughtUp() waits: a reader stuck that long (a store that stopped answering) is not waited for again. */
const CATCH_UP_MS = 1000;
/** All feeds' windows together: a fleet of big results keeps at most this much, then reads the disk. */
const WINDOWS_TOTAL = 64 << 20;
let windowsHeld = 0;

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
 * Memory: while it has readers, until the file ends, a window of the last WINDOW_BYTES received
 * (the chunks as they were written, not copies), and a read at a time per
 * reader behind that window, which reads the disk.
 */
export class SpoolFeed {
  private written = 0;
  private complete = false;
  private failure: Error | null = null;
  private readonly waiting = new Set<() => void>();
  /** Chunks as written, oldest first, each at its offset in the file: kept only while there are readers. */
  private window: Array<{ at: number; buf: Buffer }> = [];
  private windowBytes = 0;
  private readers = 0;
  /** Where each reader is (its next byte of the file). */
  private readonly positions = new Set<{ pos: number }>();
  private readonly catchingUp = new Set<() => void>();
  /** A caughtUp() timed out: the readers are not waited for any more (they read the disk when behind). */
  private stuck = false;

  constructor(readonly path: string) {}

  /**
   * Resolves once every reader is within LAG_BYTES of the bytes written (at
   * once without readers), or after CATCH_UP_MS (and from then on at once):
   * the run acknowledges a chunk after it, so that the agent sends no faster
   * than the slowest reader takes the bytes from the window.
   */
  caughtUp(): Promise<void> {
    if (this.stuck || this.lag() <= LAG_BYTES) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.catchingUp.delete(done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.stuck = true;
        done();
      }, CATCH_UP_MS);
      this.catchingUp.add(done);
    });
  }

  /** Bytes written that the slowest reader has not taken yet. */
  private lag(): number {
    let lag = 0;
    for (const p of this.positions) lag = Math.max(lag, this.written - p.pos);
    return lag;
  }

  /** A reader moved on, or went: the waits of caughtUp() that are over end. */
  private readerMoved(): void {
    if (this.catchingUp.size === 0 || this.lag() > LAG_BYTES) return;
    for (const f of [...this.catchingUp]) f();
  }

  /** Bytes 0..bytes of the file are written; `chunk`, when given, is what the last write appended (bytes - chunk.length..bytes). */
  grew(bytes: number, chunk?: Buffer): void {
    if (chunk && this.readers > 0 && chunk.length > 0 && bytes - chunk.length === this.written) this.keep(bytes - chunk.length, chunk);
    this.written = bytes;
    this.wake();
  }

  /**
   * Whether `b` equals the file's bytes at `pos`, from the window; null when
   * the window does not hold all of them (the caller reads the disk).
   */
  matchesAt(pos: number, b: Buffer): boolean | null {
    if (pos + b.length > this.written) return null;
    let off = 0;
    for (const { at, buf } of this.window) {
      if (off === b.length) break;
      const p = pos + off;
      if (p < at) return null;
      if (p >= at + buf.length) continue;
      const n = Math.min(buf.length - (p - at), b.length - off);
      if (!buf.subarray(p - at, p - at + n).equals(b.subarray(off, off + n))) return false;
      off += n;
    }
    return off === b.length ? true : null;
  }

  private keep(at: number, buf: Buffer): void {
    while (this.window.length && (this.windowBytes + buf.length > WINDOW_BYTES || windowsHeld + buf.length > WINDOWS_TOTAL)) {
      const old = this.window.shift()!;
      this.windowBytes -= old.buf.length;
      windowsHeld -= old.buf.length;
    }
    if (buf.length > WINDOW_BYTES || windowsHeld + buf.length > WINDOWS_TOTAL) return;
    this.window.push({ at, buf });
    this.windowBytes += buf.length;
    windowsHeld += buf.length;
  }

  private dropWindow(): void {
    windowsHeld -= this.windowBytes;
    this.windowBytes = 0;
    this.window = [];
  }

  /** The kept chunk holding byte `pos`, from there on, or null. */
  private fromWindow(pos: number, max: number): Buffer | null {
    for (const { at, buf } of this.window) if (pos >= at && pos < at + buf.length) return buf.subarray(pos - at, Math.min(buf.length, pos - at + max));
    return null;
  }

  /** The file is complete at `bytes` (what grew() said last). */
  end(bytes: number): void {
    if (this.failure || this.complete) return;
    if (bytes !== this.written) return this.abort(new Error(`the spool file ended at ${bytes} bytes, ${this.written} were followed`));
    this.complete = true;
    // Every run ends here or in abort(), so no window outlives its run (a reader that never finishes cannot keep one);
    // readers still behind read the rest from the disk.
    this.dropWindow();
    this.stuck = true;
    for (const f of [...this.catchingUp]) f();
    this.wake();
  }

  /** The file is not what its readers followed (or will not be finished): they fail with `err`. */
  abort(err: Error): void {
    if (this.complete || this.failure) return;
    this.failure = err;
    this.dropWindow();
    this.stuck = true;
    for (const f of [...this.catchingUp]) f();
    this.wake();
  }

  get ended(): boolean {
    return this.complete;
  }

  /** A new reader from the file's first byte. */
  reader(): Readable {
    let fh: FileHandle | null = null;
    const at = { pos: 0 };
    this.readers++;
    let counted = true;
    const gone = (): void => {
      if (counted) this.readers--;
      counted = false;
      this.positions.delete(at);
      this.readerMoved();
    };
    const moved = (n: number): void => {
      at.pos += n;
      this.readerMoved();
    };
    const next = async (r: Readable): Promise<void> => {
      // Waited for by caughtUp() from its first read on (an upload may first wait for its document).
      if (counted) this.positions.add(at);
      for (;;) {
        if (this.failure) throw this.failure;
        if (at.pos < this.written) {
          const kept = this.fromWindow(at.pos, Math.min(FEED_READ, this.written - at.pos));
          if (kept) {
            moved(kept.length);
            r.push(kept);
            return;
          }
          if (!fh) {
            const opened = await open(this.path, 'r');
            // Destroyed while it opened: destroy() had nothing to close.
            if (r.destroyed) return void opened.close().catch(() => {});
            fh = opened;
          }
          const want = Math.min(FEED_READ, this.written - at.pos);
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(buf, 0, want, at.pos);
          if (r.destroyed) return;
          // Bytes that were written cannot go missing unless the file was cut or replaced under us.
          if (bytesRead < want) throw this.failure ?? new Error(`the spool file ${this.path} is shorter than what was written to it`);
          moved(bytesRead);
          r.push(bytesRead === want ? buf : buf.subarray(0, bytesRead));
          return;
        }
        if (this.complete) {
          gone();
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
        gone();
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
