import { closeSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { SegmentIndexer } from '../../agent/index/builder';
import { indexPathFor, segmentBaseName } from '../../agent/ring/layout';
import { closeResult, resultRefs, runQuery } from '../../agent/query/engine';
import { buildQuerySpec } from '../../shared/query/query';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { rtpCall, rtpCallFrames } from '../common/rtpgen';
import { median, nowMs, progress, round } from '../common/report';
import { mixCallsOptions } from './replay';
import { withoutFlowRecords } from '../../test/support/rtp-calls';

/*
 * One call's `--rtp` on a ring whose segment is still being written (the
 * live segment: a journal the query replays and completes in memory), by the
 * journaled RTP flows against the scan of every packet that the same journal
 * without its flow records gets (what an agent before them wrote, and the
 * code path every live segment took before). The two rings share the same
 * segment file (a hard link) and differ only in their journals; the queries
 * alternate, in-process, after a warm-up, and must select the same packets.
 *
 * Knobs: BENCH_LIVE_MB (segment size, default 64: the agent's), BENCH_LIVE_RUNS (9),
 * BENCH_LIVE_CALLS (concurrent calls, 300), BENCH_OUT (bench-output/live-rtp).
 */

const MB = Number(process.env.BENCH_LIVE_MB ?? 64);
const RUNS = Number(process.env.BENCH_LIVE_RUNS ?? 9);
const CALLS = Number(process.env.BENCH_LIVE_CALLS ?? 300);
const OUT = resolve(process.env.BENCH_OUT ?? 'bench-output/live-rtp');
/** Bytes written between two rounds of the live indexer (a 50 ms round at 80 Mbit/s). */
const ROUND_BYTES = 512 * 1024;
const T0 = 1_796_000_000;

function main(): void {
  const load0 = loadavg();
  rmSync(OUT, { recursive: true, force: true });
  const ringFlows = join(OUT, 'ring-flows');
  const ringScan = join(OUT, 'ring-scan');
  mkdirSync(ringFlows, { recursive: true });
  mkdirSync(ringScan, { recursive: true });
  const seg = join(ringFlows, `${segmentBaseName('eth0', T0 * 1e6)}.pcap`);

  // The mixed case's calls (bench:capture): CALLS concurrent G.711 calls and their own SIP (no filler SIP: nearly all RTP).
  const o = mixCallsOptions({ packets: Math.ceil((MB * 1024 * 1024) / 200), sipShare: 0.1, rtpSeconds: 60, concurrentCalls: CALLS, srcMac: '', dstMac: '', seed: 1 });
  progress(`writing and indexing a live segment of ${MB} MiB (${CALLS} concurrent calls) as the live indexer does, in rounds of ${ROUND_BYTES >> 10} KiB`);
  const fd = openSync(seg, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true });
  const ix = new SegmentIndexer(seg, indexPathFor(seg));
  let written = 0;
  let sinceRound = 0;
  let packets = 0;
  let rtp = 0;
  const calls = new Set<number>();
  const t0 = nowMs();
  for (const f of rtpCallFrames(o)) {
    const ns = 1e9 + f.ns;
    w.write({ tsSec: T0 + Math.floor(ns / 1e9), tsNsec: ns % 1e9, origLen: f.frame.length, data: f.frame });
    written += 16 + f.frame.length;
    sinceRound += 16 + f.frame.length;
    packets++;
    if (!f.sip) rtp++;
    calls.add(f.call);
    if (sinceRound >= ROUND_BYTES) {
      w.flush();
      ix.catchUp();
      sinceRound = 0;
    }
    if (written >= MB * 1024 * 1024) break;
  }
  w.flush();
  // The last round's bytes are left to the query, as a capture's newest are.
  closeSync(fd);
  const indexMs = nowMs() - t0;
  ix.close();
  const idx = indexPathFor(seg);
  const journal = readFileSync(idx);
  const scanJournal = withoutFlowRecords(journal);
  const segScan = join(ringScan, `${segmentBaseName('eth0', T0 * 1e6)}.pcap`);
  linkSync(seg, segScan);
  writeFileSync(indexPathFor(segScan), scanJournal);
  progress(`${packets} packets (${rtp} RTP), ${calls.size} calls, written and indexed in ${round(indexMs / 1000, 1)} s; journal ${journal.length} bytes, ${journal.length - scanJournal.length} of them flow records`);

  // A call in the middle of the segment, up during all of it.
  const callId = rtpCall(o, Math.floor(calls.size / 2)).callId;
  const q = buildQuerySpec({ callId: [callId], rtp: true, rtpStats: false }, new Date((T0 + 10_000) * 1000));
  const once = (ring: string) => {
    const c0 = process.cpuUsage();
    const s = nowMs();
    const r = runQuery(ring, q, { mayWrite: false });
    const ms = nowMs() - s;
    const cpu = process.cpuUsage(c0);
    const refs = resultRefs(r).toArray().map((x) => `${x.sec}.${x.nsec}`);
    closeResult(r);
    return { ms, cpuMs: (cpu.user + cpu.system) / 1000, refs };
  };
  const warmF = once(ringFlows);
  const warmS = once(ringScan);
  if (warmF.refs.join() !== warmS.refs.join()) throw new Error(`flows selected ${warmF.refs.length} packets, the scan ${warmS.refs.length}: not the same`);
  if (warmF.refs.length < 100) throw new Error(`the call selected only ${warmF.refs.length} packets`);
  const flows: Array<{ ms: number; cpuMs: number }> = [];
  const scan: Array<{ ms: number; cpuMs: number }> = [];
  for (let i = 0; i < RUNS; i++) {
    // Alternated, the order swapped each run: both see the same load.
    for (const which of i % 2 ? ['scan', 'flows'] : ['flows', 'scan']) {
      const r = once(which === 'flows' ? ringFlows : ringScan);
      if (r.refs.length !== warmF.refs.length) throw new Error(`run ${i} ${which}: ${r.refs.length} packets`);
      (which === 'flows' ? flows : scan).push({ ms: r.ms, cpuMs: r.cpuMs });
    }
  }
  const load1 = loadavg();
  const fig = {
    bench: 'live-rtp',
    segmentMiB: MB,
    packets,
    rtpPackets: rtp,
    journalBytes: journal.length,
    flowRecordBytes: journal.length - scanJournal.length,
    callId,
    selected: warmF.refs.length,
    runs: RUNS,
    scanMs: round(median(scan.map((x) => x.ms)), 1),
    flowsMs: round(median(flows.map((x) => x.ms)), 1),
    scanCpuMs: round(median(scan.map((x) => x.cpuMs)), 1),
    flowsCpuMs: round(median(flows.map((x) => x.cpuMs)), 1),
    speedup: round(median(scan.map((x) => x.ms)) / median(flows.map((x) => x.ms)), 2),
    cpuSpeedup: round(median(scan.map((x) => x.cpuMs)) / median(flows.map((x) => x.cpuMs)), 2),
    load: [round(load0[0], 2), round(load1[0], 2)],
  };
  console.log(`live segment ${MB} MiB, ${packets} packets (${rtp} RTP); one call's --rtp (${fig.selected} packets, same by both), median of ${RUNS} alternated runs:`);
  console.log(`  scan (journal without flow records): ${fig.scanMs} ms wall, ${fig.scanCpuMs} ms CPU`);
  console.log(`  journaled flows:                     ${fig.flowsMs} ms wall, ${fig.flowsCpuMs} ms CPU   (${fig.speedup}x wall, ${fig.cpuSpeedup}x CPU)`);
  console.log(`  flow records: ${fig.flowRecordBytes} of ${fig.journalBytes} journal bytes; load ${fig.load[0]} before, ${fig.load[1]} after`);
  console.log(JSON.stringify(fig));
  rmSync(OUT, { recursive: true, force: true });
}

main();
