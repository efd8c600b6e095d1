/*
 * This dispatcher's side of the dispatcher <-> dispatcher protocol
 * (shared/protocol/peer.ts): the messages go to every peer through the
 * Socket.IO adapter (Redis) on the `/agent` namespace, and each received one
 * is validated before the orchestrator sees it.
 */

import type { DefaultEventsMap, Namespace } from 'socket.io';
import { PEER_EVENTS, PeerEvents, PeerHostFinal, PeerRunHost, peerCancel, peerHostFinal, peerRunHost } from '../../shared/protocol/peer';
import type { AgentView } from '../../shared/protocol/client';
import { parseMessage } from '../../shared/protocol/common';
import type { Logger } from '../../shared/log/log';

export interface PeerHandlers {
  runHost(m: PeerRunHost): void;
  hostFinal(m: PeerHostFinal): void;
  cancel(traceId: string): void;
  log: Logger;
}

/** A connected agent as any dispatcher of the cluster sees it. */
export interface ClusterAgent {
  name?: string;
  view?: AgentView;
  socketId: string;
}

export class PeerLink {
  private readonly nsp: Namespace<DefaultEventsMap, DefaultEventsMap, PeerEvents>;

  constructor(agents: Namespace, handlers: PeerHandlers) {
    this.nsp = agents as unknown as Namespace<DefaultEventsMap, DefaultEventsMap, PeerEvents>;
    // A peer is another dispatcher of the same deployment, but what it sends is still checked: a version skew must not crash us.
    this.nsp.on(PEER_EVENTS.runHost, (data: unknown) => {
      const m = parseMessage(peerRunHost, PEER_EVENTS.runHost, data);
      if (m.ok) handlers.runHost(m.value);
      else handlers.log.warn({ reason: m.error }, 'bad message from a peer');
    });
    this.nsp.on(PEER_EVENTS.hostFinal, (data: unknown) => {
      const m = parseMessage(peerHostFinal, PEER_EVENTS.hostFinal, data);
      if (m.ok) handlers.hostFinal(m.value);
    });
    this.nsp.on(PEER_EVENTS.cancel, (data: unknown) => {
      const m = parseMessage(peerCancel, PEER_EVENTS.cancel, data);
      if (m.ok) handlers.cancel(m.value.traceId);
    });
  }

  runHost(m: PeerRunHost): void {
    this.nsp.serverSideEmit(PEER_EVENTS.runHost, m);
  }

  hostFinal(m: PeerHostFinal): void {
    this.nsp.serverSideEmit(PEER_EVENTS.hostFinal, m);
  }

  cancel(traceId: string): void {
    this.nsp.serverSideEmit(PEER_EVENTS.cancel, { traceId });
  }

  /** Every agent connection on this dispatcher and its peers. */
  async agents(): Promise<ClusterAgent[]> {
    const sockets = await this.nsp.fetchSockets();
    return sockets.map((s) => {
      const data = s.data as { name?: string; view?: AgentView };
      return { name: data.name, view: data.view, socketId: s.id };
    });
  }
}
