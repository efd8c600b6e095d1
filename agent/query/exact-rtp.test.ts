import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { LINKTYPE } from '../../shared/pcap/types';
import { ethernet, ipv4, udp, ETH_IPV4 } from '../../test/support/packets';
import { importCaptures } from '../index/import';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery } from './engine';
import { closedWithRefs } from '../../test/support/query';

/*
 * The exact-RTP rule on hand-made packets, where each case is one packet:
 * both ends announced, one end (NAT) uncontested or contested by an
 * overlapping call, a=rtcp, and the dialog's span.
 */

const T0 = 1_795_000_000;
const M = '10.0.0.9'; // the media server every call goes to, one port for all
const SIP_A = '10.0.0.1';
const SIP_B = '10.0.0.2';

function sdp(addr: string, port: number, extra = ''): string {
  return `v=0\r\no=- 1 1 IN IP4 ${addr}\r\ns=-\r\nc=IN IP4 ${addr}\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n${extra}`;
}

function sipMsg(start: string, callId: string, cseq: string, body = ''): Buffer {
  const head =
    `${start}\r\nVia: SIP/2.0/UDP ${SIP_A};branch=z9hG4bK${callId}${cseq.replace(' ', '')}\r\nFrom: <sip:alice@a>;tag=1\r\nTo: <sip:bob@b>;tag=2\r\n` +
    `Call-ID: ${callId}\r\nCSeq: ${cseq}\r\n${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`;
  return Buffer.from(head + body, 'latin1');
}

type Pkt = { s: number; frame: Buffer };
const frame = (src: string, dst: string, sp: number, dp: number, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(sp, dp, payload)));
const rtp = Buffer.from([0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, ...Buffer.alloc(160)]);

/** A call from `start` to `end` seconds: INVITE with the caller's SDP, 200 with the media server's, BYE, 200. */
function call(callId: string, start: number, end: number, callerSdp: string): Pkt[] {
  return [
    { s: start, frame: frame(SIP_A, SIP_B, 5060, 5060, sipMsg('INVITE sip:bob@b SIP/2.0', callId, '1 INVITE', callerSdp)) },
    { s: start + 0.1, frame: frame(SIP_B, SIP_A, 5060, 5060, sipMsg('SIP/2.0 200 OK', callId, '1 INVITE', sdp(M, 6000))) },
    { s: end, frame: frame(SIP_A, SIP_B, 5060, 5060, sipMsg('BYE sip:bob@b SIP/2.0', callId, '2 BYE')) },
    { s: end + 0.1, frame: frame(SIP_B, SIP_A, 5060, 5060, sipMsg('SIP/2.0 200 OK', callId, '2 BYE')) },
  ];
}

test('exact RTP: both ends, NAT when uncontested, neither when an overlapping call shares the one end, a=rtcp, the span', async () => {
  const media = (s: number, src: string, sp: number, dst: string, dp: number): Pkt => ({ s, frame: frame(src, dst, sp, dp, rtp) });
  const pkts: Pkt[] = [
    // X, alone in 0..10, behind NAT: announces 192.168.1.5:4000, sends from 203.0.113.7:30000.
    ...call('X', 0, 10, sdp('192.168.1.5', 4000)),
    media(2, '203.0.113.7', 30000, M, 6000),
    media(2.02, M, 6000, '203.0.113.7', 30000),
    // V and W overlap in 20..30, both to M:6000. V announces its real address and an RTCP port;
    // W is behind NAT, so its packets have one announced end, M:6000, which V announced too.
    ...call('V', 20, 30, sdp('10.0.0.20', 5000, 'a=rtcp:5010\r\n')),
    ...call('W', 21, 29, sdp('192.168.1.6', 4000)),
    media(22, '10.0.0.20', 5000, M, 6000),
    media(22.5, '10.0.0.20', 5010, M, 6001),
    media(23, '203.0.113.8', 31000, M, 6000),
    // After V's BYE: nobody's.
    media(35, '10.0.0.20', 5000, M, 6000),
  ].sort((a, b) => a.s - b.s);
  const dir = mkdtempSync(join(tmpdir(), 'tf-exact-rtp-'));
  try {
    const file = join(dir, 'calls.pcap');
    const fd = openSync(file, 'w');
    const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos: true });
    for (const p of pkts) w.write({ tsSec: T0 + Math.floor(p.s), tsNsec: Math.round((p.s % 1) * 1e9), origLen: p.frame.length, data: p.frame });
    w.flush();
    closeSync(fd);
    const ring = join(dir, 'ring');
    await importCaptures(ring, [file]);
    const rtpOf = (callId: string) => {
      const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [callId], rtp: true }, new Date((T0 + 100) * 1000))));
      const sip = new Set(pkts.filter((p) => p.frame.includes(Buffer.from(`Call-ID: ${callId}\r\n`))).map((p) => p.s));
      return { at: r.refs.toArray().map((x) => x.sec - T0 + x.nsec / 1e9).filter((s) => !sip.has(s)), streams: r.streams };
    };
    const x = rtpOf('X');
    assert.deepEqual(x.at, [2, 2.02], 'a NATed call alone with its media server gets its audio both ways');
    assert.deepEqual(x.streams.map((s) => [s.src, s.dst, s.codec]), [[`203.0.113.7:30000`, `${M}:6000`, 'PCMU/8000'], [`${M}:6000`, `203.0.113.7:30000`, 'PCMU/8000']]);
    assert.deepEqual(rtpOf('V').at, [22, 22.5], "V: its RTP and its a=rtcp RTCP, not W's, nothing after its BYE");
    assert.deepEqual(rtpOf('W').at, [], "W: its one announced end is V's too while both are up, so it is nobody's; V's packets are not W's");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
