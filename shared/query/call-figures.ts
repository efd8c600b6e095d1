import { z } from 'zod';
import type { MessageSummary } from './query';

/*
 * Per dialog, as one host saw it: how the call ended and how long its steps
 * took, from the message summaries alone (times are the hosts' capture
 * times; the last packet of each message).
 *
 * - The setup INVITE is the dialog's first INVITE; when it is challenged
 *   (401/407) and sent again with a new CSeq, the figures follow the last
 *   attempt, but delays are counted from the first INVITE, as the caller
 *   waits from there.
 * - srdMs (RFC 6076 §4.2 Session Request Delay; post-dial delay): first
 *   INVITE to the first 18x of the setup attempt, or to its final response
 *   when no 18x came. answerMs: first INVITE to the 2xx.
 * - durationMs: the 2xx to the first BYE (RFC 6076 §4.6 Session Duration).
 * - endedBy: who sent the BYE or CANCEL ('caller' is the INVITE's source,
 *   'callee' its destination), or 'callee' for a final failure response;
 *   null while the call is up or when nothing ended it in the capture.
 * - retransmissions: a request or response seen again by the same host with
 *   the same direction, CSeq and method or status (RFC 3261 §17): the same
 *   message sent again by its transaction.
 */

export const callFigures = z.object({
  callId: z.string(),
  host: z.string(),
  caller: z.string().nullable(),
  callee: z.string().nullable(),
  /** The setup INVITE's final response: code and reason; null when none was seen. */
  finalStatus: z.number().int().nullable(),
  finalReason: z.string().nullable(),
  endedBy: z.enum(['caller', 'callee']).nullable(),
  /** BYE or CANCEL, or the final failure status (e.g. '486'), when endedBy is set. */
  endedWith: z.string().nullable(),
  srdMs: z.number().nullable(),
  answerMs: z.number().nullable(),
  durationMs: z.number().nullable(),
  retransmissions: z.number().int().nonnegative(),
  messages: z.number().int().nonnegative(),
});
export type CallFigures = z.infer<typeof callFigures>;

type Msg = Pick<MessageSummary, 'ts' | 'src' | 'dst' | 'method' | 'status' | 'reason' | 'callId' | 'cseq'> & { host?: string };

/** ts ('<seconds>.<nanoseconds>') minus ts, in milliseconds (exact to the nanosecond before the division). */
function msBetween(a: string, b: string): number {
  const ns = (t: string): bigint => {
    const [s, f = ''] = t.split('.');
    return BigInt(s) * 1_000_000_000n + BigInt(f.padEnd(9, '0').slice(0, 9));
  };
  return Number(ns(b) - ns(a)) / 1e6;
}

/** The address of `host:port` or `[v6]:port`, so a BYE from another port of the caller (a TCP connection of its own) is still the caller's. */
function addressOf(endpoint: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(endpoint) ?? /^(.*):\d+$/.exec(endpoint);
  return m ? m[1] : endpoint;
}

function cseqOf(m: Msg): { seq: string; method: string } | null {
  if (!m.cseq) return null;
  const sp = m.cseq.indexOf(' ');
  return sp < 0 ? null : { seq: m.cseq.slice(0, sp), method: m.cseq.slice(sp + 1).toUpperCase() };
}

/** Figures of every dialog with an INVITE, per host, in the order of their first INVITE; `messages` in time order. */
export function callFiguresOf(messages: readonly Msg[]): CallFigures[] {
  const groups = new Map<string, Msg[]>();
  for (const m of messages) {
    const key = `${m.host ?? ''}\u0000${m.callId}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(m);
  }
  const out: CallFigures[] = [];
  for (const g of groups.values()) {
    const f = figures(g);
    if (f) out.push(f);
  }
  return out;
}

function figures(g: Msg[]): CallFigures | null {
  const first = g.find((m) => m.method === 'INVITE');
  if (!first) return null;
  const seen = new Set<string>();
  let retransmissions = 0;
  for (const m of g) {
    const k = `${m.src}>${m.dst} ${m.cseq ?? ''} ${m.method ?? m.status}`;
    if (seen.has(k)) retransmissions++;
    else seen.add(k);
  }
  const caller = first.src;
  const callee = first.dst;
  // The setup attempts: INVITEs from the caller before any 2xx to an INVITE, by CSeq.
  const finals = new Map<string, Msg>();
  const provisional = new Map<string, Msg>();
  for (const m of g) {
    const c = cseqOf(m);
    if (m.status === null || !c || c.method !== 'INVITE') continue;
    if (m.status >= 180 && m.status < 200 && !provisional.has(c.seq)) provisional.set(c.seq, m);
    if (m.status >= 200 && !finals.has(c.seq)) finals.set(c.seq, m);
  }
  let setup = cseqOf(first)?.seq ?? null;
  for (const m of g) {
    const c = cseqOf(m);
    if (m.method !== 'INVITE' || m.src !== caller || !c || c.seq === setup) continue;
    const prev = setup === null ? undefined : finals.get(setup);
    // A new CSeq after a challenge is the same setup sent again with credentials.
    if (prev && (prev.status === 401 || prev.status === 407)) setup = c.seq;
  }
  const final = setup === null ? undefined : finals.get(setup);
  const ringing = setup === null ? undefined : provisional.get(setup);
  const srdTo = ringing ?? final;
  const answered = final !== undefined && final.status !== null && final.status < 300;
  let endedBy: CallFigures['endedBy'] = null;
  let endedWith: string | null = null;
  let durationMs: number | null = null;
  const ender = g.find((m) => m.method === 'BYE' || (m.method === 'CANCEL' && !answered));
  if (ender) {
    const from = addressOf(ender.src);
    endedBy = from === addressOf(caller) ? 'caller' : from === addressOf(callee) ? 'callee' : addressOf(ender.dst) === addressOf(caller) ? 'callee' : 'caller';
    endedWith = ender.method;
    if (answered && final && ender.method === 'BYE') durationMs = msBetween(final.ts, ender.ts);
  } else if (final && final.status !== null && final.status >= 300) {
    endedBy = 'callee';
    endedWith = String(final.status);
  }
  return {
    callId: first.callId,
    host: first.host ?? '',
    caller,
    callee,
    finalStatus: final?.status ?? null,
    finalReason: final?.reason ?? null,
    endedBy,
    endedWith,
    srdMs: srdTo ? msBetween(first.ts, srdTo.ts) : null,
    answerMs: answered && final ? msBetween(first.ts, final.ts) : null,
    durationMs,
    retransmissions,
    messages: g.length,
  };
}
