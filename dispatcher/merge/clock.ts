import type { HostClock, TraceClocks } from '../../shared/trace/vantage';
import { fmix32, networkBytes } from './dedup';

/**
 * Hosts' clock offsets from the packets two of them both captured (same
 * bytes from the IP header up but for what a router rewrites: a packet
 * leaving one host and arriving at another, or passing two capture
 * points). See docs/ARCHITECTURE.md, "One clock".
 *
 * Memory is bounded: a host keeps at most CLOCK_MAX_SAMPLES packets, chosen
 * by their hash (a packet is kept when the low bits of its hash are zero,
 * more bits as a host fills up), so every host keeps the same packets and
 * the sample is spread over the whole trace rather than its start.
 */
export const CLOCK_MAX_SAMPLES = 65_536;

interface Sample {
  /** Nanoseconds since the sampler's base second. */
  t: number;
  /** Hashes of the IP source and destination: the packet's direction. */
  s: number;
  d: number;
  /** The hash the sample was chosen by. */
  h: number;
  /** The host saw these bytes twice (a retransmission that repeats its IP header): no use for timing. */
  dup: boolean;
}

interface HostSamples {
  /** Packets kept: hash & (mod - 1) === 0. */
  mod: number;
  /** Keyed by the packet's hash. */
  map: Map<number, Sample>;
}

function fnv(b: Buffer, start: number, end: number, basis: number, prime: number): number {
  let h = basis;
  for (let i = start; i < end; i++) h = Math.imul(h ^ b[i], prime);
  return h >>> 0;
}

/**
 * Bytes of the IP header a router rewrites as it forwards: IPv4's DSCP/ECN,
 * TTL and header checksum; IPv6's traffic class and hop limit. Hashed as
 * zeros, so one packet captured before and after a router is still one.
 */
const MUTABLE_V4 = [1, 8, 10, 11];
const MUTABLE_V6 = [0, 1, 7];

/**
 * FNV-1a over a network-layer packet's length, its first 96 bytes (with the
 * router-rewritten ones as zeros; the IPv6 version nibble is kept) and its
 * last 32: the headers and the start of the payload (IP id, ports, RTP
 * sequence number and timestamp, a SIP start line) tell packets apart, and
 * hashing all of a large packet would cost the merge more than it tells.
 */
function packetHash(net: Buffer, basis: number, prime: number): number {
  const v6 = net[0] >> 4 === 6;
  const mutable = v6 ? MUTABLE_V6 : MUTABLE_V4;
  const fixedFrom = v6 ? 8 : 12;
  const headEnd = Math.min(net.length, 96);
  let h = Math.imul(basis ^ net.length, prime);
  for (let i = 0; i < fixedFrom && i < headEnd; i++) {
    let x = net[i];
    if (mutable.includes(i)) x = v6 && i === 0 ? 0x60 : 0;
    h = Math.imul(h ^ x, prime);
  }
  for (let i = fixedFrom; i < headEnd; i++) h = Math.imul(h ^ net[i], prime);
  for (let i = Math.max(headEnd, net.length - 32); i < net.length; i++) h = Math.imul(h ^ net[i], prime);
  return h >>> 0;
}

/** The IP source and destination bytes of a network-layer packet, or null for anything but IPv4 and IPv6. */
function addressRange(net: Buffer): [number, number, number] | null {
  const v = net.length > 0 ? net[0] >> 4 : 0;
  if (v === 4 && net.length >= 20) return [12, 16, 20];
  if (v === 6 && net.length >= 40) return [8, 24, 40];
  return null;
}

function median(sorted: number[]): number {
  const n = sorted.length;
  return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/** Linear interpolation between order statistics, as R's type 7. */
function quantile(sorted: number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** What two hosts' common packets say of their clocks: b's clock minus a's, in ns. */
export interface PairEstimate {
  offsetNs: number;
  spreadNs: number;
  samples: number;
  twoWay: boolean;
}

/**
 * Differences t_b - t_a of one pair's packets, by direction ("s>d"). The
 * offset is the median of one direction's differences, and with packets
 * the other way too, the mean of the two directions' medians: each
 * direction's median is offset ± the path's delay, so a path as fast one
 * way as the other cancels out (NTP's assumption).
 */
export function pairEstimate(byDir: Map<string, number[]>): PairEstimate | null {
  let best: string | null = null;
  let samples = 0;
  for (const [k, v] of byDir) {
    samples += v.length;
    if (best === null || v.length > byDir.get(best)!.length) best = k;
  }
  if (best === null || samples === 0) return null;
  const [s, d] = best.split('>');
  const fwd = byDir.get(best)!.sort((x, y) => x - y);
  const revKey = `${d}>${s}`;
  const rev = revKey !== best ? byDir.get(revKey)?.sort((x, y) => x - y) : undefined;
  const residuals: number[] = [];
  let offsetNs: number;
  if (rev && rev.length > 0) {
    const mf = median(fwd);
    const mr = median(rev);
    offsetNs = (mf + mr) / 2;
    for (const x of fwd) residuals.push(x - mf);
    for (const x of rev) residuals.push(x - mr);
  } else {
    const all = [...byDir.values()].flat().sort((x, y) => x - y);
    offsetNs = median(all);
    for (const x of all) residuals.push(x - offsetNs);
  }
  residuals.sort((x, y) => x - y);
  return { offsetNs, spreadNs: quantile(residuals, 0.75) - quantile(residuals, 0.25), samples, twoWay: Boolean(rev && rev.length > 0) };
}

export class ClockSampler {
  private readonly hosts = new Map<string, HostSamples>();
  private baseSec: number | null = null;

  /** One packet a host kept (after its own duplicates are left out). */
  observe(host: string, linkType: number, data: Buffer, tsSec: number, tsNsec: number): void {
    const net = networkBytes(linkType, data);
    const a = addressRange(net);
    if (!a) return;
    // Mixed: FNV-1a's low bits are poor (its lowest is the parity of the bytes), and they choose the sample.
    const h2 = fmix32(packetHash(net, 0x050c5d1f, 0x01000193));
    let hs = this.hosts.get(host);
    if (!hs) this.hosts.set(host, (hs = { mod: 1, map: new Map() }));
    if ((h2 & (hs.mod - 1)) !== 0) return;
    const h1 = packetHash(net, 0x811c9dc5, 0x01000193);
    // 52 bits of two hashes: a chance collision among a host's samples is ~1e-6.
    const key = h1 * 1048576 + (h2 >>> 12);
    const old = hs.map.get(key);
    if (old) {
      old.dup = true;
      return;
    }
    this.baseSec ??= tsSec;
    hs.map.set(key, { t: (tsSec - this.baseSec) * 1e9 + tsNsec, s: fnv(net, a[0], a[1], 0x811c9dc5, 0x01000193), d: fnv(net, a[1], a[2], 0x811c9dc5, 0x01000193), h: h2, dup: false });
    // Bounded: each turn halves what is kept; 32 turns keep nothing.
    for (let turn = 0; hs.map.size > CLOCK_MAX_SAMPLES && turn < 32; turn++) {
      hs.mod *= 2;
      for (const [k, x] of hs.map) if ((x.h & (hs.mod - 1)) !== 0) hs.map.delete(k);
    }
  }

  /**
   * Every host's offset against the reference (the host sharing the most
   * packets with the others), placing hosts one at a time by the pair with
   * the most common packets between a placed host and an unplaced one.
   * Null when no two hosts share a packet.
   */
  estimate(hostsInOrder: string[]): TraceClocks | null {
    const names = [...this.hosts.keys()];
    if (names.length < 2) return null;
    // A host that kept fewer packets (a larger mod) bounds what the others can match with it; the rest is just unmatched.
    // Per packet, the hosts that saw it; only packets on two or more make pairs.
    const seen = new Map<number, Array<{ host: number; x: Sample }>>();
    names.forEach((n, i) => {
      for (const [k, x] of this.hosts.get(n)!.map) {
        if (x.dup) continue;
        let l = seen.get(k);
        if (!l) seen.set(k, (l = []));
        l.push({ host: i, x });
      }
    });
    const pairs = new Map<string, Map<string, number[]>>();
    for (const l of seen.values()) {
      if (l.length < 2) continue;
      for (let i = 0; i < l.length; i++) {
        for (let j = i + 1; j < l.length; j++) {
          const [a, b] = l[i].host < l[j].host ? [l[i], l[j]] : [l[j], l[i]];
          const pk = `${a.host},${b.host}`;
          let byDir = pairs.get(pk);
          if (!byDir) pairs.set(pk, (byDir = new Map()));
          const dk = `${a.x.s}>${a.x.d}`;
          let v = byDir.get(dk);
          if (!v) byDir.set(dk, (v = []));
          v.push(b.x.t - a.x.t);
        }
      }
    }
    if (pairs.size === 0) return null;
    const est: Array<{ a: number; b: number; e: PairEstimate }> = [];
    const total = new Array<number>(names.length).fill(0);
    for (const [pk, byDir] of pairs) {
      const e = pairEstimate(byDir);
      if (!e) continue;
      const [a, b] = pk.split(',').map(Number);
      est.push({ a, b, e });
      total[a] += e.samples;
      total[b] += e.samples;
    }
    let ref = 0;
    for (let i = 1; i < names.length; i++) if (total[i] > total[ref] || (total[i] === total[ref] && names[i] < names[ref])) ref = i;
    const placed = new Map<number, HostClock>();
    const offsetNs = new Map<number, number>([[ref, 0]]);
    placed.set(ref, { host: names[ref], offsetMs: 0, spreadMs: null, samples: total[ref], against: null, twoWay: false });
    // Each turn places one host or stops: at most names.length turns.
    for (let turn = 0; turn < names.length; turn++) {
      let pick: { from: number; to: number; off: number; e: PairEstimate } | null = null;
      for (const { a, b, e } of est) {
        const aIn = offsetNs.has(a);
        const bIn = offsetNs.has(b);
        if (aIn === bIn) continue;
        if (pick && pick.e.samples >= e.samples) continue;
        // e.offsetNs is b's clock minus a's.
        pick = aIn ? { from: a, to: b, off: offsetNs.get(a)! + e.offsetNs, e } : { from: b, to: a, off: offsetNs.get(b)! - e.offsetNs, e };
      }
      if (!pick) break;
      offsetNs.set(pick.to, pick.off);
      placed.set(pick.to, { host: names[pick.to], offsetMs: pick.off / 1e6, spreadMs: pick.e.spreadNs / 1e6, samples: pick.e.samples, against: names[pick.from], twoWay: pick.e.twoWay });
    }
    const byName = new Map([...placed.values()].map((c) => [c.host, c]));
    const order = [...new Set([...hostsInOrder, ...names])];
    return {
      reference: names[ref],
      hosts: order.map((h) => byName.get(h) ?? { host: h, offsetMs: null, spreadMs: null, samples: 0, against: null, twoWay: false }),
      aligned: false,
    };
  }
}
