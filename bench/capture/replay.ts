import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCaptureFile } from '../../shared/pcap/reader';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { GENERATOR_VERSION, generateSipCapture } from '../common/sipgen';
import { framesPerCall, RtpCall, rtpCall as rtpCallOf, rtpCallFrames, RtpCallsOptions } from '../common/rtpgen';

/**
 * The replay file of the capture bench: SIP-over-UDP frames from the query
 * bench's generator (INVITE dialogs, busy calls, OPTIONS pings; 400-1000
 * bytes each), readdressed so that every frame goes from the sending end of
 * the bench's veth pair to the receiving one: Ethernet source/destination
 * are the two veths' MACs (which the bench sets itself, so the file can be
 * cached), IPv4 source/destination the two ends' addresses. Ports stay
 * 5060 -> 5060, which the agent's default filter takes. The mixed case's
 * file (ensureRtpMixFile, below) is cached the same way. Bump REPLAY_VERSION
 * when either's output for the same parameters changes, bench/common/rtpgen.ts's
 * frames included (sipgen's have GENERATOR_VERSION).
 */
export const REPLAY_VERSION = 1;

export interface ReplaySpec {
  packets: number;
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
  seed: number;
}

export interface ReplayFile {
  path: string;
  packets: number;
  bytes: number;
  /** Frame sizes on the wire (Ethernet header to end of SIP, no FCS). */
  minFrame: number;
  maxFrame: number;
  meanFrame: number;
  /** Packets per SIP start line (INVITE, "SIP/2.0 200 OK", ...), for the report. */
  kinds: Record<string, number>;
}

interface Meta extends ReplayFile {
  version: number;
  generatorVersion: number;
  spec: ReplaySpec;
  fileBytes: number;
}

function macBytes(mac: string): Buffer {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-f]{2}$/i.test(p))) throw new Error(`bad MAC ${mac}`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

function ipBytes(ip: string): Buffer {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) throw new Error(`bad IPv4 address ${ip}`);
  return Buffer.from(parts);
}

function ipv4HeaderChecksum(frame: Buffer): number {
  let sum = 0;
  for (let i = 14; i < 34; i += 2) if (i !== 24) sum += (frame[i] << 8) | frame[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function sameSpec(a: ReplaySpec, b: ReplaySpec): boolean {
  return a.packets === b.packets && a.srcMac === b.srcMac && a.dstMac === b.dstMac && a.srcIp === b.srcIp && a.dstIp === b.dstIp && a.seed === b.seed;
}

/** The metadata of a cached file when `fits` accepts it and the file is intact, else null (with the reason logged). */
function cachedMeta<M extends { fileBytes: number }>(path: string, metaPath: string, fits: (m: M) => boolean, log: (m: string) => void): M | null {
  if (!existsSync(metaPath) || !existsSync(path)) return null;
  try {
    const m = JSON.parse(readFileSync(metaPath, 'utf8')) as M;
    if (fits(m) && statSync(path).size === m.fileBytes) return m;
    log(`cached ${path} is stale; regenerating`);
  } catch {
    log(`cached metadata ${metaPath} unreadable; regenerating`);
  }
  return null;
}

/** The first `packets` SIP frames of a sipgen capture comfortably bigger than that (it writes whole dialogs over a long simulated time). */
async function sipFrames(dir: string, packets: number, seed: number, log: (m: string) => void): Promise<Buffer[]> {
  const genDir = join(dir, 'gen');
  rmSync(genDir, { recursive: true, force: true });
  mkdirSync(genDir, { recursive: true });
  log(`generating ${packets} SIP packets for the replay file`);
  try {
    const gen = generateSipCapture({ outDir: genDir, totalBytes: Math.ceil(packets * 800 * 1.3), fileBytes: 256 * 1024 * 1024, seed });
    if (gen.packets < packets) throw new Error(`generator made ${gen.packets} packets, fewer than the ${packets} wanted`);
    const out: Buffer[] = [];
    for (const f of gen.files) {
      for await (const r of readCaptureFile(f)) {
        if (out.length >= packets) return out;
        const frame = Buffer.from(r.data);
        if (frame.length < 42 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 17) throw new Error('generator frame is not Ethernet/IPv4/UDP');
        out.push(frame);
      }
    }
    return out;
  } finally {
    rmSync(genDir, { recursive: true, force: true });
  }
}

/** Sets a frame's Ethernet and IPv4 addresses (and the header checksum); null leaves the IPv4 addresses as they are. */
function readdress(frame: Buffer, src: Buffer, dst: Buffer, sip: Buffer | null, dip: Buffer | null): void {
  dst.copy(frame, 0);
  src.copy(frame, 6);
  if (sip) sip.copy(frame, 26);
  if (dip) dip.copy(frame, 30);
  frame.writeUInt16BE(ipv4HeaderChecksum(frame), 24);
}

/** The SIP start line's kind ("INVITE", "SIP/2.0 200 OK", ...), or "RTP" for a frame that is not SIP. */
function kindOf(frame: Buffer): string {
  const line = frame.subarray(42, Math.min(frame.length, 42 + 64)).toString('latin1').split('\r\n')[0];
  if (line.startsWith('SIP/2.0 ')) return line.slice(0, 24).replace(/\s+$/, '');
  const method = line.split(' ')[0];
  return /^[A-Z]+$/.test(method) ? method : 'RTP';
}

/** The cached replay file when it was made from the same spec and is intact, else a new one; `cached` says which. */
export async function ensureReplayFile(dir: string, spec: ReplaySpec, log: (m: string) => void): Promise<ReplayFile & { cached: boolean }> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'replay.pcap');
  const metaPath = join(dir, 'replay.json');
  const m = cachedMeta<Meta>(path, metaPath, (x) => x.version === REPLAY_VERSION && x.generatorVersion === GENERATOR_VERSION && sameSpec(x.spec, spec), log);
  if (m) return { path, packets: m.packets, bytes: m.bytes, minFrame: m.minFrame, maxFrame: m.maxFrame, meanFrame: m.meanFrame, kinds: m.kinds, cached: true };
  const frames = await sipFrames(dir, spec.packets, spec.seed, log);

  const w = new ReplayWriter(path);
  try {
    const src = macBytes(spec.srcMac);
    const dst = macBytes(spec.dstMac);
    const sip = ipBytes(spec.srcIp);
    const dip = ipBytes(spec.dstIp);
    for (const frame of frames) {
      readdress(frame, src, dst, sip, dip);
      w.write(frame);
    }
  } finally {
    w.close();
  }
  const out = w.finish(spec.packets);
  const meta: Meta = { ...out, version: REPLAY_VERSION, generatorVersion: GENERATOR_VERSION, spec, fileBytes: statSync(path).size };
  writeFileSync(metaPath, JSON.stringify(meta, null, 2));
  return { ...out, cached: false };
}

/** Writes a replay file under a temporary name, counting what it holds; finish() puts it in place. */
class ReplayWriter {
  private readonly tmp: string;
  private readonly fd: number;
  private readonly w: PcapFileWriterSync;
  private closed = false;
  n = 0;
  private bytes = 0;
  private minFrame = Infinity;
  private maxFrame = 0;
  private readonly kinds: Record<string, number> = {};
  // Timestamps 10 µs apart; tcpreplay --pps ignores them anyway.
  private static readonly BASE_SEC = 1_795_392_000;

  constructor(private readonly path: string) {
    this.tmp = `${path}.tmp`;
    this.fd = openSync(this.tmp, 'w');
    this.w = new PcapFileWriterSync(this.fd, { linkType: 1, nanos: false, snaplen: 65535, bufferSize: 4 * 1024 * 1024 });
  }

  write(frame: Buffer): void {
    const us = this.n * 10;
    this.w.write({ tsSec: ReplayWriter.BASE_SEC + Math.floor(us / 1e6), tsNsec: (us % 1e6) * 1000, origLen: frame.length, data: frame });
    const kind = kindOf(frame);
    this.kinds[kind] = (this.kinds[kind] ?? 0) + 1;
    this.n++;
    this.bytes += frame.length;
    this.minFrame = Math.min(this.minFrame, frame.length);
    this.maxFrame = Math.max(this.maxFrame, frame.length);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.w.flush();
    } finally {
      closeSync(this.fd);
    }
  }

  finish(wanted: number): ReplayFile {
    this.close();
    if (this.n !== wanted) throw new Error(`replay file has ${this.n} packets, wanted ${wanted}`);
    renameSync(this.tmp, this.path);
    return { path: this.path, packets: this.n, bytes: this.bytes, minFrame: this.minFrame, maxFrame: this.maxFrame, meanFrame: this.bytes / this.n, kinds: this.kinds };
  }
}

/**
 * The mixed replay file: a media server's traffic as a mirror port shows it.
 * Overlapping G.711 calls from bench/common/rtpgen.ts (SIP with SDP between
 * two proxies, RTP both ways between each caller and the media server) make
 * about 1 - sipShare of the packets; SIP from bench/common/sipgen.ts between
 * the same two proxies fills the rest, spread evenly. Every address is in
 * MIX_NET, which neither namespace has: the receiving kernel drops these
 * frames after the capture saw them (not for it, no forwarding, no route back)
 * and answers none, so each tool captures exactly what was sent.
 */
export const MIX_NET = '198.19';

export interface MixSpec {
  packets: number;
  srcMac: string;
  dstMac: string;
  seed: number;
  /** Share of SIP packets (the calls' own and the filler), e.g. 0.1. */
  sipShare: number;
  rtpSeconds: number;
  /** Calls up at once once the first have filled in. */
  concurrentCalls: number;
}

/** A call whose every frame is in the file, with where: a run of `first..last` packets sent holds it whole. */
export interface MixCall extends RtpCall {
  firstPacket: number;
  lastPacket: number;
}

export interface MixFile extends ReplayFile {
  calls: MixCall[];
  /** What the calls' generator was given (their addresses). */
  gen: RtpCallsOptions;
}

interface MixMeta extends MixFile {
  version: number;
  generatorVersion: number;
  spec: MixSpec;
  fileBytes: number;
}

export function mixCallsOptions(spec: MixSpec): RtpCallsOptions {
  const per = framesPerCall(spec.rtpSeconds);
  // Enough calls that they outlast the file (the generator stops being read at `packets`).
  const calls = Math.ceil((spec.packets * (1 - spec.sipShare)) / (per.sip + per.rtp)) + spec.concurrentCalls + 1;
  const spacingNs = Math.round((spec.rtpSeconds * 1e9 + 40e6) / spec.concurrentCalls);
  if (calls > 255 * 256) throw new Error(`${calls} calls: more callers than ${MIX_NET}.0.0-254.255 holds`);
  // Callers from MIX_NET.0.0 up (rtpCall numbers them), the proxies and the media server at MIX_NET.255.x apart from them.
  return { calls, rtpSeconds: spec.rtpSeconds, spacingNs, sipA: `${MIX_NET}.255.1`, sipB: `${MIX_NET}.255.2`, media: `${MIX_NET}.255.3`, callerNet: MIX_NET };
}

export async function ensureRtpMixFile(dir: string, spec: MixSpec, log: (m: string) => void): Promise<MixFile & { cached: boolean }> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'replay-rtp.pcap');
  const metaPath = join(dir, 'replay-rtp.json');
  const m = cachedMeta<MixMeta>(path, metaPath, (x) => x.version === REPLAY_VERSION && x.generatorVersion === GENERATOR_VERSION && JSON.stringify(x.spec) === JSON.stringify(spec), log);
  if (m) {
    const { version: _v, generatorVersion: _g, spec: _s, fileBytes: _f, ...file } = m;
    return { ...file, cached: true };
  }
  const gen = mixCallsOptions(spec);
  const per = framesPerCall(spec.rtpSeconds);
  const callSip = per.sip / (per.sip + per.rtp);
  // Filler SIP frames per call frame, so that the calls' own SIP and the filler together make sipShare.
  const fillerPerCallFrame = Math.max(0, (spec.sipShare - callSip) / (1 - spec.sipShare));
  const filler = await sipFrames(dir, Math.ceil(spec.packets * fillerPerCallFrame) + 1, spec.seed, log);
  log(`generating the mixed replay file: ${spec.packets} packets, ${spec.concurrentCalls} concurrent calls, ${Math.round(spec.sipShare * 100)}% SIP`);
  const src = macBytes(spec.srcMac);
  const dst = macBytes(spec.dstMac);
  const proxyA = ipBytes(gen.sipA);
  const proxyB = ipBytes(gen.sipB);
  const w = new ReplayWriter(path);
  const first = new Map<number, number>();
  const calls: MixCall[] = [];
  let debt = 0;
  let f = 0;
  try {
    for (const cf of rtpCallFrames(gen)) {
      if (w.n >= spec.packets) break;
      if (!first.has(cf.call)) first.set(cf.call, w.n);
      readdress(cf.frame, src, dst, null, null);
      w.write(cf.frame);
      if (cf.last) {
        const c = rtpCallOf(gen, cf.call);
        calls.push({ ...c, firstPacket: first.get(cf.call)!, lastPacket: w.n - 1 });
        first.delete(cf.call);
      }
      for (debt += fillerPerCallFrame; debt >= 1 && w.n < spec.packets; debt--) {
        const frame = filler[f++ % filler.length];
        readdress(frame, src, dst, proxyA, proxyB);
        w.write(frame);
      }
    }
  } finally {
    w.close();
  }
  const out: MixFile = { ...w.finish(spec.packets), calls, gen };
  const meta: MixMeta = { ...out, version: REPLAY_VERSION, generatorVersion: GENERATOR_VERSION, spec, fileBytes: statSync(path).size };
  writeFileSync(metaPath, JSON.stringify(meta));
  return { ...out, cached: false };
}
