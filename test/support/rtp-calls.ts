import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { FOOTER_FLAG, FOOTER_LEN, INDEX_HEADER_LEN, REC } from '../../agent/index/format';
import { ethernet, ipv4, prng, udp, ETH_IPV4 } from './packets';

/*
 * A seeded mix of calls to one media server, as the RTP selection tests use
 * it: shared media server ports, NATed senders, RTCP, media before the INVITE
 * and after the BYE, SSRC changes, and UDP that is not RTP.
 */

export const T0 = 1_795_000_000;
export const M = '10.0.0.9';

export function sdp(addr: string, port: number): string {
  return `v=0\r\no=- 1 1 IN IP4 ${addr}\r\ns=-\r\nc=IN IP4 ${addr}\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n`;
}

export function sipMsg(start: string, callId: string, cseq: string, body = ''): Buffer {
  return Buffer.from(
    `${start}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK${callId}${cseq.replace(' ', '')}\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>;tag=2\r\n` +
      `Call-ID: ${callId}\r\nCSeq: ${cseq}\r\n${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    'latin1',
  );
}

export const frame = (src: string, dst: string, sp: number, dp: number, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(sp, dp, payload)));

export function rtp(seq: number, ssrc: number): Buffer {
  const b = Buffer.alloc(172, 0xff);
  b[0] = 0x80;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc >>> 0, 8);
  return b;
}

export function rtcp(ssrc: number): Buffer {
  const b = Buffer.alloc(28);
  b[0] = 0x80;
  b[1] = 200;
  b.writeUInt16BE(6, 2);
  b.writeUInt32BE(ssrc >>> 0, 4);
  return b;
}

export type Pkt = { t: number; f: Buffer };

export function rtpCallMix(seed: number): { pkts: Pkt[]; calls: string[] } {
  const rnd = prng(seed);
  const pkts: Pkt[] = [];
  const calls: string[] = [];
  for (let c = 0; c < 24; c++) {
    const id = `flow-${c}`;
    calls.push(id);
    const start = rnd() * 20;
    const end = start + 1 + rnd() * 4;
    // Few media ports on the server: overlapping calls share them.
    const mport = 7000 + 2 * Math.floor(rnd() * 4);
    const announced = `192.168.${c}.5`;
    const nat = rnd() < 0.3;
    const caller = nat ? `203.0.113.${c + 1}` : announced;
    const cport = 20000 + 2 * c;
    const ended = rnd() < 0.8;
    pkts.push({ t: start, f: frame('10.0.0.1', '10.0.0.2', 5060, 5060, sipMsg('INVITE sip:b@b SIP/2.0', id, '1 INVITE', sdp(announced, cport))) });
    pkts.push({ t: start + 0.05, f: frame('10.0.0.2', '10.0.0.1', 5060, 5060, sipMsg('SIP/2.0 200 OK', id, '1 INVITE', sdp(M, mport))) });
    if (ended) {
      pkts.push({ t: end, f: frame('10.0.0.1', '10.0.0.2', 5060, 5060, sipMsg('BYE sip:b@b SIP/2.0', id, '2 BYE')) });
      pkts.push({ t: end + 0.05, f: frame('10.0.0.2', '10.0.0.1', 5060, 5060, sipMsg('SIP/2.0 200 OK', id, '2 BYE')) });
    }
    // Media from a little before the INVITE to a little after the BYE: flows that straddle the span.
    const from = start - rnd() * 0.5;
    const to = end + rnd() * 0.5;
    let ssrc = 0x1000 + c;
    for (let i = 0, t = from; t < to; i++, t += 0.02) {
      if (rnd() < 0.02) ssrc += 0x10000; // a new SSRC on the same 5-tuple: another flow
      pkts.push({ t, f: frame(caller, M, cport, mport, rtp(i, ssrc)) });
      pkts.push({ t: t + 0.001, f: frame(M, caller, mport, cport, rtp(i, ssrc + 0x8000)) });
      if (i % 50 === 0) pkts.push({ t: t + 0.002, f: frame(caller, M, cport + 1, mport + 1, rtcp(ssrc)) });
    }
  }
  // UDP that is not RTP, some of it to the media server's ports.
  for (let i = 0; i < 300; i++) {
    const t = rnd() * 26;
    pkts.push({ t, f: frame('10.0.0.53', M, 40000 + i, 7000 + 2 * (i % 4), Buffer.from(`not rtp ${i}`)) });
  }
  pkts.sort((a, b) => a.t - b.t);
  return { pkts, calls };
}


/** Clears a sealed index's FLOWS footer flag: it then reads as one sealed before flows were (scanned). */
export function clearFlowsFlag(idx: string): void {
  const fd = openSync(idx, 'r+');
  try {
    const at = fstatSync(fd).size - FOOTER_LEN + 100;
    const b = Buffer.alloc(4);
    readSync(fd, b, 0, 4, at);
    b.writeUInt32LE(b.readUInt32LE(0) & ~FOOTER_FLAG.FLOWS, 0);
    writeSync(fd, b, 0, 4, at);
  } finally {
    closeSync(fd);
  }
}

/** A journal with its flow records left out: what an agent before them wrote (its live segment is scanned). */
export function withoutFlowRecords(journal: Buffer): Buffer {
  const parts = [journal.subarray(0, INDEX_HEADER_LEN)];
  for (let pos = INDEX_HEADER_LEN; pos + 5 <= journal.length; ) {
    const len = journal.readUInt32LE(pos);
    if (journal[pos + 4] !== REC.FLOWS) parts.push(journal.subarray(pos, pos + 4 + len));
    pos += 4 + len;
  }
  return Buffer.concat(parts);
}
