import { z } from 'zod';
import { traceQuery } from '../query/query';
import { agentName, traceId } from './common';

/**
 * The protocol between dispatchers sharing agents through Redis (the
 * Socket.IO adapter's serverSideEmit on the `/agent` namespace). The
 * dispatcher that owns a trace asks the peer an agent is connected to to run
 * that host, and the peer says when the host's result and PCAP are stored.
 *
 *   tf:run-host    PeerRunHost     owner -> every peer; the one holding the agent runs it
 *   tf:host-final  PeerHostFinal   runner -> every peer; the owner marks the host stored
 *   tf:cancel      PeerCancel      any -> every peer; runs of the trace here are cancelled
 *
 * Every message received is validated with these schemas (parseMessage in common.ts).
 */

export const PEER_EVENTS = {
  runHost: 'tf:run-host',
  hostFinal: 'tf:host-final',
  cancel: 'tf:cancel',
} as const;

export const peerRunHost = z.object({ traceId, host: agentName, query: traceQuery, owner: z.string() });
export type PeerRunHost = z.infer<typeof peerRunHost>;

export const peerHostFinal = z.object({ traceId, host: agentName, owner: z.string() });
export type PeerHostFinal = z.infer<typeof peerHostFinal>;

export const peerCancel = z.object({ traceId });
export type PeerCancel = z.infer<typeof peerCancel>;

/** Socket.IO's ServerSideEvents map for the `/agent` namespace. */
export interface PeerEvents {
  [PEER_EVENTS.runHost]: (m: PeerRunHost) => void;
  [PEER_EVENTS.hostFinal]: (m: PeerHostFinal) => void;
  [PEER_EVENTS.cancel]: (m: PeerCancel) => void;
}
