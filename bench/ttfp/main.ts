import { ChildProcess, spawn } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { importCaptures } from '../../agent/index/import';
import type { TraceView } from '../../shared/protocol/client';
import { readPackets } from '../common/pcapcompare';
import { forkBenchAgents, getJson, makeTracerToken, ROOT, startDispatcherProcess, wallNow } from '../common/dispatcher';
import { Figures, median, progress } from '../common/report';
import { generateSipCapture } from '../common/sipgen';

/*
 * Time to first packet: `tracefleet trace --call-id X -o FILE`, the whole
 * CLI process, from its spawn to its exit with the merged PCAP on disk, on a
 * warm dispatcher (its own process, embedded store) with 1, 10 and 100
 * agents. The agents are the real link and trace server
 * (bench/common/agents.ts, several per process) over a small imported ring
 * each, every ring holding the traced call. Each trace is split into
 * phases on its critical path, from real records only, all on this
 * machine's wall clock:
 *
 *   the CLI's `--timing` line (its marks since its own time origin),
 *   the dispatcher's debug log ('trace:run sent', 'trace:done received',
 *   'host result stored' per host) and the trace's finishedAt,
 *   the agents' debug log ('trace begun', 'trace done' per agent),
 *   and the process's spawn and exit as this bench saw them.
 *
 * `node -e 0` is timed interleaved with the traces, so that the figure
 * "excluding Node's own start" is the trace's median less node's median
 * from the same minutes of the same machine.
 *
 * Knobs: BENCH_TTFP_RUNS (measured traces per fleet size, 9),
 * BENCH_TTFP_SIZES (1,10,100).
 */

const OUT = join(ROOT, 'bench-output', 'ttfp');
const BIN = join(ROOT, 'bin', 'tracefleet');
const RUNS = Number(process.env.BENCH_TTFP_RUNS ?? 9);
const WARMUP = 2;
const SIZES = (process.env.BENCH_TTFP_SIZES ?? '1,10,100').split(',').map(Number);
/** Issue 13: one agent, warm dispatcher, excluding Node's own start. */
const TARGET_MS = 300;
const AGENTS_PER_PROCESS = 30;
const TRACE_TIMEOUT_S = 60;
const RING_MB = 1;

function fail(msg: string): never {
  process.stderr.write(`bench:ttfp: ${msg}\n`);
  process.exit(1);
}

const timingLine = z.object({ traceId: z.string(), origin: z.number(), marks: z.record(z.number()) });
type TimingLine = z.infer<typeof timingLine>;

const logRecord = z.object({ time: z.number(), msg: z.string(), traceId: z.string().optional(), host: z.string().optional(), agent: z.string().optional() }).passthrough();
type LogRecord = z.infer<typeof logRecord>;

/** The JSON records of a log file (other lines skipped), by trace id. */
function recordsByTrace(path: string): Map<string, LogRecord[]> {
  const m = new Map<string, LogRecord[]>();
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return m;
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let j: unknown;
    try {
      j = JSON.parse(line);
    } catch {
      continue;
    }
    const r = logRecord.safeParse(j);
    if (!r.success || !r.data.traceId) continue;
    let list = m.get(r.data.traceId);
    if (!list) m.set(r.data.traceId, (list = []));
    list.push(r.data);
  }
  return m;
}

interface CliRun {
  spawnAt: number;
  exitAt: number;
  code: number | null;
  timing: TimingLine;
}

/** Spawns a process and resolves with when it was spawned and when it ended (wall clock), and its stderr. */
function timed(args: string[], env: NodeJS.ProcessEnv): Promise<{ spawnAt: number; exitAt: number; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const spawnAt = wallNow();
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 1_000_000) stderr += d;
    });
    const kill = setTimeout(() => child.kill('SIGKILL'), (TRACE_TIMEOUT_S + 30) * 1000);
    child.once('error', reject);
    child.once('exit', (code) => {
      const exitAt = wallNow();
      clearTimeout(kill);
      // stderr's last bytes may come after 'exit': 'close' has them all.
      child.once('close', () => resolve({ spawnAt, exitAt, code, stderr }));
    });
  });
}

async function traceOnce(url: string, token: string, callId: string, out: string): Promise<CliRun> {
  rmSync(out, { force: true });
  const env = { ...process.env, TRACEFLEET_TOKEN: token, TRACEFLEET_DEBUG: '', XDG_CONFIG_HOME: join(OUT, 'no-config') };
  const r = await timed([BIN, 'trace', '--url', url, '--call-id', callId, '-o', out, '--timing', '--timeout', String(TRACE_TIMEOUT_S)], env);
  const line = r.stderr.split('\n').find((l) => l.startsWith('tracefleet timing: '));
  if (r.code !== 0) fail(`tracefleet trace exited with ${r.code}: ${r.stderr.trim().slice(-2000)}`);
  if (!line) fail(`tracefleet trace printed no timing line: ${r.stderr.trim().slice(-2000)}`);
  const t = timingLine.safeParse(JSON.parse(line.slice('tracefleet timing: '.length)));
  if (!t.success) fail(`bad timing line: ${line}`);
  return { spawnAt: r.spawnAt, exitAt: r.exitAt, code: r.code, timing: t.data };
}

async function nodeStart(): Promise<number> {
  const r = await timed(['-e', '0'], process.env);
  return r.exitAt - r.spawnAt;
}

/** The phases of one trace on its critical path (ms); they add up to `total`. */
interface Phases {
  total: number;
  /** Spawn to the CLI's first request (the /client socket): Node's start, the CLI's modules, yargs. */
  cli_startup: number;
  /** The socket's handshake and login, to trace:start sent. */
  cli_connect: number;
  /** trace:start received to the last host's trace:run sent: the trace and result docs, choosing hosts. */
  dispatcher_ask: number;
  /** Last trace:run sent to the last agent's trace:done sent: the agents' queries and their chunks. */
  agents: number;
  /** Last trace:done sent to the last host's result stored (the dispatcher took it, spooled and wrote it). */
  store: number;
  /** Last host stored to finishedAt: the merge and merged.pcap written. */
  merge: number;
  /** finishedAt to the CLI hearing the final update: the trace doc closed, the update sent. */
  close_notify: number;
  /** The final update to the download's start: the CLI reads the trace's final view. */
  final_view: number;
  /** The merged PCAP's download to the file closed. */
  download: number;
  /** The file closed to the process gone. */
  exit: number;
  /** Not on the path, for reference: the longest single agent's trace begun → trace done. */
  agent_query_max: number;
  /** The spawn to the CLI's time origin (Node's own start, its first part). */
  node_origin: number;
}

function phasesOf(run: CliRun, trace: TraceView, disp: LogRecord[], agents: LogRecord[]): Phases {
  const m = run.timing.marks;
  const at = (k: string) => {
    if (m[k] === undefined) fail(`trace ${trace.id}: the CLI's timing has no ${k}`);
    return run.timing.origin + m[k];
  };
  const last = (recs: LogRecord[], msg: string, n: number) => {
    const ts = recs.filter((r) => r.msg === msg).map((r) => r.time);
    if (ts.length !== n) fail(`trace ${trace.id}: ${ts.length} '${msg}' records, expected ${n}`);
    return Math.max(...ts);
  };
  const n = trace.hosts.length;
  const runSent = last(disp, 'trace:run sent', n);
  const doneSent = last(agents, 'trace done', n);
  const stored = last(disp, 'host result stored', n);
  if (!trace.finishedAt) fail(`trace ${trace.id} has no finishedAt`);
  const finished = Date.parse(trace.finishedAt);
  const begun = new Map(agents.filter((r) => r.msg === 'trace begun').map((r) => [r.agent, r.time]));
  const queryMs = agents.filter((r) => r.msg === 'trace done').map((r) => r.time - (begun.get(r.agent) ?? NaN));
  return {
    total: run.exitAt - run.spawnAt,
    cli_startup: at('connect') - run.spawnAt,
    cli_connect: at('start_sent') - at('connect'),
    dispatcher_ask: runSent - at('start_sent'),
    agents: doneSent - runSent,
    store: stored - doneSent,
    merge: finished - stored,
    close_notify: at('final') - finished,
    final_view: at('download_start') - at('final'),
    download: at('download_end') - at('download_start'),
    exit: run.exitAt - at('download_end'),
    agent_query_max: Math.max(...queryMs),
    node_origin: run.timing.origin - run.spawnAt,
  };
}


async function waitAgents(url: string, apiToken: string, n: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const list = await getJson<{ agents: Array<{ connected: boolean; ring: { bytes: number } | null }> }>(`${url}/api/agents`, apiToken);
    if (list.agents.filter((a) => a.connected && a.ring).length === n) return;
    await sleep(100);
  }
  fail(`${n} agents did not connect within ${timeoutMs / 1000} s`);
}

const PHASE_LABELS: Array<[keyof Phases, string]> = [
  ['cli_startup', "CLI start-up: spawn → first request (Node's start included)"],
  ['cli_connect', 'CLI: socket handshake and login → trace:start sent'],
  ['dispatcher_ask', 'dispatcher: trace:start → last trace:run sent'],
  ['agents', "agents: last trace:run sent → last trace:done sent"],
  ['store', 'dispatcher: last trace:done → last host result stored'],
  ['merge', 'dispatcher: last host stored → merged.pcap stored (finishedAt)'],
  ['close_notify', 'dispatcher: finishedAt → CLI hears the final update'],
  ['final_view', "CLI: final update → download asked (trace's final view read)"],
  ['download', 'CLI: download of merged.pcap to the file closed'],
  ['exit', 'CLI: file closed → process gone'],
];

async function main(): Promise<void> {
  if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 200) fail(`BENCH_TTFP_RUNS=${process.env.BENCH_TTFP_RUNS}: give 1 to 200`);
  if (SIZES.some((s) => !Number.isInteger(s) || s < 1 || s > 1000)) fail(`BENCH_TTFP_SIZES=${process.env.BENCH_TTFP_SIZES}: give fleet sizes from 1 to 1000, comma-separated`);
  const sizes = [...new Set(SIZES)].sort((a, b) => a - b);
  const maxAgents = sizes[sizes.length - 1];
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(join(OUT, 'no-config'), { recursive: true });
  const loadBefore = loadavg();

  const capDir = join(OUT, 'capture');
  mkdirSync(capDir, { recursive: true });
  const gen = generateSipCapture({ outDir: capDir, totalBytes: RING_MB * 1024 * 1024, fileBytes: RING_MB * 1024 * 1024, concurrentCalls: 10, seed: 13 });
  const ringsDir = join(OUT, 'rings');
  const names = Array.from({ length: maxAgents }, (_, i) => `ttfp-${String(i).padStart(3, '0')}`);
  await importCaptures(join(ringsDir, names[0]), gen.files, { maxSegmentBytes: RING_MB * 1024 * 1024 });
  for (const n of names.slice(1)) cpSync(join(ringsDir, names[0]), join(ringsDir, n), { recursive: true });
  progress(`${maxAgents} rings of ${gen.packets} packets (${RING_MB} MiB); the call ${gen.targetCallId} has ${gen.targetCallIdPackets} packets in each`);

  const dataDir = join(OUT, 'data');
  const dispLog = join(OUT, 'dispatcher.log');
  const agentsLog = join(OUT, 'agents.log');
  const d = await startDispatcherProcess({ dataDir, logFile: dispLog, extraArgs: ['--log-level', 'debug'] });
  const agents: ChildProcess[] = [];
  const figures = new Figures('bench:ttfp');
  const json: Record<string, unknown> = {};
  try {
    const apiToken = makeTracerToken(dataDir, 'bench', d.storeArgs);
    const pcap = join(OUT, 'merged.pcap');
    const nodeMs: number[] = [];
    let started = 0;
    const results: Array<{ size: number; phases: Phases[]; marks: Array<Record<string, number>> }> = [];
    for (const size of sizes) {
      // Agents added up to this size: the first alone in its process, then groups.
      while (started < size) {
        const n = started === 0 ? 1 : Math.min(AGENTS_PER_PROCESS, size - started);
        agents.push(forkBenchAgents(d.url, d.agentToken, names.slice(started, started + n).map((name) => ({ name, ringDir: join(ringsDir, name) })), agentsLog, 'debug'));
        started += n;
      }
      await waitAgents(d.url, apiToken, size, 60_000);
      progress(`${size} agents connected: ${WARMUP} warm-up traces, then ${RUNS} measured, each after a node -e 0`);
      for (let i = 0; i < WARMUP; i++) await traceOnce(d.url, apiToken, gen.targetCallId, pcap);
      const runs: CliRun[] = [];
      for (let i = 0; i < RUNS; i++) {
        nodeMs.push(await nodeStart());
        runs.push(await traceOnce(d.url, apiToken, gen.targetCallId, pcap));
      }
      const packets = (await readPackets(pcap)).length;
      // Every agent saw the call (its ring is a copy), each copy its own capture: the merge keeps them all.
      if (packets !== gen.targetCallIdPackets * size) fail(`the merged PCAP of ${size} agents has ${packets} packets, each of them has the call's ${gen.targetCallIdPackets}`);
      // The logs are read once the traces are over: a record is written before its step goes on.
      const dispRecs = recordsByTrace(dispLog);
      const agentRecs = recordsByTrace(agentsLog);
      const phases: Phases[] = [];
      for (const r of runs) {
        const { trace } = await getJson<{ trace: TraceView }>(`${d.url}/api/traces/${r.timing.traceId}`, apiToken);
        if (trace.hosts.length !== size || trace.hosts.some((h) => h.state !== 'done')) fail(`trace ${trace.id}: ${trace.hosts.length} hosts, not all done`);
        phases.push(phasesOf(r, trace, dispRecs.get(trace.id) ?? [], agentRecs.get(trace.id) ?? []));
      }
      results.push({ size, phases, marks: runs.map((r) => r.timing.marks) });
      progress(`${size} agents: total median ${median(phases.map((p) => p.total)).toFixed(1)} ms`);
    }

    const nodeMed = median(nodeMs);
    const load = loadavg();
    figures.section('machine');
    figures.add('load_1m_before', 'load average (1 min) before', loadBefore[0], '', 2);
    figures.add('load_1m_after', 'load average (1 min) after', load[0], '', 2);
    figures.add('node_e0_ms', `node -e 0, median of ${nodeMs.length} (interleaved)`, nodeMed, 'ms', 1);
    figures.add('node_e0_min_ms', 'node -e 0, fastest', Math.min(...nodeMs), 'ms', 1);
    figures.add('node_e0_max_ms', 'node -e 0, slowest', Math.max(...nodeMs), 'ms', 1);
    for (const { size, phases } of results) {
      const tot = phases.map((p) => p.total);
      const med = median(tot);
      figures.section(`${size} agent${size > 1 ? 's' : ''}: tracefleet trace --call-id -o FILE, whole process, warm dispatcher, median of ${phases.length} (min – max)`);
      figures.add(`a${size}_total_ms`, 'total: spawn → exit, merged PCAP on disk', med, 'ms', 1);
      figures.add(`a${size}_total_min_ms`, '  fastest', Math.min(...tot), 'ms', 1);
      figures.add(`a${size}_total_max_ms`, '  slowest', Math.max(...tot), 'ms', 1);
      figures.add(`a${size}_excl_node_ms`, "total less node -e 0's median", med - nodeMed, 'ms', 1);
      if (size === 1) figures.add('a1_ok', `≤ ${TARGET_MS} ms excluding Node's start`, med - nodeMed <= TARGET_MS);
      for (const [k, label] of PHASE_LABELS) {
        const xs = phases.map((p) => p[k]);
        figures.add(`a${size}_${k}_ms`, `${label}`, median(xs), `ms (${Math.min(...xs).toFixed(1)} – ${Math.max(...xs).toFixed(1)})`, 1);
      }
      const q = phases.map((p) => p.agent_query_max);
      figures.add(`a${size}_agent_query_ms`, 'an agent, trace begun → trace done (slowest agent), off-path', median(q), `ms (${Math.min(...q).toFixed(0)} – ${Math.max(...q).toFixed(0)})`, 1);
      // The CLI's own marks, ms since its time origin: where its start-up and its waits go.
      const marks = results.find((r) => r.size === size)!.marks;
      const steps = [...new Set(marks.flatMap((m) => Object.keys(m)))];
      figures.add(
        `a${size}_cli_marks`,
        "CLI marks (ms since its time origin, medians)",
        steps.map((k) => `${k} ${median(marks.map((m) => m[k]).filter((x) => x !== undefined)).toFixed(0)}`).join(', '),
      );
      json[`a${size}_runs`] = phases.map((p) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Math.round(v * 10) / 10])));
    }
    for (const [k, v] of Object.entries(json)) figures.extra(k, v);
    figures.extra('node_e0_runs_ms', nodeMs.map((x) => Math.round(x * 10) / 10));
    figures.extra('call_packets', gen.targetCallIdPackets);
  } finally {
    for (const a of agents) a.kill('SIGTERM');
    await d.stop();
  }
  figures.print();
}

main().catch((e: Error) => fail(e.stack ?? e.message));
