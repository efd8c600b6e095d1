import { closeSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN, pcapHeaderBytes, writePcapRecordHeader } from '../../shared/pcap/pcap';
import { SEGMENT_EXT, segmentBaseName } from './layout';

export interface SegmentEvent {
  stream: string;
  path: string;
  /** File size: the global header plus whole records. */
  bytes: number;
  startMicros: number;
  linkType: number;
  nanos: boolean;
}

export interface SegmentWriterOptions {
  ringDir: string;
  stream: string;
  /** LINKTYPE_* for the global header. */
  linkType: number;
  /** Record timestamps count nanoseconds (magic a1b23c4d) rather than microseconds. */
  nanos: boolean;
  maxSegmentBytes: number;
  maxSegmentSeconds: number;
  /** Snap length written in the global header. */
  snaplen?: number;
  onOpen?: (e: SegmentEvent) => void;
  onClose?: (e: SegmentEvent) => void;
}

/** Smallest segment that still holds a header and a few full-size Ethernet frames. */
export const MIN_SEGMENT_BYTES = 8192;

/**
 * Writes one stream's packets into ring segments: standard PCAP files named
 * by agent/ring/layout.ts, rotated by size and age. Synchronous on purpose:
 * the capture worker owns its thread, and `ring import` writes from a loop.
 *
 * A segment is opened on the first packet after a rotation, so an idle
 * interface leaves no stream of empty files behind, and every write is of
 * whole records, so a reader (or a crash) only ever sees a file that ends on
 * a record boundary or inside the last record.
 */
export class SegmentWriter {
  private readonly opts: SegmentWriterOptions;
  private readonly header: Buffer;
  private readonly ringDir: string;
  private fd = -1;
  private path = '';
  private bytes = 0;
  private startMicros = 0;
  private lastStartMicros = 0;

  constructor(opts: SegmentWriterOptions) {
    if (!Number.isFinite(opts.maxSegmentBytes) || opts.maxSegmentBytes < MIN_SEGMENT_BYTES) {
      throw new Error(`maxSegmentBytes must be at least ${MIN_SEGMENT_BYTES} (got ${opts.maxSegmentBytes})`);
    }
    if (!(opts.maxSegmentSeconds > 0)) {
      throw new Error(`maxSegmentSeconds must be positive (got ${opts.maxSegmentSeconds})`);
    }
    this.opts = opts;
    this.ringDir = resolve(opts.ringDir);
    this.header = pcapHeaderBytes({ linkType: opts.linkType, nanos: opts.nanos, snaplen: opts.snaplen });
    mkdirSync(this.ringDir, { recursive: true });
  }

  /** The open segment, if any. */
  get current(): { path: string; bytes: number; startMicros: number } | null {
    return this.fd >= 0 ? { path: this.path, bytes: this.bytes, startMicros: this.startMicros } : null;
  }

  /**
   * Appends buf[0, length), which must be whole PCAP records. A batch that
   * would overflow the segment is split at a record boundary and the rest
   * goes to the next segment, so segments stay within maxSegmentBytes unless
   * a single record is bigger than that.
   */
  append(buf: Buffer, length: number, nowMicros: number): void {
    if (length > buf.length) throw new RangeError(`append: length ${length} exceeds buffer of ${buf.length} bytes`);
    // Check the whole batch first so a bad one writes nothing.
    let records = 0;
    for (let at = 0; at < length; records++) at += this.recordLength(buf, at, length);
    let off = 0;
    // Each pass writes at least one record or rotates a segment that holds
    // some, after which the next pass writes; so passes <= 2 * records.
    for (let pass = 0; off < length; pass++) {
      if (pass > 2 * records + 1) throw new Error('append: segment splitting made no progress');
      if (this.fd >= 0 && this.bytes > PCAP_HEADER_LEN && this.ageExceeded(nowMicros)) this.rotate();
      if (this.fd < 0) this.open(nowMicros);
      const room = this.opts.maxSegmentBytes - this.bytes;
      let end = off;
      while (end < length) {
        const rec = this.recordLength(buf, end, length);
        if (end + rec - off > room) break;
        end += rec;
      }
      if (end === off) {
        if (this.bytes > PCAP_HEADER_LEN) {
          this.rotate();
          continue;
        }
        // A record larger than a whole segment gets a segment to itself.
        end = off + this.recordLength(buf, off, length);
      }
      this.write(buf, off, end);
      off = end;
      if (off < length || this.bytes >= this.opts.maxSegmentBytes) this.rotate();
    }
  }

  /** Appends one packet; for writers that have packets rather than a libpcap batch. */
  appendRecord(tsSec: number, tsNsec: number, origLen: number, data: Buffer, nowMicros: number): void {
    const rec = Buffer.allocUnsafe(PCAP_RECORD_HEADER_LEN + data.length);
    writePcapRecordHeader(rec, 0, tsSec, tsNsec, data.length, origLen, this.opts.nanos);
    data.copy(rec, PCAP_RECORD_HEADER_LEN);
    this.append(rec, rec.length, nowMicros);
  }

  /** Closes the segment when it holds packets and is older than maxSegmentSeconds; true if it did. */
  maybeRotate(nowMicros: number): boolean {
    if (this.fd >= 0 && this.bytes > PCAP_HEADER_LEN && this.ageExceeded(nowMicros)) {
      this.rotate();
      return true;
    }
    return false;
  }

  /** Closes the open segment; the next append opens a new one. */
  rotate(): void {
    if (this.fd < 0) return;
    const ev = this.event();
    const fd = this.fd;
    this.fd = -1;
    this.path = '';
    this.bytes = 0;
    closeSync(fd);
    this.opts.onClose?.(ev);
  }

  close(): void {
    this.rotate();
  }

  private ageExceeded(nowMicros: number): boolean {
    return nowMicros - this.startMicros >= this.opts.maxSegmentSeconds * 1_000_000;
  }

  private recordLength(buf: Buffer, at: number, length: number): number {
    if (at + PCAP_RECORD_HEADER_LEN > length) {
      throw new Error(`append: batch ends inside a record header at byte ${at} of ${length}`);
    }
    const rec = PCAP_RECORD_HEADER_LEN + buf.readUInt32LE(at + 8);
    if (at + rec > length) throw new Error(`append: record at byte ${at} (${rec} bytes) runs past the batch end ${length}`);
    return rec;
  }

  private open(nowMicros: number): void {
    // Names carry the opening time to the microsecond; two segments opened
    // in the same microsecond (a big batch split several times) or a name
    // left by an earlier run must not collide, so move forward until free.
    let start = Math.max(Math.floor(nowMicros), this.lastStartMicros + 1);
    for (let attempt = 0; ; attempt++) {
      const path = join(this.ringDir, segmentBaseName(this.opts.stream, start) + SEGMENT_EXT);
      let fd: number;
      try {
        fd = openSync(path, 'wx', 0o640);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST' && attempt < 1000) {
          start++;
          continue;
        }
        throw new Error(`cannot create ring segment ${path}: ${(e as Error).message}`);
      }
      this.fd = fd;
      this.path = path;
      this.bytes = 0;
      this.startMicros = start;
      this.lastStartMicros = start;
      break;
    }
    try {
      this.write(this.header, 0, PCAP_HEADER_LEN);
    } catch (e) {
      closeSync(this.fd);
      this.fd = -1;
      throw e;
    }
    this.opts.onOpen?.(this.event());
  }

  private write(buf: Buffer, from: number, to: number): void {
    let off = from;
    try {
      // writeSync on a regular file writes everything or throws; the bound
      // only guards against a filesystem that keeps returning short writes.
      for (let i = 0; off < to && i < 1000; i++) {
        const n = writeSync(this.fd, buf, off, to - off);
        if (n <= 0) throw new Error(`short write to ${this.path}`);
        off += n;
      }
      if (off < to) throw new Error(`short writes to ${this.path} did not finish`);
    } catch (e) {
      // Cut back to the last whole record so the segment stays readable.
      try {
        ftruncateSync(this.fd, this.bytes);
      } catch {
        // the write error below is the one worth reporting
      }
      throw new Error(`cannot write ring segment ${this.path}: ${(e as Error).message}`);
    }
    this.bytes += to - from;
  }

  private event(): SegmentEvent {
    return {
      stream: this.opts.stream,
      path: this.path,
      bytes: this.bytes,
      startMicros: this.startMicros,
      linkType: this.opts.linkType,
      nanos: this.opts.nanos,
    };
  }
}
