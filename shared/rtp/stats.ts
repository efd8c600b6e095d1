import { MAX_STREAM_EVENTS, MAX_STREAM_POINTS, type RtpEvent, type RtpStreamFigures } from './figures';

/**
 * Per-stream RTP figures from packets given in arrival order: sequence
 * accounting (RFC 3550 A.1 extended sequence numbers), interarrival jitter
 * (RFC 3550 §6.4.1), RFC 4733 telephone events and an ITU-T G.107 E-model
 * estimate. Pure: the agent feeds it from its ring (agent/query/rtp-streams.ts),
 * tests from captures.
 */

export interface RtpHeader {
  marker: boolean;
  payloadType: number;
  seq: number;
  timestamp: number;
  ssrc: number;
  /** Where the payload starts (after CSRCs and the header extension). */
  payloadOffset: number;
}

/**
 * The RTP fixed header of a UDP payload, or null when it is not RTP version 2
 * or is RTCP multiplexed on the port (RFC 5761: second byte 192..223 minus
 * the marker bit gives payload types 64..95, which RTP does not use).
 */
export function parseRtpHeader(b: Buffer): RtpHeader | null {
  if (b.length < 12 || b[0] >> 6 !== 2) return null;
  const pt = b[1] & 0x7f;
  if (pt >= 64 && pt <= 95) return null;
  let off = 12 + (b[0] & 0x0f) * 4;
  if (b[0] & 0x10) {
    if (b.length < off + 4) return null;
    off += 4 + b.readUInt16BE(off + 2) * 4;
  }
  if (off > b.length) return null;
  return { marker: (b[1] & 0x80) !== 0, payloadType: pt, seq: b.readUInt16BE(2), timestamp: b.readUInt32BE(4), ssrc: b.readUInt32BE(8), payloadOffset: off };
}

/** Whether a UDP payload is RTCP (RFC 3550: version 2, packet type SR..APP, its first packet whole). */
export function isRtcp(b: Buffer): boolean {
  return b.length >= 8 && b[0] >> 6 === 2 && b[1] >= 200 && b[1] <= 204 && 4 * (b.readUInt16BE(2) + 1) <= b.length;
}

/** RFC 3551 static payload types, for streams whose SDP has no rtpmap for them. */
const STATIC_PT: Record<number, string> = {
  0: 'PCMU/8000', 3: 'GSM/8000', 4: 'G723/8000', 5: 'DVI4/8000', 6: 'DVI4/16000', 7: 'LPC/8000', 8: 'PCMA/8000', 9: 'G722/8000',
  10: 'L16/44100/2', 11: 'L16/44100', 12: 'QCELP/8000', 13: 'CN/8000', 14: 'MPA/90000', 15: 'G728/8000', 16: 'DVI4/11025',
  17: 'DVI4/22050', 18: 'G729/8000', 25: 'CelB/90000', 26: 'JPEG/90000', 28: 'nv/90000', 31: 'H261/90000', 32: 'MPV/90000',
  33: 'MP2T/90000', 34: 'H263/90000',
};

export function staticCodec(pt: number): string | null {
  return STATIC_PT[pt] ?? null;
}

function clockRate(codec: string | null): number | null {
  const m = codec ? /^[^/]+\/(\d{3,6})/.exec(codec) : null;
  return m ? Number(m[1]) : null;
}

function codecName(codec: string | null): string {
  return codec ? codec.slice(0, codec.indexOf('/') >>> 0).toUpperCase() : '';
}

/**
 * E-model equipment impairment Ie and packet-loss robustness Bpl per codec
 * (ITU-T G.113 Appendix I; G.722 and Opus put on the narrowband scale as
 * G.711 with PLC: an approximation, said so in docs/ARCHITECTURE.md).
 */
const EMODEL: Record<string, { ie: number; bpl: number }> = {
  PCMU: { ie: 0, bpl: 25.1 },
  PCMA: { ie: 0, bpl: 25.1 },
  G722: { ie: 0, bpl: 25.1 },
  OPUS: { ie: 0, bpl: 25.1 },
  G729: { ie: 11, bpl: 19 },
  G729A: { ie: 11, bpl: 19 },
};
/** Packetisation assumed in the mouth-to-ear delay, ms: the common 20 ms frame. */
const EMODEL_FRAME_MS = 20;

/**
 * R-factor and MOS from loss and jitter: R = 93.2 - Id - Ie,eff with
 * Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl + Bpl) (random loss, BurstR 1) and
 * Id = 0.024 Ta + 0.11 (Ta - 177.3) H(Ta - 177.3), Ta = frame + a jitter
 * buffer of twice the largest jitter (the network's own delay is not seen
 * from one capture point); MOS per G.107 Annex B.
 */
export function eModel(codec: string | null, lossPct: number, jitterMaxMs: number | null): { rFactor: number; mos: number } | null {
  const c = EMODEL[codecName(codec)];
  if (!c) return null;
  const ta = EMODEL_FRAME_MS + 2 * (jitterMaxMs ?? 0);
  const id = 0.024 * ta + (ta > 177.3 ? 0.11 * (ta - 177.3) : 0);
  const ieEff = c.ie + ((95 - c.ie) * lossPct) / (lossPct + c.bpl);
  const r = Math.min(100, Math.max(0, 93.2 - id - ieEff));
  const mos = r <= 0 ? 1 : r >= 100 ? 4.5 : Math.min(4.5, Math.max(1, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6));
  return { rFactor: round(r, 2), mos: round(mos, 2) };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

const EVENT_NAMES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D', 'flash'];

function tsString(sec: number, nsec: number): string {
  return `${sec}.${String(nsec).padStart(9, '0')}`;
}

interface StreamState {
  ssrc: number;
  callId: string | undefined;
  src: string;
  dst: string;
  pt: number;
  codec: string | null;
  clock: number | null;
  eventPt: boolean;
  sec0: number;
  nsec0: number;
  lastSec: number;
  lastNsec: number;
  packets: number;
  maxExt: number;
  minExt: number;
  seen: Set<number>;
  duplicated: number;
  outOfOrder: number;
  prevArrival: number;
  maxGap: number;
  prevTs: number;
  jitter: number;
  jitterSum: number;
  jitterN: number;
  jitterMax: number;
  /** Telephone events by RTP timestamp (one event, many packets). */
  events: Map<number, RtpEvent>;
  /** Bucket index -> [highest jitter, lost]. */
  buckets: Map<number, [number, number]>;
}

/** How a packet's payload type is named: its dialog's SDP rtpmap (null when it has none for it). */
export type CodecLookup = (payloadType: number) => string | null;

const BUCKET_MS = 1000;

export class RtpStreamStats {
  private readonly streams = new Map<string, StreamState>();


  get size(): number {
    return this.streams.size;
  }

  /**
   * One UDP datagram, in arrival order; what is not RTP is ignored (false).
   * `src` and `dst` are "addr:port"; `callId` the dialog the packet was selected for.
   */
  push(sec: number, nsec: number, src: string, dst: string, payload: Buffer, codecOf: CodecLookup = () => null, callId?: string): boolean {
    const h = parseRtpHeader(payload);
    if (!h) return false;
    const key = `${h.ssrc}|${src}|${dst}`;
    let s = this.streams.get(key);
    const eventCodec = (pt: number) => codecOf(pt) ?? staticCodec(pt);
    if (!s) {
      const codec = eventCodec(h.payloadType);
      s = {
        ssrc: h.ssrc, callId, src, dst, pt: h.payloadType, codec, clock: clockRate(codec), eventPt: /^telephone-event\//i.test(codec ?? ''),
        sec0: sec, nsec0: nsec, lastSec: sec, lastNsec: nsec, packets: 0, maxExt: h.seq, minExt: h.seq, seen: new Set(),
        duplicated: 0, outOfOrder: 0, prevArrival: 0, maxGap: 0, prevTs: h.timestamp, jitter: 0, jitterSum: 0, jitterN: 0, jitterMax: 0,
        events: new Map(), buckets: new Map(),
      };
      this.streams.set(key, s);
    }
    // A stream that opens with a telephone event takes the media payload type once one comes.
    if (s.eventPt && h.payloadType !== s.pt) {
      const codec = eventCodec(h.payloadType);
      if (!/^telephone-event\//i.test(codec ?? '')) Object.assign(s, { pt: h.payloadType, codec, clock: clockRate(codec), eventPt: false });
    }
    const arrival = (sec - s.sec0) * 1000 + (nsec - s.nsec0) / 1e6;
    const bucket = Math.floor(arrival / BUCKET_MS);
    let b = s.buckets.get(bucket);
    if (!b) s.buckets.set(bucket, (b = [0, 0]));

    // Extended sequence number: the one nearest the highest so far (RFC 3550 A.1).
    const delta = ((h.seq - (s.maxExt & 0xffff) + 0x8000) & 0xffff) - 0x8000;
    const ext = s.packets === 0 ? h.seq : s.maxExt + delta;
    if (s.seen.has(ext)) s.duplicated++;
    else {
      s.seen.add(ext);
      if (s.packets > 0 && ext < s.maxExt) {
        s.outOfOrder++;
        // It was counted lost when the gap opened.
        b[1] = Math.max(0, b[1] - 1);
      }
    }
    if (s.packets > 0 && ext > s.maxExt + 1) b[1] += ext - s.maxExt - 1;
    if (ext > s.maxExt) s.maxExt = ext;
    if (ext < s.minExt) s.minExt = ext;

    const isEvent = /^telephone-event\//i.test(eventCodec(h.payloadType) ?? '');
    if (isEvent && payload.length >= h.payloadOffset + 4) {
      const e = payload[h.payloadOffset];
      const duration = payload.readUInt16BE(h.payloadOffset + 2);
      const rate = clockRate(eventCodec(h.payloadType)) ?? 8000;
      const known = s.events.get(h.timestamp);
      if (known) known.durationMs = Math.max(known.durationMs, (duration * 1000) / rate);
      else if (s.events.size < 10_000) s.events.set(h.timestamp, { event: EVENT_NAMES[e] ?? String(e), ts: tsString(sec, nsec), durationMs: (duration * 1000) / rate });
    }

    if (s.packets > 0) {
      const gap = arrival - s.prevArrival;
      if (gap > s.maxGap) s.maxGap = gap;
      // Jitter over the media packets only: events and comfort noise keep other timestamps.
      if (s.clock !== null && h.payloadType === s.pt && !s.eventPt) {
        const tsDelta = ((h.timestamp - s.prevTs) | 0) / s.clock * 1000;
        const d = Math.abs(gap - tsDelta);
        s.jitter += (d - s.jitter) / 16;
        s.jitterSum += s.jitter;
        s.jitterN++;
        if (s.jitter > s.jitterMax) s.jitterMax = s.jitter;
        if (s.jitter > b[0]) b[0] = s.jitter;
      }
    }
    if (h.payloadType === s.pt) s.prevTs = h.timestamp;
    s.prevArrival = arrival;
    s.lastSec = sec;
    s.lastNsec = nsec;
    s.packets++;
    return true;
  }

  /** The figures of every stream, by first packet time. */
  figures(): RtpStreamFigures[] {
    const out: Array<{ t: number; f: RtpStreamFigures }> = [];
    for (const s of this.streams.values()) {
      const expected = s.maxExt - s.minExt + 1;
      const lost = Math.max(0, expected - s.seen.size);
      const jitterMean = s.clock === null ? null : s.jitterN ? s.jitterSum / s.jitterN : 0;
      const jitterMax = s.clock === null ? null : s.jitterMax;
      const q = eModel(s.codec, expected > 0 ? (100 * lost) / expected : 0, jitterMax);
      const events = [...s.events.values()];
      out.push({ t: s.sec0 + s.nsec0 / 1e9, f: {
        ssrc: `0x${s.ssrc.toString(16).padStart(8, '0')}`,
        src: s.src,
        dst: s.dst,
        payloadType: s.pt,
        ...(s.callId !== undefined ? { callId: s.callId } : {}),
        codec: s.codec,
        first: tsString(s.sec0, s.nsec0),
        last: tsString(s.lastSec, s.lastNsec),
        packets: s.packets,
        expected,
        lost,
        duplicated: s.duplicated,
        outOfOrder: s.outOfOrder,
        maxGapMs: round(s.maxGap, 3),
        jitterMeanMs: jitterMean === null ? null : round(jitterMean, 3),
        jitterMaxMs: jitterMax === null ? null : round(jitterMax, 3),
        events: events.slice(0, MAX_STREAM_EVENTS).map((e) => ({ ...e, durationMs: round(e.durationMs, 3) })),
        eventCount: events.length,
        rFactor: q?.rFactor ?? null,
        mos: q?.mos ?? null,
        series: series(s.buckets),
      } });
    }
    return out.sort((a, b) => a.t - b.t).map((x) => x.f);
  }
}

/** The per-second buckets, merged into wider ones until at most MAX_STREAM_POINTS remain. */
function series(buckets: Map<number, [number, number]>): RtpStreamFigures['series'] {
  const last = Math.max(0, ...buckets.keys());
  const factor = Math.max(1, Math.ceil((last + 1) / MAX_STREAM_POINTS));
  const merged = new Map<number, [number, number]>();
  for (const [i, [j, l]] of buckets) {
    const k = Math.floor(i / factor);
    const m = merged.get(k);
    if (m) {
      m[0] = Math.max(m[0], j);
      m[1] += l;
    } else merged.set(k, [j, l]);
  }
  const bucketMs = BUCKET_MS * factor;
  const points = [...merged.entries()].sort((a, b) => a[0] - b[0]).map(([k, [j, l]]) => ({ t: (k * bucketMs) / 1000, jitterMs: round(j, 3), lost: l }));
  return { bucketMs, points };
}
