import { writeSync } from 'node:fs';
import { StreamSink } from './sink';
import { pcapHeaderBytes, PCAP_DEFAULT_SNAPLEN, PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN, writePcapRecordHeader } from './pcap';

/** What a writer needs of a packet; PacketRecord satisfies it. */
export interface WritableRecord {
  tsSec: number;
  tsNsec: number;
  origLen: number;
  data: Buffer;
}

export interface PcapWriterOptions {
  linkType: number;
  /** Nanosecond timestamps (magic a1b23c4d) instead of microseconds. */
  nanos: boolean;
  snaplen?: number;
}

/**
 * Rejects records that would make a file our own reader (or tshark) refuses,
 * at write time, where the caller can still tell which packet was wrong.
 */
export function checkRecord(rec: WritableRecord, snaplen: number): void {
  const capLen = rec.data.length;
  if (capLen > snaplen) throw new RangeError(`packet of ${capLen} bytes exceeds the file's snaplen ${snaplen}`);
  if (capLen > rec.origLen) throw new RangeError(`packet of ${capLen} bytes exceeds its origLen ${rec.origLen}`);
  if (!Number.isInteger(rec.tsNsec) || rec.tsNsec < 0 || rec.tsNsec > 999_999_999) {
    throw new RangeError(`tsNsec ${rec.tsNsec} is not within 0..999999999`);
  }
  if (!Number.isInteger(rec.tsSec) || rec.tsSec < 0 || rec.tsSec > 0xffffffff) {
    throw new RangeError(`tsSec ${rec.tsSec} does not fit PCAP's unsigned 32-bit seconds`);
  }
}

/**
 * The bytes of one record: [16-byte header, rec.data]. The data buffer is the
 * caller's own (not copied), so it must stay unchanged until written. No
 * snaplen check here; the caller knows its file's snaplen.
 */
export function encodePcapRecord(rec: WritableRecord, nanos: boolean): Buffer[] {
  checkRecord(rec, Infinity);
  const hdr = Buffer.allocUnsafe(PCAP_RECORD_HEADER_LEN);
  writePcapRecordHeader(hdr, 0, rec.tsSec, rec.tsNsec, rec.data.length, rec.origLen, nanos);
  return [hdr, rec.data];
}

/**
 * Streaming PCAP writer over any writable stream. The global header is
 * queued in the constructor. Records are copied into a batch (see
 * StreamSink), so callers may reuse their data buffers as soon as write()
 * returns; flush() or end() hands the last of them to the stream.
 *
 * Stream errors are caught here (an unhandled 'error' event would kill the
 * process) and surface as a rejection of waitDrain()/end() or a throw from
 * the next write().
 */
export class PcapWriter extends StreamSink {
  private readonly nanos: boolean;
  private readonly snaplen: number;
  private recordsWritten = 0;

  constructor(out: NodeJS.WritableStream, opts: PcapWriterOptions) {
    super(out, 'PcapWriter');
    this.nanos = opts.nanos;
    this.snaplen = opts.snaplen ?? PCAP_DEFAULT_SNAPLEN;
    this.put(pcapHeaderBytes({ linkType: opts.linkType, nanos: opts.nanos, snaplen: this.snaplen }), 0);
  }

  /** Records accepted so far. */
  get count(): number {
    return this.recordsWritten;
  }

  /** Returns false when the stream wants the caller to wait for waitDrain(). */
  write(rec: WritableRecord): boolean {
    this.check();
    checkRecord(rec, this.snaplen);
    const capLen = rec.data.length;
    const size = PCAP_RECORD_HEADER_LEN + capLen;
    const at = this.reserve(size);
    const b = this.batch!;
    writePcapRecordHeader(b, at, rec.tsSec, rec.tsNsec, capLen, rec.origLen, this.nanos);
    rec.data.copy(b, at + PCAP_RECORD_HEADER_LEN);
    this.recordsWritten++;
    return this.commit(size, 1);
  }

  /**
   * Queues `records` whole records already in this file's encoding (little
   * endian, this resolution, each checked against this snaplen by the
   * caller): src[start, end) is copied as it is. Returns false when the
   * stream wants the caller to wait for waitDrain().
   */
  writeEncoded(src: Buffer, start: number, end: number, records: number): boolean {
    this.check();
    this.recordsWritten += records;
    return this.putRange(src, start, end);
  }

  /**
   * writeEncoded() that keeps each record within one batch, where write()
   * would have put it: src[start, end) must be `records` whole records. The
   * batches, and so the chunks a trace sends, end on record boundaries as
   * they do one record at a time (the receiving side reads whole records
   * from a chunk without gathering).
   */
  writeEncodedRecords(src: Buffer, start: number, end: number, records: number): boolean {
    this.check();
    this.recordsWritten += records;
    let more = true;
    // Caplens through a view: `src.readUInt32LE` is a generic load through Buffer.prototype and a call per record.
    const v = new DataView(src.buffer, src.byteOffset, src.length);
    while (start < end) {
      const room = this.room;
      let cut = start;
      let n = 0;
      while (cut < end) {
        const next = cut + PCAP_RECORD_HEADER_LEN + v.getUint32(cut + 8, true);
        if (next > end) throw new RangeError(`a record at ${cut} runs past the ${end - start} bytes given`);
        // The first record that does not fit what is left goes to a fresh batch (or one of its own), next time round.
        if (next - start > room && cut > start) break;
        cut = next;
        n++;
        if (cut - start >= room) break;
      }
      more = this.putWhole(src, start, cut, n);
      start = cut;
    }
    return more;
  }

  /** writeEncoded() of `len` bytes at `at` in `ab` (see StreamSink's putWithin()). */
  writeEncodedWithin(ab: ArrayBuffer, at: number, len: number, records: number): boolean {
    this.check();
    this.recordsWritten += records;
    return this.putWithin(ab, at, len);
  }

  /** writeEncoded() of a whole view handed to the stream without a copy (see StreamSink's putBorrowed()). */
  writeEncodedBorrowed(v: Buffer, records: number, done: () => void): boolean {
    this.check();
    this.recordsWritten += records;
    return this.putBorrowed(v, done);
  }

  /** writeEncoded() of a whole view (see StreamSink's putView()). */
  writeEncodedView(v: Uint8Array, records: number): boolean {
    this.check();
    this.recordsWritten += records;
    return this.putView(v);
  }
}

export interface PcapFileWriterSyncOptions extends PcapWriterOptions {
  /**
   * File offset at which writing starts. At 0 (the default) the global header
   * is written first; any other value means appending to a file that already
   * has a header of the same format and whole records up to that offset.
   */
  position?: number;
  /** Bytes gathered before a write(2); default 256 KiB. */
  bufferSize?: number;
}

/**
 * Synchronous PCAP writer for a file descriptor. Small records are gathered
 * in a buffer and written with one pwrite at explicit positions, so the
 * offsets write() returns are exact whatever else moved the fd's position.
 * Call flush() before reading the file back or closing the fd; the fd stays
 * the caller's.
 */
export class PcapFileWriterSync {
  private readonly fd: number;
  private readonly nanos: boolean;
  private readonly snaplen: number;
  private readonly buf: Buffer;
  private used = 0;
  /** File offset of buf[0]. */
  private filePos: number;

  constructor(fd: number, opts: PcapFileWriterSyncOptions) {
    this.fd = fd;
    this.nanos = opts.nanos;
    this.snaplen = opts.snaplen ?? PCAP_DEFAULT_SNAPLEN;
    this.buf = Buffer.allocUnsafe(Math.max(opts.bufferSize ?? 256 * 1024, PCAP_HEADER_LEN + PCAP_RECORD_HEADER_LEN));
    this.filePos = opts.position ?? 0;
    if (this.filePos === 0) {
      pcapHeaderBytes({ linkType: opts.linkType, nanos: opts.nanos, snaplen: this.snaplen }).copy(this.buf, 0);
      this.used = PCAP_HEADER_LEN;
    }
  }

  /** File offset the next record's header will have (flushed or not). */
  get position(): number {
    return this.filePos + this.used;
  }

  /** Queues one record and returns the file offset of its header. */
  write(rec: WritableRecord): number {
    checkRecord(rec, this.snaplen);
    const capLen = rec.data.length;
    const size = PCAP_RECORD_HEADER_LEN + capLen;
    if (this.used + size > this.buf.length) this.flush();
    const at = this.position;
    if (size > this.buf.length) {
      // Too big to gather: write header then data straight from the caller's buffer.
      writePcapRecordHeader(this.buf, 0, rec.tsSec, rec.tsNsec, capLen, rec.origLen, this.nanos);
      this.writeAll(this.buf, PCAP_RECORD_HEADER_LEN);
      this.writeAll(rec.data, capLen);
      return at;
    }
    writePcapRecordHeader(this.buf, this.used, rec.tsSec, rec.tsNsec, capLen, rec.origLen, this.nanos);
    rec.data.copy(this.buf, this.used + PCAP_RECORD_HEADER_LEN);
    this.used += size;
    return at;
  }

  /**
   * Appends whole records already in this file's format (little-endian headers, its resolution, within its
   * snaplen: the caller has checked each), written from the caller's buffer as they are; returns the file
   * offset of the first. ring import's copy of a capture whose records need no rewriting.
   */
  writeRecordBytes(bytes: Buffer): number {
    this.flush();
    const at = this.position;
    this.writeAll(bytes, bytes.length);
    return at;
  }

  flush(): void {
    if (this.used === 0) return;
    this.writeAll(this.buf, this.used);
    this.used = 0;
  }

  private writeAll(b: Buffer, len: number): void {
    let done = 0;
    while (done < len) {
      done += writeSync(this.fd, b, done, len - done, this.filePos + done);
    }
    this.filePos += len;
  }
}
