import { setTimeout as sleep } from 'node:timers/promises';
import { run, startDaemon, haveCommand, DaemonHandle } from './proc';
import { readRecords } from './pcapfile';

/**
 * tshark is the reference verdict for the project's filters and captures: what
 * it says a display filter selects, and the exact bytes and timestamps it reads,
 * are what the project's own results are compared against.
 */

/** Reassembly on, whatever a local preferences file says: selecting "every packet of a message" depends on it. */
const REASSEMBLY_PREFS = [
  '-o', 'tcp.desegment_tcp_streams:TRUE',
  '-o', 'sip.desegment_headers:TRUE',
  '-o', 'sip.desegment_body:TRUE',
  '-o', 'ip.defragment:TRUE',
  '-o', 'ipv6.defragment:TRUE',
];

const TSHARK_TIMEOUT_MS = 120_000;

export interface SelectOptions {
  /** Ports (besides 5060) on which UDP and TCP payloads are decoded as SIP. */
  sipPorts?: number[];
  /** Extra `-d` decode-as rules, e.g. 'udp.port==7000,rtp'. */
  decodeAs?: string[];
}

export interface SelectedFrame {
  file: string;
  /** tshark's 1-based frame number within `file`. */
  frame: number;
}

function decodeArgs(opts: SelectOptions): string[] {
  const out: string[] = [];
  for (const p of opts.sipPorts ?? []) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`tshark: bad SIP port ${p}`);
    out.push('-d', `udp.port==${p},sip`, '-d', `tcp.port==${p},sip`);
  }
  for (const d of opts.decodeAs ?? []) out.push('-d', d);
  return out;
}

function frameNumbers(field: string | undefined): number[] {
  if (!field) return [];
  return field
    .split(',')
    .filter((s) => s !== '')
    .map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) throw new Error(`tshark: unexpected frame number ${JSON.stringify(s)}`);
      return n;
    });
}

/**
 * Frames that match `displayFilter`, plus every frame holding bytes of a
 * matching message: the TCP segments and IP/IPv6 fragments it was reassembled
 * from, followed transitively (a TCP segment may itself be IP-fragmented).
 * Sorted by file order, then frame number.
 *
 * Known limits: TCP retransmissions are not part of tshark's reassembly lists
 * and so are not included; a frame that completes two PDUs contributes the
 * segments of both.
 */
export async function tsharkSelect(pcapFiles: string[], displayFilter: string, opts: SelectOptions = {}): Promise<SelectedFrame[]> {
  const common = ['-n', ...REASSEMBLY_PREFS, ...decodeArgs(opts)];
  const out: SelectedFrame[] = [];
  for (const file of pcapFiles) {
    const matched = await run('tshark', ['-r', file, ...common, '-Y', displayFilter, '-T', 'fields', '-e', 'frame.number'], {
      timeoutMs: TSHARK_TIMEOUT_MS,
    });
    const seeds = matched.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => frameNumbers(l.trim())[0]);
    if (seeds.length === 0) continue;
    // A second pass over all frames: with -Y on the first pass only the frames
    // that complete a matching PDU are printed, and those do not list the
    // fragments of earlier segments.
    const parts = await run(
      'tshark',
      [
        '-r', file, ...common,
        '-Y', 'tcp.segments || ip.fragments || ipv6.fragments',
        '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,',
        '-e', 'frame.number', '-e', 'tcp.segment', '-e', 'ip.fragment', '-e', 'ipv6.fragment',
      ],
      { timeoutMs: TSHARK_TIMEOUT_MS },
    );
    const pieces = new Map<number, number[]>();
    for (const line of parts.stdout.split('\n')) {
      if (line.trim() === '') continue;
      const [fn, ...rest] = line.split('\t');
      pieces.set(frameNumbers(fn)[0], rest.flatMap(frameNumbers));
    }
    const selected = new Set<number>();
    const todo = [...seeds];
    while (todo.length) {
      const f = todo.pop()!;
      if (selected.has(f)) continue;
      selected.add(f);
      for (const p of pieces.get(f) ?? []) if (!selected.has(p)) todo.push(p);
    }
    for (const frame of [...selected].sort((a, b) => a - b)) out.push({ file, frame });
  }
  return out;
}

/** Parses tshark's `frame.time_epoch` ("1700000000.123456789") without going through a float. */
export function parseEpochNs(s: string): bigint {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(s.trim());
  if (!m) throw new Error(`tshark: unexpected frame.time_epoch ${JSON.stringify(s)}`);
  const frac = (m[2] ?? '').padEnd(9, '0');
  if (frac.length > 9 && /[1-9]/.test(frac.slice(9))) throw new Error(`tshark: sub-nanosecond timestamp ${s}`);
  return BigInt(m[1]) * 1_000_000_000n + BigInt(frac.slice(0, 9));
}

export interface PacketInfo {
  /** tshark's 1-based frame number. */
  frame: number;
  epochNs: bigint;
  /** Length on the wire. */
  len: number;
  capLen: number;
  linkType?: number;
  /** Captured bytes as lowercase hex, when asked for. */
  bytesHex?: string;
}

/**
 * Every frame of a capture as tshark reads it. With `bytes`, the raw bytes come
 * from this directory's own small reader, which must agree with tshark on count,
 * lengths and timestamps or this throws.
 */
export async function tsharkPackets(pcap: string, opts: { bytes?: boolean } = {}): Promise<PacketInfo[]> {
  const r = await run('tshark', ['-r', pcap, '-n', '-T', 'fields', '-E', 'separator=/t', '-e', 'frame.number', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len'], {
    timeoutMs: TSHARK_TIMEOUT_MS,
  });
  const pkts: PacketInfo[] = r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [fn, ts, len, cap] = l.split('\t');
      return { frame: Number(fn), epochNs: parseEpochNs(ts), len: Number(len), capLen: Number(cap) };
    });
  if (!opts.bytes) return pkts;
  const recs = readRecords(pcap);
  if (recs.length !== pkts.length) throw new Error(`${pcap}: tshark sees ${pkts.length} frames, the test reader ${recs.length}`);
  for (const [i, p] of pkts.entries()) {
    const rec = recs[i];
    if (rec.capLen !== p.capLen || rec.origLen !== p.len || rec.epochNs !== p.epochNs) {
      throw new Error(
        `${pcap} frame ${p.frame}: tshark says ts=${p.epochNs} len=${p.len} cap=${p.capLen}, test reader ts=${rec.epochNs} len=${rec.origLen} cap=${rec.capLen}`,
      );
    }
    p.bytesHex = rec.data.toString('hex');
    p.linkType = rec.linkType;
  }
  return pkts;
}

export interface RecordsComparison {
  same: boolean;
  countA: number;
  countB: number;
  /** Records of A with no equal record in B (multiset difference), and the reverse. */
  onlyInA: PacketInfo[];
  onlyInB: PacketInfo[];
  /** 'ordered' mode: the first index where the sequences differ, and how. */
  firstMismatch?: { index: number; reason: string };
}

function recordKey(p: PacketInfo): string {
  return `${p.epochNs}|${p.len}|${p.linkType ?? ''}|${p.bytesHex}`;
}

/**
 * Whether two capture files hold the same records: identical bytes, original
 * length, link type and nanosecond timestamp. 'ordered' also requires the same
 * order; 'set' compares them as multisets. The file formats may differ (pcap
 * vs pcapng) as long as no precision was lost.
 */
export async function sameRecords(a: string, b: string, mode: 'ordered' | 'set' = 'ordered'): Promise<RecordsComparison> {
  const [pa, pb] = await Promise.all([tsharkPackets(a, { bytes: true }), tsharkPackets(b, { bytes: true })]);
  const counts = new Map<string, number>();
  for (const p of pb) counts.set(recordKey(p), (counts.get(recordKey(p)) ?? 0) + 1);
  const onlyInA: PacketInfo[] = [];
  for (const p of pa) {
    const k = recordKey(p);
    const n = counts.get(k) ?? 0;
    if (n > 0) counts.set(k, n - 1);
    else onlyInA.push(p);
  }
  const rest = new Map(counts);
  const onlyInB = pb.filter((p) => {
    const k = recordKey(p);
    const n = rest.get(k) ?? 0;
    if (n > 0) {
      rest.set(k, n - 1);
      return true;
    }
    return false;
  });
  const result: RecordsComparison = { same: onlyInA.length === 0 && onlyInB.length === 0, countA: pa.length, countB: pb.length, onlyInA, onlyInB };
  if (mode === 'ordered') {
    const n = Math.max(pa.length, pb.length);
    for (let i = 0; i < n; i++) {
      const x = pa[i];
      const y = pb[i];
      let reason: string | undefined;
      if (!x || !y) reason = `only ${x ? a : b} has a record at index ${i}`;
      else if (x.epochNs !== y.epochNs) reason = `timestamps ${x.epochNs} vs ${y.epochNs} ns`;
      else if (x.len !== y.len) reason = `wire lengths ${x.len} vs ${y.len}`;
      else if (x.linkType !== y.linkType) reason = `link types ${x.linkType} vs ${y.linkType}`;
      else if (x.bytesHex !== y.bytesHex) reason = `bytes differ (${x.capLen} vs ${y.capLen} captured)`;
      if (reason) {
        result.firstMismatch = { index: i, reason };
        result.same = false;
        break;
      }
    }
  }
  return result;
}

export interface CaptureOptions {
  iface: string;
  /** BPF capture filter. */
  filter?: string;
  /** Output file (pcapng). */
  file: string;
  ns?: string;
  /** Stop by itself after this long, so a forgotten capture cannot run on. Default 120 s. */
  maxSeconds?: number;
  /** Bytes kept of each packet (-s); default the tool's (262144). */
  snaplen?: number;
}

export interface CaptureHandle {
  readonly file: string;
  /** Lets in-flight packets reach the file, then stops the capture and waits for it to be written. */
  stop(): Promise<void>;
}

/**
 * Starts dumpcap (tshark's capture engine, lighter than tshark itself) and
 * resolves once it is capturing, so traffic sent afterwards is in the file.
 */
export async function startCapture(opts: CaptureOptions): Promise<CaptureHandle> {
  const tool = haveCommand('dumpcap') ? 'dumpcap' : 'tshark';
  const args = ['-i', opts.iface, '-w', opts.file, '-a', `duration:${opts.maxSeconds ?? 120}`];
  if (opts.filter) args.push('-f', opts.filter);
  if (opts.snaplen !== undefined) args.push('-s', String(opts.snaplen));
  if (tool === 'tshark') args.push('-q');
  const d: DaemonHandle = await startDaemon(tool, args, { ns: opts.ns, stopGraceMs: 5000 });
  try {
    await d.waitForOutput(/Capturing on/, 15_000);
  } catch (e) {
    await d.stop();
    throw e;
  }
  // "Capturing on" is printed as the capture starts; a short pause covers the
  // gap before the socket's ring actually receives.
  await sleep(200);
  return {
    file: opts.file,
    async stop() {
      await sleep(300);
      const st = await d.stop();
      if (st.code !== 0 && st.signal === null) {
        throw new Error(`${d.command} exited with ${st.code}; stderr: ${d.stderr().slice(-2000)}`);
      }
    },
  };
}

/** One SIP message as tshark dissects it (reassembly on): the reference for shared/sip/message. */
export interface TsharkSipMessage {
  /** The frame that completed the message. */
  frame: number;
  startLine: string;
  /** From the header block's bytes, one line per header: name and value trimmed. */
  headers: Array<{ name: string; value: string }>;
  body: Buffer;
  /** The whole message's bytes (`sip_raw`). */
  raw: Buffer;
}

type RawField = [string, ...unknown[]];

function asList<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Every SIP message of a capture, in frame order (two in one TCP segment in stream order), from `tshark -T json -x`. */
export async function tsharkSipMessages(pcap: string, opts: SelectOptions = {}): Promise<TsharkSipMessage[]> {
  const r = await run('tshark', ['-r', pcap, '-n', ...REASSEMBLY_PREFS, ...decodeArgs(opts), '-Y', 'sip', '-T', 'json', '-x', '--no-duplicate-keys'], {
    timeoutMs: TSHARK_TIMEOUT_MS,
  });
  const frames = JSON.parse(r.stdout) as Array<{ _source: { layers: Record<string, unknown> } }>;
  const out: TsharkSipMessage[] = [];
  for (const f of frames) {
    const l = f._source.layers as { frame: { 'frame.number': string }; sip?: unknown; sip_raw?: unknown };
    const sips = asList(l.sip as Record<string, unknown> | Array<Record<string, unknown>>);
    const raws = (Array.isArray(l.sip_raw) && Array.isArray(l.sip_raw[0]) ? l.sip_raw : [l.sip_raw]) as RawField[];
    sips.forEach((s, i) => {
      const hex = (k: string): Buffer => Buffer.from(((s[k] as RawField | undefined) ?? [''])[0], 'hex');
      // The header block ends at its empty line (tshark's item runs on to the
      // end of the segment when another message follows in it).
      const block = hex('sip.msg_hdr_raw').toString('utf8');
      const headers = block
        .slice(0, block.indexOf('\r\n\r\n') < 0 ? block.length : block.indexOf('\r\n\r\n'))
        .split('\r\n')
        .filter((line) => line !== '')
        .map((line) => {
          const colon = line.indexOf(':');
          return { name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() };
        });
      out.push({
        frame: Number(l.frame['frame.number']),
        startLine: String(s['sip.Request-Line'] ?? s['sip.Status-Line']),
        headers,
        body: hex('sip.msg_body_raw'),
        raw: Buffer.from(raws[i][0], 'hex'),
      });
    });
  }
  return out;
}
