import type { HostView, TraceView } from '../../shared/protocol/client';
import type { TraceRequest } from '../../shared/query/query';
import { HOST_ATTACHMENT, ResultDoc, TraceDoc, TraceState } from '../store/layout';

/** A trace as clients see it: the trace doc, each asked host's result (or live state where newer). */
export function traceView(trace: TraceDoc, results: ResultDoc[], live?: Map<string, HostView>): TraceView {
  const byHost = new Map(results.map((r) => [r.host, r]));
  const hosts: HostView[] = trace.hosts.map((host) => {
    const r = byHost.get(host);
    const stored: HostView = r
      ? {
          host,
          state: r.state,
          packets: r.packets,
          bytes: r.bytes,
          truncated: r.truncated,
          ...(r.error !== undefined ? { error: r.error } : {}),
          stored: Boolean(r._attachments?.[HOST_ATTACHMENT]),
          updatedAt: r.updatedAt,
        }
      : { host, state: 'queued', packets: 0, bytes: 0, truncated: false, stored: false, updatedAt: trace.createdAt };
    const l = live?.get(host);
    // The store only hears of a host when it finishes; until then this dispatcher's live state is newer.
    return l && !isFinalResult(stored.state) ? { ...l, stored: stored.stored } : stored;
  });
  return {
    id: trace.id,
    request: trace.request as TraceRequest,
    user: trace.user,
    createdAt: trace.createdAt,
    ...(trace.finishedAt ? { finishedAt: trace.finishedAt } : {}),
    state: trace.state,
    hosts,
    ...(trace.merged ? { merged: { packets: trace.merged.packets, bytes: trace.merged.bytes, duplicates: trace.merged.duplicates ?? 0 } } : {}),
    ...(trace.clocks ? { clocks: trace.clocks } : {}),
    ...(trace.hops ? { hops: trace.hops } : {}),
  };
}

export function isFinalResult(state: string): boolean {
  return state === 'done' || state === 'error' || state === 'unreachable' || state === 'lost' || state === 'cancelled';
}

/** The trace's overall state from its hosts' final states. */
export function traceOutcome(states: string[]): TraceState {
  if (states.includes('cancelled')) return 'cancelled';
  const done = states.filter((s) => s === 'done').length;
  if (states.length > 0 && done === states.length) return 'done';
  return done > 0 ? 'partial' : 'failed';
}
