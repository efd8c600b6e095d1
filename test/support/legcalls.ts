import { closeSync, openSync } from 'node:fs';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { LINKTYPE } from '../../shared/pcap/types';
import { ethernet, ipv4, udp, ETH_IPV4 } from './packets';
import { importCaptures } from '../../agent/index/import';

/*
 * Hand-made calls for the legs tests: each leg an INVITE, its 200, a BYE and
 * its 200, with chosen headers and SDP, written to a PCAP and imported into
 * a ring.
 */

export const LEGS_T0 = 1_795_200_000;
const A = '10.0.0.1';
export const B2B = '10.0.0.5';
export const Z = '10.0.0.9';

function sdp(addr: string, port: number): string {
  return `v=0\r\no=- 1 1 IN IP4 ${addr}\r\ns=-\r\nc=IN IP4 ${addr}\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n`;
}

function sipMsg(start: string, callId: string, cseq: string, from: string, headers: string[], body = ''): Buffer {
  const head =
    `${start}\r\nVia: SIP/2.0/UDP ${A};branch=z9hG4bK${callId}${cseq.replace(' ', '')}\r\nFrom: <sip:${from}@a>;tag=1\r\nTo: <sip:100@b>;tag=2\r\n` +
    `Call-ID: ${callId}\r\nCSeq: ${cseq}\r\n${headers.map((h) => h + '\r\n').join('')}${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return Buffer.from(head + body, 'latin1');
}

export type Pkt = { s: number; frame: Buffer };
const frame = (src: string, dst: string, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, payload)));

export interface Leg {
  callId: string;
  from: string;
  start: number;
  end?: number;
  headers?: string[];
  /** Headers of the responses only (a Session-ID's answer carries the callee's UUID). */
  answerHeaders?: string[];
  offer?: [string, number];
  answer?: [string, number];
  src?: string;
  dst?: string;
  /** RTP packets each way between the offer's and the answer's ends (PCMU, 20 ms apart, from 0.2 s after the INVITE). */
  rtp?: number;
}

/** A PCMU packet of 160 bytes of silence. */
function rtpPayload(ssrc: number, seq: number): Buffer {
  const b = Buffer.alloc(12 + 160, 0xff);
  b[0] = 0x80;
  b[1] = 0;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc >>> 0, 8);
  return b;
}

/** A stream's SSRC from its leg and direction, so every stream of a test has its own. */
function ssrcOf(callId: string, dir: number): number {
  let x = 0x811c9dc5 ^ dir;
  for (const c of Buffer.from(callId)) x = Math.imul(x ^ c, 0x01000193);
  return x >>> 0;
}

function legRtp(l: Leg): Pkt[] {
  if (!l.rtp || !l.offer || !l.answer) return [];
  const out: Pkt[] = [];
  const ends = [l.offer, l.answer];
  for (const dir of [0, 1]) {
    const [from, to] = [ends[dir], ends[1 - dir]];
    for (let i = 0; i < l.rtp; i++) {
      const payload = rtpPayload(ssrcOf(l.callId, dir), 1000 + i);
      out.push({ s: l.start + 0.2 + i * 0.02 + dir * 0.001, frame: ethernet(ETH_IPV4, ipv4({ src: from[0], dst: to[0], proto: 17 }, udp(from[1], to[1], payload))) });
    }
  }
  return out;
}

export function legPackets(l: Leg): Pkt[] {
  const src = l.src ?? A;
  const dst = l.dst ?? B2B;
  const h = l.headers ?? [];
  const end = l.end ?? l.start + 10;
  return [
    { s: l.start, frame: frame(src, dst, sipMsg('INVITE sip:100@b SIP/2.0', l.callId, '1 INVITE', l.from, h, l.offer ? sdp(...l.offer) : '')) },
    { s: l.start + 0.1, frame: frame(dst, src, sipMsg('SIP/2.0 200 OK', l.callId, '1 INVITE', l.from, l.answerHeaders ?? h, l.answer ? sdp(...l.answer) : '')) },
    { s: end, frame: frame(src, dst, sipMsg('BYE sip:100@b SIP/2.0', l.callId, '2 BYE', l.from, h)) },
    { s: end + 0.1, frame: frame(dst, src, sipMsg('SIP/2.0 200 OK', l.callId, '2 BYE', l.from, h)) },
    ...legRtp(l),
  ];
}


export interface LegsRingOptions {
  maxSegmentBytes?: number;
  /** Added to every timestamp: a host whose clock is this far ahead. */
  shiftMs?: number;
}

/** The legs' packets, in time order, as a PCAP at `file`, imported into the ring `ring`. */
export async function writeLegsRing(file: string, ring: string, legs: Leg[], opts: LegsRingOptions = {}): Promise<void> {
  const { maxSegmentBytes, shiftMs = 0 } = opts;
  const pkts = legs
    .flatMap(legPackets)
    .map((p) => ({ ...p, s: p.s + shiftMs / 1000 }))
    .sort((a, b) => a.s - b.s);
  const fd = openSync(file, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos: true });
  for (const p of pkts) {
    // Whole microseconds: a shifted copy is exactly shiftMs later, whatever the float sums left over.
    const us = Math.round(p.s * 1e6);
    w.write({ tsSec: LEGS_T0 + Math.floor(us / 1e6), tsNsec: (us % 1e6) * 1000, origLen: p.frame.length, data: p.frame });
  }
  w.flush();
  closeSync(fd);
  await importCaptures(ring, [file], maxSegmentBytes ? { maxSegmentBytes } : {});
}
