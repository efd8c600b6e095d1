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
