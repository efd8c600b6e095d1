import type { Readable } from 'node:stream';
import { CaptureFormatError, displayName } from './errors';
import type { PcapHeader } from './pcap';
import type { PcapngInterface } from './pcapng';
import { CaptureStreamParser, type CaptureFormat } from './reader';
import type { PacketRecord } from './types';

/** A record with what a writer needs to keep its timestamp exact. */
export interface StreamRecord extends PacketRecord {
  /**
   * The source counts finer than microseconds (PCAP nanosecond magic,
   * PCAPNG if_tsresol finer than 10^-6), or this timestamp has sub-µs digits.
   */
  nanos: boolean;
}

/**
 * Chunks are parsed in slices of at most this size, so the records waiting
 * to be taken stay few whatever chunk size the stream uses, and bytes lost
 * to a corruption found mid-slice are at most one slice.
 */
const SLICE = 64 * 1024;

/** PCAPNG resolutions no finer than a microsecond. */
function ifaceIsMicros(i: PcapngInterface): boolean {
  return i.tsBase === 10 && i.tsExponent <= 6;
}

/**
 * Pull reader of PCAP or PCAPNG records from a byte stream, over
 * CaptureStreamParser. Memory held: the stream's own buffer, the chunk being
 * parsed and its records (views into it), and one incomplete record.
 *
 *   for (;;) { const r = reader.shift() ?? (await reader.pull() ? null : undefined); ... }
 *
 * or simply `await reader.next()`. The stream's 'error' is listened to from
 * construction, so a source that fails before the first pull cannot crash
 * the process; the failure rejects the next pull().
 *
 * What the bytes say is never thrown: an empty stream sets `empty`, a torn
 * final record sets `tornBytes`, bytes that stop being a capture set
 * `formatError` (the records before the slice holding the fault were
 * returned). The stream failing (I/O error, closed before its end) rejects
 * pull(), since what was read may be an arbitrary part of the input.
 */
export class CaptureStreamReader {
  private readonly stream: Readable;
  private readonly name: string | undefined;
  private readonly parser: CaptureStreamParser;
  private queue: StreamRecord[] = [];
  private qi = 0;
  private chunk: Buffer | null = null;
  private chunkOff = 0;
  private streamEnded = false;
  private streamError: Error | null = null;
  private wake: (() => void) | null = null;
  private finished = false;
  private released = false;
  /** Bytes of a torn final record, left out (set when done). */
  tornBytes = 0;
  /** Set when the input stopped being readable as a capture. */
  formatError: CaptureFormatError | null = null;
  /** True when the stream ended without a single byte. */
  empty = false;

  /** `name` (a host, a path) appears in error messages. */
  constructor(stream: Readable, name?: string) {
    this.stream = stream;
    this.name = name;
    this.parser = new CaptureStreamParser(name);
    const poke = () => {
      const w = this.wake;
      this.wake = null;
      w?.();
    };
    // A stream already read to its end, or already failed, gives no events.
    if (stream.readableEnded) this.streamEnded = true;
    else if (stream.destroyed) this.streamError = new Error(`${displayName(name)}: the stream was destroyed before it was read`);
    stream.on('readable', poke);
    stream.on('end', () => {
      this.streamEnded = true;
      poke();
    });
    stream.on('error', (err: Error) => {
      this.streamError ??= err;
      poke();
    });
    stream.on('close', () => {
      if (!this.streamEnded) this.streamError ??= new Error(`${displayName(name)}: the stream closed before its end`);
      poke();
    });
  }

  get format(): CaptureFormat | null {
    return this.parser.format;
  }

  /** The PCAP global header, once read. */
  get pcapHeader(): PcapHeader | null {
    return this.parser.pcapHeader;
  }

  /** Interfaces of the current PCAPNG section announced so far (empty for PCAP). */
  get interfaces(): readonly PcapngInterface[] {
    return this.parser.pcapng?.interfaces ?? [];
  }

  /** Bytes read from the stream so far. */
  get bytesRead(): number {
    return this.parser.bytesSeen;
  }

  /** True once no more records will come. */
  get done(): boolean {
    return this.finished && this.qi >= this.queue.length;
  }

  /** The next record already parsed, or undefined (then pull(), unless done). */
  shift(): StreamRecord | undefined {
    if (this.qi >= this.queue.length) return undefined;
    const r = this.queue[this.qi];
    this.queue[this.qi++] = undefined as unknown as StreamRecord;
    return r;
  }

  /** The next record, or null at the end of the input. */
  async next(): Promise<StreamRecord | null> {
    for (;;) {
      const r = this.shift();
      if (r) return r;
      if (!(await this.pull())) return null;
    }
  }

  /**
   * Parses more of the input. Resolves true when records may have been
   * added, false once the input is exhausted; rejects when the stream fails.
   */
  async pull(): Promise<boolean> {
    if (this.finished) return false;
    if (this.qi >= this.queue.length) {
      this.queue = [];
      this.qi = 0;
    }
    if (this.chunk === null || this.chunkOff >= this.chunk.length) {
      const c = await this.nextChunk();
      if (c === null) {
        this.finish();
        return false;
      }
      this.chunk = c;
      this.chunkOff = 0;
    }
    const slice = this.chunk.subarray(this.chunkOff, this.chunkOff + SLICE);
    const sliceStart = this.parser.bytesSeen;
    this.chunkOff += slice.length;
    if (this.chunkOff >= this.chunk.length) this.chunk = null;
    let recs: PacketRecord[];
    const sections = this.parser.pcapng?.sectionCount ?? 0;
    try {
      recs = this.parser.push(slice);
    } catch (e) {
      if (!(e instanceof CaptureFormatError)) throw e;
      this.formatError = new CaptureFormatError(
        `${e.message}; packets from byte ${sliceStart} on are left out`,
        { file: e.file, offset: e.offset },
      );
      this.finished = true;
      this.release();
      return false;
    }
    this.tag(recs, sections);
    return true;
  }

  /** Adds each record's resolution while the parser still describes its section. */
  private tag(recs: PacketRecord[], sectionsBefore: number): void {
    const h = this.parser.pcapHeader;
    const ng = this.parser.pcapng;
    // A section starting within the slice replaced the interface list; its
    // records' resolution then comes from their timestamps alone, which is
    // exact either way (a whole number of µs fits both resolutions).
    const ifaces = ng && ng.sectionCount === sectionsBefore ? ng.interfaces : null;
    for (const r of recs) {
      const sr = r as StreamRecord;
      let nanos = r.tsNsec % 1000 !== 0;
      if (h) nanos ||= h.nanos;
      else if (ifaces) {
        const i = ifaces[r.interfaceId];
        nanos ||= i !== undefined && !ifaceIsMicros(i);
      }
      sr.nanos = nanos;
      this.queue.push(sr);
    }
  }

  private finish(): void {
    this.finished = true;
    if (this.parser.bytesSeen === 0) {
      this.empty = true;
      return;
    }
    try {
      this.tornBytes = this.parser.end().tornBytes;
    } catch (e) {
      if (!(e instanceof CaptureFormatError)) throw e;
      this.formatError = e;
    }
  }

  /**
   * The stream's next chunk as it is, for a caller that parses the bytes
   * itself (the merge's PCAP fast path); null at the end of the stream,
   * rejects when it fails. Use before any pull(), or instead of it.
   */
  readChunk(): Promise<Buffer | null> {
    return this.nextChunk();
  }

  /**
   * Gives bytes taken with readChunk() back, in front of what the stream
   * has not given yet, so that pull() parses the input from its first byte.
   */
  unread(bytes: Buffer): void {
    if (bytes.length === 0) return;
    const rest = this.chunk === null ? null : this.chunk.subarray(this.chunkOff);
    this.chunk = rest === null || rest.length === 0 ? bytes : Buffer.concat([bytes, rest]);
    this.chunkOff = 0;
  }

  private async nextChunk(): Promise<Buffer | null> {
    // Bounded: every wait is ended by 'readable', 'end', 'error' or 'close'.
    for (;;) {
      if (this.streamError) throw this.streamError;
      const c: unknown = this.stream.read();
      if (c !== null) {
        if (Buffer.isBuffer(c)) return c;
        if (c instanceof Uint8Array) return Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        throw new TypeError(`${displayName(this.name)}: the stream gives ${typeof c} chunks; give a byte stream (no encoding, not object mode)`);
      }
      if (this.streamEnded) return null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** Stops reading and destroys the stream (if it was not fully read). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.chunk = null;
    if (!this.streamEnded) this.stream.destroy();
  }
}
