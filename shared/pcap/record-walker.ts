import { PCAP_RECORD_HEADER_LEN } from './pcap';

/**
 * Called for each whole record: `b[off..]` holds its 16-byte header and
 * then its `capLen` bytes. `inChunk` is true when `b` is the chunk given
 * to push() (it stays as it is until push() returns), false when it is the
 * walker's own buffer of a record that straddled chunks (reused for the
 * next one). False stops the walk.
 */
export type OnPcapRecord = (b: Buffer, off: number, capLen: number, inChunk: boolean) => boolean;

/**
 * Walks a classic PCAP's records across the chunks of a stream from their
 * framing alone (each record header's caplen says where the next one
 * starts), without a record object per packet: the agent's progress count
 * (agent/trace/record-count.ts) and the dispatcher's proof that a host's
 * file is its own merge (dispatcher/trace/same-as-file.ts). Give it the
 * bytes after the file header. A record header is sound when its caplen is
 * within `capLenLimit` and its origlen (what the parser refuses otherwise);
 * the walk stops at the first that is not. Memory: one record, the biggest
 * that straddled two chunks (at most the limit), gathered into a buffer of
 * its own.
 */
export class PcapRecordWalker {
  private stopped = false;
  private part = Buffer.alloc(0);
  private partUsed = 0;
  /** Bytes the gathered record needs in all: its header first, then its whole length; 0 between records. */
  private partNeed = 0;

  constructor(
    private readonly littleEndian: boolean,
    private readonly capLenLimit: number,
  ) {}

  /** True between records (nothing gathered, nothing torn so far). */
  get atRecordBoundary(): boolean {
    return this.partNeed === 0;
  }

  /**
   * Walks chunk[from..]: onRecord for each record completed in it. False,
   * from then on, once a record header was not sound or onRecord said stop.
   */
  push(chunk: Buffer, from: number, onRecord: OnPcapRecord): boolean {
    if (this.stopped) return false;
    let off = from;
    const end = chunk.length;
    while (off < end) {
      if (this.partNeed > 0) {
        off = this.gather(chunk, off, onRecord);
        if (this.stopped) return false;
        continue;
      }
      const left = end - off;
      if (left >= PCAP_RECORD_HEADER_LEN) {
        const capLen = this.u32(chunk, off + 8);
        if (!this.sound(capLen, this.u32(chunk, off + 12))) return this.stop();
        if (left >= PCAP_RECORD_HEADER_LEN + capLen) {
          if (!onRecord(chunk, off, capLen, true)) return this.stop();
          off += PCAP_RECORD_HEADER_LEN + capLen;
          continue;
        }
      }
      this.partUsed = 0;
      this.partNeed = PCAP_RECORD_HEADER_LEN;
      this.reserve(PCAP_RECORD_HEADER_LEN);
    }
    return true;
  }

  private u32(b: Buffer, at: number): number {
    return this.littleEndian ? b.readUInt32LE(at) : b.readUInt32BE(at);
  }

  private sound(capLen: number, origLen: number): boolean {
    return capLen <= this.capLenLimit && capLen <= origLen;
  }

  private stop(): false {
    this.stopped = true;
    this.part = Buffer.alloc(0);
    return false;
  }

  private reserve(n: number): void {
    if (this.part.length >= n) return;
    const grown = Buffer.allocUnsafe(n);
    this.part.copy(grown, 0, 0, this.partUsed);
    this.part = grown;
  }

  /** Gathers the straddling record from chunk[off..]; hands it on once whole. Returns where it stopped in chunk. */
  private gather(chunk: Buffer, off: number, onRecord: OnPcapRecord): number {
    const n = Math.min(this.partNeed - this.partUsed, chunk.length - off);
    chunk.copy(this.part, this.partUsed, off, off + n);
    this.partUsed += n;
    off += n;
    if (this.partUsed < this.partNeed) return off;
    if (this.partNeed === PCAP_RECORD_HEADER_LEN) {
      const capLen = this.u32(this.part, 8);
      // Checked before the record is gathered: a corrupt caplen must not size a buffer.
      if (!this.sound(capLen, this.u32(this.part, 12))) {
        this.stop();
        return chunk.length;
      }
      if (capLen > 0) {
        this.partNeed += capLen;
        this.reserve(this.partNeed);
        return off;
      }
    }
    const capLen = this.partNeed - PCAP_RECORD_HEADER_LEN;
    this.partNeed = 0;
    if (!onRecord(this.part, 0, capLen, false)) this.stop();
    return off;
  }
}
