import type { MessageRecord } from '../index/format';
import { Ts, cmpTs, endpointText } from '../../shared/query/query';

/*
 * A dialog's media and time span, as the exact-RTP rule (engine.ts) and the
 * linking of legs (legs.ts) read them.
 */

/** What a dialog announced for media over every message of it seen, and when it lasted. */
export interface DialogMedia {
  callId: string;
  first: Ts;
  last: Ts;
  /** Endpoints "addr:port" its SDP announced: RTP, RTCP on port + 1, and `a=rtcp` ones. */
  ends: Set<string>;
  /** Payload type -> codec per announced RTP endpoint, from the SDP's rtpmap. */
  rtpmap: Map<string, Map<number, string>>;
  ended: boolean;
  inviteOk: boolean;
  inviteFailed: boolean;
}

const FOREVER: Ts = [0xffffffff, 999_999_999];

/**
 * A dialog's span runs from its first message to its last when it was seen
 * to end (BYE, CANCEL, or an INVITE that failed and never succeeded);
 * otherwise the call may still be up and its media goes on, so the span is open.
 */
export function spanEnd(d: DialogMedia): Ts {
  return d.ended || (d.inviteFailed && !d.inviteOk) ? d.last : FOREVER;
}

export function spansOverlap(a: DialogMedia, b: DialogMedia): boolean {
  return cmpTs(a.first, spanEnd(b)) <= 0 && cmpTs(b.first, spanEnd(a)) <= 0;
}

export function addToMedia(media: Map<string, DialogMedia>, m: MessageRecord): void {
  let d = media.get(m.c);
  if (!d) media.set(m.c, (d = { callId: m.c, first: m.t, last: m.t, ends: new Set(), rtpmap: new Map(), ended: false, inviteOk: false, inviteFailed: false }));
  if (cmpTs(m.t, d.first) < 0) d.first = m.t;
  if (cmpTs(m.t, d.last) > 0) d.last = m.t;
  const cseqMethod = m.q ? m.q.slice(m.q.indexOf(' ') + 1) : null;
  if (m.m === 'BYE' || m.m === 'CANCEL') d.ended = true;
  if (m.s !== null && cseqMethod === 'INVITE') {
    if (m.s >= 200 && m.s < 300) d.inviteOk = true;
    else if (m.s >= 300) d.inviteFailed = true;
  }
  for (const [a, port] of m.sdp ?? []) {
    const rtp = endpointText(a, port);
    d.ends.add(rtp);
    d.ends.add(endpointText(a, port + 1)); // RTCP, unless a=rtcp says otherwise (added below too)
    if (m.pm) {
      const map = d.rtpmap.get(rtp) ?? d.rtpmap.set(rtp, new Map()).get(rtp)!;
      for (const [pt, codec] of m.pm) map.set(pt, codec);
    }
  }
  for (const [a, port] of m.rc ?? []) d.ends.add(endpointText(a, port));
}

export function inSpan(d: DialogMedia, ts: Ts): boolean {
  return cmpTs(ts, d.first) >= 0 && cmpTs(ts, spanEnd(d)) <= 0;
}

