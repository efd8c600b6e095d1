// Builders of packet bytes for tests. Checksums are left zero: no decoder
// here verifies them (captures of offloaded traffic have wrong ones anyway).

import { closeSync, openSync } from 'node:fs';
import { PcapFileWriterSync } from '../../shared/pcap/writer';

export const ETH_IPV4 = 0x0800;
export const ETH_IPV6 = 0x86dd;
export const ETH_ARP = 0x0806;

export const TCP_FLAG = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

/** Bytes of a dotted-quad IPv4 address. */
export function ipv4Bytes(a: string): Buffer {
  const parts = a.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`bad IPv4 address ${a}`);
  return Buffer.from(parts);
}

/** Bytes of an IPv6 address in any RFC 4291 text form (with "::", optional trailing dotted quad). */
export function ipv6Bytes(a: string): Buffer {
  let text = a;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    text = text.slice(0, lastColon + 1) + v4.readUInt16BE(0).toString(16) + ':' + v4.readUInt16BE(2).toString(16);
  }
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => (/^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN)));
  let words: number[];
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    const head = groups(text.slice(0, dbl));
    const rest = groups(text.slice(dbl + 2));
    words = [...head, ...new Array<number>(Math.max(0, 8 - head.length - rest.length)).fill(0), ...rest];
  } else {
    words = groups(text);
  }
  if (words.length !== 8 || words.some((w) => !(w >= 0 && w <= 0xffff))) throw new Error(`bad IPv6 address ${a}`);
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(w, 2 * i));
  return b;
}

export interface VlanTag {
  vid: number;
  /** Tag protocol id: 0x8100 (802.1Q, default), 0x88a8 (802.1ad), 0x9100. */
  tpid?: number;
  pcp?: number;
}

export interface EthernetOpts {
  /** Tags outer to inner. */
  vlans?: VlanTag[];
  /** Pads the frame with zeros to this length, as short frames are on the wire (60 without FCS). */
  padTo?: number;
}

export function ethernet(ethertype: number, payload: Buffer, opts: EthernetOpts = {}): Buffer {
  const vlans = opts.vlans ?? [];
  const h = Buffer.alloc(14 + 4 * vlans.length);
  Buffer.from([0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb]).copy(h, 0);
  let p = 12;
  for (const v of vlans) {
    h.writeUInt16BE(v.tpid ?? 0x8100, p);
    h.writeUInt16BE(((v.pcp ?? 0) << 13) | v.vid, p + 2);
    p += 4;
  }
  h.writeUInt16BE(ethertype, p);
  const frame = Buffer.concat([h, payload]);
  if (opts.padTo !== undefined && frame.length < opts.padTo) return Buffer.concat([frame, Buffer.alloc(opts.padTo - frame.length)]);
  return frame;
}

/** Linux cooked capture v1 (LINKTYPE_LINUX_SLL): 16 bytes, protocol at 14. */
export function sll(protocol: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(0, 0); // packet type: to us
  h.writeUInt16BE(1, 2); // ARPHRD_ETHER
  h.writeUInt16BE(6, 4);
  Buffer.from([0, 0x11, 0x22, 0x33, 0x44, 0x55]).copy(h, 6);
  h.writeUInt16BE(protocol, 14);
  return Buffer.concat([h, payload]);
}

/** Linux cooked capture v2 (LINKTYPE_LINUX_SLL2): 20 bytes, protocol at 0. */
export function sll2(protocol: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(protocol, 0);
  h.writeUInt32BE(2, 4); // interface index
  h.writeUInt16BE(1, 8); // ARPHRD_ETHER
  h[10] = 0; // packet type
  h[11] = 6;
  Buffer.from([0, 0x11, 0x22, 0x33, 0x44, 0x55]).copy(h, 12);
  return Buffer.concat([h, payload]);
}

/** BSD loopback (LINKTYPE_NULL): address family in the capturing host's byte order. */
export function nullLink(af: number, payload: Buffer, littleEndian = true): Buffer {
  const h = Buffer.alloc(4);
  if (littleEndian) h.writeUInt32LE(af, 0);
  else h.writeUInt32BE(af, 0);
  return Buffer.concat([h, payload]);
}

/** OpenBSD loopback (LINKTYPE_LOOP): address family in network byte order. */
export function loopLink(af: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(af, 0);
  return Buffer.concat([h, payload]);
}

export interface Ipv4Opts {
  src: string;
  dst: string;
  proto: number;
  id?: number;
  ttl?: number;
  /** More-fragments flag. */
  more?: boolean;
  dontFragment?: boolean;
  /** Fragment offset in bytes (a multiple of 8). */
  fragOffset?: number;
  /** Options, padded by the caller to a multiple of 4 bytes. */
  options?: Buffer;
  /** Overrides the total length field. */
  totalLength?: number;
}

export function ipv4(o: Ipv4Opts, payload: Buffer): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  if (opts.length % 4 !== 0) throw new Error('IPv4 options must be a multiple of 4 bytes');
  const ihl = 20 + opts.length;
  const h = Buffer.alloc(ihl);
  h[0] = 0x40 | (ihl / 4);
  h.writeUInt16BE(o.totalLength ?? ihl + payload.length, 2);
  h.writeUInt16BE(o.id ?? 0x1234, 4);
  h.writeUInt16BE((o.dontFragment ? 0x4000 : 0) | (o.more ? 0x2000 : 0) | ((o.fragOffset ?? 0) / 8), 6);
  h[8] = o.ttl ?? 64;
  h[9] = o.proto;
  ipv4Bytes(o.src).copy(h, 12);
  ipv4Bytes(o.dst).copy(h, 16);
  opts.copy(h, 20);
  return Buffer.concat([h, payload]);
}

export interface Ipv6Opts {
  src: string;
  dst: string;
  /** Type of the first header after the fixed header. */
  nextHeader: number;
  hopLimit?: number;
  /** Overrides the payload length field. */
  payloadLength?: number;
}

/** An IPv6 packet; `payload` holds any extension headers, then the transport. */
export function ipv6(o: Ipv6Opts, payload: Buffer): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(0x60000000, 0);
  h.writeUInt16BE(o.payloadLength ?? payload.length, 4);
  h[6] = o.nextHeader;
  h[7] = o.hopLimit ?? 64;
  ipv6Bytes(o.src).copy(h, 8);
  ipv6Bytes(o.dst).copy(h, 24);
  return Buffer.concat([h, payload]);
}

/** A hop-by-hop (0), routing (43) or destination options (60) header of `units` 8-byte units, filled with a PadN option. */
export function v6Options(next: number, units = 1): Buffer {
  const b = Buffer.alloc(8 * units);
  b[0] = next;
  b[1] = units - 1;
  b[2] = 1; // PadN
  b[3] = b.length - 4;
  return b;
}

/** An authentication header (51) with `icvBytes` of ICV (a multiple of 4; 12 for HMAC-SHA1-96). */
export function v6Auth(next: number, icvBytes = 12): Buffer {
  const b = Buffer.alloc(12 + icvBytes);
  b[0] = next;
  b[1] = b.length / 4 - 2;
  b.writeUInt32BE(0x100, 4); // SPI
  b.writeUInt32BE(1, 8); // sequence
  return b;
}

/** An IPv6 fragment header (44); offset in bytes. */
export function v6Fragment(next: number, offset: number, more: boolean, id: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = next;
  b.writeUInt16BE((offset & 0xfff8) | (more ? 1 : 0), 2);
  b.writeUInt32BE(id >>> 0, 4);
  return b;
}

export function udp(sport: number, dport: number, payload: Buffer, length?: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt16BE(length ?? 8 + payload.length, 4);
  return Buffer.concat([h, payload]);
}

export interface TcpOpts {
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  /** Default PSH|ACK. */
  flags?: number;
  /** Options, padded by the caller to a multiple of 4 bytes. */
  options?: Buffer;
}

export function tcp(o: TcpOpts, payload: Buffer): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const hl = 20 + opts.length;
  const h = Buffer.alloc(hl);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt32BE(o.seq >>> 0, 4);
  h.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
  h[12] = (hl / 4) << 4;
  h[13] = o.flags ?? TCP_FLAG.PSH | TCP_FLAG.ACK;
  h.writeUInt16BE(65535, 14);
  opts.copy(h, 20);
  return Buffer.concat([h, payload]);
}

/** Splits an IP payload into IPv4 fragments of the given data sizes (multiples of 8 but the last), in order. */
export function fragmentIpv4(o: Ipv4Opts, ipPayload: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let i = 0; i < sizes.length; i++) {
    const last = i === sizes.length - 1;
    const end = last ? ipPayload.length : off + sizes[i];
    out.push(ipv4({ ...o, fragOffset: off, more: !last }, ipPayload.subarray(off, end)));
    off = end;
  }
  return out;
}

/**
 * Splits a fragmentable part into IPv6 fragments of the given data sizes.
 * With `hopByHop` each fragment carries a hop-by-hop header before its fragment header.
 */
export function fragmentIpv6(
  o: { src: string; dst: string },
  next: number,
  id: number,
  fragmentable: Buffer,
  sizes: number[],
  hopByHop = false,
): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (let i = 0; i < sizes.length; i++) {
    const last = i === sizes.length - 1;
    const end = last ? fragmentable.length : off + sizes[i];
    const frag = Buffer.concat([v6Fragment(next, off, !last, id), fragmentable.subarray(off, end)]);
    out.push(
      hopByHop
        ? ipv6({ ...o, nextHeader: 0 }, Buffer.concat([v6Options(44), frag]))
        : ipv6({ ...o, nextHeader: 44 }, frag),
    );
    off = end;
  }
  return out;
}

/** A SIP INVITE with an SDP body, CRLF line ends, a correct Content-Length. */
export function sipInvite(callId = 'a84b4c76e66710@pc33.example.com', extraHeaders = '', bodyPad = 0): Buffer {
  const body =
    'v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n' +
    'm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n' +
    'a=rtpmap:101 telephone-event/8000\r\n' +
    'a=x-pad:' + 'p'.repeat(bodyPad) + '\r\n';
  const head =
    'INVITE sip:+15551234567@example.com SIP/2.0\r\n' +
    'Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds\r\n' +
    'Max-Forwards: 70\r\n' +
    'To: <sip:+15551234567@example.com>\r\n' +
    'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n' +
    `Call-ID: ${callId}\r\n` +
    'CSeq: 314159 INVITE\r\n' +
    'Contact: <sip:alice@pc33.example.com>\r\n' +
    'Content-Type: application/sdp\r\n' +
    extraHeaders +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return Buffer.from(head + body, 'latin1');
}

/** A bodiless SIP response. */
export function sipResponse(status = 200, reason = 'OK', callId = 'a84b4c76e66710@pc33.example.com', cseq = '314159 INVITE'): Buffer {
  return Buffer.from(
    `SIP/2.0 ${status} ${reason}\r\n` +
      'Via: SIP/2.0/TCP pc33.example.com;branch=z9hG4bK776asdhds\r\n' +
      'To: <sip:+15551234567@example.com>;tag=a6c85cf\r\n' +
      'From: "Alice" <sip:alice@example.com>;tag=1928301774\r\n' +
      `Call-ID: ${callId}\r\n` +
      `CSeq: ${cseq}\r\n` +
      'Content-Length: 0\r\n\r\n',
    'latin1',
  );
}

/** Deterministic PRNG (mulberry32): uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Ethernet frames as a PCAP file with nanosecond stamps: what the tests import into a ring. */
export function writePcap(path: string, pkts: Array<{ sec: number; nsec: number; frame: Buffer }>): void {
  const fd = openSync(path, 'w');
  try {
    const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true });
    for (const p of pkts) w.write({ tsSec: p.sec, tsNsec: p.nsec, origLen: p.frame.length, data: p.frame });
    w.flush();
  } finally {
    closeSync(fd);
  }
}
