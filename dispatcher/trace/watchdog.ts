import { HOST_ATTACHMENT } from '../store/layout';
import type { TraceStore } from '../store/store';
import type { PeerLink } from './peers';
import type { Owned } from './types';
import { isFinalResult } from './view';
import type { Logger } from '../../shared/log/log';

/** How long a peer's final result may wait for its PCAP once the agent's connection to that peer is gone. */
const PEER_PCAP_GRACE_MS = 60_000;

export interface WatchdogDeps {
  owned: Iterable<Owned>;
  store: TraceStore;
  peers: PeerLink;
  /** True while this host's final result waits for the store here. */
  pendingHere(traceId: string, host: string): boolean;
  hostStored(traceId: string, host: string): void;
  hostLost(traceId: string, host: string, error: string): void;
  log: Logger;
}

/**
 * Peers that died take their hosts' runs with them. A remote host's run
 * is over when the agent's connection that took it is gone: closed, or
 * replaced by a new one here or on any peer (an agent aborts its traces
 * when it reconnects). Seen so on two passes, a watchdog period apart (a
 * live peer has stored its own final state by then), the host is lost.
 */
export async function checkRemoteHosts(d: WatchdogDeps): Promise<void> {
  const withRemote = [...d.owned].filter((o) => o.remote.size > 0 && !o.finalizing);
  if (withRemote.length === 0) return;
  let connected: Map<string, string>;
  try {
    connected = new Map((await d.peers.agents()).map((a) => [a.name ?? '', a.socketId]));
  } catch {
    return;
  }
  for (const o of withRemote) {
    let results;
    try {
      results = await d.store.listResults(o.id);
    } catch {
      return;
    }
    for (const r of results) {
      const socketId = o.remote.get(r.host);
      if (socketId === undefined || o.stored.has(r.host) || d.pendingHere(o.id, r.host)) continue;
      const final = isFinalResult(r.state);
      // The peer stores the result, then its PCAP, then says so (tf:host-final): a final state without its PCAP is still being stored.
      if (final && (r.bytes === 0 || r._attachments?.[HOST_ATTACHMENT])) {
        d.hostStored(o.id, r.host);
        continue;
      }
      if (connected.get(r.host) === socketId) {
        o.missing.delete(r.host);
        continue;
      }
      const since = o.missing.get(r.host);
      if (since === undefined) {
        o.missing.set(r.host, Date.now());
        continue;
      }
      if (final) {
        // The peer died between storing the result and its PCAP; its spool keeps the PCAP until it runs again.
        if (Date.now() - since < PEER_PCAP_GRACE_MS) continue;
        d.log.warn({ traceId: o.id, host: r.host }, "a host's PCAP never reached the store (its dispatcher is gone); merging without it");
        d.hostStored(o.id, r.host);
        continue;
      }
      d.hostLost(o.id, r.host, `agent ${r.host} (on a peer dispatcher) disconnected mid-trace, or its dispatcher stopped`);
    }
  }
}

/** What a DeadlineSweep watches: a host run's current deadline (performance.now() ms; 0 while it has none). */
export interface Deadlined {
  readonly deadline: number;
  /** Called once the deadline has passed, from the sweep; the run disarms or re-arms itself there. */
  expire(): void;
}

/**
 * One timer for all of a trace's host runs here, where each had its own:
 * a 10,000-host trace armed, cleared and re-armed 30,000 timers in its
 * first second (trace:run sent, its ack, the result). A run sets its
 * deadline (a number) and the sweep looks at every watched run each tick:
 * a deadline fires up to a tick late, a tick being a tenth of the shortest
 * timeout (at least 50 ms, at most 1 s).
 */
export class DeadlineSweep {
  private readonly watched = new Set<Deadlined>();
  private timer: NodeJS.Timeout | null = null;
  readonly tickMs: number;

  constructor(shortestTimeoutMs: number) {
    this.tickMs = Math.min(1_000, Math.max(50, Math.floor(shortestTimeoutMs / 10)));
  }

  watch(r: Deadlined): void {
    this.watched.add(r);
    if (this.timer) return;
    this.timer = setInterval(() => this.sweep(), this.tickMs);
    this.timer.unref();
  }

  unwatch(r: Deadlined): void {
    this.watched.delete(r);
    if (this.watched.size === 0) this.stop();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sweep(): void {
    const now = performance.now();
    // Expired first, then told: expire() may end a run, and that run's unwatch() changes the set.
    const due: Deadlined[] = [];
    for (const r of this.watched) if (r.deadline > 0 && r.deadline <= now) due.push(r);
    for (const r of due) r.expire();
  }
}
