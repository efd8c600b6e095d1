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

interface FlowBuild {
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
  ords: number[];
}

/** Gathers a segment's flows while it is indexed; encode() gives the section body. */
export class FlowTableBuilder {
  // Keyed by address id * 65536 + port, numbers rather than strings: this runs for every RTP packet.
  private readonly bySrc = new Map<number, Map<number, FlowBuild[]>>();
  private readonly flows: FlowBuild[] = [];
  packets = 0;

  add(ord: number, src: number, sport: number, dst: number, dport: number, kind: number, ssrc: number, sec: number, nsec: number): void {
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
    if (!f) {
      f = { src, dst, sport, dport, kind, ssrc, firstSec: sec, firstNsec: nsec, lastSec: sec, lastNsec: nsec, ords: [] };
      list.push(f);
      this.flows.push(f);
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
    f.ords.push(ord);
    this.packets++;
  }

  get flowCount(): number {
    return this.flows.length;
  }

  encode(): Buffer {
    let listBytes = 0;
    for (const f of this.flows) listBytes += 5 * f.ords.length;
    const out = Buffer.allocUnsafe(FLOW_HEAD_LEN + FLOW_ENTRY_LEN * this.flows.length + listBytes);
    out.writeUInt32LE(this.flows.length, 0);
    out.writeUInt32LE(0, 4);
    let at = FLOW_HEAD_LEN + FLOW_ENTRY_LEN * this.flows.length;
    this.flows.forEach((f, i) => {
      const e = FLOW_HEAD_LEN + i * FLOW_ENTRY_LEN;
      out.fill(0, e, e + FLOW_ENTRY_LEN);
      out.writeUInt32LE(f.src, e);
      out.writeUInt32LE(f.dst, e + 4);
      out.writeUInt16LE(f.sport, e + 8);
      out.writeUInt16LE(f.dport, e + 10);
      out.writeUInt32LE(f.ssrc >>> 0, e + 12);
      out[e + 16] = f.kind;
      out.writeUInt32LE(f.ords.length, e + 20);
      out.writeUInt32LE(f.firstSec, e + 24);
      out.writeUInt32LE(f.firstNsec, e + 28);
      out.writeUInt32LE(f.lastSec, e + 32);
      out.writeUInt32LE(f.lastNsec, e + 36);
      const start = at;
      let prev = 0;
      for (const ord of f.ords) {
        let v = ord - prev;
        prev = ord;
        while (v >= 0x80) {
          out[at++] = (v & 0x7f) | 0x80;
          v >>>= 7;
        }
        out[at++] = v;
      }
      out.writeUInt32LE(start, e + 40);
      out.writeUInt32LE(at - start, e + 44);
    });
    return out.subarray(0, at);
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
