import { z } from 'zod';
import { rtpStreamFigures } from '../rtp/figures';
import { rtpHopList, traceClocks } from '../trace/vantage';
import type { ErrorBody } from '../errors/catalogue';
import { messageSummary, TraceRequest, traceRequest } from '../query/query';
import { fullMessage } from '../sip/message';
import { callFigures } from '../query/call-figures';
import { captureStatus, ringStatus } from './agent';
import { agentName, TRACE_ID_PATTERN, TraceRef } from './common';
import type { AlertEvent } from '../alerts/rule';

/*
 * The client side: Socket.IO namespace `/client` (web page, CLI, scripts)
 * and the REST API on the same port. Both speak these shapes; the event maps
 * type both ends (dispatcher/clients/namespace.ts, cli/api-client.ts).
 *
 * Handshake: `io(url + '/client', { auth: ClientAuth })`: a session token
 * (from POST /api/login), an API token, or a user name and password.
 *
 * client -> dispatcher
 *   trace:start   TraceRequest, ack ClientAck<{ trace: TraceView }>   tracer/admin only; joins the trace's room
 *   trace:watch   { traceId }, ack ClientAck<{ trace: TraceView }>   joins the room; the ack holds the state so far
 *   trace:unwatch { traceId }, ack ClientAck<{}>                      leaves the room
 *   trace:cancel  { traceId }, ack ClientAck<{ trace: TraceView }>   the trace's owner (tracer) or an admin
 *   agents:list   {}, ack ClientAck<{ agents: AgentView[] }>
 *   follow:start  FollowRequest, ack ClientAck<{ trace: TraceView }> tracer/admin only; this socket receives the follow
 *   follow:stop   { traceId }, ack ClientAck<{}>                      the follow's owner or an admin; it ends and is stored
 * dispatcher -> client (to the trace's room `trace:<id>`)
 *   trace:update  TraceUpdate                                         a host's or the whole trace's new state (every state
 *                                                                     of the trace itself comes this way)
 *   trace:updates TraceUpdate[]                                       several hosts' new states, in order: a trace's host
 *                                                                     updates within 50 ms go together (at most 1,000)
 *   session:ended ErrorBody (TF_SESSION_ENDED)                        to one socket, just before the dispatcher ends it
 *                                                                     because its login no longer holds (user removed,
 *                                                                     password changed, token revoked, session expired)
 * dispatcher -> client (to the socket that started the follow)
 *   follow:data   FollowData, ack {}                                  the merged live PCAP stream (header in the first) and its
 *                                                                     SIP messages; the client acks once it has taken them, and
 *                                                                     one that falls FOLLOW_LIMITS.clientLagBytes behind is dropped;
 *                                                                     `hosts`: the hosts whose part changed since the last one
 *   follow:end    FollowEndView                                       why the follow ended; then the trace is stored
 * dispatcher -> client (to every connected client)
 *   alert         AlertEvent (shared/alerts/rule.ts)                  an alert raised (status firing) or cleared (resolved)
 *
 * REST: GET /api/query-rules answers shared/query's QUERY_RULES (no login needed).
 */

export const ROLES = ['admin', 'tracer', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export const clientAuth = z.union([
  z.object({ token: z.string().min(1).max(512) }).strict(),
  z.object({ user: z.string().min(1).max(200), password: z.string().min(1).max(1024) }).strict(),
]);
export type ClientAuth = z.infer<typeof clientAuth>;

export const TRACE_STATES = ['running', 'done', 'partial', 'failed', 'cancelled', 'interrupted'] as const;
export const RESULT_STATES = ['queued', 'started', 'done', 'error', 'unreachable', 'lost', 'cancelled'] as const;
/** Host states after which nothing more comes from that host. */
export const FINAL_RESULT_STATES = ['done', 'error', 'unreachable', 'lost', 'cancelled'] as const;

const count = z.number().int().nonnegative();
const merged = z.object({ packets: count, bytes: count, duplicates: count });

export const hostView = z.object({
  host: z.string(),
  state: z.enum(RESULT_STATES),
  packets: count,
  bytes: count,
  truncated: z.boolean(),
  error: z.string().optional(),
  /** True when the host's packets.pcap is stored. */
  stored: z.boolean(),
  updatedAt: z.string(),
});
export type HostView = z.infer<typeof hostView>;

export const traceView = z.object({
  id: z.string(),
  request: traceRequest,
  user: z.string(),
  createdAt: z.string(),
  finishedAt: z.string().optional(),
  state: z.enum(TRACE_STATES),
  hosts: z.array(hostView),
  /** Set once merged.pcap is stored. */
  merged: merged.optional(),
  /** Set by the merge when two hosts captured a common packet: each host's clock offset. */
  clocks: traceClocks.optional(),
  /** Set by the merge: per RTP stream seen on several hosts, each hop. */
  hops: rtpHopList.optional(),
});
export type TraceView = z.infer<typeof traceView>;

/** A change of one host's state (`host` set) or of the whole trace (`host` null). */
export const traceUpdate = z.object({
  traceId: z.string(),
  host: z.string().nullable(),
  state: z.string(),
  packets: count,
  bytes: count,
  truncated: z.boolean().optional(),
  error: z.string().optional(),
  merged: merged.optional(),
  at: z.string(),
});
export type TraceUpdate = z.infer<typeof traceUpdate>;

/** An agent as the dispatcher knows it; a disconnected one stays listed with connected false. */
export const agentView = z.object({
  name: z.string(),
  connected: z.boolean(),
  /** ISO time of the current (or last) connection. */
  connectedAt: z.string(),
  /** ISO time of the last message received (hello or heartbeat). */
  lastSeen: z.string(),
  hostname: z.string().nullable(),
  version: z.string().nullable(),
  interfaces: z.array(z.string()),
  ring: ringStatus.nullable(),
  capture: captureStatus,
  indexErrors: count,
});
export type AgentView = z.infer<typeof agentView>;

/** One SIP message of a trace: the agent's summary and the host it was captured on. */
export const traceMessage = messageSummary.extend({ host: z.string() });
export type TraceMessage = z.infer<typeof traceMessage>;

/** A message with its whole text decoded from the trace's merged PCAP; `full` null when that PCAP does not hold it (not merged yet, cut by a limit). */
export const fullTraceMessage = traceMessage.extend({ full: fullMessage.nullable() });
export type FullTraceMessage = z.infer<typeof fullTraceMessage>;

/** GET /api/traces/:id/messages?full=1: one page of the merged message list, `offset` into `total`. */
export const fullMessagesPage = z.object({
  messages: z.array(fullTraceMessage),
  total: z.number().int().nonnegative(),
  offset: z.number().int().nonnegative(),
  /** Why some `full` are null, when they are. */
  note: z.string().optional(),
  /** Figures of every dialog of the whole trace (not only this page), per host. */
  calls: z.array(callFigures),
});
export type FullMessagesPage = z.infer<typeof fullMessagesPage>;

/** One RTP stream's figures as a host of the trace saw them (GET /api/traces/:id/streams). */
export const traceStream = rtpStreamFigures.extend({ host: z.string() });
export type TraceStream = z.infer<typeof traceStream>;

export const loginResult = z.object({
  token: z.string().min(1),
  user: z.string(),
  roles: z.array(z.enum(ROLES)),
  expiresAt: z.string(),
});
export type LoginResult = z.infer<typeof loginResult>;

/**
 * A follow's bounds. Each of time, packets and bytes has a default and a
 * ceiling; the reorder window is how long the dispatcher holds a packet so
 * that one from a slower host can still be put before it.
 */
export const FOLLOW_LIMITS = {
  defaultDurationMs: 10 * 60_000,
  maxDurationMs: 24 * 3_600_000,
  defaultMaxPackets: 100_000,
  maxPackets: 10_000_000,
  defaultMaxBytes: 100 * 1024 * 1024,
  maxBytes: 4 * 1024 * 1024 * 1024,
  reorderMs: 200,
  /** Bytes sent to a client and not yet acknowledged before it is dropped. */
  clientLagBytes: 8 * 1024 * 1024,
} as const;

/** What `tracefleet follow` and the page send: a trace request without a window, and how long to follow. */
export const followRequest = traceRequest
  .omit({ since: true, until: true, alignClocks: true })
  .extend({
    durationMs: z.number().int().positive().max(FOLLOW_LIMITS.maxDurationMs).optional(),
    maxPackets: z.number().int().positive().max(FOLLOW_LIMITS.maxPackets).optional(),
    maxBytes: z.number().int().positive().max(FOLLOW_LIMITS.maxBytes).optional(),
  })
  .strict();
export type FollowRequest = z.infer<typeof followRequest>;

/**
 * A host's part in a follow: asked (no answer yet), following, ended (its
 * agent finished: the follow's end, or its own error), refused, lost (its
 * agent disconnected), unreachable (not connected when asked).
 */
export const FOLLOW_HOST_STATES = ['asking', 'following', 'ended', 'refused', 'lost', 'unreachable'] as const;
export const followHostStatus = z.object({
  host: agentName,
  state: z.enum(FOLLOW_HOST_STATES),
  error: z.string().max(500).optional(),
});
export type FollowHostStatus = z.infer<typeof followHostStatus>;
export type FollowHostState = FollowHostStatus['state'];

export const followData = z.object({
  traceId: z.string().regex(new RegExp(TRACE_ID_PATTERN)),
  data: z.instanceof(Buffer).or(z.instanceof(Uint8Array)),
  messages: z.array(traceMessage).max(100_000),
  /** Only the hosts whose state changed (a few changes a host in a follow's life), as many as a request names at most. */
  hosts: z.array(followHostStatus).max(10_000).optional(),
});
export type FollowData = z.infer<typeof followData>;

export const FOLLOW_END_REASONS = ['duration', 'packets', 'bytes', 'stopped', 'client-gone', 'slow-client', 'agents-gone', 'shutdown'] as const;
export const followEndView = z.object({
  traceId: z.string(),
  reason: z.enum(FOLLOW_END_REASONS),
  packets: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  /** Set when the follow ended on an error (shared/errors' code and sentence). */
  code: z.string().optional(),
  message: z.string().optional(),
});
export type FollowEndView = z.infer<typeof followEndView>;

/** A refusal carries shared/errors' `{code, field, message}` (and `error`, the same sentence, as before the codes). */
export type ClientAck<T> = ({ ok: true } & T) | ({ ok: false } & ErrorBody);

/** Events a client sends (socket.io's ClientToServerEvents for `/client`). The dispatcher validates each. */
export interface ClientToDispatcherEvents {
  'trace:start': (req: TraceRequest, ack: (a: ClientAck<{ trace: TraceView }>) => void) => void;
  'trace:watch': (r: TraceRef, ack: (a: ClientAck<{ trace: TraceView }>) => void) => void;
  'trace:unwatch': (r: TraceRef, ack: (a: ClientAck<object>) => void) => void;
  'trace:cancel': (r: TraceRef, ack: (a: ClientAck<{ trace: TraceView }>) => void) => void;
  'agents:list': (q: Record<string, never>, ack: (a: ClientAck<{ agents: AgentView[] }>) => void) => void;
  'follow:start': (req: FollowRequest, ack: (a: ClientAck<{ trace: TraceView }>) => void) => void;
  'follow:stop': (r: TraceRef, ack: (a: ClientAck<object>) => void) => void;
}

/** Events the dispatcher sends a client (ServerToClientEvents for `/client`). */
export interface DispatcherToClientEvents {
  'trace:update': (u: TraceUpdate) => void;
  'trace:updates': (us: TraceUpdate[]) => void;
  'session:ended': (e: ErrorBody) => void;
  'follow:data': (d: FollowData, ack: (a: object) => void) => void;
  'follow:end': (e: FollowEndView) => void;
  'alert': (e: AlertEvent) => void;
}
