import { RECORD_PREFIX_LEN, REC } from './format';

const CHUNK = 1 << 20;

/**
 * The message records of a segment being indexed, each encoded once as its
 * journal record (prefix and JSON text), kept off the V8 heap until the seal:
 * the journal writes them from here and seal() copies their JSON into the
 * dialog blocks. Kept as JS strings instead (151 bytes of heap a message,
 * until the seal) they were a good part of the collector's work.
 *
 * Records are laid out back to back in 1 MiB chunks, so the records of a
 * flush are a few contiguous views.
 */
export class MessageArena {
  private readonly chunks: Buffer[] = [];
  private cur: Buffer = Buffer.allocUnsafe(0);
  private used = 0;
  /** Per record: its chunk, its offset in the chunk, its record length (prefix included). */
  private chunkOf: Uint32Array = new Uint32Array(1024);
  private startOf: Uint32Array = new Uint32Array(1024);
  private lenOf: Uint32Array = new Uint32Array(1024);
  count = 0;

  /** Appends the journal record of one message from its JSON text. */
  add(json: string): void {
    // Sized for the worst case (3 UTF-8 bytes per UTF-16 unit) so that the text is encoded once, not measured first.
    const bound = RECORD_PREFIX_LEN + 3 * json.length;
    if (this.used + bound > this.cur.length) {
      this.cur = Buffer.allocUnsafe(Math.max(CHUNK, bound));
      this.chunks.push(this.cur);
      this.used = 0;
    }
    const n = this.cur.write(json, this.used + RECORD_PREFIX_LEN, 'utf8');
    this.cur.writeUInt32LE(n + 1, this.used);
    this.cur[this.used + 4] = REC.MESSAGE;
    const i = this.count;
    if (i === this.chunkOf.length) {
      this.chunkOf = grow(this.chunkOf);
      this.startOf = grow(this.startOf);
      this.lenOf = grow(this.lenOf);
    }
    this.chunkOf[i] = this.chunks.length - 1;
    this.startOf[i] = this.used;
    this.lenOf[i] = RECORD_PREFIX_LEN + n;
    this.used += RECORD_PREFIX_LEN + n;
    this.count++;
  }

  /** Length of record i's JSON text in bytes. */
  jsonLength(i: number): number {
    return this.lenOf[i] - RECORD_PREFIX_LEN;
  }

  /** Copies record i's JSON text into `out` at `at`; returns the offset after it. */
  copyJson(i: number, out: Buffer, at: number): number {
    const start = this.startOf[i] + RECORD_PREFIX_LEN;
    return at + this.chunks[this.chunkOf[i]].copy(out, at, start, this.startOf[i] + this.lenOf[i]);
  }

  /** Records [from, to) as views, contiguous runs joined (for a writev). */
  records(from: number, to: number): Buffer[] {
    const out: Buffer[] = [];
    let i = from;
    while (i < to) {
      const c = this.chunkOf[i];
      const start = this.startOf[i];
      let end = start + this.lenOf[i];
      i++;
      while (i < to && this.chunkOf[i] === c) end = this.startOf[i] + this.lenOf[i++];
      out.push(this.chunks[c].subarray(start, end));
    }
    return out;
  }
}

function grow(a: Uint32Array): Uint32Array {
  const b = new Uint32Array(a.length * 2);
  b.set(a);
  return b;
}
