import { createWriteStream, openSync } from 'node:fs';
import { Writable } from 'node:stream';
import { EXIT, Exit } from '../shared/errors/catalogue';
import { PcapngWriter } from '../shared/pcap/pcapng-writer';
import { CaptureStreamParser } from '../shared/pcap/reader';
import { DispatcherClient, ClientSocket } from './api-client';
import { resolveConnection } from './connection';
import { CliError, exitOf } from './errors';
import { type ExtcapArgs, type ExtcapInterface, parseCaptureFilter } from './extcap';
import { followRequestOf, runFollow } from './follow-run';
import { traceRequestOf } from './filters';
import { safeText } from './format';
import type { ProgressSink } from './progress';
import { followTrace } from './trace-run';
import { exitOfTrace } from './trace-state';
import { agentVersion } from './commands/local';

/*
 * `tracefleet extcap --capture`: a trace or a follow, written to Wireshark's
 * fifo. The fifo is opened first, whatever comes next: dumpcap waits on it,
 * and an extcap that exits without opening it leaves tshark hanging instead
 * of showing the error. The stream is PCAPNG, its section header written at
 * once so dumpcap starts (and its -a autostop runs) before the first packet,
 * whose link type is only known when it arrives.
 */

/** Wireshark reads anything on stderr as an error: a capture that goes well says nothing. */
const SILENT: ProgressSink = { update() {}, note() {}, finish() {} };

/**
 * The PCAPNG stream to the fifo, its section header written by start():
 * once the dispatcher took the request, so a refusal before it leaves the
 * fifo without a byte (tshark then fails the capture with our stderr),
 * and before the first packet, so dumpcap runs (and its autostop with it)
 * while nothing matches yet.
 */
class FifoOut {
  private writer: PcapngWriter | null = null;
  private readonly parser = new CaptureStreamParser('the dispatcher stream');
  /** PCAP (or PCAPNG) bytes in, each write done once the fifo has taken it. */
  readonly input: Writable;

  constructor(private readonly stream: Writable) {
    this.input = new Writable({
      write: (chunk: Buffer, _enc, done) => {
        let w: PcapngWriter;
        try {
          w = this.start();
          const nanos = () => this.parser.pcapHeader?.nanos ?? true;
          for (const r of this.parser.push(chunk)) w.write(r, nanos());
        } catch (e) {
          return done(e as Error);
        }
        w.waitDrain().then(() => done(), done);
      },
    });
  }

  start(): PcapngWriter {
    this.writer ??= new PcapngWriter(this.stream, { application: `tracefleet ${agentVersion()}` });
    return this.writer;
  }

  async end(): Promise<void> {
    if (this.writer) await this.writer.end().catch(() => {});
    else this.stream.end();
  }
}

/** The dialog's fields and the filter box as `tracefleet trace`/`follow` flags (yargs' camelCase keys). */
function flagsOf(a: ExtcapArgs): Record<string, unknown> {
  const v = (k: string) => {
    const s = a.values.get(k)?.trim();
    return s === undefined || s === '' ? undefined : s;
  };
  const words = parseCaptureFilter(a.values.get('--extcap-capture-filter') ?? '');
  const list = (k: string, extra: string[] | undefined) => {
    const all = [...(v(k)?.split(',') ?? []), ...(extra ?? [])].map((s) => s.trim()).filter((s) => s !== '');
    return all.length ? all : undefined;
  };
  return {
    number: list('--number', words.number),
    callId: list('--call-id', words.callId),
    ip: list('--ip', words.ip),
    port: words.port,
    method: words.method,
    status: words.status,
    correlation: words.correlation,
    hosts: list('--hosts', undefined),
    since: v('--since'),
    until: v('--until'),
    duration: v('--duration') ?? '10m',
    rtp: a.flags.has('--rtp') || undefined,
  };
}

async function follow(client: DispatcherClient, a: ExtcapArgs, out: FifoOut, signal: AbortSignal): Promise<Exit> {
  const { since: _s, until: _u, ...flags } = flagsOf(a);
  const req = followRequestOf(flags);
  const socket = await client.socket();
  try {
    const r = await runFollow(socket, req, { out: out.input, line: () => {}, signal, onStart: () => out.start() });
    if (r.end?.code) throw new CliError(`follow ${r.trace.id} ended: ${r.end.message ?? r.end.code} (what it followed is stored as trace ${r.trace.id})`, EXIT.FAILED);
    if (r.lost && !signal.aborted) throw new CliError(`the connection to the dispatcher at ${client.conn.url} was lost during follow ${r.trace.id}`, EXIT.FAILED);
    return EXIT.OK;
  } finally {
    socket.disconnect();
  }
}

async function trace(client: DispatcherClient, a: ExtcapArgs, out: FifoOut, signal: AbortSignal): Promise<Exit> {
  const { duration: _d, ...flags } = flagsOf(a);
  const req = traceRequestOf(flags);
  let socket: ClientSocket | null = null;
  try {
    socket = await client.socket();
    const r = await followTrace(client, socket, req, { progress: SILENT, timeoutMs: 600_000, signal });
    if (r.outcome === 'interrupted') return EXIT.OK;
    const v = r.trace;
    const failures = v.hosts.filter((h) => h.error).map((h) => `${h.host}: ${h.error}`);
    if (r.outcome === 'timeout') throw new CliError(`trace ${v.id} did not finish within 10 minutes and was cancelled`, EXIT.FAILED);
    if (!v.merged) {
      if (failures.length || v.state !== 'done') throw new CliError(`trace ${v.id} ${v.state}${failures.length ? `: ${failures.join('; ')}` : ''}`, EXIT.FAILED);
      // Not a failure, but never an empty capture without a word.
      process.stderr.write(`tracefleet: trace ${v.id} done: no packet matched in the window (widen the window or check the filter)\n`);
      return EXIT.OK;
    }
    await client.download(DispatcherClient.pcapPath(v.id), () => out.input, { end: false, signal });
    const code = exitOfTrace(v);
    if (code !== EXIT.OK) throw new CliError(`trace ${v.id} ${v.state}: ${failures.join('; ') || 'some hosts did not finish'}`, code === EXIT.PARTIAL ? EXIT.FAILED : code);
    return EXIT.OK;
  } finally {
    socket?.disconnect();
  }
}

export async function captureMain(iface: ExtcapInterface, a: ExtcapArgs): Promise<void> {
  const fifo = a.values.get('--fifo');
  if (!fifo) {
    process.stderr.write('tracefleet: --capture needs --fifo PATH (Wireshark gives it)\n');
    process.exit(EXIT.BAD_INPUT);
  }
  let fd: number;
  try {
    fd = openSync(fifo, 'w');
  } catch (e) {
    process.stderr.write(`tracefleet: cannot open the fifo ${fifo}: ${(e as Error).message}\n`);
    process.exit(EXIT.FAILED);
  }
  const stream = createWriteStream(fifo, { fd });
  const out = new FifoOut(stream);
  const abort = new AbortController();
  // Wireshark stops a capture with SIGTERM; a fifo whose reader went away says EPIPE.
  const stop = () => abort.abort();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  stream.on('error', stop);
  out.input.on('error', stop);
  let code: number;
  let client: DispatcherClient | null = null;
  try {
    const conn = resolveConnection({ url: a.values.get('--url'), token: a.values.get('--token') }, process.env);
    if (conn.credentials && 'user' in conn.credentials && conn.credentials.password === undefined) {
      throw new CliError(`no password for user ${conn.credentials.user}: give the API token in the dialog, or run tracefleet login`, EXIT.BAD_INPUT);
    }
    client = new DispatcherClient(conn);
    code = await (iface === 'tracefleet-follow' ? follow : trace)(client, a, out, abort.signal);
  } catch (e) {
    // Wireshark stopping the capture (a download cut short by it) is no error to show it.
    if (abort.signal.aborted) code = EXIT.OK;
    else {
      process.stderr.write(`tracefleet: ${safeText(String((e as Error).message ?? e))}\n`);
      code = exitOf(e);
    }
  } finally {
    client?.close();
  }
  // Ending the stream closes the fifo: dumpcap reads the end of the capture.
  await out.end();
  process.exit(code);
}
