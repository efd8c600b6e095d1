import { isRtcp } from '../../shared/rtp/stats';

/*
 * The FLOW_TABLE section of a sealed index: the segment's non-SIP UDP packets
 * (RTP and RTCP on a media host; whatever else is UDP too) grouped into
 * flows, so that `--rtp` and the RTP figures read the packet entries of the
 * few flows whose ends a dialog announced rather than scanning the whole
 * packet table of every segment in the call's span.
 *
 * A flow holds exactly the packets the scan would consider (UDP, not SIP, both
 * addresses known), one flow per (src, sport, dst, dport, SSRC kind+value):
 * the exact-RTP rule still runs per packet on their times, so the flows
 * narrow what is read without changing what is selected.
 *
 *   body  : u32 flows | u32 reserved | FLOW_ENTRY_LEN entries | ordinal lists
 *   entry : 0 u32 src address id   4 u32 dst address id   8 u16 sport  10 u16 dport
 *          12 u32 SSRC  16 u8 kind (FLOW_KIND)  17..19 reserved  20 u32 packets
 *          24 u32 first sec  28 u32 first nsec  32 u32 last sec  36 u32 last nsec
 *          40 u32 list offset (in the body)  44 u32 list length (bytes)
 *   list  : the flow's packet ordinals, ascending, as LEB128 deltas (the first from 0)
 *
 * An RTP flow's packets lie a few thousand ordinals apart on a busy host: two
 * bytes each in the list, against 28 for their packet entries.
 */
export const FLOW_ENTRY_LEN = 48;
const FLOW_HEAD_LEN = 8;

/** What the payload of a flow's packets was taken for: its SSRC is the RTP or the RTCP sender's; none for OTHER. */
export const FLOW_KIND = { OTHER: 0, RTP: 1, RTCP: 2 } as const;

/** What a UDP payload looks like: RTCP, RTP (version 2, a whole fixed header) or other. Two functions, not an object: this runs per packet. */
export function payloadKind(payload: Buffer): number {
  if (payload.length < 12 || payload[0] >> 6 !== 2) return FLOW_KIND.OTHER;
  return isRtcp(payload) ? FLOW_KIND.RTCP : FLOW_KIND.RTP;
}

/** The SSRC of a payload of that kind: RTCP's sender SSRC, RTP's; 0 for other. */
export function payloadSsrc(payload: Buffer, kind: number): number {
  if (kind === FLOW_KIND.RTCP) return payload.readUInt32BE(4);
  if (kind === FLOW_KIND.RTP) return payload.readUInt32BE(8);
  return 0;
}

/**
 * Flows a segment keeps at most. Each costs a few hundred bytes while the
 * segment is open, against 28 for a packet's entry: a flood of packets each
 * from another port or address (anyone on the internet can send them to a
 * media server's RTP range) would otherwise make the table outgrow the
 * segment. A real media host has a flow per stream direction and port;
 * 65,536 is 16,000 calls at once with RTCP. Past it the segment keeps no
 * flows (its journal says so) and its RTP is found by scanning, as before
 * flows were; `dropped` counts the packets that were in none.
 */
export const MAX_FLOWS = 65_536;
/**
 * Flows of one 5-tuple told apart by SSRC. Past this, the 5-tuple's packets
 * of another SSRC go into one flow of kind OTHER (SSRC 0): the selection
 * reads a flow's 5-tuple and its packets' times, never its SSRC, so this
 * changes nothing selected, only what a flood of random SSRCs can cost.
 */
export const MAX_SSRC_FLOWS = 8;
/**
 * Flow packets gathered before the live indexer journals the flows they
 * changed: a reader of the journal takes the packets after the last such
 * record into flows from their packet entries (at most about this many).
 * Journaling at every catch-up round would cost a record per flow and round.
 */
export const FLOW_JOURNAL_PACKETS = 4096;

/** What the live indexer's flows could not keep (FlowTableBuilder's counters, summed over segments). */
export interface FlowOverflow {
  /** Segments whose flows were abandoned at MAX_FLOWS (their RTP is scanned). */
  abandoned: number;
  /** Packets in no flow because of it. */
  dropped: number;
  /** Packets put into their 5-tuple's catch-all flow past MAX_SSRC_FLOWS SSRCs. */
  folded: number;
}

export function addFlowOverflow(to: FlowOverflow, b: FlowTableBuilder | null): void {
  if (!b) return;
  if (b.abandoned) to.abandoned++;
  to.dropped += b.dropped;
  to.folded += b.folded;
}

const FLOW_DEF_LEN = 20;
const FLOW_CHANGE_HEAD = 32;
const FLOW_RECORD_HEAD = 16;
const ABANDONED = 0xffffffff;

interface FlowBuild {
  /** Its place in the table. */
  id: number;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  kind: number;
  ssrc: number;
  firstSec: number;
  firstNsec: number;
  lastSec: number;
  lastNsec: number;
  count: number;
  lastOrd: number;
  /** The packet ordinals as the sealed list holds them: LEB128 deltas, the first from 0. */
  list: Uint8Array;
  len: number;
  /** Bytes of `list` and packets already journaled. */
  journaledLen: number;
  journaledCount: number;
  dirty: boolean;
}

/** A flow's 5-tuple, SSRC and kind: the first 17 bytes of its sealed entry and of its journal definition alike. */
function writeFlowKey(out: Buffer, at: number, f: FlowBuild): void {
  out.writeUInt32LE(f.src, at);
  out.writeUInt32LE(f.dst, at + 4);
  out.writeUInt16LE(f.sport, at + 8);
  out.writeUInt16LE(f.dport, at + 10);
  out.writeUInt32LE(f.ssrc >>> 0, at + 12);
  out[at + 16] = f.kind;
}

/**
 * Gathers a segment's flows while it is indexed: encode() gives the sealed
 * section's body; journal() the live journal's record of what changed since
 * its last one, which replay() applies on a reader's side (the live segment's
 * `--rtp` then reads flows as a sealed one does).
 */
export class FlowTableBuilder {
  // Keyed by address id * 65536 + port, numbers rather than strings: this runs for every RTP packet.
  private bySrc = new Map<number, Map<number, FlowBuild[]>>();
  private flows: FlowBuild[] = [];
  private dirtyFlows: FlowBuild[] = [];
  private journaledFlows = 0;
  private pending = 0;
  private announced = false;
  private cached: FlowTable | null = null;
  /** Packets put into flows (including the folded ones). */
  packets = 0;
  /** Packets of a 5-tuple past MAX_SSRC_FLOWS SSRCs, put into its catch-all flow. */
  folded = 0;
  /** Packets in no flow since the table was abandoned (MAX_FLOWS reached). */
  dropped = 0;
  /** MAX_FLOWS was reached: no flows are kept, the segment's RTP is scanned. */
  abandoned = false;
  /** Every flow packet with an ordinal below this is in the table (a replayed journal's last flow record). */
  through = 0;

  constructor(private readonly maxFlows = MAX_FLOWS) {}

  add(ord: number, src: number, sport: number, dst: number, dport: number, kind: number, ssrc: number, sec: number, nsec: number): void {
    if (this.abandoned) {
      this.dropped++;
      return;
    }
    const sk = src * 65536 + sport;
    const dk = dst * 65536 + dport;
    let byDst = this.bySrc.get(sk);
    if (!byDst) this.bySrc.set(sk, (byDst = new Map()));
    let list = byDst.get(dk);
    if (!list) byDst.set(dk, (list = []));
    let f: FlowBuild | undefined;
    for (const x of list) {
      if (x.kind === kind && x.ssrc === ssrc) {
        f = x;
        break;
      }
    }
    if (!f && list.length >= MAX_SSRC_FLOWS) {
      this.folded++;
      kind = FLOW_KIND.OTHER;
      ssrc = 0;
      for (const x of list) if (x.kind === kind && x.ssrc === 0) f = x;
    }
    if (!f) {
      if (this.flows.length >= this.maxFlows) {
        this.abandon();
        this.dropped++;
        return;
      }
      f = this.create(src, dst, sport, dport, kind, ssrc, sec, nsec);
      list.push(f);
    } else {
      if (sec < f.firstSec || (sec === f.firstSec && nsec < f.firstNsec)) {
        f.firstSec = sec;
        f.firstNsec = nsec;
      }
      if (sec > f.lastSec || (sec === f.lastSec && nsec > f.lastNsec)) {
        f.lastSec = sec;
        f.lastNsec = nsec;
      }
    }
    this.append(f, ord);
    this.packets++;
  }

  private create(src: number, dst: number, sport: number, dport: number, kind: number, ssrc: number, sec: number, nsec: number): FlowBuild {
    const f: FlowBuild = {
      id: this.flows.length, src, dst, sport, dport, kind, ssrc, firstSec: sec, firstNsec: nsec, lastSec: sec, lastNsec: nsec,
      count: 0, lastOrd: 0, list: new Uint8Array(8), len: 0, journaledLen: 0, journaledCount: 0, dirty: false,
    };
    this.flows.push(f);
    return f;
  }

  private append(f: FlowBuild, ord: number): void {
    if (f.len + 5 > f.list.length) {
      const bigger = new Uint8Array(f.list.length * 2);
      bigger.set(f.list.subarray(0, f.len));
      f.list = bigger;
    }
    let v = ord - f.lastOrd;
    f.lastOrd = ord;
    while (v >= 0x80) {
      f.list[f.len++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    f.list[f.len++] = v;
    f.count++;
    if (!f.dirty) {
      f.dirty = true;
      this.dirtyFlows.push(f);
    }
    this.pending++;
    this.cached = null;
  }

  private abandon(): void {
    this.abandoned = true;
    this.dropped += this.packets;
    this.bySrc = new Map();
    this.flows = [];
    this.dirtyFlows = [];
    this.cached = null;
  }

  get flowCount(): number {
    return this.flows.length;
  }

  /**
   * The journal record body for what changed since the last one, or null
   * when nothing needs saying yet: the first call announces that the journal
   * carries flows; later ones wait for FLOW_JOURNAL_PACKETS (or `force`).
   * `through`: the segment's packet count now.
   *
   *   u32 through | u32 first new flow | u32 new flows (ABANDONED: no flows from here) | u32 changed flows
   *   new flow  : u32 src  u32 dst  u16 sport  u16 dport  u32 SSRC  u8 kind  3 reserved
   *   changed   : u32 flow  u32 packets added  u32 first sec, nsec  u32 last sec, nsec  u32 last ordinal  u32 bytes | its list's new bytes
   */
  journal(through: number, force = false): Buffer | null {
    if (this.abandoned) {
      if (this.journaledFlows === ABANDONED) return null;
      this.announced = true;
      this.journaledFlows = ABANDONED;
      const b = Buffer.alloc(FLOW_RECORD_HEAD);
      b.writeUInt32LE(through, 0);
      b.writeUInt32LE(ABANDONED, 8);
      return b;
    }
    if (this.announced && (this.pending === 0 || (!force && this.pending < FLOW_JOURNAL_PACKETS))) return null;
    this.announced = true;
    const fresh = this.flows.length - this.journaledFlows;
    let size = FLOW_RECORD_HEAD + FLOW_DEF_LEN * fresh;
    for (const f of this.dirtyFlows) size += FLOW_CHANGE_HEAD + f.len - f.journaledLen;
    const b = Buffer.alloc(size);
    b.writeUInt32LE(through, 0);
    b.writeUInt32LE(this.journaledFlows, 4);
    b.writeUInt32LE(fresh, 8);
    b.writeUInt32LE(this.dirtyFlows.length, 12);
    let at = FLOW_RECORD_HEAD;
    for (let i = this.journaledFlows; i < this.flows.length; i++) {
      writeFlowKey(b, at, this.flows[i]);
      at += FLOW_DEF_LEN;
    }
    for (const f of this.dirtyFlows) {
      b.writeUInt32LE(f.id, at);
      b.writeUInt32LE(f.count - f.journaledCount, at + 4);
      b.writeUInt32LE(f.firstSec, at + 8);
      b.writeUInt32LE(f.firstNsec, at + 12);
      b.writeUInt32LE(f.lastSec, at + 16);
      b.writeUInt32LE(f.lastNsec, at + 20);
      b.writeUInt32LE(f.lastOrd, at + 24);
      b.writeUInt32LE(f.len - f.journaledLen, at + 28);
      b.set(f.list.subarray(f.journaledLen, f.len), at + FLOW_CHANGE_HEAD);
      at += FLOW_CHANGE_HEAD + f.len - f.journaledLen;
      f.journaledLen = f.len;
      f.journaledCount = f.count;
      f.dirty = false;
    }
    this.dirtyFlows = [];
    this.journaledFlows = this.flows.length;
    this.pending = 0;
    this.through = through;
    return b;
  }

  /**
   * Applies a journal record (journal()'s body) on a reader's side, after the
   * packets it covers were replayed (`packetCount`). Throws on a record that
   * does not fit the flows so far; the ordinals themselves are checked when
   * a flow's list is decoded.
   */
  replay(body: Buffer, packetCount: number): void {
    const bad = (why: string) => new Error(`flow record: ${why}`);
    if (body.length < FLOW_RECORD_HEAD) throw bad('short');
    const through = body.readUInt32LE(0);
    if (through > packetCount) throw bad(`covers ${through} of ${packetCount} packets`);
    this.announced = true;
    if (body.readUInt32LE(8) === ABANDONED) {
      if (!this.abandoned) this.abandon();
      this.through = through;
      return;
    }
    if (this.abandoned) return;
    const firstNew = body.readUInt32LE(4);
    const fresh = body.readUInt32LE(8);
    const changed = body.readUInt32LE(12);
    if (firstNew !== this.flows.length || this.flows.length + fresh > MAX_FLOWS) throw bad(`new flows ${firstNew}+${fresh} after ${this.flows.length}`);
    let at = FLOW_RECORD_HEAD;
    if (at + fresh * FLOW_DEF_LEN > body.length) throw bad('new flows cut');
    for (let i = 0; i < fresh; i++, at += FLOW_DEF_LEN) {
      const f = this.create(body.readUInt32LE(at), body.readUInt32LE(at + 4), body.readUInt16LE(at + 8), body.readUInt16LE(at + 10), body[at + 16], body.readUInt32LE(at + 12), 0, 0);
      const sk = f.src * 65536 + f.sport;
      const dk = f.dst * 65536 + f.dport;
      let byDst = this.bySrc.get(sk);
      if (!byDst) this.bySrc.set(sk, (byDst = new Map()));
      const list = byDst.get(dk);
      if (list) list.push(f);
      else byDst.set(dk, [f]);
    }
    for (let k = 0; k < changed; k++) {
      if (at + FLOW_CHANGE_HEAD > body.length) throw bad('changes cut');
      const f = this.flows[body.readUInt32LE(at)];
      const added = body.readUInt32LE(at + 4);
      const lastOrd = body.readUInt32LE(at + 24);
      const bytes = body.readUInt32LE(at + 28);
      if (!f || at + FLOW_CHANGE_HEAD + bytes > body.length || added > bytes || bytes > 5 * added) throw bad(`change ${k} does not fit`);
      f.firstSec = body.readUInt32LE(at + 8);
      f.firstNsec = body.readUInt32LE(at + 12);
      f.lastSec = body.readUInt32LE(at + 16);
      f.lastNsec = body.readUInt32LE(at + 20);
      if (f.len + bytes > f.list.length) {
        const bigger = new Uint8Array(Math.max(f.list.length * 2, f.len + bytes));
        bigger.set(f.list.subarray(0, f.len));
        f.list = bigger;
      }
      // The list's bytes are checked when it is decoded (decodeOrdinals): replay copies them, not a step a packet.
      if (lastOrd >= through || lastOrd < f.lastOrd) throw bad(`change ${k}: last ordinal ${lastOrd}`);
      f.lastOrd = lastOrd;
      const from = at + FLOW_CHANGE_HEAD;
      f.list.set(body.subarray(from, from + bytes), f.len);
      f.len += bytes;
      f.count += added;
      f.journaledLen = f.len;
      f.journaledCount = f.count;
      this.packets += added;
      at += FLOW_CHANGE_HEAD + bytes;
    }
    if (at !== body.length) throw bad('bytes left over');
    this.journaledFlows = this.flows.length;
    this.through = through;
    this.cached = null;
  }

  /** The flows as a FlowTable (their lists are read with packetsOf, not through list()). */
  table(): FlowTable {
    if (this.cached) return this.cached;
    const out = Buffer.alloc(FLOW_HEAD_LEN + FLOW_ENTRY_LEN * this.flows.length);
    out.writeUInt32LE(this.flows.length, 0);
    this.flows.forEach((f, i) => this.writeEntry(out, FLOW_HEAD_LEN + i * FLOW_ENTRY_LEN, f, 0));
    return (this.cached = new FlowTable(out));
  }

  /** The packet ordinals of flow i, ascending; null when its list does not hold them below `packetCount`. */
  packetsOf(i: number, packetCount: number): Uint32Array | null {
    const f = this.flows[i];
    if (!f) return null;
    return decodeOrdinals(Buffer.from(f.list.buffer, f.list.byteOffset, f.len), f.count, packetCount);
  }

  private writeEntry(out: Buffer, e: number, f: FlowBuild, listAt: number): void {
    writeFlowKey(out, e, f);
    out.writeUInt32LE(f.count, e + 20);
    out.writeUInt32LE(f.firstSec, e + 24);
    out.writeUInt32LE(f.firstNsec, e + 28);
    out.writeUInt32LE(f.lastSec, e + 32);
    out.writeUInt32LE(f.lastNsec, e + 36);
    out.writeUInt32LE(listAt, e + 40);
    out.writeUInt32LE(f.len, e + 44);
  }

  /** The FLOW_TABLE section's body; null once abandoned (the sealed segment then has no flows and is scanned). */
  encode(): Buffer | null {
    if (this.abandoned) return null;
    let listBytes = 0;
    for (const f of this.flows) listBytes += f.len;
    const out = Buffer.alloc(FLOW_HEAD_LEN + FLOW_ENTRY_LEN * this.flows.length + listBytes);
    out.writeUInt32LE(this.flows.length, 0);
    let at = FLOW_HEAD_LEN + FLOW_ENTRY_LEN * this.flows.length;
    this.flows.forEach((f, i) => {
      this.writeEntry(out, FLOW_HEAD_LEN + i * FLOW_ENTRY_LEN, f, at);
      out.set(f.list.subarray(0, f.len), at);
      at += f.len;
    });
    return out;
  }
}

/** The bytes of the FLOW_TABLE body before its ordinal lists (its count and entries), given its first 8 bytes. */
export function flowEntriesLength(head: Buffer): number {
  return FLOW_HEAD_LEN + FLOW_ENTRY_LEN * head.readUInt32LE(0);
}

/** The flows of a sealed segment, read from the head of the section; ordinal lists are read apart, per flow. */
export class FlowTable {
  readonly length: number;

  /** `entries`: the body's head (count and entries), as long as flowEntriesLength says. */
  constructor(private readonly entries: Buffer) {
    this.length = entries.readUInt32LE(0);
  }

  private at(i: number): number {
    return FLOW_HEAD_LEN + i * FLOW_ENTRY_LEN;
  }

  src(i: number): number { return this.entries.readUInt32LE(this.at(i)); }
  dst(i: number): number { return this.entries.readUInt32LE(this.at(i) + 4); }
  sport(i: number): number { return this.entries.readUInt16LE(this.at(i) + 8); }
  dport(i: number): number { return this.entries.readUInt16LE(this.at(i) + 10); }
  ssrc(i: number): number { return this.entries.readUInt32LE(this.at(i) + 12); }
  kind(i: number): number { return this.entries[this.at(i) + 16]; }
  packets(i: number): number { return this.entries.readUInt32LE(this.at(i) + 20); }
  first(i: number): [number, number] { return [this.entries.readUInt32LE(this.at(i) + 24), this.entries.readUInt32LE(this.at(i) + 28)]; }
  last(i: number): [number, number] { return [this.entries.readUInt32LE(this.at(i) + 32), this.entries.readUInt32LE(this.at(i) + 36)]; }
  /** Where the flow's ordinal list is, in the section body, and its length in bytes. */
  list(i: number): { offset: number; length: number } {
    return { offset: this.entries.readUInt32LE(this.at(i) + 40), length: this.entries.readUInt32LE(this.at(i) + 44) };
  }
}

/** Decodes a flow's ordinal list; null when it does not hold `count` ordinals below `packetCount` (a corrupt index). */
export function decodeOrdinals(list: Buffer, count: number, packetCount: number): Uint32Array | null {
  const out = new Uint32Array(count);
  let at = 0;
  let prev = 0;
  for (let n = 0; n < count; n++) {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (at >= list.length || mul > 0x10000000) return null;
      const b = list[at++];
      v += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 128;
    }
    prev += v;
    if (prev >= packetCount || (n > 0 && v === 0)) return null;
    out[n] = prev;
  }
  return at === list.length ? out : null;
}
