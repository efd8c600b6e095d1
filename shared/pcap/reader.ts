import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { CaptureFormatError, displayName, notACaptureError } from './errors';
import { isPcapMagic, parsePcapHeader, pcapBytesNeeded, PCAP_HEADER_LEN, scanPcapRecords, type PcapHeader } from './pcap';
import { isPcapngMagic, PcapngParser } from './pcapng';
import type { PacketRecord } from './types';

export type CaptureFormat = 'pcap' | 'pcapng';

/** Needs the first 4 bytes (12 to also check a PCAPNG byte-order magic). */
export function detectCaptureFormat(head: Buffer): CaptureFormat | null {
  if (isPcapMagic(head)) return 'pcap';
  if (isPcapngMagic(head)) return 'pcapng';
  return null;
}

/**
 * Push parser for PCAP or PCAPNG, format detected from the first bytes.
 *
 * push(chunk) returns the records completed by that chunk. Their data are
 * views into the chunk (or, for a record split across chunks, into a copy),
 * so the caller must not reuse or modify a chunk after pushing it; fs and
 * net streams never do. Memory held between calls is one incomplete record
 * or block: pieces of it are kept as a list and joined once, when the length
 * read from its header has arrived, so a large block arriving in many chunks
 * is copied once and the rest of each chunk is never copied.
 *
 * end() reports a torn final record/block (a capture cut short) as
 * tornBytes rather than throwing; it throws when no complete file header
 * was ever seen, as nothing in the input could be trusted to be a capture.
 */
export class CaptureStreamParser {
  private readonly name: string | undefined;
  private fmt: CaptureFormat | null = null;
  private pcap: PcapHeader | null = null;
  private ng: PcapngParser | null = null;
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** partsLen at which scanning can make progress again. */
  private need = 4;
  /** File offset of the first pending byte. */
  private base = 0;
  private total = 0;
  private ended = false;

  /** `name` (usually the path) appears in error messages. */
  constructor(name?: string) {
    this.name = name;
  }

  get format(): CaptureFormat | null {
    return this.fmt;
  }

  /** The PCAP global header, once read (null for PCAPNG). */
  get pcapHeader(): PcapHeader | null {
    return this.pcap;
  }

  /**
   * The PCAPNG interfaces of the current section and the sections seen so
   * far, once the input is known to be PCAPNG (null otherwise): how a
   * caller learns each interface's resolution.
   */
  get pcapng(): Pick<PcapngParser, 'interfaces' | 'sectionCount'> | null {
    return this.ng;
  }

  /** Bytes pushed so far. */
  get bytesSeen(): number {
    return this.total;
  }

  push(chunk: Buffer): PacketRecord[] {
    if (this.ended) throw new Error('CaptureStreamParser.push() after end()');
    const out: PacketRecord[] = [];
    if (chunk.length === 0) return out;
    this.total += chunk.length;
    this.parts.push(chunk);
    this.partsLen += chunk.length;
    // Invariant: all parts but the newest hold fewer than `need` bytes.
    while (this.partsLen >= this.need) {
      if (this.parts.length === 1) {
        this.process(this.parts[0], out);
        continue;
      }
      // Join only what completes the pending unit, so the rest of the
      // (typically 1 MiB) chunk is parsed in place rather than copied.
      const last = this.parts[this.parts.length - 1];
      const take = this.need - (this.partsLen - last.length);
      this.parts[this.parts.length - 1] = last.subarray(0, take);
      const joined = Buffer.concat(this.parts, this.need);
      this.process(joined, out);
      if (take < last.length) {
        this.parts.push(last.subarray(take));
        this.partsLen += last.length - take;
      }
    }
    return out;
  }

  /** Parses buf (starting at file offset this.base) and keeps what is left. */
  private process(buf: Buffer, out: PacketRecord[]): void {
    let off = 0;
    if (this.fmt === null) {
      const fmt = detectCaptureFormat(buf);
      if (fmt === null) throw notACaptureError(this.name, buf);
      if (fmt === 'pcap') {
        if (buf.length < PCAP_HEADER_LEN) {
          this.keep(buf, 0, PCAP_HEADER_LEN);
          return;
        }
        this.pcap = parsePcapHeader(buf, this.name);
        off = PCAP_HEADER_LEN;
      } else {
        this.ng = new PcapngParser(this.name);
      }
      this.fmt = fmt;
    }
    const rest = off === 0 ? buf : buf.subarray(off);
    const onRecord = (r: PacketRecord) => {
      out.push(r);
    };
    if (this.pcap) {
      off += scanPcapRecords(rest, this.base + off, this.pcap, onRecord, this.name);
    } else {
      off += this.ng!.scan(rest, this.base + off, onRecord);
    }
    const left = buf.subarray(off);
    const need =
      left.length === 0 ? 1 : this.pcap ? pcapBytesNeeded(left, this.pcap) : this.ng!.bytesNeeded(left, this.base + off);
    this.keep(buf, off, need);
  }

  private keep(buf: Buffer, off: number, need: number): void {
    this.base += off;
    const left = off === 0 ? buf : buf.subarray(off);
    this.parts = left.length > 0 ? [left] : [];
    this.partsLen = left.length;
    this.need = need;
  }

  end(): { tornBytes: number } {
    this.ended = true;
    const shown = displayName(this.name);
    if (this.total === 0) {
      throw new CaptureFormatError(`${shown} is empty; give a capture file`, { file: this.name, offset: 0 });
    }
    if (this.fmt === null) {
      // push() detects the format as soon as 4 bytes arrive, so 4 or more
      // bytes here means a PCAP magic followed by a cut-off file header.
      if (this.total < 4) {
        throw new CaptureFormatError(`${shown} is only ${this.total} bytes long; give a capture file`, {
          file: this.name,
          offset: 0,
        });
      }
      throw new CaptureFormatError(
        `${shown} ends after ${this.total} bytes, inside the ${PCAP_HEADER_LEN}-byte PCAP file header; the file is truncated`,
        { file: this.name, offset: this.total },
      );
    }
    if (this.ng && !this.ng.started) {
      throw new CaptureFormatError(
        `${shown} ends after ${this.total} bytes, inside the first PCAPNG Section Header Block; the file is truncated`,
        { file: this.name, offset: this.total },
      );
    }
    return { tornBytes: this.partsLen };
  }
}

const READ_CHUNK = 1 << 20;

function fsError(path: string, err: unknown): CaptureFormatError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  let msg: string;
  switch (code) {
    case 'ENOENT':
      msg = `no such file ${path}`;
      break;
    case 'EISDIR':
      msg = `${path} is a directory; give a capture file`;
      break;
    case 'EACCES':
    case 'EPERM':
      msg = `cannot read ${path}: permission denied`;
      break;
    default:
      msg = `cannot read ${path}: ${(err as Error)?.message ?? String(err)}`;
  }
  const e = new CaptureFormatError(msg, { file: path });
  (e as Error & { cause?: unknown }).cause = err;
  return e;
}

/**
 * Streams the records of a PCAP or PCAPNG file. Records are views into
 * freshly allocated read buffers that are never reused, so they stay valid
 * after the generator advances (each keeps its ~1 MiB chunk alive; copy
 * `data` to keep many records long-term). A torn final record is skipped and
 * reported through onTorn.
 */
export async function* readCaptureFile(
  path: string,
  opts: { onTorn?: (bytes: number) => void } = {},
): AsyncGenerator<PacketRecord> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw fsError(path, err);
  }
  // The handle is closed here rather than by the stream so that an early
  // return from the consumer cannot leave it to the garbage collector.
  const stream = fh.createReadStream({ highWaterMark: READ_CHUNK, autoClose: false });
  const parser = new CaptureStreamParser(path);
  try {
    const it = stream[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await it.next();
      } catch (err) {
        throw fsError(path, err);
      }
      if (next.done) break;
      for (const rec of parser.push(next.value)) yield rec;
    }
    const { tornBytes } = parser.end();
    if (tornBytes > 0) opts.onTorn?.(tornBytes);
  } finally {
    stream.destroy();
    await fh.close().catch(() => undefined);
  }
}

const SYNC_READ_CHUNK = 8 << 20;

/**
 * readCaptureFile's records handed to `onRecord` synchronously, read in large
 * chunks: for a caller that only copies records along (ring import), where
 * the await per record of the async generator was most of its time. Record
 * data are views valid during the call only.
 */
export function forEachCaptureRecordSync(
  path: string,
  onRecord: (rec: PacketRecord) => void,
  opts: { onTorn?: (bytes: number) => void } = {},
): void {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fsError(path, err);
  }
  const parser = new CaptureStreamParser(path);
  try {
    for (;;) {
      // A fresh chunk each time: the parser keeps the start of a record split across chunks as a view.
      const chunk = Buffer.allocUnsafe(SYNC_READ_CHUNK);
      let got: number;
      try {
        got = readSync(fd, chunk, 0, chunk.length, null);
      } catch (err) {
        throw fsError(path, err);
      }
      if (got === 0) break;
      const recs = parser.push(got === chunk.length ? chunk : chunk.subarray(0, got));
      for (let i = 0; i < recs.length; i++) onRecord(recs[i]);
    }
    const { tornBytes } = parser.end();
    if (tornBytes > 0) opts.onTorn?.(tornBytes);
  } finally {
    closeSync(fd);
  }
}
