import { createWriteStream, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { closeResult, runQuery, writeResultPcap } from '../agent/query/engine';
import { QueryError, buildQuerySpec } from '../agent/query/spec';
import { importCaptures } from '../agent/ring/import';
import { checkRing } from '../agent/ring/check';
import { RingDirError } from '../agent/ring/layout';
import { CaptureFormatError } from '../shared/pcap/errors';
import { startAgent } from '../agent/daemon/run';
import { defaultCaptureFilter } from '../agent/capture/filter';
import { listInterfaces } from '../agent/capture/interfaces';
import { DEMO_NUMBERS } from '../agent/demo/traffic';
import { DEMO_AGENT, demoBanner, startDemo } from '../agent/demo/allinone';
import { hostname } from 'node:os';
import { agentStatusOf, connectDispatcher } from '../agent/link/client';
import { userCommand } from './commands/user';
import { dispatcherCommands } from '../cli/commands';
import { filterOptions, rawQuery } from '../cli/filters';
import { serveTraces } from '../agent/trace/serve';
import { join, relative } from 'node:path';
import type { FleetToken } from '../dispatcher/fleet/server';
import { startDispatcher } from '../dispatcher/daemon/run';
import { LOG_CLI_OPTIONS, initLoggerFromArgs } from '../shared/log/log';

/** Exit codes: 0 done, 1 failed while running, 2 bad input (usage, query, file). */
export const EXIT = { OK: 0, FAILED: 1, BAD_INPUT: 2 } as const;

class UsageError extends Error {}

/** The version the agent reports to the dispatcher (from package.json beside dist/). */
const AGENT_VERSION: string = (() => {
  try {
    return String((require('../../package.json') as { version: string }).version).slice(0, 64);
  } catch {
    return 'unknown';
  }
})();

function fail(e: unknown): never {
  const err = e as Error;
  const bad = err instanceof QueryError || err instanceof UsageError || err instanceof CaptureFormatError || err instanceof RingDirError;
  process.stderr.write(`tracefleet: ${err.message}\n`);
  if (process.env.TRACEFLEET_DEBUG) process.stderr.write(`${err.stack}\n`);
  process.exit(bad ? EXIT.BAD_INPUT : EXIT.FAILED);
}

function openOutput(o: string): Writable {
  if (o === '-') {
    if (process.stdout.isTTY) throw new UsageError('refusing to write a binary PCAP to a terminal: pipe it (| wireshark -k -i -) or give -o FILE');
    return process.stdout;
  }
  return createWriteStream(o);
}

async function queryCommand(a: Record<string, unknown>): Promise<void> {
  const out = a.o as string | undefined;
  const json = a.json as boolean;
  if (!out && !json) throw new UsageError('say where the result goes: -o FILE, -o - (stdout), and/or --json');
  if (out === '-' && json) throw new UsageError('-o - and --json would both write to stdout: give -o FILE with --json');
  const spec = buildQuerySpec(rawQuery(a));
  const r = runQuery(a.ring as string, spec, { correlationHeader: a.correlationHeader as string | undefined });
  for (const n of r.notes) process.stderr.write(`tracefleet: note: ${n}\n`);
  if (r.messagesMatched > r.messages.length) {
    process.stderr.write(`tracefleet: note: ${r.messagesMatched} SIP messages matched; the summaries list the first ${r.messages.length} by time (the capture has every packet)\n`);
  }
  try {
    if (out) await writeResultPcap(r, openOutput(out));
  } finally {
    closeResult(r);
  }
  if (json) {
    process.stdout.write(
      JSON.stringify({ callIds: r.callIds, packets: r.refs.length, truncated: r.truncated, messagesMatched: r.messagesMatched, messages: r.messages, notes: r.notes }, null, 2) + '\n',
    );
  } else if (out !== '-') {
    process.stderr.write(`tracefleet: ${r.refs.length} packets of ${r.callIds.length} dialogs written to ${out}${r.truncated ? ' (truncated by a limit)' : ''}\n`);
  }
  if (r.truncated) process.stderr.write('tracefleet: result truncated by --max-packets/--max-bytes\n');
}

const SIZE_RE = /^(\d+(?:\.\d+)?)([kmgt]?)i?b?$/i;
/** Sizes like 512M, 20G, 1.5T (powers of 1024). */
export function parseSize(s: string, what: string): number {
  const m = SIZE_RE.exec(String(s).trim());
  if (!m) throw new UsageError(`bad ${what} '${s}': give bytes or a size like 512M, 20G`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

function parsePortRanges(list: string[] | undefined): Array<[number, number]> {
  return (list ?? []).flatMap((s) => s.split(',')).filter(Boolean).map((r) => {
    const m = /^(\d+)-(\d+)$/.exec(r.trim());
    const lo = m ? Number(m[1]) : NaN;
    const hi = m ? Number(m[2]) : NaN;
    if (!m || lo < 1 || hi > 65535 || lo > hi) throw new UsageError(`bad RTP port range '${r}': give LOW-HIGH, e.g. 10000-20000`);
    return [lo, hi] as [number, number];
  });
}

async function agentCommand(a: Record<string, unknown>): Promise<void> {
  if (a.listInterfaces) {
    for (const i of listInterfaces()) process.stdout.write(`${i.name}${i.description ? `  (${i.description})` : ''}\n`);
    return;
  }
  const ifaces = ((a.interface as string[] | undefined) ?? []).flatMap((s) => s.split(',')).filter(Boolean);
  if (ifaces.length === 0) throw new UsageError('give at least one interface with -i (any, lo, eth0, ...); --list-interfaces shows them');
  const dispatcher = (a.dispatcher as string | undefined) ?? process.env.TRACEFLEET_DISPATCHER;
  const token = (a.token as string | undefined) ?? process.env.TRACEFLEET_TOKEN;
  const name = (a.name as string | undefined) ?? hostname();
  if (dispatcher && !token) throw new UsageError('--dispatcher needs a token: --token T or TRACEFLEET_TOKEN');
  if (dispatcher && !/^https?:\/\//.test(dispatcher)) throw new UsageError(`bad --dispatcher '${dispatcher}': give a URL like http://dispatcher:8060`);
  if (dispatcher && !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new UsageError(`bad agent name '${name}': 1-64 letters, digits, _, . or - (give --name)`);
  const caFile = (a.ca as string | undefined) ?? process.env.TRACEFLEET_CA;
  let ca: string | undefined;
  if (caFile) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read --ca ${caFile}: ${(e as Error).message}; give the PEM certificate of the CA (or the self-signed certificate) the dispatcher's --tls-cert is from`);
    }
  }
  const filter = (a.filter as string | undefined) ?? defaultCaptureFilter({
    rtpPortRanges: parsePortRanges(a.rtpPorts as string[] | undefined),
    // Linux cooked capture ("any") has no VLAN tags to match: the kernel strips them.
    vlan: !ifaces.includes('any'),
  });
  const root = initLoggerFromArgs(a, 'agent');
  const log = root.child({ component: 'agent' });
  const agent = await startAgent({
    logger: root,
    ringDir: a.ring as string,
    interfaces: ifaces,
    filter,
    ringMaxBytes: parseSize(a.ringSize as string, '--ring-size'),
    maxSegmentBytes: parseSize(a.segmentSize as string, '--segment-size'),
    maxSegmentSeconds: a.segmentSeconds as number,
    minFreeBytes: a.minFree === undefined ? undefined : parseSize(a.minFree as string, '--min-free'),
    promisc: a.promisc as boolean,
    correlationHeader: a.correlationHeader as string,
  });
  log.info({ interfaces: ifaces, ring: a.ring as string, filter }, 'capturing');
  const ringDir = a.ring as string;
  // The link only reads the engine's counters and the ring's names and sizes; a dispatcher away never touches capture.
  const link = dispatcher && token
    ? connectDispatcher({
        url: dispatcher,
        token,
        name,
        ca,
        hello: () => ({ version: AGENT_VERSION, hostname: hostname().slice(0, 255), interfaces: ifaces, ...agentStatusOf(agent.engine.stats(), ringDir, agent.indexer.errors) }),
        status: () => agentStatusOf(agent.engine.stats(), ringDir, agent.indexer.errors),
        logger: root.child({ component: 'agent.link' }),
      })
    : null;
  // Traces only read the ring (the indexer thread owns its indexes); a failing trace ends in trace:error, never in capture.
  const traces = link ? serveTraces(link.socket, { ringDir, correlationHeader: a.correlationHeader as string | undefined, logger: root.child({ component: 'agent.trace' }) }) : null;
  const statsEvery = (a.statsInterval as number) * 1000;
  const statsLine = () => {
    const st = agent.engine.stats();
    const interfaces = Object.fromEntries(Object.entries(st.interfaces).map(([n, s]) => [n, { packets: s.packets, dropped: s.dropped, ifDropped: s.ifDropped }]));
    log.info({ interfaces, indexErrors: agent.indexer.errors }, 'capture stats');
  };
  const timer = statsEvery > 0 ? setInterval(statsLine, statsEvery) : null;
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  if (timer) clearInterval(timer);
  traces?.close();
  link?.close();
  await agent.stop();
  statsLine();
  log.info('stopped; ring indexes sealed');
}

/** `NAME=TOKEN` (good for that agent only) or `TOKEN` (shared by any agent). */
export function parseAgentTokens(list: string[]): FleetToken[] {
  return list.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^([A-Za-z0-9_.-]{1,64})=(.+)$/.exec(s);
    const t = m ? { agent: m[1], token: m[2] } : { token: s };
    if (t.token.length < 16) throw new UsageError('agent tokens must have at least 16 characters: make one with `openssl rand -hex 24`');
    return t;
  });
}

function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`bad --listen '${s}': give HOST:PORT, e.g. 127.0.0.1:8060 or [::1]:8060 or 0.0.0.0:8060`);
  return { host: m[1] ?? m[2], port };
}

async function dispatcherCommand(a: Record<string, unknown>): Promise<void> {
  const { host, port } = parseListen(a.listen as string);
  const agentTokens = parseAgentTokens([...((a.agentToken as string[] | undefined) ?? []), ...(process.env.TRACEFLEET_AGENT_TOKENS ?? '').split(',')]);
  if (agentTokens.length === 0) {
    throw new UsageError('give the agents\' token(s): --agent-token TOKEN (shared) or --agent-token NAME=TOKEN (one agent), or TRACEFLEET_AGENT_TOKENS; make one with `openssl rand -hex 24`');
  }
  const cert = a.tlsCert as string | undefined;
  const key = a.tlsKey as string | undefined;
  if (Boolean(cert) !== Boolean(key)) throw new UsageError('HTTPS needs both --tls-cert and --tls-key');
  const root = initLoggerFromArgs(a, 'dispatcher');
  const d = await startDispatcher({
    logger: root,
    host,
    port,
    couchdbUrl: (a.couchdb as string | undefined) || undefined,
    db: a.db as string,
    dataDir: a.dataDir as string,
    agentTokens,
    tls: cert && key ? { cert, key } : undefined,
    redisUrl: (a.redis as string | undefined) || undefined,
    retentionDays: a.retentionDays as number,
    timeouts: { runAckMs: (a.runTimeout as number) * 1000, idleMs: (a.idleTimeout as number) * 1000 },
    staticDir: join(__dirname, '..', '..', 'web'),
  });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  root.child({ component: 'dispatcher' }).info('stopping; unfinished results stay in the spool and are stored on the next start');
  await d.close();
}

async function demoCommand(a: Record<string, unknown>): Promise<void> {
  const { host, port } = parseListen(a.listen as string);
  const sipPort = a.sipPort as number;
  if (!Number.isInteger(sipPort) || sipPort < 1024 || sipPort > 65534) throw new UsageError(`bad --sip-port ${String(a.sipPort)}: give a UDP port from 1024 to 65534 (the demo caller takes the next one)`);
  const root = initLoggerFromArgs(a, 'demo');
  const log = root.child({ component: 'demo' });
  let first = true;
  const demo = await startDemo({
    host,
    port,
    dataDir: a.dataDir as string,
    sipPort,
    resetAdmin: a.resetAdmin as boolean,
    staticDir: join(__dirname, '..', '..', 'web'),
    version: AGENT_VERSION,
    logger: root,
    onCall: (c) => {
      if (!first) return;
      first = false;
      log.info({ from: c.from, to: c.to, callId: c.callId }, 'DEMO TRAFFIC: first demo call finished; it can be traced now');
    },
  });
  // The examples run from wherever this was started: the path to bin/tracefleet from here.
  let cli = relative(process.cwd(), join(__dirname, '..', '..', 'bin', 'tracefleet'));
  if (!cli.includes('/')) cli = `./${cli}`;
  process.stdout.write(demoBanner(demo, { cli, number: DEMO_NUMBERS[1], numbers: DEMO_NUMBERS }) + '\n');
  log.info({ callee: `127.0.0.1:${sipPort}`, caller: `127.0.0.1:${sipPort + 1}`, subject: 'tracefleet demo traffic' }, 'DEMO TRAFFIC: sipp started');
  const every = setInterval(() => {
    const s = demo.agent.engine.stats().interfaces.lo;
    log.info({ calls: demo.traffic.calls(), agent: DEMO_AGENT, packets: s?.packets ?? 0, dropped: s?.dropped ?? 0 }, 'DEMO TRAFFIC: demo calls so far');
  }, 60_000);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  clearInterval(every);
  log.info('stopping sipp, the agent, the dispatcher and its store');
  await demo.stop();
  log.info('stopped');
}

export function cli(argv: string[]) {
  return yargs(argv)
    .scriptName('tracefleet')
    .usage('$0 <command> [options]')
    .command(
      'query',
      "answer a trace from a local ring (like stenoread): matching packets as one PCAP, SIP summaries as JSON",
      (y) =>
        filterOptions(y)
          .option('ring', { type: 'string', demandOption: true, describe: 'ring directory' })
          .option('o', { alias: 'output', type: 'string', describe: 'write the PCAP here (- for stdout)' })
          .option('json', { type: 'boolean', default: false, describe: 'print the SIP message summaries as JSON' })
          .option('correlation-header', { type: 'string', default: 'X-CID', describe: 'header holding a correlation key' }),
      (a) => queryCommand(a as Record<string, unknown>).catch(fail),
    )
    .command(
      'agent',
      'capture into a ring with live indexing (root, or CAP_NET_RAW + CAP_NET_ADMIN)',
      (y) =>
        y
          .option('ring', { type: 'string', default: '/var/lib/tracefleet/ring', describe: 'ring directory' })
          .option('interface', { alias: 'i', type: 'string', array: true, describe: 'interface to capture on (repeat; any for all)' })
          .option('list-interfaces', { type: 'boolean', default: false, describe: 'list capture interfaces and exit' })
          .option('filter', { type: 'string', describe: 'BPF capture filter (default: SIP ports 5060-5299, 15060-15299, ICMP, IP fragments)' })
          .option('rtp-ports', { type: 'string', array: true, describe: 'also capture these UDP port ranges (RTP), e.g. 10000-20000' })
          .option('ring-size', { type: 'string', default: '10G', describe: 'most bytes the ring keeps (segments and indexes)' })
          .option('segment-size', { type: 'string', default: '64M', describe: 'rotate segments at this size' })
          .option('segment-seconds', { type: 'number', default: 300, describe: 'rotate segments at this age' })
          .option('min-free', { type: 'string', describe: 'free disk space to keep (default 5% of the filesystem, at most 2G)' })
          .option('promisc', { type: 'boolean', default: false, describe: 'promiscuous mode' })
          .option('stats-interval', { type: 'number', default: 60, describe: 'seconds between stats lines (0: none)' })
          .option('correlation-header', { type: 'string', default: 'X-CID' })
          .option('dispatcher', { type: 'string', describe: 'dispatcher URL to report to, e.g. http://dispatcher:8060 (env TRACEFLEET_DISPATCHER)' })
          .option('token', { type: 'string', describe: 'agent token for the dispatcher (env TRACEFLEET_TOKEN)' })
          .option('name', { type: 'string', describe: 'agent name at the dispatcher (default: the host name)' })
          .option('ca', { type: 'string', describe: 'PEM CA certificate to trust for an https dispatcher, e.g. its self-signed --tls-cert (env TRACEFLEET_CA)' })
          .options(LOG_CLI_OPTIONS),
      (a) => agentCommand(a as Record<string, unknown>).catch(fail),
    )
    .command(
      'dispatcher',
      'run the dispatcher: agents connect to /agent, people and scripts use the web page, REST API and /client',
      (y) =>
        y
          .option('listen', { type: 'string', default: process.env.TRACEFLEET_LISTEN ?? '127.0.0.1:8060', describe: 'HOST:PORT to listen on (env TRACEFLEET_LISTEN)' })
          .option('couchdb', { type: 'string', default: process.env.COUCHDB_URL, describe: 'Apache CouchDB URL, http://user:password@host:5984 (env COUCHDB_URL); unset: the embedded store in --data-dir' })
          .option('db', { type: 'string', default: 'tracefleet', describe: 'CouchDB database name' })
          .option('data-dir', { type: 'string', default: process.env.TRACEFLEET_DATA_DIR ?? 'var/dispatcher', describe: 'spool and embedded store (env TRACEFLEET_DATA_DIR)' })
          .option('agent-token', { type: 'string', array: true, describe: 'token agents present: TOKEN (any agent) or NAME=TOKEN (repeat; env TRACEFLEET_AGENT_TOKENS, comma-separated)' })
          .option('tls-cert', { type: 'string', describe: 'PEM certificate: serve HTTPS/WSS' })
          .option('tls-key', { type: 'string', describe: 'PEM private key for --tls-cert' })
          .option('redis', { type: 'string', default: process.env.REDIS_URL, describe: 'Redis URL shared by several dispatchers (env REDIS_URL)' })
          .option('retention-days', { type: 'number', default: 30, describe: 'purge traces older than this' })
          .option('run-timeout', { type: 'number', default: 10, describe: 'seconds an agent has to accept a trace before it is marked unreachable' })
          .option('idle-timeout', { type: 'number', default: 30, describe: 'seconds an agent may stay silent mid-trace before it is marked lost' })
          .options(LOG_CLI_OPTIONS),
      (a) => dispatcherCommand(a as Record<string, unknown>).catch(fail),
    )
    .command(
      'demo',
      'all-in-one demo (what npm start runs): dispatcher with its embedded store, an agent on lo, demo SIP calls from sipp, a first admin',
      (y) =>
        y
          .option('listen', { type: 'string', default: '127.0.0.1:8060', describe: "HOST:PORT of the demo's dispatcher (web page, REST API, agents)" })
          .option('data-dir', { type: 'string', default: 'var/demo', describe: 'where the demo keeps its ring, store, spool and admin.txt' })
          .option('sip-port', { type: 'number', default: 5090, describe: 'UDP port of the demo SIP callee on 127.0.0.1 (the caller takes the next one)' })
          .option('reset-admin', { type: 'boolean', default: false, describe: 'give the existing admin a new generated password' })
          .options(LOG_CLI_OPTIONS),
      (a) => demoCommand(a as Record<string, unknown>).catch(fail),
    )
    .command(userCommand)
    .command(dispatcherCommands)
    .command('ring', 'manage a ring directory', (y) =>
      y
        .command(
          'import <files..>',
          'build ring segments and indexes from PCAP/PCAPNG files',
          (y2) =>
            y2
              .positional('files', { type: 'string', array: true, demandOption: true })
              .option('ring', { type: 'string', demandOption: true, describe: 'ring directory (created if missing)' })
              .option('segment-size', { type: 'number', default: 64, describe: 'segment size in MiB' })
              .option('correlation-header', { type: 'string', default: 'X-CID' })
              .option('json', { type: 'boolean', default: false }),
          (a) =>
            importCaptures(a.ring, a.files as string[], { maxSegmentBytes: a.segmentSize * 1024 * 1024, correlationHeader: a.correlationHeader })
              .then((r) => {
                if (a.json) process.stdout.write(JSON.stringify(r) + '\n');
                else process.stderr.write(`tracefleet: imported ${r.packets} packets from ${r.files} file(s) into ${r.segments.length} segment(s)${r.tornBytes ? `; ${r.tornBytes} bytes of a torn last record skipped` : ''}\n`);
              })
              .catch(fail),
        )
        .command(
          'check',
          'verify every segment has a sound index; rebuild missing or corrupt ones',
          (y2) => y2.option('ring', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }).option('correlation-header', { type: 'string', default: 'X-CID' }),
          (a) => {
            try {
              const r = checkRing(a.ring, { correlationHeader: a.correlationHeader });
              if (a.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
              else {
                process.stdout.write(`${r.segments} segments, ${r.packets} packets, ${r.bytes} bytes, ${r.messages} SIP messages; span ${r.oldest ?? '-'} .. ${r.newest ?? '-'}\n`);
                for (const n of r.notes) process.stdout.write(`${n}\n`);
              }
            } catch (e) {
              fail(e);
            }
          },
        )
        .demandCommand(1, 'give a ring sub-command: import or check'),
    )
    .demandCommand(1, 'give a command; see --help')
    .strict()
    .fail((msg, err) => {
      if (err) fail(err);
      process.stderr.write(`tracefleet: ${msg} (see tracefleet --help)\n`);
      process.exit(EXIT.BAD_INPUT);
    })
    .help()
    .version();
}

export function main(): void {
  void cli(hideBin(process.argv)).parseAsync();
}

if (require.main === module) main();
