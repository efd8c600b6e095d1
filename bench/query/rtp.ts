import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { LINKTYPE } from '../../shared/pcap/types';
import { rtpCall, rtpCallFrames, RtpCallsOptions } from '../common/rtpgen';
import { median } from '../common/report';
import { importCaptures } from '../../agent/index/import';
import { SealedIndex } from '../../agent/index/reader';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery } from '../../agent/query/engine';

/*
 * The RTP case of the query bench: a capture of CALLS overlapping calls (SIP
 * with SDP, G.711 both ways at 50 packets/s) to one media server; the time of
 * one call's `--rtp` query and of its `--rtp-stats` figures, against tshark
 * selecting the same call's SIP and RTP by its SDP endpoints (-Y) and
 * `tshark -z rtp,streams` over the same file. Prints ratios.
 * Run: node dist/bench/query/rtp.js [calls]
 */

const CALLS = Number(process.argv[2] ?? 2000);
const T0 = 1_795_000_000;
const GEN: RtpCallsOptions = { calls: CALLS, rtpSeconds: 4, spacingNs: 50_000_000, sipA: '10.1.0.1', sipB: '10.1.0.2', media: '10.9.0.9', callerNet: '10.2' };

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
    const file = join(dir, 'calls.pcap');
    const fd = openSync(file, 'w');
    const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos: true });
    let packetsInRing = 0;
    for (const p of rtpCallFrames(GEN)) {
      w.write({ tsSec: T0 + Math.floor(p.ns / 1e9), tsNsec: p.ns % 1e9, origLen: p.frame.length, data: p.frame });
      packetsInRing++;
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

    const { callId: id, caller, callerPort: cport, media: M, mediaPort: mport } = rtpCall(GEN, Math.floor(CALLS / 2));
    const now = new Date((T0 + 10_000) * 1000);
    let packets = 0;
    let streams = 0;
    const rtpMs = timed(() => {
      const r = runQuery(ring, buildQuerySpec({ callId: [id], rtp: true, rtpStats: false }, now));
      packets = r.packets;
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
      calls: CALLS, packetsInRing: packetsInRing, call: id, load1,
      index: { importMs, captureMB: statSync(file).size / 1e6, importMBps: statSync(file).size / 1e3 / importMs, indexBytes, flowBytes, bytesPerPacket: indexBytes / packetsInRing, flowBytesPerPacket: flowBytes / packetsInRing },
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
