import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { LINKTYPE } from '../../shared/pcap/types';
import { ethernet, ipv4, udp, ETH_IPV4 } from '../../test/support/packets';
import { importCaptures } from '../../agent/index/import';
import { SealedIndex } from '../../agent/index/reader';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery } from '../../agent/query/engine';
import { rtpPacket as rtp } from '../common/rtp';

/*
 * The RTP case of the query bench: a capture of CALLS overlapping calls (SIP
 * with SDP, G.711 both ways at 50 packets/s) to one media server; the time of
 * one call's `--rtp` query and of its `--rtp-stats` figures, against tshark
 * selecting the same call's SIP and RTP by its SDP endpoints (-Y) and
 * `tshark -z rtp,streams` over the same file. Prints ratios.
 * Run: node dist/bench/query/rtp.js [calls]
 */

const CALLS = Number(process.argv[2] ?? 2000);
const RTP_SECONDS = 4;
const T0 = 1_795_000_000;
const M = '10.9.0.9';

function sip(start: string, callId: string, cseq: string, body = ''): Buffer {
  return Buffer.from(
    `${start}\r\nVia: SIP/2.0/UDP 10.1.0.1;branch=z9hG4bK${callId}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: ${callId}\r\nCSeq: ${cseq}\r\n` +
      `${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    'latin1',
  );
}
const sdp = (a: string, p: number) => `v=0\r\no=- 1 1 IN IP4 ${a}\r\ns=-\r\nc=IN IP4 ${a}\r\nt=0 0\r\nm=audio ${p} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n`;
const frame = (s: string, d: string, sp: number, dp: number, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src: s, dst: d, proto: 17 }, udp(sp, dp, payload)));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timed(fn: () => void, runs = 5): number {
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    fn();
    ms.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return median(ms);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-bench-rtp-'));
  try {
    type P = { t: number; f: Buffer };
    const pkts: P[] = [];
    for (let c = 0; c < CALLS; c++) {
      const start = c * 0.05;
      const caller = `10.2.${(c >> 8) & 0xff}.${c & 0xff}`;
      const cport = 20000 + 2 * (c % 1000);
      const mport = 30000 + 2 * (c % 5000);
      const id = `bench-${c}`;
      pkts.push({ t: start, f: frame('10.1.0.1', '10.1.0.2', 5060, 5060, sip('INVITE sip:b@y SIP/2.0', id, '1 INVITE', sdp(caller, cport))) });
      pkts.push({ t: start + 0.01, f: frame('10.1.0.2', '10.1.0.1', 5060, 5060, sip('SIP/2.0 200 OK', id, '1 INVITE', sdp(M, mport))) });
      for (let i = 0; i < RTP_SECONDS * 50; i++) {
        const t = start + 0.02 + i * 0.02;
        pkts.push({ t, f: frame(caller, M, cport, mport, rtp(i, i * 160, c)) });
        pkts.push({ t: t + 0.0005, f: frame(M, caller, mport, cport, rtp(i, i * 160, c + 0x10000)) });
      }
      const end = start + 0.03 + RTP_SECONDS;
      pkts.push({ t: end, f: frame('10.1.0.1', '10.1.0.2', 5060, 5060, sip('BYE sip:b@y SIP/2.0', id, '2 BYE')) });
      pkts.push({ t: end + 0.01, f: frame('10.1.0.2', '10.1.0.1', 5060, 5060, sip('SIP/2.0 200 OK', id, '2 BYE')) });
    }
    pkts.sort((a, b) => a.t - b.t);
    const file = join(dir, 'calls.pcap');
    const fd = openSync(file, 'w');
    const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos: true });
    for (const p of pkts) {
      const ns = Math.round(p.t * 1e9);
      w.write({ tsSec: T0 + Math.floor(ns / 1e9), tsNsec: ns % 1e9, origLen: p.f.length, data: p.f });
    }
    w.flush();
    closeSync(fd);
    const ring = join(dir, 'ring');
    const load1 = loadavg()[0];
    const ti = process.hrtime.bigint();
    await importCaptures(ring, [file]);
    const importMs = Number(process.hrtime.bigint() - ti) / 1e6;
    // What the RTP flows cost on disk: the index files, and their flow sections within them.
    let indexBytes = 0;
    let flowBytes = 0;
    for (const n of readdirSync(ring).filter((x) => x.endsWith('.idx'))) {
      indexBytes += statSync(join(ring, n)).size;
      const ix = SealedIndex.open(join(ring, n));
      if (ix) {
        flowBytes += ix.flowSectionBytes;
        ix.close();
      }
    }

    const c = Math.floor(CALLS / 2);
    const id = `bench-${c}`;
    const caller = `10.2.${(c >> 8) & 0xff}.${c & 0xff}`;
    const cport = 20000 + 2 * (c % 1000);
    const mport = 30000 + 2 * (c % 5000);
    const now = new Date((T0 + 10_000) * 1000);
    let packets = 0;
    let streams = 0;
    const rtpMs = timed(() => {
      const r = runQuery(ring, buildQuerySpec({ callId: [id], rtp: true, rtpStats: false }, now));
      packets = r.refs.length;
      closeResult(r);
    });
    const statsMs = timed(() => {
      const r = runQuery(ring, buildQuerySpec({ callId: [id], rtpStats: true }, now));
      streams = r.streams.length;
      closeResult(r);
    });
    const filter = `sip.Call-ID == "${id}" || (ip.addr == ${caller} && udp.port == ${cport} && ip.addr == ${M} && udp.port == ${mport})`;
    const t1 = process.hrtime.bigint();
    const sel = spawnSync('tshark', ['-n', '-r', file, '-Y', filter, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const tsharkSelMs = Number(process.hrtime.bigint() - t1) / 1e6;
    const t2 = process.hrtime.bigint();
    spawnSync('tshark', ['-n', '-r', file, '-d', 'udp.port==30000-40000,rtp', '-q', '-z', 'rtp,streams'], { encoding: 'utf8', maxBuffer: 1 << 28 });
    const tsharkStreamsMs = Number(process.hrtime.bigint() - t2) / 1e6;
    const tsharkPackets = sel.stdout.split('\n').filter((l) => l.trim()).length;
    console.log(JSON.stringify({
      calls: CALLS, packetsInRing: pkts.length, call: id, load1,
      index: { importMs, captureMB: statSync(file).size / 1e6, importMBps: statSync(file).size / 1e3 / importMs, indexBytes, flowBytes, bytesPerPacket: indexBytes / pkts.length, flowBytesPerPacket: flowBytes / pkts.length },
      rtp: { oursMs: rtpMs, packets, tsharkMs: tsharkSelMs, tsharkPackets, ratio: tsharkSelMs / rtpMs },
      rtpStats: { oursMs: statsMs, streams, tsharkStreamsMs, ratio: tsharkStreamsMs / statsMs },
    }, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
