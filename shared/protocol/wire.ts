import { z } from 'zod';

/**
 * The wire protocol between agent and dispatcher: Socket.IO namespace
 * `/agent`. One file for both sides; every message received is validated
 * with these schemas before use.
 *
 * Handshake: `io(url + '/agent', { auth: AgentAuth })`. An unknown token is
 * refused at connection (connect_error "unauthorized: ...").
 *
 * agent -> dispatcher
 *   agent:hello      AgentHello, ack HelloAck           once per connection
 *   agent:heartbeat  AgentStatus                        every HEARTBEAT_MS
 *   trace:started    { traceId }
 *   trace:progress   TraceProgress
 *   trace:chunk      TraceChunk, ack ChunkAck           PCAP bytes in order; the agent sends the
 *                                                       next chunk only after the ack (backpressure)
 *   trace:done       TraceDone
 *   trace:error      TraceFailure
 * dispatcher -> agent
 *   trace:run        TraceRun, ack RunAck
 *   trace:cancel     { traceId }
 */
export const PROTOCOL_VERSION = 1;
export const HEARTBEAT_MS = 5_000;
/** PCAP bytes per trace:chunk. */
export const CHUNK_BYTES = 256 * 1024;

const traceId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'trace ids are 1-64 letters, digits, _ or -');
const count = z.number().int().nonnegative();

export const agentAuth = z.object({
  token: z.string().min(1).max(512),
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'agent names are 1-64 letters, digits, _, . or -'),
});
export type AgentAuth = z.infer<typeof agentAuth>;

export const ringStatus = z.object({
  /** ISO times of the oldest and newest packet in the ring, null when empty. */
  oldest: z.string().nullable(),
  newest: z.string().nullable(),
  bytes: count,
  segments: count,
});
export type RingStatus = z.infer<typeof ringStatus>;

export const captureStatus = z.record(
  z.string(),
  z.object({ packets: count, dropped: count, ifDropped: count, running: z.boolean() }),
);
export type CaptureStatus = z.infer<typeof captureStatus>;

export const agentStatus = z.object({
  ring: ringStatus,
  capture: captureStatus,
  /** Index errors since start (each segment affected is rebuilt later). */
  indexErrors: count,
});
export type AgentStatus = z.infer<typeof agentStatus>;

export const agentHello = agentStatus.extend({
  protocol: z.literal(PROTOCOL_VERSION),
  version: z.string().max(64),
  hostname: z.string().max(255),
  interfaces: z.array(z.string().max(64)).max(256),
});
export type AgentHello = z.infer<typeof agentHello>;

export const helloAck = z.object({ ok: z.boolean(), error: z.string().optional() });
export type HelloAck = z.infer<typeof helloAck>;

/** The filters of a trace: the same fields as `tracefleet query` (agent/query/spec.ts validates their values). */
export const traceQuery = z
  .object({
    callId: z.array(z.string().max(1024)).max(64).optional(),
    number: z.array(z.string().max(64)).max(64).optional(),
    ip: z.array(z.string().max(64)).max(64).optional(),
    port: z.array(z.string().max(8)).max(64).optional(),
    correlation: z.array(z.string().max(1024)).max(64).optional(),
    method: z.array(z.string().max(32)).max(32).optional(),
    status: z.array(z.string().max(8)).max(32).optional(),
    since: z.string().max(64).optional(),
    until: z.string().max(64).optional(),
    rtp: z.boolean().optional(),
    maxPackets: z.number().int().positive().optional(),
    maxBytes: z.number().int().positive().optional(),
    all: z.boolean().optional(),
  })
  .strict();
export type TraceQuery = z.infer<typeof traceQuery>;

export const traceRun = z.object({ traceId, query: traceQuery });
export type TraceRun = z.infer<typeof traceRun>;
export const runAck = z.object({ accepted: z.boolean(), error: z.string().optional() });
export type RunAck = z.infer<typeof runAck>;

export const traceRef = z.object({ traceId });
export const traceProgress = z.object({ traceId, packets: count, bytes: count });
export type TraceProgress = z.infer<typeof traceProgress>;

export const traceChunk = z.object({
  traceId,
  /** 0, 1, 2, ... per trace; a gap or repeat is a protocol error. */
  seq: count,
  data: z.instanceof(Buffer).refine((b) => b.length > 0 && b.length <= CHUNK_BYTES, `chunks are 1..${CHUNK_BYTES} bytes`),
});
export type TraceChunk = z.infer<typeof traceChunk>;
export const chunkAck = z.object({ ok: z.boolean(), error: z.string().optional() });
export type ChunkAck = z.infer<typeof chunkAck>;

/** One SIP message as the ladder shows it (agent/query/engine.ts MessageSummary). */
export const messageSummary = z.object({
  ts: z.string(),
  time: z.string(),
  src: z.string(),
  dst: z.string(),
  transport: z.enum(['udp', 'tcp']),
  method: z.string().nullable(),
  status: z.number().int().nullable(),
  reason: z.string().nullable(),
  callId: z.string(),
  cseq: z.string().nullable(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  ruri: z.string().nullable(),
  correlation: z.string().nullable(),
  bytes: count,
  packets: count,
  truncated: z.boolean().optional(),
});

export const traceDone = z.object({
  traceId,
  packets: count,
  bytes: count,
  /** Chunks sent; the dispatcher checks it received them all. */
  chunks: count,
  truncated: z.boolean(),
  messages: z.array(messageSummary).max(100_000),
  notes: z.array(z.string()).max(1000),
});
export type TraceDone = z.infer<typeof traceDone>;

export const traceFailure = z.object({ traceId, message: z.string().max(4096) });
export type TraceFailure = z.infer<typeof traceFailure>;

/** Parses a received message; on failure says which field was wrong. */
export function parseMessage<T>(schema: z.ZodType<T>, event: string, data: unknown): { ok: true; value: T } | { ok: false; error: string } {
  const r = schema.safeParse(data);
  if (r.success) return { ok: true, value: r.data };
  const i = r.error.issues[0];
  return { ok: false, error: `bad ${event} message: ${i.path.join('.') || 'body'}: ${i.message}` };
}

/* ------------------------------------------------------------------------
 * The client side: Socket.IO namespace `/client` (web page, CLI, scripts)
 * and the REST API on the same port. Both speak these shapes.
 *
 * Handshake: `io(url + '/client', { auth: ClientAuth })`: a session token
 * (from POST /api/login), an API token, or a user name and password.
 *
 * client -> dispatcher
 *   trace:start   TraceRequest, ack ClientAck<{ trace: TraceView }>   tracer/admin only; joins the trace's room
 *   trace:watch   { traceId }, ack ClientAck<{ trace: TraceView }>   joins the room; the ack holds the state so far
 *   trace:unwatch { traceId }, ack ClientAck<{}>                      leaves the room
 *   trace:cancel  { traceId }, ack ClientAck<{ trace: TraceView }>   tracer/admin
 *   agents:list   {}, ack ClientAck<{ agents: AgentView[] }>
 * dispatcher -> client (to the trace's room `trace:<id>`)
 *   trace:update  TraceUpdate                                         a host's or the whole trace's new state
 * ---------------------------------------------------------------------- */

export const ROLES = ['admin', 'tracer', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

export const clientAuth = z.union([
  z.object({ token: z.string().min(1).max(512) }).strict(),
  z.object({ user: z.string().min(1).max(200), password: z.string().min(1).max(1024) }).strict(),
]);
export type ClientAuth = z.infer<typeof clientAuth>;

const hostName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'host names are agent names: 1-64 letters, digits, _, . or -');

/** A trace as asked for: the query filters, and the agents to ask (all connected ones when absent). */
export const traceRequest = traceQuery.extend({ hosts: z.array(hostName).min(1).max(10_000).optional() }).strict();
export type TraceRequest = z.infer<typeof traceRequest>;

export const TRACE_STATES = ['running', 'done', 'partial', 'failed', 'cancelled', 'interrupted'] as const;
export const RESULT_STATES = ['queued', 'started', 'done', 'error', 'unreachable', 'lost', 'cancelled'] as const;
/** Host states after which nothing more comes from that host. */
export const FINAL_RESULT_STATES = ['done', 'error', 'unreachable', 'lost', 'cancelled'] as const;

export interface HostView {
  host: string;
  state: (typeof RESULT_STATES)[number];
  packets: number;
  bytes: number;
  truncated: boolean;
  error?: string;
  /** True when the host's packets.pcap is stored. */
  stored: boolean;
  updatedAt: string;
}

export interface TraceView {
  id: string;
  request: TraceRequest;
  user: string;
  createdAt: string;
  finishedAt?: string;
  state: (typeof TRACE_STATES)[number];
  hosts: HostView[];
  /** Set once merged.pcap is stored. */
  merged?: { packets: number; bytes: number; duplicates: number };
}

/** A change of one host's state (`host` set) or of the whole trace (`host` null). */
export interface TraceUpdate {
  traceId: string;
  host: string | null;
  state: string;
  packets: number;
  bytes: number;
  truncated?: boolean;
  error?: string;
  merged?: { packets: number; bytes: number; duplicates: number };
  at: string;
}

/** An agent as the dispatcher knows it; a disconnected one stays listed with connected false. */
export interface AgentView {
  name: string;
  connected: boolean;
  /** ISO time of the current (or last) connection. */
  connectedAt: string;
  /** ISO time of the last message received (hello or heartbeat). */
  lastSeen: string;
  hostname: string | null;
  version: string | null;
  interfaces: string[];
  ring: RingStatus | null;
  capture: CaptureStatus;
  indexErrors: number;
}

export type ClientAck<T> = ({ ok: true } & T) | { ok: false; error: string; code: 'bad_request' | 'unauthorized' | 'forbidden' | 'not_found' | 'unavailable' | 'failed' };
