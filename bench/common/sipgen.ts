import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { MinHeap } from '../../shared/heap/min-heap';
import { RTP_G711_LEN, rtpPacket } from './rtp';

/**
 * Synthetic SIP-over-UDP traffic for benchmarks: many interleaved INVITE
 * dialogs between a few tens of proxies and gateways, written as PCAP files
 * cut the way a capture ring cuts its segments.
 *
 * Speed comes from templates: every message shape is rendered once per
 * User-Agent pairing with fixed-width placeholders, and each packet is a copy
 * of its template with the dialog's values patched in at known offsets. That
 * is why every variable field (addresses, numbers, tags, ports) has a fixed
 * width: Content-Length and the IP/UDP lengths come out right without
 * re-rendering anything.
 *
 * Bump GENERATOR_VERSION whenever the output for the same options changes,
 * so that cached captures are regenerated.
 */
export const GENERATOR_VERSION = 3;

export interface SipGenOptions {
  outDir: string;
  /** Approximate total size of the files written. */
  totalBytes: number;
  /** File size at which a new file starts (default 64 MiB, a ring segment). */
  fileBytes?: number;
  /** Answered calls up at the same time, on average (default 100). */
  concurrentCalls?: number;
  seed?: number;
  /** Epoch seconds of the first packet. */
  startSec?: number;
  /** An E.164 number (+1555xxxxxxx) that the random pool never draws and that is placed in `targetNumberDialogs` dialogs. */
  targetNumber?: string;
  targetNumberDialogs?: number;
  /** Called after each file is completed. */
  onProgress?: (bytesWritten: number, totalBytes: number) => void;
  /**
   * RTP for a share of the answered calls (the target Call-ID's always): G.711
   * both ways between the SDP's endpoints, 50 packets/s each way, from the 200 OK
   * for `seconds` or until the BYE. Without it the output is as it always was.
   */
  rtp?: { share: number; seconds: number };
}

/** Where one call's RTP flows: the endpoints of its two SDPs. */
export interface RtpCallMedia {
  a: { ip: string; port: number };
  b: { ip: string; port: number };
}

export interface SipGenResult {
  version: number;
  files: string[];
  /** File bytes, PCAP headers included. */
  bytes: number;
  packets: number;
  dialogs: number;
  answeredCalls: number;
  busyCalls: number;
  optionsPings: number;
  /** Highest number of answered calls up at once. */
  peakConcurrentCalls: number;
  firstTs: string;
  lastTs: string;
  /** A Call-ID from the middle of the capture and how many packets carry it. */
  targetCallId: string;
  targetCallIdPackets: number;
  targetNumber: string;
  targetNumberCallIds: string[];
  targetNumberPackets: number;
  /** Answered calls with RTP, and the RTP packets in the capture (counted in `packets` too). */
  rtpCalls: number;
  rtpPackets: number;
  /** With `rtp`: the target Call-ID's media endpoints and its RTP packets (not in targetCallIdPackets). */
  targetMedia: RtpCallMedia | null;
  targetCallIdRtpPackets: number;
  generationMs: number;
}

/** Fields patched per dialog; the order gives each its placeholder byte (0x80 + index). */
const FIELDS = [
  'CALLID', 'FTAG', 'TTAG', 'BR1', 'BR2', 'BR3', 'CSEQ', 'CSEQB',
  'ANUM', 'BNUM', 'AIP', 'BIP', 'AMEDIA', 'BMEDIA', 'APORT', 'BPORT', 'SESSA', 'SESSB',
] as const;
type Field = (typeof FIELDS)[number];

const WIDTH: Record<Field, number> = {
  CALLID: 24 + 1 + 12, FTAG: 10, TTAG: 10, BR1: 16, BR2: 16, BR3: 16, CSEQ: 3, CSEQB: 3,
  ANUM: 12, BNUM: 12, AIP: 12, BIP: 12, AMEDIA: 12, BMEDIA: 12, APORT: 5, BPORT: 5, SESSA: 10, SESSB: 10,
};

const FIELD_INDEX = new Map<Field, number>(FIELDS.map((f, i) => [f, i]));

interface UserAgent {
  name: string;
  allow: string;
  supported: string;
}

// Header sets of real products (versions made up) so that message sizes and header orders vary the way a mixed network's do.
const AGENTS: UserAgent[] = [
  { name: 'Oracle-SBC/9.1.0 (SCZ9.1.0 Patch 3)', allow: 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY', supported: 'timer, 100rel, replaces' },
  { name: 'Kamailio (5.7.4 (x86_64/linux))', allow: 'INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, NOTIFY, REFER', supported: 'timer, path' },
  { name: 'FreeSWITCH-mod_sofia/1.10.11-release~64bit', allow: 'INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY', supported: 'timer, path, replaces' },
  { name: 'Cisco-SIPGateway/IOS-17.9.4a', allow: 'INVITE, OPTIONS, BYE, CANCEL, ACK, PRACK, UPDATE, REFER, SUBSCRIBE, NOTIFY, INFO, REGISTER', supported: 'timer, resource-priority, replaces, sdp-anat' },
];

type Side = 'A' | 'B';
type Kind =
  | 'INVITE' | 'TRYING' | 'RINGING' | 'OK_INVITE' | 'ACK' | 'BYE_A' | 'BYE_B' | 'OK_BYE_A' | 'OK_BYE_B'
  | 'BUSY' | 'ACK_BUSY' | 'OPTIONS' | 'OK_OPTIONS';

/** Sender of each message: A is the caller side (the proxy that sent the INVITE). */
const SENDER: Record<Kind, Side> = {
  INVITE: 'A', TRYING: 'B', RINGING: 'B', OK_INVITE: 'B', ACK: 'A', BYE_A: 'A', BYE_B: 'B', OK_BYE_A: 'B', OK_BYE_B: 'A',
  BUSY: 'B', ACK_BUSY: 'A', OPTIONS: 'A', OK_OPTIONS: 'B',
};

function sdp(sess: string, media: string, port: string): string {
  return [
    'v=0',
    `o=- ${sess} ${sess} IN IP4 ${media}`,
    's=-',
    `c=IN IP4 ${media}`,
    't=0 0',
    `m=audio ${port} RTP/AVP 0 8 18 101`,
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:8 PCMA/8000',
    'a=rtpmap:18 G729/8000',
    'a=fmtp:18 annexb=no',
    'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-16',
    'a=ptime:20',
    'a=sendrecv',
    '',
  ].join('\r\n');
}

function message(head: string[], body = '', contentType = 'application/sdp'): string {
  const h = [...head];
  if (body) h.push(`Content-Type: ${contentType}`);
  h.push(`Content-Length: ${Buffer.byteLength(body, 'latin1')}`);
  return h.join('\r\n') + '\r\n\r\n' + body;
}

/** The SIP text of one message kind, with `f` giving each field's placeholder. */
function renderSip(kind: Kind, f: Record<Field, string>, ua: UserAgent, ub: UserAgent): string {
  const viaA = `Via: SIP/2.0/UDP ${f.AIP}:5060;branch=z9hG4bK${f.BR1}`;
  const fromA = `From: <sip:${f.ANUM}@${f.AIP}>;tag=${f.FTAG}`;
  const toB = `To: <sip:${f.BNUM}@${f.BIP}>`;
  const toBTag = `${toB};tag=${f.TTAG}`;
  const cid = `Call-ID: ${f.CALLID}`;
  const contactA = `Contact: <sip:${f.ANUM}@${f.AIP}:5060>`;
  const contactB = `Contact: <sip:${f.BNUM}@${f.BIP}:5060>`;
  const rrA = `Record-Route: <sip:${f.AIP};lr>`;
  switch (kind) {
    case 'INVITE':
      return message([
        `INVITE sip:${f.BNUM}@${f.BIP}:5060 SIP/2.0`, viaA, 'Max-Forwards: 70', fromA, toB, cid, `CSeq: ${f.CSEQ} INVITE`, contactA,
        `P-Asserted-Identity: <sip:${f.ANUM}@${f.AIP};user=phone>`, `Allow: ${ua.allow}`, `Supported: ${ua.supported}`,
        'Session-Expires: 1800', 'Min-SE: 90', `User-Agent: ${ua.name}`,
      ], sdp(f.SESSA, f.AMEDIA, f.APORT));
    case 'TRYING':
      return message(['SIP/2.0 100 Trying', viaA, fromA, toB, cid, `CSeq: ${f.CSEQ} INVITE`, `Server: ${ub.name}`]);
    case 'RINGING':
      return message(['SIP/2.0 180 Ringing', viaA, rrA, fromA, toBTag, cid, `CSeq: ${f.CSEQ} INVITE`, contactB, `Allow: ${ub.allow}`, `Server: ${ub.name}`]);
    case 'OK_INVITE':
      return message([
        'SIP/2.0 200 OK', viaA, rrA, fromA, toBTag, cid, `CSeq: ${f.CSEQ} INVITE`, contactB, `Allow: ${ub.allow}`,
        `Supported: ${ub.supported}`, 'Require: timer', 'Session-Expires: 1800;refresher=uac', `Server: ${ub.name}`,
      ], sdp(f.SESSB, f.BMEDIA, f.BPORT));
    case 'ACK':
      return message([
        `ACK sip:${f.BNUM}@${f.BIP}:5060 SIP/2.0`, `Via: SIP/2.0/UDP ${f.AIP}:5060;branch=z9hG4bK${f.BR2}`, 'Max-Forwards: 70',
        fromA, toBTag, cid, `CSeq: ${f.CSEQ} ACK`, `User-Agent: ${ua.name}`,
      ]);
    case 'BYE_A':
    case 'OK_BYE_A': {
      const via = `Via: SIP/2.0/UDP ${f.AIP}:5060;branch=z9hG4bK${f.BR3}`;
      const common = [fromA, toBTag, cid, `CSeq: ${f.CSEQB} BYE`];
      return kind === 'BYE_A'
        ? message([`BYE sip:${f.BNUM}@${f.BIP}:5060 SIP/2.0`, via, 'Max-Forwards: 70', ...common, `User-Agent: ${ua.name}`])
        : message(['SIP/2.0 200 OK', via, ...common, `Server: ${ub.name}`]);
    }
    case 'BYE_B':
    case 'OK_BYE_B': {
      const via = `Via: SIP/2.0/UDP ${f.BIP}:5060;branch=z9hG4bK${f.BR3}`;
      const common = [`From: <sip:${f.BNUM}@${f.BIP}>;tag=${f.TTAG}`, `To: <sip:${f.ANUM}@${f.AIP}>;tag=${f.FTAG}`, cid, `CSeq: ${f.CSEQB} BYE`];
      return kind === 'BYE_B'
        ? message([`BYE sip:${f.ANUM}@${f.AIP}:5060 SIP/2.0`, via, 'Max-Forwards: 70', ...common, `User-Agent: ${ub.name}`])
        : message(['SIP/2.0 200 OK', via, ...common, `Server: ${ua.name}`]);
    }
    case 'BUSY':
      return message(['SIP/2.0 486 Busy Here', viaA, fromA, toBTag, cid, `CSeq: ${f.CSEQ} INVITE`, `Server: ${ub.name}`]);
    case 'ACK_BUSY':
      // The ACK of a non-2xx final response belongs to the INVITE transaction: same branch.
      return message([`ACK sip:${f.BNUM}@${f.BIP}:5060 SIP/2.0`, viaA, 'Max-Forwards: 70', fromA, toBTag, cid, `CSeq: ${f.CSEQ} ACK`, `User-Agent: ${ua.name}`]);
    case 'OPTIONS':
      return message([
        `OPTIONS sip:${f.BIP}:5060 SIP/2.0`, viaA, 'Max-Forwards: 70', `From: <sip:ping@${f.AIP}>;tag=${f.FTAG}`, `To: <sip:${f.BIP}>`,
        cid, `CSeq: ${f.CSEQ} OPTIONS`, `Contact: <sip:ping@${f.AIP}:5060>`, 'Accept: application/sdp', `User-Agent: ${ua.name}`,
      ]);
    case 'OK_OPTIONS':
      return message([
        'SIP/2.0 200 OK', viaA, `From: <sip:ping@${f.AIP}>;tag=${f.FTAG}`, `To: <sip:${f.BIP}>;tag=${f.TTAG}`, cid, `CSeq: ${f.CSEQ} OPTIONS`,
        `Allow: ${ub.allow}`, `Supported: ${ub.supported}`, 'Accept: application/sdp', `Server: ${ub.name}`,
      ]);
  }
}

const ETH_IP_UDP = 14 + 20 + 8;

interface Template {
  frame: Buffer;
  sender: Side;
  /** [offset, field index] per placeholder run. */
  slots: Array<[number, number]>;
}

function buildTemplate(kind: Kind, ua: UserAgent, ub: UserAgent): Template {
  const ph = {} as Record<Field, string>;
  for (const f of FIELDS) ph[f] = String.fromCharCode(0x80 + FIELD_INDEX.get(f)!).repeat(WIDTH[f]);
  const sip = Buffer.from(renderSip(kind, ph, ua, ub), 'latin1');
  const slots: Array<[number, number]> = [];
  for (let i = 0; i < sip.length; ) {
    const b = sip[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    const fi = b - 0x80;
    let j = i;
    while (j < sip.length && sip[j] === b) j++;
    // A run of another length means two copies of one field touch, which no template does.
    if (j - i !== WIDTH[FIELDS[fi]]) throw new Error(`template ${kind}: field ${FIELDS[fi]} run of ${j - i} bytes`);
    slots.push([ETH_IP_UDP + i, fi]);
    i = j;
  }
  const frame = Buffer.alloc(ETH_IP_UDP + sip.length);
  frame.writeUInt16BE(0x0800, 12);
  frame[14] = 0x45;
  frame.writeUInt16BE(20 + 8 + sip.length, 16);
  frame.writeUInt16BE(0x4000, 20); // DF: SIP over UDP is sent unfragmented here
  frame[22] = 64;
  frame[23] = 17;
  frame.writeUInt16BE(5060, 34);
  frame.writeUInt16BE(5060, 36);
  frame.writeUInt16BE(8 + sip.length, 38);
  sip.copy(frame, ETH_IP_UDP);
  return { frame, sender: SENDER[kind], slots };
}

/** Small, fast, seedable: the same options give the same bytes. */
class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  u32(): number {
    // xorshift32
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  float(): number {
    return this.u32() / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }
  hex(n: number): string {
    let s = '';
    while (s.length < n) s += this.u32().toString(16).padStart(8, '0');
    return s.slice(0, n);
  }
  digits(n: number): string {
    let s = '';
    while (s.length < n) s += String(this.u32() % 100000).padStart(5, '0');
    return s.slice(0, n);
  }
  exp(mean: number): number {
    return -Math.log(1 - this.float()) * mean;
  }
}

interface Host {
  ip: string;
  ipBytes: Buffer;
  mac: Buffer;
  agent: number;
}

function makeHosts(n: number, second: number): Host[] {
  const out: Host[] = [];
  for (let i = 0; i < n; i++) {
    // Fixed-width dotted quads (12 characters) keep every template's lengths exact.
    const o = [10, second + (i % 4), 10 + ((i >> 2) % 10), 101 + i];
    out.push({
      ip: o.join('.'),
      ipBytes: Buffer.from(o),
      mac: Buffer.from([0x02, 0x00, o[0], o[1], o[2], o[3]]),
      agent: i % AGENTS.length,
    });
  }
  return out;
}

type Flow = 'answered' | 'busy' | 'options';

interface Dialog {
  flow: Flow;
  steps: Kind[];
  /** Gap before each step, in ns (0 for the first). */
  gaps: number[];
  step: number;
  next: number;
  a: Host;
  b: Host;
  values: string[];
  templates: Template[] | null;
  target: 'callid' | 'number' | null;
  rtp: boolean;
}

/** One direction of a call's RTP: a frame patched per packet (sequence, timestamp, IP id and checksum). */
interface RtpLeg {
  next: number;
  left: number;
  seq: number;
  frame: Buffer;
  target: boolean;
}

const RTP_INTERVAL = 20 * 1_000_000;

function rtpLegFrame(src: Host, dst: Host, sport: number, dport: number, ssrc: number): Buffer {
  const f = Buffer.alloc(ETH_IP_UDP + RTP_G711_LEN);
  dst.mac.copy(f, 0);
  src.mac.copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(20 + 8 + RTP_G711_LEN, 16);
  f[22] = 64;
  f[23] = 17;
  src.ipBytes.copy(f, 26);
  dst.ipBytes.copy(f, 30);
  f.writeUInt16BE(sport, 34);
  f.writeUInt16BE(dport, 36);
  f.writeUInt16BE(8 + RTP_G711_LEN, 38);
  rtpPacket(0, 0, ssrc).copy(f, ETH_IP_UDP);
  return f;
}


const MS = 1_000_000;
const S = 1_000_000_000;

function tsString(baseSec: number, rel: number): string {
  return `${baseSec + Math.floor(rel / S)}.${String(rel % S).padStart(9, '0')}`;
}

/**
 * Writes the capture and returns what is in it, including the ground truth
 * for the target Call-ID and target number.
 */
export function generateSipCapture(opts: SipGenOptions): SipGenResult {
  const started = process.hrtime.bigint();
  const fileBytes = opts.fileBytes ?? 64 * 1024 * 1024;
  const concurrent = opts.concurrentCalls ?? 100;
  const rng = new Rng(opts.seed ?? 20261123);
  const baseSec = opts.startSec ?? 1_795_392_000; // 2026-11-23T00:00:00Z
  const targetNumber = opts.targetNumber ?? '+15550100999';
  if (!/^\+1555\d{7}$/.test(targetNumber)) throw new Error(`targetNumber ${targetNumber} must look like +1555xxxxxxx`);
  const targetDialogs = opts.targetNumberDialogs ?? 3;

  const proxies = makeHosts(16, 20);
  const gateways = makeHosts(16, 24);
  const mediaHosts = makeHosts(64, 30);

  const templates = new Map<string, Template[]>();
  const kindsOf = (flow: Flow): Kind[] =>
    flow === 'answered' ? ['INVITE', 'TRYING', 'RINGING', 'OK_INVITE', 'ACK', 'BYE_A', 'OK_BYE_A', 'BYE_B', 'OK_BYE_B']
      : flow === 'busy' ? ['INVITE', 'TRYING', 'BUSY', 'ACK_BUSY'] : ['OPTIONS', 'OK_OPTIONS'];
  const allKinds: Kind[] = ['INVITE', 'TRYING', 'RINGING', 'OK_INVITE', 'ACK', 'BYE_A', 'OK_BYE_A', 'BYE_B', 'OK_BYE_B', 'BUSY', 'ACK_BUSY', 'OPTIONS', 'OK_OPTIONS'];
  const templateFor = (ai: number, bi: number, kind: Kind): Template => {
    const key = `${ai}/${bi}`;
    let set = templates.get(key);
    if (!set) templates.set(key, (set = allKinds.map((k) => buildTemplate(k, AGENTS[ai], AGENTS[bi]))));
    return set[allKinds.indexOf(kind)];
  };

  // Flow mix and durations: answered calls hold ~90 s, so ~100 concurrent calls means about one new call a second.
  const P_ANSWERED = 0.82;
  const P_BUSY = 0.12;
  const MEAN_HOLD = 90 * S;
  const meanAnswered = 1.5 * S + MEAN_HOLD;
  const arrivalMean = meanAnswered / concurrent / P_ANSWERED;

  // Expected bytes per dialog, from the templates, to place the targets at known fractions of the capture.
  const avgFrames = (kinds: Kind[]) => kinds.reduce((n, k) => n + 16 + templateFor(0, 1, k).frame.length, 0);
  const answeredBytes = avgFrames(['INVITE', 'TRYING', 'RINGING', 'OK_INVITE', 'ACK', 'BYE_A', 'OK_BYE_A']);
  // RTP calls add their media: 50 packets/s each way (holds are mostly longer than `seconds`).
  const rtpPerCall = opts.rtp ? opts.rtp.seconds * 100 * (16 + ETH_IP_UDP + RTP_G711_LEN) : 0;
  const perDialog = P_ANSWERED * answeredBytes + P_BUSY * avgFrames(kindsOf('busy')) + (1 - P_ANSWERED - P_BUSY) * avgFrames(kindsOf('options')) + P_ANSWERED * (opts.rtp?.share ?? 0) * rtpPerCall;
  const estDialogs = Math.max(20, Math.floor(opts.totalBytes / perDialog));
  const callIdTargetAt = Math.floor(estDialogs * 0.5);
  const numberTargetsAt = new Set<number>();
  for (let k = 0; k < targetDialogs; k++) numberTargetsAt.add(Math.floor((estDialogs * (k + 1)) / (targetDialogs + 2)) + 1);
  numberTargetsAt.delete(callIdTargetAt);
  if (numberTargetsAt.size !== targetDialogs) throw new Error('capture too small to place the target dialogs apart');

  const targetSuffix = targetNumber.slice(5);
  const drawNumber = (): string => {
    for (;;) {
      const d = rng.digits(7);
      if (d !== targetSuffix) return '+1555' + d;
    }
  };

  let dialogSeq = 0;
  const res: SipGenResult = {
    version: GENERATOR_VERSION, files: [], bytes: 0, packets: 0, dialogs: 0, answeredCalls: 0, busyCalls: 0, optionsPings: 0,
    peakConcurrentCalls: 0, firstTs: '', lastTs: '', targetCallId: '', targetCallIdPackets: 0, targetNumber,
    targetNumberCallIds: [], targetNumberPackets: 0, rtpCalls: 0, rtpPackets: 0, targetMedia: null, targetCallIdRtpPackets: 0, generationMs: 0,
  };

  const newDialog = (t0: number): Dialog => {
    const seq = dialogSeq++;
    const isCallTarget = seq === callIdTargetAt;
    const isNumberTarget = numberTargetsAt.has(seq);
    const u = rng.float();
    const flow: Flow = isCallTarget || isNumberTarget ? 'answered' : u < P_ANSWERED ? 'answered' : u < P_ANSWERED + P_BUSY ? 'busy' : 'options';
    const a = proxies[rng.int(0, proxies.length - 1)];
    const b = gateways[rng.int(0, gateways.length - 1)];
    let anum = drawNumber();
    let bnum = drawNumber();
    if (isNumberTarget) {
      // Caller in some target dialogs, callee in others: both From/PAI and To/R-URI matching get exercised.
      if (res.targetNumberCallIds.length % 2 === 0) anum = targetNumber;
      else bnum = targetNumber;
    }
    const cseq = rng.int(100, 898);
    const v: Record<Field, string> = {
      CALLID: `${rng.hex(24)}@${a.ip}`, FTAG: rng.hex(10), TTAG: rng.hex(10), BR1: rng.hex(16), BR2: rng.hex(16), BR3: rng.hex(16),
      CSEQ: String(cseq), CSEQB: String(cseq + 1), ANUM: anum, BNUM: bnum, AIP: a.ip, BIP: b.ip,
      AMEDIA: mediaHosts[rng.int(0, mediaHosts.length - 1)].ip, BMEDIA: mediaHosts[rng.int(0, mediaHosts.length - 1)].ip,
      APORT: String(2 * rng.int(5000, 29999)), BPORT: String(2 * rng.int(5000, 29999)),
      SESSA: String(rng.int(1_000_000_000, 1_999_999_999)), SESSB: String(rng.int(1_000_000_000, 1_999_999_999)),
    };
    let steps: Kind[];
    let gaps: number[];
    const shortGap = () => rng.int(2 * MS, 20 * MS);
    if (flow === 'answered') {
      const byB = rng.float() < 0.4;
      steps = ['INVITE', 'TRYING', 'RINGING', 'OK_INVITE', 'ACK', byB ? 'BYE_B' : 'BYE_A', byB ? 'OK_BYE_B' : 'OK_BYE_A'];
      const hold = Math.min(3600 * S, Math.floor(rng.exp(MEAN_HOLD)) + 2 * S);
      gaps = [0, shortGap(), rng.int(50 * MS, 2 * S), rng.int(500 * MS, 15 * S), shortGap(), hold, shortGap()];
      res.answeredCalls++;
    } else if (flow === 'busy') {
      steps = ['INVITE', 'TRYING', 'BUSY', 'ACK_BUSY'];
      gaps = [0, shortGap(), rng.int(50 * MS, 3 * S), shortGap()];
      res.busyCalls++;
    } else {
      steps = ['OPTIONS', 'OK_OPTIONS'];
      gaps = [0, shortGap()];
      res.optionsPings++;
    }
    for (const f of FIELDS) if (v[f].length !== WIDTH[f]) throw new Error(`field ${f} value ${v[f]} is not ${WIDTH[f]} characters`);
    const target = isCallTarget ? 'callid' : isNumberTarget ? 'number' : null;
    // Drawn only with `rtp`, so that captures without it stay byte for byte what they were.
    const rtp = flow === 'answered' && opts.rtp !== undefined && (rng.float() < opts.rtp.share || isCallTarget);
    if (rtp) res.rtpCalls++;
    if (rtp && isCallTarget) res.targetMedia = { a: { ip: v.AMEDIA, port: Number(v.APORT) }, b: { ip: v.BMEDIA, port: Number(v.BPORT) } };
    if (isCallTarget) res.targetCallId = v.CALLID;
    if (isNumberTarget) res.targetNumberCallIds.push(v.CALLID);
    res.dialogs++;
    return {
      flow, steps, gaps, step: 0, next: t0, a, b, target, rtp,
      values: FIELDS.map((f) => v[f]),
      templates: steps.map((k) => templateFor(a.agent, b.agent, k)),
    };
  };

  let fileIndex = 0;
  let fd = -1;
  let w: PcapFileWriterSync | null = null;
  let writtenBefore = 0;
  const openNext = () => {
    if (w) {
      w.flush();
      writtenBefore += w.position;
      closeSync(fd);
      opts.onProgress?.(writtenBefore, opts.totalBytes);
    }
    const path = join(opts.outDir, `sip-${String(fileIndex++).padStart(4, '0')}.pcap`);
    fd = openSync(path, 'w');
    w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true, snaplen: 262144, bufferSize: 4 * 1024 * 1024 });
    res.files.push(path);
  };
  openNext();

  const frame = Buffer.alloc(65536);
  // The ~100 live dialogs on their next event time: they interleave exactly in time order.
  const heap = new MinHeap<Dialog | RtpLeg>((a, b) => a.next < b.next);
  let nextArrival = 0;
  let lastT = -1;
  let ipId = 1;
  let up = 0;
  // Stop starting calls a little early: the calls still up then end normally, so the last file is not overshot by much.
  const stopArrivalsAt = opts.totalBytes - concurrent * 6000;
  const record = { tsSec: 0, tsNsec: 0, origLen: 0, data: frame };
  const mediaByIp = new Map(mediaHosts.map((h) => [h.ip, h]));
  /** Writes the frame built in `frame` at time `at` (or just after the last packet); returns its time. */
  const emit = (len: number, at: number): number => {
    frame.writeUInt16BE(ipId, 18);
    ipId = (ipId + 1) & 0xffff;
    let sum = 0;
    for (let i = 14; i < 34; i += 2) if (i !== 24) sum += (frame[i] << 8) | frame[i + 1];
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    frame.writeUInt16BE(~sum & 0xffff, 24);
    // Strictly increasing timestamps: ties would make "same order after sorting by time" ambiguous.
    const t = at <= lastT ? lastT + 1 : at;
    lastT = t;
    record.tsSec = baseSec + Math.floor(t / S);
    record.tsNsec = t % S;
    record.origLen = len;
    record.data = frame.subarray(0, len);
    if (w!.position + 16 + len > fileBytes) openNext();
    w!.write(record);
    res.packets++;
    if (res.firstTs === '') res.firstTs = tsString(baseSec, t);
    res.lastTs = tsString(baseSec, t);
    return t;
  };

  for (;;) {
    const live = heap.peek();
    const bytesNow = writtenBefore + w!.position;
    if (bytesNow < stopArrivalsAt && (!live || nextArrival <= live.next)) {
      heap.push(newDialog(nextArrival));
      nextArrival += Math.max(1, Math.floor(rng.exp(arrivalMean)));
      continue;
    }
    const e = heap.pop();
    if (!e) break;
    if (!('steps' in e)) {
      const len = e.frame.length;
      e.frame.copy(frame, 0, 0, len);
      frame.writeUInt16BE(e.seq & 0xffff, ETH_IP_UDP + 2);
      frame.writeUInt32BE((e.seq * 160) >>> 0, ETH_IP_UDP + 4);
      const t = emit(len, e.next);
      res.rtpPackets++;
      if (e.target) res.targetCallIdRtpPackets++;
      e.seq++;
      if (--e.left > 0) {
        e.next = t + RTP_INTERVAL;
        heap.push(e);
      }
      continue;
    }
    const d = e;
    const tpl = d.templates![d.step];
    const len = tpl.frame.length;
    tpl.frame.copy(frame, 0, 0, len);
    for (const [off, fi] of tpl.slots) frame.write(d.values[fi], off, 'latin1');
    const src = tpl.sender === 'A' ? d.a : d.b;
    const dst = tpl.sender === 'A' ? d.b : d.a;
    dst.mac.copy(frame, 0);
    src.mac.copy(frame, 6);
    src.ipBytes.copy(frame, 26);
    dst.ipBytes.copy(frame, 30);
    const t = emit(len, d.next);
    if (d.target === 'callid') res.targetCallIdPackets++;
    if (d.target === 'number') res.targetNumberPackets++;

    const kind = d.steps[d.step];
    if (kind === 'OK_INVITE') res.peakConcurrentCalls = Math.max(res.peakConcurrentCalls, ++up);
    if (kind === 'OK_INVITE' && d.rtp) {
      // Until the BYE at the latest: the hold is the gap before it, and the ACK comes after this 200 OK.
      const count = Math.max(1, Math.floor(Math.min(opts.rtp!.seconds * S, d.gaps[5]) / RTP_INTERVAL) - 1);
      const am = mediaByIp.get(d.values[FIELD_INDEX.get('AMEDIA')!])!;
      const bm = mediaByIp.get(d.values[FIELD_INDEX.get('BMEDIA')!])!;
      const ap = Number(d.values[FIELD_INDEX.get('APORT')!]);
      const bp = Number(d.values[FIELD_INDEX.get('BPORT')!]);
      const ssrc = rng.u32();
      const target = d.target === 'callid';
      heap.push({ next: t + RTP_INTERVAL, left: count, seq: 0, frame: rtpLegFrame(am, bm, ap, bp, ssrc), target });
      heap.push({ next: t + RTP_INTERVAL + 100_000, left: count, seq: 0, frame: rtpLegFrame(bm, am, bp, ap, ssrc ^ 0x5a5a5a5a), target });
    }
    if (kind === 'OK_BYE_A' || kind === 'OK_BYE_B') up--;
    d.step++;
    if (d.step < d.steps.length) {
      d.next = t + d.gaps[d.step];
      heap.push(d);
    }
  }
  w!.flush();
  res.bytes = writtenBefore + w!.position;
  closeSync(fd);
  opts.onProgress?.(res.bytes, opts.totalBytes);
  if (!res.targetCallId || res.targetNumberCallIds.length !== targetDialogs) {
    throw new Error(`capture too small for its targets (${res.dialogs} dialogs, estimate ${estDialogs})`);
  }
  res.generationMs = Number(process.hrtime.bigint() - started) / 1e6;
  return res;
}
