import type { DecodeFailure, DecodedPacket, FragmentInfo, TcpInfo } from './types';

export const IPPROTO = {
  HOPOPTS: 0,
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  ROUTING: 43,
  FRAGMENT: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: 58,
  NONE: 59,
  DSTOPTS: 60,
} as const;

// Lookup tables keep address formatting to string concatenation: no
// toString(radix) calls and no intermediate arrays per packet.
const DEC: string[] = [];
const HEX: string[] = [];
const HEX2: string[] = [];
for (let i = 0; i < 256; i++) {
  DEC.push(String(i));
  HEX.push(i.toString(16));
  HEX2.push((i < 16 ? '0' : '') + i.toString(16));
}

/** Dotted quad of the 4 bytes at off. The caller guarantees they exist. */
export function formatIPv4(buf: Buffer, off: number): string {
  return DEC[buf[off]] + '.' + DEC[buf[off + 1]] + '.' + DEC[buf[off + 2]] + '.' + DEC[buf[off + 3]];
}

/*
 * A capture sees the same few hundred addresses again and again: a small
 * direct-mapped cache hands back the text made the first time. Besides the
 * concatenation it saves, the same string object comes back each time, with
 * its hash already computed for the indexer's address table. Keys are the
 * address as an int32 (no boxing); every slot starts as 0.0.0.0, whose key is 0.
 */
const V4_SLOTS = 4096;
const v4Keys = new Int32Array(V4_SLOTS);
const v4Text: string[] = new Array<string>(V4_SLOTS).fill('0.0.0.0');

/** The dotted text of the IPv4 address at buf[off..off+4), from a small cache: the same string object for a repeated address. */
export function ipv4Text(buf: Buffer, off: number): string {
  const key = (buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3];
  const slot = (key ^ (key >>> 12) ^ (key >>> 24)) & (V4_SLOTS - 1);
  if (v4Keys[slot] === key) return v4Text[slot];
  const text = formatIPv4(buf, off);
  v4Keys[slot] = key;
  v4Text[slot] = text;
  return text;
}

function hexGroup(buf: Buffer, p: number): string {
  const hi = buf[p];
  return hi === 0 ? HEX[buf[p + 1]] : HEX[hi] + HEX2[buf[p + 1]];
}

/**
 * RFC 5952 text of the 16 bytes at off: lower case, no leading zeros, the
 * longest run (first on a tie) of two or more zero groups as "::", and
 * IPv4-mapped addresses as ::ffff:a.b.c.d. The caller guarantees the bytes exist.
 */
export function formatIPv6(buf: Buffer, off: number): string {
  let bestStart = -1;
  let bestLen = 1;
  let runStart = -1;
  for (let i = 0; i < 8; i++) {
    const p = off + 2 * i;
    if (buf[p] === 0 && buf[p + 1] === 0) {
      if (runStart < 0) runStart = i;
      const runLen = i - runStart + 1;
      if (runLen > bestLen) {
        bestStart = runStart;
        bestLen = runLen;
      }
    } else {
      runStart = -1;
    }
  }
  if (bestStart === 0 && bestLen === 5 && buf[off + 10] === 0xff && buf[off + 11] === 0xff) {
    return '::ffff:' + formatIPv4(buf, off + 12);
  }
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    s += hexGroup(buf, off + 2 * i);
    if (i < 7) s += ':';
  }
  return s;
}

// One shape for every DecodedPacket keeps the consumers' property access monomorphic.
export function makePacket(
  ipVersion: 0 | 4 | 6,
  src: string,
  dst: string,
  proto: number,
  vlans: number[],
  fragment: FragmentInfo | null,
  payload: Buffer,
): DecodedPacket {
  return { ipVersion, src, dst, proto, sport: 0, dport: 0, vlans, fragment, tcp: null, payload, truncated: false };
}

/**
 * Decodes the transport header at the start of `seg` (the whole transport
 * segment: header plus data) into pkt's ports, tcp and payload. On a packet
 * the capture cut (pkt.truncated) `seg` is only the captured part of it.
 */
function transport(pkt: DecodedPacket, proto: number, seg: Buffer): DecodeFailure | null {
  pkt.proto = proto;
  const cut = pkt.truncated;
  if (proto === IPPROTO.UDP) {
    if (seg.length < 8) return cut ? 'truncated' : 'bad-transport-header';
    const ulen = seg.readUInt16BE(4);
    if (ulen < 8) return 'bad-transport-header';
    pkt.sport = seg.readUInt16BE(0);
    pkt.dport = seg.readUInt16BE(2);
    if (ulen > seg.length) {
      // Past the captured bytes only because the capture cut the packet; on a
      // whole packet it is a lie about where the data ends.
      if (!cut) return 'bad-transport-header';
      pkt.payload = seg.subarray(8);
    } else {
      // UDP length, not the IP length, bounds the data: anything after it is trailer.
      pkt.payload = seg.subarray(8, ulen);
      pkt.truncated = false;
    }
  } else if (proto === IPPROTO.TCP) {
    if (seg.length < 20) return cut ? 'truncated' : 'bad-transport-header';
    const doff = (seg[12] >> 4) * 4;
    if (doff < 20) return 'bad-transport-header';
    if (doff > seg.length) return cut ? 'truncated' : 'bad-transport-header';
    pkt.sport = seg.readUInt16BE(0);
    pkt.dport = seg.readUInt16BE(2);
    pkt.tcp = { seq: seg.readUInt32BE(4), ack: seg.readUInt32BE(8), flags: seg[13] };
    pkt.payload = seg.subarray(doff);
  } else {
    pkt.payload = seg;
  }
  return null;
}

/** Ports (and TCP info when the header is whole) of a first fragment; a fragment that is too short just has none. */
function firstFragmentPorts(pkt: DecodedPacket, proto: number, data: Buffer): void {
  if ((proto !== IPPROTO.UDP && proto !== IPPROTO.TCP) || data.length < 4) return;
  pkt.sport = data.readUInt16BE(0);
  pkt.dport = data.readUInt16BE(2);
  if (proto === IPPROTO.TCP && data.length >= 20) {
    pkt.tcp = { seq: data.readUInt32BE(4), ack: data.readUInt32BE(8), flags: data[13] };
  }
}

/** Decodes an IPv4 packet starting at off; `cut` as for decodePacket. */
export function decodeIPv4(data: Buffer, off: number, vlans: number[], cut = false): DecodedPacket | DecodeFailure {
  const avail = data.length - off;
  if (avail < 20) return 'truncated';
  const vihl = data[off];
  if (vihl >> 4 !== 4) return 'bad-ip-header';
  const ihl = (vihl & 0x0f) * 4;
  if (ihl < 20) return 'bad-ip-header';
  let tl = data.readUInt16BE(off + 2);
  // Segmentation offload hands the capture a packet whose total length is
  // still 0; the captured bytes are then all there is to go by (and of a cut
  // one, all there is of it).
  let truncated = false;
  if (tl === 0) {
    tl = avail;
    truncated = cut;
  }
  if (tl < ihl) return 'bad-ip-header';
  const claimed = tl - ihl;
  if (tl > avail) {
    if (!cut || avail < ihl) return 'truncated';
    tl = avail;
    truncated = true;
  }
  const ff = data.readUInt16BE(off + 6);
  const more = (ff & 0x2000) !== 0;
  const fragOff = (ff & 0x1fff) * 8;
  const proto = data[off + 9];
  const src = ipv4Text(data, off + 12);
  const dst = ipv4Text(data, off + 16);
  const ipPayload = data.subarray(off + ihl, off + tl);
  if (more || fragOff !== 0) {
    const pkt = makePacket(4, src, dst, proto, vlans, { id: data.readUInt16BE(off + 4), offset: fragOff, more, proto, length: claimed }, ipPayload);
    pkt.truncated = truncated;
    if (fragOff === 0) firstFragmentPorts(pkt, proto, ipPayload);
    return pkt;
  }
  const pkt = makePacket(4, src, dst, proto, vlans, null, ipPayload);
  pkt.truncated = truncated;
  const f = transport(pkt, proto, ipPayload);
  return f === null ? pkt : f;
}

// Scratch for walkV6: the walk yields three numbers and must not allocate.
let walkProto = 0;
let walkOff = 0;
let walkFrag = -1;

/**
 * Walks IPv6 extension headers from `p` (whose type is nh) up to `end`.
 * Sets walkProto/walkOff to the first non-extension header and its offset,
 * and walkFrag to the offset of the first fragment header met (with
 * `stopAtFragment` the walk ends right behind it, since what follows may be
 * the middle of a datagram). Returns a failure or null.
 */
function walkV6(data: Buffer, p: number, end: number, nh: number, stopAtFragment: boolean): DecodeFailure | null {
  walkFrag = -1;
  for (;;) {
    if (nh === IPPROTO.HOPOPTS || nh === IPPROTO.ROUTING || nh === IPPROTO.DSTOPTS || nh === IPPROTO.AH) {
      if (p + 8 > end) return 'bad-ip-header';
      const hlen = nh === IPPROTO.AH ? (data[p + 1] + 2) * 4 : (data[p + 1] + 1) * 8;
      if (p + hlen > end) return 'bad-ip-header';
      nh = data[p];
      p += hlen;
    } else if (nh === IPPROTO.FRAGMENT && walkFrag < 0) {
      if (p + 8 > end) return 'bad-ip-header';
      walkFrag = p;
      nh = data[p];
      p += 8;
      if (stopAtFragment) break;
    } else {
      break;
    }
  }
  walkProto = nh;
  walkOff = p;
  return null;
}

/** Decodes an IPv6 packet starting at off; `cut` as for decodePacket. */
export function decodeIPv6(data: Buffer, off: number, vlans: number[], cut = false): DecodedPacket | DecodeFailure {
  const avail = data.length - off;
  if (avail < 40) return 'truncated';
  if (data[off] >> 4 !== 6) return 'bad-ip-header';
  const plen = data.readUInt16BE(off + 4);
  const nh0 = data[off + 6];
  let end: number;
  /** Where the payload length says the packet ends, captured or not. */
  let claimedEnd: number;
  let truncated = false;
  if (plen === 0 && nh0 === IPPROTO.HOPOPTS) {
    // Jumbogram (RFC 2675): the length is in a hop-by-hop option; trust the capture.
    end = data.length;
    claimedEnd = end;
    truncated = cut;
  } else {
    end = off + 40 + plen;
    claimedEnd = end;
    if (end > data.length) {
      if (!cut) return 'truncated';
      end = data.length;
      truncated = true;
    }
  }
  const src = formatIPv6(data, off + 8);
  const dst = formatIPv6(data, off + 24);
  let f = walkV6(data, off + 40, end, nh0, true);
  // Extension headers running past a cut are missing, not malformed.
  if (f !== null) return truncated ? 'truncated' : f;
  if (walkFrag >= 0) {
    const fp = walkFrag;
    const fo = data.readUInt16BE(fp + 2);
    const fragOff = fo & 0xfff8;
    const more = (fo & 1) !== 0;
    const fproto = data[fp];
    const fragData = data.subarray(fp + 8, end);
    if (fragOff !== 0 || more) {
      const pkt = makePacket(6, src, dst, fproto, vlans, { id: data.readUInt32BE(fp + 4), offset: fragOff, more, proto: fproto, length: claimedEnd - fp - 8 }, fragData);
      pkt.truncated = truncated;
      if (fragOff === 0) {
        // Headers of the fragmentable part may still precede the transport in
        // a first fragment; they may also run past it, which only means no ports.
        if (walkV6(data, fp + 8, end, fproto, false) === null && walkFrag < 0) {
          pkt.proto = walkProto;
          firstFragmentPorts(pkt, walkProto, data.subarray(walkOff, end));
        }
      }
      return pkt;
    }
    // Atomic fragment (RFC 6946): a whole datagram; carry on past the header.
    f = walkV6(data, fp + 8, end, fproto, false);
    if (f !== null) return truncated ? 'truncated' : f;
    if (walkFrag >= 0) return 'bad-ip-header';
  }
  const proto = walkProto;
  const pkt = makePacket(6, src, dst, proto, vlans, null, data.subarray(walkOff, end));
  pkt.truncated = truncated;
  if (proto === IPPROTO.NONE) {
    pkt.payload = data.subarray(end, end);
    return pkt;
  }
  if (proto === IPPROTO.ESP) return pkt;
  f = transport(pkt, proto, pkt.payload);
  return f === null ? pkt : f;
}

/**
 * Decodes the datagram a FragmentReassembler rebuilt: `datagram` is the whole
 * IP payload and `proto` the protocol the fragments announced (for IPv6 the
 * fragment header's next header, so extension headers may come first).
 * Returns a new packet like `base` (the last fragment) without its fragment info.
 * `cut`: the datagram is only its captured start (a fragment was cut), read
 * as a cut packet is.
 */
export function decodeReassembled(base: DecodedPacket, proto: number, datagram: Buffer, cut = false): DecodedPacket | DecodeFailure {
  let seg = datagram;
  if (base.ipVersion === 6) {
    const f = walkV6(datagram, 0, datagram.length, proto, false);
    if (f !== null) return cut ? 'truncated' : f;
    if (walkFrag >= 0) return 'bad-ip-header';
    proto = walkProto;
    seg = datagram.subarray(walkOff);
  }
  const pkt = makePacket(base.ipVersion, base.src, base.dst, proto, base.vlans, null, seg);
  pkt.truncated = cut;
  if (proto === IPPROTO.NONE || proto === IPPROTO.ESP) return pkt;
  const f = transport(pkt, proto, seg);
  return f === null ? pkt : f;
}
