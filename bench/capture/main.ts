import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { defaultCaptureFilter } from '../../agent/capture/filter';
import { listSegments } from '../../agent/ring/layout';
import { TestNet } from '../../test/support/netns';
import { DaemonHandle, haveCommand, isRoot, run } from '../../test/support/proc';
import { Figures, machineCpu, machineDelta, median, nowMs, progress, round } from '../common/report';
import { IndexLagProbe, LagSample } from './indexlag';
import { AgentStatsLine, DumpcapStats, parseAgentStats, parseCapinfosCount, parseDumpcapStats, parseTcpreplay, TcpreplayResult } from './parse';
import { ensureReplayFile, ensureRtpMixFile, MixCall, MixFile, MixSpec, MIX_NET, ReplayFile } from './replay';
import { framesPerCall, RTP_CALL_PORTS, RTP_PAYLOAD_BYTES } from '../common/rtpgen';
import { comparePackets, Comparison, Pkt, readPackets } from '../common/pcapcompare';
import { SealedIndex } from '../../agent/index/reader';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery } from '../../agent/query/engine';
import { recordsOf, waitForRecord } from '../../test/support/log';

/*
 * Highest lossless capture rate, ours (the agent, capturing and indexing)
 * against dumpcap, on the same veth link in the same run.
 *
 * Two network namespaces made here, joined by a veth pair whose both ends
 * live in them (nothing in the root namespace; addresses 198.18.1.1/.2 from
 * the benchmarking range), removed at the end whatever happens. tcpreplay in
 * "tx" sends SIP-over-UDP frames at rising rates; each tool captures on the
 * veth end in "rx" alone, dumpcap first, then ours, for the same count at
 * the same rate. A tool is lossless at a rate when its file(s) hold exactly
 * the packets tcpreplay sent and its drop counters are zero.
 *
 * A UDP socket bound to 5060 in "rx" that never reads (smallest receive
 * buffer) stands in for the SIP server: without it the receiving kernel
 * answers with ICMP port unreachables, which the capture filter (it takes
 * ICMP) would add to the count.
 *
 * Ours is counted from its ring (capinfos over the segments; `ring check`
 * must index exactly as many) and its drop counters from the last stats line
 * it printed after the index caught up. The CLI prints no final stats and
 * prints its stats lines from the main thread, which indexes, so at high
 * rates there may be no current line: then only sent - captured is known.
 * Attempts where tcpreplay fell short of the asked rate are shown but count
 * neither for nor against a tool. When ours loses packets, a diagnosis
 * follows (bench/capture/probe.ts): the agent's code in-process with its
 * final pcap counters, and the capture engine without the indexer.
 *
 * Two cases (BENCH_CAPTURE_MIX=sip|rtp|both, default both; each has its own
 * time budget, so both take up to ~16 minutes): "sip" replays the SIP file
 * above; "rtp" a media server's traffic (bench/capture/replay.ts,
 * ensureRtpMixFile: 90% RTP of overlapping G.711 calls whose SDP announces
 * their ports, 10% SIP), to addresses neither namespace has, with the agent
 * given --rtp-ports for the calls' ports and dumpcap the same filter. Ours
 * must also have every RTP packet in a flow of its sealed indexes. On the
 * ring of ours's highest lossless rate, one call's `--rtp` is then timed
 * in-process and as the whole CLI against `tshark -Y` on its Call-ID and SDP
 * endpoints over each segment file, and the two results compared packet for
 * packet.
 *
 * Knobs (environment): BENCH_CAPTURE_MIX, BENCH_RATES (comma list of pps,
 * SIP case), BENCH_RTP_RATES (mixed case), BENCH_SECONDS (3),
 * BENCH_MAX_PACKETS (900000 per run; also the mixed file's length),
 * BENCH_ATTEMPTS (2: one retry after a loss), BENCH_DEADLINE_S (390 per case:
 * no new rate after it), BENCH_DIAGNOSE=0, BENCH_RTP_QUERY=0 (no query
 * timing), BENCH_LAG_DURING_REPLAY=1 (sample the index lag during replays too).
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const OUT = join(ROOT, 'bench-output', 'capture');
const RUN_DIR = join(OUT, `run-${process.pid}`);
const BIN = join(ROOT, 'bin', 'tracefleet');

function envNumber(name: string, def: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) setupFail(`${name}=${v} is not a positive number`);
  return n;
}

function envRates(name: string, def: string): number[] {
  return (process.env[name] ?? def)
    .split(',')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

/** Which cases run: the SIP replay, the mixed RTP-heavy one, or both (checked in main()). */
const MIX = process.env.BENCH_CAPTURE_MIX ?? 'both';
const RATES = envRates('BENCH_RATES', '25000,50000,100000,150000,200000,300000,400000');
/** The mixed case's rates: the last is about 1 Gbit/s of its frames (mean 244 B on the veth). */
const RTP_RATES = envRates('BENCH_RTP_RATES', '25000,50000,100000,200000,300000,400000,470000');
// Short calls, so that a run at the lowest rate (75,000 packets) sends some whole: one lives about 60,000 packets.
const RTP_CALL_SECONDS = 2;
const CONCURRENT_CALLS = 300;
/** Runs of each query (in-process and whole CLI); tshark runs once per segment. */
const QUERY_RUNS = 5;
const SECONDS = envNumber('BENCH_SECONDS', 3);
const MAX_PACKETS = envNumber('BENCH_MAX_PACKETS', 900_000);
/** A lossy attempt is repeated up to this many attempts in all, to tell noise from a limit (verdicts use the first). */
const ATTEMPTS = envNumber('BENCH_ATTEMPTS', 2);
/** No new rate of a case is started after this many seconds of it, so that each case stays within ~8 minutes. */
const DEADLINE_S = envNumber('BENCH_DEADLINE_S', 390);
const REPLAY_PACKETS = 50_000;
/** The agent's kernel capture buffer: CaptureEngine's default (the CLI has no option for it); dumpcap gets the same. */
const BUFFER_MIB = 32;
/** The agent's snaplen (CaptureEngine default); dumpcap's default is 262144, so it is set. */
const SNAPLEN = 65535;
const DRAIN_MS = 1500;
/** Longest wait after a replay for the live index to catch up before the agent is stopped (stop seals whatever is left). */
const INDEX_WAIT_MS = 12_000;
/** tcpreplay reaching less than this share of the asked rate means the sender, not the capture, is the limit. */
const REACHED = 0.97;
const TARGET_PPS = 100_000;
const TARGET_RATIO = 0.9;
const MAC_TX = '02:c6:12:01:00:01';
const MAC_RX = '02:c6:12:01:00:02';
const SEED = 20261123;

const SINK_PY = [
  'import signal, socket, sys',
  's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
  's.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)',
  's.bind((sys.argv[1], 5060))',
  "print('sink ready', flush=True)",
  'signal.pause()',
].join('\n');

class SetupError extends Error {}

function setupFail(msg: string): never {
  throw new SetupError(msg);
}

interface ToolAttempt {
  attempt: number;
  sent: number;
  achievedPps: number;
  /** tcpreplay reached the asked rate (within REACHED): only then does the attempt count for or against the tool. */
  senderReached: boolean;
  captured: number;
  /** The tool's own drop counters; null when ours printed no current stats line. */
  dropped: number | null;
  ifDropped: number | null;
  /** sent - captured (negative: packets nobody sent were captured). */
  missing: number;
  lossless: boolean;
  cpuMs: number;
  ms: number;
  tcpreplay: TcpreplayResult;
  /** Tool-specific details. */
  detail: Record<string, unknown>;
}

/** One case of the bench: what is replayed, how both tools are set up for it, at which rates. */
interface CaseSetup {
  name: 'sip' | 'rtp';
  title: string;
  describe: string;
  file: ReplayFile;
  /** BPF filter, the agent's own for its options (given to dumpcap verbatim). */
  filter: string;
  rtpPorts: Array<[number, number]>;
  agentArgs: string[];
  rates: number[];
  /** Keep ours's rings (the caller removes them): the RTP case queries one. */
  keepRings: boolean;
}

interface RateStep {
  rate: number;
  count: number;
  senderShort: boolean;
  dumpcap: ToolAttempt[];
  ours: ToolAttempt[];
}

let net: TestNet | null = null;
let cleaning: Promise<void> | null = null;

async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    if (net) {
      const n = net;
      net = null;
      try {
        await n.destroy();
      } catch (e) {
        process.stderr.write(`bench:capture: cleanup: ${(e as Error).message}\n`);
      }
    }
    rmSync(RUN_DIR, { recursive: true, force: true });
  })();
  return cleaning;
}

function cpuMsOf(pid: number): { total: number; threads: Record<string, number> } {
  // utime + stime in clock ticks (USER_HZ = 100 on Linux): fields 14 and 15, after the ")" that ends comm.
  const ticks = (stat: string) => {
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  };
  const threads: Record<string, number> = {};
  let total = 0;
  try {
    total = ticks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        // Node 20 names every thread "node"; the main thread's id is the pid.
        const key = Number(tid) === pid ? 'main' : `${comm}#${tid}`;
        threads[key] = ticks(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      } catch {
        // thread gone
      }
    }
  } catch {
    // process gone
  }
  return { total, threads };
}

function cpuDelta(a: ReturnType<typeof cpuMsOf>, b: ReturnType<typeof cpuMsOf>): { total: number; threads: Record<string, number> } {
  const threads: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.threads)) {
    const d = v - (a.threads[k] ?? 0);
    if (d >= 10) threads[k] = d;
  }
  return { total: b.total - a.total, threads };
}

async function capinfosCount(files: string[]): Promise<number> {
  if (files.length === 0) return 0;
  const r = await run('capinfos', ['-c', '-M', ...files], { timeoutMs: 120_000 });
  return parseCapinfosCount(r.stdout, files.length);
}

/** Machine CPU over the last replay: with 2 cores, idle near 0 means the tool measured was short of CPU. */
let lastReplayMachine: { busyMs: number; idleMs: number; stealMs: number } = { busyMs: 0, idleMs: 0, stealMs: 0 };

async function replay(txIf: string, file: ReplayFile, rate: number, count: number): Promise<TcpreplayResult> {
  const m0 = machineCpu();
  try {
    return await replayOnce(txIf, file, rate, count);
  } finally {
    lastReplayMachine = machineDelta(m0, machineCpu());
  }
}

async function replayOnce(txIf: string, file: ReplayFile, rate: number, count: number): Promise<TcpreplayResult> {
  const loops = Math.ceil(count / file.packets);
  const r = await net!.exec('tx', 'tcpreplay', ['-i', txIf, `--pps=${rate}`, `--limit=${count}`, `--loop=${loops}`, '--preload-pcap', file.path], {
    timeoutMs: Math.ceil((count / rate) * 4000) + 30_000,
  });
  return parseTcpreplay(r.stdout + r.stderr);
}

async function runDumpcap(c: CaseSetup, ifname: string, rate: number, count: number, attempt: number): Promise<ToolAttempt> {
  const t0 = nowMs();
  const out = join(RUN_DIR, `dumpcap-${c.name}-${rate}-${attempt}.pcap`);
  rmSync(out, { force: true });
  const d = await net!.spawn('rx', 'dumpcap', ['-i', ifname, '-f', c.filter, '-w', out, '-P', '-B', String(BUFFER_MIB), '-s', String(SNAPLEN)], { stopGraceMs: 20_000 });
  try {
    await d.waitForOutput(/Capturing on/, 20_000);
    await sleep(300);
    const c0 = cpuMsOf(d.pid);
    const tr = await replay('l0', c.file, rate, count);
    await sleep(DRAIN_MS);
    const c1 = cpuMsOf(d.pid);
    const status = await d.stop(20_000);
    const stats: DumpcapStats | null = parseDumpcapStats(d.stderr());
    if (!stats) throw new Error(`dumpcap printed no drop report (exit ${status.code ?? status.signal}): ${d.stderr().slice(-800)}`);
    const captured = await capinfosCount([out]);
    const sent = tr.successful;
    const cpu = cpuDelta(c0, c1);
    return {
      attempt,
      sent,
      achievedPps: tr.pps,
      senderReached: tr.pps >= rate * REACHED,
      captured,
      dropped: stats.dropped,
      ifDropped: stats.ifDropped,
      missing: sent - captured,
      lossless: captured === sent && stats.dropped === 0 && stats.ifDropped === 0,
      cpuMs: cpu.total,
      ms: nowMs() - t0,
      tcpreplay: tr,
      detail: { ...stats, exit: status.code ?? status.signal, machineDuringReplay: lastReplayMachine, loadavg1: round(loadavg()[0], 2) },
    };
  } finally {
    await d.stop(5000).catch(() => undefined);
    rmSync(out, { force: true });
  }
}

interface RingCheck {
  segments: number;
  packets: number;
  messages: number;
  rebuilt: number;
  notes: string[];
}

/** Flows in the ring's sealed indexes (agent/index/flows.ts) and the packets they list. */
function flowsOf(ring: string): { flows: number; flowPackets: number; segmentsWithFlows: number } {
  let flows = 0;
  let flowPackets = 0;
  let segmentsWithFlows = 0;
  for (const seg of listSegments(ring)) {
    const ix = SealedIndex.open(seg.indexPath);
    if (!ix) continue;
    try {
      const t = ix.flowTable();
      if (!t) continue;
      segmentsWithFlows++;
      flows += t.length;
      for (let i = 0; i < t.length; i++) flowPackets += t.packets(i);
    } finally {
      ix.close();
    }
  }
  return { flows, flowPackets, segmentsWithFlows };
}

async function runOurs(c: CaseSetup, ifname: string, rate: number, count: number, attempt: number): Promise<ToolAttempt> {
  const t0 = nowMs();
  const file = c.file;
  const ring = join(RUN_DIR, `ours-${c.name}-${rate}-${attempt}`);
  rmSync(ring, { recursive: true, force: true });
  mkdirSync(ring, { recursive: true });
  const args = [BIN, 'agent', '--log-format', 'json', '--ring', ring, '-i', ifname, '--stats-interval', '1', '--ring-size', '32G', '--segment-size', '64M', '--min-free', '0', ...c.agentArgs];
  const a: DaemonHandle = await net!.spawn('rx', process.execPath, args, { cwd: ROOT, stopGraceMs: 60_000 });
  const probe = new IndexLagProbe(ring);
  const samples: LagSample[] = [];
  let sampler: NodeJS.Timeout | null = null;
  try {
    await waitForRecord(a, (r) => r.msg === 'capturing', 30_000, 'the agent capturing');
    await sleep(300);
    const c0 = cpuMsOf(a.pid);
    // The lag probe reads the index journal; during the replay it would take
    // CPU from the tool measured (2 cores, one of them tcpreplay's), so it
    // looks only afterwards: its first sample is the lag at the replay's end.
    if (process.env.BENCH_LAG_DURING_REPLAY === '1') sampler = setInterval(() => samples.push(probe.sample()), 250);
    const tr = await replay('l0', file, rate, count);
    const endAt = nowMs();
    const cReplay = cpuMsOf(a.pid);
    const sent = tr.successful;
    // Drain: until the live index has caught up with the segment (bounded),
    // then until a stats line printed after that (the agent prints them from
    // its main thread, the one that indexes, so none come while it is busy).
    let caughtUpMs: number | null = null;
    const firstAfter = samples.length;
    for (;;) {
      const waited = nowMs() - endAt;
      const s = probe.sample();
      samples.push(s);
      if (s.lagBytes === 0 && waited >= 300) {
        caughtUpMs = waited;
        break;
      }
      if (waited > INDEX_WAIT_MS) break;
      await sleep(200);
    }
    const linesAtCatchUp = parseAgentStats(a.stderr(), ifname).length;
    const waitFrom = nowMs();
    while (nowMs() - waitFrom < Math.max(DRAIN_MS, 2500)) {
      const lines = parseAgentStats(a.stderr(), ifname);
      const fresh = lines.slice(linesAtCatchUp);
      // Two fresh lines: the second reflects worker stats sent after the first was printed.
      if (fresh.length >= 2 || (fresh.length >= 1 && fresh[0].packets >= sent)) break;
      await sleep(100);
    }
    if (sampler) clearInterval(sampler);
    sampler = null;
    const c1 = cpuMsOf(a.pid);
    const all = parseAgentStats(a.stderr(), ifname);
    // Only a line printed after the index caught up is known to be current.
    const last: AgentStatsLine | null = all.length > linesAtCatchUp ? all[all.length - 1] : null;
    const stopStart = nowMs();
    const status = await a.stop(60_000);
    const stopMs = nowMs() - stopStart;
    const sealed = recordsOf(a.stderr()).some((r) => r.msg === 'stopped; ring indexes sealed');
    const check = JSON.parse((await run(process.execPath, [BIN, 'ring', 'check', '--ring', ring, '--json'], { timeoutMs: 120_000, cwd: ROOT })).stdout) as RingCheck;
    const segs = listSegments(ring).map((s) => s.path);
    const captured = await capinfosCount(segs);
    const flows = flowsOf(ring);
    const cpu = cpuDelta(c0, c1);
    const maxLag = Math.max(0, ...samples.map((s) => s.lagBytes));
    const lagAtReplayEnd = samples[firstAfter]?.lagBytes ?? 0;
    const indexed = check.packets === captured && check.rebuilt === 0;
    return {
      attempt,
      sent,
      achievedPps: tr.pps,
      senderReached: tr.pps >= rate * REACHED,
      captured,
      dropped: last ? last.dropped : null,
      ifDropped: last ? last.ifDropped : null,
      missing: sent - captured,
      lossless: captured === sent && (last?.dropped ?? 0) === 0 && (last?.ifDropped ?? 0) === 0,
      cpuMs: cpu.total,
      ms: nowMs() - t0,
      tcpreplay: tr,
      detail: {
        exit: status.code ?? status.signal,
        sealedMessage: sealed,
        lastStats: last,
        statsLines: all.length,
        statsLinesDuringReplayAndCatchUp: linesAtCatchUp,
        replayToExitMs: round(nowMs() - endAt, 0),
        segments: segs.length,
        ringCheckPackets: check.packets,
        ringCheckMessages: check.messages,
        ringCheckRebuilt: check.rebuilt,
        ringCheckNotes: check.notes,
        indexed,
        ...flows,
        // Every non-SIP packet (the RTP) is in a flow of a sealed index, as `--rtp` reads it.
        flowsCoverRtp: flows.flowPackets === captured - check.messages,
        ring: c.keepRings ? ring : null,
        maxIndexLagBytes: maxLag,
        indexLagAtReplayEndBytes: lagAtReplayEnd,
        indexCaughtUpMsAfterReplay: caughtUpMs === null ? null : round(caughtUpMs, 0),
        // Packets indexed per second over the replay and the catch-up after it.
        indexPps: caughtUpMs === null ? null : round(captured / (tr.seconds + caughtUpMs / 1000), 0),
        stopMs: round(stopMs, 0),
        cpuThreadsMs: cpu.threads,
        cpuDuringReplay: cpuDelta(c0, cReplay),
        machineDuringReplay: lastReplayMachine,
        loadavg1: round(loadavg()[0], 2),
      },
    };
  } finally {
    if (sampler) clearInterval(sampler);
    await a.stop(10_000).catch(() => undefined);
    if (!c.keepRings) rmSync(ring, { recursive: true, force: true });
  }
}

interface ProbeResult {
  mode: 'agent' | 'capture';
  rate: number;
  sent: number;
  achievedPps: number;
  captured: number;
  missing: number;
  /** The engine's final counters (after the worker's last read). */
  received: number;
  dropped: number;
  ifDropped: number;
  packets: number;
  lostPackets: number;
  statsEvents: number;
  maxStatsGapMs: number;
  loopDelayMaxMs: number;
  loopDelayP99Ms: number;
  stopMs: number;
  cpuMs: number;
  cpuThreadsMs: Record<string, number>;
  cpuDuringReplay: { total: number; threads: Record<string, number> };
  machineDuringReplay: { busyMs: number; idleMs: number; stealMs: number };
  lossless: boolean;
}

/**
 * Diagnosis, not a measurement of the tool: the agent's code in-process
 * (same options as the CLI run) or its capture engine without the indexer,
 * printing the final drop counters the CLI does not print.
 */
async function runProbe(c: CaseSetup, mode: 'agent' | 'capture', ifname: string, rate: number, count: number): Promise<ProbeResult> {
  const ring = join(RUN_DIR, `probe-${c.name}-${mode}-${rate}`);
  rmSync(ring, { recursive: true, force: true });
  mkdirSync(ring, { recursive: true });
  const p = await net!.spawn('rx', process.execPath, [join(__dirname, 'probe.js'), mode, ring, ifname, ...(c.rtpPorts.length ? [c.rtpPorts.map(([lo, hi]) => `${lo}-${hi}`).join(',')] : [])], { cwd: ROOT, stopGraceMs: 90_000 });
  try {
    await p.waitForOutput(/probe ready/, 30_000);
    await sleep(300);
    const c0 = cpuMsOf(p.pid);
    const tr = await replay('l0', c.file, rate, count);
    const cReplay = cpuMsOf(p.pid);
    await sleep(DRAIN_MS);
    const c1 = cpuMsOf(p.pid);
    const status = await p.stop(90_000);
    const line = p.stdout().split('\n').find((l) => l.startsWith('{'));
    if (!line) throw new Error(`probe ${mode} printed no result (exit ${status.code ?? status.signal}): ${p.stderr().slice(-800)}`);
    const r = JSON.parse(line) as Omit<ProbeResult, 'rate' | 'sent' | 'achievedPps' | 'captured' | 'missing' | 'cpuMs' | 'cpuThreadsMs' | 'cpuDuringReplay' | 'machineDuringReplay' | 'lossless'>;
    const captured = await capinfosCount(listSegments(ring).map((x) => x.path));
    const cpu = cpuDelta(c0, c1);
    const sent = tr.successful;
    return {
      ...r,
      mode,
      rate,
      sent,
      achievedPps: round(tr.pps, 0),
      captured,
      missing: sent - captured,
      cpuMs: cpu.total,
      cpuThreadsMs: cpu.threads,
      cpuDuringReplay: cpuDelta(c0, cReplay),
      machineDuringReplay: lastReplayMachine,
      lossless: captured === sent && r.dropped === 0 && r.ifDropped === 0,
    };
  } finally {
    await p.stop(10_000).catch(() => undefined);
    rmSync(ring, { recursive: true, force: true });
  }
}

function probeCell(r: ProbeResult): string {
  return `${r.lossless ? 'LOSSLESS' : 'LOSSY   '} ${r.captured} captured, missing ${r.missing}; final pcap_stats ${r.dropped} dropped, ${r.ifDropped} if-dropped; worker wrote ${r.packets}, write-lost ${r.lostPackets}; main thread: event-loop delay max ${r.loopDelayMaxMs} ms, longest gap between worker stats messages ${r.maxStatsGapMs} ms; stop ${r.stopMs} ms; cpu ${(r.cpuMs / 1000).toFixed(1)} s (main ${((r.cpuThreadsMs.main ?? 0) / 1000).toFixed(1)} s)`;
}

type Verdict = 'pass' | 'fail' | 'uncounted';

/**
 * A tool's result at one rate. Attempts where tcpreplay fell short of the
 * rate do not count either way (the sender, not the capture, set the pace).
 * strict: the first counted attempt decides; any: one lossless counted attempt is enough.
 */
function verdict(attempts: ToolAttempt[], mode: 'strict' | 'any'): Verdict {
  const counted = attempts.filter((a) => a.senderReached);
  if (counted.length === 0) return 'uncounted';
  if (mode === 'strict') return counted[0].lossless ? 'pass' : 'fail';
  return counted.some((a) => a.lossless) ? 'pass' : 'fail';
}

/** Highest rate at which the tool passed, having passed every lower rate. */
function highestLossless(steps: RateStep[], tool: 'dumpcap' | 'ours', mode: 'strict' | 'any'): number {
  let best = 0;
  for (const s of steps) {
    if (verdict(s[tool], mode) !== 'pass') break;
    best = s.rate;
  }
  return best;
}

function fmtK(n: number): string {
  return n >= 1000 ? `${round(n / 1000, 1)}k` : String(n);
}

function attemptCell(a: ToolAttempt, ours: boolean): string {
  const idx = ours ? (a.detail.indexed ? 'idx ok' : 'IDX MISMATCH') : '';
  const lag = ours ? `, index ${((a.detail.indexLagAtReplayEndBytes as number) / 2 ** 20).toFixed(1)} MiB behind at replay end` : '';
  const drops = a.dropped === null ? 'drop counters: no current stats line' : `${String(a.dropped).padStart(6)} dropped, ${String(a.ifDropped)} if-dropped`;
  return `${a.lossless ? 'LOSSLESS' : 'LOSSY   '} ${String(a.captured).padStart(7)} captured, ${drops}, missing ${a.missing}, cpu ${(a.cpuMs / 1000).toFixed(1)}s${ours ? `, ${idx}${lag}` : ''}`;
}

interface CaseResult {
  /** tcpreplay --topspeed on the same link with nothing capturing: the most the sender can offer here now. */
  topspeed: { pps: number; mbps: number; packets: number };
  steps: RateStep[];
  probes: ProbeResult[];
  stopReason: string;
  notes: string[];
}

/** Rising rates until the sender falls short, both tools lose packets, or the case's time is up; then the diagnosis of ours. */
async function ladder(c: CaseSetup, rxIf: string, caseStarted: number, onOurs: (a: ToolAttempt, rate: number) => void): Promise<CaseResult> {
  const steps: RateStep[] = [];
  const notes: string[] = [];
  let dumpcapFailed = false;
  let oursFailed = false;
  let stopReason = 'all rates tested';
  // The sender's ceiling first (nothing capturing): rungs above what it reached cannot count for either tool, and
  // a rung just under it finds the highest rate that can be measured here.
  const topCount = Math.min(MAX_PACKETS, 300_000);
  progress(`${c.name}: tcpreplay --topspeed, ${topCount} packets, nothing capturing`);
  const tt = await net!.exec('tx', 'tcpreplay', ['-i', 'l0', '--topspeed', `--limit=${topCount}`, `--loop=${Math.ceil(topCount / c.file.packets)}`, '--preload-pcap', c.file.path], { timeoutMs: 120_000 });
  const top = parseTcpreplay(tt.stdout + tt.stderr);
  const topspeed = { pps: Math.round(top.pps), mbps: round(top.mbps, 1), packets: top.successful };
  const ceiling = Math.floor((top.pps * 0.9) / 1000) * 1000;
  const rates = c.rates.filter((r) => r < ceiling);
  if (ceiling > (rates.at(-1) ?? 0) && ceiling >= 1000) rates.push(ceiling);
  notes.push(`tcpreplay --topspeed alone reached ${topspeed.pps} pps (${topspeed.mbps} Mbit/s of frames); rates tested: ${rates.join(', ')}`);
  progress(`  ${notes.at(-1)}`);
  for (const rate of rates) {
    const elapsed = (nowMs() - caseStarted) / 1000;
    if (elapsed > DEADLINE_S) {
      stopReason = `time budget: ${elapsed.toFixed(0)} s used, no new rate after ${DEADLINE_S} s`;
      break;
    }
    const count = Math.min(MAX_PACKETS, Math.round(rate * SECONDS));
    const step: RateStep = { rate, count, senderShort: false, dumpcap: [], ours: [] };
    steps.push(step);
    for (const tool of ['dumpcap', 'ours'] as const) {
      for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
        progress(`${c.name}: ${fmtK(rate)} pps (${fmtMbps(c, rate)}), ${count} packets: ${tool}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
        const a = tool === 'dumpcap' ? await runDumpcap(c, rxIf, rate, count, attempt) : await runOurs(c, rxIf, rate, count, attempt);
        step[tool].push(a);
        if (tool === 'ours') onOurs(a, rate);
        progress(`  sent ${a.sent} at ${Math.round(a.achievedPps)} pps; ${attemptCell(a, tool === 'ours')}`);
        if (a.achievedPps < rate * REACHED) step.senderShort = true;
        if (a.lossless && a.senderReached) break;
      }
    }
    if (verdict(step.dumpcap, 'any') === 'fail') dumpcapFailed = true;
    if (verdict(step.ours, 'any') === 'fail') oursFailed = true;
    if (step.senderShort) {
      const got = Math.min(...[...step.dumpcap, ...step.ours].map((a) => a.achievedPps));
      stopReason = `tcpreplay reached only ${Math.round(got)} pps of the ${rate} asked: the sender is the limit from here`;
      notes.push(stopReason);
      break;
    }
    if (dumpcapFailed && oursFailed) {
      stopReason = `both tools have lost packets (dumpcap at ${fmtK(steps.find((s) => verdict(s.dumpcap, 'any') === 'fail')!.rate)}, ours at ${fmtK(steps.find((s) => verdict(s.ours, 'any') === 'fail')!.rate)} pps)`;
      break;
    }
  }

  // ---- where ours loses packets: the same code with final counters, and the capture engine without indexing
  const probes: ProbeResult[] = [];
  const firstLossy = steps.find((st) => st.ours.some((a) => !a.lossless));
  if (firstLossy && process.env.BENCH_DIAGNOSE !== '0') {
    const diagRates = [...new Set([firstLossy.rate, steps.at(-1)!.rate])];
    for (const rate of diagRates) {
      const step = steps.find((st) => st.rate === rate)!;
      for (const mode of ['agent', 'capture'] as const) {
        if ((nowMs() - caseStarted) / 1000 > DEADLINE_S + 90) {
          notes.push(`diagnosis at ${rate} pps (${mode}) skipped: time budget`);
          continue;
        }
        progress(`${c.name}: diagnosis: ${fmtK(rate)} pps, ${step.count} packets: ${mode === 'agent' ? 'agent code in-process (capture + indexing)' : 'capture engine alone (no indexing)'}`);
        const r = await runProbe(c, mode, rxIf, rate, step.count);
        probes.push(r);
        progress(`  ${probeCell(r)}`);
      }
    }
  }
  return { topspeed, steps, probes, stopReason, notes };
}

/** Mbit/s of frames (Ethernet header to end of payload, as on the veth) at `pps` of the case's replay file. */
function mbpsAt(c: CaseSetup, pps: number): number {
  return (pps * c.file.meanFrame * 8) / 1e6;
}

function fmtMbps(c: CaseSetup, pps: number): string {
  return `${Math.round(mbpsAt(c, pps))} Mbit/s`;
}

function caseLines(c: CaseSetup, r: CaseResult): string[] {
  const lines: string[] = [];
  const mix = Object.entries(c.file.kinds).sort((a, b) => b[1] - a[1]);
  const rtpShare = (c.file.kinds.RTP ?? 0) / c.file.packets;
  lines.push(`bench:capture ${c.name} — per rate (each tool alone on the link; dumpcap first, then ours)`);
  lines.push(`  ${c.describe}`);
  lines.push(`  replay file: ${c.file.packets} packets, ${c.file.minFrame}-${c.file.maxFrame} B (mean ${c.file.meanFrame.toFixed(0)} B)${rtpShare > 0 ? `, ${(rtpShare * 100).toFixed(1)}% RTP; ${mix.slice(0, 6).map(([k, n]) => `${k} ${n}`).join(', ')}` : ''}`);
  lines.push(`  both: same BPF filter (the agent's${c.rtpPorts.length ? ` with --rtp-ports ${c.rtpPorts.map(([lo, hi]) => `${lo}-${hi}`).join(',')}` : ' default'}), ${BUFFER_MIB} MiB kernel buffer, snaplen ${SNAPLEN}; ours = tracefleet agent with live indexing, 64 MiB segments`);
  for (const s of r.steps) {
    lines.push('');
    lines.push(`  ${fmtK(s.rate)} pps (${fmtMbps(c, s.rate)}) × ${s.count} packets${s.senderShort ? `  (tcpreplay fell short of this rate in some attempts: those do not count)` : ''}`);
    for (const tool of ['dumpcap', 'ours'] as const) {
      for (const a of s[tool]) {
        lines.push(`    ${tool.padEnd(7)}#${a.attempt} sent ${String(a.sent).padStart(7)} @ ${String(Math.round(a.achievedPps)).padStart(6)} pps${a.senderReached ? ' ' : '*'}: ${attemptCell(a, tool === 'ours')}`);
        if (tool === 'ours') {
          const d = a.detail;
          lines.push(
            `              ring check ${d.ringCheckPackets} packets / capinfos ${a.captured} (${d.segments} segments, ${d.ringCheckMessages} SIP messages${d.ringCheckRebuilt ? `, ${d.ringCheckRebuilt} REBUILT` : ''}${d.flows ? `, ${d.flows} RTP/UDP flows holding ${d.flowPackets} packets${d.flowsCoverRtp ? '' : ' (NOT every non-SIP packet)'}` : ''}); index caught up ${d.indexCaughtUpMsAfterReplay === null ? `not within ${INDEX_WAIT_MS}` : d.indexCaughtUpMsAfterReplay} ms after replay${d.indexPps ? ` (indexing ${d.indexPps} pkt/s)` : ''}; stats lines during replay+catch-up ${d.statsLinesDuringReplayAndCatchUp}; stop+seal ${d.stopMs} ms`,
          );
        }
      }
    }
  }
  lines.push('');
  lines.push(`  sender alone (tcpreplay --topspeed, nothing capturing): ${r.topspeed.pps} pps, ${r.topspeed.mbps} Mbit/s`);
  lines.push(`  stopped rising: ${r.stopReason}`);
  const uncounted = uncountedOf(r.steps);
  if (uncounted.length) lines.push(`  * tcpreplay fell short of the asked rate (not counted): ${uncounted.join('; ')}`);
  if (r.probes.length) {
    lines.push('');
    lines.push('  diagnosis of ours (not the measured tool: the agent code in-process with its final drop counters, and the capture engine without the indexer):');
    for (const p of r.probes) lines.push(`    ${fmtK(p.rate)} pps ${p.mode.padEnd(7)} sent ${p.sent} @ ${p.achievedPps} pps: ${probeCell(p)}`);
  }
  return lines;
}

function uncountedOf(steps: RateStep[]): string[] {
  return steps.flatMap((s) =>
    (['dumpcap', 'ours'] as const).flatMap((t) =>
      s[t].filter((a) => !a.senderReached).map((a) => `${t} #${a.attempt} at ${fmtK(s.rate)}: tcpreplay reached ${Math.round(a.achievedPps)} pps; ${a.lossless ? 'lossless' : `lost ${a.missing}`} (not counted)`),
    ),
  );
}

function stepsJson(steps: RateStep[]): unknown {
  return steps.map((s) => ({
    rate: s.rate,
    count: s.count,
    senderShort: s.senderShort,
    dumpcap: s.dumpcap.map(({ tcpreplay, ...rest }) => ({ ...rest, achievedPps: round(rest.achievedPps, 0), ms: round(rest.ms, 0), tcpreplay })),
    ours: s.ours.map(({ tcpreplay, ...rest }) => ({ ...rest, achievedPps: round(rest.achievedPps, 0), ms: round(rest.ms, 0), tcpreplay })),
  }));
}

/** The lossless figures of one case; `k` prefixes the JSON keys (the SIP case keeps the keys it always had). */
function addLosslessFigures(f: Figures, c: CaseSetup, r: CaseResult, k: string): { ratio: number; dumpcapCeilingFound: boolean; oursCeilingFound: boolean; oStrict: number } {
  const dStrict = highestLossless(r.steps, 'dumpcap', 'strict');
  const oStrict = highestLossless(r.steps, 'ours', 'strict');
  const ratio = dStrict > 0 ? oStrict / dStrict : NaN;
  const dumpcapCeilingFound = r.steps.some((s) => verdict(s.dumpcap, 'strict') === 'fail');
  const oursCeilingFound = r.steps.some((s) => verdict(s.ours, 'strict') === 'fail');
  const topTested = r.steps.at(-1);
  f.section(`${c.title}: highest lossless rate (lossless at it and every lower rate; first attempt where tcpreplay reached the rate)`);
  f.add(`${k}dumpcap_lossless_pps`, 'dumpcap', dStrict, 'pps', 0);
  f.add(`${k}ours_lossless_pps`, `ours (capture + indexing${c.rtpPorts.length ? ', RTP flows included' : ''})`, oStrict, 'pps', 0);
  if (c.name === 'rtp') {
    f.add(`${k}dumpcap_lossless_mbps`, 'dumpcap', mbpsAt(c, dStrict), 'Mbit/s', 0);
    f.add(`${k}ours_lossless_mbps`, 'ours', mbpsAt(c, oStrict), 'Mbit/s', 0);
  }
  f.add(`${k}ratio_ours_dumpcap`, 'ours / dumpcap', ratio, '', 3);
  f.add(`${k}dumpcap_ceiling_found`, 'dumpcap lost packets within the tested range', dumpcapCeilingFound);
  f.add(`${k}ours_ceiling_found`, 'ours lost packets within the tested range', oursCeilingFound);
  f.add(`${k}top_rate_tested_pps`, 'top rate tested', topTested ? topTested.rate : 0, 'pps', 0);
  if (c.name === 'rtp') f.add(`${k}top_rate_tested_mbps`, 'top rate tested', topTested ? mbpsAt(c, topTested.rate) : 0, 'Mbit/s', 0);
  f.extra(`${k}uncounted_attempts`, uncountedOf(r.steps));
  f.section(`${c.title}: same, counting a lossless retry (noise check)`);
  f.add(`${k}dumpcap_lossless_pps_any_attempt`, 'dumpcap', highestLossless(r.steps, 'dumpcap', 'any'), 'pps', 0);
  f.add(`${k}ours_lossless_pps_any_attempt`, 'ours', highestLossless(r.steps, 'ours', 'any'), 'pps', 0);
  const idxRates = r.steps.flatMap((st) => st.ours.map((a) => a.detail.indexPps as number | null)).filter((x): x is number => x !== null);
  f.section(`${c.title}: indexing (ours)`);
  f.add(`${k}ours_index_pps_median`, 'live indexing throughput (replay + catch-up), median', idxRates.length ? median(idxRates) : null, 'pkt/s', 0);
  f.add(`${k}ours_index_covers_capture`, 'index covers every captured packet (all runs)', r.steps.every((st) => st.ours.every((a) => a.detail.indexed === true)));
  if (c.name === 'rtp') f.add(`${k}ours_flows_cover_rtp`, 'every RTP packet is in a flow of a sealed index (all runs)', r.steps.every((st) => st.ours.every((a) => a.detail.flowsCoverRtp === true)));
  if (r.probes.length) {
    f.section(`${c.title}: diagnosis (agent code in-process / capture engine alone; final pcap_stats)`);
    for (const p of r.probes) {
      f.add(`${k}diag_${p.mode}_${p.rate}_missing`, `${fmtK(p.rate)} pps ${p.mode === 'agent' ? 'agent (capture + index)' : 'capture only'}: missing / kernel-dropped`, `${p.missing} / ${p.dropped}`);
    }
  }
  f.extra(`${k}stop_reason`, r.stopReason);
  f.extra(`${k}sender_topspeed`, r.topspeed);
  f.extra(`${k}diagnosis`, r.probes);
  f.extra(`${k}notes`, r.notes);
  f.extra(`${k}steps`, stepsJson(r.steps));
  return { ratio, dumpcapCeilingFound, oursCeilingFound, oStrict };
}

interface RtpQueryResult {
  rate: number;
  attempt: number;
  lossless: boolean;
  segments: number;
  ringPackets: number;
  call: MixCall;
  expectedPackets: number;
  inProcessMs: number;
  inProcessPackets: number;
  cliMs: number;
  cliRuns: number[];
  tsharkMs: number;
  tsharkPerSegmentMs: number[];
  tsharkFilter: string;
  comparison: Comparison;
}

/**
 * One call's `--rtp` on the ring ours captured: in-process (runQuery, as the
 * agent answers a trace) and the whole CLI (`tracefleet query --rtp -o`),
 * against `tshark -Y` on the call's Call-ID and SDP endpoints over each of
 * the same segment files; both results are compared packet for packet.
 */
async function rtpQuery(file: MixFile, kept: { ring: string; rate: number; attempt: number; lossless: boolean; sent: number }): Promise<RtpQueryResult | null> {
  const segs = listSegments(kept.ring).map((s) => s.path);
  // A call the run sent whole, from the middle of what was sent.
  const whole = file.calls.filter((x) => x.lastPacket < kept.sent);
  if (whole.length === 0) return null;
  const call = whole.reduce((best, x) => (Math.abs(x.firstPacket - kept.sent / 2) < Math.abs(best.firstPacket - kept.sent / 2) ? x : best));
  const per = framesPerCall(file.gen.rtpSeconds);
  const now = new Date();
  // In-process, as the agent's trace handler runs it: the first run opens the indexes cold.
  let inProcessPackets = 0;
  const inMs: number[] = [];
  for (let i = 0; i < QUERY_RUNS; i++) {
    const t = nowMs();
    const r = runQuery(kept.ring, buildQuerySpec({ callId: [call.callId], rtp: true, rtpStats: false }, now));
    inProcessPackets = r.packets;
    closeResult(r);
    inMs.push(nowMs() - t);
  }
  // The whole CLI, as a user types it (node start-up included).
  const oursOut = join(RUN_DIR, 'query-ours.pcap');
  const cliRuns: number[] = [];
  for (let i = 0; i < QUERY_RUNS; i++) {
    rmSync(oursOut, { force: true });
    const t = nowMs();
    await run(process.execPath, [BIN, 'query', '--ring', kept.ring, '--call-id', call.callId, '--rtp', '--no-rtp-stats', '-o', oursOut], { timeoutMs: 120_000, cwd: ROOT });
    cliRuns.push(nowMs() - t);
  }
  const filter = `sip.Call-ID == "${call.callId}" || (ip.addr == ${call.caller} && udp.port == ${call.callerPort} && ip.addr == ${call.media} && udp.port == ${call.mediaPort})`;
  const tsharkPerSegmentMs: number[] = [];
  const theirs: Pkt[] = [];
  for (const [i, seg] of segs.entries()) {
    const out = join(RUN_DIR, `query-tshark-${i}.pcap`);
    const t = nowMs();
    await run('tshark', ['-n', '-r', seg, '-Y', filter, '-F', 'nsecpcap', '-w', out], { timeoutMs: 300_000 });
    tsharkPerSegmentMs.push(nowMs() - t);
    theirs.push(...(await readPackets(out)));
    rmSync(out, { force: true });
  }
  const comparison = comparePackets(await readPackets(oursOut), theirs, 'ours', 'tshark');
  rmSync(oursOut, { force: true });
  return {
    rate: kept.rate,
    attempt: kept.attempt,
    lossless: kept.lossless,
    segments: segs.length,
    ringPackets: await capinfosCount(segs),
    call,
    expectedPackets: per.sip + per.rtp,
    inProcessMs: median(inMs),
    inProcessPackets,
    cliMs: median(cliRuns),
    cliRuns: cliRuns.map((x) => round(x, 1)),
    tsharkMs: tsharkPerSegmentMs.reduce((a, b) => a + b, 0),
    tsharkPerSegmentMs: tsharkPerSegmentMs.map((x) => round(x, 0)),
    tsharkFilter: filter,
    comparison,
  };
}

async function main(): Promise<void> {
  const started = nowMs();
  // Preconditions: a failure here is a setup error (non-zero exit).
  if (MIX !== 'sip' && MIX !== 'rtp' && MIX !== 'both') setupFail(`BENCH_CAPTURE_MIX=${MIX}: give sip, rtp or both`);
  if (!isRoot()) setupFail('needs root (network namespaces, packet capture); run as root');
  for (const c of ['ip', 'tcpreplay', 'dumpcap', 'capinfos', 'python3', ...(MIX !== 'sip' ? ['tshark'] : [])]) if (!haveCommand(c)) setupFail(`${c} is not installed (npm run setup installs it)`);
  if (!existsSync(join(ROOT, 'dist', 'bin', 'main.js'))) setupFail('not built: run npm run build');
  if (!existsSync(join(ROOT, 'agent', 'capture', 'native', 'build', 'Release', 'tfcapture.node'))) setupFail('libpcap addon not built: run npm run build');
  if (RATES.length === 0 || RTP_RATES.length === 0) setupFail('BENCH_RATES or BENCH_RTP_RATES gives no rate');
  mkdirSync(OUT, { recursive: true });
  const fs = statfsSync(OUT);
  const freeGiB = (fs.bavail * fs.bsize) / 2 ** 30;
  // Replay files, a ring and a dumpcap file at the largest count (the RTP case keeps a second ring for its query).
  const needGiB = (MAX_PACKETS * 1100) / 2 ** 30 + (MIX !== 'sip' ? (MAX_PACKETS * 300 * 3) / 2 ** 30 : 0) + 1;
  if (freeGiB < needGiB) setupFail(`${freeGiB.toFixed(1)} GiB free under ${OUT}; the bench needs about ${needGiB.toFixed(1)} GiB`);
  const load0 = loadavg();
  const cases = MIX === 'both' ? 2 : 1;

  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`bench:capture: ${sig}: removing the namespaces and stopping what was started\n`);
    void cleanup().finally(() => process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15)));
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  // Last resort: every step is bounded, but the whole run must not outlive its budget by much either.
  setTimeout(() => {
    process.stderr.write(`bench:capture: still running after ${10 * cases} minutes; giving up\n`);
    void cleanup().finally(() => process.exit(1));
  }, 600_000 * cases).unref();

  progress('making namespaces tx, rx and the veth pair between them');
  net = await TestNet.create({ hosts: ['tx', 'rx'], links: [['tx', 'rx']], ipv6: false });
  const txIf = net.ifname('tx');
  const rxIf = net.ifname('rx');
  if (txIf !== 'l0' || rxIf !== 'l0') setupFail(`unexpected interface names ${txIf}/${rxIf}`);
  // Fixed MACs, so that the cached replay file stays addressed to this pair.
  for (const [host, mac] of [['tx', MAC_TX], ['rx', MAC_RX]] as const) {
    await net.exec(host, 'ip', ['link', 'set', 'dev', 'l0', 'down']);
    await net.exec(host, 'ip', ['link', 'set', 'dev', 'l0', 'address', mac]);
    await net.exec(host, 'ip', ['link', 'set', 'dev', 'l0', 'up']);
  }
  // Nothing of ours may be in the root namespace.
  const rootLinks = (await run('ip', ['-o', 'link', 'show'], { timeoutMs: 15_000 })).stdout;
  if (rootLinks.includes(net.prefix)) setupFail(`a link in the root namespace points into ${net.prefix}*: ${rootLinks}`);
  for (const w of net.warnings) progress(`warning: ${w}`);
  const txAddr = net.addr('tx');
  const rxAddr = net.addr('rx');
  // Static neighbours: no ARP on the link while measuring.
  await net.exec('tx', 'ip', ['neigh', 'replace', rxAddr, 'lladdr', MAC_RX, 'dev', 'l0', 'nud', 'permanent']);
  await net.exec('rx', 'ip', ['neigh', 'replace', txAddr, 'lladdr', MAC_TX, 'dev', 'l0', 'nud', 'permanent']);
  const sink = await net.spawn('rx', 'python3', ['-c', SINK_PY, rxAddr]);
  await sink.waitForOutput(/sink ready/, 15_000);
  const link = `veth in namespaces ${net.ns('tx')} -> ${net.ns('rx')}`;
  mkdirSync(RUN_DIR, { recursive: true });

  const f = new Figures('bench:capture');
  const out: string[] = [];
  let sipSummary: ReturnType<typeof addLosslessFigures> | null = null;
  let sipSteps: RateStep[] = [];

  if (MIX === 'sip' || MIX === 'both') {
    const file = await ensureReplayFile(OUT, { packets: REPLAY_PACKETS, srcMac: MAC_TX, dstMac: MAC_RX, srcIp: txAddr, dstIp: rxAddr, seed: SEED }, progress);
    progress(`replay file ${file.path}${file.cached ? ' (cached)' : ''}: ${file.packets} packets, ${file.minFrame}-${file.maxFrame} bytes, mean ${file.meanFrame.toFixed(0)}`);
    const c: CaseSetup = {
      name: 'sip',
      title: 'SIP',
      describe: `link: ${link}, ${txAddr} -> ${rxAddr} udp 5060; SIP from bench/common/sipgen.ts`,
      file,
      // The agent's default filter for an Ethernet interface (what `agent -i l0` uses), given to dumpcap verbatim.
      filter: defaultCaptureFilter({ vlan: true }),
      rtpPorts: [],
      agentArgs: [],
      rates: RATES,
      keepRings: false,
    };
    const r = await ladder(c, rxIf, nowMs(), () => undefined);
    out.push(...caseLines(c, r), '');
    sipSummary = addLosslessFigures(f, c, r, '');
    sipSteps = r.steps;
    f.extra('config', { rates: RATES, seconds: SECONDS, maxPackets: MAX_PACKETS, attempts: ATTEMPTS, bufferMiB: BUFFER_MIB, snaplen: SNAPLEN, filter: c.filter, drainMs: DRAIN_MS });
    f.extra('replay', { packets: file.packets, minFrame: file.minFrame, maxFrame: file.maxFrame, meanFrame: round(file.meanFrame, 1), kinds: file.kinds });
  }

  if (MIX === 'rtp' || MIX === 'both') {
    // The frames go to addresses neither namespace has: the receiving kernel must drop them unanswered
    // (a new namespace may inherit forwarding from the root one, so it is turned off in rx).
    await net.exec('rx', 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=0']);
    const fwd = (await net.exec('rx', 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
    if (fwd !== '0') setupFail(`ip_forward is ${fwd} in ${net.ns('rx')}: the mixed case's frames would be forwarded`);
    const routed = await net.exec('rx', 'ip', ['route', 'get', `${MIX_NET}.255.3`], { check: false });
    if (routed.code === 0) setupFail(`${net.ns('rx')} has a route to ${MIX_NET}.0.0/16: ${routed.stdout}`);
    const spec: MixSpec = { packets: MAX_PACKETS, srcMac: MAC_TX, dstMac: MAC_RX, seed: SEED, sipShare: 0.1, rtpSeconds: RTP_CALL_SECONDS, concurrentCalls: CONCURRENT_CALLS };
    const file = await ensureRtpMixFile(OUT, spec, progress);
    progress(`mixed replay file ${file.path}${file.cached ? ' (cached)' : ''}: ${file.packets} packets (${file.kinds.RTP ?? 0} RTP), ${file.calls.length} whole calls, mean ${file.meanFrame.toFixed(0)} B`);
    const rtpPorts = [...RTP_CALL_PORTS];
    const portsArg = rtpPorts.map(([lo, hi]) => `${lo}-${hi}`).join(',');
    const c: CaseSetup = {
      name: 'rtp',
      title: 'RTP-heavy (mixed)',
      describe: `link: ${link}; a media server's traffic as a mirror port shows it, addresses in ${MIX_NET}.0.0/16 (neither namespace's: rx drops them after capture): ${CONCURRENT_CALLS} concurrent G.711 calls (bench/common/rtpgen.ts, SDP-announced ports, 20 ms packets of ${RTP_PAYLOAD_BYTES}-byte RTP payloads both ways) and SIP (the calls' own and bench/common/sipgen.ts's)`,
      file,
      filter: defaultCaptureFilter({ vlan: true, rtpPortRanges: rtpPorts }),
      rtpPorts,
      agentArgs: ['--rtp-ports', portsArg],
      rates: RTP_RATES,
      keepRings: true,
    };
    // The ring of ours's highest-rate lossless attempt is kept for the query timing (else its first).
    let kept: { ring: string; rate: number; attempt: number; lossless: boolean; sent: number } | null = null;
    const onOurs = (a: ToolAttempt, rate: number) => {
      const ring = a.detail.ring as string;
      const better = !kept || (a.lossless && a.senderReached && (!kept.lossless || rate >= kept.rate));
      if (better) {
        if (kept) rmSync(kept.ring, { recursive: true, force: true });
        kept = { ring, rate, attempt: a.attempt, lossless: a.lossless && a.senderReached, sent: a.sent };
      } else rmSync(ring, { recursive: true, force: true });
    };
    const r = await ladder(c, rxIf, nowMs(), onOurs);
    out.push(...caseLines(c, r), '');
    addLosslessFigures(f, c, r, 'rtp_');
    f.extra('rtp_config', { rates: RTP_RATES, rtpPorts: portsArg, filter: c.filter, spec });
    f.extra('rtp_replay', { packets: file.packets, minFrame: file.minFrame, maxFrame: file.maxFrame, meanFrame: round(file.meanFrame, 1), kinds: file.kinds, wholeCalls: file.calls.length });
    const k = kept as { ring: string; rate: number; attempt: number; lossless: boolean; sent: number } | null;
    if (k && process.env.BENCH_RTP_QUERY !== '0') {
      progress(`rtp: one call's --rtp on the ring of ours at ${fmtK(k.rate)} pps (attempt ${k.attempt}): in-process, whole CLI, tshark -Y per segment`);
      const q = await rtpQuery(file, k);
      rmSync(k.ring, { recursive: true, force: true });
      if (!q) {
        f.extra('rtp_query', `not timed: no call of the replay file lies whole within the ${k.sent} packets of that run`);
      } else {
        progress(`  ${q.call.callId}: in-process ${q.inProcessMs.toFixed(1)} ms, CLI ${q.cliMs.toFixed(0)} ms, tshark ${q.tsharkMs.toFixed(0)} ms over ${q.segments} segments; ${q.comparison.match ? 'same packets' : 'DIFFERENT packets'} (${q.comparison.countA} / ${q.comparison.countB})`);
        out.push(
          `  --rtp query on the ring of ours at ${fmtK(k.rate)} pps${k.lossless ? ' (lossless)' : ' (no counted lossless run: the first run kept)'}: ${q.ringPackets} packets in ${q.segments} segments; call ${q.call.callId} (${q.call.caller}:${q.call.callerPort} <-> ${q.call.media}:${q.call.mediaPort}, ${q.expectedPackets} packets sent)`,
          `    ours in-process ${q.inProcessMs.toFixed(1)} ms (median of ${QUERY_RUNS}, ${q.inProcessPackets} packets); whole CLI ${q.cliMs.toFixed(0)} ms (median of ${q.cliRuns.join(', ')} ms)`,
          `    tshark -Y '${q.tsharkFilter}' per segment: ${q.tsharkMs.toFixed(0)} ms (${q.tsharkPerSegmentMs.join(' + ')})`,
          `    same packets: ${q.comparison.match ? `yes (${q.comparison.countA})` : `NO: ${q.comparison.details.join('; ')}`}`,
          '',
        );
        f.section(`${c.title}: one call's --rtp on the ring ours captured, against tshark -Y on its Call-ID and SDP endpoints over the same segments`);
        f.add('rtp_query_ring_packets', `ring (${q.segments} segments of ours at ${fmtK(k.rate)} pps)`, q.ringPackets, 'packets', 0);
        f.add('rtp_query_in_process_ms', `ours in-process (median of ${QUERY_RUNS})`, q.inProcessMs, 'ms', 1);
        f.add('rtp_query_cli_ms', `ours whole CLI, tracefleet query --rtp -o (median of ${QUERY_RUNS})`, q.cliMs, 'ms', 0);
        f.add('rtp_query_tshark_ms', 'tshark -Y over every segment', q.tsharkMs, 'ms', 0);
        f.add('rtp_query_ratio_tshark_in_process', 'tshark / ours in-process', q.tsharkMs / q.inProcessMs, '×', 0);
        f.add('rtp_query_ratio_tshark_cli', 'tshark / ours whole CLI', q.tsharkMs / q.cliMs, '×', 1);
        f.add('rtp_query_same_packets', `same packets (ours ${q.comparison.countA}, tshark ${q.comparison.countB}, sent ${q.expectedPackets})`, q.comparison.match && q.comparison.countA === q.expectedPackets && q.inProcessPackets === q.expectedPackets);
        f.extra('rtp_query', { ...q, call: { ...q.call }, comparison: { ...q.comparison } });
      }
    } else if (k) rmSync(k.ring, { recursive: true, force: true });
  }

  process.stdout.write(out.join('\n') + '\n');

  if (sipSummary) {
    const at100k = sipSteps.find((s) => s.rate === TARGET_PPS);
    const noDropsAt100k: boolean | null = at100k && verdict(at100k.ours, 'strict') !== 'uncounted' ? sipSummary.oStrict >= TARGET_PPS : null;
    const ratioOk = Number.isFinite(sipSummary.ratio) ? sipSummary.ratio >= TARGET_RATIO : null;
    f.section('Targets (SIP)');
    f.add('target_no_drops_at_100k', `ours lossless at ${fmtK(TARGET_PPS)} pps (and below)`, noDropsAt100k === null ? 'not measured' : noDropsAt100k ? 'MET' : 'MISSED');
    f.add(
      'target_ratio_0_9',
      `ours ≥ ${TARGET_RATIO} × dumpcap`,
      ratioOk === null
        ? 'n/a (dumpcap lossless at no rate)'
        : `${ratioOk ? 'MET' : 'MISSED'}${
            !sipSummary.dumpcapCeilingFound && !sipSummary.oursCeilingFound
              ? ' (both lossless up to the top rate: neither ceiling reached)'
              : !sipSummary.dumpcapCeilingFound
                ? " (dumpcap never lost a packet: its ceiling is above the top rate tested, so the ratio is an upper bound)"
                : ''
          }`,
    );
  }
  f.section('Run');
  f.add('mix', 'cases (BENCH_CAPTURE_MIX)', MIX);
  f.add('seconds', 'bench time', (nowMs() - started) / 1000, 's', 0);
  f.add('loadavg_start', 'load average at start (1 min)', load0[0], '', 2);
  f.add('loadavg_end', 'load average at end (1 min)', loadavg()[0], '', 2);
  await cleanup();
  f.print();
}

main()
  .then(() => process.exit(0))
  .catch(async (e: Error) => {
    await cleanup();
    process.stderr.write(`bench:capture: ${e instanceof SetupError ? 'setup: ' : ''}${e.stack ?? e.message}\n`);
    process.exit(e instanceof SetupError ? 2 : 1);
  });
