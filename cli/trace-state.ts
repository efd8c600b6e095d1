import { FINAL_RESULT_STATES, TRACE_STATES, TraceUpdate, TraceView } from '../shared/protocol/client';

/*
 * A trace's state as the CLI sees it, put together from three sources that
 * arrive in any order: trace:update messages, trace:watch acks and REST
 * polls. Whatever the order, a final state is never replaced by a running
 * one, and a newer report replaces an older one.
 */

export const FINAL_TRACE_STATES: ReadonlySet<string> = new Set(TRACE_STATES.filter((s) => s !== 'running'));
const FINAL_HOST_STATES: ReadonlySet<string> = new Set(FINAL_RESULT_STATES);

export function isFinalTrace(state: string): boolean {
  return FINAL_TRACE_STATES.has(state);
}

export function isFinalHost(state: string): boolean {
  return FINAL_HOST_STATES.has(state);
}

export interface HostProgress {
  host: string;
  state: string;
  packets: number;
  bytes: number;
  error?: string;
  truncated: boolean;
  at: string;
}

export interface TraceProgressView {
  id: string;
  state: string;
  hosts: HostProgress[];
  merged?: { packets: number; bytes: number; duplicates: number };
}

/** A state change worth one line of plain output. */
export interface StateChange {
  /** null: the whole trace. */
  host: string | null;
  from: string | null;
  to: string;
  progress: HostProgress | null;
}

function newer(cur: { state: string; at: string }, next: { state: string; at: string }, isFinal: (s: string) => boolean): boolean {
  if (isFinal(cur.state)) return false;
  if (isFinal(next.state)) return true;
  // ISO times of one clock compare as text; equal means "as new", and the later report wins.
  return next.at >= cur.at;
}

export class TraceTracker {
  readonly id: string;
  private state: string;
  private stateAt: string;
  private merged?: { packets: number; bytes: number; duplicates: number };
  private readonly hosts = new Map<string, HostProgress>();

  constructor(view: TraceView) {
    this.id = view.id;
    this.state = view.state;
    this.stateAt = view.finishedAt ?? view.createdAt;
    if (view.merged) this.merged = { ...view.merged };
    for (const h of view.hosts) this.hosts.set(h.host, hostOf(h.host, h));
  }

  get final(): boolean {
    return isFinalTrace(this.state);
  }

  /** Applies one trace:update; returns the state changes it made (none when stale or for another trace). */
  applyUpdate(u: TraceUpdate): StateChange[] {
    if (u.traceId !== this.id) return [];
    if (u.host === null) {
      return this.setTrace(u.state, u.at, u.merged);
    }
    return this.setHost(hostOf(u.host, { state: u.state, packets: u.packets, bytes: u.bytes, error: u.error, truncated: u.truncated ?? false, updatedAt: u.at }));
  }

  /** Applies a whole view (trace:watch ack, REST poll). */
  applyView(v: TraceView): StateChange[] {
    if (v.id !== this.id) return [];
    const changes: StateChange[] = [];
    for (const h of v.hosts) changes.push(...this.setHost(hostOf(h.host, h)));
    changes.push(...this.setTrace(v.state, v.finishedAt ?? v.createdAt, v.merged));
    return changes;
  }

  view(): TraceProgressView {
    return { id: this.id, state: this.state, hosts: [...this.hosts.values()], ...(this.merged ? { merged: this.merged } : {}) };
  }

  private setTrace(state: string, at: string, merged?: { packets: number; bytes: number; duplicates: number }): StateChange[] {
    if (!newer({ state: this.state, at: this.stateAt }, { state, at }, isFinalTrace)) {
      // The final report may come twice (update and poll); the merged counts are kept from whichever has them.
      if (merged && !this.merged && isFinalTrace(state)) this.merged = { ...merged };
      return [];
    }
    const from = this.state;
    this.state = state;
    this.stateAt = at;
    if (merged) this.merged = { ...merged };
    return from === state ? [] : [{ host: null, from, to: state, progress: null }];
  }

  private setHost(next: HostProgress): StateChange[] {
    const cur = this.hosts.get(next.host);
    if (cur && !newer(cur, next, isFinalHost)) return [];
    this.hosts.set(next.host, next);
    if (cur && cur.state === next.state) return [];
    return [{ host: next.host, from: cur?.state ?? null, to: next.state, progress: next }];
  }
}

function hostOf(host: string, h: { state: string; packets: number; bytes: number; error?: string; truncated: boolean; updatedAt: string }): HostProgress {
  return { host, state: h.state, packets: h.packets, bytes: h.bytes, truncated: h.truncated, at: h.updatedAt, ...(h.error !== undefined ? { error: h.error } : {}) };
}

/** The exit code a final trace means: 0 done everywhere, 3 partial, 1 otherwise (README "Exit codes"). */
export function exitOfTrace(v: { state: string; hosts: Array<{ state: string }> }): 0 | 1 | 3 {
  if (v.state === 'done') return v.hosts.every((h) => h.state === 'done') ? 0 : 3;
  if (v.state === 'partial') return 3;
  return 1;
}
