import { createSocket } from 'node:dgram';
import { hostname, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgent } from '../../agent/daemon/run';
import { serveFollows } from '../../agent/follow/serve';
import { agentStatusOf, connectDispatcher } from '../../agent/link/client';
import type { FollowData, FollowEndView, TraceView } from '../../shared/protocol/client';
import { silentLogger } from '../../shared/log/log';
import { startTestCouch } from '../../test/support/couch';
import { AGENT_TOKEN, ask, connectClient, startTestDispatcher, TRACER } from '../../test/support/dispatcher';
import { percentile } from '../common/dispatcher';
import { Figures, progress } from '../common/report';

/*
 * Capture-to-client latency of a live follow: a real dispatcher (embedded
 * store) and a real agent capturing on lo, in this process; a /client socket
 * follows --port PORT while SIP OPTIONS go to 127.0.0.1:PORT at rising rates
 * (BENCH_FOLLOW_RATES, messages a second, default 500,2000,4000; each for
 * BENCH_FOLLOW_SECONDS, default 3). Latency of a message: its arrival at the
 * client (wall clock) minus its capture time (the packet's timestamp, same
 * clock). It includes the capture flush (20 ms), the indexer's catch-up
 * (5 ms while following), the agent's chunk round trip and the dispatcher's
 * 200 ms reorder window. One agent only: ten on one lo would capture the same
 * packets ten times. Needs root (capture on lo).
 */

const PORT = 5098;
const rates = (process.env.BENCH_FOLLOW_RATES ?? '500,2000,4000').split(',').map(Number).filter((n) => n > 0 && n <= 20_000);
const seconds = Math.min(30, Math.max(1, Number(process.env.BENCH_FOLLOW_SECONDS ?? 3)));

async function main(): Promise<void> {
  const couch = await startTestCouch();
  const d = await startTestDispatcher(couch.url);
  const dir = mkdtempSync(join(tmpdir(), 'tf-bench-follow-'));
  const ring = join(dir, 'ring');
  const agent = await startAgent({ ringDir: ring, interfaces: ['lo'], filter: `udp port ${PORT}`, ringMaxBytes: 512 * 1024 * 1024, logger: silentLogger, indexerNice: Number(process.env.BENCH_FOLLOW_NICE ?? 10) });
  const link = connectDispatcher({
    url: d.url, token: AGENT_TOKEN, name: 'bench1', logger: silentLogger,
    hello: () => ({ version: 'bench', hostname: hostname(), interfaces: ['lo'], ...agentStatusOf(agent.engine.stats(), ring, 0) }),
    status: () => agentStatusOf(agent.engine.stats(), ring, 0),
  });
  const follows = serveFollows(link.socket, { follows: agent.follows, logger: silentLogger });
  const tx = createSocket('udp4');
  await new Promise<void>((resolve) => tx.bind(0, '127.0.0.1', () => resolve()));
  const f = new Figures('bench:follow (capture on lo → agent → dispatcher → follow client, one agent)');
  const cases: Array<Record<string, number>> = [];
  try {
    for (let i = 0; i < 100 && !(await d.orchestrator.agents()).some((a) => a.connected); i++) await sleep(100);
    for (const rate of rates) {
      const s = await connectClient(d.url, { user: TRACER.name, password: TRACER.password });
      const lat: number[] = [];
      let end: FollowEndView | null = null;
      s.on('follow:data', (fd: FollowData, ack: (a: object) => void) => {
        const now = Date.now();
        for (const m of fd.messages) lat.push(now - Number(m.ts) * 1000);
        ack({});
      });
      s.on('follow:end', (e: FollowEndView) => (end = e));
      const a = await ask<{ trace: TraceView }>(s, 'follow:start', { port: [String(PORT)], durationMs: 120_000, maxPackets: 1_000_000 });
      if (!a.ok) throw new Error(`follow:start refused: ${a.message}`);
      while (follows.active() === 0) await sleep(10);
      const total = rate * seconds;
      const t0 = Date.now();
      // Paced in 10 ms slices; bounded by the count.
      for (let sent = 0; sent < total; ) {
        const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * rate) + 1);
        for (; sent < due; sent++) {
          tx.send(`OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-${rate}-${sent}\r\nCall-ID: bench-${rate}-${sent}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`, PORT, '127.0.0.1');
        }
        await sleep(10);
      }
      const sendMs = Date.now() - t0;
      const waitUntil = Date.now() + 10_000;
      while (lat.length < total && Date.now() < waitUntil && !end) await sleep(20);
      await ask(s, 'follow:stop', { traceId: a.trace.id });
      s.close();
      while (follows.active() > 0) await sleep(10);
      lat.sort((x, y) => x - y);
      const c = { rate, sent: total, received: lat.length, achievedRate: Math.round((total / sendMs) * 1000), p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] ?? NaN };
      cases.push(c);
      progress(`${rate}/s: ${lat.length}/${total} arrived, p50 ${c.p50.toFixed(1)} ms, p99 ${c.p99.toFixed(1)} ms`);
      f.section(`${rate} SIP messages/s for ${seconds} s`);
      f.add(`r${rate}_received`, 'messages arrived / sent', `${lat.length} / ${total}`);
      f.add(`r${rate}_p50_ms`, 'latency p50', c.p50, 'ms', 1);
      f.add(`r${rate}_p99_ms`, 'latency p99', c.p99, 'ms', 1);
      f.add(`r${rate}_max_ms`, 'latency max', c.max, 'ms', 1);
    }
    f.extra('cases', cases);
    f.extra('loadavg', loadavg()[0]);
    f.print();
  } finally {
    tx.close();
    follows.close();
    link.close();
    await agent.stop();
    await d.stop();
    await couch.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`bench:follow failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
