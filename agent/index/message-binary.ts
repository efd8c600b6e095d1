import type { MessageRecord } from './format';
import { byteTexts } from '../../shared/sip/intern';

/**
 * The binary message record (index version 2): what a MessageRecord holds,
 * as the journal's `m` records and the sealed dialog blocks store it. It is
 * written into a Buffer field by field, with no JSON text and nothing kept on
 * the heap; JSON records (version 1) are still read (reader.ts).
 *
 * Little-endian:
 *   0 u32 ts sec   4 u32 ts nsec   8 u32 message bytes (n)
 *  12 u16 sport   14 u16 dport    16 u8 protocol   17 u8 flags (BIN_FLAG)
 *  18 u16 status (with BIN_FLAG.STATUS)   20 u16 which optional strings follow (bit k: the k-th of m, r, q, ru, fu, tu, x, si, sr, ic)
 *  22 varint packet count, varint packet ordinals
 *     then strings (varint UTF-8 length, bytes): src, dst, Call-ID, the optional ones present;
 *     with PU: varint count, strings; with SDP / RTCP: varint count, (string, varint port);
 *     with RTPMAP: varint count, (varint payload type, string).
 * Varints are LEB128 of at most 5 bytes (values below 2^32): a header of any
 * length fits, and the decoder refuses anything that runs past its record.
 */
export const BIN_FLAG = {
  TRUNCATED: 0x01,
  HEP: 0x02,
  STATUS: 0x04,
  PU: 0x08,
  SDP: 0x10,
  RTCP: 0x20,
  RTPMAP: 0x40,
} as const;

/*
 * Optional string fields, in this order, each with its presence bit (bit k for
 * the k-th): m, r, q, ru, fu, tu, x, si, sr, ic. Written out field by field:
 * a loop over their names made every access a megamorphic keyed load (3,500
 * instructions a message, counted).
 */

const FIXED_LEN = 22;

/** Bytes a string takes at most (varint length + UTF-8). */
function strBound(s: string): number {
  return 5 + 3 * s.length;
}

/** An upper bound of the record's encoded length: room is made for this much before writing. */
export function binaryRecordBound(m: MessageRecord): number {
  let n = FIXED_LEN + 5 + 5 * m.p.length + strBound(m.src) + strBound(m.dst) + strBound(m.c);
  n += optBound(m.m) + optBound(m.r) + optBound(m.q) + optBound(m.ru) + optBound(m.fu) + optBound(m.tu);
  n += optBound(m.x) + optBound(m.si) + optBound(m.sr) + optBound(m.ic);
  if (m.pu) {
    n += 5;
    for (const u of m.pu) n += strBound(u);
  }
  if (m.sdp) n += pairsBound(m.sdp);
  if (m.rc) n += pairsBound(m.rc);
  if (m.pm) n += pairsBound(m.pm);
  return n;
}

function optBound(s: string | null | undefined): number {
  return typeof s === 'string' ? strBound(s) : 0;
}

function pairsBound(pairs: ReadonlyArray<readonly [string | number, string | number]>): number {
  let n = 5;
  for (const [a, b] of pairs) n += 5 + strBound(typeof a === 'string' ? a : typeof b === 'string' ? b : '');
  return n;
}

function writeVarint(buf: Buffer, at: number, v: number): number {
  v >>>= 0;
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at++] = v;
  return at;
}

function writeStr(buf: Buffer, at: number, s: string): number {
  const n = s.length;
  // ASCII (almost every value) is copied by char code; anything else is encoded by Buffer.write.
  if (n < 128) {
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[at + 1 + i] = c;
    }
    if (i === n) {
      buf[at] = n;
      return at + 1 + n;
    }
  }
  // Written after a 5-byte room for its length, then moved down to where its varint ends.
  const len = buf.write(s, at + 5, 'utf8');
  const after = writeVarint(buf, at, len);
  if (after !== at + 5) buf.copy(buf, after, at + 5, at + 5 + len);
  return after + len;
}

/**
 * Writes m's binary record at `at` (binaryRecordBound(m) bytes must be free
 * there); returns the offset after it.
 */
export function writeBinaryRecord(m: MessageRecord, buf: Buffer, at: number): number {
  let flags = 0;
  if (m.tr) flags |= BIN_FLAG.TRUNCATED;
  if (m.h) flags |= BIN_FLAG.HEP;
  if (m.s !== null) flags |= BIN_FLAG.STATUS;
  if (m.pu) flags |= BIN_FLAG.PU;
  if (m.sdp) flags |= BIN_FLAG.SDP;
  if (m.rc) flags |= BIN_FLAG.RTCP;
  if (m.pm) flags |= BIN_FLAG.RTPMAP;
  const present =
    bit(m.m, 0) | bit(m.r, 1) | bit(m.q, 2) | bit(m.ru, 3) | bit(m.fu, 4) | bit(m.tu, 5) | bit(m.x, 6) | bit(m.si, 7) | bit(m.sr, 8) | bit(m.ic, 9);
  // Byte stores rather than writeUInt32LE & co.: their range checks were not inlined here (1,000 instructions a message).
  put32(buf, at, m.t[0]);
  put32(buf, at + 4, m.t[1]);
  put32(buf, at + 8, m.n);
  put16(buf, at + 12, m.sp);
  put16(buf, at + 14, m.dp);
  buf[at + 16] = m.pr;
  buf[at + 17] = flags;
  put16(buf, at + 18, m.s === null ? 0 : m.s);
  put16(buf, at + 20, present);
  let p = writeVarint(buf, at + FIXED_LEN, m.p.length);
  for (let i = 0; i < m.p.length; i++) p = writeVarint(buf, p, m.p[i]);
  p = writeStr(buf, p, m.src);
  p = writeStr(buf, p, m.dst);
  p = writeStr(buf, p, m.c);
  if (typeof m.m === 'string') p = writeStr(buf, p, m.m);
  if (typeof m.r === 'string') p = writeStr(buf, p, m.r);
  if (typeof m.q === 'string') p = writeStr(buf, p, m.q);
  if (typeof m.ru === 'string') p = writeStr(buf, p, m.ru);
  if (typeof m.fu === 'string') p = writeStr(buf, p, m.fu);
  if (typeof m.tu === 'string') p = writeStr(buf, p, m.tu);
  if (typeof m.x === 'string') p = writeStr(buf, p, m.x);
  if (typeof m.si === 'string') p = writeStr(buf, p, m.si);
  if (typeof m.sr === 'string') p = writeStr(buf, p, m.sr);
  if (typeof m.ic === 'string') p = writeStr(buf, p, m.ic);
  if (m.pu) {
    p = writeVarint(buf, p, m.pu.length);
    for (const u of m.pu) p = writeStr(buf, p, u);
  }
  if (m.sdp) p = writeEndpoints(buf, p, m.sdp);
  if (m.rc) p = writeEndpoints(buf, p, m.rc);
  if (m.pm) {
    p = writeVarint(buf, p, m.pm.length);
    for (const [pt, enc] of m.pm) p = writeStr(buf, writeVarint(buf, p, pt), enc);
  }
  return p;
}

/** v's low 32 bits, little-endian (writeUInt32LE of v >>> 0). */
function put32(buf: Buffer, at: number, v: number): void {
  buf[at] = v;
  buf[at + 1] = v >>> 8;
  buf[at + 2] = v >>> 16;
  buf[at + 3] = v >>> 24;
}

/** v's low 16 bits, little-endian (writeUInt16LE of v & 0xffff). */
function put16(buf: Buffer, at: number, v: number): void {
  buf[at] = v;
  buf[at + 1] = v >>> 8;
}

function bit(s: string | null | undefined, k: number): number {
  return typeof s === 'string' ? 1 << k : 0;
}

function writeEndpoints(buf: Buffer, p: number, eps: ReadonlyArray<readonly [string, number]>): number {
  p = writeVarint(buf, p, eps.length);
  for (const [a, port] of eps) p = writeVarint(buf, writeStr(buf, p, a), port);
  return p;
}

/** m's binary record as a Buffer of its own (tests, and records not made by the indexer). */
export function binaryRecord(m: MessageRecord): Buffer {
  const buf = Buffer.allocUnsafe(binaryRecordBound(m));
  return buf.subarray(0, writeBinaryRecord(m, buf, 0));
}

class Cursor {
  constructor(readonly buf: Buffer, public at: number, readonly end: number) {}

  varint(): number {
    let v = 0;
    // The 7-bit groups' weights by multiplication: `2 ** shift` was a call to pow() a byte.
    for (let shift = 0, weight = 1; shift < 35; shift += 7, weight *= 128) {
      if (this.at >= this.end) throw new RangeError('message record cut short');
      const b = this.buf[this.at++];
      v += (b & 0x7f) * weight;
      if (b < 0x80) {
        if (v > 0xffffffff) break;
        return v;
      }
    }
    throw new RangeError('message record: bad varint');
  }

  str(): string {
    const n = this.varint();
    if (n > this.end - this.at) throw new RangeError('message record: string runs past its record');
    // ASCII values (addresses, codec names, a dialog's Call-ID and users) repeat record after record.
    const s = isAscii(this.buf, this.at, this.at + n) ? byteTexts.get(this.buf, this.at, this.at + n) : this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }

  /** A count of items that take at least `min` bytes each, refused when the record cannot hold them. */
  count(min: number): number {
    const n = this.varint();
    if (n * min > this.end - this.at) throw new RangeError('message record: count past its record');
    return n;
  }
}

function isAscii(b: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (b[i] >= 0x80) return false;
  return true;
}

/** Decodes the binary record in buf[start, end); throws RangeError when it is not one. */
export function readBinaryRecord(buf: Buffer, start: number, end: number): MessageRecord {
  if (end - start < FIXED_LEN + 1 || end > buf.length) throw new RangeError('message record too short');
  const flags = buf[start + 17];
  const present = buf.readUInt16LE(start + 20);
  const cur = new Cursor(buf, start + FIXED_LEN, end);
  const np = cur.count(1);
  const p: number[] = new Array(np);
  for (let i = 0; i < np; i++) p[i] = cur.varint();
  const m: MessageRecord = {
    p,
    t: [buf.readUInt32LE(start), buf.readUInt32LE(start + 4)],
    src: cur.str(),
    dst: cur.str(),
    sp: buf.readUInt16LE(start + 12),
    dp: buf.readUInt16LE(start + 14),
    pr: buf[start + 16],
    m: null,
    s: flags & BIN_FLAG.STATUS ? buf.readUInt16LE(start + 18) : null,
    c: cur.str(),
    q: null,
    ru: null,
    fu: null,
    tu: null,
    n: buf.readUInt32LE(start + 8),
  };
  if (present & 0x001) m.m = cur.str();
  if (present & 0x002) m.r = cur.str();
  if (present & 0x004) m.q = cur.str();
  if (present & 0x008) m.ru = cur.str();
  if (present & 0x010) m.fu = cur.str();
  if (present & 0x020) m.tu = cur.str();
  if (present & 0x040) m.x = cur.str();
  if (present & 0x080) m.si = cur.str();
  if (present & 0x100) m.sr = cur.str();
  if (present & 0x200) m.ic = cur.str();
  if (flags & BIN_FLAG.TRUNCATED) m.tr = 1;
  if (flags & BIN_FLAG.HEP) m.h = 1;
  if (flags & BIN_FLAG.PU) {
    const n = cur.count(1);
    const pu: string[] = [];
    for (let i = 0; i < n; i++) pu.push(cur.str());
    m.pu = pu;
  }
  readSdpFields(cur, flags, m);
  if (cur.at !== end) throw new RangeError('message record: bytes after its last field');
  return m;
}

/** The record's last fields, from its SDP: endpoints, RTCP endpoints, payload types (as their flags say). */
function readSdpFields(cur: Cursor, flags: number, m: MessageRecord): void {
  if (flags & BIN_FLAG.SDP) m.sdp = readEndpoints(cur);
  if (flags & BIN_FLAG.RTCP) m.rc = readEndpoints(cur);
  if (flags & BIN_FLAG.RTPMAP) {
    const n = cur.count(2);
    const pm: Array<[number, string]> = [];
    for (let i = 0; i < n; i++) pm.push([cur.varint(), cur.str()]);
    m.pm = pm;
  }
}

function readEndpoints(cur: Cursor): Array<[string, number]> {
  const n = cur.count(2);
  const out: Array<[string, number]> = [];
  for (let i = 0; i < n; i++) out.push([cur.str(), cur.varint()]);
  return out;
}

/**
 * The SDP fields (sdp, rc, pm) of the binary record at buf[start, end) set on m as readBinaryRecord reads them,
 * the rest skipped: the indexer's record of a message whose record the native scan wrote from its SDP.
 */
export function binaryRecordSdp(buf: Buffer, start: number, end: number, m: MessageRecord): void {
  if (end - start < FIXED_LEN + 1 || end > buf.length) throw new RangeError('message record too short');
  const flags = buf[start + 17];
  if (!(flags & (BIN_FLAG.SDP | BIN_FLAG.RTCP | BIN_FLAG.RTPMAP))) return;
  let present = buf[start + 20] | (buf[start + 21] << 8);
  const cur = new Cursor(buf, start + FIXED_LEN, end);
  const np = cur.count(1);
  for (let i = 0; i < np; i++) cur.varint();
  // src, dst, Call-ID, then one string a presence bit.
  let strings = 3;
  for (; present !== 0; present &= present - 1) strings++;
  for (let k = 0; k < strings; k++) skipStr(cur);
  if (flags & BIN_FLAG.PU) for (let n = cur.count(1), i = 0; i < n; i++) skipStr(cur);
  readSdpFields(cur, flags, m);
}

function skipStr(cur: Cursor): void {
  const n = cur.count(1); // read before adding: `cur.at += cur.count(1)` would add to the old offset
  cur.at += n;
}

/** The Call-ID of the binary record at buf[start, end) (seal groups messages by it without decoding the rest). */
export function binaryRecordCallId(buf: Buffer, start: number, end: number): string {
  if (end - start < FIXED_LEN + 1 || end > buf.length) throw new RangeError('message record too short');
  const cur = new Cursor(buf, start + FIXED_LEN, end);
  const np = cur.count(1);
  for (let i = 0; i < np; i++) cur.varint();
  for (let k = 0; k < 2; k++) {
    const n = cur.count(1); // src and dst, skipped (read before adding: `cur.at += cur.count(1)` would add to the old offset)
    cur.at += n;
  }
  return cur.str();
}
