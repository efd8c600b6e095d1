import { MinHeap } from '../../shared/heap/min-heap';
import { ethernet, ipv4, udp, ETH_IPV4 } from '../../test/support/packets';
import { RTP_G711_LEN, rtpPacket as rtp } from './rtp';

/**
 * Overlapping G.711 calls for the RTP benchmarks: per call an INVITE whose
 * SDP offers the caller's media port, a 200 OK whose SDP answers with the
 * media server's, RTP both ways every 20 ms (172-byte RTP payloads: a 12-byte
 * header and 160 bytes of PCMA), then BYE and its 200 OK. Frames come in time
 * order (a heap of the calls on their next event), so a file of any length is
 * written without holding it; bench:rtp (bench/query/rtp.ts) writes them as
 * they come, bench:capture mixes them with bench/common/sipgen.ts signalling.
 */

export interface RtpCallsOptions {
  calls: number;
  /** Media seconds per call: 50 RTP packets a second each way. */
  rtpSeconds: number;
  /** Between the starts of two consecutive calls, in ns: concurrency is about (rtpSeconds + 40 ms) / spacing. */
  spacingNs: number;
  /** The SIP hops (5060 -> 5060), A sending the requests. */
  sipA: string;
  sipB: string;
  /** The media server: the answer's c= address. */
  media: string;
  /** First two octets of the callers' media addresses: call c's is `${callerNet}.${c >> 8 & 255}.${c & 255}`. */
  callerNet: string;
}

/** One call's dialog and media ends, as its SDP announces them. */
export interface RtpCall {
  index: number;
  callId: string;
  caller: string;
  callerPort: number;
  media: string;
  mediaPort: number;
}

export interface CallFrame {
  /** ns from the first call's INVITE. */
  ns: number;
  frame: Buffer;
  call: number;
  /** SIP or RTP. */
  sip: boolean;
  /** The call's last frame (the 200 OK to its BYE). */
  last: boolean;
}

export const RTP_PAYLOAD_BYTES = RTP_G711_LEN;
const PACKET_NS = 20_000_000;
/** The reverse stream's packets follow the forward one's by this much. */
const REVERSE_NS = 500_000;

export function rtpCall(o: RtpCallsOptions, c: number): RtpCall {
  return {
    index: c,
    callId: `bench-${c}`,
    caller: `${o.callerNet}.${(c >> 8) & 0xff}.${c & 0xff}`,
    callerPort: 20000 + 2 * (c % 1000),
    media: o.media,
    mediaPort: 30000 + 2 * (c % 5000),
  };
}

/** The UDP port ranges the calls' media uses (for an agent's --rtp-ports, a dissector's -d). */
export const RTP_CALL_PORTS: ReadonlyArray<[number, number]> = [
  [20000, 21999],
  [30000, 39999],
];

function sip(o: RtpCallsOptions, start: string, callId: string, cseq: string, body = ''): Buffer {
  return Buffer.from(
    `${start}\r\nVia: SIP/2.0/UDP ${o.sipA};branch=z9hG4bK${callId}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: ${callId}\r\nCSeq: ${cseq}\r\n` +
      `${body ? 'Content-Type: application/sdp\r\n' : ''}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    'latin1',
  );
}

const sdp = (a: string, p: number) => `v=0\r\no=- 1 1 IN IP4 ${a}\r\ns=-\r\nc=IN IP4 ${a}\r\nt=0 0\r\nm=audio ${p} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n`;
const frame = (s: string, d: string, sp: number, dp: number, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src: s, dst: d, proto: 17 }, udp(sp, dp, payload)));

interface Live {
  call: RtpCall;
  start: number;
  /** Next event: 0 INVITE, 1 its 200 OK, 2.. RTP (forward, reverse alternately), then BYE and its 200 OK. */
  k: number;
  next: number;
}

/** Every frame of the calls, in time order (ties: lower call first). */
export function* rtpCallFrames(o: RtpCallsOptions): Generator<CallFrame> {
  const n = o.rtpSeconds * 50;
  const rtpEvents = 2 * n;
  const bye = 2 + rtpEvents;
  const endNs = Math.round(30_000_000 + o.rtpSeconds * 1e9);
  const at = (l: Live, k: number): number =>
    k === 0 ? l.start
      : k === 1 ? l.start + 10_000_000
        : k < bye ? l.start + 20_000_000 + ((k - 2) >> 1) * PACKET_NS + ((k - 2) & 1) * REVERSE_NS
          : l.start + endNs + (k - bye) * 10_000_000;
  const heap = new MinHeap<Live>((a, b) => a.next < b.next || (a.next === b.next && a.call.index < b.call.index));
  let started = 0;
  const startNext = () => {
    const l: Live = { call: rtpCall(o, started), start: started * o.spacingNs, k: 0, next: started * o.spacingNs };
    started++;
    heap.push(l);
  };
  if (o.calls > 0) startNext();
  for (;;) {
    if (started < o.calls && (heap.size === 0 || started * o.spacingNs <= heap.peek()!.next)) {
      startNext();
      continue;
    }
    const l = heap.pop();
    if (!l) return;
    const c = l.call;
    let f: Buffer;
    const isSip = l.k < 2 || l.k >= bye;
    if (l.k === 0) f = frame(o.sipA, o.sipB, 5060, 5060, sip(o, 'INVITE sip:b@y SIP/2.0', c.callId, '1 INVITE', sdp(c.caller, c.callerPort)));
    else if (l.k === 1) f = frame(o.sipB, o.sipA, 5060, 5060, sip(o, 'SIP/2.0 200 OK', c.callId, '1 INVITE', sdp(c.media, c.mediaPort)));
    else if (l.k < bye) {
      const i = (l.k - 2) >> 1;
      f = (l.k - 2) & 1
        ? frame(c.media, c.caller, c.mediaPort, c.callerPort, rtp(i, i * 160, c.index + 0x10000))
        : frame(c.caller, c.media, c.callerPort, c.mediaPort, rtp(i, i * 160, c.index));
    } else if (l.k === bye) f = frame(o.sipA, o.sipB, 5060, 5060, sip(o, 'BYE sip:b@y SIP/2.0', c.callId, '2 BYE'));
    else f = frame(o.sipB, o.sipA, 5060, 5060, sip(o, 'SIP/2.0 200 OK', c.callId, '2 BYE'));
    const last = l.k === bye + 1;
    yield { ns: l.next, frame: f, call: c.index, sip: isSip, last };
    if (!last) {
      l.k++;
      l.next = at(l, l.k);
      heap.push(l);
    }
  }
}

/** Frames per call: four SIP messages and the RTP both ways. */
export function framesPerCall(rtpSeconds: number): { sip: number; rtp: number } {
  return { sip: 4, rtp: 2 * rtpSeconds * 50 };
}
