import { sipFrame, sipStartLikely, skipCrlf } from '../sip/framing';
import type { TcpInfo, TransportMessage } from './types';

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;

/** Not known to be SIP: wait for a segment that starts with a SIP start line. */
const MODE_RESYNC = 0;
/** Following the byte stream from nextSeq. */
const MODE_SIP = 1;
/** Seen from its SYN and its first bytes were not SIP: ignored until it ends or expires. */
const MODE_NOT_SIP = 2;

export interface TcpSipReassemblerOptions {
  /** Bytes one flow may hold (in-order partial message plus out-of-order segments); also the largest message. Default 1 MiB. */
  maxFlowBytes?: number;
  /** Out-of-order segments one flow may hold. Default 256. */
  maxHeldSegments?: number;
  /** Flows tracked at once, least recently used dropped first. Default 65536. */
  maxFlows?: number;
  /** Seconds (packet time) without a segment after which a flow is forgotten. Default 300. */
  idleSec?: number;
  /** Seconds (packet time) a hole in a stream may wait for its bytes. Default 10. */
  holeTimeoutSec?: number;
}

export interface TcpCounters {
  /** SIP messages framed. */
  messages: number;
  /** Holes given up on (bounds, timeout, FIN, RST): buffered bytes dropped, stream resynced. */
  gaps: number;
  /** Streams whose bytes stopped framing as SIP: buffered bytes dropped, stream resynced. */
  desyncs: number;
  flowsEvicted: number;
  flowsExpired: number;
}

interface Span {
  /** Stream positions (bytes since the flow synced) this packet carried. */
  start: number;
  end: number;
  ord: number;
  extra: readonly number[] | null;
}

interface Held {
  seq: number;
  data: Buffer;
  ord: number;
  extra: readonly number[] | null;
  /** The capture cut this segment: `data` is only its first bytes. */
  cut: boolean;
}

class Flow {
  mode = MODE_RESYNC;
  /** The flow's first data bytes are still to come (seen from the SYN): if they are not SIP, neither is the flow. */
  firstBytes = false;
  lastTs = 0;
  /** Sequence number of the next in-order byte (MODE_SIP). */
  nextSeq = 0;
  /** In-order bytes not framed yet: buf[start, start + len), the first at stream position pos. */
  buf: Buffer | null = null;
  start = 0;
  len = 0;
  pos = 0;
  /** Which packets carried the buffered bytes; emptied whenever len is 0. */
  spans: Span[] = [];
  /** Segments beyond a hole, in sequence order. */
  held: Held[] | null = null;
  heldBytes = 0;
  holeSince = 0;

  constructor(
    readonly src: string,
    readonly sport: number,
    readonly dst: string,
    readonly dport: number,
  ) {}

  clear(): void {
    this.start = 0;
    this.len = 0;
    this.spans.length = 0;
    this.held = null;
    this.heldBytes = 0;
    // A buffer grown for one big message is not kept for the flow's lifetime.
    if (this.buf !== null && this.buf.length > 65536) this.buf = null;
  }
}

const EMPTY: readonly TransportMessage[] = Object.freeze([]);

function sortedDistinct(a: number[]): number[] {
  a.sort((x, y) => x - y);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (n === 0 || a[i] !== a[n - 1]) a[n++] = a[i];
  a.length = n;
  return a;
}

/**
 * Rebuilds SIP messages from TCP segments, per direction of each connection.
 * Only streams whose data starts (or restarts, after a hole) with a SIP start
 * line are buffered; any other flow is a small marker. Call push for every
 * TCP packet of the capture, in capture order.
 */
export class TcpSipReassembler {
  readonly counters: TcpCounters = { messages: 0, gaps: 0, desyncs: 0, flowsEvicted: 0, flowsExpired: 0 };
  private readonly maxFlowBytes: number;
  private readonly maxHeldSegments: number;
  private readonly maxFlows: number;
  private readonly idleSec: number;
  private readonly holeTimeoutSec: number;
  /** Least recently used first: every push moves its flow to the end. */
  private readonly flows = new Map<string, Flow>();
  private nextSweepTs = -Infinity;
  private out: TransportMessage[] | null = null;
  /** Packet time of the segment being pushed. */
  private now = 0;

  constructor(opts: TcpSipReassemblerOptions = {}) {
    this.maxFlowBytes = opts.maxFlowBytes ?? 1024 * 1024;
    this.maxHeldSegments = opts.maxHeldSegments ?? 256;
    this.maxFlows = Math.max(1, opts.maxFlows ?? 65536);
    this.idleSec = opts.idleSec ?? 300;
    this.holeTimeoutSec = opts.holeTimeoutSec ?? 10;
  }

  /** Flows tracked right now (SIP or not). */
  get flowCount(): number {
    return this.flows.size;
  }

  /**
   * Takes one TCP segment. Returns the SIP messages it completed, in stream
   * order (a fresh array, or a shared frozen empty one); each message's
   * `packets` lists every segment that carried any of its bytes, including
   * retransmissions that arrived before it completed. `extraOrdinals` names
   * further packets that carried this segment (the IP fragments it was
   * reassembled from). A message's bytes may be a view into `payload`.
   * `cut`: the capture kept only the first bytes of the segment (`payload`);
   * the message they leave incomplete is emitted with what was captured of
   * it, marked truncated, and the stream restarts at the next message start.
   */
  push(
    ordinal: number,
    tsSec: number,
    src: string,
    sport: number,
    dst: string,
    dport: number,
    tcp: TcpInfo,
    payload: Buffer,
    extraOrdinals: readonly number[] | null = null,
    cut = false,
  ): readonly TransportMessage[] {
    const flags = tcp.flags;
    // Pure ACKs are most of a stream's packets and change nothing.
    if (payload.length === 0 && (flags & (SYN | FIN | RST)) === 0) return EMPTY;
    this.now = tsSec;
    if (tsSec >= this.nextSweepTs) this.sweep(tsSec);
    const key = src + ' ' + sport + ' ' + dst + ' ' + dport;
    let flow = this.flows.get(key);
    if (flow !== undefined) {
      this.flows.delete(key);
      if (tsSec - flow.lastTs > this.idleSec) {
        this.counters.flowsExpired++;
        flow = undefined;
      }
    }
    if (flags & RST) {
      // The receiver discards what it had not delivered; so does this.
      if (flow !== undefined && flow.held !== null) this.counters.gaps++;
      return EMPTY;
    }
    if (flow === undefined) {
      if (payload.length === 0 && (flags & SYN) === 0) return EMPTY;
      if (this.flows.size >= this.maxFlows) {
        const oldest = this.flows.keys().next();
        if (!oldest.done) this.flows.delete(oldest.value);
        this.counters.flowsEvicted++;
      }
      flow = new Flow(src, sport, dst, dport);
    }
    this.flows.set(key, flow);
    flow.lastTs = tsSec;

    let seq = tcp.seq;
    if (flags & SYN) {
      seq = (seq + 1) >>> 0;
      const retransmittedSyn = flow.mode === MODE_SIP && flow.firstBytes && flow.nextSeq === seq;
      if (!retransmittedSyn) {
        flow.clear();
        flow.mode = MODE_SIP;
        flow.firstBytes = true;
        flow.nextSeq = seq;
        flow.pos = 0;
      }
    }
    if (payload.length > 0) this.segment(flow, seq, payload, ordinal, extraOrdinals, cut);
    // Checked after the segment, which may be the late retransmission that fills the hole.
    if (flow.held !== null && tsSec - flow.holeSince > this.holeTimeoutSec) this.gap(flow);
    if (flags & FIN) {
      // Bytes beyond a hole are all the sender had left to say: take what
      // frames from them rather than wait for a retransmission.
      if (flow.held !== null) this.gap(flow);
      this.flows.delete(key);
    }
    const out = this.out;
    this.out = null;
    return out === null ? EMPTY : out;
  }

  private segment(flow: Flow, seq: number, data: Buffer, ord: number, extra: readonly number[] | null, cut: boolean): void {
    if (flow.mode === MODE_NOT_SIP) return;
    if (flow.mode === MODE_RESYNC) {
      const n = data.length;
      const o = skipCrlf(data, 0, n);
      if (o >= n || !sipStartLikely(data, o, n)) return;
      flow.mode = MODE_SIP;
      flow.firstBytes = false;
      flow.nextSeq = (seq + o) >>> 0;
      flow.pos = 0;
      seq = flow.nextSeq;
      data = data.subarray(o);
    }
    const rel = (seq - flow.nextSeq) | 0;
    if (rel > 0) {
      this.hold(flow, seq, data, ord, extra, cut);
      return;
    }
    if (rel === 0 && flow.len === 0 && flow.held === null) {
      this.framePayload(flow, data, ord, extra);
      if (cut) this.cutShort(flow);
      return;
    }
    // Held segments join the buffer before framing, so that one overlapping
    // a message still gets listed in it; none can follow a cut segment's
    // captured bytes, since the rest of that segment is missing.
    this.inOrder(flow, rel, data, ord, extra);
    if (!cut) this.drainHeld(flow);
    this.drain(flow);
    if (cut) this.cutShort(flow);
  }

  /** A segment starting at or before nextSeq (rel <= 0 bytes from it): its new bytes go to the buffer. */
  private inOrder(flow: Flow, rel: number, data: Buffer, ord: number, extra: readonly number[] | null): void {
    const n = data.length;
    if (rel + n <= 0) {
      this.overlap(flow, rel, n, ord, extra);
      return;
    }
    if (rel < 0) {
      this.overlap(flow, rel, -rel, ord, extra);
      data = data.subarray(-rel);
    }
    flow.nextSeq = (flow.nextSeq + data.length) >>> 0;
    this.append(flow, data, ord, extra);
  }

  /** Notes that a retransmission carried bytes still buffered, so their message lists it. */
  private overlap(flow: Flow, rel: number, n: number, ord: number, extra: readonly number[] | null): void {
    const endPos = flow.pos + flow.len;
    const s = Math.max(endPos + rel, flow.pos);
    const e = Math.min(endPos + rel + n, endPos);
    if (s < e) flow.spans.push({ start: s, end: e, ord, extra });
  }

  /**
   * The common case, an in-order segment with nothing buffered or held: its
   * whole messages are framed in place, without copying; the rest is buffered.
   */
  private framePayload(flow: Flow, data: Buffer, ord: number, extra: readonly number[] | null): void {
    const n = data.length;
    flow.nextSeq = (flow.nextSeq + n) >>> 0;
    let o = 0;
    for (;;) {
      o = skipCrlf(data, o, n);
      if (o >= n) {
        flow.pos += n;
        return;
      }
      const r = sipFrame(data, o, n, false);
      if (r < 0 || r > this.maxFlowBytes) {
        flow.pos += n;
        this.fail(flow);
        return;
      }
      if (r === 0 || o + r > n) break;
      flow.firstBytes = false;
      const packets = extra === null ? [ord] : sortedDistinct([ord, ...extra]);
      this.emit(flow, data.subarray(o, o + r), packets, false);
      o += r;
    }
    flow.pos += o;
    this.append(flow, data.subarray(o), ord, extra);
  }

  private append(flow: Flow, data: Buffer, ord: number, extra: readonly number[] | null): void {
    const n = data.length;
    const need = flow.len + n;
    let buf = flow.buf;
    if (buf === null || flow.start + need > buf.length) {
      if (buf !== null && need <= buf.length) {
        buf.copyWithin(0, flow.start, flow.start + flow.len);
      } else {
        const nb = Buffer.allocUnsafe(Math.max(need, buf === null ? 2048 : buf.length * 2));
        if (buf !== null) buf.copy(nb, 0, flow.start, flow.start + flow.len);
        flow.buf = buf = nb;
      }
      flow.start = 0;
    }
    data.copy(buf, flow.start + flow.len);
    const s = flow.pos + flow.len;
    flow.spans.push({ start: s, end: s + n, ord, extra });
    flow.len = need;
  }

  /** Frames the messages the buffer holds. */
  private drain(flow: Flow): void {
    for (;;) {
      const buf = flow.buf;
      if (buf === null || flow.len === 0) return;
      const end = flow.start + flow.len;
      const o = skipCrlf(buf, flow.start, end);
      if (o > flow.start) this.consume(flow, o - flow.start);
      if (flow.len === 0) return;
      const r = sipFrame(buf, flow.start, end, false);
      if (r < 0 || r > this.maxFlowBytes) {
        this.fail(flow);
        return;
      }
      if (r === 0 || r > flow.len) return;
      flow.firstBytes = false;
      // Copied: the flow buffer is reused for the bytes that follow.
      this.emit(flow, Buffer.from(buf.subarray(flow.start, flow.start + r)), this.packetsOf(flow, r), false);
      this.consume(flow, r);
    }
  }

  /** Which packets carried the first n buffered bytes. */
  private packetsOf(flow: Flow, n: number): number[] {
    const ms = flow.pos;
    const me = ms + n;
    const packets: number[] = [];
    for (const sp of flow.spans) {
      if (sp.start < me && sp.end > ms) {
        packets.push(sp.ord);
        if (sp.extra !== null) for (const x of sp.extra) packets.push(x);
      }
    }
    return sortedDistinct(packets);
  }

  /**
   * The segment just added was cut by the capture, so the stream has a hole
   * of unknown content right after the buffered bytes: a message they begin
   * is emitted as captured, marked truncated (its Call-ID and headers are
   * still worth indexing), and the flow resyncs on the next message start.
   */
  private cutShort(flow: Flow): void {
    if (flow.mode !== MODE_SIP) return;
    const buf = flow.buf;
    if (buf !== null && flow.len > 0) {
      const end = flow.start + flow.len;
      const o = skipCrlf(buf, flow.start, end);
      if (o > flow.start) this.consume(flow, o - flow.start);
      if (flow.len > 0 && sipFrame(buf, flow.start, end, false) >= 0) {
        this.emit(flow, Buffer.from(buf.subarray(flow.start, end)), this.packetsOf(flow, flow.len), true);
      }
    }
    this.gap(flow);
  }

  private consume(flow: Flow, k: number): void {
    flow.start += k;
    flow.len -= k;
    flow.pos += k;
    if (flow.len === 0) {
      flow.start = 0;
      flow.spans.length = 0;
      return;
    }
    const spans = flow.spans;
    let n = 0;
    for (let i = 0; i < spans.length; i++) if (spans[i].end > flow.pos) spans[n++] = spans[i];
    spans.length = n;
  }

  private emit(flow: Flow, bytes: Buffer, packets: number[], truncated: boolean): void {
    this.counters.messages++;
    const m: TransportMessage = { src: flow.src, dst: flow.dst, sport: flow.sport, dport: flow.dport, proto: 6, bytes, packets, truncated };
    if (this.out === null) this.out = [m];
    else this.out.push(m);
  }

  /** The stream's bytes do not frame as SIP. */
  private fail(flow: Flow): void {
    if (flow.firstBytes) {
      flow.clear();
      flow.mode = MODE_NOT_SIP;
      return;
    }
    this.counters.desyncs++;
    this.resync(flow);
  }

  private gap(flow: Flow): void {
    this.counters.gaps++;
    this.resync(flow);
  }

  /** Drops the buffered bytes and restarts at the first held segment that starts a SIP message. */
  private resync(flow: Flow): void {
    const held = flow.held;
    flow.clear();
    flow.mode = MODE_RESYNC;
    flow.firstBytes = false;
    if (held === null) return;
    for (const h of held) this.segment(flow, h.seq, h.data, h.ord, h.extra, h.cut);
  }

  private hold(flow: Flow, seq: number, data: Buffer, ord: number, extra: readonly number[] | null, cut: boolean): void {
    let held = flow.held;
    if (held === null) {
      held = flow.held = [];
      flow.holeSince = this.now;
    }
    const rel = (seq - flow.nextSeq) | 0;
    let i = held.length;
    while (i > 0 && ((held[i - 1].seq - flow.nextSeq) | 0) > rel) i--;
    // Copied: the packet buffer belongs to the capture reader.
    held.splice(i, 0, { seq, data: Buffer.from(data), ord, extra, cut });
    flow.heldBytes += data.length;
    if (held.length > this.maxHeldSegments || flow.len + flow.heldBytes > this.maxFlowBytes) this.gap(flow);
  }

  /** Moves held segments that the stream has reached into it. */
  private drainHeld(flow: Flow): void {
    let progressed = false;
    while (flow.mode === MODE_SIP && flow.held !== null) {
      const h = flow.held[0];
      const rel = (h.seq - flow.nextSeq) | 0;
      if (rel > 0) break;
      flow.held.shift();
      flow.heldBytes -= h.data.length;
      if (flow.held.length === 0) flow.held = null;
      progressed = true;
      this.inOrder(flow, rel, h.data, h.ord, h.extra);
      if (h.cut) {
        // What follows it in the stream is missing: frame what came before, then give up on the hole.
        this.drain(flow);
        this.cutShort(flow);
        return;
      }
    }
    if (progressed && flow.held !== null) flow.holeSince = this.now;
  }

  /** Forgets flows idle past idleSec, oldest first; at most once per second of packet time. */
  private sweep(tsSec: number): void {
    this.nextSweepTs = tsSec + 1;
    for (const [key, flow] of this.flows) {
      if (tsSec - flow.lastTs <= this.idleSec) break;
      this.flows.delete(key);
      this.counters.flowsExpired++;
    }
  }
}
