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
  ];
}


/** The legs' packets, in time order, as a PCAP at `file`, imported into the ring `ring`. */
export async function writeLegsRing(file: string, ring: string, legs: Leg[], maxSegmentBytes?: number): Promise<void> {
  const pkts = legs.flatMap(legPackets).sort((a, b) => a.s - b.s);
  const fd = openSync(file, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos: true });
  for (const p of pkts) w.write({ tsSec: LEGS_T0 + Math.floor(p.s), tsNsec: Math.round((p.s % 1) * 1e9), origLen: p.frame.length, data: p.frame });
  w.flush();
  closeSync(fd);
  await importCaptures(ring, [file], maxSegmentBytes ? { maxSegmentBytes } : {});
}
