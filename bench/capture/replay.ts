import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCaptureFile } from '../../shared/pcap/reader';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { GENERATOR_VERSION, generateSipCapture } from '../common/sipgen';

/**
 * The replay file of the capture bench: SIP-over-UDP frames from the query
 * bench's generator (INVITE dialogs, busy calls, OPTIONS pings; 400-1000
 * bytes each), readdressed so that every frame goes from the sending end of
 * the bench's veth pair to the receiving one: Ethernet source/destination
 * are the two veths' MACs (which the bench sets itself, so the file can be
 * cached), IPv4 source/destination the two ends' addresses. Ports stay
 * 5060 -> 5060, which the agent's default filter takes. Bump
 * REPLAY_VERSION when the output for the same parameters changes.
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

/** The cached replay file when it was made from the same spec and is intact, else a new one; `cached` says which. */
export async function ensureReplayFile(dir: string, spec: ReplaySpec, log: (m: string) => void): Promise<ReplayFile & { cached: boolean }> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'replay.pcap');
  const metaPath = join(dir, 'replay.json');
  if (existsSync(metaPath) && existsSync(path)) {
    try {
      const m = JSON.parse(readFileSync(metaPath, 'utf8')) as Meta;
      if (m.version === REPLAY_VERSION && m.generatorVersion === GENERATOR_VERSION && sameSpec(m.spec, spec) && statSync(path).size === m.fileBytes) {
        return { path, packets: m.packets, bytes: m.bytes, minFrame: m.minFrame, maxFrame: m.maxFrame, meanFrame: m.meanFrame, kinds: m.kinds, cached: true };
      }
      log('cached replay file is stale; regenerating');
    } catch {
      log('cached replay metadata unreadable; regenerating');
    }
  }

  // The generator writes whole dialogs over a long simulated time; take the
  // first `packets` frames of a capture comfortably bigger than that.
  const genDir = join(dir, 'gen');
  rmSync(genDir, { recursive: true, force: true });
  mkdirSync(genDir, { recursive: true });
  log(`generating ${spec.packets} SIP packets for the replay file`);
  const gen = generateSipCapture({ outDir: genDir, totalBytes: Math.ceil(spec.packets * 800 * 1.3), fileBytes: 256 * 1024 * 1024, seed: spec.seed });
  if (gen.packets < spec.packets) throw new Error(`generator made ${gen.packets} packets, fewer than the ${spec.packets} wanted`);

  const src = macBytes(spec.srcMac);
  const dst = macBytes(spec.dstMac);
  const sip = ipBytes(spec.srcIp);
  const dip = ipBytes(spec.dstIp);
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: false, snaplen: 65535, bufferSize: 4 * 1024 * 1024 });
  let n = 0;
  let bytes = 0;
  let minFrame = Infinity;
  let maxFrame = 0;
  const kinds: Record<string, number> = {};
  // Timestamps 10 µs apart; tcpreplay --pps ignores them anyway.
  const baseSec = 1_795_392_000;
  try {
    outer: for (const f of gen.files) {
      for await (const r of readCaptureFile(f)) {
        if (n >= spec.packets) break outer;
        const frame = Buffer.from(r.data);
        if (frame.length < 42 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 17) throw new Error('generator frame is not Ethernet/IPv4/UDP');
        dst.copy(frame, 0);
        src.copy(frame, 6);
        sip.copy(frame, 26);
        dip.copy(frame, 30);
        frame.writeUInt16BE(ipv4HeaderChecksum(frame), 24);
        const us = n * 10;
        w.write({ tsSec: baseSec + Math.floor(us / 1e6), tsNsec: (us % 1e6) * 1000, origLen: frame.length, data: frame });
        const line = frame.subarray(42, Math.min(frame.length, 42 + 64)).toString('latin1').split('\r\n')[0];
        const kind = line.startsWith('SIP/2.0 ') ? line.slice(0, 24).replace(/\s+$/, '') : line.split(' ')[0];
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        n++;
        bytes += frame.length;
        minFrame = Math.min(minFrame, frame.length);
        maxFrame = Math.max(maxFrame, frame.length);
      }
    }
    w.flush();
  } finally {
    closeSync(fd);
  }
  if (n !== spec.packets) throw new Error(`replay file has ${n} packets, wanted ${spec.packets}`);
  renameSync(tmp, path);
  rmSync(genDir, { recursive: true, force: true });
  const out: ReplayFile = { path, packets: n, bytes, minFrame, maxFrame, meanFrame: bytes / n, kinds };
  const meta: Meta = { ...out, version: REPLAY_VERSION, generatorVersion: GENERATOR_VERSION, spec, fileBytes: statSync(path).size };
  writeFileSync(metaPath, JSON.stringify(meta, null, 2));
  return { ...out, cached: false };
}
