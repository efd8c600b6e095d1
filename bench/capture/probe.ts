/**
 * Diagnostic stand-in for `tracefleet agent`, used by the capture bench to
 * find where packets are lost. Runs in the receiving namespace:
 *
 *   node probe.js agent   <ring> <iface> [rtp-ports]   startAgent(): capture + live indexing, the CLI's code path
 *   node probe.js capture <ring> <iface> [rtp-ports]   CaptureEngine alone: the same capture worker, no indexer
 *
 * rtp-ports: LOW-HIGH[,LOW-HIGH...], as the agent's --rtp-ports.
 *
 * Prints "probe ready" once capturing; on SIGTERM stops (sealing indexes in
 * agent mode) and prints one JSON line with the engine's final counters
 * (pcap_stats after the worker's last read, which the CLI never prints),
 * how the main thread fared (event-loop delay, gaps between the worker's
 * stats messages) and how long stopping took.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { CaptureEngine, CaptureEngineOptions } from '../../agent/capture/capture';
import { defaultCaptureFilter } from '../../agent/capture/filter';
import { startAgent } from '../../agent/daemon/run';

async function main(): Promise<void> {
  const [mode, ringDir, iface, rtpPorts] = process.argv.slice(2);
  if ((mode !== 'agent' && mode !== 'capture') || !ringDir || !iface) {
    process.stderr.write('usage: probe.js agent|capture <ring> <iface> [rtp-ports]\n');
    process.exit(2);
  }
  const rtpPortRanges = (rtpPorts ?? '').split(',').filter(Boolean).map((r) => r.split('-').map(Number) as [number, number]);
  // What `tracefleet agent -i <iface> --ring-size 32G --segment-size 64M --min-free 0 [--rtp-ports ...]` passes.
  const opts: CaptureEngineOptions = {
    ringDir,
    interfaces: [iface],
    filter: defaultCaptureFilter({ vlan: true, rtpPortRanges }),
    ringMaxBytes: 32 * 2 ** 30,
    maxSegmentBytes: 64 * 2 ** 20,
    maxSegmentSeconds: 300,
    minFreeBytes: 0,
  };
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let engine: CaptureEngine;
  let stop: () => Promise<void>;
  if (mode === 'agent') {
    const a = await startAgent(opts);
    engine = a.engine;
    stop = () => a.stop();
  } else {
    engine = new CaptureEngine(opts);
    engine.on('error', (e: Error) => process.stderr.write(`probe: ${e.message}\n`));
    await engine.start();
    stop = () => engine.stop();
  }
  let statsEvents = 0;
  let lastStatsAt = 0;
  let maxStatsGapMs = 0;
  engine.on('stats', () => {
    const now = Date.now();
    if (lastStatsAt) maxStatsGapMs = Math.max(maxStatsGapMs, now - lastStatsAt);
    lastStatsAt = now;
    statsEvents++;
  });
  process.stdout.write('probe ready\n');
  process.once('SIGTERM', () => {
    void (async () => {
      const handlerAt = Date.now();
      await stop();
      const st = engine.stats().interfaces[iface];
      loop.disable();
      process.stdout.write(
        JSON.stringify({
          mode,
          received: st.received,
          dropped: st.dropped,
          ifDropped: st.ifDropped,
          packets: st.packets,
          lostPackets: st.lostPackets,
          restarts: st.restarts,
          statsEvents,
          maxStatsGapMs,
          loopDelayMaxMs: Math.round(loop.max / 1e6),
          loopDelayP99Ms: Math.round(loop.percentile(99) / 1e6),
          stopMs: Date.now() - handlerAt,
        }) + '\n',
      );
      process.exit(0);
    })();
  });
}

main().catch((e: Error) => {
  process.stderr.write(`probe: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
