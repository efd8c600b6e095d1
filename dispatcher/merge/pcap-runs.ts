import { close, fstat, open, read } from 'node:fs';
import { CaptureFormatError } from '../../shared/pcap/errors';
import {
  corruptRecord,
  isPcapMagic,
  parsePcapHeader,
  pcapCapLenLimit,
  PCAP_HEADER_LEN,
  PCAP_RECORD_HEADER_LEN,
  type PcapHeader,
} from '../../shared/pcap/pcap';
import type { CaptureStreamReader } from '../../shared/pcap/stream-reader';
import type { PcapWriter } from '../../shared/pcap/writer';
import type { HostDedup } from './dedup';
import { ReadAhead, type Held } from './read-ahead';

/*
 * The merge's fast path for PCAP inputs (what agents send): records are
 * read straight from a buffer of the input's bytes, with no object per
 * packet, and a run of records that come before every other input's next
 * one is copied to the output in one block when their headers are already
 * what the output would write. The output is the same bytes as the general
 * path's (merge.ts): same order, same records left out, same notes; but
 * for a corrupt record header, before which every record is kept (the
 * general path leaves out the rest of the 64 KiB slice it was parsing).
 *
 * The general path sorts each input within a read-ahead of REORDER_PACKETS
 * packets / REORDER_BYTES bytes. Here a record is written in file order only
 * once the records that read-ahead would hold with it are known to be in
 * time order; an input that goes back in time within that reach switches to
 * the same read-ahead for the rest of it ("slow" mode below), starting from
 * the state the general path would have there.
 */

export type RunStatus = 'bound' | 'next' | 'data' | 'drain';

/** What the sources of one fast merge write into and count. */
export interface RunContext {
  writer: PcapWriter;
  /** The output's resolution; an input of the same, little endian, is copied as it is. */
  nanos: boolean;
  snaplen: number;
  observe: ((host: string, linkType: number, data: Buffer, tsSec: number, tsNsec: number) => void) | undefined;
  packets: number;
  bytes: number;
  duplicates: number;
  unwritable: number;
  unwritableWhy: string;
}

/**
 * The record header's length as a constant of this module: an import is a
 * property of the other module's exports object, and its load in the loop
 * per packet stayed a generic LoadIC call in optimised code (callgrind: 66
 * instructions a packet with 4 hosts interleaved).
 */
const REC_HDR = PCAP_RECORD_HEADER_LEN;

/** Bytes of a run gathered before they are handed to the writer, so a long run still gives way to backpressure. */
const RUN_BLOCK = 256 * 1024;
/**
 * A block at least this long goes to a file stream as a view of the input's
 * buffer (see block()); a shorter one is copied into the writer's batch.
 */
const BORROW_MIN = 32 * 1024;
/** What one read(2) of a file input asks for (see PcapRunSource's `path`). */
export const FILE_READ = 1 << 20;

function openFile(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r', (e, fd) => (e ? reject(e) : resolve(fd))));
}

function fileSize(fd: number): Promise<number> {
  return new Promise((resolve, reject) => fstat(fd, (e, st) => (e ? reject(e) : resolve(st.size))));
}

function readFile(fd: number, buf: Buffer, at: number, len: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => read(fd, buf, at, len, position, (e, n) => (e ? reject(e) : resolve(n))));
}

export class PcapRunSource {
  readonly index: number;
  readonly host: string;
  /** The input as a stream, or null when it is a file read here (`path`). */
  readonly reader: CaptureStreamReader | null;
  /**
   * A file read straight into this source's buffer with positional reads:
   * no stream, no buffer allocated per chunk (a file stream's fresh 1 MiB
   * chunks cost more system time in page faults than the whole merge's
   * parsing).
   */
  readonly path: string | null;
  private fd = -1;
  private filePos = 0;
  /** The file's size when opened: a small file's buffer is its size, not FILE_READ. */
  private fileSize = 0;
  /** close() was called: a file opened after (another input failed meanwhile) is closed at once. */
  private closed = false;
  private reading = false;
  /**
   * Reads ahead (see startFetch()) once the merge runs (ready()): the merge
   * waited for each 1 MiB read of each input in turn, a third of a 4-host
   * merge's time with the thread pool busy and the merge idle.
   */
  private prefetch = false;
  /** A read into buf[end, ...) is in flight: buf is neither moved nor replaced until it is counted. */
  private fetching = false;
  /** Bytes the read ahead brought that are not in `end` yet; -1 when none came back. */
  private fetched = -1;
  private fetchError: Error | null = null;
  private fetchWaiter: (() => void) | null = null;
  readonly dedup: HostDedup;
  private readonly reorderPackets: number;
  private readonly reorderBytes: number;
  /** Validated bytes ahead that cover any read-ahead: its bytes plus a header per packet it can hold. */
  private readonly lookaheadBytes: number;
  private header!: PcapHeader;
  private limit = 0;
  private linkType = 0;
  private le = true;
  private inNanos = false;
  /**
   * 1 when a record of this input is the output's encoding as it is (little
   * endian, the output's resolution), 0 when not, -1 until the first run
   * sets it (the output is the same for a whole merge). A number: the
   * booleans' comparison per packet was a generic StrictEqual call in
   * optimised code.
   */
  private raw = -1;
  /** A record's subsecond field is below this (1e9 in ns, 1e6 in µs) for it to be copied as it is. */
  private subLimit = 1_000_000;
  /** Nanoseconds per unit of the subsecond field: 1 or 1000. */
  private subScale = 1000;

  // The input's unread bytes: buf[pos, end) starts at stream offset base + pos.
  private buf: Buffer = Buffer.alloc(0);
  /** buf's ArrayBuffer and offset in it, for views of runs (see block()); fetched again when buf is another (see view()). */
  private bufOf: Buffer | null = null;
  private ab = new ArrayBuffer(0);
  private abOff = 0;
  /** buf as a DataView, for the dedup's hash. */
  private dv = new DataView(this.ab);
  /** buf is ours to write into (not a chunk the stream gave). */
  private owned = false;
  /**
   * Memory for buf in the merge's shared space (see mergeSpace()), or null:
   * records copied from there to the output need no view each.
   */
  private slot: Buffer | null = null;
  /**
   * 1 when blocks go to the output as views of buf, no copy (see block()),
   * 0 when not, -1 until the first block sets it.
   */
  private borrow = -1;
  /** Per buffer, the views of it the output still holds: room() does not write over those bytes. */
  private readonly lent = new Map<Buffer, number>();
  /** A buffer of ours the output has given back since buf moved off it: the next one room() needs. */
  private spareBuf: Buffer | null = null;
  private pos = 0;
  private end = 0;
  private base = 0;
  private ended = false;

  // Records in buf[pos, vOff) are whole, valid and in time order (fast mode);
  // in slow mode vOff is where the next record is parsed.
  private vOff = 0;
  private vCount = 0;
  private eCount = 0;
  private vSec = -Infinity;
  private vNsec = 0;
  /** The record at vOff is earlier than the one before it. */
  private disorder = false;

  private slow: ReadAhead | null = null;
  private slowBytes = 0;
  private seq = 0;
  // The last record written in time order: a later one that is earlier counts as late.
  private lastSec = -Infinity;
  private lastNsec = 0;

  /** Head's time, set by cacheHead() (the merge's heap orders on these). */
  headSec = 0;
  headNsec = 0;
  /** runFast() stopped at the bound on the record at pos: headSec/headNsec are its time already. */
  private headKnown = false;
  /**
   * The record at pos is decoded in headSec, headNsec and these (runFast()
   * stopped on it at the bound): the next run starts from them instead of
   * reading its header again. Fast mode only; the values stay true when the
   * bytes move in the buffer.
   */
  private posKnown = false;
  private posSub = 0;
  private posCapLen = 0;
  private posOrigLen = 0;

  /** Packets written earlier in time than one before them from this input. */
  late = 0;
  duplicates = 0;
  tornBytes = 0;
  formatError: CaptureFormatError | null = null;

  constructor(index: number, host: string, input: CaptureStreamReader | string, dedup: HostDedup, reorderPackets: number, reorderBytes: number) {
    this.index = index;
    this.host = host;
    this.reader = typeof input === 'string' ? null : input;
    this.path = typeof input === 'string' ? input : null;
    this.dedup = dedup;
    this.reorderPackets = reorderPackets;
    this.reorderBytes = reorderBytes;
    this.lookaheadBytes = reorderBytes + reorderPackets * PCAP_RECORD_HEADER_LEN;
  }

  /**
   * Reads the input's first bytes. Returns its PCAP header, or null when it
   * is not a whole PCAP header (another format, empty, cut short): then
   * what was read is given back to the reader for the general path.
   */
  async probe(): Promise<PcapHeader | null> {
    while (this.end < PCAP_HEADER_LEN && !this.ended) await this.more();
    const head = this.buf.subarray(0, this.end);
    if (this.end < PCAP_HEADER_LEN || !isPcapMagic(head)) return this.giveBack();
    try {
      this.header = parsePcapHeader(head, this.host);
    } catch (e) {
      if (!(e instanceof CaptureFormatError)) throw e;
      return this.giveBack();
    }
    this.limit = pcapCapLenLimit(this.header);
    this.linkType = this.header.linkType;
    this.le = this.header.littleEndian;
    this.inNanos = this.header.nanos;
    this.subLimit = this.inNanos ? 1_000_000_000 : 1_000_000;
    this.subScale = this.inNanos ? 1 : 1000;
    this.pos = this.vOff = PCAP_HEADER_LEN;
    return this.header;
  }

  /** Gives what probe() read back to the reader, for the general path (a file input is read again from its start there). */
  giveBack(): null {
    // Never written to from here on, so the reader may keep views into it.
    this.reader?.unread(this.buf.subarray(0, this.end));
    this.buf = Buffer.alloc(0);
    this.pos = this.end = 0;
    this.close();
    return null;
  }

  /** Gives buf the memory `slot` (in the memory the writer's batches are lent), as far as it holds what buf needs. */
  useSlot(slot: Buffer): void {
    this.slot = slot;
  }

  /** Closes a file input; call once the merge is done with this source. */
  close(): void {
    this.closed = true;
    // A read in flight closes it when it returns (the number could be reused meanwhile).
    if (this.fd >= 0 && !this.reading) {
      close(this.fd, () => {});
      this.fd = -1;
    }
  }

  private async more(): Promise<void> {
    try {
      if (this.path !== null) return await this.moreFromFile(this.path);
      const c = await this.reader!.readChunk();
      if (c === null) this.ended = true;
      else this.append(c);
    } catch (e) {
      throw new Error(`reading the capture of ${this.host} failed: ${(e as Error).message}; nothing was merged, try again`);
    }
  }

  private async moreFromFile(path: string): Promise<void> {
    if (this.fetching) await new Promise<void>((resolve) => (this.fetchWaiter = resolve));
    if (this.fetchError !== null) {
      const e = this.fetchError;
      this.fetchError = null;
      throw e;
    }
    if (this.takeFetched()) return;
    if (this.fd < 0) {
      const fd = await openFile(path);
      if (this.closed) {
        close(fd, () => {});
        throw new Error('the merge stopped');
      }
      this.fd = fd;
    }
    let n: number;
    this.reading = true;
    try {
      if (this.filePos === 0) this.fileSize = await fileSize(this.fd);
      // At least a page, so that a file that grew since is still read to its end.
      this.room(Math.max(4096, Math.min(FILE_READ, this.fileSize - this.filePos)));
      n = await readFile(this.fd, this.buf, this.end, this.buf.length - this.end, this.filePos);
    } finally {
      this.reading = false;
      if (this.closed) this.close();
    }
    if (n === 0) this.ended = true;
    this.filePos += n;
    this.end += n;
    this.startFetch();
  }

  /**
   * Starts reading the file's next bytes after `end` (room() first, which may
   * move what is unread), so they are there, or on their way, when the merge
   * needs them. Not past the size the file had when opened: the read that
   * finds the end (or what a growing file added) is moreFromFile()'s own.
   */
  private startFetch(): void {
    if (!this.prefetch || this.fetching || this.fetched >= 0 || this.fd < 0 || this.closed || this.ended) return;
    const want = Math.min(FILE_READ, this.fileSize - this.filePos);
    if (want <= 0) return;
    this.room(want);
    this.fetching = true;
    this.reading = true;
    read(this.fd, this.buf, this.end, want, this.filePos, (e, n) => {
      this.fetching = false;
      this.reading = false;
      if (this.closed) this.close();
      if (e) this.fetchError = e;
      else this.fetched = n;
      const w = this.fetchWaiter;
      this.fetchWaiter = null;
      w?.();
    });
  }

  /** Counts in what the read ahead brought, and reads ahead again; false when nothing came back yet. */
  private takeFetched(): boolean {
    const n = this.fetched;
    if (n < 0) return false;
    this.fetched = -1;
    if (n === 0) this.ended = true;
    this.filePos += n;
    this.end += n;
    this.startFetch();
    return true;
  }

  /**
   * Appends a chunk after the unread bytes. With none left the chunk itself
   * becomes the buffer (no copy; it is never written to, since it may be
   * the caller's); otherwise it is copied after them (see room()).
   */
  private append(c: Buffer): void {
    const from = this.slow ? this.vOff : this.pos;
    if (this.end === from && !(this.owned && this.end + c.length <= this.buf.length)) {
      this.dedup.detach(this.buf);
      this.base += from;
      this.pos -= from;
      this.vOff -= from;
      this.buf = c;
      this.owned = false;
      this.end = c.length;
      return;
    }
    this.room(c.length);
    c.copy(this.buf, this.end);
    this.end += c.length;
  }

  /**
   * Makes room for `len` bytes at `end` in a buffer of our own: the unread
   * bytes move to the front of the buffer, or to a larger one, twice what
   * is needed so that moves stay rare. A busy input ends up with a few MiB
   * (the lookahead and a chunk), a small one with its own size.
   */
  private room(len: number): void {
    if (this.owned && this.end + len <= this.buf.length) return;
    // The bytes before `from` are overwritten or dropped: the dedup copies what it still remembers of them.
    this.dedup.detach(this.buf);
    const from = this.slow ? this.vOff : this.pos;
    const live = this.end - from;
    if (this.owned && live + len <= this.buf.length && !this.lent.has(this.buf)) {
      this.buf.copyWithin(0, from, this.end);
    } else {
      const need = 2 * (live + len);
      // The slot's start is where buf starts when it is the slot already: copy() moves the bytes as copyWithin() would.
      const nb = this.slot !== null && need <= this.slot.length ? this.slot.subarray(0, need) : this.freshBuffer(need);
      this.buf.copy(nb, 0, from, this.end);
      this.buf = nb;
      this.owned = true;
    }
    this.base += from;
    this.pos -= from;
    this.vOff -= from;
    this.end = live;
  }

  /** The record at `o` is whole and valid: its header's four words, time normalised. Sets `rec`. */
  private readAt(o: number): boolean {
    if (this.end - o < REC_HDR) return false;
    // Through a DataView: a word per load, where indexed bytes took four (and readUInt32LE() is not inlined).
    const v = this.view();
    const le = this.le;
    let sec = v.getUint32(o, le);
    const sub = v.getUint32(o + 4, le);
    const capLen = v.getUint32(o + 8, le);
    const origLen = v.getUint32(o + 12, le);
    // Checked on a header whose record is not whole yet too, so a corrupt length never makes this wait for gigabytes.
    if (capLen > this.limit || capLen > origLen) {
      this.formatError = corruptRecord(this.host, this.base + o, capLen, origLen, this.limit);
      this.formatError = new CaptureFormatError(`${this.formatError.message}; packets from byte ${this.base + o} on are left out`, {
        file: this.formatError.file,
        offset: this.formatError.offset,
      });
      return false;
    }
    if (this.end - o - REC_HDR < capLen) return false;
    let nsec = this.inNanos ? sub : sub * 1000;
    if (nsec >= 1_000_000_000) {
      const carry = Math.floor(nsec / 1_000_000_000);
      sec += carry;
      nsec -= carry * 1_000_000_000;
    }
    rec.sec = sec;
    rec.nsec = nsec;
    rec.sub = sub;
    rec.capLen = capLen;
    rec.origLen = origLen;
    return true;
  }

  /**
   * Extends the validated run as far as the buffer and time order allow.
   * readAt()'s checks and decoding in a loop of its own: a call of readAt()
   * per record, which stores what it decodes for the caller, was a tenth of
   * the merge's instructions per packet (callgrind, 4 hosts). The state is
   * stored in the loop, not once after it: V8 compiles this loop on stack
   * during its first long call, and code after the loop that had not run
   * yet then had no type feedback; that compiled loop was kept and left the
   * function at every return (118 deoptimisations in one 4-host merge after
   * a one-host merge).
   */
  private validate(): void {
    if (this.disorder || this.formatError !== null) return;
    const v = this.view();
    const le = this.le;
    const limit = this.limit;
    const scale = this.subScale;
    const end = this.end;
    let o = this.vOff;
    // Bounded by the buffer: each turn moves o past a whole record.
    while (end - o >= REC_HDR) {
      const capLen = v.getUint32(o + 8, le);
      if (capLen > limit || capLen > v.getUint32(o + 12, le)) {
        // Says why (formatError), as readAt() does for any caller.
        this.readAt(o);
        return;
      }
      if (end - o - REC_HDR < capLen) return;
      let sec = v.getUint32(o, le);
      let nsec = v.getUint32(o + 4, le) * scale;
      if (nsec >= 1_000_000_000) {
        const carry = Math.floor(nsec / 1_000_000_000);
        sec += carry;
        nsec -= carry * 1_000_000_000;
      }
      if (sec < this.vSec || (sec === this.vSec && nsec < this.vNsec)) {
        this.disorder = true;
        return;
      }
      this.vSec = sec;
      this.vNsec = nsec;
      o += REC_HDR + capLen;
      this.vOff = o;
      this.vCount++;
    }
  }

  /** No record will be validated after vOff, other than for disorder: corrupt, or the input's end. */
  private final(): boolean {
    return this.formatError !== null || (this.ended && !this.disorder);
  }

  /** The record at pos may be written in file order: what the read-ahead would hold with it is validated. */
  private fastSafe(o: number): boolean {
    return this.vCount - this.eCount >= this.reorderPackets || this.vOff - o >= this.lookaheadBytes || this.final();
  }

  hasHead(): boolean {
    return this.slow ? this.slow.size > 0 : this.pos < this.vOff;
  }

  cacheHead(): void {
    if (this.headKnown) this.headKnown = false;
    else if (this.slow) {
      const h = this.slow.peek()!;
      this.headSec = h.tsSec;
      this.headNsec = h.tsNsec;
    } else {
      this.readAt(this.pos);
      this.headSec = rec.sec;
      this.headNsec = rec.nsec;
    }
  }

  /**
   * True when the next record can be decided on (its head is the one the
   * general path would give) or the input is exhausted; false when that
   * needs bytes not read yet (then ready()).
   */
  readySync(): boolean {
    if (this.slow === null && this.pos < this.vOff && this.fastSafe(this.pos)) return true;
    this.headKnown = false;
    for (;;) {
      if (this.slow) return this.slowFill();
      this.validate();
      if (this.pos < this.vOff ? this.fastSafe(this.pos) : this.final()) return true;
      if (!this.disorder) {
        // Bytes a read ahead brought meanwhile: no wait (and no flush of the output) for them.
        if (this.takeFetched()) continue;
        return false;
      }
      this.goSlow();
    }
  }

  /** Reads until readySync() holds. */
  async ready(): Promise<void> {
    this.prefetch = this.path !== null;
    // Bounded: each turn reads a chunk, and once the stream has ended readySync() holds.
    while (!this.readySync() && !this.ended) await this.more();
  }

  /** Switches to the general path's read-ahead from pos, as it would be filled there. */
  private goSlow(): void {
    this.slow = new ReadAhead();
    this.slowBytes = 0;
    this.vOff = this.pos;
    this.slowFill();
  }

  /** Fills the read-ahead; false when it needs bytes not read yet. */
  private slowFill(): boolean {
    const ahead = this.slow!;
    while (ahead.size < this.reorderPackets && this.slowBytes < this.reorderBytes) {
      if (this.formatError !== null) return true;
      if (!this.readAt(this.vOff)) {
        if (this.formatError !== null || this.ended) {
          if (this.formatError === null) this.tornBytes = this.end - this.vOff;
          return true;
        }
        return false;
      }
      const at = this.vOff + REC_HDR;
      const h: Held = {
        tsSec: rec.sec,
        tsNsec: rec.nsec,
        seq: this.seq++,
        // A copy: the buffer moves under the read-ahead. Only inputs that go back in time come here.
        data: Buffer.from(this.buf.subarray(at, at + rec.capLen)),
        origLen: rec.origLen,
        linkType: this.linkType,
        nanos: this.inNanos,
        off: -1,
        len: rec.capLen,
        freed: false,
      };
      ahead.push(h);
      this.slowBytes += rec.capLen;
      this.vOff = at + rec.capLen;
    }
    return true;
  }

  /** Called once the input is exhausted: what its end left. */
  finish(): void {
    if (!this.slow && this.formatError === null && this.ended) this.tornBytes = this.end - this.vOff;
  }

  /**
   * Writes this input's records while they come before the bound (the
   * other inputs' earliest head; ties go to the lower index), none when
   * boundIndex < 0. 'data': call ready() before the next run; 'drain': wait
   * for the writer; 'bound': the head is not before the bound, or none is left;
   * 'next': the head is decoded, after the bound and may be decided on
   * (readySync() holds), so the caller neither asks nor decodes it again.
   */
  run(boundSec: number, boundNsec: number, boundIndex: number, ctx: RunContext): RunStatus {
    if (this.slow) return this.runSlow(boundSec, boundNsec, boundIndex, ctx);
    return this.posKnown ? this.runLean(boundSec, boundNsec, boundIndex, ctx) : this.runFast(boundSec, boundNsec, boundIndex, ctx);
  }

  /**
   * runFast() for a run that starts on a record whose header is decoded
   * already (the last run stopped at the bound on it), taken one record at
   * a time: when inputs interleave packet by packet (a fleet's hosts at one
   * instant) nearly every run is that one record, and runFast()'s setup and
   * block bookkeeping cost more than the record itself (callgrind: about a
   * fifth of the merge's instructions per packet with 4 hosts). The record
   * is written as runFast() writes it; the next one is decided here when it
   * is validated, may be written in file order and lies past the bound
   * (the usual case), and runFast() takes the run over from it otherwise.
   * The same records in the same order, and the same dedup and observer
   * calls, as runFast() alone: only the output's bytes are handed over in
   * more, smaller pieces.
   */
  private runLean(bSec: number, bNsec: number, bIndex: number, ctx: RunContext): RunStatus {
    // runFast() checks first that the record may be written in file order:
    // readySync() said so since, or this run's 'next' did (see runUntilWait()).
    const o = this.pos;
    const at = o + REC_HDR;
    const next = at + this.posCapLen;
    this.posKnown = false;
    this.headKnown = false;
    const sec = this.headSec;
    const nsec = this.headNsec;
    const b = this.buf;
    let ok = true;
    if (this.dedup.isDuplicateAt(this.linkType, b, at, next, sec, nsec, true, this.view())) {
      ctx.duplicates++;
      this.duplicates++;
    } else {
      const observe = ctx.observe;
      if (observe) observe(this.host, this.linkType, b.subarray(at, next), sec, nsec);
      const capLen = next - at;
      if (this.raw < 0) this.raw = this.le && this.inNanos === ctx.nanos ? 1 : 0;
      if (this.raw === 1 && this.posSub < this.subLimit && capLen <= ctx.snaplen) {
        ok = this.block(ctx.writer, o, next, 1);
        ctx.packets++;
        ctx.bytes += capLen;
      } else ok = writeOne(ctx, sec, nsec, this.posOrigLen, b.subarray(at, next));
    }
    this.pos = next;
    this.eCount++;
    this.lastSec = sec;
    this.lastNsec = nsec;
    if (!ok) return 'drain';
    if (bIndex >= 0 && next < this.vOff && this.fastSafe(next)) {
      // Validated (next < vOff): whole and valid, so decoded here without readAt()'s checks and stores.
      const v = this.view();
      const le = this.le;
      let s = v.getUint32(next, le);
      const sub = v.getUint32(next + 4, le);
      let n = sub * this.subScale;
      if (n >= 1_000_000_000) {
        const carry = Math.floor(n / 1_000_000_000);
        s += carry;
        n -= carry * 1_000_000_000;
      }
      if (s > bSec || (s === bSec && (n > bNsec || (n === bNsec && this.index > bIndex)))) {
        // headKnown stays false: the caller places this source itself, without cacheHead().
        this.headSec = s;
        this.headNsec = n;
        this.posKnown = true;
        this.posSub = sub;
        this.posCapLen = v.getUint32(next + 8, le);
        this.posOrigLen = v.getUint32(next + 12, le);
        return 'next';
      }
    }
    return this.runFast(bSec, bNsec, bIndex, ctx);
  }

  private runFast(bSec: number, bNsec: number, bIndex: number, ctx: RunContext): RunStatus {
    this.headKnown = false;
    const b = this.buf;
    const dv = this.view();
    if (this.raw < 0) this.raw = this.le && this.inNanos === ctx.nanos ? 1 : 0;
    const raw = this.raw === 1;
    const subLimit = this.subLimit;
    const later = this.index > bIndex;
    const bounded = bIndex >= 0;
    const d = this.dedup;
    const observe = ctx.observe;
    const w = ctx.writer;
    const linkType = this.linkType;
    const snaplen = ctx.snaplen;
    // fastSafe() per record without the call: the validated run does not
    // change while this runs, and both its measures only shrink as o moves on.
    const vOff = this.vOff;
    const fin = this.final();
    const eSafe = this.vCount - this.reorderPackets;
    const oSafe = vOff - this.lookaheadBytes;
    let eCount = this.eCount;
    let o = this.pos;
    let known = this.posKnown;
    this.posKnown = false;
    let lastSec = this.lastSec;
    let lastNsec = this.lastNsec;
    let block = o;
    let blockRecords = 0;
    let packets = 0;
    let bytes = 0;
    let duplicates = 0;
    let ok = true;
    let status: RunStatus = 'bound';
    for (;;) {
      if (o >= vOff) {
        if (!fin) status = 'data';
        break;
      }
      if (!fin && eCount > eSafe && o > oSafe) {
        status = 'data';
        break;
      }
      let sec: number, nsec: number, sub: number, capLen: number, origLen: number;
      if (known) {
        known = false;
        sec = this.headSec;
        nsec = this.headNsec;
        sub = this.posSub;
        capLen = this.posCapLen;
        origLen = this.posOrigLen;
      } else {
        this.readAt(o);
        sec = rec.sec;
        nsec = rec.nsec;
        sub = rec.sub;
        capLen = rec.capLen;
        origLen = rec.origLen;
      }
      if (bounded && (sec > bSec || (sec === bSec && (nsec > bNsec || (nsec === bNsec && later))))) {
        this.headKnown = true;
        this.headSec = sec;
        this.headNsec = nsec;
        this.posKnown = true;
        this.posSub = sub;
        this.posCapLen = capLen;
        this.posOrigLen = origLen;
        break;
      }
      const at = o + REC_HDR;
      const next = at + capLen;
      // No view of the packet unless it is needed: one per packet was a tenth of the merge's instructions.
      // The dedup keeps a reference (no copy) until the buffer changes: see room() and append().
      if (d.isDuplicateAt(linkType, b, at, next, sec, nsec, true, dv)) {
        duplicates++;
        if (o > block) ok = this.block(w, block, o, blockRecords) && ok;
        block = next;
        blockRecords = 0;
      } else {
        if (observe) observe(this.host, linkType, b.subarray(at, next), sec, nsec);
        if (raw && sub < subLimit && capLen <= snaplen) {
          blockRecords++;
          packets++;
          bytes += capLen;
        } else {
          if (o > block) ok = this.block(w, block, o, blockRecords) && ok;
          block = next;
          blockRecords = 0;
          ok = writeOne(ctx, sec, nsec, origLen, b.subarray(at, next)) && ok;
        }
      }
      o = next;
      eCount++;
      lastSec = sec;
      lastNsec = nsec;
      if (o - block >= RUN_BLOCK) {
        ok = this.block(w, block, o, blockRecords) && ok;
        block = o;
        blockRecords = 0;
      }
      if (!ok) {
        status = 'drain';
        break;
      }
    }
    if (o > block && !this.block(w, block, o, blockRecords) && status === 'bound') status = 'drain';
    ctx.packets += packets;
    ctx.bytes += bytes;
    ctx.duplicates += duplicates;
    this.duplicates += duplicates;
    this.eCount = eCount;
    this.pos = o;
    // Written in order, so the last one is the latest: a slow mode after this counts late ones from it.
    this.lastSec = lastSec;
    this.lastNsec = lastNsec;
    return status;
  }

  /** buf as a DataView (made again when buf is another buffer). */
  private view(): DataView {
    const b = this.buf;
    if (this.bufOf !== b) {
      this.bufOf = b;
      this.ab = b.buffer as ArrayBuffer;
      this.abOff = b.byteOffset;
      this.dv = new DataView(this.ab, this.abOff, b.length);
    }
    return this.dv;
  }

  /**
   * Hands the writer buf[from, to), `records` whole records already in the
   * output's encoding. A long block to a file stream goes as a view of buf
   * (not with a shared space, whose slot room() reuses in place): a one-host
   * merge copied each of its bytes into the writer's batches, a tenth of its
   * CPU.
   */
  private block(w: PcapWriter, from: number, to: number, records: number): boolean {
    if (this.borrow < 0) this.borrow = this.slot === null && w.canBorrow() ? 1 : 0;
    if (this.borrow === 1 && to - from >= BORROW_MIN) {
      const b = this.buf;
      const own = this.owned;
      this.lent.set(b, (this.lent.get(b) ?? 0) + 1);
      return w.writeEncodedBorrowed(b.subarray(from, to), records, () => this.returned(b, own));
    }
    return w.writeEncodedWithin(this.ab, this.abOff + from, to - from, records);
  }

  /** The output is done with a view of `b`; `own`: b is a buffer of ours (a stream's chunk is never written to). */
  private returned(b: Buffer, own: boolean): void {
    const n = this.lent.get(b)! - 1;
    if (n > 0) this.lent.set(b, n);
    else {
      this.lent.delete(b);
      if (own && b !== this.buf && (this.spareBuf === null || b.length > this.spareBuf.length)) this.spareBuf = b;
    }
  }

  /** A buffer of `need` bytes or more that no view the output holds is of: the spare one when it is big enough. */
  private freshBuffer(need: number): Buffer {
    const s = this.spareBuf;
    this.spareBuf = null;
    return s !== null && s.length >= need ? s : Buffer.allocUnsafeSlow(need);
  }

  private runSlow(bSec: number, bNsec: number, bIndex: number, ctx: RunContext): RunStatus {
    const ahead = this.slow!;
    const later = this.index > bIndex;
    for (;;) {
      const h = ahead.peek();
      if (!h) return 'bound';
      if (bIndex >= 0 && (h.tsSec > bSec || (h.tsSec === bSec && (h.tsNsec > bNsec || (h.tsNsec === bNsec && later))))) return 'bound';
      ahead.pop();
      this.slowBytes -= h.data.length;
      if (h.tsSec < this.lastSec || (h.tsSec === this.lastSec && h.tsNsec < this.lastNsec)) this.late++;
      else {
        this.lastSec = h.tsSec;
        this.lastNsec = h.tsNsec;
      }
      let ok = true;
      if (this.dedup.isDuplicate(h.linkType, h.data, h.tsSec, h.tsNsec)) {
        ctx.duplicates++;
        this.duplicates++;
      } else {
        ctx.observe?.(this.host, h.linkType, h.data, h.tsSec, h.tsNsec);
        ok = writeOne(ctx, h.tsSec, h.tsNsec, h.origLen, h.data);
      }
      if (!this.slowFill()) return 'data';
      if (!ok) return 'drain';
    }
  }
}

/** The header fields readAt() decoded last (one scratch: reading is synchronous). */
const rec = { sec: 0, nsec: 0, sub: 0, capLen: 0, origLen: 0 };
/** What writeOne() hands the writer (one scratch: the writer copies before it returns). */
const one: { tsSec: number; tsNsec: number; origLen: number; data: Buffer } = { tsSec: 0, tsNsec: 0, origLen: 0, data: Buffer.alloc(0) };

/** Writes a record whose header must be encoded anew; one the file cannot hold is left out and counted. */
function writeOne(ctx: RunContext, tsSec: number, tsNsec: number, origLen: number, data: Buffer): boolean {
  one.tsSec = tsSec;
  one.tsNsec = tsNsec;
  one.origLen = origLen;
  one.data = data;
  try {
    const ok = ctx.writer.write(one);
    ctx.packets++;
    ctx.bytes += data.length;
    return ok;
  } catch (e) {
    // The writer checks a packet before queueing anything, so the file stays whole.
    if (!(e instanceof RangeError)) throw e;
    ctx.unwritable++;
    ctx.unwritableWhy ||= e.message;
    return true;
  } finally {
    one.data = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);

/** Strict order of the sources' heads: time, then input order. */
function runBefore(a: PcapRunSource, b: PcapRunSource): boolean {
  return a.headSec < b.headSec || (a.headSec === b.headSec && (a.headNsec < b.headNsec || (a.headNsec === b.headNsec && a.index < b.index)));
}

/** Moves heap[i] down to its place (a binary min-heap on runBefore). */
function siftDown(heap: PcapRunSource[], i: number): void {
  const x = heap[i];
  const n = heap.length;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && runBefore(heap[r], heap[l]) ? r : l;
    if (!runBefore(heap[c], x)) break;
    heap[i] = heap[c];
    i = c;
  }
  heap[i] = x;
}

/** The top source has a new head, or none: sifted down to its place, or taken out. */
function settleTop(heap: PcapRunSource[]): void {
  const s = heap[0];
  if (s.hasHead()) s.cacheHead();
  else {
    s.finish();
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
  }
  siftDown(heap, 0);
}

const DONE = 0;
/** The writer asked to wait (waitDrain()). */
const WAIT_DRAIN = 1;
/** The top source needs bytes not read yet (ready()). */
const WAIT_DATA = 2;

/**
 * Runs the merge while nothing needs waiting for, and says what does; the
 * top source is then left unsettled. Not async, so that V8 optimises this
 * loop (it runs once per packet when inputs interleave packet by packet; in
 * the async caller it stayed in the interpreter).
 */
function runUntilWait(heap: PcapRunSource[], ctx: RunContext): number {
  while (heap.length > 0) {
    const s = heap[0];
    const n = heap.length;
    // The bound: the earliest head of the others, one of the top's children.
    const oi = n > 2 ? (runBefore(heap[2], heap[1]) ? 2 : 1) : n - 1;
    const o = heap[oi];
    const st = oi > 0 ? s.run(o.headSec, o.headNsec, o.index, ctx) : s.run(0, 0, -1, ctx);
    if (st === 'next') {
      // The new head comes after o, the least of the others: o goes up, and s sifts on from o's place.
      heap[0] = o;
      heap[oi] = s;
      siftDown(heap, oi);
      continue;
    }
    if (st === 'drain') return WAIT_DRAIN;
    if (!s.readySync()) return WAIT_DATA;
    settleTop(heap);
  }
  return DONE;
}

/**
 * The k-way merge over ready sources (see ready()): the source with the
 * earliest head writes all it has before the next source's head in one
 * run. It stays at the top of the heap meanwhile and is sifted down once
 * with its new head (replace-top: one sift per run rather than a pop and a
 * push). When inputs interleave packet by packet (a fleet's hosts at one
 * instant), a run is one packet, so this is per packet.
 */
export async function mergeRuns(sources: PcapRunSource[], ctx: RunContext): Promise<void> {
  const heap: PcapRunSource[] = [];
  for (const s of sources) {
    if (s.hasHead()) {
      s.cacheHead();
      heap.push(s);
    } else s.finish();
  }
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i);
  for (;;) {
    let wait = runUntilWait(heap, ctx);
    if (wait === DONE) return;
    const s = heap[0];
    if (wait === WAIT_DRAIN) {
      await ctx.writer.waitDrain();
      if (!s.readySync()) wait = WAIT_DATA;
    }
    if (wait === WAIT_DATA) {
      // Waiting for an input: what is written so far goes out meanwhile.
      if (!ctx.writer.flush()) await ctx.writer.waitDrain();
      await s.ready();
    }
    settleTop(heap);
  }
}
