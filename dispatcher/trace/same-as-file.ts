import { createReadStream } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { PassThrough, Readable, Writable } from 'node:stream';

/** Compared a slice at a time, so the scratch buffer stays small whatever the writer's chunks. */
const SLICE = 1 << 20;

/**
 * A sink for a one-host merge's output that checks it against the file the
 * merge reads (the host's spool file): while the two are the same, nothing
 * is kept or sent, and `same` says so at the end. At the first difference it
 * hands `diverge` one stream of the whole output, the file's bytes up to
 * there (which the output had matched) and then the rest of the output as
 * it is written; its backpressure holds the merge back. Memory: one slice.
 */
export class SameAsFile extends Writable {
  /** Output bytes found equal to the file's, from its start. */
  checked = 0;
  private fh: FileHandle | null = null;
  private readonly scratch = Buffer.allocUnsafe(SLICE);
  private rest: PassThrough | null = null;

  /**
   * `window`, when given, compares from the bytes the file's writer still
   * holds (SpoolFeed.matchesAt), null where it does not hold them: the file
   * is read only for those.
   */
  constructor(
    private readonly path: string,
    private readonly diverge: (output: Readable) => void,
    private readonly window?: { matchesAt(pos: number, b: Buffer): boolean | null },
  ) {
    super();
  }

  /** No difference found (so far; at the end, the output is the file's first `checked` bytes). */
  get same(): boolean {
    return this.rest === null;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    (async () => {
      let off = 0;
      while (!this.rest && off < chunk.length) {
        const n = Math.min(SLICE, chunk.length - off);
        if (!(await this.matches(chunk.subarray(off, off + n)))) break;
        this.checked += n;
        off += n;
      }
      if (off === chunk.length) return;
      if (!this.rest) this.divergeNow();
      const rest = this.rest!;
      if (rest.destroyed) throw new Error('the upload of the merged file stopped');
      if (!rest.write(chunk.subarray(off))) await waitDrain(rest);
    })().then(() => cb(), (e: Error) => cb(e));
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.rest?.end();
    this.closeFile().then(() => cb(), (e: Error) => cb(e));
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    if (err) this.rest?.destroy(err);
    this.closeFile().then(() => cb(err), () => cb(err));
  }

  private async matches(b: Buffer): Promise<boolean> {
    const kept = this.window?.matchesAt(this.checked, b);
    if (kept !== undefined && kept !== null) return kept;
    this.fh ??= await open(this.path, 'r');
    const { bytesRead } = await this.fh.read(this.scratch, 0, b.length, this.checked);
    return bytesRead === b.length && this.scratch.subarray(0, b.length).equals(b);
  }

  private divergeNow(): void {
    const rest = new PassThrough();
    this.rest = rest;
    const { path, checked } = this;
    async function* whole(): AsyncGenerator<Buffer> {
      if (checked > 0) yield* createReadStream(path, { start: 0, end: checked - 1, highWaterMark: SLICE }) as AsyncIterable<Buffer>;
      yield* rest as AsyncIterable<Buffer>;
    }
    this.diverge(Readable.from(whole(), { objectMode: false }));
  }

  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    await fh?.close();
  }
}

function waitDrain(s: PassThrough): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      s.off('drain', done);
      s.off('close', closed);
      resolve();
    };
    const closed = (): void => {
      s.off('drain', done);
      reject(new Error('the upload of the merged file stopped'));
    };
    s.once('drain', done);
    s.once('close', closed);
  });
}
