import { createReadStream, WriteStream } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { PCAP_DEFAULT_SNAPLEN } from '../../shared/pcap/pcap';
import { PCAPNG_MAX_BLOCK_LEN } from '../../shared/pcap/pcapng';
import { PcapngWriter } from '../../shared/pcap/pcapng-writer';
import { CaptureStreamReader } from '../../shared/pcap/stream-reader';
import { LINKTYPE } from '../../shared/pcap/types';
import { LENDABLE_BATCH_BYTES } from '../../shared/pcap/sink';
import { PcapWriter } from '../../shared/pcap/writer';
import { HostDedup } from './dedup';
import { MinHeap } from '../../shared/heap/min-heap';
import { FifoArena } from './fifo-arena';
import { ReadAhead, type Held } from './read-ahead';
import { mergeRuns, PcapRunSource, type RunContext } from './pcap-runs';

/**
 * A host's capture as PCAP or PCAPNG bytes; may be empty or end in a torn
 * record. A file (`path`, as the dispatcher's spool holds them) is read by
 * the merge itself into buffers of its own, which costs a fraction of a
 * file stream's system time; anything else is a stream.
 */
export type MergeInput = { host: string; stream: Readable; path?: undefined } | { host: string; path: string; stream?: undefined };

/** Sees every packet the merge keeps (after a host's own duplicates are left out), with its time as the host captured it. */
export type PacketObserver = (host: string, linkType: number, data: Buffer, tsSec: number, tsNsec: number) => void;

/** A host's clock correction for an aligned merge. */
export interface HostShift {
  /** Subtracted from every timestamp of the host's packets. */
  offsetNs: number;
  /** The comment of the host's interfaces in the merged PCAPNG. */
  comment: string;
}

export interface MergeOptions {
  /** Two captures of one packet on one host are at most this far apart; default 1 ms. */
  dedupWindowNs?: number;
  observe?: PacketObserver;
  /**
   * Writes corrected timestamps: the packets of a host named here are
   * shifted by its offset before they are ordered, and the output is a
   * PCAPNG with nanosecond interfaces of their own per host (named after
   * it, with the comment given). Hosts not named keep their time.
   */
  align?: Map<string, HostShift>;
}

export interface MergeResult {
  /** Packets written. */
  packets: number;
  /** Captured bytes of the packets written (record headers not counted). */
  bytes: number;
  /** Second captures of a packet on the same host, left out. */
  duplicates: number;
  format: 'pcap' | 'pcapng';
  /** What was tolerated: empty, torn or corrupt inputs, disorder, packets that could not be written. */
  notes: string[];
}

/**
 * Per input, the packets read ahead and sorted before the earliest is
 * merged: an input that goes back in time by less than this comes out in
 * order. The bytes bound keeps jumbo or 256 KiB packets from taking memory.
 */
export const REORDER_PACKETS = 1024;
/**
 * The read size to give a file stream that is merged: with the default 64
 * KiB, a file stream's chunks cost several times the CPU of the merge's own
 * parsing (measured: 170 ms against 35 ms per 64 MiB).
 */
export const MERGE_READ_CHUNK = 1 << 20;
export const REORDER_BYTES = 1024 * 1024;
/** Per input, the buffer the read-ahead packets are copied into (room for wrap-around and a few stuck packets). */
const READ_AHEAD_ARENA = 2 * REORDER_BYTES;
/**
 * What that buffer starts at; it doubles up to READ_AHEAD_ARENA as the
 * read-ahead needs, so an input of a few packets (a fleet trace merges a
 * thousand of those) costs a few KiB rather than megabytes.
 */
const READ_AHEAD_ARENA_INITIAL = 2048;
export const DEFAULT_DEDUP_WINDOW_NS = 1_000_000;

class Source {
  readonly index: number;
  readonly host: string;
  readonly reader: CaptureStreamReader;
  /** Nanoseconds subtracted from every timestamp (an aligned merge). */
  private readonly shiftNs: number;
  private readonly ahead = new ReadAhead();
  private aheadBytes = 0;
  private arena: FifoArena<Held> | null = null;
  private seq = 0;
  exhausted = false;
  private lastSec = -Infinity;
  private lastNsec = 0;
  /** Packets that came out earlier in time than one before them from this input. */
  late = 0;
  duplicates = 0;

  constructor(index: number, host: string, reader: CaptureStreamReader, shiftNs = 0) {
    this.index = index;
    this.host = host;
    this.shiftNs = Math.round(shiftNs);
    this.reader = reader;
  }

  head(): Held | undefined {
    return this.ahead.peek();
  }

  private wantMore(): boolean {
    return !this.exhausted && this.ahead.size < REORDER_PACKETS && this.aheadBytes < REORDER_BYTES;
  }

  /**
   * Reads ahead from what the reader has parsed already; true when the
   * read-ahead is full or the input exhausted, false when fill() must wait
   * for the stream. Spares the merge a promise per packet.
   */
  fillSync(): boolean {
    while (this.wantMore()) {
      const r = this.reader.shift();
      if (!r) return false;
      let tsSec = r.tsSec;
      let tsNsec = r.tsNsec;
      if (this.shiftNs !== 0) {
        const t = tsNsec - this.shiftNs;
        const carry = Math.floor(t / 1e9);
        tsSec += carry;
        tsNsec = t - carry * 1e9;
      }
      const h: Held = {
        tsSec,
        tsNsec,
        seq: this.seq++,
        data: r.data,
        origLen: r.origLen,
        linkType: r.linkType,
        nanos: r.nanos,
        off: -1,
        len: r.data.length,
        freed: false,
      };
      // Copied out of the stream's chunk, so the chunk is garbage at once.
      if (this.place(h)) {
        h.data = this.arena!.view(h);
        r.data.copy(h.data);
      } else h.data = Buffer.from(r.data);
      this.ahead.push(h);
      this.aheadBytes += h.data.length;
    }
    return true;
  }

  /**
   * A slot in the arena, making room once it is at its full size by moving
   * the oldest packets (ones that stay long in the read-ahead while later
   * ones flow) to private copies.
   */
  private place(h: Held): boolean {
    this.arena ??= new FifoArena<Held>(READ_AHEAD_ARENA_INITIAL, READ_AHEAD_ARENA);
    const arena = this.arena;
    for (let guard = arena.size; guard >= 0; guard--) {
      if (arena.alloc(h)) return true;
      const old = arena.oldest();
      if (!old) return false;
      old.data = Buffer.from(old.data);
      arena.free(old);
    }
    return false;
  }

  /** Reads ahead until the reorder window is full or the input is exhausted. */
  async fill(): Promise<void> {
    while (!this.fillSync()) {
      let more: boolean;
      try {
        more = await this.reader.pull();
      } catch (e) {
        throw new Error(`reading the capture of ${this.host} failed: ${(e as Error).message}; nothing was merged, try again`);
      }
      if (!more && this.reader.done) this.exhausted = true;
    }
  }

  /** Gives a taken packet's bytes back; call once it is written or dropped. A packet the arena let go of when it grew keeps its old buffer alive until then. */
  release(h: Held): void {
    if (h.off >= 0) this.arena!.free(h);
  }

  take(): Held {
    const h = this.ahead.pop()!;
    this.aheadBytes -= h.data.length;
    if (h.tsSec < this.lastSec || (h.tsSec === this.lastSec && h.tsNsec < this.lastNsec)) this.late++;
    else {
      this.lastSec = h.tsSec;
      this.lastNsec = h.tsNsec;
    }
    return h;
  }

  /** Link types, resolution and snaplens the input has declared so far. */
  announced(): { linkTypes: number[]; nanos: boolean; snaplens: number[] } {
    const h = this.reader.pcapHeader;
    if (h) return { linkTypes: [h.linkType], nanos: h.nanos, snaplens: [h.snaplen] };
    const ifs = this.reader.interfaces;
    return {
      linkTypes: ifs.map((i) => i.linkType),
      nanos: ifs.some((i) => !(i.tsBase === 10 && i.tsExponent <= 6)),
      snaplens: ifs.map((i) => i.snaplen),
    };
  }

  /** Link types of the packets read ahead. */
  heldLinkTypes(into: Set<number>): boolean {
    let nanos = false;
    for (const h of this.ahead.values()) {
      into.add(h.linkType);
      nanos ||= h.nanos;
    }
    return nanos;
  }
}

const sourceLess = (a: Source, b: Source) => {
  const x = a.head()!;
  const y = b.head()!;
  return x.tsSec < y.tsSec || (x.tsSec === y.tsSec && (x.tsNsec < y.tsNsec || (x.tsNsec === y.tsNsec && (a.index < b.index || (a.index === b.index && x.seq < y.seq)))));
};

/** The output, PCAP or PCAPNG, behind one face. */
interface Output {
  format: 'pcap' | 'pcapng';
  /** Returns false when the packet is refused (counted in notes by the caller). */
  accepts(h: Held): boolean;
  write(h: Held, s: Source): boolean;
  /** Hands what the writer gathered to the stream (see StreamSink). */
  flush(): boolean;
  waitDrain(): Promise<void>;
  end(): Promise<void>;
}

interface Plan {
  pcapLinkType: number | null;
  nanos: boolean;
  snaplen: number;
}

/**
 * Chooses the output format before the first packet is written, since a
 * stream cannot be rewritten. When every input was read to its end within
 * the read-ahead, the link types of the packets themselves decide; otherwise
 * those each input declared so far (PCAP headers, PCAPNG interfaces; our
 * agents declare all of them up front). An empty merge is a PCAP of the
 * first input's link type, or Ethernet.
 */
function plan(sources: Source[]): Plan {
  const declared = new Set<number>();
  const held = new Set<number>();
  let nanos = false;
  let snaplen = PCAP_DEFAULT_SNAPLEN;
  let firstLinkType: number | null = null;
  for (const s of sources) {
    const a = s.announced();
    for (const lt of a.linkTypes) declared.add(lt);
    firstLinkType ??= a.linkTypes[0] ?? null;
    nanos ||= a.nanos;
    nanos = s.heldLinkTypes(held) || nanos;
    for (const n of a.snaplens) if (n > snaplen) snaplen = n;
  }
  snaplen = Math.min(snaplen, PCAPNG_MAX_BLOCK_LEN);
  const exact = sources.every((s) => s.exhausted);
  const types = exact ? held : new Set([...declared, ...held]);
  if (types.size === 0) return { pcapLinkType: firstLinkType ?? LINKTYPE.ETHERNET, nanos, snaplen };
  if (types.size === 1) return { pcapLinkType: [...types][0], nanos, snaplen };
  return { pcapLinkType: null, nanos, snaplen };
}

function openOutput(out: Writable, p: Plan, align: Map<string, HostShift> | undefined): Output {
  if (align) {
    const w = new PcapngWriter(out, { snaplen: p.snaplen });
    return {
      format: 'pcapng',
      accepts: () => true,
      // Shifted times are whole nanoseconds whatever the source's resolution.
      write: (h, s) => {
        const a = align.get(s.host);
        return w.write(h, true, { key: s.host, name: s.host, comment: a ? a.comment : `${s.host}: no clock offset known, timestamps as captured` });
      },
      flush: () => w.flush(),
      waitDrain: () => w.waitDrain(),
      end: () => w.end(),
    };
  }
  if (p.pcapLinkType !== null) {
    const linkType = p.pcapLinkType;
    const w = new PcapWriter(out, { linkType, nanos: p.nanos, snaplen: p.snaplen });
    return {
      format: 'pcap',
      accepts: (h) => h.linkType === linkType,
      write: (h) => w.write(h),
      flush: () => w.flush(),
      waitDrain: () => w.waitDrain(),
      end: () => w.end(),
    };
  }
  const w = new PcapngWriter(out, { snaplen: p.snaplen });
  return {
    format: 'pcapng',
    accepts: () => true,
    write: (h) => w.write(h, h.nanos),
    flush: () => w.flush(),
    waitDrain: () => w.waitDrain(),
    end: () => w.end(),
  };
}

function validate(inputs: MergeInput[], opts: MergeOptions): number {
  if (!Array.isArray(inputs)) throw new TypeError('mergeCaptures: inputs must be an array of { host, stream }');
  inputs.forEach((x, i) => {
    if (typeof x?.host !== 'string' || (typeof x?.stream?.read !== 'function') === (typeof x?.path !== 'string')) {
      throw new TypeError(`mergeCaptures: input ${i} must be { host: string, stream: Readable } or { host: string, path: string }`);
    }
  });
  const w = opts.dedupWindowNs ?? DEFAULT_DEDUP_WINDOW_NS;
  if (!Number.isFinite(w) || w < 0) throw new RangeError(`mergeCaptures: dedupWindowNs ${w} must be a non-negative number of nanoseconds`);
  return w;
}

/**
 * Merges each host's capture into one time-ordered capture on `out`.
 *
 * - Streams: per input, memory is the stream's buffer plus a read-ahead of
 *   at most REORDER_PACKETS / REORDER_BYTES, copied into a FIFO arena of
 *   its own; the dedup memory is the packets of the last dedupWindowNs per
 *   host, in a FIFO arena too. Both start at a few KiB and double as far as
 *   an input needs, so many small inputs cost little.
 * - Order: a k-way merge on exact timestamps; ties go by input order, then
 *   by position within the input. An input that goes back in time is sorted
 *   within its read-ahead; a packet further back than that is still
 *   written, where it was read (so out of time order), and counted in notes.
 * - Duplicates: a packet one host captured twice (on `any` and `eth0`, on
 *   two ports of a bridge) is written once, the first seen: same host, same
 *   bytes from the network layer up, at most dedupWindowNs apart. Packets of
 *   different hosts are never duplicates of each other.
 * - Clocks: `observe` sees each kept packet (the trace's clock and hop
 *   figures are made there); `align` shifts hosts' timestamps before they
 *   are ordered and writes a PCAPNG saying, per host, what was applied.
 * - Format: classic PCAP when the packets have one link type (nanosecond
 *   when any input is), PCAPNG with one interface per link type and
 *   resolution otherwise; see plan() for when that is decided. A packet of a
 *   link type first declared after a PCAP was chosen cannot be written in
 *   it and is left out, with a note.
 * - Tolerated, with a note each: empty inputs, a torn final record (a host
 *   lost mid-stream), bytes that stop being a capture (the packets before
 *   are kept). A stream that fails (an I/O error, closed early) rejects the
 *   merge instead, since it may be retried; `out` is then left for the
 *   caller to destroy. The input streams are destroyed when the merge stops.
 */
export async function mergeCaptures(inputs: MergeInput[], out: Writable, opts: MergeOptions = {}): Promise<MergeResult> {
  const windowNs = validate(inputs, opts);
  // Stream readers first, all at once: each listens for its stream's errors from here on.
  const readers: Array<CaptureStreamReader | null> = inputs.map((x) => (x.stream ? new CaptureStreamReader(x.stream, x.host) : null));
  try {
    if (!opts.align && inputs.length > 0) {
      const fast = await mergePcaps(inputs, readers, out, opts, windowNs);
      if (fast) return fast;
    }
    // The general path reads a file input as a stream, from its start.
    const all = inputs.map((x, i) => (readers[i] ??= new CaptureStreamReader(createReadStream(x.path!, { highWaterMark: MERGE_READ_CHUNK }), x.host)));
    return await mergeGeneral(inputs, all, out, opts, windowNs);
  } finally {
    for (const r of readers) r?.release();
  }
}

/**
 * The fast path (pcap-runs.ts) when every input is a PCAP of one link type
 * and no clock is shifted: the output is then a PCAP of that link type
 * whatever the read-ahead holds. Null (every byte read given back) otherwise.
 */
async function mergePcaps(inputs: MergeInput[], readers: Array<CaptureStreamReader | null>, out: Writable, opts: MergeOptions, windowNs: number): Promise<MergeResult | null> {
  const dedup = new Map<string, HostDedup>();
  for (const x of inputs) if (!dedup.has(x.host)) dedup.set(x.host, new HostDedup(windowNs));
  const sources = inputs.map((x, i) => new PcapRunSource(i, x.host, readers[i] ?? x.path!, dedup.get(x.host)!, REORDER_PACKETS, REORDER_BYTES));
  const space = mergeSpace(inputs, out);
  if (space) sources.forEach((s, i) => s.useSlot(Buffer.from(space.buffer, i * SPACE_SLOT, SPACE_SLOT)));
  try {
    return await mergeRunSources(inputs, sources, out, opts, windowNs, dedup, space);
  } finally {
    for (const s of sources) s.close();
  }
}

async function mergeRunSources(
  inputs: MergeInput[],
  sources: PcapRunSource[],
  out: Writable,
  opts: MergeOptions,
  windowNs: number,
  dedup: Map<string, HostDedup>,
  space: Uint8Array | null,
): Promise<MergeResult | null> {
  const headers = await Promise.all(sources.map((s) => s.probe()));
  const linkType = headers[0]?.linkType;
  if (!headers.every((h) => h !== null && h.linkType === linkType)) {
    for (let i = 0; i < sources.length; i++) if (headers[i] !== null) sources[i].giveBack();
    return null;
  }
  let snaplen = PCAP_DEFAULT_SNAPLEN;
  for (const h of headers) if (h!.snaplen > snaplen) snaplen = h!.snaplen;
  snaplen = Math.min(snaplen, PCAPNG_MAX_BLOCK_LEN);
  const nanos = headers.some((h) => h!.nanos);
  await Promise.all(sources.map((s) => s.ready()));
  const ctx: RunContext = {
    writer: new PcapWriter(out, { linkType: linkType!, nanos, snaplen }),
    nanos,
    snaplen,
    observe: opts.observe,
    packets: 0,
    bytes: 0,
    duplicates: 0,
    unwritable: 0,
    unwritableWhy: '',
  };
  if (space) ctx.writer.lendBatches(space, sources.length * SPACE_SLOT);
  await mergeRuns(sources, ctx);
  await ctx.writer.end();
  const notes: string[] = [];
  for (const s of sources) notes.push(...sourceNotes({ host: s.host, empty: false, tornBytes: s.tornBytes, formatError: s.formatError, late: s.late, duplicates: s.duplicates }, windowNs));
  if (ctx.unwritable > 0) notes.push(`${ctx.unwritable} packets could not be written and were left out (${ctx.unwritableWhy})`);
  notes.push(...forgottenNotes(inputs, dedup, windowNs));
  return { packets: ctx.packets, bytes: ctx.bytes, duplicates: ctx.duplicates, format: 'pcap', notes };
}

/**
 * Per input, the part of the shared space its buffer may use: what a file
 * input's buffer grows to (twice the lookahead and a read) with room to spare.
 */
const SPACE_SLOT = 8 << 20;
/** Inputs up to which a merge gets a shared space (see mergeSpace()); a fleet's merge of many small inputs does not. */
const SPACE_MAX_INPUTS = 8;

/**
 * One memory for the fast path's file inputs' buffers and the output's
 * batches, when those are files (the bench; a trace whose merged PCAP is
 * written to a file): each record is then copied to the output with one
 * copyWithin() of that memory, where a copy between two buffers took a view
 * made per record (callgrind, 4 hosts interleaved: about a fifth of the
 * merge's instructions per packet, view and copy). Null otherwise. Its
 * pages are only touched as far as the buffers grow in their slots.
 */
function mergeSpace(inputs: MergeInput[], out: Writable): Uint8Array | null {
  // One input is copied in runs of 256 KiB (RUN_BLOCK), a view each: nothing to gain there for the memory.
  if (!(out instanceof WriteStream) || inputs.length < 2 || inputs.length > SPACE_MAX_INPUTS || !inputs.every((x) => x.path !== undefined)) return null;
  return new Uint8Array(inputs.length * SPACE_SLOT + LENDABLE_BATCH_BYTES);
}

/** The notes of hosts whose dedup forgot packets early (exported for the one-host check that stands in for a merge: dispatcher/trace/same-as-file.ts). */
export function forgottenNotes(inputs: MergeInput[], dedup: Map<string, HostDedup>, windowNs: number): string[] {
  const notes: string[] = [];
  for (const host of new Set(inputs.map((x) => x.host))) {
    const d = dedup.get(host);
    if (d && d.forgotten > 0) {
      notes.push(`${host}: ${d.forgotten} packets were forgotten within their ${windowNs} ns window (too many packets in it); some duplicates may remain`);
    }
  }
  return notes;
}

/** Any inputs: PCAPNG, several link types, shifted clocks. Exported for the test that holds the fast path to it. */
export async function mergeGeneral(inputs: MergeInput[], readers: CaptureStreamReader[], out: Writable, opts: MergeOptions, windowNs: number): Promise<MergeResult> {
  const sources = inputs.map((x, i) => new Source(i, x.host, readers[i], opts.align?.get(x.host)?.offsetNs));
  const notes: string[] = [];
  let packets = 0;
  let bytes = 0;
  let duplicates = 0;
  {
    await Promise.all(sources.map((s) => s.fill()));
    const p = plan(sources);
    const output = openOutput(out, p, opts.align);
    // Per host (one host may give several inputs), made at its first packet.
    const dedup = new Map<string, HostDedup>();

    const refused = new Map<number, number>();
    let cutToMicros = 0;
    let unwritable = 0;
    let unwritableWhy = '';
    const heap = new MinHeap<Source>(sourceLess);
    for (const s of sources) if (s.head()) heap.push(s);
    while (heap.size > 0) {
      const s = heap.pop()!;
      const h = s.take();
      if (!s.fillSync()) {
        // Waiting for an input: what is written so far goes out meanwhile.
        if (!output.flush()) await output.waitDrain();
        await s.fill();
      }
      if (s.head()) heap.push(s);
      let ok = true;
      let d = dedup.get(s.host);
      if (!d) dedup.set(s.host, (d = new HostDedup(windowNs)));
      if (d.isDuplicate(h.linkType, h.data, h.tsSec, h.tsNsec)) {
        duplicates++;
        s.duplicates++;
      } else {
        opts.observe?.(s.host, h.linkType, h.data, h.tsSec, h.tsNsec);
        if (!output.accepts(h)) {
          refused.set(h.linkType, (refused.get(h.linkType) ?? 0) + 1);
        } else {
          try {
            // Both writers copy the bytes before returning, so the slot can be reused after.
            ok = output.write(h, s);
            if (output.format === 'pcap' && !p.nanos && h.tsNsec % 1000 !== 0) cutToMicros++;
            packets++;
            bytes += h.data.length;
          } catch (e) {
            // The writers check a packet before queueing anything, so the file stays whole.
            if (!(e instanceof RangeError)) throw e;
            unwritable++;
            unwritableWhy ||= e.message;
          }
        }
      }
      s.release(h);
      if (!ok) await output.waitDrain();
    }
    await output.end();

    for (const s of sources) {
      const r = s.reader;
      notes.push(...sourceNotes({ host: s.host, empty: r.empty, tornBytes: r.tornBytes, formatError: r.formatError, late: s.late, duplicates: s.duplicates }, windowNs));
    }
    for (const [lt, n] of refused) {
      notes.push(`${n} packets of link type ${lt} left out: that link type was first declared after the merged capture had started as a one-link-type PCAP`);
    }
    if (cutToMicros > 0) notes.push(`${cutToMicros} packets had nanosecond timestamps written at microsecond resolution`);
    if (unwritable > 0) notes.push(`${unwritable} packets could not be written and were left out (${unwritableWhy})`);
    notes.push(...forgottenNotes(inputs, dedup, windowNs));
    return { packets, bytes, duplicates, format: output.format, notes };
  }
}

interface SourceState {
  host: string;
  empty: boolean;
  tornBytes: number;
  formatError: Error | null;
  late: number;
  duplicates: number;
}

function sourceNotes(s: SourceState, windowNs: number): string[] {
  const r = s;
  const n: string[] = [];
  if (r.empty) n.push(`${s.host}: the capture is empty (0 bytes)`);
  if (r.tornBytes > 0) n.push(`${s.host}: the capture ends in a torn record (${r.tornBytes} bytes, the host was likely lost mid-stream); left out`);
  if (r.formatError) n.push(`${s.host}: ${r.formatError.message}`);
  if (s.late > 0) {
    n.push(
      `${s.host}: ${s.late} packets came later in the capture than the read-ahead (${REORDER_PACKETS} packets) can sort; written where they were read, out of time order`,
    );
  }
  if (s.duplicates > 0) n.push(`${s.host}: ${s.duplicates} packets captured twice within ${windowNs} ns (two interfaces) were kept once`);
  return n;
}
