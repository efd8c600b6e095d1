import { ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { loadavg, tmpdir } from 'node:os';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FollowData, FollowEndView, TraceView } from '../../shared/protocol/client';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { startTestCouch } from '../../test/support/couch';
import { AGENT_TOKEN, ask, connectClient, startTestDispatcher, TRACER, type TestDispatcher } from '../../test/support/dispatcher';
import { percentile } from '../common/dispatcher';
import { Figures, progress } from '../common/report';

/*
 * Capture-to-client latency of a live follow: a real dispatcher (embedded
 * store) in this process and N real agents (`tracefleet agent`, each its own
 * process, each capturing lo with a BPF filter on a port of its own, so no
 * two capture the same packet); a /client socket follows those ports while
 * SIP OPTIONS go to 127.0.0.1 at rising rates.
 *
 * BENCH_FOLLOW_AGENTS: fleet sizes, default 1,10. BENCH_FOLLOW_RATES: SIP
 * messages a second over the whole fleet (split evenly between the agents),
 * default 500,2000,4000; BENCH_FOLLOW_PER_AGENT=1 makes them per agent
 * instead. BENCH_FOLLOW_SECONDS: each rate's length, default 3.
 *
 * Two latencies, both arrival at the client (wall clock) minus the capture
 * timestamp (same clock): a message's summary (the CLI's terminal line, the
 * page's table row) and a packet's PCAP record (`-o -`, Wireshark, extcap),
 * which waits out the dispatcher's reorder window. Needs root (capture on lo).
 * The ports are outside the default SIP capture filter so that other agents
 * on this host do not capture the load.
 */

const BASE_PORT = 25100;
const list = (v: string | undefined, dflt: string) => (v ?? dflt).split(',').map(Number);
const fleets = list(process.env.BENCH_FOLLOW_AGENTS, '1,10').filter((n) => Number.isInteger(n) && n >= 1 && n <= 20);
const rates = list(process.env.BENCH_FOLLOW_RATES, '500,2000,4000').filter((n) => n > 0 && n <= 20_000);
const perAgent = process.env.BENCH_FOLLOW_PER_AGENT === '1';
const seconds = Math.min(30, Math.max(1, Number(process.env.BENCH_FOLLOW_SECONDS ?? 3)));
const main_js = join(__dirname, '..', '..', 'bin', 'main.js');

interface Agent {
  name: string;
  port: number;
  proc: ChildProcess;
  dir: string;
}

function startAgentProcess(d: TestDispatcher, i: number): Agent {
  const name = `bench-follow-${i}`;
  const port = BASE_PORT + i;
  const dir = mkdtempSync(join(tmpdir(), 'tf-bench-follow-'));
  const proc = spawn(process.execPath, [
    main_js, 'agent', '--ring', join(dir, 'ring'), '-i', 'lo', '--filter', `udp port ${port}`,
    '--ring-size', '256M', '--segment-size', '32M', '--stats-interval', '0', '--log-level', 'warn',
    '--dispatcher', d.url, '--token', AGENT_TOKEN, '--name', name,
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  return { name, port, proc, dir };
}

async function stopAgents(agents: Agent[]): Promise<void> {
  await Promise.all(agents.map(async (a) => {
    if (a.proc.exitCode === null && a.proc.signalCode === null) {
      const exited = new Promise((resolve) => a.proc.once('exit', resolve));
      a.proc.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill('SIGKILL');
    }
    rmSync(a.dir, { recursive: true, force: true });
  }));
}

/** CPU seconds a process has used (utime + stime of /proc/PID/stat), 0 once it is gone. */
function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch {
    return 0;
  }
}

const sip = (callId: string, branch: string) =>
  `OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-${branch}\r\nCall-ID: ${callId}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
const WARM = Buffer.from('Call-ID: warm-');

interface Case {
  agents: number;
  rate: number;
  perAgentRate: number;
  sent: number;
  messages: number;
  packets: number;
  achievedRate: number;
  msgP50: number;
  msgP99: number;
  pktP50: number;
  pktP99: number;
  pktMax: number;
  /** CPU over the sending time, % of one core: every agent process together, and this process (dispatcher, client, sender). */
  agentsCpu: number;
  dispatcherCpu: number;
  loadavg: number;
}

async function runRate(d: TestDispatcher, agents: Agent[], rate: number): Promise<Case> {
  const tx = createSocket('udp4');
  await new Promise<void>((resolve) => tx.bind(0, '127.0.0.1', () => resolve()));
  const s = await connectClient(d.url, { user: TRACER.name, password: TRACER.password });
  const msgLat: number[] = [];
  const pktLat: number[] = [];
  const warmed = new Set<string>();
  const parser = new CaptureStreamParser('follow');
  let end: FollowEndView | null = null;
  s.on('follow:data', (fd: FollowData, ack: (a: object) => void) => {
    const now = Date.now();
    for (const m of fd.messages) {
      if (m.callId.startsWith('warm-')) warmed.add(m.callId.slice(5));
      else msgLat.push(now - Number(m.ts) * 1000);
    }
    if (fd.data.length) {
      for (const r of parser.push(Buffer.from(fd.data))) {
        if (!r.data.includes(WARM)) pktLat.push(now - (r.tsSec * 1000 + r.tsNsec / 1e6));
      }
    }
    ack({});
  });
  s.on('follow:end', (e: FollowEndView) => (end = e));
  try {
    const a = await ask<{ trace: TraceView }>(s, 'follow:start', { port: agents.map((x) => String(x.port)), durationMs: 120_000, maxPackets: 1_000_000, maxBytes: 1024 * 1024 * 1024 });
    if (!a.ok) throw new Error(`follow:start refused: ${a.message}`);
    // Every agent follows once its warm-up probe arrives; bounded.
    for (let i = 0; i < 200 && warmed.size < agents.length && !end; i++) {
      for (const x of agents) if (!warmed.has(x.name)) tx.send(sip(`warm-${x.name}`, `warm-${i}`), x.port, '127.0.0.1');
      await sleep(100);
    }
    if (warmed.size < agents.length) throw new Error(`only ${warmed.size} of ${agents.length} agents followed within 20 s`);
    const per = perAgent ? rate : rate / agents.length;
    const total = Math.round(per * agents.length * seconds);
    const fleetRate = per * agents.length;
    const t0 = Date.now();
    const agentsCpu0 = agents.reduce((n, x) => n + cpuSeconds(x.proc.pid), 0);
    const ownCpu0 = process.cpuUsage();
    // Paced in 10 ms slices, round robin over the agents' ports; bounded by the count.
    for (let sent = 0; sent < total; ) {
      const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * fleetRate) + 1);
      for (; sent < due; sent++) tx.send(sip(`bench-${rate}-${sent}`, `${rate}-${sent}`), agents[sent % agents.length].port, '127.0.0.1');
      await sleep(10);
    }
    const sendMs = Date.now() - t0;
    const agentsCpu = (agents.reduce((n, x) => n + cpuSeconds(x.proc.pid), 0) - agentsCpu0) / (sendMs / 1000) * 100;
    const own = process.cpuUsage(ownCpu0);
    const dispatcherCpu = (own.user + own.system) / 1000 / sendMs * 100;
    const waitUntil = Date.now() + 15_000;
    while ((msgLat.length < total || pktLat.length < total) && Date.now() < waitUntil && !end) await sleep(20);
    await ask(s, 'follow:stop', { traceId: a.trace.id });
    for (let i = 0; i < 100 && d.follows.active > 0; i++) await sleep(50);
    msgLat.sort((x, y) => x - y);
    pktLat.sort((x, y) => x - y);
    return {
      agents: agents.length, rate: fleetRate, perAgentRate: per, sent: total, messages: msgLat.length, packets: pktLat.length,
      achievedRate: Math.round((total / sendMs) * 1000),
      msgP50: percentile(msgLat, 50), msgP99: percentile(msgLat, 99), pktP50: percentile(pktLat, 50), pktP99: percentile(pktLat, 99), pktMax: pktLat[pktLat.length - 1] ?? NaN,
      agentsCpu, dispatcherCpu,
      loadavg: loadavg()[0],
    };
  } finally {
    s.close();
    tx.close();
  }
}

async function main(): Promise<void> {
  const couch = await startTestCouch();
  const d = await startTestDispatcher(couch.url);
  const f = new Figures(`bench:follow (capture on lo → agent processes → dispatcher → follow client; rates ${perAgent ? 'per agent' : 'over the fleet'})`);
  const cases: Case[] = [];
  let agents: Agent[] = [];
  try {
    for (const n of fleets) {
      agents = Array.from({ length: n }, (_, i) => startAgentProcess(d, i));
      for (let i = 0; i < 600; i++) {
        const connected = (await d.orchestrator.agents()).filter((a) => a.connected && agents.some((x) => x.name === a.name)).length;
        if (connected === n) break;
        if (agents.some((x) => x.proc.exitCode !== null)) throw new Error('an agent process exited at start');
        await sleep(100);
      }
      for (const rate of rates) {
        const c = await runRate(d, agents, rate);
        cases.push(c);
        const k = `a${n}_r${c.rate}`;
        progress(`${n} agent(s), ${c.rate}/s: messages ${c.messages}/${c.sent} p50 ${c.msgP50.toFixed(1)} p99 ${c.msgP99.toFixed(1)} ms; packets ${c.packets}/${c.sent} p50 ${c.pktP50.toFixed(1)} p99 ${c.pktP99.toFixed(1)} ms; CPU agents ${c.agentsCpu.toFixed(0)}% dispatcher ${c.dispatcherCpu.toFixed(0)}%; load ${c.loadavg.toFixed(2)}`);
        f.section(`${n} agent(s), ${c.rate} SIP messages/s (${c.perAgentRate} per agent) for ${seconds} s, load average ${c.loadavg.toFixed(2)}`);
        f.add(`${k}_received`, 'messages / packets arrived of sent', `${c.messages} / ${c.packets} of ${c.sent}`);
        f.add(`${k}_msg_p50_ms`, 'message line latency p50', c.msgP50, 'ms', 1);
        f.add(`${k}_msg_p99_ms`, 'message line latency p99', c.msgP99, 'ms', 1);
        f.add(`${k}_pkt_p50_ms`, 'PCAP packet latency p50', c.pktP50, 'ms', 1);
        f.add(`${k}_pkt_p99_ms`, 'PCAP packet latency p99', c.pktP99, 'ms', 1);
        f.add(`${k}_pkt_max_ms`, 'PCAP packet latency max', c.pktMax, 'ms', 1);
        f.add(`${k}_agents_cpu`, 'agents\' CPU while sending (all together)', c.agentsCpu, '% of a core', 0);
        f.add(`${k}_dispatcher_cpu`, 'dispatcher + client + sender CPU', c.dispatcherCpu, '% of a core', 0);
      }
      await stopAgents(agents);
      agents = [];
    }
    f.extra('cases', cases);
    f.extra('loadavg', loadavg()[0]);
    f.print();
  } finally {
    await stopAgents(agents);
    await d.stop();
    await couch.stop();
  }
}

main().then(() => process.exit(0), (e) => {
  process.stderr.write(`bench:follow failed: ${(e as Error).stack}\n`);
  process.exit(1);
});
