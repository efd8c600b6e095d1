import { setTimeout as sleep } from 'node:timers/promises';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { run, startDaemon, tail, ProcError } from './proc';

/**
 * Real SIP calls between two sipp instances. Both ends run our own scenario
 * files rather than the built-in ones: the UAC so the INVITE can carry a chosen
 * From user, extra headers and padding; the UAS so every call has the full
 * seven messages (INVITE, 100, 180, 200, ACK, BYE, 200) and a short timewait.
 */

export interface SippEndpoint {
  addr: string;
  port: number;
}

export interface SippCallsOptions {
  /** Namespace for both ends; uasNs/uacNs override it per side. Omitted: the current (root) namespace. */
  ns?: string;
  uasNs?: string;
  uacNs?: string;
  transport: 'udp' | 'tcp';
  /** The UAS's transport when it differs from the UAC's (a proxy between them). */
  uasTransport?: 'udp' | 'tcp';
  uasHost: SippEndpoint;
  /** Where the UAC sends its requests when not straight to the UAS (a proxy or B2BUA in between); default uasHost. */
  target?: SippEndpoint;
  uacHost: SippEndpoint;
  calls: number;
  /** New calls per second. Default 10. */
  rate?: number;
  /** Most calls open at once. Default: no limit beyond `calls`. */
  limit?: number;
  /** User part of the Request-URI and To (the dialled number). Default 'service'. */
  number?: string;
  /** User part of From. Default 'sipp'. */
  fromUser?: string;
  /** Time between ACK and BYE. Default 0. */
  callLengthMs?: number;
  /**
   * Headers added to the INVITE, in order. Values go into the scenario as they
   * are, so sipp keywords expand per call: e.g. { 'X-CID': 'leg-[call_number]' }.
   */
  extraHeaders?: Record<string, string> | Array<[string, string]>;
  /** Adds `X-Pad: xxx…` with this many characters to the INVITE, to make it exceed a small MTU. */
  padBytes?: number;
  /** Prefix of every Call-ID; default unique per run, so concurrent runs never share Call-IDs. */
  callIdPrefix?: string;
  /** Kill both ends after this long. Default: enough for the calls at the rate, plus 30 s. */
  timeoutMs?: number;
  /** Keep the scenario and trace files (their directory is in the result). Default false. */
  keepFiles?: boolean;
}

export interface SippCallsResult {
  /** Call-ID of every call the UAC started, in start order. */
  callIds: string[];
  successfulCallIds: string[];
  successful: number;
  /** Requested calls that did not complete (including ones never started). */
  failed: number;
  uacExitCode: number | null;
  /** Tail of sipp's unexpected-message log, empty when there was none. */
  errors: string;
  /** Where the scenario and trace files are (deleted unless keepFiles). */
  workDir: string;
}

const USER_RE = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$/;
const HEADER_NAME_RE = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
let runSeq = 0;

function hostPort(e: SippEndpoint): string {
  return e.addr.includes(':') ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`;
}

function checkHeaderValue(name: string, v: string): void {
  // CR/LF would split the header; "]]>" would end the CDATA section it sits in.
  if (/[\r\n]/.test(v) || v.includes(']]>')) throw new Error(`sipp: header ${name} value must not contain CR, LF or "]]>"`);
}

/** The SDP of the INVITE and of its 200: one PCMU stream. */
const SDP = `      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
`;

/** One `<send>` of a scenario; sipp strips the leading blank line and the indentation inside CDATA, as in its built-in scenarios. */
function send(message: string, retrans = false): string {
  return `  <send${retrans ? ' retrans="500"' : ''}>
    <![CDATA[

${message}
    ]]>
  </send>`;
}

function uacScenario(o: { fromUser: string; headers: Array<[string, string]>; callLengthMs: number }): string {
  const extra = o.headers.map(([k, v]) => `      ${k}: ${v}\n`).join('');
  // The UAC's requests: INVITE, then ACK and BYE within the dialog (To with the UAS's tag).
  const request = (method: string, cseq: number, toTag: string) => `      ${method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: ${o.fromUser} <sip:${o.fromUser}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [service] <sip:[service]@[remote_ip]:[remote_port]>${toTag}
      Call-ID: [call_id]
      CSeq: ${cseq} ${method}
      Contact: sip:${o.fromUser}@[local_ip]:[local_port]
      Max-Forwards: 70
`;
  return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="tracefleet uac">
  <nop>
    <action>
      <log message="START [call_id]"/>
    </action>
  </nop>
${send(`${request('INVITE', 1, '')}      Subject: tracefleet test
${extra}      Content-Type: application/sdp
      Content-Length: [len]

${SDP}`, true)}
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"/>
${send(`${request('ACK', 1, '[peer_tag_param]')}      Content-Length: 0
`)}
  <pause milliseconds="${o.callLengthMs}"/>
${send(`${request('BYE', 2, '[peer_tag_param]')}      Content-Length: 0
`, true)}
  <recv response="200" crlf="true">
    <action>
      <log message="DONE [call_id]"/>
    </action>
  </recv>
</scenario>
`;
}

/** Head of a UAS response to the last request, with the UAS's To tag and a Contact where asked (every response here but 100 has both; the 200 to BYE only the Contact). */
function response(status: string, o: { toTag?: boolean; contact?: boolean } = {}): string {
  return `      SIP/2.0 ${status}
      [last_Via:]
      [last_From:]
      [last_To:]${o.toTag ? ';tag=[pid]SIPpTag01[call_number]' : ''}
      [last_Call-ID:]
      [last_CSeq:]
${o.contact ? '      Contact: <sip:[local_ip]:[local_port];transport=[transport]>\n' : ''}`;
}

const UAS_SCENARIO = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="tracefleet uas">
  <recv request="INVITE" crlf="true"/>
${send(`${response('100 Trying')}      Content-Length: 0
`)}
${send(`${response('180 Ringing', { toTag: true, contact: true })}      Content-Length: 0
`)}
${send(`${response('200 OK', { toTag: true, contact: true })}      Content-Type: application/sdp
      Content-Length: [len]

${SDP}`, true)}
  <recv request="ACK" optional="true" rtd="true" crlf="true"/>
  <recv request="BYE"/>
${send(`${response('200 OK', { contact: true })}      Content-Length: 0
`)}
  <!-- Long enough to absorb a retransmitted BYE, short enough not to hold up the test. -->
  <timewait milliseconds="500"/>
</scenario>
`;

/** Polls `ss` until something listens on addr:port (UDP or TCP) in the namespace. */
async function waitListening(ns: string | undefined, transport: 'udp' | 'tcp', ep: SippEndpoint, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const want = hostPort(ep);
  while (Date.now() < deadline) {
    if (!alive()) return;
    const r = await run('ss', ['-Hn', '-l', transport === 'udp' ? '-u' : '-t', `sport = :${ep.port}`], { ns, timeoutMs: 10_000, check: false });
    if (r.code === 0 && r.stdout.split('\n').some((l) => l.includes(want) || l.includes(`*:${ep.port}`) || l.includes(`0.0.0.0:${ep.port}`))) return;
    await sleep(50);
  }
  throw new Error(`sipp UAS did not listen on ${transport} ${want} within ${timeoutMs} ms`);
}

function readIfExists(p: string): string {
  return existsSync(p) ? readFileSync(p, 'utf8') : '';
}

/**
 * Runs `calls` SIP calls from a sipp UAC to a sipp UAS and reports their Call-IDs
 * and outcome. Throws when sipp cannot run at all (bad arguments, port in use,
 * timeout); calls that merely fail are counted in `failed`.
 */
export async function runSippCalls(opts: SippCallsOptions): Promise<SippCallsResult> {
  if (!Number.isInteger(opts.calls) || opts.calls < 1) throw new Error(`sipp: calls must be a positive integer, got ${opts.calls}`);
  const rate = opts.rate ?? 10;
  if (!(rate > 0)) throw new Error(`sipp: rate must be positive, got ${rate}`);
  const number = opts.number ?? 'service';
  const fromUser = opts.fromUser ?? 'sipp';
  for (const [what, v] of [['number', number], ['fromUser', fromUser]] as const) {
    if (!USER_RE.test(v)) throw new Error(`sipp: ${what} ${JSON.stringify(v)} is not a plain SIP user part`);
  }
  const headers: Array<[string, string]> = Array.isArray(opts.extraHeaders) ? [...opts.extraHeaders] : Object.entries(opts.extraHeaders ?? {});
  for (const [k, v] of headers) {
    if (!HEADER_NAME_RE.test(k)) throw new Error(`sipp: bad header name ${JSON.stringify(k)}`);
    checkHeaderValue(k, v);
  }
  if (opts.padBytes) {
    if (!Number.isInteger(opts.padBytes) || opts.padBytes < 0 || opts.padBytes > 60_000) throw new Error(`sipp: padBytes must be 0..60000`);
    headers.push(['X-Pad', 'x'.repeat(opts.padBytes)]);
  }
  const callLengthMs = opts.callLengthMs ?? 0;
  const cidPrefix = opts.callIdPrefix ?? `tf${process.pid}r${runSeq++}${randomBytes(3).toString('hex')}`;
  if (!/^[A-Za-z0-9._-]+$/.test(cidPrefix)) throw new Error(`sipp: callIdPrefix must be [A-Za-z0-9._-]+`);
  const timeoutMs = opts.timeoutMs ?? Math.ceil((opts.calls / rate) * 1000 + callLengthMs + 30_000);
  const uasNs = opts.uasNs ?? opts.ns;
  const uacNs = opts.uacNs ?? opts.ns;
  const uasTransport = opts.uasTransport ?? opts.transport;
  const tOf = (x: 'udp' | 'tcp') => (x === 'udp' ? 'u1' : 't1');

  const dir = mkdtempSync(join(tmpdir(), 'tf-sipp-'));
  const f = (n: string) => join(dir, n);
  writeFileSync(f('uac.xml'), uacScenario({ fromUser, headers, callLengthMs }));
  writeFileSync(f('uas.xml'), UAS_SCENARIO);
  const timeoutS = `${Math.ceil(timeoutMs / 1000)}s`;
  // -nostdin: sipp otherwise reads keyboard commands from stdin. -bind_local:
  // listen only on the given address rather than on every address of the
  // namespace. Screens go to the pipe we read; the trace files are what count.
  const common = ['-nostdin', '-bind_local', '-timeout', timeoutS, '-timeout_error', '-trace_err', '-trace_shortmsg'];
  const uasArgs = ['-sf', f('uas.xml'), '-i', opts.uasHost.addr, '-mi', opts.uasHost.addr, '-p', String(opts.uasHost.port), '-m', String(opts.calls), '-t', tOf(uasTransport), ...common,
    '-error_file', f('uas-errors.log'), '-shortmessage_file', f('uas-short.csv')];
  const uacArgs = [hostPort(opts.target ?? opts.uasHost), '-sf', f('uac.xml'), '-i', opts.uacHost.addr, '-mi', opts.uacHost.addr, '-p', String(opts.uacHost.port),
    '-m', String(opts.calls), '-r', String(rate), '-l', String(opts.limit ?? opts.calls), '-s', number, '-cid_str', `${cidPrefix}-%u@%s`, '-t', tOf(opts.transport), ...common,
    '-error_file', f('uac-errors.log'), '-shortmessage_file', f('uac-short.csv'), '-trace_logs', '-log_file', f('uac-calls.log')];

  const uas = await startDaemon('sipp', uasArgs, { ns: uasNs, stopGraceMs: 2000 });
  try {
    await waitListening(uasNs, uasTransport, opts.uasHost, 10_000, () => uas.exitStatus() === null);
    if (uas.exitStatus()) throw new ProcError(`sipp UAS exited early (${JSON.stringify(uas.exitStatus())}); stderr: ${tail(uas.stderr())}; stdout: ${tail(uas.stdout(), 800)}`, uas.command);
    const uac = await run('sipp', uacArgs, { ns: uacNs, timeoutMs: timeoutMs + 10_000, check: false });
    if (uac.code !== 0 && uac.code !== 1) {
      throw new ProcError(
        `sipp UAC exited with ${uac.code ?? uac.signal} (0/1 expected); stderr: ${tail(uac.stderr)}; errors: ${tail(readIfExists(f('uac-errors.log')))}; stdout: ${tail(uac.stdout, 800)}`,
        'sipp ' + uacArgs.join(' '),
        uac,
      );
    }
    // The UAS finishes on its own after -m calls and its timewait; calls the UAS never saw would keep it waiting.
    await uas.waitForExit(3000).catch(() => undefined);
    const starts: string[] = [];
    const done = new Set<string>();
    for (const line of readIfExists(f('uac-calls.log')).split('\n')) {
      const m = /^(START|DONE) (\S+)\s*$/.exec(line);
      if (!m) continue;
      if (m[1] === 'START') starts.push(m[2]);
      else done.add(m[2]);
    }
    const successfulCallIds = starts.filter((c) => done.has(c));
    return {
      callIds: starts,
      successfulCallIds,
      successful: successfulCallIds.length,
      failed: opts.calls - successfulCallIds.length,
      uacExitCode: uac.code,
      errors: tail(readIfExists(f('uac-errors.log')) + readIfExists(f('uas-errors.log')), 4000),
      workDir: dir,
    };
  } finally {
    await uas.stop();
    if (!opts.keepFiles) rmSync(dir, { recursive: true, force: true });
  }
}

/** Where Debian's sip-tester puts the media files its pcap-playing scenarios use. */
export const SIPP_MEDIA_DIR = '/usr/share/sip-tester';

/**
 * sipp's built-in uac_pcap scenario (a call that plays sip-tester's G.711
 * A-law capture and an RFC 2833 digit as its RTP), written to dir/name with
 * the media files' installed paths and shorter pauses. With `announce`, the
 * SDP announces that address instead of the caller's own (a caller behind NAT).
 */
export async function uacPcapScenario(dir: string, name: string, announce: string | null): Promise<string> {
  let xml = (await run('sipp', ['-sd', 'uac_pcap'], { check: false })).stdout;
  xml = xml
    .replace('pcap/g711a.pcap', `${SIPP_MEDIA_DIR}/g711a.pcap`)
    .replace('pcap/dtmf_2833_1.pcap', `${SIPP_MEDIA_DIR}/dtmf_2833_1.pcap`)
    .replace('milliseconds="8000"', 'milliseconds="7200"')
    .replace('milliseconds="1000"', 'milliseconds="300"');
  // Behind NAT the caller announces an address its packets never come from.
  if (announce) xml = xml.replace('c=IN IP[local_ip_type] [local_ip]', `c=IN IP4 ${announce}`);
  if (!xml.includes(`${SIPP_MEDIA_DIR}/g711a.pcap`)) throw new Error(`sipp -sd uac_pcap did not give the expected scenario (is sip-tester installed?): ${tail(xml)}`);
  const file = join(dir, name);
  writeFileSync(file, xml);
  return file;
}
