import { z } from 'zod';
import { LIST_KEYS, messageSummary, traceQuery } from '../query/query';
import { agentName, refusalFields, traceId, TraceRef } from './common';
import { rtpStreamList } from '../rtp/figures';
import { statsWindow } from '../stats/counts';

/**
 * The protocol between agent and dispatcher: Socket.IO namespace
 * `/agent`. One file for both sides; every message received is validated
 * with these schemas before use; the event maps type both ends
 * (dispatcher/fleet/server.ts, agent/link/client.ts, agent/trace/serve.ts).
 *
 * Handshake: `io(url + '/agent', { auth: AgentAuth })`. An unknown token is
 * refused at connection (connect_error "unauthorized: ...").
 *
 * agent -> dispatcher
 *   agent:hello      AgentHello, ack HelloAck           once per connection
 *   agent:heartbeat  AgentHeartbeat                     every HEARTBEAT_MS: AgentStatus, and the SIP statistics
 *                                                       windows counted in since the last one (`stats`, whole
 *                                                       windows that replace the dispatcher's copies; all of them
 *                                                       again after a reconnection, STATS_DELTA_BYTES at a time)
 *   trace:started    { traceId }
 *   trace:progress   TraceProgress
 *   trace:chunk      TraceChunk, ack ChunkAck           PCAP bytes in order; the agent sends the
 *                                                       next chunk only after the ack (backpressure)
 *   trace:done       TraceDone
 *   trace:result     TraceResult, ack ChunkAck          a small result whole, in place of started, progress, its one
 *                                                       chunk and done; sent only when trace:run said `result: true`
 *                                                       (dispatchers before it drop the event), else the messages above
 *   trace:error      TraceFailure
 *   follow:chunk     TraceChunk + messages + through?, ack ChunkAck  a follow's PCAP stream (header in chunk 0), sent as
 *                                                       the live indexer matches packets, FOLLOW_CHUNKS_IN_FLIGHT unacked
 *   follow:progress  FollowProgress                     nothing matched, but this agent is through a later capture time
 *   follow:end       FollowEnd                          the agent stopped following (asked to, a limit, a slow link)
 * dispatcher -> agent
 *   trace:run        TraceRun, ack RunAck               `result: true`: this dispatcher takes trace:result (agents
 *                                                       before it ignore the key and answer as they always did);
 *                                                       `chunkBytes`: the largest trace:chunk it takes (absent: CHUNK_BYTES;
 *                                                       agents before it ignore the key and send CHUNK_BYTES)
 *   trace:cancel     { traceId }
 *   trace:legs       LegsAsk, ack LegsAnswer            before a trace with legs on several hosts: which dialogs (legs
 *                                                       included) the query selects here; no trace is started
 *   follow:run       FollowRun, ack RunAck              start matching live packets against the query
 *   follow:stop      { traceId }                        stop (the agent answers follow:end)
 */
export const PROTOCOL_VERSION = 1;
export const HEARTBEAT_MS = 5_000;
/**
 * PCAP bytes per trace:chunk when trace:run offers no `chunkBytes` (dispatchers before it; and agents
 * before it send no more whatever is offered); also the most a follow:chunk and a trace:result carry.
 */
export const CHUNK_BYTES = 256 * 1024;
/**
 * The largest trace:chunk: what this dispatcher offers in trace:run and
 * takes, and the most this agent sends whatever a dispatcher offers. A big
 * result in a quarter of the messages: each costs both ends a Socket.IO
 * packet, an ack, a spool write and the chunk's bookkeeping.
 */
export const MAX_CHUNK_BYTES = 1024 * 1024;
/**
 * trace:chunk messages an agent sends ahead of their acks. The dispatcher
 * takes them in seq order and acks each once it is on its disk, so per
 * host and trace it holds at most this many chunks in memory:
 * CHUNKS_IN_FLIGHT × MAX_CHUNK_BYTES = 4 MiB (1 MiB from an agent that
 * sends CHUNK_BYTES).
 */
export const CHUNKS_IN_FLIGHT = 4;
/**
 * The dispatcher's Socket.IO message limit (maxHttpBufferSize) on `/agent`:
 * a MAX_CHUNK_BYTES chunk with its framing (base64 on long-polling: 4/3 of
 * it), and a trace:done whose lists fill its ~900 kB (agent/trace/serve.ts).
 */
export const AGENT_MESSAGE_MAX_BYTES = 2 * 1024 * 1024;

/** The chunk size an agent sends at when trace:run offers `offered` bytes (undefined: a dispatcher before the offer). */
export function chunkBytesFor(offered: number | undefined): number {
  return offered === undefined ? CHUNK_BYTES : Math.min(offered, MAX_CHUNK_BYTES);
}

const count = z.number().int().nonnegative();

export const agentAuth = z.object({
  token: z.string().min(1).max(512),
  name: agentName,
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

/** Most JSON bytes of statistics windows one heartbeat carries (well under the dispatcher's message limit). */
export const STATS_DELTA_BYTES = 256 * 1024;
export const statsDelta = z.object({ windows: z.array(statsWindow).max(2000) });
export type StatsDelta = z.infer<typeof statsDelta>;
export const agentHeartbeat = agentStatus.extend({ stats: statsDelta.optional() });
export type AgentHeartbeat = z.infer<typeof agentHeartbeat>;

export const agentHello = agentStatus.extend({
  protocol: z.literal(PROTOCOL_VERSION),
  version: z.string().max(64),
  hostname: z.string().max(255),
  interfaces: z.array(z.string().max(64)).max(256),
});
export type AgentHello = z.infer<typeof agentHello>;

export const helloAck = z.object({ ok: z.boolean(), ...refusalFields });
export type HelloAck = z.infer<typeof helloAck>;

/**
 * `result`: the dispatcher takes a small result as one trace:result. Optional, so that an agent and a
 * dispatcher of either age talk: an old agent drops the key, an old dispatcher never sends it.
 */
export const traceRun = z.object({
  traceId,
  query: traceQuery,
  result: z.literal(true).optional(),
  /**
   * The largest trace:chunk the dispatcher takes (absent: CHUNK_BYTES). Any size from 4 KiB up is taken, so
   * that a later dispatcher may offer more: the agent sends at most MAX_CHUNK_BYTES (chunkBytesFor()).
   */
  chunkBytes: z.number().int().min(4096).max(Number.MAX_SAFE_INTEGER).optional(),
});
export type TraceRun = z.infer<typeof traceRun>;
/**
 * `queued`: the agent runs its limit of traces already and took this one into
 * its queue at that place (1 = next); it sends trace:started when it begins.
 */
export const runAck = z.object({ accepted: z.boolean(), ...refusalFields, queued: count.optional() });
export type RunAck = z.infer<typeof runAck>;

/** The Call-IDs a trace:legs answer carries at most: what a query's linkedCallId takes. */
export const MAX_LEG_CALL_IDS = LIST_KEYS.linkedCallId.maxValues;
export const legsAsk = z.object({ traceId, query: traceQuery });
export type LegsAsk = z.infer<typeof legsAsk>;
export const legsAnswer = z.object({
  ok: z.boolean(),
  ...refusalFields,
  callIds: z.array(z.string().max(LIST_KEYS.linkedCallId.maxLength)).max(MAX_LEG_CALL_IDS).optional(),
});
export type LegsAnswer = z.infer<typeof legsAnswer>;

export const traceProgress = z.object({ traceId, packets: count, bytes: count });
export type TraceProgress = z.infer<typeof traceProgress>;

/** A chunk's PCAP bytes: 1..max. */
const chunkData = (max: number) => z.instanceof(Buffer).refine((b) => b.length > 0 && b.length <= max, `chunks are 1..${max} bytes`);

export const traceChunk = z.object({
  traceId,
  /** 0, 1, 2, ... per trace; a gap or repeat is a protocol error. */
  seq: count,
  /** At most what trace:run offered: this dispatcher offers MAX_CHUNK_BYTES. */
  data: chunkData(MAX_CHUNK_BYTES),
});
export type TraceChunk = z.infer<typeof traceChunk>;
export const chunkAck = z.object({ ok: z.boolean(), ...refusalFields });
export type ChunkAck = z.infer<typeof chunkAck>;

export const traceDone = z.object({
  traceId,
  packets: count,
  bytes: count,
  /** Chunks sent; the dispatcher checks it received them all. */
  chunks: count,
  truncated: z.boolean(),
  messages: z.array(messageSummary).max(100_000),
  notes: z.array(z.string()).max(1000),
  /** RTP figures per stream of the traced calls (absent from agents before they were computed). */
  streams: rtpStreamList.optional(),
});
export type TraceDone = z.infer<typeof traceDone>;

/**
 * A result whose PCAP fits one chunk, whole: what trace:started, trace:progress, its trace:chunk (seq 0)
 * and trace:done would say, in one message (a fleet trace's hosts answer in one message each, not five).
 * `data` is the whole PCAP (absent: none); `bytes` its size. The agent keeps the PCAP and the lists
 * within what one trace:done may carry, so the message stays under the dispatcher's message limit.
 */
export const traceResult = traceDone.omit({ chunks: true }).extend({
  data: z.instanceof(Buffer).refine((b) => b.length <= CHUNK_BYTES, `a trace:result carries at most ${CHUNK_BYTES} bytes of PCAP`).optional(),
});
export type TraceResult = z.infer<typeof traceResult>;

export const traceFailure = z.object({ traceId, message: z.string().max(4096) });
export type TraceFailure = z.infer<typeof traceFailure>;

/**
 * A live follow: the same query contract as a trace (its time keys make no
 * sense live and are refused). The id is the trace the follow is stored as.
 */
export const followRun = z.object({ traceId, query: traceQuery.omit({ since: true, until: true }) }).strict();
export type FollowRun = z.infer<typeof followRun>;

/** Most SIP message summaries one follow:chunk carries (the PCAP bytes bound the rest). */
export const FOLLOW_CHUNK_MESSAGES = 2000;
/** Chunks of a follow an agent sends before the first of them is acknowledged: a packet does not wait for a round trip. */
export const FOLLOW_CHUNKS_IN_FLIGHT = 4;
/**
 * Capture time in ms since the epoch (the agent's clock) through which the
 * agent has matched everything and sent what matched: the dispatcher may
 * release this host's packets up to it without waiting out its reorder window.
 */
const through = z.number().positive().finite();
export const followChunk = traceChunk.extend({ data: chunkData(CHUNK_BYTES), messages: z.array(messageSummary).max(FOLLOW_CHUNK_MESSAGES), through: through.optional() });
export type FollowChunk = z.infer<typeof followChunk>;
export const followProgress = z.object({ traceId, through });
export type FollowProgress = z.infer<typeof followProgress>;

export const followEnd = z.object({
  traceId,
  packets: count,
  bytes: count,
  chunks: count,
  /** Why the agent stopped when it was not asked to (its limit, the link too slow, shutting down). */
  error: z.string().max(4096).optional(),
});
export type FollowEnd = z.infer<typeof followEnd>;

/** Events an agent sends (socket.io's ClientToServerEvents for `/agent`). Receivers still validate: the payload types say what is sent, not what arrives. */
export interface AgentToDispatcherEvents {
  'agent:hello': (hello: AgentHello, ack: (a: HelloAck) => void) => void;
  'agent:heartbeat': (status: AgentHeartbeat) => void;
  'trace:started': (r: TraceRef) => void;
  'trace:progress': (p: TraceProgress) => void;
  'trace:chunk': (c: TraceChunk, ack: (a: ChunkAck) => void) => void;
  'trace:done': (d: TraceDone) => void;
  'trace:result': (r: TraceResult, ack: (a: ChunkAck) => void) => void;
  'trace:error': (f: TraceFailure) => void;
  'follow:chunk': (c: FollowChunk, ack: (a: ChunkAck) => void) => void;
  'follow:progress': (p: FollowProgress) => void;
  'follow:end': (e: FollowEnd) => void;
}

/** Events the dispatcher sends an agent (ServerToClientEvents for `/agent`). */
export interface DispatcherToAgentEvents {
  'trace:run': (r: TraceRun, ack: (a: RunAck) => void) => void;
  'trace:cancel': (r: TraceRef) => void;
  'trace:legs': (r: LegsAsk, ack: (a: LegsAnswer) => void) => void;
  'follow:run': (r: FollowRun, ack: (a: RunAck) => void) => void;
  'follow:stop': (r: TraceRef) => void;
}
