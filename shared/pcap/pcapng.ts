import { CaptureFormatError, displayName } from './errors';
import type { PacketRecord } from './types';

/**
 * PCAPNG (draft-ietf-opsawg-pcapng): a sequence of blocks, each
 *   type u32 | total length u32 | body | total length u32
 * in the byte order declared by the enclosing Section Header Block.
 */
export const PCAPNG_BLOCK_SHB = 0x0a0d0d0a;
export const PCAPNG_BLOCK_IDB = 0x00000001;
export const PCAPNG_BLOCK_PB = 0x00000002;
export const PCAPNG_BLOCK_SPB = 0x00000003;
export const PCAPNG_BLOCK_EPB = 0x00000006;

const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const BYTE_ORDER_MAGIC_SWAPPED = 0x4d3c2b1a;
const OPT_ENDOFOPT = 0;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;
/** Type + length + trailing length: the smallest possible block. */
const BLOCK_OVERHEAD = 12;
const MIN_SHB_LEN = 28;
const MIN_IDB_LEN = 20;
const MIN_EPB_LEN = 32;
const MIN_PB_LEN = 32;
const MIN_SPB_LEN = 16;
/**
 * Wireshark's limit (room for a 128 MiB D-Bus message plus headers). A larger
 * length is corruption, and refusing it keeps a stream parser from buffering
 * gigabytes while waiting for a block that will never complete.
 */
export const PCAPNG_MAX_BLOCK_LEN = 128 * 1024 * 1024 + 64 * 1024;

export interface PcapngInterface {
  linkType: number;
  /** 0 means "no limit". */
  snaplen: number;
  /** if_tsresol: the timestamp unit is tsBase^-tsExponent seconds. */
  tsBase: 10 | 2;
  tsExponent: number;
  /** if_tsoffset: seconds added to every timestamp of this interface. */
  tsOffsetSec: number;
  /** Precomputed for timestamp conversion; see setTimestamp. */
  readonly conv: TsConversion;
}

interface TsConversion {
  /** Units per second when it fits the exact number path (< 2^30), else 0. */
  div: number;
  /** Remainder units → nanoseconds multiplier for the number path. */
  nsMul: number;
  /** BigInt path for the other resolutions. */
  bigDiv: bigint;
  bigShift: number;
}

function makeConversion(base: 10 | 2, exp: number): TsConversion {
  if (base === 10 && exp <= 9) {
    return { div: 10 ** exp, nsMul: 10 ** (9 - exp), bigDiv: 0n, bigShift: 0 };
  }
  if (base === 2 && exp <= 29) {
    // r * 1e9 / 2^exp as (r * 5^9) * 2^(9-exp): the product stays below 2^50
    // and scaling by a power of two is exact, so floor() of it is exact.
    return { div: 2 ** exp, nsMul: 1953125 * 2 ** (9 - exp), bigDiv: 0n, bigShift: 0 };
  }
  if (base === 10) return { div: 0, nsMul: 0, bigDiv: 10n ** BigInt(exp), bigShift: 0 };
  return { div: 0, nsMul: 0, bigDiv: 0n, bigShift: exp };
}

export function makeInterface(linkType: number, snaplen: number, tsBase: 10 | 2 = 10, tsExponent = 6, tsOffsetSec = 0): PcapngInterface {
  return { linkType, snaplen, tsBase, tsExponent, tsOffsetSec, conv: makeConversion(tsBase, tsExponent) };
}

/**
 * Converts a 64-bit timestamp (two u32 halves) in the interface's units to
 * (sec, nsec) without going through a double: nanosecond timestamps of today
 * are ~1.7e18, far past 2^53. Common resolutions use long division by 16-bit
 * digits (every intermediate stays below 2^46); others use BigInt.
 */
export function setPcapngTimestamp(rec: PacketRecord, high: number, low: number, iface: PcapngInterface): void {
  const c = iface.conv;
  if (c.div !== 0) {
    const div = c.div;
    let q = 0;
    let r = 0;
    for (let k = 0; k < 4; k++) {
      const digit = k === 0 ? high >>> 16 : k === 1 ? high & 0xffff : k === 2 ? low >>> 16 : low & 0xffff;
      const cur = r * 65536 + digit;
      let qd = Math.floor(cur / div);
      r = cur - qd * div;
      if (r < 0) {
        qd--;
        r += div;
      } else if (r >= div) {
        qd++;
        r -= div;
      }
      q = q * 65536 + qd;
    }
    rec.tsSec = q + iface.tsOffsetSec;
    rec.tsNsec = Math.floor(r * c.nsMul);
    return;
  }
  const ts = (BigInt(high) << 32n) | BigInt(low);
  let sec: bigint;
  let nsec: bigint;
  if (c.bigDiv !== 0n) {
    sec = ts / c.bigDiv;
    // exp > 9 here, so the remainder is finer than a nanosecond.
    nsec = ((ts % c.bigDiv) * 1_000_000_000n) / c.bigDiv;
  } else {
    const shift = BigInt(c.bigShift);
    sec = ts >> shift;
    nsec = ((ts & ((1n << shift) - 1n)) * 1_000_000_000n) >> shift;
  }
  rec.tsSec = Number(sec) + iface.tsOffsetSec;
  rec.tsNsec = Number(nsec);
}

/** True if head starts with a Section Header Block (needs 4 bytes; 12 to check byte order). */
export function isPcapngMagic(head: Buffer): boolean {
  if (head.length < 4 || head.readUInt32LE(0) !== PCAPNG_BLOCK_SHB) return false;
  if (head.length < 12) return true;
  const m = head.readUInt32LE(8);
  return m === BYTE_ORDER_MAGIC || m === BYTE_ORDER_MAGIC_SWAPPED;
}

/**
 * Incremental PCAPNG parser. Feed it the file from the start, in any pieces,
 * through scan(): each call consumes whole blocks from the front of the given
 * buffer and returns how many bytes it used; the caller keeps the rest and
 * passes it again, extended, next time (CaptureStreamParser does this).
 * State carried between calls: the current section's byte order and its
 * interfaces.
 */
export class PcapngParser {
  private readonly name: string | undefined;
  private le = true;
  private inSection = false;
  private ifaces: PcapngInterface[] = [];
  private sections = 0;
  /** Byte order of the block last checked by blockHeader (kept in a field to spare a tuple per block). */
  private headerLe = true;

  constructor(name?: string) {
    this.name = name;
  }

  /** Interfaces of the current section, by interface id. */
  get interfaces(): readonly PcapngInterface[] {
    return this.ifaces;
  }

  /** Section Header Blocks seen so far. */
  get sectionCount(): number {
    return this.sections;
  }

  private fail(offset: number, what: string): CaptureFormatError {
    return new CaptureFormatError(
      `${displayName(this.name)} has a corrupt PCAPNG block at offset ${offset}: ${what}; ` +
        'the file is damaged from there on',
      { file: this.name, offset },
    );
  }

  /**
   * Validates the block header at buf[off] (12 bytes must be available) and
   * returns its total length, leaving its byte order in headerLe. A new
   * section's byte order comes from its own magic, and is not made the
   * parser's until the whole SHB has arrived.
   */
  private blockHeader(buf: Buffer, off: number, fileOffset: number): number {
    const typeLE = buf.readUInt32LE(off);
    let le = this.le;
    if (typeLE === PCAPNG_BLOCK_SHB) {
      const m = buf.readUInt32LE(off + 8);
      if (m === BYTE_ORDER_MAGIC) le = true;
      else if (m === BYTE_ORDER_MAGIC_SWAPPED) le = false;
      else throw this.fail(fileOffset, `section header has an unknown byte-order magic 0x${buf.subarray(off + 8, off + 12).toString('hex')}`);
    } else if (!this.inSection) {
      throw this.fail(fileOffset, `expected a Section Header Block, found block type 0x${typeLE.toString(16)}`);
    }
    const len = le ? buf.readUInt32LE(off + 4) : buf.readUInt32BE(off + 4);
    if (len < BLOCK_OVERHEAD || len % 4 !== 0) {
      throw this.fail(fileOffset, `block length ${len} is ${len < BLOCK_OVERHEAD ? 'too small' : 'not a multiple of 4'}`);
    }
    if (len > PCAPNG_MAX_BLOCK_LEN) {
      throw this.fail(fileOffset, `block length ${len} exceeds the limit ${PCAPNG_MAX_BLOCK_LEN}`);
    }
    this.headerLe = le;
    return len;
  }

  /**
   * Bytes needed, counted from the block boundary at buf[0], before that
   * block is whole. Call only after scan() left buf unconsumed.
   */
  bytesNeeded(buf: Buffer, bufFileOffset = 0): number {
    if (buf.length < BLOCK_OVERHEAD) return BLOCK_OVERHEAD;
    return this.blockHeader(buf, 0, bufFileOffset);
  }

  /** True once a whole Section Header Block has been read. */
  get started(): boolean {
    return this.inSection;
  }

  /**
   * Consumes every whole block at the front of buf, calling onRecord for each
   * packet. Records' data are views into buf. A trailing incomplete block is
   * left unconsumed, but its header is validated already.
   */
  scan(buf: Buffer, bufFileOffset: number, onRecord: (rec: PacketRecord) => void): number {
    let off = 0;
    while (buf.length - off >= BLOCK_OVERHEAD) {
      const fileOffset = bufFileOffset + off;
      const len = this.blockHeader(buf, off, fileOffset);
      const le = this.headerLe;
      if (buf.length - off < len) break;
      const trailer = rd32(buf, off + len - 4, le);
      if (trailer !== len) {
        throw this.fail(fileOffset, `block length ${len} does not match its trailing copy ${trailer}`);
      }
      const type = rd32(buf, off, le);
      const body = off + 8;
      switch (type) {
        case PCAPNG_BLOCK_SHB:
          this.sectionHeader(buf, off, len, le, fileOffset);
          break;
        case PCAPNG_BLOCK_IDB:
          this.interfaceDescription(buf, off, len, fileOffset);
          break;
        case PCAPNG_BLOCK_EPB: {
          if (len < MIN_EPB_LEN) throw this.fail(fileOffset, `Enhanced Packet Block length ${len} is below ${MIN_EPB_LEN}`);
          const ifId = rd32(buf, body, le);
          const capLen = rd32(buf, body + 12, le);
          if (capLen > len - MIN_EPB_LEN) {
            throw this.fail(fileOffset, `packet length ${capLen} exceeds the block's ${len - MIN_EPB_LEN} data bytes`);
          }
          onRecord(this.packet(buf, ifId, rd32(buf, body + 4, le), rd32(buf, body + 8, le), capLen, rd32(buf, body + 16, le), body + 20, fileOffset));
          break;
        }
        case PCAPNG_BLOCK_PB: {
          // Obsolete Packet Block: like an EPB with a 16-bit interface id and a drops counter.
          if (len < MIN_PB_LEN) throw this.fail(fileOffset, `Packet Block length ${len} is below ${MIN_PB_LEN}`);
          const ifId = le ? buf.readUInt16LE(body) : buf.readUInt16BE(body);
          const capLen = rd32(buf, body + 12, le);
          if (capLen > len - MIN_PB_LEN) {
            throw this.fail(fileOffset, `packet length ${capLen} exceeds the block's ${len - MIN_PB_LEN} data bytes`);
          }
          onRecord(this.packet(buf, ifId, rd32(buf, body + 4, le), rd32(buf, body + 8, le), capLen, rd32(buf, body + 16, le), body + 20, fileOffset));
          break;
        }
        case PCAPNG_BLOCK_SPB: {
          if (len < MIN_SPB_LEN) throw this.fail(fileOffset, `Simple Packet Block length ${len} is below ${MIN_SPB_LEN}`);
          const iface = this.ifaces[0];
          if (!iface) throw this.fail(fileOffset, 'Simple Packet Block before any Interface Description Block');
          const origLen = rd32(buf, body, le);
          // SPB has no caplen: the data is the packet cut to the snaplen, then padded.
          let capLen = Math.min(origLen, len - MIN_SPB_LEN);
          if (iface.snaplen !== 0) capLen = Math.min(capLen, iface.snaplen);
          const start = body + 4;
          onRecord({
            tsSec: 0,
            tsNsec: 0,
            capLen,
            origLen,
            data: buf.subarray(start, start + capLen),
            linkType: iface.linkType,
            interfaceId: 0,
            fileOffset,
          });
          break;
        }
        default:
          // NRB, ISB, DSB, custom and unknown blocks carry no packets.
          break;
      }
      off += len;
    }
    return off;
  }

  private sectionHeader(buf: Buffer, off: number, len: number, le: boolean, fileOffset: number): void {
    if (len < MIN_SHB_LEN) throw this.fail(fileOffset, `Section Header Block length ${len} is below ${MIN_SHB_LEN}`);
    const major = le ? buf.readUInt16LE(off + 12) : buf.readUInt16BE(off + 12);
    const minor = le ? buf.readUInt16LE(off + 14) : buf.readUInt16BE(off + 14);
    if (major !== 1) {
      throw new CaptureFormatError(
        `${displayName(this.name)} has PCAPNG version ${major}.${minor} at offset ${fileOffset + 12}; ` +
          'only version 1.x is supported (convert it with "editcap -F pcap")',
        { file: this.name, offset: fileOffset + 12 },
      );
    }
    this.le = le;
    this.inSection = true;
    this.ifaces = [];
    this.sections++;
  }

  private interfaceDescription(buf: Buffer, off: number, len: number, fileOffset: number): void {
    if (len < MIN_IDB_LEN) throw this.fail(fileOffset, `Interface Description Block length ${len} is below ${MIN_IDB_LEN}`);
    const le = this.le;
    const u16 = (o: number) => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
    const linkType = u16(off + 8);
    const snaplen = le ? buf.readUInt32LE(off + 12) : buf.readUInt32BE(off + 12);
    let tsBase: 10 | 2 = 10;
    let tsExponent = 6;
    let tsOffsetSec = 0;
    const end = off + len - 4;
    let p = off + 16;
    while (p + 4 <= end) {
      const code = u16(p);
      const olen = u16(p + 2);
      if (code === OPT_ENDOFOPT) break;
      const v = p + 4;
      if (v + olen > end) {
        // A malformed option list could hide if_tsresol; guessing would shift every timestamp.
        throw this.fail(fileOffset, `interface option ${code} at offset ${bufOffset(fileOffset, off, p)} overruns the block`);
      }
      if (code === OPT_IF_TSRESOL && olen >= 1) {
        const r = buf[v];
        tsBase = r & 0x80 ? 2 : 10;
        tsExponent = r & 0x7f;
      } else if (code === OPT_IF_TSOFFSET && olen >= 8) {
        tsOffsetSec = Number(le ? buf.readBigInt64LE(v) : buf.readBigInt64BE(v));
      }
      p = v + ((olen + 3) & ~3);
    }
    this.ifaces.push(makeInterface(linkType, snaplen, tsBase, tsExponent, tsOffsetSec));
  }

  private packet(
    buf: Buffer,
    ifId: number,
    tsHigh: number,
    tsLow: number,
    capLen: number,
    origLen: number,
    dataStart: number,
    fileOffset: number,
  ): PacketRecord {
    const iface = this.ifaces[ifId];
    if (!iface) {
      throw this.fail(fileOffset, `packet refers to interface ${ifId} but the section describes ${this.ifaces.length}`);
    }
    const rec: PacketRecord = {
      tsSec: 0,
      tsNsec: 0,
      capLen,
      origLen,
      data: buf.subarray(dataStart, dataStart + capLen),
      linkType: iface.linkType,
      interfaceId: ifId,
      fileOffset,
    };
    setPcapngTimestamp(rec, tsHigh, tsLow, iface);
    return rec;
  }
}

function rd32(buf: Buffer, o: number, le: boolean): number {
  return le ? buf.readUInt32LE(o) : buf.readUInt32BE(o);
}

function bufOffset(blockFileOffset: number, blockBufOffset: number, p: number): number {
  return blockFileOffset + (p - blockBufOffset);
}
