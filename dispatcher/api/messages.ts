import type { MessageSummary } from '../../agent/query/engine';
import type { ResultDoc } from '../store/layout';
import type { TraceStream } from '../../shared/protocol/client';

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
