import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ethernet, ipv4, prng, udp, writePcap, ETH_IPV4 } from '../../test/support/packets';
import { importCaptures } from '../index/import';
import { SealedIndex } from '../index/reader';
import { FOOTER_FLAG, FOOTER_LEN, NO_ADDRESS, PACKET_ENTRY_LEN, PKT_FLAG } from '../index/format';
import { FLOW_KIND } from '../index/flows';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery } from './engine';
import { closedWithRefs } from '../../test/support/query';

/*
 * The flows of a sealed index only narrow what `--rtp` and `--rtp-stats` read:
 * over a seeded mix of calls (shared media server ports, NATed senders,
 * RTCP, media before the INVITE and after the BYE, SSRC changes, UDP that is
 * not RTP) cut into small segments, every call selects the same packets and
 * gets the same figures with its flows as by the scan of an index without
 * them (an index sealed before flows existed: its footer flag cleared).
 */

const T0 = 1_795_000_000;
const M = '10.0.0.9';

function sdp(addr: string, port: number): string {
  return `v=0\r\no=- 1 1 IN IP4 ${addr}\r\ns=-\r\nc=IN IP4 ${addr}\r\nt=0 0\r\nm=audio ${port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n`;
}

function sipMsg(start: string, callId: string, cseq: string, body = ''): Buffer {
  return Buffer.from(
    `${start}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK${callId}${cseq.replace(' ', '')}\r\nFrom: <sip:a@a>;tag=1\r\nTo: <sip:b@b>;tag=2\r\n` +
      `Call-ID: ${callId}\r\nCSeq: ${cseq}\r\n${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    'latin1',
  );
}

const frame = (src: string, dst: string, sp: number, dp: number, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(sp, dp, payload)));

function rtp(seq: number, ssrc: number): Buffer {
  const b = Buffer.alloc(172, 0xff);
  b[0] = 0x80;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE((seq * 160) >>> 0, 4);
  b.writeUInt32BE(ssrc >>> 0, 8);
  return b;
}

function rtcp(ssrc: number): Buffer {
  const b = Buffer.alloc(28);
  b[0] = 0x80;
  b[1] = 200;
  b.writeUInt16BE(6, 2);
  b.writeUInt32BE(ssrc >>> 0, 4);
  return b;
}

type Pkt = { t: number; f: Buffer };

function traffic(seed: number): { pkts: Pkt[]; calls: string[] } {
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

function clearFlowsFlag(idx: string): void {
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

test('--rtp and --rtp-stats read through the flows select what the scan of an index without flows does', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-rtp-flows-'));
  try {
    const { pkts, calls } = traffic(20261204);
    const file = join(dir, 'calls.pcap');
    writePcap(file, pkts.map((p) => ({ sec: T0 + Math.floor(p.t + 1), nsec: Math.round(((p.t + 1) % 1) * 1e9), frame: p.f })));
    const ring = join(dir, 'ring');
    await importCaptures(ring, [file], { maxSegmentBytes: 512 * 1024 });
    const idxs = readdirSync(ring).filter((n) => n.endsWith('.idx')).map((n) => join(ring, n));
    assert.ok(idxs.length >= 4, `the calls span several segments (${idxs.length})`);

    // Each flow holds exactly the packets the scan tests for media, each once, with its 5-tuple and within its times.
    let rtcpFlows = 0;
    for (const p of idxs) {
      const ix = SealedIndex.open(p)!;
      try {
        const flows = ix.flowTable();
        assert.ok(flows, `${p} has flows`);
        const t = ix.packetTable();
        const seen = new Uint8Array(ix.packetCount);
        for (let f = 0; f < flows.length; f++) {
          const ords = ix.flowPackets(f);
          assert.equal(ords.length, flows.packets(f));
          if (flows.kind(f) === FLOW_KIND.RTCP) rtcpFlows++;
          for (const ord of ords) {
            const e = ord * PACKET_ENTRY_LEN;
            assert.equal(seen[ord], 0, `packet ${ord} in one flow only`);
            seen[ord] = 1;
            assert.deepEqual([t.readUInt32LE(e + 12), t.readUInt32LE(e + 16), t.readUInt16LE(e + 20), t.readUInt16LE(e + 22)], [flows.src(f), flows.dst(f), flows.sport(f), flows.dport(f)]);
            const ts = t.readUInt32LE(e + 4) * 1e9 + t.readUInt32LE(e + 8);
            assert.ok(ts >= flows.first(f)[0] * 1e9 + flows.first(f)[1] && ts <= flows.last(f)[0] * 1e9 + flows.last(f)[1]);
          }
        }
        for (let ord = 0; ord < ix.packetCount; ord++) {
          const e = ord * PACKET_ENTRY_LEN;
          const media = t[e + 24] === 17 && !(t[e + 25] & PKT_FLAG.SIP) && t.readUInt32LE(e + 12) !== NO_ADDRESS && t.readUInt32LE(e + 16) !== NO_ADDRESS;
          assert.equal(seen[ord], media ? 1 : 0, `packet ${ord} of ${p}: in a flow exactly when the scan would test it`);
        }
      } finally {
        ix.close();
      }
    }
    assert.ok(rtcpFlows > 0, 'RTCP is told apart');

    const now = new Date((T0 + 100) * 1000);
    // Each call alone, and all of them at once (many dialogs on the same media server ports).
    const answers = () =>
      [...calls.map((id) => [id]), calls].map((ids) => {
        const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: ids, rtp: true, rtpStats: true }, now)));
        return { ids, packets: r.refs.toArray().map((x) => `${x.seg}/${x.ord}`), streams: JSON.stringify(r.streams) };
      });
    const withFlows = answers();
    assert.ok(withFlows.filter((a) => a.packets.length > 8).length >= 12, 'most calls get media');
    assert.ok(withFlows.some((a) => JSON.parse(a.streams).length > 2), 'an SSRC change makes another stream');
    for (const p of idxs) clearFlowsFlag(p);
    for (const p of idxs) {
      const ix = SealedIndex.open(p)!;
      assert.equal(ix.flowTable(), null, 'an index without the flag is read without flows');
      ix.close();
    }
    assert.deepEqual(answers(), withFlows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
