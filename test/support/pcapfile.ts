import { readFileSync } from 'node:fs';

/**
 * A deliberately small pcap/pcapng reader for the test oracle. It is kept apart
 * from the project's own reader so that a bug there cannot hide itself by
 * agreeing with the tests; tsharkPackets() also cross-checks it against tshark.
 */

export interface RawRecord {
  /** Nanoseconds since the epoch, exact for resolutions down to 1 ns. */
  epochNs: bigint;
  origLen: number;
  capLen: number;
  data: Buffer;
  linkType: number;
  interfaceId: number;
}

export function readRecords(path: string): RawRecord[] {
  const buf = readFileSync(path);
  if (buf.length < 4) throw new Error(`${path}: too short for a capture file (${buf.length} bytes)`);
  const m = buf.readUInt32LE(0);
  if (m === 0x0a0d0d0a) return readPcapng(path, buf);
  return readPcap(path, buf);
}

function readPcap(path: string, buf: Buffer): RawRecord[] {
  if (buf.length < 24) throw new Error(`${path}: truncated pcap header`);
  const magicLE = buf.readUInt32LE(0);
  let le: boolean;
  let nano: boolean;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) {
    le = true;
    nano = magicLE === 0xa1b23c4d;
  } else {
    const magicBE = buf.readUInt32BE(0);
    if (magicBE !== 0xa1b2c3d4 && magicBE !== 0xa1b23c4d) throw new Error(`${path}: not a pcap or pcapng file (magic 0x${magicLE.toString(16)})`);
    le = false;
    nano = magicBE === 0xa1b23c4d;
  }
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  // The upper bits of the link-type field carry FCS information, not the type.
  const linkType = u32(20) & 0x0fffffff;
  const out: RawRecord[] = [];
  let off = 24;
  while (off < buf.length) {
    if (off + 16 > buf.length) throw new Error(`${path}: truncated record header at offset ${off}`);
    const sec = BigInt(u32(off));
    const frac = BigInt(u32(off + 4));
    const capLen = u32(off + 8);
    const origLen = u32(off + 12);
    if (off + 16 + capLen > buf.length) throw new Error(`${path}: truncated record data at offset ${off}`);
    out.push({
      epochNs: sec * 1_000_000_000n + (nano ? frac : frac * 1000n),
      origLen,
      capLen,
      data: buf.subarray(off + 16, off + 16 + capLen),
      linkType,
      interfaceId: 0,
    });
    off += 16 + capLen;
  }
  return out;
}

interface PcapngIface {
  linkType: number;
  /** Timestamp units: value = units * num / den nanoseconds. */
  num: bigint;
  den: bigint;
  offsetSec: bigint;
}

function readPcapng(path: string, buf: Buffer): RawRecord[] {
  const out: RawRecord[] = [];
  let le = true;
  let ifaces: PcapngIface[] = [];
  let off = 0;
  const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  while (off < buf.length) {
    if (off + 12 > buf.length) throw new Error(`${path}: truncated block at offset ${off}`);
    const type = buf.readUInt32LE(off);
    if (type === 0x0a0d0d0a) {
      // The byte-order magic decides how this section (including its own length) is read.
      const bom = buf.readUInt32LE(off + 8);
      if (bom === 0x1a2b3c4d) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else throw new Error(`${path}: bad byte-order magic at offset ${off}`);
      ifaces = [];
    }
    const blockType = u32(off);
    const len = u32(off + 4);
    if (len < 12 || len % 4 !== 0 || off + len > buf.length) throw new Error(`${path}: bad block length ${len} at offset ${off}`);
    const body = off + 8;
    const bodyEnd = off + len - 4;
    switch (blockType) {
      case 1: {
        const iface: PcapngIface = { linkType: u16(body), num: 1000n, den: 1n, offsetSec: 0n };
        for (let o = body + 8; o + 4 <= bodyEnd; ) {
          const code = u16(o);
          const olen = u16(o + 2);
          if (code === 0) break;
          if (code === 9 && olen >= 1) {
            const r = buf[o + 4];
            if (r & 0x80) {
              iface.num = 1_000_000_000n;
              iface.den = 1n << BigInt(r & 0x7f);
            } else if (r <= 9) {
              iface.num = 10n ** BigInt(9 - r);
              iface.den = 1n;
            } else {
              iface.num = 1n;
              iface.den = 10n ** BigInt(r - 9);
            }
          } else if (code === 14 && olen >= 8) {
            iface.offsetSec = le ? buf.readBigInt64LE(o + 4) : buf.readBigInt64BE(o + 4);
          }
          o += 4 + olen + ((4 - (olen % 4)) % 4);
        }
        ifaces.push(iface);
        break;
      }
      case 6:
      case 2: {
        // Enhanced Packet Block, and the obsolete Packet Block with its 16-bit interface id.
        const ifId = blockType === 6 ? u32(body) : u16(body);
        const iface = ifaces[ifId];
        if (!iface) throw new Error(`${path}: packet at offset ${off} names undefined interface ${ifId}`);
        const units = (BigInt(u32(body + 4)) << 32n) | BigInt(u32(body + 8));
        const capLen = u32(body + 12);
        const origLen = u32(body + 16);
        if (body + 20 + capLen > bodyEnd) throw new Error(`${path}: packet data overruns its block at offset ${off}`);
        out.push({
          epochNs: (units * iface.num) / iface.den + iface.offsetSec * 1_000_000_000n,
          origLen,
          capLen,
          data: buf.subarray(body + 20, body + 20 + capLen),
          linkType: iface.linkType,
          interfaceId: ifId,
        });
        break;
      }
      case 3:
        throw new Error(`${path}: Simple Packet Blocks carry no timestamp; this reader does not accept them (offset ${off})`);
      default:
        break;
    }
    off += len;
  }
  return out;
}
