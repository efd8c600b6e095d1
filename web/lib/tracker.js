/*
 * A trace's state put together from trace:watch acks, trace:update events
 * and REST reads, which arrive in any order: a final state is never replaced
 * by a running one, and a newer report replaces an older one (the same rules
 * as the CLI's cli/trace-state.ts).
 */

export const FINAL_HOST = new Set(['done', 'error', 'unreachable', 'lost', 'cancelled']);
export const FINAL_TRACE = new Set(['done', 'partial', 'failed', 'cancelled', 'interrupted']);

function newer(cur, next, finals) {
  if (finals.has(cur.state)) return false;
  if (finals.has(next.state)) return true;
  return next.at >= cur.at;
}

export class TraceTracker {
  /** view: a TraceView. */
  constructor(view) {
    this.id = view.id;
    this.request = view.request;
    this.user = view.user;
    this.createdAt = view.createdAt;
    this.finishedAt = view.finishedAt;
    this.state = view.state;
    this.stateAt = view.finishedAt ?? view.createdAt;
    this.merged = view.merged;
    // A finished trace opened from History has them from the start.
    this.clocks = view.clocks ?? null;
    this.hops = view.hops ?? null;
    this.hosts = new Map();
    for (const hv of view.hosts) this.hosts.set(hv.host, { ...hv, at: hv.updatedAt });
  }

  get final() {
    return FINAL_TRACE.has(this.state);
  }

  /** Every host finished but the trace is not: the dispatcher is merging. */
  get merging() {
    return !this.final && this.hosts.size > 0 && [...this.hosts.values()].every((x) => FINAL_HOST.has(x.state));
  }

  /** Takes a newer TraceView (a watch ack or a REST read). */
  applyView(view) {
    if (view.id !== this.id) return;
    this.setTrace(view.state, view.finishedAt ?? view.createdAt, view.merged, view.finishedAt);
    // Set by the merge, so only ever on a finished trace's view.
    if (view.clocks) this.clocks = view.clocks;
    if (view.hops) this.hops = view.hops;
    for (const hv of view.hosts) this.setHost({ ...hv, at: hv.updatedAt });
  }

  /** Takes one trace:update; true when it changed something. */
  applyUpdate(u) {
    if (!u || u.traceId !== this.id) return false;
    if (u.host === null) return this.setTrace(u.state, u.at, u.merged, FINAL_TRACE.has(u.state) ? u.at : undefined);
    return this.setHost({
      host: u.host,
      state: u.state,
      packets: u.packets,
      bytes: u.bytes,
      truncated: u.truncated ?? false,
      error: u.error,
      at: u.at,
    });
  }

  setTrace(state, at, merged, finishedAt) {
    if (!newer({ state: this.state, at: this.stateAt }, { state, at }, FINAL_TRACE)) {
      if (merged && !this.merged) this.merged = merged;
      return false;
    }
    this.state = state;
    this.stateAt = at;
    if (merged) this.merged = merged;
    if (finishedAt) this.finishedAt = finishedAt;
    return true;
  }

  setHost(next) {
    const cur = this.hosts.get(next.host);
    if (cur && !newer(cur, next, FINAL_HOST)) {
      // A REST read after the final update may add what the update lacked (stored).
      if (cur.state === next.state && next.stored && !cur.stored) cur.stored = true;
      return false;
    }
    this.hosts.set(next.host, { ...cur, ...next, stored: next.stored ?? cur?.stored ?? false });
    return true;
  }
}
