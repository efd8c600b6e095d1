import { closeSync, openSync, writeSync } from 'node:fs';

/**
 * Writes large synthetic captures fast, for tests that need a ring whose
 * answer takes a while to stream (faults mid-trace). Plain Ethernet/IPv4/UDP
 * packets between two addresses, alternating direction, nanosecond PCAP.
 */

export interface SynthFlow {
  /** IPv4 addresses of the two ends. */
  a: string;
  b: string;
  /** UDP ports; keep them off the SIP ranges so no SIP decoding is attempted. */
  portA: number;
  portB: number;
  packets: number;
  /** UDP payload bytes per packet. */
  payloadBytes: number;
}

export interface SynthResult {
  packets: number;
  bytes: number;
  firstNs: bigint;
  lastNs: bigint;
}

function ipBytes(s: string): Buffer {
  const parts = s.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`synthpcap: bad IPv4 address ${s}`);
  return Buffer.from(parts);
}

function ipv4Checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** One Ethernet frame from `src` to `dst`; the payload is deterministic so captures compare by bytes. */
function frame(srcIp: Buffer, dstIp: Buffer, sport: number, dport: number, payloadBytes: number, seq: number): Buffer {
  const f = Buffer.alloc(14 + 20 + 8 + payloadBytes);
  // Locally administered MACs derived from the last address byte.
  Buffer.from([0x02, 0, 0, 0, 0, dstIp[3]]).copy(f, 0);
  Buffer.from([0x02, 0, 0, 0, 0, srcIp[3]]).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  const ip = f.subarray(14, 34);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payloadBytes, 2);
  ip.writeUInt16BE(seq & 0xffff, 4);
  ip[8] = 64;
  ip[9] = 17;
  srcIp.copy(ip, 12);
  dstIp.copy(ip, 16);
  ip.writeUInt16BE(ipv4Checksum(ip), 10);
  const udp = f.subarray(34, 42);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(8 + payloadBytes, 4);
  // Checksum 0: none, which IPv4 allows.
  const body = f.subarray(42);
  body.fill(seq & 0xff);
  if (body.length >= 4) body.writeUInt32BE(seq >>> 0, 0);
  return f;
}

/**
 * Writes the flows one after another, `stepNs` apart, starting at `startNs`.
 * Memory stays bounded: records go out in batches of about 4 MiB.
 */
export function writeSyntheticPcap(path: string, flows: SynthFlow[], startNs: bigint, stepNs = 1_000_000n): SynthResult {
  const fd = openSync(path, 'w');
  try {
    const hdr = Buffer.alloc(24);
    hdr.writeUInt32LE(0xa1b23c4d, 0); // nanosecond PCAP
    hdr.writeUInt16LE(2, 4);
    hdr.writeUInt16LE(4, 6);
    hdr.writeUInt32LE(65535, 16);
    hdr.writeUInt32LE(1, 20); // Ethernet
    writeSync(fd, hdr);
    let bytes = 24;
    let packets = 0;
    let ts = startNs;
    const batch: Buffer[] = [];
    let batchBytes = 0;
    const flush = () => {
      if (batch.length === 0) return;
      writeSync(fd, Buffer.concat(batch, batchBytes));
      batch.length = 0;
      batchBytes = 0;
    };
    for (const fl of flows) {
      const a = ipBytes(fl.a);
      const b = ipBytes(fl.b);
      for (let i = 0; i < fl.packets; i++) {
        const fwd = i % 2 === 0;
        const data = fwd ? frame(a, b, fl.portA, fl.portB, fl.payloadBytes, packets) : frame(b, a, fl.portB, fl.portA, fl.payloadBytes, packets);
        const rec = Buffer.alloc(16);
        rec.writeUInt32LE(Number(ts / 1_000_000_000n), 0);
        rec.writeUInt32LE(Number(ts % 1_000_000_000n), 4);
        rec.writeUInt32LE(data.length, 8);
        rec.writeUInt32LE(data.length, 12);
        batch.push(rec, data);
        batchBytes += 16 + data.length;
        bytes += 16 + data.length;
        packets++;
        ts += stepNs;
        if (batchBytes >= 4 << 20) flush();
      }
    }
    flush();
    return { packets, bytes, firstNs: startNs, lastNs: ts - stepNs };
  } finally {
    closeSync(fd);
  }
}
