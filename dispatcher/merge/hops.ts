import { decodePacket, isDecodeFailure } from '../../shared/decode/packet';
import { networkBytes } from './dedup';
import { endpointText } from '../../shared/query/query';
import { parseRtpHeader } from '../../shared/rtp/stats';
import { MAX_HOPS, type RtpHop, type TraceClocks } from '../../shared/trace/vantage';

/**
 * Which hop went bad: the copies of one RTP stream (same SSRC and 5-tuple)
 * that several hosts of a trace captured, lined up by sequence number. The
 * streams come from the hosts' own figures (the agents found them); the
 * packets from the hosts' PCAPs as the merge reads them, so a trace shows
 * hops only when its RTP packets were asked for (--rtp). See
 * docs/ARCHITECTURE.md, "Which hop went bad".
 */

/** A stream as a host's figures name it. */
export interface StreamRef {
  host: string;
  ssrc: string;
  src: string;
  dst: string;
}

/** Packets kept per stream and host at most: an hour of 50 packets a second. */
export const HOP_MAX_PACKETS = 180_000;

interface Copy {
  /** Extended sequence number -> ns since the collector's base second. */
  at: Map<number, number>;
  lastExt: number;
}

interface Stream {
  ssrc: string;
  src: string;
  dst: string;
  /** Hosts whose figures list the stream, with what they captured of it. */
  copies: Map<string, Copy>;
}

/** Unwraps a 16-bit sequence number to the extended one nearest the last (RFC 3550 A.1's idea without its probation). */
function extend(last: number, seq: number): number {
  return last + (((seq - (last & 0xffff) + 32768) & 0xffff) - 32768);
}

/** A copy's first time (a loop: a spread of 180 000 arguments would overflow the stack). */
function earliest(c: Copy): number {
  let m = Infinity;
  for (const t of c.at.values()) if (t < m) m = t;
  return m;
}

function median(sorted: number[]): number {
  const n = sorted.length;
  return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

export class HopCollector {
  /** By "src>dst", then by SSRC hex. */
  private readonly streams = new Map<string, Map<string, Stream>>();
  /** sport * 65536 + dport of every followed stream: most packets are turned away on their ports alone, before any decoding. */
  private readonly ports = new Set<number>();
  private baseSec: number | null = null;
  /** An anchor for every copy's first extended sequence number, so copies that start in different 16-bit cycles still line up when they start within half a cycle. */
  private anchor: number | null = null;
  cut = 0;

  /** Only streams that two or more hosts listed are followed. */
  constructor(refs: StreamRef[]) {
    const hosts = new Map<string, Set<string>>();
    for (const r of refs) {
      const k = `${r.src}>${r.dst}|${r.ssrc}`;
      let h = hosts.get(k);
      if (!h) hosts.set(k, (h = new Set()));
      h.add(r.host);
    }
    for (const [k, h] of hosts) {
      if (h.size < 2) continue;
      const [tuple, ssrc] = k.split('|');
      const [src, dst] = tuple.split('>');
      const port = (ep: string) => Number(ep.slice(ep.lastIndexOf(':') + 1));
      this.ports.add(port(src) * 65536 + port(dst));
      let bySsrc = this.streams.get(tuple);
      if (!bySsrc) this.streams.set(tuple, (bySsrc = new Map()));
      bySsrc.set(ssrc, { ssrc, src, dst, copies: new Map([...h].map((host) => [host, { at: new Map(), lastExt: -1 }])) });
    }
  }

  /** True when some stream is seen by two hosts: otherwise observe() has nothing to do. */
  get wanted(): boolean {
    return this.streams.size > 0;
  }

  observe(host: string, linkType: number, data: Buffer, tsSec: number, tsNsec: number): void {
    if (!this.mayBeFollowed(linkType, data)) return;
    const p = decodePacket(linkType, data);
    if (isDecodeFailure(p) || p.proto !== 17 || p.fragment) return;
    const bySsrc = this.streams.get(`${endpointText(p.src, p.sport)}>${endpointText(p.dst, p.dport)}`);
    if (!bySsrc) return;
    const rtp = parseRtpHeader(p.payload);
    if (!rtp) return;
    const s = bySsrc.get(`0x${rtp.ssrc.toString(16).padStart(8, '0')}`);
    const c = s?.copies.get(host);
    if (!c) return;
    this.baseSec ??= tsSec;
    let ext: number;
    if (c.lastExt < 0) {
      // Sixteen cycles of room below, for copies that start a little earlier than the anchor.
      this.anchor ??= 16 * 65536 + rtp.seq;
      ext = extend(this.anchor, rtp.seq);
    } else ext = extend(c.lastExt, rtp.seq);
    if (ext > c.lastExt) c.lastExt = ext;
    if (c.at.has(ext)) return;
    if (c.at.size >= HOP_MAX_PACKETS) {
      this.cut++;
      return;
    }
    c.at.set(ext, (tsSec - this.baseSec) * 1e9 + tsNsec);
  }

  /** False when the packet is surely not of a followed stream: not UDP, or UDP on other ports (IPv4 and IPv6 without extension headers; anything else is decoded). */
  private mayBeFollowed(linkType: number, data: Buffer): boolean {
    const net = networkBytes(linkType, data);
    let udp = -1;
    if (net.length >= 20 && net[0] >> 4 === 4) {
      if (net[9] !== 17) return false;
      udp = (net[0] & 15) * 4;
    } else if (net.length >= 40 && net[0] >> 4 === 6) {
      // Extension headers (hop-by-hop, routing, fragment, AH, destination options): left to the decoder.
      if (net[6] !== 17) return [0, 43, 44, 51, 60].includes(net[6]);
      udp = 40;
    } else return false;
    if (net.length < udp + 4) return false;
    return this.ports.has(net.readUInt16BE(udp) * 65536 + net.readUInt16BE(udp + 2));
  }

  /**
   * Per stream, its copies ordered by when they saw it (the median, over
   * the packets two copies share, of which came first on corrected clocks),
   * and per consecutive pair of copies one hop. `cut` names hosts whose
   * result a --max-packets/--max-bytes limit cut short (it keeps the
   * earliest packets): past a cut copy's last packet, nothing counts as lost
   * (or unseen upstream), since the packets were only left out.
   */
  hops(clocks: TraceClocks | null, cut: ReadonlySet<string> = new Set()): RtpHop[] {
    const off = new Map<string, number>();
    for (const h of clocks?.hosts ?? []) if (h.offsetMs !== null) off.set(h.host, h.offsetMs * 1e6);
    const out: RtpHop[] = [];
    for (const bySsrc of this.streams.values()) {
      for (const s of bySsrc.values()) {
        const copies = [...s.copies].filter(([, c]) => c.at.size > 0);
        if (copies.length < 2) continue;
        const corrected = (host: string, t: number) => t - (off.get(host) ?? 0);
        const before = (a: [string, Copy], b: [string, Copy]): number => {
          const d: number[] = [];
          for (const [seq, ta] of a[1].at) {
            const tb = b[1].at.get(seq);
            if (tb !== undefined) d.push(corrected(b[0], tb) - corrected(a[0], ta));
          }
          if (d.length > 0) return -median(d.sort((x, y) => x - y));
          return corrected(a[0], earliest(a[1])) - corrected(b[0], earliest(b[1]));
        };
        copies.sort((a, b) => before(a, b) || (a[0] < b[0] ? -1 : 1));
        for (let i = 0; i + 1 < copies.length && out.length < MAX_HOPS; i++) {
          out.push(hop(s, copies[i], copies[i + 1], corrected, off.has(copies[i][0]) && off.has(copies[i + 1][0]), cut));
        }
      }
    }
    return out;
  }
}

function hop(
  s: Stream,
  [from, a]: [string, Copy],
  [to, b]: [string, Copy],
  corrected: (host: string, t: number) => number,
  isCorrected: boolean,
  cut: ReadonlySet<string>,
): RtpHop {
  const toEnd = cut.has(to) ? b.lastExt : Infinity;
  const fromEnd = cut.has(from) ? a.lastExt : Infinity;
  let lost = 0;
  const transit: Array<[number, number]> = [];
  for (const [seq, ta] of a.at) {
    const tb = b.at.get(seq);
    if (tb !== undefined) transit.push([seq, corrected(to, tb) - corrected(from, ta)]);
    else if (seq <= toEnd) lost++;
  }
  let unseenUpstream = 0;
  for (const seq of b.at.keys()) if (!a.at.has(seq) && seq <= fromEnd) unseenUpstream++;
  transit.sort((x, y) => x[0] - y[0]);
  let delayMs: number | null = null;
  let delayMaxMs: number | null = null;
  let jitterAddedMeanMs: number | null = null;
  let jitterAddedMaxMs: number | null = null;
  if (transit.length > 0) {
    const d = transit.map((x) => x[1]).sort((x, y) => x - y);
    delayMs = median(d) / 1e6;
    delayMaxMs = d[d.length - 1] / 1e6;
    // RFC 3550 §6.4.1 with `from` as the sender: only what this hop changed of the spacing counts.
    let j = 0;
    let sum = 0;
    let max = 0;
    for (let i = 1; i < transit.length; i++) {
      j += (Math.abs(transit[i][1] - transit[i - 1][1]) - j) / 16;
      sum += j;
      if (j > max) max = j;
    }
    jitterAddedMeanMs = transit.length > 1 ? sum / (transit.length - 1) / 1e6 : 0;
    jitterAddedMaxMs = max / 1e6;
  }
  return {
    ssrc: s.ssrc,
    src: s.src,
    dst: s.dst,
    from,
    to,
    packets: a.at.size,
    lost,
    unseenUpstream,
    delayMs,
    delayMaxMs,
    jitterAddedMeanMs,
    jitterAddedMaxMs,
    corrected: isCorrected,
  };
}
