import { setTimeout as sleep } from 'node:timers/promises';
import { ChildProcess, fork } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { HostView, TraceView } from '../../shared/protocol/client';
import {
  DispatcherProcess,
  ensureFdLimit,
  getJson,
  makeTracerToken,
  percentile,
  readCpuSeconds,
  RedisProcess,
  ROOT,
  RssSampler,
  scrapeLoopLag,
  startDispatcherProcess,
  startRedis,
  StoreChanges,
  TraceClient,
  wallNow,
} from '../common/dispatcher';
import { Figures, median, progress } from '../common/report';
import { AgentRecord, agentName, FromWorker, ToWorker } from './messages';
import { RESULT_PACKETS } from './result';
import { ProfileSummary, summarizeProfiles } from './profile';
import { CpuSampler } from './cpu';

/*
 * One dispatcher, N simulated agents (bench/fanout/worker.ts, in a few
 * processes), one trace to all of them, R times. From the moment trace:start
 * is sent on /client: when each agent got its trace:run (and sent
 * trace:started), when the dispatcher had each host's result, when each
 * result doc was written (its updatedAt), and when the trace's final update
 * (merged.pcap stored) arrived; then the stored trace is read back over REST
 * and every host must be done with its packets stored. The dispatcher runs
 * as its own process, sampled for VmRSS every 50 ms; its embedded store is
 * a child process of its own, sampled separately and not counted in it.
 *
 * With --dispatchers 2 the fleet is split over two dispatchers joined by the
 * Socket.IO Redis adapter (a redis-server the bench starts on a loopback
 * port and stops): the second uses the first's embedded store, the trace is
 * asked on the first, and the second runs its own agents' hosts for it and
 * stores their results (peer protocol, shared/protocol/peer.ts).
 *
 * Every process's open-file limit is raised (prlimit) to what its sockets
 * need; the whole bench has a deadline (--deadline) past which it stops
 * everything it started and fails.
 *
 * --run-timeout S gives the dispatchers that --run-timeout: on a starved
 * machine an agent's answer to trace:run can sit behind thousands of others
 * for more than the default 10 s, and its host then ends unreachable.
 *
 * Usage: npm run bench:fanout -- [--agents 1000] [--workers CORES] [--runs 3] [--dispatchers 1|2] [--deadline 1800] [--run-timeout S] [--profile]
 */

const OUT = join(ROOT, 'bench-output', 'fanout');
const TARGET_STARTED_P99_MS = 1000;
/** Issue 13: all small results stored within 10 s for 1,000 agents, within 20 s for 10,000. */
const targetAllStoredMs = (agents: number) => (agents > 1000 ? 20_000 : 10_000);
const RUN_TIMEOUT_MS = 180_000;
/** Connecting is paced by the machine (about 120 agents/s at load 1.5 on 2 cores, 30/s at load 30): allowed 100 ms an agent, 5 min at least. */
const readyTimeoutMs = (agents: number) => Math.max(300_000, agents * 100);
/** Descriptors beyond one per agent socket: the store's connections, logs, spool files, node's own. */
const FD_MARGIN = 4096;

interface Args {
  agents: number;
  workers: number;
  runs: number;
  /** 1, or 2 joined by the Redis adapter. */
  dispatchers: number;
  /** The whole bench, start to stop (s). */
  deadline: number;
  /** The dispatchers' --run-timeout (s); 0: their default (10 s). */
  runTimeout: number;
  /** Run the dispatcher and the simulators under --cpu-prof and show where their CPU went during the runs. */
  profile: boolean;
  /** The simulated agents answer as agents before trace:result (started, chunk, done), to compare. */
  oldAgents: boolean;
}

function fail(msg: string): never {
  process.stderr.write(`bench:fanout: ${msg}\n`);
  process.exit(1);
}

/**
 * One simulator process per core by default (was two): each process pays its own compiling, collecting and
 * event-loop wake-ups, and they share the dispatcher's cores. Paired at 2,000 agents (load 10, three runs
 * each): the simulators' CPU in a run was 0.73-0.83 s with 4 processes, 0.50-0.65 s with 2, 0.36-0.43 s
 * with 1, their event-loop lag p99 alike (24-46 ms). One process would be serial where the dispatcher's
 * answers arrive on two cores: its own backlog would be timed as the dispatcher's.
 */
const DEFAULT_WORKERS = Math.max(2, Math.min(8, cpus().length));

function parseArgs(argv: string[]): Args {
  const a: Args = { agents: 1000, workers: DEFAULT_WORKERS, runs: 3, dispatchers: 1, deadline: 1800, runTimeout: 0, profile: false, oldAgents: false };
  const limits = { agents: [1, 10_000], workers: [1, 32], runs: [1, 20], dispatchers: [1, 2], deadline: [60, 7200], 'run-timeout': [0, 600] } as const;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--profile' || argv[i] === '--old-agents') {
      if (argv[i] === '--profile') a.profile = true;
      else a.oldAgents = true;
      continue;
    }
    const m = /^--(agents|workers|runs|dispatchers|deadline|run-timeout)(?:=(.*))?$/.exec(argv[i]);
    if (!m) fail(`unknown argument ${argv[i]}: use --agents N, --workers N, --runs N, --dispatchers 1|2, --deadline S, --run-timeout S, --profile, --old-agents`);
    const key = m[1] as keyof typeof limits;
    const v = Number(m[2] ?? argv[++i]);
    const [lo, hi] = limits[key];
    if (!Number.isInteger(v) || v < lo || v > hi) fail(`--${key} must be a whole number from ${lo} to ${hi}`);
    a[key === 'run-timeout' ? 'runTimeout' : key] = v;
  }
  a.workers = Math.min(a.workers, a.agents);
  // Each worker's agents connect to one dispatcher: every dispatcher needs one.
  if (a.workers < a.dispatchers) a.workers = a.dispatchers;
  if (a.agents < a.dispatchers) fail('--agents must be at least --dispatchers');
  return a;
}

class Worker {
  private readonly waiting: Array<{ pred: (m: FromWorker) => boolean; resolve: (m: FromWorker) => void }> = [];
  readonly exited: Promise<number | null>;
  error: string | null = null;

  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m: FromWorker) => {
      if (m.type === 'error') {
        this.error = m.message;
        progress(`worker ${proc.pid}: ${m.message}`);
      }
      const w = this.waiting.findIndex((x) => x.pred(m));
      if (w >= 0) this.waiting.splice(w, 1)[0].resolve(m);
    });
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  }

  send(m: ToWorker): void {
    // A worker stopped already (--profile stops them before the end) takes nothing more.
    if (this.proc.connected) this.proc.send(m);
  }

  next<T extends FromWorker>(pred: (m: FromWorker) => boolean, timeoutMs: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`worker ${this.proc.pid}: no ${what} within ${timeoutMs / 1000} s${this.error ? ` (${this.error})` : ''}`)), timeoutMs);
      this.waiting.push({
        pred: (m) => pred(m) || m.type === 'error',
        resolve: (m) => {
          clearTimeout(t);
          if (m.type === 'error') reject(new Error(`worker ${this.proc.pid}: ${m.message}`));
          else resolve(m as T);
        },
      });
    });
  }
}

interface Dist {
  min: number;
  p50: number;
  p99: number;
  max: number;
}

function dist(xs: number[]): Dist {
  return { min: xs.length ? Math.min(...xs) : NaN, p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.length ? Math.max(...xs) : NaN };
}

interface RunFigures {
  traceId: string;
  /** trace:start sent → its ack (the trace doc stored; the hosts are asked and their result docs made after). */
  ackMs: number;
  /** The dispatcher's first trace:run to its last, by its log (NaN when the line is missing). */
  askMs: number;
  /** trace:start sent → trace:run at each agent. */
  run: Dist;
  /** trace:start sent → each agent's trace:started emitted. */
  started: Dist;
  /** trace:started → the chunk's ack at the agent (the dispatcher spooled it). */
  chunkAck: Dist;
  /** trace:start sent → the dispatcher's first update past "queued" for each host at the watcher ("started", or final for a result sent whole). */
  startedSeen: Dist;
  /** trace:start sent → the dispatcher's "done" update for each host (all its bytes spooled). */
  doneSeen: Dist;
  /** trace:start sent → each result doc's updatedAt (its final state written; ms resolution). */
  resultStored: Dist;
  /** trace:start sent → the final update (every host stored, merged.pcap stored). */
  allStoredMs: number;
  /** Last result doc written → final update: the last attachments and the merge. */
  tailMs: number;
  /** From the store's _changes feed (null without it): each host's packets.pcap attached. */
  attached: Dist | null;
  /** The trace doc got merged.pcap, then its final state. */
  mergedAttachedMs: number | null;
  traceDocFinalMs: number | null;
  /** GET /api/traces/<id> once the trace is final: the stored trace read back, every host's result. */
  readBackMs: number;
  /** Revision generations seen per kind of doc, to check the reading above. */
  gens: string;
  /** Result docs written more than the 3 times one host needs (a job run twice). */
  rewrites: number;
  /** Dispatcher log lines of store work put off for a retry, and of work given up, during the run. */
  storeRetries: number;
  givenUp: string[];
  sentAt: number;
  endAt: number;
  /** Per dispatcher, in the order started (the first is asked the trace). */
  peakRssMb: number[];
  dispatcherCpuS: number[];
  /** Each dispatcher's own event-loop lag during the run (its /metrics). */
  loopLag: Array<{ maxMs: number; p99Ms: number } | null>;
  storePeakRssMb: number;
  storeCpuS: number;
  workerLagMaxMs: number;
  /** CPU seconds of the simulators, all of them, in the run (trace:start sent → final update). */
  workersCpuS: number;
  /** trace:start sent → the last agent's trace:run: the CPU each part of the machine took in it. */
  startWindowMs: number;
  startCpuS: { dispatchers: number[]; workers: number; store: number };
  workerLagP99Ms: number;
  hostsDone: number;
  hostsStored: number;
  merged: { packets: number; bytes: number; duplicates: number } | null;
  problems: string[];
}

const MB = 1024 * 1024;

/** One dispatcher of the bench and its resident-memory sampler. */
interface BenchDispatcher {
  d: DispatcherProcess;
  rss: RssSampler;
}

async function oneRun(
  n: number,
  run: number,
  ctx: {
    /** The first is where the trace is asked and read back. */
    ds: BenchDispatcher[];
    apiToken: string;
    client: TraceClient;
    workers: Worker[];
    perWorker: number[];
    storeRss: RssSampler | null;
    /** Dispatchers, then workers, then the store (when it is a process here). */
    cpu: CpuSampler;
    storePid: number | null;
    changes: StoreChanges | null;
  },
): Promise<RunFigures> {
  const { client, workers, ds } = ctx;
  const url = ds[0].d.url;
  const logFrom = ds.map((x) => statSync(x.d.logFile).size);
  // Each simulator makes its agents' results for this run now, before the trace is asked.
  await Promise.all(
    workers.map((w) => {
      const p = w.next((m) => m.type === 'armed' && m.run === run, 120_000, 'armed');
      w.send({ type: 'arm', run });
      return p;
    }),
  );
  // Resets each dispatcher's lag histogram, so the next scrape covers the run.
  await Promise.all(ds.map((x) => scrapeLoopLag(x.d.url)));
  await sleep(200);
  const cpu0 = ds.map((x) => readCpuSeconds(x.d.pid) ?? 0);
  const scpu0 = ctx.storePid ? readCpuSeconds(ctx.storePid) ?? 0 : 0;
  // The ack used to wait for every host's result doc to be created (at 10,000 hosts on a starved store, past a minute).
  const { trace, sentAt, ackAt } = await client.start({ callId: [`bench-fanout-${run}`] }, RUN_TIMEOUT_MS);
  if (trace.hosts.length !== n) progress(`WARNING: the trace asked ${trace.hosts.length} hosts, not ${n}`);
  const final = await client.waitFinal(trace.id, RUN_TIMEOUT_MS);
  const endAt = final?.at ?? wallNow();
  const cpu1 = ds.map((x) => readCpuSeconds(x.d.pid) ?? 0);
  const scpu1 = ctx.storePid ? readCpuSeconds(ctx.storePid) ?? 0 : 0;
  const loopLag = await Promise.all(ds.map((x) => scrapeLoopLag(x.d.url)));
  const problems: string[] = [];
  if (!final) problems.push(`no final update within ${RUN_TIMEOUT_MS / 1000} s`);

  const replies = await Promise.all(
    workers.map((w, i) => {
      const p = w.next<Extract<FromWorker, { type: 'records' }>>((m) => m.type === 'records' && m.traceId === trace.id, 60_000, 'records');
      w.send({ type: 'collect', traceId: trace.id, expect: ctx.perWorker[i], timeoutMs: 30_000 });
      return p;
    }),
  );
  const recs: AgentRecord[] = replies.flatMap((r) => r.records);
  if (recs.length !== n) problems.push(`${recs.length} of ${n} agents got trace:run`);
  const errs = recs.filter((r) => r.error);
  if (errs.length) problems.push(`${errs.length} agents failed, e.g. ${errs[0].error}`);

  const ups = client.updates.get(trace.id) ?? [];
  const firstByState = (...states: string[]) => {
    const seen = new Map<string, number>();
    for (const x of ups) if (x.u.host && states.includes(x.u.state) && !seen.has(x.u.host)) seen.set(x.u.host, x.at - sentAt);
    return [...seen.values()];
  };
  // The CPU of each process from trace:start sent to the last agent's receipt of its trace:run.
  const lastRun = recs.length ? Math.max(...recs.map((r) => r.runAt)) : sentAt;
  const nw = workers.length;
  const inStart = ctx.cpu.between(sentAt, lastRun);
  const inRun = ctx.cpu.between(sentAt, endAt);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

  // The stored trace, as any client would read it back.
  // 10,000 result docs read from a busy embedded store took more than the default 30 s.
  const readFrom = wallNow();
  const view = (await getJson<{ trace: TraceView }>(`${url}/api/traces/${encodeURIComponent(trace.id)}`, ctx.apiToken, RUN_TIMEOUT_MS)).trace;
  const readBackMs = wallNow() - readFrom;
  const hosts: HostView[] = view.hosts;
  const done = hosts.filter((h) => h.state === 'done').length;
  const stored = hosts.filter((h) => h.stored).length;
  if (hosts.length !== n) problems.push(`the stored trace lists ${hosts.length} hosts, not ${n}`);
  if (done !== n) problems.push(`${done} of ${n} hosts are done (${[...new Set(hosts.filter((h) => h.state !== 'done').map((h) => `${h.state}${h.error ? `: ${h.error}` : ''}`))].slice(0, 3).join('; ')})`);
  if (stored !== n) problems.push(`${stored} of ${n} hosts have packets.pcap stored`);
  if (!view.merged) problems.push('the stored trace has no merged.pcap');
  else if (view.merged.packets !== n * RESULT_PACKETS) problems.push(`merged.pcap holds ${view.merged.packets} packets, not ${n * RESULT_PACKETS}`);
  if (view.state !== 'done') problems.push(`the trace ended ${view.state}`);
  const resultAt = hosts.map((h) => Date.parse(h.updatedAt) - sentAt);

  // Result docs: created queued once every host is asked, and the final state with packets.pcap inline
  // (small results are written that way, in batches); a host final before its doc was created has the
  // final write alone (the create then leaves it be). So a result doc's last generation (1 or 2) is the
  // one with packets.pcap. The trace doc: 2 merged.pcap, 3 final state.
  const ch = ctx.changes;
  const prefix = `trace:${trace.id}:`;
  const attached = ch ? [...ch.lastGenByPrefix(prefix, 2).values()].map((at) => at - sentAt) : [];
  const mergedAt = ch?.firstAt(`trace:${trace.id}`, 2) ?? null;
  const traceFinalAt = ch?.firstAt(`trace:${trace.id}`, 3) ?? null;
  const gens = new Map<string, Set<number>>();
  for (const c of ch?.changes ?? []) {
    const kind = c.id === `trace:${trace.id}` ? 'trace' : c.id.startsWith(prefix) ? 'result' : null;
    if (!kind) continue;
    if (!gens.has(kind)) gens.set(kind, new Set());
    gens.get(kind)!.add(c.gen);
  }
  const rewrites = ch ? ch.firstByPrefix(prefix, 3).size : 0;
  const log = ds.flatMap((x, i) => readFileSync(x.d.logFile).subarray(logFrom[i]).toString('utf8').split('\n'));
  const storeRetries = log.filter((l) => l.includes('trying again every')).length;
  // The owner's own time from its first trace:run to its last (the agents' receipt adds the sockets and the simulators).
  const askedLine = log.find((l) => l.includes('"every host asked"') && l.includes(trace.id));
  const askMs = askedLine ? Number((JSON.parse(askedLine) as { askMs?: unknown }).askMs) : NaN;
  const givenUp = log.filter((l) => l.includes('giving up on')).map((l) => l.slice(0, 300));
  if (givenUp.length) problems.push(`the dispatcher gave up on ${givenUp.length} store job(s): ${givenUp[0]}`);
  if (ch && attached.length !== n) problems.push(`the store's changes feed showed ${attached.length} of ${n} packets.pcap attached`);

  return {
    traceId: trace.id,
    ackMs: ackAt - sentAt,
    askMs,
    run: dist(recs.map((r) => r.runAt - sentAt)),
    started: dist(recs.map((r) => r.startedAt - sentAt)),
    chunkAck: dist(recs.filter((r) => r.chunkAckAt > 0).map((r) => r.chunkAckAt - r.startedAt)),
    startedSeen: dist(firstByState('started', 'done', 'error', 'unreachable', 'lost', 'cancelled')),
    doneSeen: dist(firstByState('done')),
    resultStored: dist(resultAt),
    allStoredMs: endAt - sentAt,
    tailMs: endAt - sentAt - Math.max(...resultAt),
    attached: ch ? dist(attached) : null,
    mergedAttachedMs: mergedAt === null ? null : mergedAt - sentAt,
    traceDocFinalMs: traceFinalAt === null ? null : traceFinalAt - sentAt,
    readBackMs,
    gens: [...gens.entries()].map(([k, v]) => `${k}: ${[...v].sort((a, b) => a - b).join(',')}`).join('; '),
    rewrites,
    storeRetries,
    givenUp,
    sentAt,
    endAt,
    peakRssMb: ds.map((x) => x.rss.peak(sentAt, endAt + 500) / MB),
    dispatcherCpuS: cpu1.map((c, i) => c - cpu0[i]),
    loopLag,
    storePeakRssMb: (ctx.storeRss?.peak(sentAt, endAt + 500) ?? 0) / MB,
    storeCpuS: scpu1 - scpu0,
    workerLagMaxMs: Math.max(...replies.map((r) => r.lagMaxMs)),
    workerLagP99Ms: Math.max(...replies.map((r) => r.lagP99Ms)),
    workersCpuS: sum(inRun.slice(ds.length, ds.length + nw)),
    startWindowMs: lastRun - sentAt,
    startCpuS: { dispatchers: inStart.slice(0, ds.length), workers: sum(inStart.slice(ds.length, ds.length + nw)), store: ctx.storePid ? inStart[ds.length + nw] : NaN },
    hostsDone: done,
    hostsStored: stored,
    merged: view.merged ?? null,
    problems,
  };
}

function describe(r: RunFigures): string {
  const d = (x: Dist) => `p50 ${x.p50.toFixed(0)} / p99 ${x.p99.toFixed(0)} / max ${x.max.toFixed(0)} ms`;
  return [
    `  ack ${r.ackMs.toFixed(0)} ms; every trace:run sent in ${r.askMs.toFixed(0)} ms; trace:run at agents ${d(r.run)}; started ${d(r.started)}`,
    `  chunk ack ${d(r.chunkAck)}; host done seen ${d(r.doneSeen)}`,
    `  result docs written ${d(r.resultStored)}; final update ${r.allStoredMs.toFixed(0)} ms (tail after last result doc ${r.tailMs.toFixed(0)} ms)`,
    ...(r.attached ? [`  store feed: packets.pcap attached ${d(r.attached)}; merged.pcap attached ${r.mergedAttachedMs?.toFixed(0)} ms; trace doc final ${r.traceDocFinalMs?.toFixed(0)} ms (${r.gens})`] : []),
    `  store jobs put off for a retry ${r.storeRetries}; result docs written more than twice ${r.rewrites}; the trace read back (REST) in ${r.readBackMs.toFixed(0)} ms`,
    ...r.peakRssMb.map(
      (rss, i) =>
        `  dispatcher ${i + 1}: peak RSS ${rss.toFixed(1)} MiB, CPU ${r.dispatcherCpuS[i].toFixed(2)} s, event-loop lag p99 ${r.loopLag[i]?.p99Ms.toFixed(0) ?? '?'} / max ${r.loopLag[i]?.maxMs.toFixed(0) ?? '?'} ms`,
    ),
    `  start window (trace:start sent → last agent's trace:run) ${r.startWindowMs.toFixed(0)} ms: CPU dispatcher${r.startCpuS.dispatchers.length > 1 ? 's' : ''} ${r.startCpuS.dispatchers.map((c) => c.toFixed(2)).join(' + ')} s, simulators ${r.startCpuS.workers.toFixed(2)} s, store ${r.startCpuS.store.toFixed(2)} s; simulators' CPU in the run ${r.workersCpuS.toFixed(2)} s`,
    `  store CPU ${r.storeCpuS.toFixed(2)} s; simulated agents' event-loop lag p99 ${r.workerLagP99Ms.toFixed(0)} / max ${r.workerLagMaxMs.toFixed(0)} ms (the worst worker)`,
    ...r.problems.map((p) => `  PROBLEM: ${p}`),
  ].join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const { agents: n } = args;
  const nd = args.dispatchers;
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const profileDir = join(OUT, 'profile');
  const ds: BenchDispatcher[] = [];
  let redis: RedisProcess | null = null;
  let changes: StoreChanges | null = null;
  let storeRss: RssSampler | null = null;
  let cpu: CpuSampler | null = null;
  const workers: Worker[] = [];
  let client: TraceClient | null = null;
  let deadlineTimer: NodeJS.Timeout | null = null;
  const deadline = new Promise<never>((_, reject) => {
    deadlineTimer = setTimeout(() => reject(new Error(`FAILED: over its deadline of ${args.deadline} s (--deadline); everything it started is being stopped`)), args.deadline * 1000);
  });
  // Which dispatcher each worker's agents connect to, and how many agents each dispatcher has.
  const perWorker = Array.from({ length: args.workers }, (_, i) => Math.floor(n / args.workers) + (i < n % args.workers ? 1 : 0));
  const dispatcherOf = (w: number) => w % nd;
  const agentsOn = (k: number) => perWorker.reduce((a, c, w) => a + (dispatcherOf(w) === k ? c : 0), 0);

  const body = async () => {
    if (nd > 1) {
      redis = await startRedis();
      progress(`redis-server pid ${redis.pid} at ${redis.url}`);
    }
    for (let k = 0; k < nd; k++) {
      const dataDir = join(OUT, `data${k + 1}`);
      const logFile = join(OUT, `dispatcher${k + 1}.log`);
      // The second dispatcher shares the first's embedded store (clustered dispatchers share one store).
      const storeArgs = k > 0 ? ['--couchdb', ds[0].d.storeUrl(), '--db', ds[0].d.db] : [];
      progress(`starting dispatcher ${k + 1} (data in ${dataDir}, log in ${logFile})`);
      const d = await startDispatcherProcess({
        dataDir,
        logFile,
        extraArgs: [...(redis ? ['--redis', (redis as RedisProcess).url] : []), ...storeArgs, ...(args.runTimeout ? ['--run-timeout', String(args.runTimeout)] : [])],
        // One argument: the embedded store's child keeps the --cpu-prof* flags of its parent, not what follows them
        // (a separate value left it a bare --cpu-prof-dir, and the script path was taken as the directory: ENOTDIR).
        nodeArgs: args.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, `d${k + 1}`)}`] : [],
      });
      ensureFdLimit(d.pid, agentsOn(k) + FD_MARGIN, `dispatcher ${k + 1}`);
      ds.push({ d, rss: new RssSampler(d.pid, 50) });
      progress(`dispatcher ${k + 1} pid ${d.pid} at ${d.url}${k === 0 ? `; embedded store pid ${d.storePid ?? '?'}` : ''}${args.profile ? ' (under --cpu-prof)' : ''}`);
    }
    const d1 = ds[0].d;
    storeRss = d1.storePid ? new RssSampler(d1.storePid, 100) : null;
    if (d1.storePid) ensureFdLimit(d1.storePid, FD_MARGIN, 'the embedded store');
    try {
      changes = await StoreChanges.open(d1.storeUrl(), d1.db);
    } catch (e) {
      progress(`WARNING: no store changes feed (${(e as Error).message}); the store-side timeline is left out`);
    }
    const apiToken = makeTracerToken(d1.dataDir, 'bench', d1.storeArgs);
    progress('tracer user and API token made');

    let first = 0;
    const connectStart = wallNow();
    const ready: Array<Promise<unknown>> = [];
    for (let i = 0; i < args.workers; i++) {
      const w = new Worker(
        fork(join(__dirname, 'worker.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: args.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(profileDir, 'workers')}`] : [] }),
      );
      ensureFdLimit(w.proc.pid!, perWorker[i] + FD_MARGIN, `simulator worker ${i + 1}`);
      workers.push(w);
      ready.push(w.next((m) => m.type === 'ready', readyTimeoutMs(n), 'ready'));
      const names = Array.from({ length: perWorker[i] }, (_, k) => agentName(first + k));
      const d = ds[dispatcherOf(i)].d;
      w.send({ type: 'start', url: d.url, token: d.agentToken, names, firstIndex: first, oldAgents: args.oldAgents });
      first += perWorker[i];
    }
    await Promise.all(ready);
    cpu = new CpuSampler([...ds.map((x) => x.d.pid), ...workers.map((w) => w.proc.pid!), ...(d1.storePid ? [d1.storePid] : [])]);
    const connectMs = wallNow() - connectStart;
    progress(`${n} agents connected and said hello in ${(connectMs / 1000).toFixed(1)} s (${args.workers} worker processes, ${nd} dispatcher${nd > 1 ? 's' : ''})`);
    // Clustered, the first dispatcher lists its peer's agents too (fetchSockets over Redis).
    const list = await getJson<{ agents: Array<{ connected: boolean }> }>(`${d1.url}/api/agents`, apiToken);
    const connected = list.agents.filter((a) => a.connected).length;
    if (connected !== n) throw new Error(`dispatcher 1 lists ${connected} connected agents, not ${n}`);

    client = await TraceClient.connect(d1.url, apiToken);
    await sleep(1000);
    const now = wallNow();
    const idleRss = ds.map((x) => x.rss.at(now) / MB);
    // Just before the agents connected: the first samples still hold the start-up's garbage.
    const baseRss = ds.map((x) => x.rss.at(connectStart) / MB);
    ds.forEach((_, k) => progress(`dispatcher ${k + 1} RSS: ${baseRss[k].toFixed(1)} MiB at start, ${idleRss[k].toFixed(1)} MiB with ${agentsOn(k)} agents connected`));

    const runs: RunFigures[] = [];
    let runError: Error | null = null;
    let runStartedAt = wallNow();
    for (let r = 1; r <= args.runs; r++) {
      progress(`run ${r}/${args.runs}: one trace to ${n} agents`);
      runStartedAt = wallNow();
      try {
        const f = await oneRun(n, r, { ds, apiToken, client, workers, perWorker, storeRss, storePid: d1.storePid, changes, cpu: cpu! });
        runs.push(f);
        process.stderr.write(`${describe(f)}\n`);
      } catch (e) {
        // A run that could not even finish (the dispatcher stopped answering): what its profile shows is still worth seeing.
        runError = e as Error;
        progress(`run ${r} failed: ${runError.message}`);
        break;
      }
      await sleep(1500);
    }

    const show = (xs: Array<{ name: string; ms: number }>) => xs.map((x) => `    ${String(x.ms).padStart(7)} ms  ${x.name}`).join('\n');
    const profiles: Array<{ k: number; prof: ProfileSummary; merge: ProfileSummary | null; start: ProfileSummary | null }> = [];
    if (args.profile) {
      // The profiles are written when each dispatcher exits.
      for (const x of ds) await x.d.stop();
      const windows: Array<[number, number]> = runs.map((r) => [r.sentAt, r.endAt]);
      if (runError) windows.push([runStartedAt, wallNow()]);
      for (let k = 0; k < nd; k++) {
        const dir = join(profileDir, `d${k + 1}`);
        // The embedded store writes its profile there too: the dispatcher's own is the one named by its pid.
        const prof = summarizeProfiles(dir, ds[k].d.spawnedAt, windows, 15, ds[k].d.pid);
        if (!prof) {
          progress(`WARNING: no CPU profile found in ${dir}`);
          continue;
        }
        process.stderr.write(`dispatcher ${k + 1} CPU profile during the runs (${prof.totalMs} ms sampled; --cpu-prof slows it, so timings above are not comparable):\n  self time by place:\n${show(prof.byPlace)}\n  self time by function:\n${show(prof.byFunction)}\n  self time charged to the nearest caller in our code or a package:\n${show(prof.byCaller)}\n`);
        // The merge alone (on the first, which owns the trace): from the last packets.pcap attached to merged.pcap attached.
        const mergeWindows = k > 0 ? [] : runs.filter((r) => r.attached && r.mergedAttachedMs !== null).map((r): [number, number] => [r.sentAt + r.attached!.max, r.sentAt + r.mergedAttachedMs!]);
        const merge = mergeWindows.length ? summarizeProfiles(dir, ds[k].d.spawnedAt, mergeWindows, 10, ds[k].d.pid) : null;
        if (merge) process.stderr.write(`  the merge windows alone (${merge.totalMs} ms sampled), by place:\n${show(merge.byPlace)}\n  by caller:\n${show(merge.byCaller)}\n`);
        // The start alone: from trace:start sent to the last trace:run sent (by the owner's log; else at an agent), what held the sends back.
        const startWindows = runs.map((r): [number, number] => [r.sentAt, r.sentAt + (Number.isFinite(r.askMs) ? r.ackMs + r.askMs : r.run.max)]);
        const start = summarizeProfiles(dir, ds[k].d.spawnedAt, startWindows, 15, ds[k].d.pid);
        if (start) process.stderr.write(`  the start windows alone (trace:start sent → last trace:run sent; ${start.totalMs} ms sampled), by function:\n${show(start.byFunction)}\n  by caller:\n${show(start.byCaller)}\n`);
        profiles.push({ k, prof, merge, start });
      }
      // The simulators' own profiles, written as they exit: where the bench's agents spent their time.
      for (const w of workers) w.send({ type: 'stop' });
      await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(10_000)]);
      const wdir = join(profileDir, 'workers');
      const wStart = summarizeProfiles(wdir, 0, runs.map((r): [number, number] => [r.sentAt, r.sentAt + r.startWindowMs]), 15);
      const wRun = summarizeProfiles(wdir, 0, runs.map((r): [number, number] => [r.sentAt, r.endAt]), 15);
      if (wStart) process.stderr.write(`simulators' CPU profile (all workers), start windows (trace:start sent → last agent's trace:run; ${wStart.totalMs} ms sampled), by function:\n${show(wStart.byFunction)}\n  by caller:\n${show(wStart.byCaller)}\n`);
      if (wRun) process.stderr.write(`simulators' CPU profile, whole runs (${wRun.totalMs} ms sampled), by place:\n${show(wRun.byPlace)}\n`);
      if (wStart) profiles.push({ k: -1, prof: wRun ?? wStart, merge: null, start: wStart });
    }
    if (runs.length === 0) throw runError ?? new Error('no run finished');

    // The median run by the time to all stored; its figures are the ones reported.
    const order = runs.map((r, i) => ({ r, i })).sort((a, b) => a.r.allStoredMs - b.r.allStoredMs);
    const med = order[(order.length - 1) >> 1].r;
    const allOk = !runError && runs.every((r) => r.problems.length === 0);
    const targetStored = targetAllStoredMs(n);

    const fig = new Figures(`bench:fanout (${n} simulated agents in ${args.workers} processes, ${nd === 1 ? 'one dispatcher' : `${nd} dispatchers joined by Redis`}, median of ${runs.length} runs)`);
    fig.extra('agents', n);
    fig.extra('workers', args.workers);
    fig.extra('dispatchers', nd);
    fig.extra('runTimeoutS', args.runTimeout || 'default');
    fig.extra('runs', runs.length);
    fig.extra('agentProtocol', args.oldAgents ? 'old (started, chunk, done)' : 'trace:result when offered');
    fig.section('agents');
    fig.add('connectS', `connect + hello of ${n} agents`, connectMs / 1000, 's', 1);
    fig.section(`from trace:start sent to dispatcher 1 (median run)`);
    fig.add('ackMs', 'trace:start acked (trace doc stored)', med.ackMs, 'ms', 0);
    fig.add('askMs', 'the dispatcher\'s first trace:run to its last (its log)', med.askMs, 'ms', 0);
    fig.add('runP50Ms', 'trace:run at agent, p50', med.run.p50, 'ms', 0);
    fig.add('startedP50Ms', 'agent sent trace:started, p50', med.started.p50, 'ms', 0);
    fig.add('startedP99Ms', '  p99', med.started.p99, 'ms', 0);
    fig.add('startedMaxMs', '  max', med.started.max, 'ms', 0);
    fig.add('startedSeenP99Ms', '"started" (or, sent whole, final) update at the watcher, p99', med.startedSeen.p99, 'ms', 0);
    fig.add('chunkAckP50Ms', 'chunk acked after trace:started, p50', med.chunkAck.p50, 'ms', 0);
    fig.add('chunkAckP99Ms', '  p99', med.chunkAck.p99, 'ms', 0);
    fig.add('doneSeenP50Ms', 'host "done" at the watcher, p50', med.doneSeen.p50, 'ms', 0);
    fig.add('doneSeenMaxMs', '  max (all results spooled)', med.doneSeen.max, 'ms', 0);
    fig.add('resultStoredP50Ms', 'result doc written (updatedAt), p50', med.resultStored.p50, 'ms', 0);
    fig.add('resultStoredMaxMs', '  max', med.resultStored.max, 'ms', 0);
    // From the first host the dispatcher had in full to the last result doc written: the store's pace.
    fig.add('storeMsPerResult', 'store time per result (first host done → last result doc) / hosts', (med.resultStored.max - med.doneSeen.min) / n, 'ms', 2);
    fig.add('allStoredMs', 'final update (all stored, merged.pcap attached)', med.allStoredMs, 'ms', 0);
    fig.add('tailMs', '  of which after the last result doc', med.tailMs, 'ms', 0);
  fig.add('readBackMs', 'then the trace read back (GET /api/traces/<id>, every host)', med.readBackMs, 'ms', 0);
    if (med.attached) {
      fig.section('the store\'s side (its _changes feed, read by the bench; median run)');
      fig.add('attachedP50Ms', 'packets.pcap attached, p50', med.attached.p50, 'ms', 0);
      fig.add('attachedMaxMs', '  max (every host stored)', med.attached.max, 'ms', 0);
      fig.add('mergedAttachedMs', 'merged.pcap attached', med.mergedAttachedMs ?? NaN, 'ms', 0);
      fig.add('traceDocFinalMs', 'trace doc final', med.traceDocFinalMs ?? NaN, 'ms', 0);
      fig.add('lastAttachToMergedMs', 'last packets.pcap → merged.pcap (merge, and any wait before it)', (med.mergedAttachedMs ?? NaN) - med.attached.max, 'ms', 0);
    }
    fig.add('storeRetries', 'store jobs put off for a retry (dispatcher logs)', med.storeRetries, '', 0);
    fig.add('resultRewrites', 'result docs written more than twice', med.rewrites, '', 0);
    for (let k = 0; k < nd; k++) {
      // One dispatcher keeps the keys it always had; two get a D1/D2 suffix.
      const key = (base: string) => (nd === 1 ? base : `${base}D${k + 1}`);
      const peak = Math.max(...runs.map((r) => r.peakRssMb[k]));
      fig.section(`dispatcher ${k + 1}${nd > 1 ? (k === 0 ? ' (asked the trace; owns it, merges)' : ' (runs its agents\' hosts for dispatcher 1)') : ''}: ${agentsOn(k)} agents`);
      fig.add(key('peakRssMb'), 'peak RSS (all runs; store not included)', peak, 'MiB', 1);
      fig.add(key('idleRssMb'), `RSS idle with its ${agentsOn(k)} agents`, idleRss[k], 'MiB', 1);
      fig.add(key('startRssMb'), 'RSS before the agents connected', baseRss[k], 'MiB', 1);
      fig.add(key('idleKibPerAgent'), 'memory per connected agent ((idle - start) / agents)', ((idleRss[k] - baseRss[k]) * 1024) / agentsOn(k), 'KiB', 1);
      fig.add(key('peakKibPerAgent'), 'memory per agent during a trace ((peak - start) / agents)', ((peak - baseRss[k]) * 1024) / agentsOn(k), 'KiB', 1);
      fig.add(key('dispatcherCpuS'), 'CPU in the median run', med.dispatcherCpuS[k], 's', 2);
      fig.add(key('loopLagP99Ms'), 'its event-loop lag in the median run, p99', med.loopLag[k]?.p99Ms ?? NaN, 'ms', 0);
      fig.add(key('loopLagMaxMs'), '  max', med.loopLag[k]?.maxMs ?? NaN, 'ms', 0);
    }
    fig.section(`the start window: trace:start sent → the last agent's trace:run (median run), and who had the CPU in it`);
    fig.add('startWindowMs', 'window', med.startWindowMs, 'ms', 0);
    med.startCpuS.dispatchers.forEach((c, k) => fig.add(nd === 1 ? 'startDispatcherCpuS' : `startDispatcherCpuSD${k + 1}`, `dispatcher ${k + 1} CPU in it`, c, 's', 2));
    fig.add('startWorkersCpuS', 'simulated agents\' CPU in it (all workers)', med.startCpuS.workers, 's', 2);
    fig.add('startStoreCpuS', 'embedded store CPU in it', med.startCpuS.store, 's', 2);
    fig.section('the rest of the machine');
    fig.add('storePeakRssMb', 'embedded store peak RSS (a separate process)', Math.max(...runs.map((r) => r.storePeakRssMb)), 'MiB', 1);
    fig.add('storeCpuS', 'embedded store CPU in the median run', med.storeCpuS, 's', 2);
    // Large lag here means the simulators, not the dispatcher, set the pace.
    fig.add('workersCpuS', 'simulated agents\' CPU in the median run (all workers)', med.workersCpuS, 's', 2);
    fig.add('workerLagP99Ms', 'simulated agents: event-loop lag p99 (worst worker)', med.workerLagP99Ms, 'ms', 0);
    fig.add('workerLagMaxMs', '  max', med.workerLagMaxMs, 'ms', 0);
    fig.add('cores', 'cores shared by dispatchers, store, agents, bench (and any other work)', cpus().length, '', 0);
    fig.add('loadavg1', 'load average (1 min) at the end', loadavg()[0], '', 2);
    fig.section(`targets: started p99 < ${TARGET_STARTED_P99_MS} ms, all stored < ${targetStored / 1000} s`);
    const startedOk = med.started.p99 < TARGET_STARTED_P99_MS;
    const storedOk = med.allStoredMs < targetStored;
    fig.add('targetStartedOk', 'started p99', startedOk ? 'PASS' : 'MISS');
    fig.add('targetStoredOk', 'all stored', storedOk ? 'PASS' : 'MISS');
    fig.add('verified', `every run: ${n} hosts done, packets stored, merged.pcap of ${n * RESULT_PACKETS} packets`, allOk ? 'yes' : 'NO');
    runs.forEach((r, i) => r.problems.forEach((p, k) => fig.add(`run${i + 1}Problem${k}`, `  run ${i + 1}`, p)));
    if (runError) fig.add(`run${runs.length + 1}Failed`, `  run ${runs.length + 1}`, runError.message);
    fig.extra('rssNote', 'VmRSS of each dispatcher process alone, sampled every 50 ms; the embedded store is the first one\'s child process, reported separately');
    fig.extra(
      'perRun',
      runs.map((r) => ({
        traceId: r.traceId,
        ackMs: Math.round(r.ackMs),
        askMs: Math.round(r.askMs),
        startedP50Ms: Math.round(r.started.p50),
        startedP99Ms: Math.round(r.started.p99),
        startedMaxMs: Math.round(r.started.max),
        doneSeenMaxMs: Math.round(r.doneSeen.max),
        resultStoredMaxMs: Math.round(r.resultStored.max),
        allStoredMs: Math.round(r.allStoredMs),
        peakRssMb: r.peakRssMb.map((x) => Math.round(x * 10) / 10),
        dispatcherCpuS: r.dispatcherCpuS.map((x) => Math.round(x * 100) / 100),
        loopLagMaxMs: r.loopLag.map((x) => (x ? Math.round(x.maxMs) : null)),
        storeCpuS: Math.round(r.storeCpuS * 100) / 100,
        workerLagMaxMs: Math.round(r.workerLagMaxMs),
        storeRetries: r.storeRetries,
        resultRewrites: r.rewrites,
        startWindowMs: Math.round(r.startWindowMs),
        startWorkersCpuS: Math.round(r.startCpuS.workers * 100) / 100,
        startDispatcherCpuS: r.startCpuS.dispatchers.map((x) => Math.round(x * 100) / 100),
        workersCpuS: Math.round(r.workersCpuS * 100) / 100,
        ok: r.problems.length === 0,
      })),
    );
    fig.extra('medianOfAllStoredMs', Math.round(median(runs.map((r) => r.allStoredMs))));
    if (args.profile) {
      for (const p of profiles) {
        if (p.k < 0) {
          fig.extra('profileWorkers', p.prof);
          fig.extra('profileWorkersStart', p.start);
          continue;
        }
        fig.extra(p.k === 0 ? 'profile' : `profileD${p.k + 1}`, p.prof);
        if (p.merge) fig.extra('profileMerge', p.merge);
        if (p.start) fig.extra(p.k === 0 ? 'profileStart' : `profileStartD${p.k + 1}`, p.start);
      }
      fig.extra('profiled', true);
    }
    fig.extra('node', process.version);
    fig.print();
    if (!allOk) process.exitCode = 1;
  };

  try {
    await Promise.race([body(), deadline]);
  } finally {
    if (deadlineTimer) clearTimeout(deadlineTimer);
    (client as TraceClient | null)?.close();
    (changes as StoreChanges | null)?.close();
    for (const w of workers) w.send({ type: 'stop' });
    await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(5000)]);
    for (const w of workers) if (w.proc.exitCode === null) w.proc.kill('SIGKILL');
    for (const x of ds) x.rss.stop();
    (cpu as CpuSampler | null)?.stop();
    (storeRss as RssSampler | null)?.stop();
    for (const x of ds) await x.d.stop();
    await (redis as RedisProcess | null)?.stop();
  }
}

main().then(
  // Anything left of a run past its deadline must not keep the process alive.
  () => process.exit(process.exitCode ?? 0),
  (e) => {
    process.stderr.write(`bench:fanout: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
