/*
 * The all-in-one demo (`tracefleet demo`, what `npm start` runs): a
 * dispatcher with its embedded store, one agent capturing on loopback and
 * connected to it, demo SIP calls from sipp, and a first admin, so that a
 * newcomer can trace a call within seconds. It is an app of its own, at the
 * top level beside bin/ and cli/, because it is the one place that runs both
 * sides in one process: agent/ never imports dispatcher/ code.
 */

import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import type { Logger } from '../shared/log/log';
import { startAgent, RunningAgent } from '../agent/daemon/run';
import { agentStatusOf, connectDispatcher, DispatcherLink } from '../agent/link/client';
import { serveTraces, TraceServer } from '../agent/trace/serve';
import { DemoCall, DemoTraffic, startDemoTraffic } from './traffic';
import { startDispatcher, RunningDispatcher } from '../dispatcher/daemon/run';
import { Auth } from '../dispatcher/auth/auth';

export const DEMO_AGENT = 'demo-agent';
export const DEMO_ADMIN = 'admin';

export interface DemoOptions {
  host: string;
  port: number;
  /** Everything the demo keeps: ring/, dispatcher/ (store and spool), admin.txt. */
  dataDir: string;
  /** UDP port of the demo callee on 127.0.0.1; the caller uses the next one. */
  sipPort: number;
  /** Give an existing admin a new generated password. */
  resetAdmin?: boolean;
  /** The web page's files. */
  staticDir?: string;
  version: string;
  /** The demo process's root logger: the agent, the dispatcher and the traffic log through its children. */
  logger: Logger;
  onCall?: (call: DemoCall) => void;
}

export interface DemoAdmin {
  user: string;
  /** Null when the admin exists with a password this demo did not make (the banner says how to set one). */
  password: string | null;
  /** An API token of the admin, for the CLI examples. */
  token: string;
  /** Where the password comes from: this run made the admin, gave it a new password (--reset-admin), or read admin.txt. */
  origin: 'new' | 'reset' | 'saved';
  /** Where the credentials are kept (mode 0600). */
  file: string;
}

export interface RunningDemo {
  url: string;
  admin: DemoAdmin;
  ringDir: string;
  dispatcherDir: string;
  /** Process ids this demo started (sipp, the embedded store), for checks that nothing is left. */
  children(): number[];
  traffic: DemoTraffic;
  agent: RunningAgent;
  /** Stops everything the demo started: sipp, the agent (indexes sealed), the dispatcher and its store. */
  stop(): Promise<void>;
}

/** var/demo/admin.txt: `key: value` lines. */
const adminFile = z.object({
  user: z.literal(DEMO_ADMIN),
  password: z.string().min(8).max(1024).optional(),
  token: z.string().min(8).max(1024).optional(),
});

function readAdminFile(file: string): z.infer<typeof adminFile> | null {
  if (!existsSync(file)) return null;
  const fields: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^(\w+):\s*(\S+)\s*$/.exec(line);
    if (m) fields[m[1]] = m[2];
  }
  const r = adminFile.safeParse(fields);
  return r.success ? r.data : null;
}

const ALNUM = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** 18 characters from 57 (about 105 bits), without look-alikes (0/O, 1/l/I) or a leading '-' that a CLI would read as a flag. */
function newPassword(): string {
  let out = '';
  // Rejection sampling keeps every character equally likely; 57 * 4 = 228 values of a byte are used.
  for (let round = 0; round < 16 && out.length < 18; round++) {
    for (const b of randomBytes(32)) if (b < ALNUM.length * 4 && out.length < 18) out += ALNUM[b % ALNUM.length];
  }
  return out;
}

function writeAdminFile(file: string, a: { password: string | null; token: string }): void {
  const text = [
    '# The demo admin, made by `tracefleet demo`: its password (when the demo made it) and an API token.',
    `user: ${DEMO_ADMIN}`,
    ...(a.password ? [`password: ${a.password}`] : []),
    `token: ${a.token}`,
    '',
  ].join('\n');
  writeFileSync(file, text, { mode: 0o600 });
  // An existing file keeps its mode on write: set it again.
  chmodSync(file, 0o600);
}

/**
 * The admin: created with a generated password when missing; otherwise the
 * credentials of admin.txt when they still work. An API token is made when the
 * saved one no longer works.
 */
async function ensureAdmin(auth: Auth, file: string, reset: boolean): Promise<DemoAdmin> {
  const saved = readAdminFile(file);
  const existing = await auth.store.getUser(DEMO_ADMIN);
  if (existing && reset) {
    const password = newPassword();
    await auth.setPassword(DEMO_ADMIN, password);
    const token = saved?.token && (await auth.authenticate({ bearer: saved.token })) ? saved.token : await auth.createToken(DEMO_ADMIN);
    writeAdminFile(file, { password, token });
    return { user: DEMO_ADMIN, password, token, origin: 'reset', file };
  }
  if (!existing) {
    const password = newPassword();
    await auth.addUser(DEMO_ADMIN, password, ['admin']);
    const token = await auth.createToken(DEMO_ADMIN);
    writeAdminFile(file, { password, token });
    return { user: DEMO_ADMIN, password, token, origin: 'new', file };
  }
  const password = saved?.password && (await auth.authenticate({ user: DEMO_ADMIN, password: saved.password }, { address: 'demo' })) ? saved.password : null;
  let token = saved?.token && (await auth.authenticate({ bearer: saved.token })) ? saved.token : null;
  if (!token) token = await auth.createToken(DEMO_ADMIN);
  writeAdminFile(file, { password, token });
  return { user: DEMO_ADMIN, password, token, origin: 'saved', file };
}

function explainListenError(e: unknown, host: string, port: number): Error {
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'EADDRINUSE') return new Error(`${host}:${port} is already in use (another dispatcher or demo?): stop it, or give --listen ${host}:${port + 1}`);
  if (err.code === 'EACCES') return new Error(`not allowed to listen on ${host}:${port}: give --listen with a port above 1023`);
  return err;
}

export async function startDemo(opts: DemoOptions): Promise<RunningDemo> {
  const log = opts.logger;
  mkdirSync(opts.dataDir, { recursive: true });
  const ringDir = join(opts.dataDir, 'ring');
  const dispatcherDir = join(opts.dataDir, 'dispatcher');
  // A new agent token every run: only this process knows it.
  const agentToken = randomBytes(24).toString('hex');
  const filter = `udp port ${opts.sipPort} or udp port ${opts.sipPort + 1}`;

  // Capture first: when it cannot start (not root) nothing else is started for nothing.
  const agent = await startAgent({ ringDir, interfaces: ['lo'], filter, ringMaxBytes: 256 * 1024 * 1024, maxSegmentBytes: 8 * 1024 * 1024, maxSegmentSeconds: 60, logger: log });
  let dispatcher: RunningDispatcher;
  try {
    dispatcher = await startDispatcher({
      host: opts.host,
      port: opts.port,
      dataDir: dispatcherDir,
      agentTokens: [{ agent: DEMO_AGENT, token: agentToken }],
      staticDir: opts.staticDir,
      logger: log,
    });
  } catch (e) {
    await agent.stop();
    throw explainListenError(e, opts.host, opts.port);
  }

  let link: DispatcherLink | null = null;
  let traces: TraceServer | null = null;
  let traffic: DemoTraffic | null = null;
  let stopping: Promise<void> | null = null;
  const stopAll = () =>
    (stopping ??= (async () => {
      await traffic?.stop();
      traces?.close();
      link?.close();
      await agent.stop();
      await dispatcher.close();
    })());
  try {
    const admin = await ensureAdmin(await Auth.open(dispatcher.store.store), join(opts.dataDir, 'admin.txt'), opts.resetAdmin ?? false);
    const status = () => agentStatusOf(agent.engine.stats(), ringDir, agent.indexer.errors);
    link = connectDispatcher({
      url: dispatcher.url,
      token: agentToken,
      name: DEMO_AGENT,
      hello: () => ({ version: opts.version, hostname: hostname().slice(0, 255), interfaces: ['lo'], ...status() }),
      status,
      logger: log.child({ component: 'agent.link' }),
    });
    traces = serveTraces(link.socket, { ringDir, logger: log.child({ component: 'agent.trace' }) });
    traffic = startDemoTraffic({ uasPort: opts.sipPort, logger: log.child({ component: 'demo.traffic' }), onCall: opts.onCall });
    const t = traffic;
    return {
      url: dispatcher.url,
      admin,
      ringDir,
      dispatcherDir,
      traffic: t,
      agent,
      children: () => [...t.pids(), ...(dispatcher.store.embedded ? [dispatcher.store.embedded.pid] : [])],
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}

/** A word as the shell reads it back unchanged. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * What the demo prints once it runs: the page, the admin's credentials, and
 * two CLI examples that work as printed from the current directory.
 */
export function demoBanner(d: RunningDemo, o: { cli: string; number: string; numbers: string[] }): string {
  const env = `TRACEFLEET_URL=${d.url} TRACEFLEET_TOKEN=${d.admin.token}`;
  const cli = shellQuote(o.cli);
  const lines = [
    '',
    'tracefleet demo is running: a dispatcher, one agent ("demo-agent") capturing on lo, and DEMO TRAFFIC (sipp calls between made-up numbers)',
    '',
    `  Web page:   ${d.url}/`,
  ];
  if (d.admin.password) {
    lines.push(`  Log in as:  user ${d.admin.user}, password ${d.admin.password}${{ new: ' (new)', reset: ' (new, --reset-admin)', saved: ' (from an earlier run)' }[d.admin.origin]}`);
    lines.push(`              (kept in ${shellQuote(d.admin.file)}, mode 0600)`);
  } else {
    lines.push(`  Log in as:  user ${d.admin.user}, with its current password (${shellQuote(d.admin.file)} has none that works). To set one:`);
    lines.push(`              ${cli} user passwd ${d.admin.user} --data-dir ${shellQuote(d.dispatcherDir)}   (while this runs)`);
    lines.push(`              or stop this and run the demo again with --reset-admin (a new generated password)`);
  }
  lines.push(
    `  Numbers:    ${o.numbers.join(', ')} (made up; every demo call is between two of them, one every 2 s)`,
    '',
    '  Trace a demo call from another terminal (the token is an API token of the admin):',
    `    ${env} ${cli} trace --number ${o.number} --since 5m -o demo-call.pcap`,
    `    ${env} ${cli} trace --number ${o.number} --since 5m -o - | tshark -r - -Y sip`,
    '',
    '  Ctrl-C stops everything this command started.',
    '',
  );
  return lines.join('\n');
}
