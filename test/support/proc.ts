import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';

/** How much of a stream is kept for error messages and matching; a chatty daemon must not grow memory without bound. */
const KEEP_CHARS = 1 << 20;
const TAIL_CHARS = 2000;

export interface RunOptions {
  /** Kill the process (and its process group) after this long. Default 30 s. */
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Run inside this network namespace (via `ip netns exec`). */
  ns?: string;
  /** Throw on a non-zero exit. Default true; pass false to inspect `code` yourself. */
  check?: boolean;
}

export interface RunResult {
  /** Exit code, or null when the process died from a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export class ProcError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly result?: RunResult,
  ) {
    super(message);
    this.name = 'ProcError';
  }
}

export function tail(s: string, n = TAIL_CHARS): string {
  return s.length <= n ? s : '…' + s.slice(s.length - n);
}

function quoteArg(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

export function formatCommand(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map(quoteArg).join(' ');
}

/** The argv that runs `cmd args` inside network namespace `ns`. `ip netns exec` execs in place, so the pid stays the program's own. */
export function nsWrap(ns: string | undefined, cmd: string, args: readonly string[]): [string, string[]] {
  if (!ns) return [cmd, [...args]];
  return ['ip', ['netns', 'exec', ns, cmd, ...args]];
}

/**
 * Every process group we start, so that a test process that dies or forgets a
 * handle still takes its children (sipp, dumpcap, …) down with it instead of
 * leaving them bound to ports other runs need.
 */
const liveGroups = new Set<number>();
let exitHookInstalled = false;
function track(pid: number | undefined): void {
  if (pid === undefined) return;
  liveGroups.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
    });
  }
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }
}

function startChild(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; stdinPipe: boolean }): ChildProcess {
  // detached puts the child in its own process group, so a timeout or stop()
  // can reach whatever it forked (shell pipelines, helpers).
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: [opts.stdinPipe ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    detached: true,
  });
  track(child.pid);
  child.once('exit', () => {
    if (child.pid !== undefined) liveGroups.delete(child.pid);
  });
  return child;
}

/** Runs a command to completion. Throws ProcError (with the command and the stderr tail) on spawn failure, timeout, or — unless `check: false` — a non-zero exit. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [c, a] = nsWrap(opts.ns, cmd, args);
  const shown = formatCommand(c, a);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const check = opts.check ?? true;
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    const child = startChild(c, a, { cwd: opts.cwd, env: opts.env, stdinPipe: opts.input !== undefined });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.length > KEEP_CHARS * 2) stderr = stderr.slice(-KEEP_CHARS);
    });
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {
        /* the child may exit before reading all input; its exit status tells */
      });
      child.stdin!.end(opts.input);
    }
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new ProcError(`cannot start ${shown}: ${err.message}`, shown));
    });
    child.once('close', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const result: RunResult = { code, signal, stdout, stderr };
      if (timedOut) {
        reject(new ProcError(`${shown}: timed out after ${timeoutMs} ms and was killed; stderr: ${tail(stderr) || '(empty)'}`, shown, result));
      } else if (check && code !== 0) {
        const how = code === null ? `killed by ${signal}` : `exited with ${code}`;
        reject(new ProcError(`${shown}: ${how}; stderr: ${tail(stderr) || '(empty)'}`, shown, result));
      } else {
        resolve(result);
      }
    });
  });
}

export interface DaemonOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  ns?: string;
  /** Time between SIGTERM and SIGKILL in stop(). Default 3 s. */
  stopGraceMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DaemonHandle {
  readonly pid: number;
  readonly command: string;
  /** Output seen so far (the last MiB of each stream). */
  stdout(): string;
  stderr(): string;
  /** Null while running. */
  exitStatus(): ExitStatus | null;
  /** Resolves with the match once `re` matches stdout or stderr; rejects on timeout or if the process exits first. */
  waitForOutput(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Resolves when the process exits; rejects after timeoutMs (the process is left running). */
  waitForExit(timeoutMs: number): Promise<ExitStatus>;
  /** SIGTERM, then SIGKILL to the whole group after the grace period. Safe to call more than once or after exit. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

/** Starts a long-running process. The caller must stop() it (t.after / finally); a process exit hook SIGKILLs any that are left. */
export async function startDaemon(cmd: string, args: readonly string[], opts: DaemonOptions = {}): Promise<DaemonHandle> {
  const [c, a] = nsWrap(opts.ns, cmd, args);
  const shown = formatCommand(c, a);
  const child = startChild(c, a, { cwd: opts.cwd, env: opts.env, stdinPipe: false });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (err) => reject(new ProcError(`cannot start ${shown}: ${err.message}`, shown)));
  });
  const pid = child.pid!;
  let out = '';
  let err = '';
  let status: ExitStatus | null = null;
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of [...listeners]) l();
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    if (out.length > KEEP_CHARS * 2) out = out.slice(-KEEP_CHARS);
    notify();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    if (err.length > KEEP_CHARS * 2) err = err.slice(-KEEP_CHARS);
    notify();
  });
  // 'close' rather than 'exit': output is complete only once the pipes close.
  child.once('close', (code, signal) => {
    status = { code, signal };
    notify();
  });
  const describe = () => `${shown} (pid ${pid})`;

  /**
   * Settles once `check`, called now and after every output or the exit,
   * returns a value (resolves) or throws (rejects); rejects with
   * `timedOut()` after timeoutMs.
   */
  const waitUntil = <T>(timeoutMs: number, check: () => T | undefined, timedOut: () => Error) =>
    new Promise<T>((resolve, reject) => {
      const poll = () => {
        let v: T | undefined;
        try {
          v = check();
        } catch (e) {
          cleanup();
          reject(e);
          return;
        }
        if (v !== undefined) {
          cleanup();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(timedOut());
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        listeners.delete(poll);
      };
      listeners.add(poll);
      poll();
    });

  const waitForExit = (timeoutMs: number) =>
    waitUntil(
      timeoutMs,
      () => status ?? undefined,
      () => new ProcError(`${describe()} still running after ${timeoutMs} ms; stderr: ${tail(err) || '(empty)'}`, shown),
    );

  const handle: DaemonHandle = {
    pid,
    command: shown,
    stdout: () => out,
    stderr: () => err,
    exitStatus: () => status,
    waitForOutput(re, timeoutMs) {
      const output = () => `stderr: ${tail(err) || '(empty)'}; stdout: ${tail(out, 500) || '(empty)'}`;
      return waitUntil(
        timeoutMs,
        () => {
          const m = out.match(re) ?? err.match(re);
          if (m) return m;
          if (status) {
            const how = status.code === null ? `was killed by ${status.signal}` : `exited with ${status.code}`;
            throw new ProcError(`${describe()} ${how} before printing ${re}; ${output()}`, shown);
          }
          return undefined;
        },
        () => new ProcError(`${describe()} did not print ${re} within ${timeoutMs} ms; ${output()}`, shown),
      );
    },
    waitForExit,
    async stop(graceMs = opts.stopGraceMs ?? 3000) {
      if (status) return status;
      killGroup(pid, 'SIGTERM');
      try {
        return await waitForExit(graceMs);
      } catch {
        killGroup(pid, 'SIGKILL');
        return waitForExit(5000);
      }
    },
  };
  return handle;
}

/** Whether `cmd` is on PATH. */
export function haveCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1" >/dev/null 2>&1', 'sh', cmd]).status === 0;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}


/** The kernel's ephemeral range (Linux); outgoing sockets take their local port from it at any moment. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(lo) && Number.isInteger(hi)) return [lo, hi];
  } catch { /* not Linux: assume the IANA range */ }
  return [49152, 65535];
}

/** Ports the test tools' CouchDB nodes use (up.sh: PORT + (i-1)*10000) and SIP's own; never handed out. */
const RESERVED = new Set([4369, 5060, 5061, 5970, 15970, 25970, 35970, 5984, 15984, 25984, 35984, 25993]);

/**
 * A port that is currently free for both TCP and UDP on `addr` in this
 * process's namespace, chosen below the kernel's ephemeral range: a port from
 * inside it (what listen(0) gives) can be taken by any outgoing connection
 * (CouchDB clients, Kamailio's TCP legs) between this check and the daemon's
 * bind, which made sipp fail "Address already in use" in CI. Another process
 * may still bind it first; the random pick over ~20,000 ports makes that rare.
 */
export async function freePort(addr = '127.0.0.1'): Promise<number> {
  const [ephemeralLo] = ephemeralRange();
  const lo = 10_000;
  const hi = Math.min(ephemeralLo - 1, 65_535);
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = hi - lo > 1_000 ? lo + Math.floor(Math.random() * (hi - lo + 1)) : await kernelPort(addr);
    if (RESERVED.has(port)) continue;
    if ((await tcpFree(port, addr)) && (await udpFree(port, addr))) return port;
  }
  throw new Error(`no port free for both TCP and UDP on ${addr} after 50 tries`);
}

function kernelPort(addr: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, addr, () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function tcpFree(port: number, addr: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, addr, () => srv.close(() => resolve(true)));
  });
}

function udpFree(port: number, addr: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    s.once('error', () => resolve(false));
    s.bind(port, addr, () => s.close(() => resolve(true)));
  });
}
