import { closeSync, openSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { PCAP_DEFAULT_SNAPLEN, PCAP_RECORD_HEADER_LEN, pcapCapLenLimit, readPcapEncodedAt, readPcapRecordHeaderAt, readPcapRecordsAt } from '../../shared/pcap/pcap';
import { PcapngWriter } from '../../shared/pcap/pcapng-writer';
import { PcapWriter, type WritableRecord } from '../../shared/pcap/writer';
import type { PacketRecord } from '../../shared/pcap/types';
import { PACKET_ENTRY_LEN } from '../index/format';
import type { OpenedSegment } from '../index/open';

/*
 * A result's packets, streamed. The query marks the packets it selects, a
 * bit a packet of each segment; they are put in time order here, a few
 * segments at a time (a k-way merge of the segments overlapping in time), and
 * cut to the query's limits as they go. A broad query selects millions of
 * packets: the list of them in time order is never held whole, so the agent's
 * memory does not grow with the ring.
 */

/** One packet of a result: where it is and when it was captured. */
export interface PacketRef {
  seg: number;
  ord: number;
  offset: number;
  sec: number;
  nsec: number;
  /** Captured length. */
  capLen: number;
}

export interface RefColumns {
  seg: Uint32Array;
  ord: Uint32Array;
  offset: Uint32Array;
  sec: Uint32Array;
  nsec: Uint32Array;
  capLen: Uint32Array;
}

export function refColumns(n: number): RefColumns {
  return { seg: new Uint32Array(n), ord: new Uint32Array(n), offset: new Uint32Array(n), sec: new Uint32Array(n), nsec: new Uint32Array(n), capLen: new Uint32Array(n) };
}

function sliceColumns(c: RefColumns, from: number, to: number): RefColumns {
  return { seg: c.seg.subarray(from, to), ord: c.ord.subarray(from, to), offset: c.offset.subarray(from, to), sec: c.sec.subarray(from, to), nsec: c.nsec.subarray(from, to), capLen: c.capLen.subarray(from, to) };
}

/** Packets in time order, packed in columns: 24 bytes a packet, where an object each took about 80. */
export class PacketRefs {
  constructor(private readonly c: RefColumns, readonly length: number) {}

  seg(i: number): number {
    return this.c.seg[i];
  }

  offset(i: number): number {
    return this.c.offset[i];
  }

  capLen(i: number): number {
    return this.c.capLen[i];
  }

  at(i: number): PacketRef {
    const c = this.c;
    return { seg: c.seg[i], ord: c.ord[i], offset: c.offset[i], sec: c.sec[i], nsec: c.nsec[i], capLen: c.capLen[i] };
  }

  toArray(): PacketRef[] {
    return Array.from({ length: this.length }, (_, i) => this.at(i));
  }

  /** The first n (n <= length); the columns are shared, not copied. */
  head(n: number): PacketRefs {
    return new PacketRefs(sliceColumns(this.c, 0, n), n);
  }
}

/** The packets a query selected: per segment, a bit a packet (ordinal), set when the packet is in the result. */
export class PacketMarks {
  private readonly bits: (Uint8Array | undefined)[] = [];
  private readonly sizes: (number | undefined)[] = [];
  /** Marked packets per segment. */
  readonly counts: number[] = [];
  total = 0;

  constructor(private readonly segments: OpenedSegment[]) {}

  /** Marks packet `ord` of segment `seg`; false when it was marked already. */
  mark(seg: number, ord: number): boolean {
    // Sized by the packets the index had at the segment's first mark, as every later mark is checked against.
    const n = (this.sizes[seg] ??= this.segments[seg].index.packetCount);
    if (ord >= n) throw new Error(`${this.segments[seg].segment.indexPath}: a message names packet ${ord} of ${n}; the index is inconsistent, delete it to have it rebuilt`);
    const b = (this.bits[seg] ??= new Uint8Array((n + 7) >>> 3));
    const bit = 1 << (ord & 7);
    if (b[ord >>> 3] & bit) return false;
    b[ord >>> 3] |= bit;
    this.counts[seg] = (this.counts[seg] ?? 0) + 1;
    this.total++;
    return true;
  }

  /** The segments with marked packets, ascending. */
  marked(): number[] {
    const out: number[] = [];
    this.counts.forEach((n, si) => n > 0 && out.push(si));
    return out;
  }

  /** The marked ordinals of a segment, ascending. */
  ordinals(seg: number): Uint32Array {
    const b = this.bits[seg];
    const out = new Uint32Array(this.counts[seg] ?? 0);
    if (!b) return out;
    let k = 0;
    for (let i = 0; i < b.length; i++) {
      let v = b[i];
      if (v === 0) continue;
      for (let j = 0; v !== 0; j++, v >>>= 1) if (v & 1) out[k++] = i * 8 + j;
    }
    return out;
  }
}

/**
 * The index's packet table holds captured lengths in 16 bits, 0 above
 * 65535; since the snap length is 262144 a frame can be longer (a 64 KiB
 * datagram on lo). Their real length is read from the PCAP record header:
 * such frames are rare, so one 16-byte read each costs less than widening
 * the table and rebuilding every index already on disk. A segment deleted
 * by rotation meanwhile counts at the most a record can hold, so
 * `--max-bytes` stays a bound.
 */
class BigCapLens {
  private fd: number | null | undefined;

  constructor(private readonly s: OpenedSegment) {}

  /** The captured length of the record at `offset`, whose entry says 0. */
  of(offset: number): number {
    const s = this.s;
    if (this.fd === undefined) {
      try {
        this.fd = openSync(s.segment.path, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        this.fd = null;
      }
    }
    const rec = this.fd === null ? null : readPcapRecordHeaderAt(this.fd, offset, s.header, s.segment.path);
    // A deleted segment's header may never have been read (it is read when first needed): the largest snap length then.
    return rec !== null ? rec.capLen : this.fd !== null ? pcapCapLenLimit(s.header) : PCAP_DEFAULT_SNAPLEN;
  }

  close(): void {
    if (typeof this.fd === 'number') closeSync(this.fd);
  }
}

/** Marked packets' entries read at a time (into one buffer) by the passes over a segment's marks. */
const ENTRIES_AT_ONCE = 8192;
let entriesScratch: Buffer | null = null;

/**
 * The entries of segment si's marked packets, a slice of ENTRIES_AT_ONCE at
 * a time, into a buffer that is overwritten by the next slice: a broad
 * query marks most of a segment, and one Buffer of them all per segment was
 * garbage that grew with the ring.
 */
function* markedEntries(segments: OpenedSegment[], ords: Uint32Array, si: number): Generator<{ ords: Uint32Array; entries: Buffer }> {
  const ix = segments[si].index;
  const into = entriesScratch ?? Buffer.allocUnsafeSlow(ENTRIES_AT_ONCE * PACKET_ENTRY_LEN);
  entriesScratch = null;
  try {
    for (let from = 0; from < ords.length; from += ENTRIES_AT_ONCE) {
      const part = ords.subarray(from, Math.min(ords.length, from + ENTRIES_AT_ONCE));
      yield { ords: part, entries: ix.packetEntries(part, into) };
    }
  } finally {
    entriesScratch = into;
  }
}

/**
 * A view of packet entries: their fields read as getUint32() on it, which
 * optimised code inlines, where `t.readUInt32LE` is a property load through
 * Buffer.prototype (a dictionary: a generic load per call) and a call; three
 * or four a marked packet, twice per packet of a broad result (its span, then
 * its refs).
 */
function entryView(t: Buffer): DataView {
  return new DataView(t.buffer, t.byteOffset, t.length);
}

/** Fills the columns from `k` with packets `ords` of segment `si`, their entries `t` as packetEntries gave them; the next k. */
export function fillRefs(c: RefColumns, k: number, si: number, ords: Uint32Array, t: Buffer): number {
  const v = entryView(t);
  for (let n = 0; n < ords.length; n++, k++) {
    const p = n * PACKET_ENTRY_LEN;
    c.seg[k] = si;
    c.ord[k] = ords[n];
    c.offset[k] = v.getUint32(p, true);
    c.sec[k] = v.getUint32(p + 4, true);
    c.nsec[k] = v.getUint32(p + 8, true);
    c.capLen[k] = v.getUint16(p + 26, true);
  }
  return k;
}

/**
 * A segment's marked packets in time order, capture order breaking ties (a
 * segment of one interface is in order already and is kept as it is).
 */
function segmentRefs(segments: OpenedSegment[], marks: PacketMarks, si: number, pool?: ColumnPool): RefColumns {
  const ords = marks.ordinals(si);
  const n = ords.length;
  const c = pool ? pool.take(n) : refColumns(n);
  let k = 0;
  for (const part of markedEntries(segments, ords, si)) k = fillRefs(c, k, si, part.ords, part.entries);
  const big = new BigCapLens(segments[si]);
  try {
    for (let i = 0; i < n; i++) if (c.capLen[i] === 0) c.capLen[i] = big.of(c.offset[i]);
  } finally {
    big.close();
  }
  if (!pool) return timeOrdered(c, n);
  const ordered = timeOrdered(c, n, (k) => pool.take(k));
  if (ordered !== c) pool.give(c);
  return ordered;
}

/**
 * Columns the merge is done with, for the next segments to be read into:
 * 24 bytes a marked packet, made afresh per segment they were garbage that
 * grew with the ring. A set taken may be longer than asked for.
 */
class ColumnPool {
  private readonly free: RefColumns[] = [];

  take(n: number): RefColumns {
    const i = this.free.findIndex((c) => c.seg.length >= n);
    return i >= 0 ? this.free.splice(i, 1)[0] : refColumns(n);
  }

  give(c: RefColumns): void {
    // A few: as many as segments overlap in time, usually two.
    if (this.free.length < 4) this.free.push(c);
  }
}

/**
 * Segment si's span of marked packets in time and their PCAP bytes, read
 * through the entries without listing them (what segmentRefs' first and last
 * and the sum of its lengths give).
 */
function segmentSpan(segments: OpenedSegment[], marks: PacketMarks, si: number): { span: SegmentSpan; bytes: number } {
  const span: SegmentSpan = { si, minSec: Infinity, minNsec: Infinity, maxSec: -Infinity, maxNsec: -Infinity };
  let bytes = 0;
  const big = new BigCapLens(segments[si]);
  try {
    for (const { ords, entries: t } of markedEntries(segments, marks.ordinals(si), si)) {
      const v = entryView(t);
      for (let k = 0; k < ords.length; k++) {
        const p = k * PACKET_ENTRY_LEN;
        const sec = v.getUint32(p + 4, true);
        const nsec = v.getUint32(p + 8, true);
        if (sec < span.minSec || (sec === span.minSec && nsec < span.minNsec)) [span.minSec, span.minNsec] = [sec, nsec];
        if (sec > span.maxSec || (sec === span.maxSec && nsec > span.maxNsec)) [span.maxSec, span.maxNsec] = [sec, nsec];
        const capLen = v.getUint16(p + 26, true);
        bytes += 16 + (capLen !== 0 ? capLen : big.of(v.getUint32(p, true)));
      }
    }
  } finally {
    big.close();
  }
  return { span, bytes };
}

/**
 * The first n of the columns in time order; the fill order (capture order,
 * within a segment) breaks ties. Returned as they are when in order, else
 * in columns from `alloc`.
 */
export function timeOrdered(c: RefColumns, n: number, alloc: (n: number) => RefColumns = refColumns): RefColumns {
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = c.sec[i - 1] < c.sec[i] || (c.sec[i - 1] === c.sec[i] && c.nsec[i - 1] <= c.nsec[i]);
  if (sorted) return c;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => c.sec[a] - c.sec[b] || c.nsec[a] - c.nsec[b] || a - b);
  const out = alloc(n);
  for (let i = 0; i < n; i++) {
    const j = order[i];
    out.seg[i] = c.seg[j];
    out.ord[i] = c.ord[j];
    out.offset[i] = c.offset[j];
    out.sec[i] = c.sec[j];
    out.nsec[i] = c.nsec[j];
    out.capLen[i] = c.capLen[j];
  }
  return out;
}

/** A segment's span of marked packets in time, counted from the merge's first pass. */
interface SegmentSpan {
  si: number;
  minSec: number;
  minNsec: number;
  maxSec: number;
  maxNsec: number;
}

/** How a result's packets are put out: what the first pass over the marks found. */
export interface ResultPlan {
  marks: PacketMarks;
  /** Segments with marked packets, by their earliest marked packet (segment order breaking ties). */
  spans: SegmentSpan[];
  /** Packets put out: the marked ones, in time order, up to the query's limits. */
  packets: number;
  /** Bytes of those PCAP records (16-byte headers included). */
  bytes: number;
  truncated: boolean;
  /** The segments those packets are in, in the order of their first packet. */
  used: number[];
}

const BATCH = 65_536;

/**
 * The marked packets in time order (segment, then ordinal, breaking ties) as
 * batches, which share their columns with the segments' lists: use one before
 * taking the next. A k-way merge of the segments whose spans overlap the
 * packet being put out: each is read (its packet entries, 24 bytes a marked
 * packet) when the merge reaches its first packet, and let go after its last.
 */
export function* orderedRefs(segments: OpenedSegment[], spans: SegmentSpan[], marks: PacketMarks): Generator<PacketRefs> {
  const active: Array<{ c: RefColumns; i: number; n: number; span: SegmentSpan }> = [];
  let next = 0;
  const tsLe = (aSec: number, aNsec: number, bSec: number, bNsec: number) => aSec < bSec || (aSec === bSec && aNsec <= bNsec);
  // No bigger than the result: 1.5 MiB of columns zeroed for a call's few packets was 4% of a small `query`'s whole process.
  const batch = Math.max(1, Math.min(BATCH, marks.total));
  const out = refColumns(batch);
  let filled = 0;
  const pool = new ColumnPool();
  for (;;) {
    // The head that comes first: earliest time, then lowest segment number (ordinals ascend within a segment).
    let best = -1;
    for (let a = 0; a < active.length; a++) {
      const x = active[a];
      if (best < 0) {
        best = a;
        continue;
      }
      const b = active[best];
      const xs = x.c.sec[x.i];
      const bs = b.c.sec[b.i];
      if (xs < bs || (xs === bs && (x.c.nsec[x.i] < b.c.nsec[b.i] || (x.c.nsec[x.i] === b.c.nsec[b.i] && x.span.si < b.span.si)))) best = a;
    }
    // A segment whose first marked packet is no later than that head joins the merge first.
    if (next < spans.length) {
      const sp = spans[next];
      const head = best < 0 ? null : active[best];
      if (!head || tsLe(sp.minSec, sp.minNsec, head.c.sec[head.i], head.c.nsec[head.i])) {
        const c = segmentRefs(segments, marks, sp.si, pool);
        active.push({ c, i: 0, n: marks.counts[sp.si], span: sp });
        next++;
        continue;
      }
    }
    if (best < 0) break;
    const h = active[best];
    // Alone until its last packet: the rest of it goes out as it is, without copying.
    const alone = active.length === 1 && (next >= spans.length || !tsLe(spans[next].minSec, spans[next].minNsec, h.span.maxSec, h.span.maxNsec));
    if (alone) {
      if (filled > 0) {
        yield new PacketRefs(out, filled);
        filled = 0;
      }
      for (let i = h.i; i < h.n; i += BATCH) yield new PacketRefs(sliceColumns(h.c, i, Math.min(h.n, i + BATCH)), Math.min(h.n, i + BATCH) - i);
      // Its last batch is used: the caller asked for the next.
      active.length = 0;
      pool.give(h.c);
      continue;
    }
    const i = h.i;
    out.seg[filled] = h.c.seg[i];
    out.ord[filled] = h.c.ord[i];
    out.offset[filled] = h.c.offset[i];
    out.sec[filled] = h.c.sec[i];
    out.nsec[filled] = h.c.nsec[i];
    out.capLen[filled] = h.c.capLen[i];
    filled++;
    if (++h.i === h.n) pool.give(active.splice(best, 1)[0].c);
    if (filled === batch) {
      yield new PacketRefs(out, filled);
      filled = 0;
    }
  }
  if (filled > 0) yield new PacketRefs(out, filled);
}

/**
 * The first pass over a result's marks: each segment's span, then (only when
 * a limit cuts the result, or its packets mix link types) the merge, for
 * where the cut falls and the order the segments are first used in. Yields
 * after each segment or batch, for the query's caller.
 */
export function* planResult(segments: OpenedSegment[], marks: PacketMarks, maxPackets: number | null, maxBytes: number | null): Generator<void, ResultPlan, void> {
  const spans: SegmentSpan[] = [];
  let bytes = 0;
  const linkTypes = new Set<number>();
  for (const si of marks.marked()) {
    const s = segmentSpan(segments, marks, si);
    bytes += s.bytes;
    spans.push(s.span);
    linkTypes.add(segments[si].header.linkType);
    yield;
  }
  spans.sort((a, b) => a.minSec - b.minSec || a.minNsec - b.minNsec || a.si - b.si);
  const total = marks.total;
  const cut = (maxPackets !== null && total > maxPackets) || (maxBytes !== null && bytes > maxBytes);
  if (!cut && linkTypes.size <= 1) {
    return { marks, spans, packets: total, bytes, truncated: false, used: spans.map((s) => s.si) };
  }
  let packets = 0;
  bytes = 0;
  let truncated = false;
  const used: number[] = [];
  const seen = new Set<number>();
  merge: for (const batch of orderedRefs(segments, spans, marks)) {
    for (let i = 0; i < batch.length; i++) {
      const b = 16 + batch.capLen(i);
      if ((maxPackets !== null && packets >= maxPackets) || (maxBytes !== null && bytes + b > maxBytes)) {
        truncated = true;
        break merge;
      }
      packets++;
      bytes += b;
      const si = batch.seg(i);
      if (!seen.has(si)) {
        seen.add(si);
        used.push(si);
      }
    }
    yield;
  }
  return { marks, spans, packets, bytes, truncated, used };
}

/** The result's packets in order, up to its cut: batches as orderedRefs gives them. */
export function* plannedRefs(segments: OpenedSegment[], plan: ResultPlan): Generator<PacketRefs> {
  let left = plan.packets;
  if (left === 0) return;
  for (const batch of orderedRefs(segments, plan.spans, plan.marks)) {
    if (batch.length >= left) {
      yield batch.head(left);
      return;
    }
    left -= batch.length;
    yield batch;
  }
}

/** Every packet of a result in one list: for tests and small results only (a broad query's would be ring-sized). */
export function collectRefs(segments: OpenedSegment[], plan: ResultPlan): PacketRefs {
  const all = refColumns(plan.packets);
  let k = 0;
  for (const b of plannedRefs(segments, plan)) {
    for (let i = 0; i < b.length; i++, k++) {
      const r = b.at(i);
      all.seg[k] = r.seg;
      all.ord[k] = r.ord;
      all.offset[k] = r.offset;
      all.sec[k] = r.sec;
      all.nsec[k] = r.nsec;
      all.capLen[k] = r.capLen;
    }
  }
  return new PacketRefs(all, k);
}

/**
 * The records of `refs`, in their order; a run of refs from one segment is
 * read with coalesced preads. The caller closes the descriptors left in `fds`.
 */
export function* resultRecords(refs: PacketRefs, segments: OpenedSegment[], fds: Map<number, number>, views = false, scratch?: { window: Buffer }): Generator<{ rec: PacketRecord; linkType: number; ref: number }> {
  for (const { si, fd, offsets, first } of segmentRuns(refs, segments, fds)) {
    const header = segments[si].header;
    // A record cut off at the end of its segment is skipped by the reader: match by offset, not by count.
    let k = first;
    for (const rec of readPcapRecordsAt(fd, offsets, header, undefined, views, scratch)) {
      while (k < first + offsets.length && refs.offset(k) !== rec.fileOffset) k++;
      yield { rec, linkType: header.linkType, ref: k };
    }
  }
}

/** The runs of `refs` with ascending offsets in one segment, its descriptor opened (kept in `fds`). */
function* segmentRuns(refs: PacketRefs, segments: OpenedSegment[], fds: Map<number, number>): Generator<{ si: number; fd: number; offsets: number[]; first: number }> {
  let i = 0;
  while (i < refs.length) {
    const si = refs.seg(i);
    let j = i;
    while (j < refs.length && refs.seg(j) === si && (j === i || refs.offset(j) > refs.offset(j - 1))) j++;
    let fd = fds.get(si);
    if (fd === undefined) {
      try {
        fd = openSync(segments[si].segment.path, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new Error(`segment ${segments[si].segment.path} was deleted by ring rotation while the query ran; query a narrower or more recent window, or give the ring more room`);
        }
        throw e;
      }
      fds.set(si, fd);
    }
    const offsets = new Array<number>(j - i);
    for (let n = 0; n < offsets.length; n++) offsets[n] = refs.offset(i + n);
    yield { si, fd, offsets, first: i };
    i = j;
  }
}

/**
 * Writes a result's packets as one capture: original bytes and timestamps,
 * nanosecond resolution when any source segment has it. A classic PCAP when
 * the packets have one link type; PCAPNG, with one interface per link type,
 * when they mix (segments of `any` and `eth0`, say), since a PCAP holds one.
 * Streams with backpressure, a batch of packets at a time.
 */
export async function writePlannedPcap(segments: OpenedSegment[], plan: ResultPlan, out: Writable): Promise<{ packets: number; bytes: number; format: 'pcap' | 'pcapng' }> {
  // In the order of first use, so the interfaces come in time order too.
  const linkTypes = [...new Set(plan.used.map((si) => segments[si].header.linkType))];
  const nanos = plan.used.some((si) => segments[si].header.nanos) || (plan.used.length === 0 && segments.some((s) => s.header.nanos));
  let w: PcapWriter | PcapngWriter;
  let write: (rec: WritableRecord, linkType: number) => boolean;
  if (linkTypes.length > 1) {
    const ng = new PcapngWriter(out);
    // Every interface up front: a reader of the head (the dispatcher's merge) sees all of them.
    for (const lt of linkTypes) ng.interfaceFor(lt, nanos);
    write = (rec, linkType) => ng.write({ ...rec, linkType }, nanos);
    w = ng;
  } else {
    const pcap = new PcapWriter(out, { linkType: linkTypes[0] ?? segments[0]?.header.linkType ?? 1, nanos });
    write = (rec) => pcap.write(rec);
    w = pcap;
  }
  const fds = new Map<number, number>();
  let packets = 0;
  let bytes = 0;
  // One read window (up to 1 MiB) for the whole result, where each run of a segment's records made its own.
  const scratch = { window: Buffer.alloc(0) };
  try {
    for (const batch of plannedRefs(segments, plan)) {
      if (w instanceof PcapWriter) {
        const pcap = w;
        for (const { si, fd, offsets } of segmentRuns(batch, segments, fds)) {
          const header = segments[si].header;
          if (!header.littleEndian || header.nanos !== nanos) {
            for (const rec of readPcapRecordsAt(fd, offsets, header, undefined, true, scratch)) {
              if (!write(rec, header.linkType)) await w.waitDrain();
              packets++;
              bytes += rec.capLen;
            }
            continue;
          }
          // The segment's records are already this file's encoding: runs of them are copied whole, each
          // record's header checked by the reader (a per-packet object, view and copy were most of the
          // agent's CPU serving a big result).
          for (const item of readPcapEncodedAt(fd, offsets, header, PCAP_DEFAULT_SNAPLEN, scratch)) {
            let more: boolean;
            if ('buf' in item) {
              more = pcap.writeEncodedRecords(item.buf, item.start, item.end, item.records);
              packets += item.records;
              bytes += item.end - item.start - item.records * PCAP_RECORD_HEADER_LEN;
            } else {
              more = pcap.write(item);
              packets++;
              bytes += item.capLen;
            }
            if (!more) await w.waitDrain();
          }
        }
        continue;
      }
      // Views of the read window: each record is copied into the writer's batch before the next is read.
      for (const { rec, linkType } of resultRecords(batch, segments, fds, true, scratch)) {
        if (!write({ tsSec: rec.tsSec, tsNsec: rec.tsNsec, origLen: rec.origLen, data: rec.data }, linkType)) await w.waitDrain();
        packets++;
        bytes += rec.capLen;
      }
    }
    await w.end();
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return { packets, bytes, format: linkTypes.length > 1 ? 'pcapng' : 'pcap' };
}
