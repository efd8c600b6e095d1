import type { DecodedPacket } from './types';

export interface FragmentReassemblerOptions {
  /** Seconds (packet time) a datagram may wait for its missing fragments. Default 30. */
  timeoutSec?: number;
  /** Datagrams pending at once; the oldest is dropped beyond it. Default 4096. */
  maxPending?: number;
  /** Fragment bytes held over all pending datagrams; the oldest are dropped beyond it. Default 32 MiB. */
  maxPendingBytes?: number;
  /** Largest IP payload a datagram may reassemble to. Default 65535. */
  maxDatagramBytes?: number;
  /** Distinct byte ranges one datagram may be made of. Default 1024. */
  maxPieces?: number;
}

export interface ReassembledDatagram {
  /** The whole IP payload: for IPv4 the transport segment, for IPv6 the fragmentable part (extension headers may precede the transport). */
  datagram: Buffer;
  /** Ordinals of every fragment that carried bytes of it (duplicates included), ascending, distinct. */
  packets: number[];
  /** The protocol the fragments announced (IPv6: the fragment header's next header). */
  proto: number;
  /**
   * The capture cut a fragment of it: `datagram` is what was captured from
   * the start up to the first missing byte, not the whole datagram.
   */
  truncated: boolean;
}

export interface FragmentCounters {
  fragments: number;
  reassembled: number;
  expired: number;
  evicted: number;
  /** Datagrams dropped as larger than maxDatagramBytes, with too many pieces, or with conflicting ends. */
  dropped: number;
}

interface Piece {
  start: number;
  end: number;
  /**
   * null: a gap, bytes a fragment carried that the capture cut off. It
   * counts as covered (the datagram need not wait for them) and holds no memory.
   */
  data: Buffer | null;
}

interface Pending {
  key: string;
  firstTs: number;
  /** Length of the datagram once its last fragment was seen, else -1. */
  total: number;
  /**
   * Disjoint, sorted by start: overlapping bytes are kept from whichever
   * fragment came first, though captured bytes replace a gap.
   */
  pieces: Piece[];
  covered: number;
  /** Gap pieces among them. */
  gaps: number;
  packets: number[];
}

/**
 * Rebuilds fragmented IPv4/IPv6 datagrams. Fragments are keyed by (version,
 * src, dst, protocol, id); they may come in any order, overlap or repeat.
 * A fragment the capture cut (snap length) counts as arrived: the bytes it
 * lost are a gap, and its datagram is given as captured up to its first gap,
 * marked truncated, since its start (transport header, SIP headers) is what
 * indexing needs. Memory is bounded by the pending caps (gaps hold no bytes);
 * time by packet timestamps only.
 */
export class FragmentReassembler {
  readonly counters: FragmentCounters = { fragments: 0, reassembled: 0, expired: 0, evicted: 0, dropped: 0 };
  private readonly timeoutSec: number;
  private readonly maxPending: number;
  private readonly maxPendingBytes: number;
  private readonly maxDatagramBytes: number;
  private readonly maxPieces: number;
  /** Insertion order is age order, so the oldest datagram is always first. */
  private readonly pendingMap = new Map<string, Pending>();
  private pendingBytes = 0;
  private nextSweepTs = -Infinity;

  constructor(opts: FragmentReassemblerOptions = {}) {
    this.timeoutSec = opts.timeoutSec ?? 30;
    this.maxPending = Math.max(1, opts.maxPending ?? 4096);
    this.maxPendingBytes = opts.maxPendingBytes ?? 32 * 1024 * 1024;
    this.maxDatagramBytes = opts.maxDatagramBytes ?? 65535;
    this.maxPieces = opts.maxPieces ?? 1024;
  }

  /** Datagrams waiting for fragments right now. */
  get pending(): number {
    return this.pendingMap.size;
  }

  /** Lets packet time advance without a fragment, so abandoned datagrams expire in a capture that has no more fragments. */
  expire(tsSec: number): void {
    if (tsSec >= this.nextSweepTs && this.pendingMap.size > 0) this.sweep(tsSec);
  }

  /**
   * Takes one fragment (a packet whose `fragment` is set; others return null).
   * Returns the datagram when this fragment completes it, else null. The
   * fragment's bytes are copied, so `pkt.payload` may be reused afterwards.
   * A cut fragment (`pkt.truncated`) covers the length its IP header gives.
   */
  push(ordinal: number, tsSec: number, pkt: DecodedPacket): ReassembledDatagram | null {
    const fi = pkt.fragment;
    if (fi === null) return null;
    this.counters.fragments++;
    if (tsSec >= this.nextSweepTs) this.sweep(tsSec);
    const key = pkt.ipVersion + ' ' + pkt.src + ' ' + pkt.dst + ' ' + fi.proto + ' ' + fi.id;
    let p = this.pendingMap.get(key);
    if (p !== undefined && tsSec - p.firstTs > this.timeoutSec) {
      this.remove(p);
      this.counters.expired++;
      p = undefined;
    }
    const start = fi.offset;
    const held = start + pkt.payload.length;
    const end = pkt.truncated ? Math.max(held, start + fi.length) : held;
    if (end > this.maxDatagramBytes) {
      if (p !== undefined) this.remove(p);
      this.counters.dropped++;
      return null;
    }
    if (p === undefined) {
      p = { key, firstTs: tsSec, total: -1, pieces: [], covered: 0, gaps: 0, packets: [] };
      this.pendingMap.set(key, p);
      this.makeRoom(p);
    }
    p.packets.push(ordinal);
    if (!fi.more) {
      if (p.total >= 0 && p.total !== end) {
        this.remove(p);
        this.counters.dropped++;
        return null;
      }
      if (p.total < 0) {
        p.total = end;
        this.clip(p, end);
      }
    }
    const limit = p.total >= 0 ? Math.min(end, p.total) : end;
    const heldLimit = Math.min(held, limit);
    if (p.gaps > 0 && start < heldLimit) this.fillGaps(p, start, heldLimit);
    if (!this.insert(p, start, heldLimit, pkt.payload) || (heldLimit < limit && !this.insert(p, heldLimit, limit, null))) {
      this.remove(p);
      this.counters.dropped++;
      return null;
    }
    if (this.pendingBytes > this.maxPendingBytes) this.makeRoom(p);
    if (p.total < 0 || p.covered !== p.total) return null;

    // Covered from 0 to total, so the pieces before the first gap are contiguous.
    const firstGap = p.gaps > 0 ? p.pieces.find((pc) => pc.data === null)!.start : p.total;
    const datagram = Buffer.allocUnsafe(firstGap);
    for (const pc of p.pieces) {
      if (pc.start >= firstGap) break;
      pc.data!.copy(datagram, pc.start);
    }
    this.remove(p);
    this.counters.reassembled++;
    const packets = p.packets;
    packets.sort((a, b) => a - b);
    let n = 0;
    for (let i = 0; i < packets.length; i++) if (i === 0 || packets[i] !== packets[n - 1]) packets[n++] = packets[i];
    packets.length = n;
    return { datagram, packets, proto: fi.proto, truncated: p.gaps > 0 };
  }

  /**
   * Adds the parts of [start, end) no earlier fragment covered: bytes of
   * `data` (which begins at `start`), or a gap when data is null. False when
   * the datagram has too many pieces.
   */
  private insert(p: Pending, start: number, end: number, data: Buffer | null): boolean {
    const base = start;
    const pieces = p.pieces;
    let i = 0;
    while (start < end) {
      while (i < pieces.length && pieces[i].end <= start) i++;
      let gapEnd = end;
      if (i < pieces.length) {
        const pc = pieces[i];
        if (pc.start <= start) {
          start = pc.end;
          continue;
        }
        gapEnd = Math.min(end, pc.start);
      }
      if (pieces.length >= this.maxPieces) return false;
      // Copied: the packet buffer belongs to the capture reader.
      const bytes = data === null ? null : Buffer.from(data.subarray(start - base, gapEnd - base));
      pieces.splice(i, 0, { start, end: gapEnd, data: bytes });
      i++;
      p.covered += gapEnd - start;
      if (bytes === null) p.gaps++;
      else this.pendingBytes += gapEnd - start;
      start = gapEnd;
    }
    return true;
  }

  /** Uncovers the gaps within [start, end), so that captured bytes of another fragment (a retransmission, an overlap) take their place. */
  private fillGaps(p: Pending, start: number, end: number): void {
    const kept: Piece[] = [];
    for (const pc of p.pieces) {
      if (pc.data !== null || pc.end <= start || pc.start >= end) {
        kept.push(pc);
        continue;
      }
      p.gaps--;
      p.covered -= Math.min(pc.end, end) - Math.max(pc.start, start);
      if (pc.start < start) {
        kept.push({ start: pc.start, end: start, data: null });
        p.gaps++;
      }
      if (pc.end > end) {
        kept.push({ start: end, end: pc.end, data: null });
        p.gaps++;
      }
    }
    p.pieces = kept;
  }

  /** Drops bytes past the datagram's end, which fragments sent before the last one may claim. */
  private clip(p: Pending, total: number): void {
    const pieces = p.pieces;
    while (pieces.length > 0 && pieces[pieces.length - 1].end > total) {
      const pc = pieces[pieces.length - 1];
      if (pc.start >= total) {
        pieces.pop();
        p.covered -= pc.end - pc.start;
        if (pc.data === null) p.gaps--;
        else this.pendingBytes -= pc.end - pc.start;
      } else {
        p.covered -= pc.end - total;
        if (pc.data !== null) {
          this.pendingBytes -= pc.end - total;
          pc.data = pc.data.subarray(0, total - pc.start);
        }
        pc.end = total;
      }
    }
  }

  private remove(p: Pending): void {
    if (this.pendingMap.get(p.key) !== p) return;
    this.pendingMap.delete(p.key);
    for (const pc of p.pieces) if (pc.data !== null) this.pendingBytes -= pc.end - pc.start;
  }

  /** Evicts the oldest datagrams other than `keep` until within the caps. */
  private makeRoom(keep: Pending): void {
    for (const q of this.pendingMap.values()) {
      if (this.pendingMap.size <= this.maxPending && this.pendingBytes <= this.maxPendingBytes) return;
      if (q === keep) continue;
      this.remove(q);
      this.counters.evicted++;
    }
  }

  /**
   * Expires datagrams older than the timeout from the front of the age order.
   * Run at most once per second of packet time; a datagram stuck behind a
   * younger one (timestamps going backwards) still expires on its next lookup
   * or is evicted by the caps.
   */
  private sweep(tsSec: number): void {
    this.nextSweepTs = tsSec + 1;
    for (const q of this.pendingMap.values()) {
      if (tsSec - q.firstTs <= this.timeoutSec) break;
      this.remove(q);
      this.counters.expired++;
    }
  }
}
