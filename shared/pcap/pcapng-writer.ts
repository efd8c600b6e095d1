import { StreamSink } from './sink';
import { PCAP_DEFAULT_SNAPLEN } from './pcap';
import { PCAPNG_BLOCK_EPB, PCAPNG_BLOCK_IDB, PCAPNG_BLOCK_SHB } from './pcapng';
import { checkRecord, type WritableRecord } from './writer';

/** What the PCAPNG writer needs of a packet; PacketRecord satisfies it. */
export interface PcapngWritableRecord extends WritableRecord {
  /** LINKTYPE_* of the interface the packet was captured on. */
  linkType: number;
}

export interface PcapngWriterOptions {
  /** Snaplen of every Interface Description Block; default 262144. */
  snaplen?: number;
  /** shb_userappl of the Section Header Block; default "tracefleet". */
  application?: string;
}

const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_ENDOFOPT = 0;
const OPT_COMMENT = 1;
const OPT_IF_NAME = 2;
const OPT_SHB_USERAPPL = 4;
const OPT_IF_TSRESOL = 9;
/** EPB without data: type, length, interface id, ts high, ts low, caplen, origlen, trailing length. */
const EPB_FIXED = 32;
const TWO32 = 2 ** 32;

const pad4 = (n: number) => (n + 3) & ~3;

/** Little-endian Section Header Block, one section of unknown length. */
function shbBytes(application: string): Buffer {
  const app = Buffer.from(application, 'utf8');
  const optLen = app.length > 0 ? 4 + pad4(app.length) : 0;
  const len = 28 + optLen + 4;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(PCAPNG_BLOCK_SHB, 0);
  b.writeUInt32LE(len, 4);
  b.writeUInt32LE(BYTE_ORDER_MAGIC, 8);
  b.writeUInt16LE(1, 12);
  b.writeUInt16LE(0, 14);
  // Section length -1: "not given", so the writer can stream without seeking back.
  b.fill(0xff, 16, 24);
  let p = 24;
  if (app.length > 0) {
    b.writeUInt16LE(OPT_SHB_USERAPPL, p);
    b.writeUInt16LE(app.length, p + 2);
    app.copy(b, p + 4);
    p += 4 + pad4(app.length);
  }
  b.writeUInt16LE(OPT_ENDOFOPT, p);
  b.writeUInt32LE(len, len - 4);
  return b;
}

/** What sets an interface apart beyond its link type and resolution: the packets of one host, say. */
export interface InterfaceLabel {
  /** Packets with the same key (and link type and resolution) share an interface. */
  key: string;
  /** if_name. */
  name?: string;
  /** opt_comment. */
  comment?: string;
}

/** An option's bytes (code, length, value padded to 4); a UTF-8 value is cut to what the 16-bit length holds. */
function optionBytes(code: number, value: string): Buffer {
  const v = Buffer.from(value, 'utf8').subarray(0, 0xfff0);
  const b = Buffer.alloc(4 + pad4(v.length));
  b.writeUInt16LE(code, 0);
  b.writeUInt16LE(v.length, 2);
  v.copy(b, 4);
  return b;
}

/** Interface Description Block with an explicit if_tsresol (10^-6 or 10^-9 s), and a name and comment when labelled. */
function idbBytes(linkType: number, snaplen: number, nanos: boolean, label?: InterfaceLabel): Buffer {
  const tsresol = Buffer.alloc(8);
  tsresol.writeUInt16LE(OPT_IF_TSRESOL, 0);
  tsresol.writeUInt16LE(1, 2);
  tsresol[4] = nanos ? 9 : 6;
  const opts: Buffer[] = [tsresol];
  if (label?.name) opts.push(optionBytes(OPT_IF_NAME, label.name));
  if (label?.comment) opts.push(optionBytes(OPT_COMMENT, label.comment));
  // opt_endofopt: four zero bytes.
  opts.push(Buffer.alloc(4));
  const body = Buffer.concat(opts);
  const len = 16 + body.length + 4;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(PCAPNG_BLOCK_IDB, 0);
  b.writeUInt32LE(len, 4);
  b.writeUInt16LE(linkType, 8);
  b.writeUInt32LE(snaplen, 12);
  body.copy(b, 16);
  b.writeUInt32LE(len, len - 4);
  return b;
}

/**
 * Writes a timestamp as PCAPNG's two 32-bit halves of sec * 10^9 + nsec (or
 * sec * 10^6 + usec) without a double: the nanosecond count of today is
 * about 1.8e18, far past 2^53. Every intermediate here stays below 2^47.
 */
function writeTimestamp(b: Buffer, at: number, tsSec: number, tsNsec: number, nanos: boolean): void {
  let high: number;
  let low: number;
  if (nanos) {
    // sec * 1e9 = (secHi * 2^16 + secLo) * 1e9, with secHi, secLo < 2^16.
    const a = (tsSec >>> 16) * 1e9; // < 2^46; contributes a * 2^16
    const bPart = (tsSec & 0xffff) * 1e9 + tsNsec; // < 2^46
    const aHigh = Math.floor(a / 65536);
    const t = (a - aHigh * 65536) * 65536 + bPart; // < 2^47
    const carry = Math.floor(t / TWO32);
    high = aHigh + carry;
    low = t - carry * TWO32;
  } else {
    const v = tsSec * 1e6 + tsNsec / 1000; // < 2^52, exact: tsNsec is a whole number of µs here
    high = Math.floor(v / TWO32);
    low = v - high * TWO32;
  }
  b.writeUInt32LE(high, at);
  b.writeUInt32LE(low, at + 4);
}

/**
 * Streaming PCAPNG writer over any writable stream, for packets of several
 * link types in one file (a classic PCAP holds one). One little-endian
 * section; an Interface Description Block is added for each (link type,
 * resolution) pair the first time it is needed, or up front through
 * interfaceFor(). Packets go in Enhanced Packet Blocks with their exact
 * timestamps, bytes and original length. Blocks are built in a batch (see
 * StreamSink), so callers may reuse their data buffers as soon as write()
 * returns; flush() or end() hands the last of them to the stream.
 *
 * Stream errors are caught here (an unhandled 'error' event would kill the
 * process) and surface as a rejection of waitDrain()/end() or a throw from
 * the next write(), as with PcapWriter.
 */
export class PcapngWriter extends StreamSink {
  private readonly snaplen: number;
  /** Interface id by `${linkType}/${nanos}` (and `/${label key}` when labelled). */
  private readonly ifaces = new Map<string, number>();
  private recordsWritten = 0;

  constructor(out: NodeJS.WritableStream, opts: PcapngWriterOptions = {}) {
    super(out, 'PcapngWriter');
    this.snaplen = opts.snaplen ?? PCAP_DEFAULT_SNAPLEN;
    this.put(shbBytes(opts.application ?? 'tracefleet'));
  }

  /** Records accepted so far. */
  get count(): number {
    return this.recordsWritten;
  }

  /** Interface Description Blocks written so far. */
  get interfaceCount(): number {
    return this.ifaces.size;
  }


  /**
   * The interface id for packets of this link type and resolution, writing
   * its IDB if it is new. Calling it before the first packet puts every IDB
   * at the start of the file, where readers that scan only the head (and
   * the dispatcher's merge) see all of a file's link types.
   */
  interfaceFor(linkType: number, nanos: boolean, label?: InterfaceLabel): number {
    this.check();
    if (!Number.isInteger(linkType) || linkType < 0 || linkType > 0xffff) {
      throw new RangeError(`link type ${linkType} does not fit PCAPNG's 16-bit link type field`);
    }
    const key = label ? `${linkType}/${nanos}/${label.key}` : `${linkType}/${nanos}`;
    let id = this.ifaces.get(key);
    if (id === undefined) {
      id = this.ifaces.size;
      this.ifaces.set(key, id);
      this.put(idbBytes(linkType, this.snaplen, nanos, label));
    }
    return id;
  }

  /**
   * Queues one packet. `nanos` says the source has nanosecond timestamps; a
   * microsecond source's packets go to a 10^-6 interface, so a reader shows
   * them as the source had them. Returns false when the stream wants the
   * caller to wait for waitDrain(). A `label` puts the packet on an
   * interface of that label's own.
   */
  write(rec: PcapngWritableRecord, nanos: boolean, label?: InterfaceLabel): boolean {
    this.check();
    checkRecord(rec, this.snaplen);
    if (!nanos && rec.tsNsec % 1000 !== 0) {
      throw new RangeError(`tsNsec ${rec.tsNsec} is not a whole number of microseconds; write it with nanos true`);
    }
    const ifId = this.interfaceFor(rec.linkType, nanos, label);
    const capLen = rec.data.length;
    const len = EPB_FIXED + pad4(capLen);
    const at = this.reserve(len);
    const b = this.batch!;
    b.writeUInt32LE(PCAPNG_BLOCK_EPB, at);
    b.writeUInt32LE(len, at + 4);
    b.writeUInt32LE(ifId, at + 8);
    writeTimestamp(b, at + 12, rec.tsSec, rec.tsNsec, nanos);
    b.writeUInt32LE(capLen, at + 20);
    b.writeUInt32LE(rec.origLen, at + 24);
    rec.data.copy(b, at + 28);
    b.fill(0, at + 28 + capLen, at + len - 4);
    b.writeUInt32LE(len, at + len - 4);
    this.recordsWritten++;
    return this.commit(len);
  }
}
