import { isFinalResult } from '../trace/view';
import type { MessageSummary } from '../../agent/query/engine';
import type { FullTraceMessage, TraceStream } from '../../shared/protocol/client';
import { readFullMessages } from '../../shared/decode/full-messages';
import { HOST_ATTACHMENT, resultDocId, type ResultDoc } from '../store/layout';
import type { TraceStore } from '../store/store';

export type HostMessage = MessageSummary & { host: string };

/** `ts` as nanoseconds since the epoch; null when it is not `<seconds>[.<digits>]`. */
function tsNanos(ts: string): bigint | null {
  const m = /^(\d{1,20})(?:\.(\d{1,9}))?$/.exec(ts);
  if (!m) return null;
  return BigInt(m[1]) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/**
 * Orders two message timestamps exactly: epoch seconds with nine decimals do
 * not fit a double (two packets a nanosecond apart would compare equal).
 * Malformed ones sort last, by their text.
 */
export function compareTs(a: string, b: string): number {
  const x = tsNanos(a);
  const y = tsNanos(b);
  if (x !== null && y !== null) return x < y ? -1 : x > y ? 1 : 0;
  if (x !== null) return -1;
  if (y !== null) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export type HostStream = TraceStream;

/** Every host's RTP stream figures, by first packet time, then host. */
export function mergedStreams(results: ResultDoc[]): HostStream[] {
  const all = results.flatMap((r) => (r.streams ?? []).map((s) => ({ ...s, host: r.host })));
  return all.sort((a, b) => compareTs(a.first, b.first) || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
}

/** Every host's SIP summaries in one time-ordered list; ties keep host order, then each host's own order. */
export function mergedMessages(results: ResultDoc[]): HostMessage[] {
  const all: Array<{ m: HostMessage; host: string; i: number }> = [];
  for (const r of results) {
    (r.messages ?? []).forEach((m, i) => all.push({ m: { ...m, host: r.host }, host: r.host, i }));
  }
  all.sort((a, b) => compareTs(a.m.ts, b.m.ts) || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0) || a.i - b.i);
  return all.map((x) => x.m);
}

/** Most messages decoded from the merged PCAP in one request (a message is at most FULL_MESSAGE_LIMITS.rawBytes). */
export const MAX_FULL_MESSAGES = 200;
export const DEFAULT_FULL_MESSAGES = 50;

/**
 * `page` of a trace's messages, each with its whole text, decoded from the
 * PCAP its host stored for the trace as it streams from the store: read
 * once per host, up to that host's last message of the page, never held
 * whole. The host's own PCAP rather than the merged one: two hosts that saw
 * one TCP stream interleave its segments in the merged file, where each
 * host's copy would read as the other's retransmission; per host, the
 * packets are exactly those the host's summaries were made from.
 */
export async function withFullMessages(store: TraceStore, traceId: string, results: ResultDoc[], page: HostMessage[]): Promise<{ messages: FullTraceMessage[]; note?: string }> {
  const full: Array<FullTraceMessage['full']> = page.map(() => null);
  const hosts = new Map<string, number[]>();
  for (const [i, m] of page.entries()) {
    let list = hosts.get(m.host);
    if (!list) hosts.set(m.host, (list = []));
    list.push(i);
  }
  const notes: string[] = [];
  for (const [host, idx] of hosts) {
    const r = results.find((x) => x.host === host);
    if (!r?._attachments?.[HOST_ATTACHMENT]) {
      notes.push(`${host} stored no packets for this trace${r && !isFinalResult(r.state) ? ' yet' : ''}`);
      continue;
    }
    const stream = store.getAttachmentStream(resultDocId(traceId, host), HOST_ATTACHMENT);
    const found = await readFullMessages(stream, idx.map((i) => page[i]), `${host}/${HOST_ATTACHMENT}`);
    idx.forEach((i, k) => (full[i] = found.messages[k]));
    const missing = found.messages.filter((m) => m === null).length;
    if (missing > 0) notes.push(`${missing} of ${host}'s messages are not in its PCAP (a --max-packets or --max-bytes limit cut it short)`);
  }
  const messages = page.map((m, i) => ({ ...m, full: full[i] }));
  return notes.length > 0 ? { messages, note: `some messages could not be read whole: ${notes.join('; ')}` } : { messages };
}
