import { readSync } from 'node:fs';
import { CaptureFormatError, displayName, notACaptureError } from './errors';
import type { PacketRecord } from './types';

/**
 * Classic libpcap format: a 24-byte global header, then records of a 16-byte
 * header (ts_sec, ts_subsec, caplen, origlen) followed by caplen bytes.
 * See draft-ietf-opsawg-pcap.
 */
export const PCAP_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;

/** libpcap never writes more than this per packet for the link types we handle. */
export const PCAP_DEFAULT_SNAPLEN = 262144;

const MAGIC_MICROS = 0xa1b2c3d4;
const MAGIC_NANOS = 0xa1b23c4d;
const MAGIC_MICROS_SWAPPED = 0xd4c3b2a1;
const MAGIC_NANOS_SWAPPED = 0x4d3cb2a1;

export interface PcapHeader {
  linkType: number;
  /** True when ts_subsec counts nanoseconds rather than microseconds. */
  nanos: boolean;
  littleEndian: boolean;
  snaplen: number;
  versionMajor: number;
  versionMinor: number;
}

/** True if the first four bytes are one of the four PCAP magics. */
export function isPcapMagic(head: Buffer): boolean {
  if (head.length < 4) return false;
  const m = head.readUInt32LE(0);
  return m === MAGIC_MICROS || m === MAGIC_NANOS || m === MAGIC_MICROS_SWAPPED || m === MAGIC_NANOS_SWAPPED;
}

export function parsePcapHeader(buf: Buffer, name?: string): PcapHeader {
  if (buf.length >= 4 && !isPcapMagic(buf)) throw notACaptureError(name, buf);
  if (buf.length < PCAP_HEADER_LEN) {
    throw new CaptureFormatError(
      `${displayName(name)} ends after ${buf.length} bytes, inside the ${PCAP_HEADER_LEN}-byte PCAP file header; ` +
        'the file is truncated or not a capture file',
      { file: name, offset: buf.length },
    );
  }
  // The writer stores the magic in its own byte order, so reading it as
  // little-endian tells us the file's order directly.
  const m = buf.readUInt32LE(0);
  const littleEndian = m === MAGIC_MICROS || m === MAGIC_NANOS;
  const nanos = m === MAGIC_NANOS || m === MAGIC_NANOS_SWAPPED;
  const u16 = (o: number) => (littleEndian ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number) => (littleEndian ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const versionMajor = u16(4);
  const versionMinor = u16(6);
  if (versionMajor !== 2) {
    throw new CaptureFormatError(
      `${displayName(name)} has PCAP version ${versionMajor}.${versionMinor} at offset 4; only version 2.x is supported ` +
        '(convert it with "editcap -F pcap")',
      { file: name, offset: 4 },
    );
  }
  // The top bits of the link-type field carry FCS information (same mask as
  // libpcap's LT_LINKTYPE); they are not part of the link type.
  const linkType = u32(20) & 0x03ffffff;
  return { linkType, nanos, littleEndian, snaplen: u32(16), versionMajor, versionMinor };
}

/** A little-endian version 2.4 global header, as libpcap writes it. */
export function pcapHeaderBytes(opts: { linkType: number; nanos: boolean; snaplen?: number }): Buffer {
  const b = Buffer.alloc(PCAP_HEADER_LEN);
  b.writeUInt32LE(opts.nanos ? MAGIC_NANOS : MAGIC_MICROS, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  // thiszone and sigfigs stay 0: every modern writer leaves them so.
  b.writeUInt32LE(opts.snaplen ?? PCAP_DEFAULT_SNAPLEN, 16);
  b.writeUInt32LE(opts.linkType, 20);
  return b;
}

/** Writes a little-endian record header; µs files keep floor(tsNsec / 1000). */
export function writePcapRecordHeader(
  target: Buffer,
  offset: number,
  tsSec: number,
  tsNsec: number,
  capLen: number,
  origLen: number,
  nanos: boolean,
): void {
  target.writeUInt32LE(tsSec, offset);
  target.writeUInt32LE(nanos ? tsNsec : Math.floor(tsNsec / 1000), offset + 4);
  target.writeUInt32LE(capLen, offset + 8);
  target.writeUInt32LE(origLen, offset + 12);
}

/** Largest caplen accepted before a record header is taken as corruption. */
export function pcapCapLenLimit(header: PcapHeader): number {
  return Math.max(header.snaplen, PCAP_DEFAULT_SNAPLEN);
}

export function corruptRecord(
  name: string | undefined,
  fileOffset: number,
  capLen: number,
  origLen: number,
  limit: number,
): CaptureFormatError {
  const why =
    capLen > limit
      ? `caplen ${capLen} exceeds the limit ${limit}`
      : `caplen ${capLen} exceeds the original length ${origLen}`;
  return new CaptureFormatError(
    `${displayName(name)} has a corrupt PCAP record header at offset ${fileOffset}: ${why}; ` +
      `the file is damaged from there on (keep the records before it with "editcap -r <file> <out> 1-<n>")`,
    { file: name, offset: fileOffset },
  );
}

/**
 * Fills tsSec/tsNsec of `rec` from a record header's two timestamp words.
 * Some writers emit a sub-second field of a full second or more; the excess is
 * carried into seconds so tsNsec stays within 0..999_999_999 as PacketRecord
 * promises, and the instant is unchanged.
 */
function setTimestamp(rec: PacketRecord, sec: number, sub: number, nanos: boolean): void {
  let nsec = nanos ? sub : sub * 1000;
  if (nsec >= 1_000_000_000) {
    const carry = Math.floor(nsec / 1_000_000_000);
    sec += carry;
    nsec -= carry * 1_000_000_000;
  }
  rec.tsSec = sec;
  rec.tsNsec = nsec;
}

/**
 * Calls onRecord for every whole record in buf, which must start on a record
 * boundary. Returns the bytes consumed; an incomplete trailing record is left
 * for the caller to retry with more data. Each record is a fresh object whose
 * data is a view into buf (no copy), so buf must not be reused while records
 * are kept.
 *
 * The header of a trailing incomplete record is still validated, so a corrupt
 * length is reported at once instead of making the caller buffer up to 4 GiB
 * waiting for a record that will never complete.
 */
export function scanPcapRecords(
  buf: Buffer,
  bufFileOffset: number,
  header: PcapHeader,
  onRecord: (rec: PacketRecord) => void,
  name?: string,
): number {
  const limit = pcapCapLenLimit(header);
  const le = header.littleEndian;
  const nanos = header.nanos;
  const linkType = header.linkType;
  const end = buf.length;
  let off = 0;
  while (end - off >= PCAP_RECORD_HEADER_LEN) {
    let sec: number, sub: number, capLen: number, origLen: number;
    if (le) {
      sec = buf.readUInt32LE(off);
      sub = buf.readUInt32LE(off + 4);
      capLen = buf.readUInt32LE(off + 8);
      origLen = buf.readUInt32LE(off + 12);
    } else {
      sec = buf.readUInt32BE(off);
      sub = buf.readUInt32BE(off + 4);
      capLen = buf.readUInt32BE(off + 8);
      origLen = buf.readUInt32BE(off + 12);
    }
    if (capLen > limit || capLen > origLen) {
      throw corruptRecord(name, bufFileOffset + off, capLen, origLen, limit);
    }
    const dataStart = off + PCAP_RECORD_HEADER_LEN;
    if (end - dataStart < capLen) break;
    const rec: PacketRecord = {
      tsSec: 0,
      tsNsec: 0,
      capLen,
      origLen,
      data: buf.subarray(dataStart, dataStart + capLen),
      linkType,
      interfaceId: 0,
      fileOffset: bufFileOffset + off,
    };
    setTimestamp(rec, sec, sub, nanos);
    onRecord(rec);
    off = dataStart + capLen;
  }
  return off;
}

/**
 * How many bytes, counted from the record boundary at buf[0], must be
 * available before that record is whole. Lets stream parsers wait for enough
 * data instead of re-scanning (and re-concatenating) on every chunk. Call only
 * after scanPcapRecords has validated the header.
 */
export function pcapBytesNeeded(buf: Buffer, header: PcapHeader): number {
  if (buf.length < PCAP_RECORD_HEADER_LEN) return PCAP_RECORD_HEADER_LEN;
  const capLen = header.littleEndian ? buf.readUInt32LE(8) : buf.readUInt32BE(8);
  return PCAP_RECORD_HEADER_LEN + capLen;
}

const EMPTY = Buffer.alloc(0);

/** pread until `len` bytes or EOF; returns bytes read. */
function preadFull(fd: number, target: Buffer, len: number, position: number): number {
  let got = 0;
  while (got < len) {
    const n = readSync(fd, target, got, len - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

function decodeHeaderAt(
  hdr: Buffer,
  at: number,
  fileOffset: number,
  header: PcapHeader,
  name: string | undefined,
): PacketRecord {
  const le = header.littleEndian;
  const sec = le ? hdr.readUInt32LE(at) : hdr.readUInt32BE(at);
  const sub = le ? hdr.readUInt32LE(at + 4) : hdr.readUInt32BE(at + 4);
  const capLen = le ? hdr.readUInt32LE(at + 8) : hdr.readUInt32BE(at + 8);
  const origLen = le ? hdr.readUInt32LE(at + 12) : hdr.readUInt32BE(at + 12);
  const limit = pcapCapLenLimit(header);
  if (capLen > limit || capLen > origLen) throw corruptRecord(name, fileOffset, capLen, origLen, limit);
  const rec: PacketRecord = {
    tsSec: 0,
    tsNsec: 0,
    capLen,
    origLen,
    data: EMPTY,
    linkType: header.linkType,
    interfaceId: 0,
    fileOffset,
  };
  setTimestamp(rec, sec, sub, header.nanos);
  return rec;
}

/**
 * The record whose header starts at `at` in `buf` (which holds file bytes
 * from `fileOffset - at`), its data a view into `buf`; null when it is not
 * wholly there. For a reader that already has the bytes in memory.
 */
export function pcapRecordIn(buf: Buffer, at: number, fileOffset: number, header: PcapHeader, name?: string): PacketRecord | null {
  if (at < 0 || buf.length - at < PCAP_RECORD_HEADER_LEN) return null;
  const rec = decodeHeaderAt(buf, at, fileOffset, header, name);
  const start = at + PCAP_RECORD_HEADER_LEN;
  if (buf.length - start < rec.capLen) return null;
  rec.data = buf.subarray(start, start + rec.capLen);
  return rec;
}

/**
 * Reads the record whose header starts at `offset`. Returns null when the
 * record is torn or lies beyond EOF (a segment still being written, or cut
 * short by a crash); throws CaptureFormatError when the header is corrupt.
 * The returned data is a private copy.
 */
export function readPcapRecordAt(fd: number, offset: number, header: PcapHeader, name?: string): PacketRecord | null {
  const hdr = Buffer.allocUnsafe(PCAP_RECORD_HEADER_LEN);
  if (preadFull(fd, hdr, PCAP_RECORD_HEADER_LEN, offset) < PCAP_RECORD_HEADER_LEN) return null;
  const rec = decodeHeaderAt(hdr, 0, offset, header, name);
  const data = Buffer.allocUnsafe(rec.capLen);
  if (preadFull(fd, data, rec.capLen, offset + PCAP_RECORD_HEADER_LEN) < rec.capLen) return null;
  rec.data = data;
  return rec;
}

/**
 * The header of the record at `offset` (data left empty): its lengths and
 * time without reading its bytes. Null when it lies beyond EOF.
 */
export function readPcapRecordHeaderAt(fd: number, offset: number, header: PcapHeader, name?: string): PacketRecord | null {
  const hdr = Buffer.allocUnsafe(PCAP_RECORD_HEADER_LEN);
  if (preadFull(fd, hdr, PCAP_RECORD_HEADER_LEN, offset) < PCAP_RECORD_HEADER_LEN) return null;
  return decodeHeaderAt(hdr, 0, offset, header, name);
}

/** Upper bound on one coalesced read. */
const RUN_MAX_BYTES = 1 << 20;
/**
 * Offsets further apart than this are read separately: reading through a
 * larger hole costs more than an extra syscall.
 */
const RUN_MAX_GAP = 64 << 10;
/**
 * Bytes read past the last record header of a run, guessing its length.
 * Covers any Ethernet-MTU packet; longer ones fall back to a second pread.
 */
const RUN_TAIL = 2048;

/**
 * Reads the records at many offsets. Offsets close together (ascending) are
 * served from one pread of up to 1 MiB; any order works, just less
 * efficiently. Offsets whose record is torn or beyond EOF are skipped, so
 * match results to requests by `fileOffset`. Each record's data is a private
 * copy (the read window is reused), unless `views`: then it is a view of the
 * window, valid only until the next record is asked for (for a caller that
 * copies it at once: a copy per record is garbage as big as the result).
 * `scratch` carries the window from one call to the next (a caller making
 * many calls would otherwise leave a window of up to 1 MiB each as garbage).
 */
export function* readPcapRecordsAt(
  fd: number,
  offsets: number[],
  header: PcapHeader,
  name?: string,
  views = false,
  scratch?: { window: Buffer },
): Generator<PacketRecord> {
  const win = scratch ?? { window: EMPTY };
  let i = 0;
  while (i < offsets.length) {
    const j = runEndIndex(offsets, i);
    if (i === j) {
      const rec = readPcapRecordAt(fd, offsets[i], header, name);
      if (rec) yield rec;
      i++;
      continue;
    }
    const got = readRunWindow(fd, offsets, i, j, win);
    for (let k = i; k <= j; k++) {
      const rec = recordInWindow(fd, win.window, got, offsets[i], offsets[k], header, name, views);
      if (rec) yield rec;
    }
    i = j + 1;
  }
}

/** Bytes of consecutive whole records in a read window, already encoded as the caller's output wants them. */
export interface EncodedRecords {
  buf: Buffer;
  start: number;
  end: number;
  records: number;
}

/**
 * readPcapRecordsAt() (with `views`) for a caller that writes a little-endian
 * PCAP of the segment's resolution (`header` must be little-endian): records
 * whose header bytes that writer would write unchanged (within `snaplen`,
 * sub-second field in range) come as byte ranges of the window, each range a
 * run of records lying back to back on disk and asked for one after another,
 * so a long run of selected packets is one copy rather than an object, a view
 * and a copy per packet. Every other record comes decoded, as from
 * readPcapRecordsAt(), for the caller to re-encode (or reject). A range is
 * valid until the next item is asked for; the object is reused.
 */
export function* readPcapEncodedAt(
  fd: number,
  offsets: number[],
  header: PcapHeader,
  snaplen: number,
  scratch: { window: Buffer },
): Generator<EncodedRecords | PacketRecord> {
  const limit = Math.min(pcapCapLenLimit(header), snaplen);
  const subLimit = header.nanos ? 1_000_000_000 : 1_000_000;
  const run: EncodedRecords = { buf: EMPTY, start: 0, end: 0, records: 0 };
  let i = 0;
  while (i < offsets.length) {
    const j = runEndIndex(offsets, i);
    if (i === j) {
      const rec = readPcapRecordAt(fd, offsets[i], header);
      if (rec) yield rec;
      i++;
      continue;
    }
    const got = readRunWindow(fd, offsets, i, j, scratch);
    const w = scratch.window;
    // Header fields through a view of the window: `w.readUInt32LE` is a generic load through Buffer.prototype (a
    // dictionary) and a call, three a record.
    const v = new DataView(w.buffer, w.byteOffset, got);
    const start = offsets[i];
    run.buf = w;
    run.records = 0;
    for (let k = i; k <= j; k++) {
      const at = offsets[k] - start;
      if (at + PCAP_RECORD_HEADER_LEN <= got) {
        const capLen = v.getUint32(at + 8, true);
        const end = at + PCAP_RECORD_HEADER_LEN + capLen;
        if (capLen <= limit && capLen <= v.getUint32(at + 12, true) && v.getUint32(at + 4, true) < subLimit && end <= got) {
          if (run.records > 0 && run.end !== at) {
            yield run;
            run.records = 0;
          }
          if (run.records === 0) run.start = at;
          run.end = end;
          run.records++;
          continue;
        }
      }
      if (run.records > 0) {
        yield run;
        run.records = 0;
      }
      const rec = recordInWindow(fd, w, got, start, offsets[k], header, undefined, true);
      if (rec) yield rec;
    }
    if (run.records > 0) yield run;
    i = j + 1;
  }
}

/** The last index of the run of offsets from `i` that one coalesced read serves. */
function runEndIndex(offsets: number[], i: number): number {
  const start = offsets[i];
  let j = i;
  while (
    j + 1 < offsets.length &&
    offsets[j + 1] >= offsets[j] &&
    offsets[j + 1] - offsets[j] <= RUN_MAX_GAP &&
    offsets[j + 1] + PCAP_RECORD_HEADER_LEN + RUN_TAIL - start <= RUN_MAX_BYTES
  ) {
    j++;
  }
  return j;
}

/** Reads the run offsets[i..j] into scratch.window (grown as needed) from offsets[i]; returns the bytes read. */
function readRunWindow(fd: number, offsets: number[], i: number, j: number, scratch: { window: Buffer }): number {
  const start = offsets[i];
  const want = Math.min(RUN_MAX_BYTES, offsets[j] + PCAP_RECORD_HEADER_LEN + RUN_TAIL - start);
  if (scratch.window.length < want) {
    scratch.window = Buffer.allocUnsafeSlow(Math.max(want, Math.min(RUN_MAX_BYTES, scratch.window.length * 2)));
  }
  return preadFull(fd, scratch.window, want, start);
}

/** The record at file offset `off`, from `window` (holding `got` bytes from file offset `start`) or read again when it runs past them. */
function recordInWindow(fd: number, window: Buffer, got: number, start: number, off: number, header: PcapHeader, name: string | undefined, views: boolean): PacketRecord | null {
  const at = off - start;
  // Short read means EOF; a direct read confirms rather than assumes.
  if (at + PCAP_RECORD_HEADER_LEN > got) return readPcapRecordAt(fd, off, header, name);
  const rec = decodeHeaderAt(window, at, off, header, name);
  const dataAt = at + PCAP_RECORD_HEADER_LEN;
  if (dataAt + rec.capLen > got) return readPcapRecordAt(fd, off, header, name);
  if (views) {
    rec.data = window.subarray(dataAt, dataAt + rec.capLen);
  } else {
    const data = Buffer.allocUnsafe(rec.capLen);
    window.copy(data, 0, dataAt, dataAt + rec.capLen);
    rec.data = data;
  }
  return rec;
}
