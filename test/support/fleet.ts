import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { run, tail, DaemonHandle, RunResult } from './proc';
import { TestNet } from './netns';
import { startNsRelay, NsRelay } from './nsrelay';
import { waitForRecord } from './log';

/**
 * A whole fleet in network namespaces for end-to-end tests: a dispatcher in
 * host `disp` listening on its 198.18.0.x address, agents capturing `eth0`
 * in hosts of their own, and the store (the dispatcher's embedded one, or
 * the CouchDB of COUCHDB_URL reached through a relay) read directly.
 *
 * Nothing of the test network is reachable from the root namespace, so the
 * test talks HTTP to the dispatcher and the store with curl run inside
 * `disp`.
 */

export const ROOT = resolve(__dirname, '..', '..', '..');
export const CLI = join(ROOT, 'bin', 'tracefleet');
export const DISPATCHER_PORT = 8060;
/** Where COUCHDB_URL's server is reached inside `disp` (through the relay). */
const COUCH_RELAY_PORT = 15984;

export interface FleetBedOptions {
  /** Hosts that run an agent (each gets a namespace; start them with startAgent). */
  agents: string[];
  /** Hosts without an agent (sipp peers, say). */
  others?: string[];
  /** --run-timeout and --idle-timeout of the dispatcher, in seconds. */
  runTimeoutS?: number;
  idleTimeoutS?: number;
}

export interface HttpResult {
  status: number;
  body: string;
}

interface Teardown {
  after(fn: () => Promise<void>): void;
}

/** Environment for our processes: nothing of the caller's tracefleet, CouchDB or Redis settings leaks in by accident. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(TRACEFLEET_|COUCHDB_URL$|REDIS_URL$)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Process ids whose process group is `pgid` (from /proc). */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // Fields after the parenthesised command name: state ppid pgrp ...
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[2]) === pgid) out.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** Polls `f` every `everyMs` until it returns a value other than undefined; throws `what` after timeoutMs. An error from `f` ends the wait at once. */
export async function waitFor<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined>, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() >= deadline) break;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export class FleetBed {
  readonly dir: string;
  readonly dataDir: string;
  readonly agentToken = randomBytes(24).toString('hex');
  /** The tracer's API token (set by addTracer). */
  apiToken = '';
  dispatcher: DaemonHandle | null = null;
  readonly agents = new Map<string, DaemonHandle>();
  /** Every dispatcher started, also killed ones: their process groups are swept at teardown. */
  private readonly dispatcherPids: number[] = [];
  private relay: NsRelay | null = null;
  /** COUCHDB_URL as the dispatcher inside `disp` reaches it (through the relay); null: the embedded store. */
  private couchInNs: string | null = null;
  readonly db: string;

  private constructor(
    readonly net: TestNet,
    private readonly opts: FleetBedOptions,
    dir: string,
  ) {
    this.dir = dir;
    this.dataDir = join(dir, 'dispatcher');
    // CouchDB database names: lower case letter first; unique so concurrent runs and reruns never meet.
    this.db = `tf_e2e_${process.pid}_${randomBytes(4).toString('hex')}`;
  }

  static async create(t: Teardown, opts: FleetBedOptions): Promise<FleetBed> {
    const dir = mkdtempSync(join(tmpdir(), 'tf-fleet-'));
    let net: TestNet;
    try {
      net = await TestNet.create({ hosts: ['disp', ...opts.agents, ...(opts.others ?? [])] });
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    const bed = new FleetBed(net, opts, dir);
    t.after(() => bed.teardown());
    const couch = process.env.COUCHDB_URL;
    if (couch) {
      const u = new URL(couch);
      const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
      bed.relay = await startNsRelay({ ns: net.ns('disp'), socketPath: join(dir, 'couch.sock'), target: { host: u.hostname.replace(/^\[|\]$/g, ''), port }, port: COUCH_RELAY_PORT });
      u.hostname = '127.0.0.1';
      u.port = String(COUCH_RELAY_PORT);
      bed.couchInNs = u.toString().replace(/\/$/, '');
    }
    return bed;
  }

  get url(): string {
    return `http://${this.net.addr('disp')}:${DISPATCHER_PORT}`;
  }

  ring(host: string): string {
    return join(this.dir, `ring-${host}`);
  }

  /** The store's flags for our commands: --couchdb and a database of this test, or the embedded store in the data dir. */
  private storeArgs(): string[] {
    return this.couchInNs ? ['--couchdb', this.couchInNs, '--db', this.db, '--data-dir', this.dataDir] : ['--data-dir', this.dataDir];
  }

  /** The store's base URL (with the database) as seen from inside `disp`. */
  storeDbUrl(): string {
    if (this.couchInNs) return `${this.couchInNs}/${this.db}`;
    const file = join(this.dataDir, 'store.url');
    if (!existsSync(file)) throw new Error(`no ${file}: the dispatcher is not running with its embedded store`);
    return `${readFileSync(file, 'utf8').trim()}/tracefleet`;
  }

  async startDispatcher(): Promise<DaemonHandle> {
    const args = [CLI, 'dispatcher', '--listen', `${this.net.addr('disp')}:${DISPATCHER_PORT}`, '--agent-token', this.agentToken, '--log-format', 'json', ...this.storeArgs()];
    if (this.opts.runTimeoutS !== undefined) args.push('--run-timeout', String(this.opts.runTimeoutS));
    if (this.opts.idleTimeoutS !== undefined) args.push('--idle-timeout', String(this.opts.idleTimeoutS));
    const d = await this.net.spawn('disp', process.execPath, args, { env: cleanEnv({}), stopGraceMs: 10_000 });
    this.dispatcherPids.push(d.pid);
    this.dispatcher = d;
    await waitForRecord(d, (r) => r.component === 'dispatcher' && r.msg === 'listening' && /^http/.test(String(r.url)), 60_000, 'the dispatcher listening');
    return d;
  }

  /** Adds user `name` with the tracer role and keeps an API token of theirs for api() and the CLI. */
  async addTracer(name = 'tester'): Promise<string> {
    const add = await this.tracefleet(['user', 'add', name, '--role', 'tracer', '--password-stdin', ...this.storeArgs()], { input: 'correct-horse-battery-staple\n' });
    if (add.code !== 0) throw new Error(`tracefleet user add exited ${add.code}: ${tail(add.stderr)}`);
    const tok = await this.tracefleet(['user', 'token', name, ...this.storeArgs()]);
    if (tok.code !== 0) throw new Error(`tracefleet user token exited ${tok.code}: ${tail(tok.stderr)}`);
    this.apiToken = tok.stdout.trim();
    if (!this.apiToken) throw new Error('tracefleet user token printed nothing');
    return this.apiToken;
  }

  /** An agent on `host` capturing `opts.iface` (default eth0, its link to the fleet's segment), with `opts.args` added (--rtp-ports, say). */
  async startAgent(host: string, opts: { ring?: string; iface?: string; args?: string[] } = {}): Promise<DaemonHandle> {
    const ring = opts.ring ?? this.ring(host);
    const d = await this.net.spawn(
      host,
      process.execPath,
      [CLI, 'agent', '-i', opts.iface ?? 'eth0', '--ring', ring, '--stats-interval', '0', '--dispatcher', this.url, '--token', this.agentToken, '--name', host, ...(opts.args ?? [])],
      { env: cleanEnv({}), stopGraceMs: 10_000 },
    );
    this.agents.set(host, d);
    await waitForRecord(d, (r) => r.msg === 'capturing', 30_000, 'the agent capturing');
    return d;
  }

  /** Runs the CLI inside host `ns` (default `disp`) with the tracer's credentials in the environment; never throws on an exit code. */
  tracefleet(args: string[], opts: { host?: string; input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<RunResult> {
    const env = cleanEnv({
      TRACEFLEET_URL: this.url,
      ...(this.apiToken ? { TRACEFLEET_TOKEN: this.apiToken } : {}),
      // No config file of whoever runs the tests: the default place, in an empty directory.
      XDG_CONFIG_HOME: join(this.dir, 'xdg'),
      ...opts.env,
    });
    return run(process.execPath, [CLI, ...args], { ns: this.net.ns(opts.host ?? 'disp'), env, input: opts.input, timeoutMs: opts.timeoutMs ?? 90_000, check: false });
  }

  /** Starts the CLI inside `disp` in the background (stopped at teardown if still running): for faults injected while it waits. */
  spawnCli(args: string[]): Promise<DaemonHandle> {
    const env = cleanEnv({ TRACEFLEET_URL: this.url, TRACEFLEET_TOKEN: this.apiToken, XDG_CONFIG_HOME: join(this.dir, 'xdg') });
    return this.net.spawn('disp', process.execPath, [CLI, ...args], { env });
  }

  /** A shell pipeline inside `disp` with the CLI's environment; `$TF` runs the CLI. */
  shell(script: string, timeoutMs = 90_000): Promise<RunResult> {
    const env = cleanEnv({
      TRACEFLEET_URL: this.url,
      TRACEFLEET_TOKEN: this.apiToken,
      XDG_CONFIG_HOME: join(this.dir, 'xdg'),
      TF: `${process.execPath} ${CLI}`,
    });
    return run('bash', ['-c', `set -o pipefail; ${script}`], { ns: this.net.ns('disp'), env, timeoutMs, check: false });
  }

  /** curl inside `disp`: the body to `out` (a file) or returned as text. */
  private async curl(url: string, opts: { method?: string; headers?: string[]; body?: string; out?: string } = {}): Promise<HttpResult> {
    const args = ['-sS', '--max-time', '120', '-X', opts.method ?? 'GET'];
    for (const h of opts.headers ?? []) args.push('-H', h);
    if (opts.body !== undefined) args.push('-H', 'content-type: application/json', '--data-binary', opts.body);
    args.push('-o', opts.out ?? '-', '-w', '\n%{http_code}', url);
    const r = await run('curl', args, { ns: this.net.ns('disp'), timeoutMs: 130_000, check: false });
    if (r.code !== 0) throw new Error(`curl ${opts.method ?? 'GET'} ${url.replace(/\/\/[^@/]*@/, '//***@')} failed (${r.code}): ${tail(r.stderr)}`);
    const nl = r.stdout.lastIndexOf('\n');
    return { status: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl) };
  }

  /** The dispatcher's REST API with the tracer's token. */
  async api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
    const r = await this.curl(`${this.url}${path}`, { method, headers: [`authorization: Bearer ${this.apiToken}`], body: body === undefined ? undefined : JSON.stringify(body) });
    let json: T;
    try {
      json = JSON.parse(r.body) as T;
    } catch {
      throw new Error(`${method} ${path}: ${r.status}, not JSON: ${r.body.slice(0, 300)}`);
    }
    return { status: r.status, json };
  }

  /** Downloads an API path to a file; returns the HTTP status. */
  async apiDownload(path: string, out: string): Promise<number> {
    return (await this.curl(`${this.url}${path}`, { headers: [`authorization: Bearer ${this.apiToken}`], out })).status;
  }

  /** A document straight from the store; null when there is none. */
  async storeDoc<T = Record<string, unknown>>(docId: string): Promise<T | null> {
    const r = await this.curl(`${this.storeDbUrl()}/${encodeURIComponent(docId)}`);
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`store GET ${docId}: ${r.status} ${r.body.slice(0, 300)}`);
    return JSON.parse(r.body) as T;
  }

  /** An attachment straight from the store into `out`; false when there is none. */
  async storeAttachment(docId: string, name: string, out: string): Promise<boolean> {
    const r = await this.curl(`${this.storeDbUrl()}/${encodeURIComponent(docId)}/${encodeURIComponent(name)}`, { out });
    if (r.status === 404) return false;
    if (r.status !== 200) throw new Error(`store GET ${docId}/${name}: ${r.status}`);
    return true;
  }

  /** Waits until GET /api/agents lists every one of `names` as connected. */
  async waitAgentsConnected(names: string[], timeoutMs: number): Promise<void> {
    await waitFor(`agents ${names.join(', ')} connected`, timeoutMs, async () => {
      const r = await this.api<{ agents: Array<{ name: string; connected: boolean }> }>('GET', '/api/agents');
      if (r.status !== 200) return undefined;
      const up = new Set(r.json.agents.filter((a) => a.connected).map((a) => a.name));
      return names.every((n) => up.has(n)) ? true : undefined;
    });
  }

  /** The last lines of the dispatcher's and agents' stderr, for failure messages. */
  logs(chars = 3000): string {
    const parts = [`dispatcher: ${tail(this.dispatcher?.stderr() ?? '(not running)', chars)}`];
    for (const [h, a] of this.agents) parts.push(`agent ${h}: ${tail(a.stderr(), Math.floor(chars / 3))}`);
    return parts.join('\n');
  }

  /** Kills the dispatcher with SIGKILL, as a crash would (its own process only, not the store it started). */
  async killDispatcher(): Promise<void> {
    const d = this.dispatcher;
    if (!d) throw new Error('no dispatcher running');
    process.kill(d.pid, 'SIGKILL');
    await d.waitForExit(10_000);
    this.dispatcher = null;
  }

  async teardown(): Promise<void> {
    const errors: string[] = [];
    const attempt = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    for (const [host, a] of this.agents) {
      // A stopped agent cannot take SIGTERM until it runs again.
      await attempt(`agent ${host}`, async () => {
        try {
          process.kill(a.pid, 'SIGCONT');
        } catch {
          /* already gone */
        }
        await a.stop();
      });
    }
    if (this.dispatcher) await attempt('dispatcher', () => this.dispatcher!.stop());
    // A dispatcher killed by a test leaves its embedded store to notice by itself; whatever of its group is left goes now.
    for (const pid of this.dispatcherPids) {
      for (const p of groupMembers(pid)) {
        // Only the store's server: a group id names no process of ours once its group is empty, and may be reused.
        if (!cmdline(p).includes('embedded-server')) continue;
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    if (this.couchInNs && this.relay) {
      await attempt('drop test database', async () => {
        const r = await this.curl(`${this.couchInNs}/${this.db}`, { method: 'DELETE' });
        if (r.status !== 200 && r.status !== 202 && r.status !== 404) throw new Error(`DELETE ${this.db}: ${r.status} ${r.body.slice(0, 200)}`);
      });
    }
    if (this.relay) await attempt('relay', () => this.relay!.close());
    await attempt('network', () => this.net.destroy());
    rmSync(this.dir, { recursive: true, force: true });
    if (errors.length) throw new Error(`fleet teardown: ${errors.join('; ')}`);
  }
}

/**
 * Why these tests cannot run here, or false. They need root (captures,
 * namespaces); the rest (sipp, tshark, curl) is installed by setup and is
 * left to fail loudly when missing.
 */
export function fleetSkipReason(): string | false {
  if (!(typeof process.getuid === 'function' && process.getuid() === 0)) return 'needs root: runs agents capturing on real interfaces in network namespaces';
  const probe = `tf-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: 10_000 });
  if (add.status !== 0) return `needs network namespaces: \`ip netns add\` failed: ${(add.stderr || String(add.error ?? '')).trim()}`;
  spawnSync('ip', ['netns', 'del', probe], { timeout: 10_000 });
  return false;
}
