import type { StatsWindow } from '../../shared/stats/counts';
import { sumCounts } from '../../shared/stats/figures';
import { cell, type StatsAnswer, type StatsQuery, worstFirst } from '../../shared/stats/answer';

/**
 * The fleet's SIP statistics: every agent's windows as its heartbeats bring
 * them (a window sent again replaces the one kept), in memory, for the
 * retention. GET /api/stats and the alerts read them here. An agent that
 * reconnects sends all its windows again, so a dispatcher restart loses
 * only the windows of agents that are away.
 */
export interface FleetStatsOptions {
  /** How long windows are kept, seconds (default 24 h and a window). */
  retentionSeconds?: number;
  /** Hosts kept at most (agents are authenticated; this bounds a leaked shared token). */
  maxHosts?: number;
  now?: () => number;
}

export type WindowsListener = (host: string, windows: StatsWindow[]) => void;

/** Starts of the windows one host keeps at most (a day of 1-minute windows). */
const MAX_WINDOWS_PER_HOST = 1500;

export class FleetStats {
  private readonly byHost = new Map<string, Map<number, StatsWindow>>();
  private readonly listeners: WindowsListener[] = [];
  private readonly retention: number;
  private readonly maxHosts: number;
  private readonly now: () => number;

  constructor(opts: FleetStatsOptions = {}) {
    this.retention = opts.retentionSeconds ?? 86_400 + 360;
    this.maxHosts = opts.maxHosts ?? 10_000;
    this.now = opts.now ?? (() => Date.now() / 1000);
  }

  onWindows(l: WindowsListener): void {
    this.listeners.push(l);
  }

  /** Windows from an agent (validated by the protocol's schema); returns how many were kept. */
  apply(host: string, windows: StatsWindow[]): number {
    let kept = this.byHost.get(host);
    if (!kept) {
      if (this.byHost.size >= this.maxHosts) return 0;
      this.byHost.set(host, (kept = new Map()));
    }
    const oldest = this.now() - this.retention;
    const taken: StatsWindow[] = [];
    for (const w of windows) {
      if (w.start + w.seconds < oldest) continue;
      kept.set(w.start, w);
      taken.push(w);
    }
    for (const [s, w] of kept) if (s + w.seconds < oldest) kept.delete(s);
    while (kept.size > MAX_WINDOWS_PER_HOST) kept.delete(Math.min(...kept.keys()));
    if (taken.length > 0) for (const l of this.listeners) l(host, taken);
    return taken.length;
  }

  /** Windows of one host overlapping [from, to) (Unix seconds). */
  windowsOf(host: string, from: number, to: number): StatsWindow[] {
    return [...(this.byHost.get(host)?.values() ?? [])].filter((w) => w.start + w.seconds > from && w.start < to);
  }

  hosts(): string[] {
    return [...this.byHost.keys()].sort();
  }

  /** GET /api/stats's answer; a range nobody has windows in answers empty lists. */
  query(q: StatsQuery): StatsAnswer {
    const to = q.to ?? this.now();
    const from = q.from ?? to - 3600;
    const hostSet = q.host ? new Set(q.host) : null;
    const peerSet = q.peer ? new Set(q.peer) : null;
    // Windows of one start and length across hosts; agents with other lengths make windows of their own.
    const windows = new Map<string, StatsAnswer['windows'][number] & { at: number }>();
    const peers = new Map<string, { peer: string; dir: 'in' | 'out'; hosts: Set<string>; counts: StatsWindow['rows'][number]['counts'][] }>();
    const hosts = new Map<string, StatsWindow['rows'][number]['counts'][]>();
    for (const host of this.hosts()) {
      if (hostSet && !hostSet.has(host)) continue;
      for (const w of this.windowsOf(host, from, to)) {
        const rows = peerSet ? w.rows.filter((r) => peerSet.has(r.peer)) : w.rows;
        if (rows.length === 0) continue;
        const key = `${w.start}/${w.seconds}`;
        let out = windows.get(key);
        if (!out) windows.set(key, (out = { at: w.start, start: new Date(w.start * 1000).toISOString(), seconds: w.seconds, hosts: [], total: cell(sumCounts([])), rows: [] }));
        out.hosts.push(host);
        for (const r of rows) {
          out.rows.push({ host, peer: r.peer, dir: r.dir, ...cell(r.counts) });
          const pk = `${r.dir} ${r.peer}`;
          let p = peers.get(pk);
          if (!p) peers.set(pk, (p = { peer: r.peer, dir: r.dir, hosts: new Set(), counts: [] }));
          p.hosts.add(host);
          p.counts.push(r.counts);
          let hc = hosts.get(host);
          if (!hc) hosts.set(host, (hc = []));
          hc.push(r.counts);
        }
      }
    }
    const list = [...windows.values()].sort((a, b) => a.at - b.at || a.seconds - b.seconds);
    for (const w of list) w.total = cell(sumCounts(w.rows.map((r) => r.counts)));
    return {
      from: new Date(from * 1000).toISOString(),
      to: new Date(to * 1000).toISOString(),
      windows: list.map(({ at: _at, ...w }) => w),
      peers: [...peers.values()].map((p) => ({ peer: p.peer, dir: p.dir, hosts: [...p.hosts].sort(), ...cell(sumCounts(p.counts)) })).sort(worstFirst),
      hosts: [...hosts.entries()].map(([host, c]) => ({ host, ...cell(sumCounts(c)) })).sort(worstFirst),
    };
  }
}
