import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSipCapture } from '../common/sipgen';
import { SegmentIndexer } from '../../agent/index/builder';
import { countSipMessage, emptySipCounts } from '../../agent/index/sip-counts';
import { PeerResolver } from '../../agent/stats/peers';
import { WindowStats } from '../../agent/stats/windows';

/*
 * The SIP statistics' cost on the indexer: one segment of generated SIP
 * traffic indexed in memory (as the live indexer does, without the journal
 * writes) with and without the per-message hook (/metrics counts and
 * WindowStats), alternated, best of several runs each. The brief's bound is
 * 10% of the indexer's rate. Usage: node --expose-gc dist/bench/stats/main.js [MiB] [runs]
 */

const mib = Number(process.argv[2] ?? 64);
const runs = Number(process.argv[3] ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'tf-bench-stats-'));
try {
  const gen = generateSipCapture({ outDir: dir, totalBytes: mib * 2 ** 20, fileBytes: mib * 2 ** 20 + 2 ** 20, seed: 7 });
  const file = gen.files[0];
  const gc = (globalThis as { gc?: () => void }).gc;
  const once = (withStats: boolean) => {
    // The previous run's garbage is collected before the clock starts (run with --expose-gc).
    gc?.();
    const sip = emptySipCounts();
    const stats = new WindowStats(new PeerResolver({ local: ['10.0.0.0/8'] }));
    const t = process.hrtime.bigint();
    const ix = new SegmentIndexer(file, null, withStats ? { onMessage: (m) => { countSipMessage(sip, m); stats.add(m); } } : {});
    ix.catchUp();
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    return { ms, packets: ix.state.packetCount, messages: ix.state.messages.length };
  };
  const best = { off: Infinity, on: Infinity };
  let shape = once(false);
  for (let i = 0; i < runs; i++) {
    best.off = Math.min(best.off, once(false).ms);
    const r = once(true);
    best.on = Math.min(best.on, r.ms);
    shape = r;
  }
  const rate = (ms: number) => Math.round(shape.packets / (ms / 1000));
  process.stdout.write(`${shape.packets} packets, ${shape.messages} SIP messages (${mib} MiB)\n`);
  process.stdout.write(`indexer without statistics: ${best.off.toFixed(0)} ms (${rate(best.off)} packets/s)\n`);
  process.stdout.write(`indexer with statistics:    ${best.on.toFixed(0)} ms (${rate(best.on)} packets/s)\n`);
  process.stdout.write(`cost: ${((100 * (best.on - best.off)) / best.off).toFixed(1)}%\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
