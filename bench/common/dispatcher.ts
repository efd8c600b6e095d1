import { setTimeout as sleep } from 'node:timers/promises';
import { ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { io, Socket } from 'socket.io-client';
import type { ClientAck, TraceUpdate, TraceView } from '../../shared/protocol/client';
import type { TraceRequest } from '../../shared/query/query';
import { NODE_FLAGS } from '../../shared/runtime/node-flags';

/*
 * What the dispatcher benches share: the dispatcher as a process of its own
 * (so its resident memory is its alone), a tracer user with an API token,
 * the /client namespace to start traces and hear their updates, REST reads,
 * and a sampler of /proc/<pid>/status.
 */

export const ROOT = resolve(__dirname, '..', '..', '..');
const BIN = join(ROOT, 'bin', 'tracefleet');

/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable across
 * processes of one machine (each process's timeOrigin is itself wall-clock).
 */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}


/** A TCP port free on loopback right now. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolvePort(port));
    });
  });
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  // Nearest rank: the p99 of 1000 values is the 990th, a value that was really seen.
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1];
}

/** Resident memory of a process in bytes (VmRSS), or null once it is gone. */
export function readRss(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Direct children of a process (Linux 3.5+ /proc/<pid>/task/<pid>/children). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

let clkTck: number | null = null;

/** CPU seconds (user + system) a process has used so far, or null once it is gone. */
export function readCpuSeconds(pid: number): number | null {
  try {
    // The command name may hold spaces or parentheses: fields are counted after its closing ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    clkTck ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    return (Number(f[11]) + Number(f[12])) / clkTck;
  } catch {
    return null;
  }
}

export interface RssSample {
  at: number;
  rss: number;
}

/** Samples one process's VmRSS every `everyMs`; the samples of a window are read back afterwards. */
export class RssSampler {
  readonly samples: RssSample[] = [];
  private timer: NodeJS.Timeout;
  /** Keeps a long bench from growing this array without end. */
  private static readonly MAX_SAMPLES = 200_000;

  constructor(readonly pid: number, readonly everyMs = 50) {
    this.take();
    this.timer = setInterval(() => this.take(), everyMs);
  }

  take(): void {
    const rss = readRss(this.pid);
    if (rss !== null && this.samples.length < RssSampler.MAX_SAMPLES) this.samples.push({ at: wallNow(), rss });
  }

  /** Highest sample in [from, to]. */
  peak(from = 0, to = Infinity): number {
    let m = 0;
    for (const s of this.samples) if (s.at >= from && s.at <= to && s.rss > m) m = s.rss;
    return m;
  }

  /** When the highest sample in [from, to] was taken (NaN without samples there). */
  peakAt(from = 0, to = Infinity): number {
    let m = 0;
    let at = NaN;
    for (const s of this.samples) {
      if (s.at >= from && s.at <= to && s.rss > m) {
        m = s.rss;
        at = s.at;
      }
    }
    return at;
  }

  /** The last sample at or before `at`. */
  at(at: number): number {
    let v = this.samples[0]?.rss ?? 0;
    for (const s of this.samples) {
      if (s.at > at) break;
      v = s.rss;
    }
    return v;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * The Apache CouchDB a bench's dispatcher stores into, one knob for every
 * bench: BENCH_COUCHDB=http://user:password@host:port (a single node, or any
 * node of a cluster: each answers for the whole cluster), or its older name
 * BENCH_STREAM_COUCHDB. Unset: the embedded store in the dispatcher's data dir.
 */
export function benchCouchdbUrl(): string | null {
  return process.env.BENCH_COUCHDB || process.env.BENCH_STREAM_COUCHDB || null;
}

export interface DispatcherProcess {
  url: string;
  pid: number;
  dataDir: string;
  agentToken: string;
  logFile: string;
  /** wallNow() when the process was spawned. */
  spawnedAt: number;
  /** The embedded store's process (a child of the dispatcher), found after start. */
  storePid: number | null;
  /** The store's database. */
  db: string;
  /** What the CLI needs to reach the same store (`--couchdb URL --db NAME`; none for the embedded one). */
  storeArgs: string[];
  /** The store's URL with its credentials: the CouchDB's, or the embedded store's (written to the data dir at start). */
  storeUrl(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * `tracefleet dispatcher` on 127.0.0.1 with its store (benchCouchdbUrl(), in
 * a database of its own dropped by stop(); else the embedded store in
 * dataDir), its log in logFile; resolves once /healthz answers (at most
 * startMs). A caller whose extraArgs name a --couchdb keeps that store and
 * manages its database itself.
 */
export async function startDispatcherProcess(opts: {
  dataDir: string;
  logFile: string;
  startMs?: number;
  extraArgs?: string[];
  /** Flags for node itself, e.g. --cpu-prof. */
  nodeArgs?: string[];
}): Promise<DispatcherProcess> {
  const port = await freePort();
  const agentToken = randomBytes(24).toString('hex');
  const couchdb = opts.extraArgs?.includes('--couchdb') ? null : benchCouchdbUrl();
  const db = couchdb ? `bench-${randomBytes(4).toString('hex')}` : 'tracefleet';
  const storeArgs = couchdb ? ['--couchdb', couchdb, '--db', db] : [];
  const log = openSync(opts.logFile, 'a');
  let child: ChildProcess;
  const spawnedAt = wallNow();
  try {
    // NODE_FLAGS: as bin/tracefleet and the entrypoints launch a dispatcher.
    child = spawn(process.execPath, [...NODE_FLAGS, ...(opts.nodeArgs ?? []), BIN, 'dispatcher', '--listen', `127.0.0.1:${port}`, '--data-dir', opts.dataDir, '--agent-token', agentToken, ...storeArgs, ...(opts.extraArgs ?? [])], {
      cwd: ROOT,
      stdio: ['ignore', log, log],
    });
  } finally {
    closeSync(log);
  }
  // A bench that dies must not leave a dispatcher (and its store) behind.
  const { exited, gone } = reapOnExit(child);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.startMs ?? 60_000);
  for (;;) {
    if (gone()) throw new Error(`the dispatcher exited during start-up; see ${opts.logFile}`);
    try {
      const r = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the dispatcher did not answer /healthz within ${(opts.startMs ?? 60_000) / 1000} s; see ${opts.logFile}`);
    }
    await sleep(200);
  }
  const pid = child.pid!;
  return {
    url,
    pid,
    dataDir: opts.dataDir,
    agentToken,
    logFile: opts.logFile,
    spawnedAt,
    storePid: couchdb ? null : childPids(pid)[0] ?? null,
    exited,
    db,
    storeArgs,
    storeUrl: () => couchdb ?? readFileSync(join(opts.dataDir, 'store.url'), 'utf8').trim(),
    async stop() {
      if (!gone()) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
      if (couchdb) await dropDatabase(couchdb, db);
    },
  };
}

/** Deletes a bench's database on a CouchDB. */
export async function dropDatabase(couchdbUrl: string, db: string): Promise<void> {
  const { url, headers } = withoutCredentials(`${couchdbUrl.replace(/\/+$/, '')}/${encodeURIComponent(db)}`);
  await fetch(url, { method: 'DELETE', headers, signal: AbortSignal.timeout(60_000) }).catch(() => {});
}

/** fetch refuses a URL with credentials in it (the embedded store's and a real CouchDB's have them): they go in a header. */
function withoutCredentials(raw: string): { url: URL; headers: Record<string, string> } {
  const url = new URL(raw);
  const headers: Record<string, string> = url.username || url.password ? { authorization: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` } : {};
  url.username = '';
  url.password = '';
  return { url, headers };
}

/** A tracer user and an API token for it, made with the CLI against the running dispatcher's store (storeArgs: its --couchdb and --db, when not the embedded one). */
export function makeTracerToken(dataDir: string, user = 'bench', storeArgs: string[] = []): string {
  const env = { ...process.env, TRACEFLEET_DEBUG: '' };
  const add = spawnSync(process.execPath, [BIN, 'user', 'add', user, '--role', 'tracer', '--password-stdin', '--data-dir', dataDir, ...storeArgs], {
    cwd: ROOT,
    input: `${randomBytes(16).toString('hex')}\n`,
    encoding: 'utf8',
    env,
    timeout: 60_000,
  });
  if (add.status !== 0) throw new Error(`tracefleet user add ${user} exited with ${add.status ?? add.signal}: ${add.stderr.trim()}`);
  const tok = spawnSync(process.execPath, [BIN, 'user', 'token', user, '--data-dir', dataDir, ...storeArgs], { cwd: ROOT, encoding: 'utf8', env, timeout: 60_000 });
  if (tok.status !== 0) throw new Error(`tracefleet user token ${user} exited with ${tok.status ?? tok.signal}: ${tok.stderr.trim()}`);
  const token = tok.stdout.trim().split('\n').pop() ?? '';
  if (!token) throw new Error('tracefleet user token printed no token');
  return token;
}

export async function getJson<T>(url: string, token: string, timeoutMs = 30_000): Promise<T> {
  const get = () => fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
  let r: Response;
  try {
    r = await get();
  } catch (e) {
    // A kept-alive connection the server closed while this process was blocked (a spawnSync) is
    // reused before its close is seen: "other side closed". A GET may be sent again, once.
    if (!/other side closed/.test(String((e as { cause?: unknown }).cause))) throw e;
    r = await get();
  }
  const text = await r.text();
  if (!r.ok) throw new Error(`GET ${url}: ${r.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/** Streams a download and counts its bytes (nothing is kept). */
export async function countDownload(url: string, token: string, timeoutMs: number): Promise<{ status: number; bytes: number; ms: number }> {
  const start = wallNow();
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
  let bytes = 0;
  if (r.body) for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) bytes += c.length;
  return { status: r.status, bytes, ms: wallNow() - start };
}

export interface TimedUpdate {
  u: TraceUpdate;
  /** When this process received it (wallNow). */
  at: number;
}

/** The whole trace's last update: it has `merged`, or (a trace that could not merge) a state other than running. */
function isFinal(u: TraceUpdate): boolean {
  return u.host === null && (u.merged !== undefined || u.state !== 'running');
}

/**
 * The /client namespace as a tracer: starts traces and keeps every update
 * it hears, by trace id, with the time it arrived.
 */
export class TraceClient {
  readonly updates = new Map<string, TimedUpdate[]>();
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: Socket) {
    const take = (u: TraceUpdate, at: number) => {
      let list = this.updates.get(u.traceId);
      if (!list) this.updates.set(u.traceId, (list = []));
      list.push({ u, at });
      if (isFinal(u)) for (const w of this.waiters.splice(0)) w();
    };
    socket.on('trace:update', (u: TraceUpdate) => take(u, wallNow()));
    socket.on('trace:updates', (us: TraceUpdate[]) => {
      const at = wallNow();
      for (const u of us) take(u, at);
    });
  }

  static async connect(url: string, token: string, timeoutMs = 30_000): Promise<TraceClient> {
    const socket = io(`${url}/client`, { auth: { token }, transports: ['websocket'], reconnection: false, timeout: timeoutMs });
    await new Promise<void>((res, rej) => {
      socket.once('connect', () => res());
      socket.once('connect_error', (e: Error) => rej(new Error(`/client refused the bench: ${e.message}`)));
    });
    return new TraceClient(socket);
  }

  /** Sends trace:start; resolves with the ack's trace and the times it was sent and acknowledged. */
  async start(req: TraceRequest, timeoutMs = 60_000): Promise<{ trace: TraceView; sentAt: number; ackAt: number }> {
    const sentAt = wallNow();
    const ack = (await this.socket.timeout(timeoutMs).emitWithAck('trace:start', req)) as ClientAck<{ trace: TraceView }>;
    const ackAt = wallNow();
    if (!ack.ok) throw new Error(`trace:start refused: ${ack.code}: ${ack.error}`);
    return { trace: ack.trace, sentAt, ackAt };
  }

  /** The whole trace's last update, or null after timeoutMs. */
  async waitFinal(traceId: string, timeoutMs: number): Promise<TimedUpdate | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.updates.get(traceId)?.find((x) => isFinal(x.u));
      if (f) return f;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  close(): void {
    this.socket.close();
  }
}

export interface StoreChange {
  id: string;
  /** The revision's generation (the N of N-hash): how many writes the doc has had. */
  gen: number;
  /** When the bench heard of it (wallNow). */
  at: number;
}

/**
 * The store's continuous _changes feed, read by the bench: when each
 * document was written, without asking the dispatcher anything. A feed may
 * skip a revision that was replaced before it was read; `firstAt` therefore
 * asks for the first sighting of a generation at least as high.
 */
export class StoreChanges {
  readonly changes: StoreChange[] = [];
  private static readonly MAX = 1_000_000;

  private constructor(private readonly abort: AbortController) {}

  static async open(storeUrl: string, db = 'tracefleet'): Promise<StoreChanges> {
    const abort = new AbortController();
    const sc = new StoreChanges(abort);
    // identity: a compressed feed is held back by the server's gzip until it has a block full.
    // The headers come with the first line, at the latest the first heartbeat.
    const { url, headers } = withoutCredentials(`${storeUrl.replace(/\/+$/, '')}/${db}/_changes?feed=continuous&since=now&heartbeat=1000`);
    const r = await fetch(url, { signal: abort.signal, headers: { 'accept-encoding': 'identity', ...headers } });
    if (!r.ok || !r.body) throw new Error(`the store's _changes feed answered ${r.status}`);
    void (async () => {
      let rest = '';
      try {
        for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
          const at = wallNow();
          rest += Buffer.from(chunk).toString('utf8');
          let nl: number;
          while ((nl = rest.indexOf('\n')) >= 0) {
            const line = rest.slice(0, nl).trim();
            rest = rest.slice(nl + 1);
            if (!line) continue;
            try {
              const c = JSON.parse(line) as { id?: string; changes?: Array<{ rev: string }> };
              const rev = c.changes?.[0]?.rev;
              if (c.id && rev && sc.changes.length < StoreChanges.MAX) sc.changes.push({ id: c.id, gen: parseInt(rev, 10), at });
            } catch {
              /* a line that is not a change (the feed's last_seq) */
            }
          }
        }
      } catch {
        /* closed */
      }
    })();
    return sc;
  }

  /** First time `id` was seen at generation `gen` or later, or null. */
  firstAt(id: string, gen: number): number | null {
    for (const c of this.changes) if (c.id === id && c.gen >= gen) return c.at;
    return null;
  }

  /** For every doc whose id starts with `prefix`: the first time it reached generation `gen`. */
  firstByPrefix(prefix: string, gen: number): Map<string, number> {
    const m = new Map<string, number>();
    for (const c of this.changes) if (c.id.startsWith(prefix) && c.gen >= gen && !m.has(c.id)) m.set(c.id, c.at);
    return m;
  }

  /** For every doc whose id starts with `prefix`: the first time it reached the highest generation it reached, up to `upTo`. */
  lastGenByPrefix(prefix: string, upTo: number): Map<string, number> {
    const best = new Map<string, { gen: number; at: number }>();
    for (const c of this.changes) {
      if (!c.id.startsWith(prefix) || c.gen > upTo) continue;
      const b = best.get(c.id);
      if (!b || c.gen > b.gen) best.set(c.id, { gen: c.gen, at: c.at });
    }
    return new Map([...best].map(([id, b]) => [id, b.at]));
  }

  close(): void {
    this.abort.abort();
  }
}

/** A process's open-file limits (soft, hard) from /proc/<pid>/limits, or null once it is gone. */
export function fdLimits(pid: number): { soft: number; hard: number } | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    const n = (s: string) => (s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s));
    return m ? { soft: n(m[1]), hard: n(m[2]) } : null;
  } catch {
    return null;
  }
}

/**
 * Makes sure a running process may hold `need` open files: raises its limit
 * with prlimit(1) when it is lower (root may raise the hard limit too), and
 * throws, saying what to do, when that is not allowed. One socket per agent
 * is a descriptor, on the dispatcher and in the simulators alike.
 */
export function ensureFdLimit(pid: number, need: number, what: string): void {
  const cur = fdLimits(pid);
  if (!cur) throw new Error(`cannot read the open-file limit of ${what} (pid ${pid})`);
  if (cur.soft >= need) return;
  const hard = Math.max(cur.hard, need);
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${need}:${hard}`], { encoding: 'utf8', timeout: 10_000 });
  const after = fdLimits(pid);
  if (r.status !== 0 || !after || after.soft < need) {
    throw new Error(`${what} needs ${need} open files, its limit is ${cur.soft} (hard ${cur.hard}) and prlimit could not raise it (${(r.stderr ?? r.error?.message ?? '').trim() || `exit ${r.status}`}): run the bench as root or raise ulimit -n first`);
  }
}

/** The dispatcher's own event-loop lag since the last scrape (prom-client resets its histogram on each). */
export async function scrapeLoopLag(url: string): Promise<{ maxMs: number; p99Ms: number } | null> {
  try {
    const r = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(30_000) });
    const text = await r.text();
    const v = (name: string) => Number(new RegExp(`^${name} ([0-9.eE+-]+)`, 'm').exec(text)?.[1] ?? NaN) * 1000;
    return { maxMs: v('nodejs_eventloop_lag_max_seconds'), p99Ms: v('nodejs_eventloop_lag_p99_seconds') };
  } catch {
    return null;
  }
}

/** The child killed when the bench's process exits first; `gone()` once it has exited. */
function reapOnExit(child: ChildProcess): { exited: Promise<number | null>; gone: () => boolean } {
  let gone = false;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const reap = () => {
    if (!gone) child.kill('SIGKILL');
  };
  process.once('exit', reap);
  void exited.then(() => {
    gone = true;
    process.off('exit', reap);
  });
  return { exited, gone: () => gone };
}

export interface RedisProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** redis-server on a free loopback port, nothing saved to disk; resolves once it accepts connections (at most startMs). */
export async function startRedis(startMs = 15_000): Promise<RedisProcess> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxclients', '1000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { exited, gone } = reapOnExit(child);
  let out = '';
  await new Promise<void>((resolveReady, reject) => {
    const t = setTimeout(() => reject(new Error(`redis-server did not say it was ready within ${startMs / 1000} s: ${out.slice(-300)}`)), startMs);
    child.once('error', (e) => {
      clearTimeout(t);
      reject(new Error(`cannot start redis-server (scripts/setup.sh installs it): ${e.message}`));
    });
    child.stdout!.on('data', (b: Buffer) => {
      if (out.length < 64 * 1024) out += b.toString('utf8');
      if (/Ready to accept connections/.test(out)) {
        clearTimeout(t);
        resolveReady();
      }
    });
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`redis-server exited with ${code}: ${out.slice(-300)}`));
    });
  });
  child.stdout!.resume();
  child.stderr!.resume();
  return {
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid!,
    async stop() {
      if (gone()) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Agents' trace sides (bench/common/agents.ts) in one child process, its
 * log appended to logFile; the child ends when the bench does.
 */
export function forkBenchAgents(url: string, token: string, agents: Array<{ name: string; ringDir: string }>, logFile: string, level: 'debug' | 'info' = 'info', nodeArgs: string[] = []): ChildProcess {
  const log = openSync(logFile, 'a');
  try {
    return fork(join(__dirname, 'agents.js'), [JSON.stringify({ url, token, agents, level })], { cwd: ROOT, stdio: ['ignore', log, log, 'ipc'], execArgv: [...NODE_FLAGS, ...nodeArgs] });
  } finally {
    closeSync(log);
  }
}
