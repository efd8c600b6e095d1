import { isIP } from 'node:net';

/*
 * HEP (Homer Encapsulation Protocol), versions 2 and 3: what Kamailio's
 * siptrace, OpenSIPS' proto_hep, FreeSWITCH, rtpengine and heplify send to
 * a collector. https://github.com/sipcapture/HEP (HEP3 rev. 3x).
 *
 * The parser is for hostile bytes: every read is bounds-checked by hand
 * (zod is for JSON, not binary), nothing is allocated but the result, and
 * any fault is one of HEP_DROP_REASONS, which the listener counts.
 *
 *   HEP3   "HEP3" | u16 total length | chunks
 *   chunk  u16 vendor | u16 type | u16 length (chunk header included) | data
 *   HEP2   u8 version | u8 header length | u8 family | u8 protocol | u16 sport | u16 dport |
 *          src, dst (4 or 16 bytes each) | u32 sec, u32 usec, u16 capture id, 2 pad (host order) | payload
 */

/** Why a HEP packet was dropped; each a label of tracefleet_hep_dropped_packets_total. */
export const HEP_DROP_REASONS = [
  /** Shorter than its header says, or than the smallest packet. */
  'truncated',
  /** A length field that disagrees with the packet or a chunk's size. */
  'bad_length',
  /** Neither HEP3 nor a version 1/2 header. */
  'bad_version',
  /** A chunk with a wrong size for its type, a repeated one, or an address of the wrong family. */
  'bad_chunk',
  /** A vendor-0 chunk type the HEP specification does not define. */
  'unknown_chunk',
  /** Addresses, ports, time or payload missing. */
  'missing_chunk',
  /** Not SIP or RTCP, not UDP or TCP, or a compressed payload. */
  'unsupported',
  /** --hep-password set and the auth-key chunk absent or different. */
  'auth',
  /** Over the per-sender rate, too many senders or TCP connections. */
  'flood',
  /** A payload too big for one synthesised IP packet. */
  'too_big',
  /** Not written: the ring could not be written. */
  'write',
] as const;
export type HepDropReason = (typeof HEP_DROP_REASONS)[number];

/**
 * The IP protocol HEP agents write for SIP over TLS (IPPROTO_IDP: Kamailio,
 * OpenSIPS, reSIProcate and sofia-sip alike), the payload being the
 * decrypted message. It is carried as TCP, the transport under the TLS.
 */
export const HEP_TLS_PROTO = 22;

/** HEP's protocol types this agent takes (chunk 0x000b). */
export const HEP_PROTO = { SIP: 1, RTCP: 5 } as const;

export interface HepPacket {
  version: 2 | 3;
  /** 4 or 6. */
  family: 4 | 6;
  /** IP protocol: 17 UDP, 6 TCP. */
  proto: number;
  /** Addresses as raw bytes (4 or 16), not text: the frame builder needs bytes and text is made only when needed. */
  src: Buffer;
  dst: Buffer;
  sport: number;
  dport: number;
  tsSec: number;
  tsUsec: number;
  /** HEP_PROTO.*; 1 (SIP) for HEP2, which has no such field. */
  protoType: number;
  captureId: number;
  authKey: Buffer | null;
  nodeName: Buffer | null;
  correlationId: Buffer | null;
  /** A view into the datagram. */
  payload: Buffer;
}

export type HepParse = { ok: true; hep: HepPacket } | { ok: false; reason: HepDropReason };

/** The HEP3 length field is 16 bits. */
export const HEP3_MAX_LEN = 0xffff;
const HEP3_HEADER_LEN = 6;
const CHUNK_HEADER_LEN = 6;
/** The highest vendor-0 chunk type in the HEP3 specification (0x0020..0x0023: payload info, extras). */
const HEP3_LAST_DEFINED_TYPE = 0x0023;

const AF_INET = 2;
const AF_INET6 = 10;

const fail = (reason: HepDropReason): HepParse => ({ ok: false, reason });

/** Whether a buffer starts like HEP3 (for a TCP stream's framing). */
export function isHep3(b: Buffer, at = 0): boolean {
  return b.length - at >= 4 && b[at] === 0x48 && b[at + 1] === 0x45 && b[at + 2] === 0x50 && b[at + 3] === 0x33;
}

/** The total length a HEP3 packet starting at `at` declares, or null when fewer than 6 bytes are there. */
export function hep3Length(b: Buffer, at = 0): number | null {
  return b.length - at >= HEP3_HEADER_LEN ? b.readUInt16BE(at + 4) : null;
}

/** Parses one HEP2 or HEP3 packet that must fill `b` exactly. */
export function parseHep(b: Buffer): HepParse {
  if (b.length < 4) return fail('truncated');
  if (isHep3(b)) return parseHep3(b);
  if (b[0] === 1 || b[0] === 2) return parseHep2(b);
  return fail('bad_version');
}

function parseHep3(b: Buffer): HepParse {
  if (b.length < HEP3_HEADER_LEN) return fail('truncated');
  const total = b.readUInt16BE(4);
  if (total < HEP3_HEADER_LEN) return fail('bad_length');
  if (total > b.length) return fail('truncated');
  if (total < b.length) return fail('bad_length');
  let family = 0;
  let proto = -1;
  let src: Buffer | null = null;
  let dst: Buffer | null = null;
  let sport = -1;
  let dport = -1;
  let tsSec = -1;
  let tsUsec = -1;
  let protoType = -1;
  let captureId = 0;
  let authKey: Buffer | null = null;
  let nodeName: Buffer | null = null;
  let correlationId: Buffer | null = null;
  let payload: Buffer | null = null;
  let seen = 0; // bit per type 1..31: a repeated chunk is refused
  for (let at = HEP3_HEADER_LEN; at < total; ) {
    if (total - at < CHUNK_HEADER_LEN) return fail('truncated');
    const vendor = b.readUInt16BE(at);
    const type = b.readUInt16BE(at + 2);
    const len = b.readUInt16BE(at + 4);
    if (len < CHUNK_HEADER_LEN) return fail('bad_length');
    if (len > total - at) return fail('truncated');
    const d = at + CHUNK_HEADER_LEN;
    const n = len - CHUNK_HEADER_LEN;
    at += len;
    // Vendors' own chunks are HEP's extension point: skipped, not refused.
    if (vendor !== 0) continue;
    if (type === 0 || type > HEP3_LAST_DEFINED_TYPE) return fail('unknown_chunk');
    if (type < 32) {
      if (seen & (1 << type)) return fail('bad_chunk');
      seen |= 1 << type;
    }
    switch (type) {
      case 0x0001:
        if (n !== 1) return fail('bad_chunk');
        family = b[d];
        break;
      case 0x0002:
        if (n !== 1) return fail('bad_chunk');
        proto = b[d];
        break;
      case 0x0003:
      case 0x0004:
        if (n !== 4) return fail('bad_chunk');
        if (type === 3) src = b.subarray(d, d + 4);
        else dst = b.subarray(d, d + 4);
        break;
      case 0x0005:
      case 0x0006:
        if (n !== 16) return fail('bad_chunk');
        if (type === 5) src = b.subarray(d, d + 16);
        else dst = b.subarray(d, d + 16);
        break;
      case 0x0007:
      case 0x0008:
        if (n !== 2) return fail('bad_chunk');
        if (type === 7) sport = b.readUInt16BE(d);
        else dport = b.readUInt16BE(d);
        break;
      case 0x0009:
        if (n !== 4) return fail('bad_chunk');
        tsSec = b.readUInt32BE(d);
        break;
      case 0x000a:
        if (n !== 4) return fail('bad_chunk');
        tsUsec = b.readUInt32BE(d);
        if (tsUsec >= 1_000_000) return fail('bad_chunk');
        break;
      case 0x000b:
        if (n !== 1) return fail('bad_chunk');
        protoType = b[d];
        break;
      case 0x000c:
        // u32 by the specification; some senders (sngrep among them) write a u16.
        if (n === 4) captureId = b.readUInt32BE(d);
        else if (n === 2) captureId = b.readUInt16BE(d);
        else return fail('bad_chunk');
        break;
      case 0x000e:
        authKey = b.subarray(d, d + n);
        break;
      case 0x000f:
        payload = b.subarray(d, d + n);
        break;
      case 0x0010:
        return fail('unsupported');
      case 0x0011:
        correlationId = b.subarray(d, d + n);
        break;
      case 0x0013:
        nodeName = b.subarray(d, d + n);
        break;
      default:
        // Defined by the specification (keep-alive, VLAN, MAC, MOS, ...) and of no use here.
        break;
    }
  }
  if (!src || !dst || sport < 0 || dport < 0 || tsSec < 0 || !payload || proto < 0 || protoType < 0) return fail('missing_chunk');
  const fam = family === AF_INET ? 4 : family === AF_INET6 ? 6 : 0;
  if (fam === 0) return family === 0 ? fail('missing_chunk') : fail('bad_chunk');
  if (src.length !== (fam === 4 ? 4 : 16) || dst.length !== src.length) return fail('bad_chunk');
  if (payload.length === 0) return fail('bad_chunk');
  return {
    ok: true,
    hep: { version: 3, family: fam, proto, src, dst, sport, dport, tsSec, tsUsec: tsUsec < 0 ? 0 : tsUsec, protoType, captureId, authKey, nodeName, correlationId, payload },
  };
}

/** HEP2's fixed part: version, length, family, protocol, ports (8), then addresses and (v2) the time header. */
const HEP2_HEADER_LEN = 8;
const HEP2_TIME_LEN = 12;

function parseHep2(b: Buffer): HepParse {
  if (b.length < HEP2_HEADER_LEN) return fail('truncated');
  const version = b[0];
  const family = b[2];
  const proto = b[3];
  const addrLen = family === AF_INET ? 4 : family === AF_INET6 ? 16 : 0;
  if (addrLen === 0) return fail('bad_chunk');
  const timeLen = version === 2 ? HEP2_TIME_LEN : 0;
  const head = HEP2_HEADER_LEN + 2 * addrLen + timeLen;
  if (b.length <= head) return fail('truncated');
  // The length byte is the header's: senders disagree on whether it counts the addresses, so both are taken.
  const hl = b[1];
  if (hl !== HEP2_HEADER_LEN && hl !== HEP2_HEADER_LEN + 2 * addrLen && hl !== head) return fail('bad_length');
  const src = b.subarray(HEP2_HEADER_LEN, HEP2_HEADER_LEN + addrLen);
  const dst = b.subarray(HEP2_HEADER_LEN + addrLen, HEP2_HEADER_LEN + 2 * addrLen);
  let tsSec = 0;
  let tsUsec = 0;
  let captureId = 0;
  if (version === 2) {
    // Written from a C struct in the sender's byte order: little-endian on every platform that sends it.
    const t = HEP2_HEADER_LEN + 2 * addrLen;
    tsSec = b.readUInt32LE(t);
    tsUsec = b.readUInt32LE(t + 4);
    captureId = b.readUInt16LE(t + 8);
    if (tsUsec >= 1_000_000) return fail('bad_chunk');
  } else {
    const now = Date.now();
    tsSec = Math.floor(now / 1000);
    tsUsec = (now % 1000) * 1000;
  }
  return {
    ok: true,
    hep: {
      version: 2, family: family === AF_INET ? 4 : 6, proto, src, dst, sport: b.readUInt16BE(4), dport: b.readUInt16BE(6),
      tsSec, tsUsec, protoType: HEP_PROTO.SIP, captureId, authKey: null, nodeName: null, correlationId: null, payload: b.subarray(head),
    },
  };
}

/** What encodeHep3 writes: a parsed packet's fields, the key and node name optional. */
export type Hep3Fields = Pick<HepPacket, 'family' | 'proto' | 'src' | 'dst' | 'sport' | 'dport' | 'tsSec' | 'tsUsec' | 'protoType' | 'captureId' | 'payload'> &
  Partial<Pick<HepPacket, 'authKey' | 'nodeName'>>;

/** Bytes encodeHep3 needs for these fields. */
export function hep3Size(f: Hep3Fields): number {
  const a = f.family === 4 ? 4 : 16;
  return HEP3_HEADER_LEN + 7 + 7 + 2 * (CHUNK_HEADER_LEN + a) + 8 + 8 + 10 + 10 + 7 + 10 +
    (f.authKey ? CHUNK_HEADER_LEN + f.authKey.length : 0) + (f.nodeName ? CHUNK_HEADER_LEN + f.nodeName.length : 0) + CHUNK_HEADER_LEN + f.payload.length;
}

/** Writes a HEP3 packet; null when it would not fit HEP3's 16-bit length. */
export function encodeHep3(f: Hep3Fields): Buffer | null {
  const total = hep3Size(f);
  if (total > HEP3_MAX_LEN) return null;
  const b = Buffer.allocUnsafe(total);
  b.write('HEP3', 0, 'latin1');
  b.writeUInt16BE(total, 4);
  let at = HEP3_HEADER_LEN;
  const chunk = (type: number, n: number): number => {
    b.writeUInt16BE(0, at);
    b.writeUInt16BE(type, at + 2);
    b.writeUInt16BE(CHUNK_HEADER_LEN + n, at + 4);
    const d = at + CHUNK_HEADER_LEN;
    at = d + n;
    return d;
  };
  b[chunk(0x0001, 1)] = f.family === 4 ? AF_INET : AF_INET6;
  b[chunk(0x0002, 1)] = f.proto;
  f.src.copy(b, chunk(f.family === 4 ? 0x0003 : 0x0005, f.src.length));
  f.dst.copy(b, chunk(f.family === 4 ? 0x0004 : 0x0006, f.dst.length));
  b.writeUInt16BE(f.sport, chunk(0x0007, 2));
  b.writeUInt16BE(f.dport, chunk(0x0008, 2));
  b.writeUInt32BE(f.tsSec >>> 0, chunk(0x0009, 4));
  b.writeUInt32BE(f.tsUsec >>> 0, chunk(0x000a, 4));
  b[chunk(0x000b, 1)] = f.protoType;
  b.writeUInt32BE(f.captureId >>> 0, chunk(0x000c, 4));
  if (f.authKey) f.authKey.copy(b, chunk(0x000e, f.authKey.length));
  if (f.nodeName) f.nodeName.copy(b, chunk(0x0013, f.nodeName.length));
  f.payload.copy(b, chunk(0x000f, f.payload.length));
  return b;
}

/** An address in its text form (as the decoders make it) as 4 or 16 bytes; null when it is neither IPv4 nor IPv6. */
export function addressBytes(text: string): Buffer | null {
  const v = isIP(text);
  if (v === 4) return Buffer.from(text.split('.').map(Number));
  if (v !== 6) return null;
  let s = text;
  const dot = s.lastIndexOf('.');
  if (dot !== -1) {
    // An IPv4 tail (::ffff:192.0.2.1) is the last two groups.
    const colon = s.lastIndexOf(':');
    const q = s.slice(colon + 1).split('.').map(Number);
    s = `${s.slice(0, colon + 1)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const groupsOf = (part: string) => (part === '' ? [] : part.split(':').map((x) => parseInt(x, 16)));
  const both = s.split('::');
  const head = groupsOf(both[0]);
  const groups = both.length === 2 ? [...head, ...new Array(8 - head.length - groupsOf(both[1]).length).fill(0), ...groupsOf(both[1])] : head;
  if (groups.length !== 8) return null;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}
