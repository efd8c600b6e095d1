import { createWriteStream, statSync, unlinkSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Socket } from 'socket.io-client';
import type { Argv, CommandModule } from 'yargs';
import type { AgentView, TraceView } from '../../shared/protocol/client';
import type { TraceRequest } from '../../shared/query/query';
import type { FullMessage } from '../../shared/sip/message';
import type { CallFigures } from '../../shared/query/call-figures';
import type { DispatcherClient, TraceMessage } from '../api-client';
import type { Connection, ConnectionFlags } from '../connection';
import { EXIT, Exit } from '../../shared/errors/catalogue';
import { CliError, exitOf, jsonOfError } from '../errors';
import { FILTER_OPTIONS, filterOptions, traceRequestOf } from '../filters';
import type { FlagTable } from '../flags';
import { formatClocks, formatHops, formatStreams, humanBytes, safeText, shortTime, table } from '../format';
import { checkWritable } from '../output-file';
import { readFirstLine, readSecret } from '../prompt';

/*
 * Loaded when a command runs, not when the CLI starts: Socket.IO and zod
 * would cost every `tracefleet` run (query, --version, --help) their load time.
 */
const apiClient = () => require('../api-client') as typeof import('../api-client');
const connection = () => require('../connection') as typeof import('../connection');
const progressModule = () => require('../progress') as typeof import('../progress');
const traceRunModule = () => require('../trace-run') as typeof import('../trace-run');
const followRun = () => require('../follow-run') as typeof import('../follow-run');
const traceState = () => require('../trace-state') as typeof import('../trace-state');

/*
 * The commands that talk to a dispatcher: trace, traces, show, download,
 * agents, login. Each ends the process with one of the exit codes in
 * errors.ts; an error is one stderr line `tracefleet: ...` saying what to do.
 */

type Args = Record<string, unknown>;

const CONNECTION = 'Connection:';

/** The flags that say which dispatcher and who: one table for yargs and the hand parser of a hot `trace` (cli/flags.ts). */
export const CONNECTION_OPTIONS = {
  url: { type: 'string', group: CONNECTION, describe: 'dispatcher URL (env TRACEFLEET_URL, then the config file; default http://127.0.0.1:8060)' },
  token: { type: 'string', group: CONNECTION, describe: 'session or API token (env TRACEFLEET_TOKEN); tracefleet login saves one in the config file' },
  user: { type: 'string', group: CONNECTION, describe: 'user name (env TRACEFLEET_USER); the password is asked on the terminal, or taken from TRACEFLEET_PASSWORD' },
  password: {
    type: 'string',
    group: CONNECTION,
    describe: 'password: AVOID, every user of this machine can read it in the process list; use tracefleet login, the prompt or TRACEFLEET_PASSWORD',
  },
  config: { type: 'string', group: CONNECTION, describe: 'config file (env TRACEFLEET_CONFIG; default $XDG_CONFIG_HOME/tracefleet/config.json or ~/.config/tracefleet/config.json)' },
  insecure: { type: 'boolean', default: false, group: CONNECTION, describe: "accept the dispatcher's TLS certificate unchecked (self-signed): only on a network you trust" },
  ca: { type: 'string', group: CONNECTION, describe: "PEM file of the CA that signed the dispatcher's certificate" },
} as const satisfies FlagTable;

export function connectionOptions<T>(y: Argv<T>) {
  return y.options(CONNECTION_OPTIONS);
}

function flagsOf(a: Args): ConnectionFlags {
  return {
    url: a.url as string | undefined,
    token: a.token as string | undefined,
    user: a.user as string | undefined,
    password: a.password as string | undefined,
    config: a.config as string | undefined,
    insecure: a.insecure as boolean | undefined,
    ca: a.ca as string | undefined,
  };
}

function say(line: string): void {
  process.stderr.write(`tracefleet: ${safeText(line)}\n`);
}

/** The connection settings, with a password asked on the terminal when a user was given without one. */
export async function connect(a: Args): Promise<Connection> {
  const conn = connection().resolveConnection(flagsOf(a), process.env);
  for (const n of conn.notes) say(`note: ${n}`);
  const c = conn.credentials;
  if (c && 'user' in c && c.password === undefined) {
    if (!process.stdin.isTTY) {
      throw new CliError(`no password for user ${c.user} and no terminal to ask it on: run tracefleet login --user ${c.user} --password-stdin, or set TRACEFLEET_PASSWORD`, EXIT.BAD_INPUT);
    }
    c.password = await readSecret(`password for ${c.user} at ${conn.url}: `);
  }
  return conn;
}

/** Ends the process with the command's exit code once stdout has taken everything. */
export function run(fn: (a: Args) => Promise<Exit>): (a: Args) => Promise<void> {
  return async (a) => {
    // A reader that went away (| head): downloads report it themselves; a table or JSON just stops.
    process.stdout.on('error', () => {});
    let code: number;
    try {
      code = await fn(a);
    } catch (e) {
      code = report(e, a.json === true);
    }
    // Socket.IO's reconnection timers must not keep a finished command alive.
    process.stdout.write('', () => process.exit(code));
  };
}

/** One stderr line; with --json also `{code, field, message}` on stdout, for the script that reads it. */
function report(e: unknown, json: boolean): Exit {
  const err = e as Error;
  const code = exitOf(err);
  if (json) process.stdout.write(`${jsonOfError(err)}\n`);
  say(String(err?.message ?? err).replace(/\s*\n\s*/g, ' '));
  if (process.env.TRACEFLEET_DEBUG) process.stderr.write(`${err?.stack}\n`);
  return code;
}

function refuseTtyStdout(): void {
  if (process.stdout.isTTY) throw new CliError('refusing to write a binary file to a terminal: pipe it (| wireshark -k -i -) or give -o FILE', EXIT.BAD_INPUT);
}

/** Fails early (before a trace runs) when -o FILE cannot be written. */
/**
 * Streams a download to -o: stdout as is, a file created only once the
 * dispatcher said yes and removed again if the download breaks off.
 */
async function saveTo(client: DispatcherClient, path: string, out: string, signal?: AbortSignal): Promise<number> {
  if (out === '-') return client.download(path, () => process.stdout as Writable, { end: false, signal });
  let created = false;
  try {
    return await client.download(
      path,
      () => {
        created = true;
        return createWriteStream(out);
      },
      { signal },
    );
  } catch (e) {
    if (created) {
      try {
        if (statSync(out).isFile()) unlinkSync(out);
      } catch {
        /* nothing to remove */
      }
    }
    throw e;
  }
}

/** A trace's filters as the flags that would ask for it again. */
export function requestFlags(r: TraceRequest): string {
  const q = (v: string) => (/^[\w@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);
  const parts: string[] = [];
  const lists: Array<[keyof TraceRequest, string]> = [
    ['callId', 'call-id'],
    ['number', 'number'],
    ['ip', 'ip'],
    ['port', 'port'],
    ['correlation', 'correlation'],
    ['method', 'method'],
    ['status', 'status'],
  ];
  for (const [k, flag] of lists) for (const v of (r[k] as string[] | undefined) ?? []) parts.push(`--${flag} ${q(v)}`);
  if (r.since) parts.push(`--since ${q(r.since)}`);
  if (r.until) parts.push(`--until ${q(r.until)}`);
  if (r.rtp) parts.push('--rtp');
  if (r.rtpStats !== undefined) parts.push(r.rtpStats ? '--rtp-stats' : '--no-rtp-stats');
  if (r.maxPackets) parts.push(`--max-packets ${r.maxPackets}`);
  if (r.maxBytes) parts.push(`--max-bytes ${r.maxBytes}`);
  if (r.all) parts.push('--all');
  if (r.hosts) parts.push(`--hosts ${q(r.hosts.join(','))}`);
  if (r.alignClocks) parts.push('--align-clocks');
  return parts.join(' ') || '(none)';
}

function hostsTable(v: TraceView): string[] {
  return table(
    [{ title: 'HOST' }, { title: 'STATE' }, { title: 'PACKETS', right: true }, { title: 'BYTES', right: true }, { title: 'PCAP' }, { title: 'ERROR' }],
    v.hosts.map((h) => [h.host, h.state + (h.truncated ? ' (truncated)' : ''), String(h.packets), humanBytes(h.bytes), h.stored ? 'yes' : 'no', h.error ?? '']),
  );
}

/** A trace for people: what was asked, by whom, how it went, each host. */
export function formatTrace(v: TraceView): string[] {
  const done = v.hosts.filter((h) => h.state === 'done').length;
  return [
    `trace     ${v.id}`,
    `state     ${v.state}${v.finishedAt ? ` (finished ${shortTime(v.finishedAt)})` : ''}`,
    `user      ${v.user}`,
    `created   ${shortTime(v.createdAt)}`,
    `filters   ${requestFlags(v.request)}`,
    `hosts     ${done}/${v.hosts.length} done`,
    `merged    ${v.merged ? `${v.merged.packets} packets, ${humanBytes(v.merged.bytes)}${v.merged.duplicates ? `, ${v.merged.duplicates} duplicates dropped` : ''}` : 'no merged PCAP (yet)'}`,
    '',
    ...hostsTable(v),
    ...(v.clocks ? ['', ...formatClocks(v.clocks)] : []),
    ...(v.hops && v.hops.length > 0 ? ['', 'RTP hops (which hop went bad)', ...formatHops(v.hops)] : []),
  ].map(safeText);
}

export function formatMessages(messages: TraceMessage[]): string[] {
  if (messages.length === 0) return ['no SIP messages'];
  // With legs: which call each dialog is a leg of (its earliest leg's Call-ID), and how a linked leg was found.
  const legs = messages.some((m) => m.legGroup !== undefined);
  return table(
    [{ title: 'TIME' }, { title: 'HOST' }, { title: 'SRC' }, { title: '' }, { title: 'DST' }, { title: 'MESSAGE' }, ...(legs ? [{ title: 'LEG OF' }] : []), { title: 'CALL-ID' }],
    messages.map((m) => [
      m.time,
      m.host,
      m.src,
      '→',
      m.dst,
      m.method !== null && m.status === null ? m.method : `${m.status ?? ''}${m.reason ? ` ${m.reason}` : ''}${m.cseq ? ` (${m.cseq})` : ''}`,
      ...(legs ? [m.legGroup === undefined ? '' : m.legGroup === m.callId ? '(itself)' : `${m.legGroup}${m.legVia ? ` by ${m.legVia}` : ''}`] : []),
      m.callId,
    ]),
  );
}

/** Milliseconds as seconds with three decimals, '-' when unknown. */
function secs(ms: number | null): string {
  return ms === null ? '-' : (ms / 1000).toFixed(3);
}

/** The figures of each dialog, per host: the call's outcome and delays in one row. */
export function formatCalls(calls: CallFigures[]): string[] {
  if (calls.length === 0) return ['no INVITE dialogs'];
  return table(
    [{ title: 'CALL-ID' }, { title: 'HOST' }, { title: 'FINAL' }, { title: 'ENDED BY' }, { title: 'SRD s', right: true }, { title: 'ANSWER s', right: true }, { title: 'DURATION s', right: true }, { title: 'RETRANS', right: true }],
    calls.map((c) => [
      c.callId,
      c.host,
      c.finalStatus === null ? '-' : `${c.finalStatus}${c.finalReason ? ` ${c.finalReason}` : ''}`,
      c.endedBy ? `${c.endedBy} (${c.endedWith})` : '-',
      secs(c.srdMs),
      secs(c.answerMs),
      secs(c.durationMs),
      String(c.retransmissions),
    ]),
  );
}

/**
 * One message whole: a title line, the start line, each header, a blank
 * line and the body, every line through safeText (SIP is written by
 * strangers: no control, bidi or zero-width character reaches the terminal).
 */
export function formatFullMessage(n: number, m: TraceMessage & { full: FullMessage | null }): string[] {
  const title = `── #${n} ${m.time} ${m.host} ${m.src} → ${m.dst} ${m.transport}${m.truncated ? ' (cut by the snap length)' : ''}${m.hep ? ' (through HEP)' : ''}`;
  if (!m.full) return [safeText(title), '   (not in the stored PCAP: only its summary is known)'];
  const f = m.full;
  const lines = [title, f.startLine, ...f.headers.map((x) => `${x.name}: ${x.value}`)];
  if (f.body.length > 0) lines.push('', ...f.body.split(/\r?\n/).filter((l, i, all) => l !== '' || i < all.length - 1));
  if (f.cut) lines.push(`(cut: the message is ${f.length} bytes; limits keep its first bytes, headers and characters)`);
  return lines.map(safeText);
}

/** Pages of whole messages asked for at once: each streams from the store on the dispatcher. */
const FULL_PAGE = 200;

function hostsSummary(v: TraceView): string {
  const done = v.hosts.filter((h) => h.state === 'done').length;
  return `${done}/${v.hosts.length}`;
}

function packetsOf(v: TraceView): number {
  return v.merged ? v.merged.packets : v.hosts.reduce((n, h) => n + h.packets, 0);
}

export function formatTraces(traces: TraceView[]): string[] {
  const rows = [...traces]
    .sort((x, y) => (x.createdAt < y.createdAt ? 1 : x.createdAt > y.createdAt ? -1 : 0))
    .map((t) => [t.id, shortTime(t.createdAt), t.user, t.state, hostsSummary(t), String(packetsOf(t))]);
  return table([{ title: 'ID' }, { title: 'CREATED' }, { title: 'USER' }, { title: 'STATE' }, { title: 'HOSTS OK', right: true }, { title: 'PACKETS', right: true }], rows);
}

export function formatAgents(agents: AgentView[]): string[] {
  const rows = [...agents]
    .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
    .map((ag) => {
      const span = ag.ring && (ag.ring.oldest || ag.ring.newest) ? `${shortTime(ag.ring.oldest)} .. ${shortTime(ag.ring.newest)}` : '-';
      const capture = Object.entries(ag.capture)
        .map(([i, c]) => `${i} ${c.packets}/${c.dropped + c.ifDropped}${c.running ? '' : ' (stopped)'}`)
        .join(', ');
      return [ag.name, ag.connected ? 'yes' : 'no', shortTime(ag.lastSeen), span, ag.ring ? humanBytes(ag.ring.bytes) : '-', capture || '-'];
    });
  return table(
    [{ title: 'NAME' }, { title: 'CONNECTED' }, { title: 'LAST SEEN' }, { title: 'RING SPAN (oldest .. newest)' }, { title: 'RING', right: true }, { title: 'CAPTURE (packets/drops)' }],
    rows,
  );
}

function print(lines: string[]): void {
  process.stdout.write(lines.join('\n') + '\n');
}

function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}

// ---- trace ---------------------------------------------------------------

const MAX_TIMEOUT_S = 7 * 24 * 3600;

async function traceCmd(a: Args): Promise<Exit> {
  const timing = a.timing === true ? new (require('../timing') as typeof import('../timing')).Timing() : null;
  timing?.mark('handler');
  try {
    return await traceRun(a, timing);
  } finally {
    timing?.print();
  }
}

async function traceRun(a: Args, timing: import('../timing').Timing | null): Promise<Exit> {
  const out = a.o as string | undefined;
  const json = a.json as boolean;
  if (out === '-' && json) throw new CliError('-o - and --json would both write to stdout: give -o FILE with --json', EXIT.BAD_INPUT);
  const timeoutS = a.timeout as number;
  if (!Number.isFinite(timeoutS) || timeoutS <= 0 || timeoutS > MAX_TIMEOUT_S) throw new CliError(`bad --timeout ${String(a.timeout)}: give seconds, 1 to ${MAX_TIMEOUT_S}`, EXIT.BAD_INPUT);
  const req = traceRequestOf(a);
  if (out === '-') refuseTtyStdout();
  else if (out) checkWritable(out);
  const conn = await connect(a);
  const { DispatcherClient } = apiClient();
  const client = new DispatcherClient(conn);
  const progress = progressModule().progressFor(process.stderr);
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(EXIT.INTERRUPTED);
    abort.abort();
    progress.note('interrupted: cancelling the trace (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  let socket: Socket | null = null;
  try {
    // Ctrl-C while connecting: no trace is started.
    const aborted = new Promise<never>((_, reject) => abort.signal.addEventListener('abort', () => reject(new CliError('interrupted before the trace started', EXIT.INTERRUPTED)), { once: true }));
    aborted.catch(() => {});
    timing?.mark('connect');
    socket = await Promise.race([client.socket(), aborted]);
    timing?.mark('connected');
    if (abort.signal.aborted) throw new CliError('interrupted before the trace started', EXIT.INTERRUPTED);
    // The merged PCAP's download starts as soon as the trace says it has one, beside the read of its final view.
    let early: Promise<number> | null = null;
    const onMerged = (id: string) => {
      if (!out) return;
      timing?.mark('download_start');
      early = saveTo(client, DispatcherClient.pcapPath(id), out, abort.signal);
      early.catch(() => {}); // awaited below, or moot when the trace did not end with its PCAP
    };
    const r = await traceRunModule().followTrace(client, socket, req, { progress, timeoutMs: timeoutS * 1000, signal: abort.signal, onMerged, ...(timing ? { timing } : {}) });
    socket.disconnect();
    const v = r.trace;
    timing?.trace(v.id);
    progress.finish({ id: v.id, state: v.state, hosts: v.hosts.map((h) => ({ ...h, at: h.updatedAt })), ...(v.merged ? { merged: v.merged } : {}) });
    if (r.outcome === 'interrupted') {
      say(`interrupted: trace ${v.id} ${v.state === 'running' ? 'asked to cancel' : v.state}`);
      return EXIT.INTERRUPTED;
    }
    if (out) {
      if (v.merged) {
        timing?.mark('download_start');
        const bytes = await (early ?? saveTo(client, DispatcherClient.pcapPath(v.id), out, abort.signal));
        timing?.mark('download_end');
        say(`trace ${v.id} ${v.state}: ${v.merged.packets} packets (${humanBytes(bytes)}) from ${hostsSummary(v)} hosts written to ${out === '-' ? 'stdout' : out}`);
      } else {
        say(`trace ${v.id} ${v.state}: no merged PCAP to write (no host stored packets); nothing written to ${out === '-' ? 'stdout' : out}`);
      }
    }
    if (json) printJson(v);
    else if (!out) {
      print(formatTrace(v));
      if (v.merged) say(`get the packets with: tracefleet download ${v.id} -o trace.pcap`);
    }
    if (r.outcome === 'timeout') {
      say(`gave up after ${timeoutS} s (--timeout) and cancelled trace ${v.id}`);
      return EXIT.FAILED;
    }
    return traceState().exitOfTrace(v);
  } finally {
    process.off('SIGINT', onSigint);
    socket?.disconnect();
    client.close();
  }
}

/** `trace`'s flags: yargs reads them, and so does the hand parser when `trace` runs hot (cli/hot-trace.ts). */
export const TRACE_OPTIONS = {
  ...FILTER_OPTIONS,
  hosts: { type: 'string', array: true, describe: 'agents to ask, comma-separated (default: every connected agent)' },
  'align-clocks': { type: 'boolean', default: false, describe: "write the merged file on corrected clocks (PCAPNG; each host's offset in its interfaces' comments); host files keep theirs" },
  timeout: { type: 'number', default: 600, describe: 'seconds to wait for the result; then the trace is cancelled (exit 1)' },
  o: { alias: 'output', type: 'string', describe: 'write the merged PCAP here (- for stdout); without it the result is only shown' },
  json: { type: 'boolean', default: false, describe: 'print the final trace as JSON on stdout' },
  timing: { type: 'boolean', default: false, describe: 'print when each step happened (ms since the process started) as one line on stderr: tracefleet timing: {json}' },
  ...CONNECTION_OPTIONS,
} as const satisfies FlagTable;

export const traceCommand: CommandModule<object, Args> = {
  command: 'trace',
  describe: 'run a trace on the fleet through the dispatcher: live per-host progress, then the merged PCAP',
  builder: (y) => y.options(TRACE_OPTIONS) as unknown as Argv<Args>,
  handler: run(traceCmd),
};

// ---- follow --------------------------------------------------------------

async function followCmd(a: Args): Promise<Exit> {
  const out = a.o as string | undefined;
  const req = followRun().followRequestOf(a);
  if (out === '-') refuseTtyStdout();
  else if (out) checkWritable(out);
  else if (!process.stdout.isTTY) throw new CliError('give -o FILE or -o - for the live PCAP; without -o the follow prints a line per SIP message, on a terminal only', EXIT.BAD_INPUT);
  const conn = await connect(a);
  const { DispatcherClient } = apiClient();
  const client = new DispatcherClient(conn);
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(EXIT.INTERRUPTED);
    abort.abort();
    say('interrupted: stopping the follow, what it followed is stored (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  let socket: Socket | null = null;
  let file: Writable | null = null;
  try {
    socket = await client.socket();
    file = out === '-' ? process.stdout : out ? createWriteStream(out) : null;
    const r = await followRun().runFollow(socket, req, { out: file, line: (l) => process.stdout.write(`${l}\n`), signal: abort.signal });
    if (file && file !== process.stdout) await new Promise<void>((resolve) => file!.end(() => resolve()));
    const e = r.end;
    const what = e ? `${e.packets} packets (${humanBytes(e.bytes)})` : `${humanBytes(r.bytes)}`;
    const why = e ? { duration: 'its --duration ran out', packets: '--max-packets reached', bytes: '--max-bytes reached', stopped: 'stopped', 'client-gone': 'this client went away', 'slow-client': 'this client was too slow', 'agents-gone': 'no agent follows any more', shutdown: 'the dispatcher is shutting down' }[e.reason] : 'the dispatcher connection was lost';
    say(`follow ${r.trace.id} ended (${why}): ${what}${out ? ` written to ${out === '-' ? 'stdout' : out}` : ''}; stored as trace ${r.trace.id} (tracefleet show ${r.trace.id})`);
    if (e?.message) say(e.message);
    return followRun().exitOfFollow(r, abort.signal.aborted);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    socket?.disconnect();
    client.close();
  }
}

export const followCommand: CommandModule<object, Args> = {
  command: 'follow',
  describe: 'follow matching calls live across the fleet: a live PCAP (-o FILE, or -o - | wireshark -k -i -) or a line per SIP message; stored as a trace when it ends',
  builder: (y) =>
    connectionOptions(
      filterOptions(y)
        .option('hosts', { type: 'string', array: true, describe: 'agents to ask, comma-separated (default: every connected agent)' })
        .option('duration', { type: 'string', default: '10m', describe: 'how long to follow (90s, 10m, 2h); Ctrl-C ends it sooner' })
        .option('o', { alias: 'output', type: 'string', describe: 'write the live PCAP here (- for stdout), flushed as packets arrive' }),
    ) as unknown as Argv<Args>,
  handler: run(followCmd),
};

// ---- traces --------------------------------------------------------------

async function tracesCmd(a: Args): Promise<Exit> {
  const limit = a.limit as number;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new CliError(`bad --limit ${String(a.limit)}: give 1 to 1000`, EXIT.BAD_INPUT);
  const { DispatcherClient } = apiClient();
  const client = new DispatcherClient(await connect(a));
  try {
    const page = await client.traces({ limit, bookmark: a.page as string | undefined, user: a.owner as string | undefined });
    if (a.json) printJson(page);
    else if (page.traces.length === 0) say(a.page ? 'no more traces' : 'no traces yet');
    else print(formatTraces(page.traces));
    if (page.bookmark && !a.json && page.traces.length >= limit) {
      say(`more: tracefleet traces --page ${page.bookmark}${limit !== 20 ? ` --limit ${limit}` : ''}${a.owner ? ` --owner ${String(a.owner)}` : ''}`);
    }
    return EXIT.OK;
  } finally {
    client.close();
  }
}

export const tracesCommand: CommandModule<object, Args> = {
  command: 'traces',
  describe: "list traces on the dispatcher, newest first",
  builder: (y) =>
    connectionOptions(
      y
        .option('limit', { type: 'number', default: 20, describe: 'traces per page' })
        .option('owner', { type: 'string', describe: "only this user's traces" })
        .option('page', { type: 'string', describe: 'the next page: the token the previous page printed' })
        .option('json', { type: 'boolean', default: false, describe: 'print {traces, bookmark} as JSON' }),
    ) as unknown as Argv<Args>,
  handler: run(tracesCmd),
};

// ---- show ----------------------------------------------------------------

async function showCmd(a: Args): Promise<Exit> {
  const { DispatcherClient } = apiClient();
  const client = new DispatcherClient(await connect(a));
  try {
    const id = String(a.id);
    const v = await client.trace(id);
    const streams = await client.streams(id);
    if (a.full) {
      const messages: Array<TraceMessage & { full: FullMessage | null }> = [];
      let calls: CallFigures[] = [];
      const notes = new Set<string>();
      if (!a.json) print(formatTrace(v));
      for (let offset = 0; ; ) {
        const page = await client.fullMessages(id, offset, FULL_PAGE);
        if (page.note) notes.add(page.note);
        if (offset === 0) {
          calls = page.calls;
          if (!a.json) {
            print(['', ...formatCalls(calls)]);
            if (streams.length > 0) print(['', ...formatStreams(streams)]);
          }
        }
        if (a.json) messages.push(...page.messages);
        else page.messages.forEach((m, i) => print(['', ...formatFullMessage(offset + i, m)]));
        offset += page.messages.length;
        if (page.messages.length === 0 || offset >= page.total) break;
      }
      for (const n of notes) process.stderr.write(`tracefleet: note: ${safeText(n)}\n`);
      if (a.json) printJson({ trace: v, calls, messages, streams });
      return EXIT.OK;
    }
    const m = a.messages ? await client.messages(id) : null;
    if (a.json) printJson(m ? { trace: v, calls: m.calls, messages: m.messages, streams } : { trace: v, streams });
    else {
      print(formatTrace(v));
      if (m) print(['', ...formatCalls(m.calls)]);
      if (streams.length > 0) print(['', ...formatStreams(streams)]);
      if (m) print(['', ...formatMessages(m.messages)]);
    }
    return EXIT.OK;
  } finally {
    client.close();
  }
}

export const showCommand: CommandModule<object, Args> = {
  command: 'show <id>',
  describe: 'one trace: its filters, state, hosts and RTP streams (--messages: its SIP messages)',
  builder: (y) =>
    connectionOptions(
      y
        .positional('id', { type: 'string', describe: 'trace id (tracefleet traces lists them)' })
        .option('messages', { type: 'boolean', default: false, describe: 'also list the SIP messages: time, host, source → destination, method/status, Call-ID' })
        .option('full', { type: 'boolean', default: false, describe: 'with --messages: each message whole (start line, every header, the body), decoded from the stored PCAPs' })
        .option('json', { type: 'boolean', default: false, describe: 'print {trace, calls?, messages?, streams} as JSON (with --full, each message has `full`)' }),
    ) as unknown as Argv<Args>,
  handler: run(showCmd),
};

// ---- download ------------------------------------------------------------

async function downloadCmd(a: Args): Promise<Exit> {
  const out = a.o as string;
  if (out === '-') refuseTtyStdout();
  else checkWritable(out);
  const { DispatcherClient } = apiClient();
  const client = new DispatcherClient(await connect(a));
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.on('SIGINT', onSigint);
  try {
    const id = String(a.id);
    const path = DispatcherClient.pcapPath(id, { host: a.host as string | undefined, tar: a.tar as boolean });
    const bytes = await saveTo(client, path, out, abort.signal);
    const what = a.tar ? 'trace archive' : a.host ? `packets of host ${String(a.host)}` : 'merged PCAP';
    say(`${what} of trace ${id}: ${humanBytes(bytes)} written to ${out === '-' ? 'stdout' : out}`);
    return EXIT.OK;
  } finally {
    process.off('SIGINT', onSigint);
    client.close();
  }
}

export const downloadCommand: CommandModule<object, Args> = {
  command: 'download <id>',
  describe: "a trace's merged PCAP, one host's PCAP (--host), or everything as a tar (--tar)",
  builder: (y) =>
    connectionOptions(
      y
        .positional('id', { type: 'string', describe: 'trace id' })
        .option('host', { type: 'string', describe: "only this host's packets" })
        .option('tar', { type: 'boolean', describe: 'the whole trace: merged PCAP, host PCAPs, trace and messages JSON' })
        .conflicts('host', 'tar')
        .option('o', { alias: 'output', type: 'string', demandOption: true, describe: 'where to write (- for stdout)' }),
    ) as unknown as Argv<Args>,
  handler: run(downloadCmd),
};

// ---- agents --------------------------------------------------------------

async function agentsCmd(a: Args): Promise<Exit> {
  const { DispatcherClient } = apiClient();
  const client = new DispatcherClient(await connect(a));
  try {
    const agents = await client.agents();
    if (a.json) printJson({ agents });
    else if (agents.length === 0) say('no agent has connected to this dispatcher yet: start agents with --dispatcher');
    else print(formatAgents(agents));
    return EXIT.OK;
  } finally {
    client.close();
  }
}

export const agentsCommand: CommandModule<object, Args> = {
  command: 'agents',
  describe: "the dispatcher's agents: connection, ring span and size, capture counters",
  builder: (y) => connectionOptions(y.option('json', { type: 'boolean', default: false, describe: 'print {agents} as JSON' })) as unknown as Argv<Args>,
  handler: run(agentsCmd),
};

// ---- login ---------------------------------------------------------------

async function loginCmd(a: Args): Promise<Exit> {
  const flags = flagsOf(a);
  const { normalizeUrl, readConfig, resolveConnection, saveSession } = connection();
  const conn = resolveConnection({ ...flags, user: undefined, password: undefined, token: undefined }, process.env, { login: true });
  for (const n of conn.notes) if (!/credentials in/.test(n)) say(`note: ${n}`);
  const saved = readConfig(conn.configPath)?.config;
  const cfgUser = saved && normalizeUrl(saved.url, 'url') === conn.url ? saved.user : undefined;
  const user = flags.user ?? process.env.TRACEFLEET_USER ?? cfgUser;
  if (!user) throw new CliError('say who logs in: tracefleet login --user NAME', EXIT.BAD_INPUT);
  let password: string;
  if (a.passwordStdin) password = await readFirstLine(process.stdin);
  else if (flags.password) password = flags.password;
  else if (process.env.TRACEFLEET_PASSWORD) password = process.env.TRACEFLEET_PASSWORD;
  else if (process.stdin.isTTY) password = await readSecret(`password for ${user} at ${conn.url}: `);
  else throw new CliError('no terminal to ask the password on: give --password-stdin and pipe it in', EXIT.BAD_INPUT);
  const { DispatcherClient } = apiClient();
  const client = new DispatcherClient({ ...conn, credentials: null });
  try {
    const s = await client.login(user, password);
    saveSession(conn.configPath, { url: conn.url, token: s.token, user: s.user, ca: flags.ca });
    say(`logged in to ${conn.url} as ${s.user} (roles: ${s.roles.join(', ') || 'none'}); session saved in ${conn.configPath}, valid until ${shortTime(s.expiresAt)}`);
    return EXIT.OK;
  } finally {
    client.close();
  }
}

export const loginCommand: CommandModule<object, Args> = {
  command: 'login',
  describe: 'log in to the dispatcher and save the session token in the config file (mode 0600)',
  builder: (y) =>
    connectionOptions(y.option('password-stdin', { type: 'boolean', default: false, describe: 'read the password from the first line of stdin' })) as unknown as Argv<Args>,
  handler: run(loginCmd),
};

export const dispatcherCommands = [traceCommand, followCommand, tracesCommand, showCommand, downloadCommand, agentsCommand, loginCommand];
