import { decodeLink, ETHERTYPE, type LinkLayer } from '../../shared/decode/link';
import { LINKTYPE } from '../../shared/pcap/types';
import { arenaPlace, smallOrSlow } from './fifo-arena';

/**
 * Most packets one host can be asked to remember at once: 1 ms of 4 million
 * packets a second. Beyond it (or beyond DEDUP_RING_BYTES) the oldest are
 * forgotten early, and a duplicate of one of them would be kept.
 */
export const DEDUP_MAX_ENTRIES = 4096;
/** Bytes of remembered packets per host: 1 ms of 2 Gbit/s. */
export const DEDUP_RING_BYTES = 256 * 1024;
/**
 * What a host's memory starts at; it doubles up to the caps above only when
 * the packets of one window need it, so a host that sent a few packets
 * costs a few KiB (a fleet trace merges a thousand of those).
 */
export const DEDUP_INITIAL_ENTRIES = 32;
export const DEDUP_INITIAL_BYTES = 2048;

// What the code per packet reads: an exported const is compiled to a load from this module's exports object.
const MAX_ENTRIES = DEDUP_MAX_ENTRIES;
const RING_BYTES = DEDUP_RING_BYTES;

// decodeLink and networkRange are synchronous, so one scratch each serves every call.
const link: LinkLayer = { offset: 0, ethertype: 0, vlans: [] };
const range = { start: 0, end: 0 };

// Module constants rather than loads from the imports' objects in the per-packet code (see pcap-runs.ts REC_HDR).
const LT_ETHERNET = LINKTYPE.ETHERNET;
const LT_SLL = LINKTYPE.LINUX_SLL;
const LT_SLL2 = LINKTYPE.LINUX_SLL2;
const ET_VLAN = ETHERTYPE.VLAN;
const ET_QINQ = ETHERTYPE.QINQ;
const ET_QINQ_OLD = ETHERTYPE.QINQ_OLD;
const ET_IPV4 = ETHERTYPE.IPV4;
const ET_IPV6 = ETHERTYPE.IPV6;

/** The frame's link header length and where its ethertype is, for the link types with one of fixed length; -1 otherwise. */
function fixedLinkHeader(linkType: number): number {
  return linkType === LT_ETHERNET ? 14 : linkType === LT_SLL ? 16 : linkType === LT_SLL2 ? 20 : -1;
}

/**
 * Where the bytes from the network layer up are in the frame data[from,
 * to): what two captures of one packet on different interfaces of a host
 * share (an `any` capture has a cooked header where `eth0` has an Ethernet
 * one). IP datagrams end at their own length so Ethernet padding does not
 * tell copies apart. A frame whose link layer cannot be decoded is taken
 * whole. Sets `range` (offsets in data).
 */
function networkRange(linkType: number, data: Buffer, from: number, to: number): void {
  range.start = from;
  range.end = to;
  let off: number;
  let ethertype: number;
  // Ethernet and cooked frames without VLAN tags (nearly all) are read here: decodeLink() wants a buffer of the frame and allocates.
  const hdr = fixedLinkHeader(linkType);
  const etAt = linkType === LT_SLL2 ? 0 : hdr - 2;
  const et = hdr > 0 && to - from >= hdr ? (data[from + etAt] << 8) | data[from + etAt + 1] : -1;
  if (et >= 0 && et !== ET_VLAN && et !== ET_QINQ && et !== ET_QINQ_OLD) {
    off = from + hdr;
    ethertype = et;
  } else {
    const frame = from === 0 && to === data.length ? data : data.subarray(from, to);
    if (decodeLink(linkType, frame, link) !== null) return;
    off = from + link.offset;
    ethertype = link.ethertype;
  }
  let end = to;
  if (ethertype === ET_IPV4 && off + 4 <= end && data[off] >> 4 === 4) {
    const total = (data[off + 2] << 8) | data[off + 3];
    if (total >= 20 && off + total < end) end = off + total;
  } else if (ethertype === ET_IPV6 && off + 6 <= end && data[off] >> 4 === 6) {
    const payload = (data[off + 4] << 8) | data[off + 5];
    // 0 is a jumbogram, whose length is in a hop-by-hop option: keep everything.
    if (payload > 0 && off + 40 + payload < end) end = off + 40 + payload;
  }
  range.start = off;
  range.end = end;
}

/** The bucket key of a frame as the dedup makes it (exported for its test: the buckets must spread). */
export function dedupKey(linkType: number, data: Buffer): number {
  networkRange(linkType, data, 0, data.length);
  return sampleHash(data, range.start, range.end);
}

/** The network-layer bytes of a frame (see networkRange), as a view. */
export function networkBytes(linkType: number, data: Buffer): Buffer {
  networkRange(linkType, data, 0, data.length);
  return data.subarray(range.start, range.end);
}

/**
 * Bytes of the network layer the bucket key samples: the first HASH_HEAD
 * (IPv4 with UDP and the RTP header, or TCP's header; IPv6's header and its
 * UDP header with the checksum) and the last HASH_TAIL (the payload's end).
 * Equality is decided by comparing bytes, so a smaller sample can only cost
 * a comparison more on a collision, never change what is a duplicate; each
 * word sampled cost about 25 instructions a packet (callgrind), and the 96
 * bytes sampled before were 24 words.
 */
const HASH_HEAD = 48;
const HASH_TAIL = 8;

/**
 * The bucket is the key's low bits, and the low k bits of a product (the
 * FNV steps) depend only on the low k bits of what was multiplied: without
 * this, a host's bucket came from bits 0-4 of every fourth byte (32
 * buckets), which an RTP stream's packets share (IP version, TTL, the RTP
 * flags), so a window's packets all went to one chain and every lookup and
 * eviction walked it (callgrind: 400 of the merge's instructions per packet
 * with 4 hosts interleaved; at a busy host's 4,096 entries, a walk of
 * thousands). MurmurHash3's finaliser: every input bit reaches every output
 * bit (clock.ts picks its sample by low bits of a hash too).
 */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A bucket key over the length and the sampled bytes, read four at a time (a
 * byte at a time cost a tenth of the merge's CPU); equality is decided by
 * comparing bytes. The words are put together from indexed bytes:
 * readInt32LE() is not inlined and its argument checks cost three times as
 * much (measured on Node 20).
 */
function sampleHash(b: Buffer, start: number, end: number): number {
  let h = 0x811c9dc5 ^ (end - start);
  const head = Math.min(end, start + HASH_HEAD) - 3;
  let i = start;
  for (; i < head; i += 4) h = Math.imul(h ^ (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)), 0x01000193);
  for (i = Math.max(i, end - HASH_TAIL); i < end - 3; i += 4) h = Math.imul(h ^ (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)), 0x01000193);
  for (; i < end; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return fmix32(h) | 0;
}

/**
 * sampleHash() over the same bytes of `v`, a view of the same memory as the
 * buffer (same offsets): the same value, with each word one getInt32()
 * rather than four indexed loads (each with its own checks): a third of the
 * merge's instructions per packet went to the hash that way.
 */
function sampleHashView(v: DataView, start: number, end: number): number {
  let h = 0x811c9dc5 ^ (end - start);
  if (end - start >= HASH_HEAD + HASH_TAIL && HASH_HEAD === 48 && HASH_TAIL === 8) {
    // The loops below for a packet that holds both samples, unrolled: the
    // same 14 words in the same order, without a loop's checks per word
    // (callgrind: 400 instructions a packet looped, the merge's largest
    // single cost with 4 hosts interleaved).
    h = Math.imul(h ^ v.getInt32(start, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 4, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 8, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 12, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 16, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 20, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 24, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 28, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 32, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 36, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 40, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(start + 44, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(end - 8, true), 0x01000193);
    h = Math.imul(h ^ v.getInt32(end - 4, true), 0x01000193);
    return fmix32(h) | 0;
  }
  const head = Math.min(end, start + HASH_HEAD) - 3;
  let i = start;
  for (; i < head; i += 4) h = Math.imul(h ^ v.getInt32(i, true), 0x01000193);
  for (i = Math.max(i, end - HASH_TAIL); i < end - 3; i += 4) h = Math.imul(h ^ v.getInt32(i, true), 0x01000193);
  for (; i < end; i++) h = Math.imul(h ^ v.getUint8(i), 0x01000193);
  return fmix32(h) | 0;
}

/**
 * Remembers the packets one host kept in the last `windowNs` and recognises
 * another capture of one of them: same bytes from the network layer up,
 * timestamps at most windowNs apart. The bytes are copied (the caller may
 * reuse its buffer) into a FIFO arena, and the bookkeeping lives in typed arrays:
 * nothing is allocated per packet, which keeps a long merge from growing
 * the process's heap. Both start small and double (see DEDUP_INITIAL_*)
 * when a window holds more than they do, up to DEDUP_MAX_ENTRIES and
 * DEDUP_RING_BYTES.
 */
export class HostDedup {
  private readonly windowNs: number;
  // Entries in a circular queue of `cap` slots, oldest at `first`; chained
  // per bucket (`cap` buckets) through `next`, newest first. `cap` is a
  // power of two (DEDUP_INITIAL_ENTRIES, doubled), so slots wrap with a mask.
  // A chain is never unlinked when its oldest entries leave: a walk stops at
  // the first link that is not to a live entry older than the one before it
  // (see live()), which is where the chain's live part ends. Eviction is
  // then a move of `first` (callgrind: unlinking was a third of the dedup's
  // bookkeeping per packet with 4 hosts interleaved).
  private cap = 0;
  private mask = 0;
  private sec: Float64Array = EMPTY_F64;
  private nsec: Int32Array = EMPTY_I32;
  private hash: Int32Array = EMPTY_I32;
  private off: Int32Array = EMPTY_I32;
  private len: Int32Array = EMPTY_I32;
  private next: Int32Array = EMPTY_I32;
  private heads: Int32Array = EMPTY_I32;
  /**
   * Per entry, 0 when its bytes are in the arena, else k: they are still in
   * the caller's buffer refBufs[k - 1], at refOff. Its arena slot is
   * reserved all the same, so what is remembered and forgotten is what
   * copying at once would give; only the copy waits, until detach() (see
   * isDuplicateAt's `keep`). A number rather than the buffer per entry: no
   * store of an object (and its write barrier) per packet.
   */
  private refId: Int32Array = EMPTY_I32;
  private refOff: Int32Array = EMPTY_I32;
  /** The callers' buffers entries still refer to (a host's inputs: one each); null where free. */
  private refBufs: Array<Buffer | null> = [];
  /** The last buffer given with `keep`, and its id: the usual case is the same one again. */
  private lastRef: Buffer | null = null;
  private lastRefId = 0;
  private pending = 0;
  private first = 0;
  private count = 0;
  private bytes = smallOrSlow(DEDUP_INITIAL_BYTES);
  /** bytes.length as a small integer: a typed array's length is a 64-bit value in optimised code, converted at each use. */
  private bytesLen = DEDUP_INITIAL_BYTES;
  private byteHead = 0;
  private latestSec = -Infinity;
  private latestNsec = 0;
  /** Packets forgotten before their window passed, or too big to remember. */
  forgotten = 0;

  constructor(windowNs: number) {
    this.windowNs = windowNs;
    this.resize(DEDUP_INITIAL_ENTRIES, DEDUP_INITIAL_BYTES);
  }

  /** True when a copy of this packet was kept within the window; otherwise the packet is remembered as kept. */
  isDuplicate(linkType: number, data: Buffer, sec: number, nsec: number): boolean {
    return this.isDuplicateAt(linkType, data, 0, data.length, sec, nsec, false);
  }

  /**
   * isDuplicate() of the frame data[from, to), without a view of it. With
   * `keep` the caller promises those bytes stay as they are until it calls
   * detach(data), and they are copied only then, if still remembered: the
   * merge's fast path copies a few packets per read instead of every one.
   * `view`, when given, is a DataView of data's bytes (offset 0 is data[0]):
   * the hash reads through it (see sampleHashView).
   */
  isDuplicateAt(linkType: number, data: Buffer, from: number, to: number, sec: number, nsec: number, keep: boolean, view?: DataView): boolean {
    if (sec > this.latestSec || (sec === this.latestSec && nsec > this.latestNsec)) {
      this.latestSec = sec;
      this.latestNsec = nsec;
    }
    this.evict();
    networkRange(linkType, data, from, to);
    const start = range.start;
    const end = range.end;
    const len = end - start;
    const h = view !== undefined ? sampleHashView(view, start, end) : sampleHash(data, start, end);
    const mask = this.mask;
    const first = this.first;
    // Bounded: each step goes to an entry strictly older in the queue.
    for (let e = this.heads[h & mask], age = this.count; e >= 0; e = this.next[e]) {
      const a = (e - first) & mask;
      if (a >= age) break;
      age = a;
      if (this.hash[e] !== h || this.len[e] !== len) continue;
      if (Math.abs((sec - this.sec[e]) * 1e9 + (nsec - this.nsec[e])) > this.windowNs) continue;
      const r = this.refId[e];
      const o = r === 0 ? this.off[e] : this.refOff[e];
      if ((r === 0 ? this.bytes : this.refBufs[r - 1]!).compare(data, start, end, o, o + len) === 0) return true;
    }
    this.remember(sec, nsec, h, data, start, end, keep);
    return false;
  }

  /** Copies what is still remembered of `data` (see isDuplicateAt's `keep`) into the arena: call before changing or dropping it. */
  detach(data: Buffer): void {
    const k = this.refBufs.indexOf(data) + 1;
    if (k === 0) return;
    for (let i = 0; i < this.count && this.pending > 0; i++) {
      const e = (this.first + i) & this.mask;
      if (this.refId[e] !== k) continue;
      const o = this.refOff[e];
      data.copy(this.bytes, this.off[e], o, o + this.len[e]);
      this.refId[e] = 0;
      this.pending--;
    }
    this.refBufs[k - 1] = null;
    if (this.lastRef === data) {
      this.lastRef = null;
      this.lastRefId = 0;
    }
  }

  /** The id entries that refer to `data` carry (see refId). */
  private refIdOf(data: Buffer): number {
    if (this.lastRef === data) return this.lastRefId;
    const bufs = this.refBufs;
    let k = bufs.indexOf(data) + 1;
    if (k === 0) {
      k = bufs.indexOf(null) + 1;
      if (k === 0) k = bufs.push(data);
      else bufs[k - 1] = data;
    }
    this.lastRef = data;
    this.lastRefId = k;
    return k;
  }

  private remember(sec: number, nsec: number, h: number, data: Buffer, start: number, end: number, keep: boolean): void {
    const len = end - start;
    if (len > RING_BYTES / 2) {
      this.forgotten++;
      return;
    }
    if (this.count === this.cap) {
      if (this.cap < MAX_ENTRIES) this.resize(this.cap * 2, this.bytesLen);
      else this.drop(true);
    }
    let o: number;
    // Bounded: each turn doubles the arena (at most log2 of the cap times) or
    // forgets one entry, and an empty arena fits len.
    while ((o = arenaPlace(this.bytesLen, this.byteHead, this.count > 0 ? this.off[this.first] : -1, len)) < 0) {
      if (this.bytesLen < RING_BYTES) this.resize(this.cap, this.bytesLen * 2);
      else this.drop(true);
    }
    this.byteHead = o + Math.max(len, 1);
    const e = (this.first + this.count) & this.mask;
    this.count++;
    if (keep) {
      this.refId[e] = this.refIdOf(data);
      this.refOff[e] = start;
      this.pending++;
    } else {
      this.refId[e] = 0;
      data.copy(this.bytes, o, start, end);
    }
    const bucket = h & this.mask;
    this.sec[e] = sec;
    this.nsec[e] = nsec;
    this.hash[e] = h;
    this.off[e] = o;
    this.len[e] = len;
    this.next[e] = this.heads[bucket];
    this.heads[bucket] = e;
  }

  /**
   * Moves the entries to arrays of `cap` slots, oldest first from slot 0,
   * and rebuilds the chains (oldest first, so each stays newest first). A
   * new `byteCap` moves their bytes to an arena of that size, packed from
   * byte 0. Rare: only when either doubles.
   */
  private resize(cap: number, byteCap: number): void {
    // One allocation for the nine arrays: a host of a few packets is a thousandth of a fleet trace.
    const ab = new ArrayBuffer(cap * (8 + 8 * 4));
    const i32 = (k: number) => new Int32Array(ab, cap * (8 + 4 * k), cap);
    const sec = new Float64Array(ab, 0, cap);
    const nsec = i32(0);
    const hash = i32(1);
    const off = i32(2);
    const len = i32(3);
    const next = i32(4);
    const heads = i32(5).fill(-1);
    const refOff = i32(6);
    const refId = i32(7);
    const pack = byteCap !== this.bytesLen;
    const bytes = pack ? smallOrSlow(byteCap) : this.bytes;
    let o = 0;
    for (let i = 0; i < this.count; i++) {
      const e = (this.first + i) & this.mask;
      const n = this.len[e];
      sec[i] = this.sec[e];
      nsec[i] = this.nsec[e];
      hash[i] = this.hash[e];
      len[i] = n;
      refId[i] = this.refId[e];
      refOff[i] = this.refOff[e];
      if (pack) {
        // A pending entry's bytes are still the caller's: only its slot moves.
        if (refId[i] === 0) this.bytes.copy(bytes, o, this.off[e], this.off[e] + n);
        off[i] = o;
        o += Math.max(n, 1);
      } else off[i] = this.off[e];
      const bucket = hash[i] & (cap - 1);
      next[i] = heads[bucket];
      heads[bucket] = i;
    }
    this.cap = cap;
    this.mask = cap - 1;
    this.sec = sec;
    this.nsec = nsec;
    this.hash = hash;
    this.off = off;
    this.len = len;
    this.next = next;
    this.heads = heads;
    this.refId = refId;
    this.refOff = refOff;
    this.first = 0;
    if (pack) {
      this.bytes = bytes;
      this.bytesLen = byteCap;
      this.byteHead = o;
    }
  }

  /**
   * Forgets packets older than the window before the latest time seen. The
   * queue is in arrival order, which is time order but for inputs that went
   * back in time; those entries just stay a little longer.
   */
  private evict(): void {
    const latestSec = this.latestSec;
    const latestNsec = this.latestNsec;
    const windowNs = this.windowNs;
    // Bounded by count.
    while (this.count > 0) {
      const e = this.first;
      if ((latestSec - this.sec[e]) * 1e9 + (latestNsec - this.nsec[e]) <= windowNs) break;
      this.drop(false);
    }
  }

  /** Forgets the oldest entry; `early` when its window had not passed. Its chain forgets it by itself (see the class). */
  private drop(early: boolean): void {
    const e = this.first;
    if (early) this.forgotten++;
    if (this.refId[e] !== 0) {
      this.refId[e] = 0;
      this.pending--;
    }
    this.first = (e + 1) & this.mask;
    this.count--;
    if (this.count === 0) this.byteHead = 0;
  }
}

const EMPTY_F64 = new Float64Array(0);
const EMPTY_I32 = new Int32Array(0);
