import { pcapHeaderBytes } from '../../shared/pcap/pcap';
import { AgentToDispatcherEvents, CHUNK_BYTES, FOLLOW_CHUNK_MESSAGES, FOLLOW_CHUNKS_IN_FLIGHT, RunAck, chunkAck, followRun } from '../../shared/protocol/agent';
import { parseMessage, traceRef } from '../../shared/protocol/common';
import { buildQuerySpec, type MessageSummary } from '../../shared/query/query';
import type { FollowBatch } from '../index/follow-match';
import type { LiveFollows } from '../daemon/run';
import type { DispatcherSocket } from '../link/client';
import { type Logger, componentLogger } from '../../shared/log/log';

export interface FollowServeOptions {
  follows: LiveFollows;
  logger?: Logger;
  /** Follows running at once on this agent (default 4); more are refused. */
  maxFollows?: number;
  /** Matched bytes a follow may hold while the dispatcher has not acknowledged its chunks (default 32 MiB, above the dispatcher's client lag bound); then it ends. */
  maxPendingBytes?: number;
  /** How long the dispatcher may take to acknowledge a chunk (default 30 s). */
  chunkAckTimeoutMs?: number;
}

export interface FollowServer {
  close(): void;
  active(): number;
}

/** Summaries held for the next chunk at most; more are left out (the PCAP keeps every packet). */
const MAX_PENDING_MESSAGES = 10_000;
/** Least time between two follow:progress of a follow (the indexer may advance a hundred times a second). */
const PROGRESS_MS = 25;

interface Running {
  id: string;
  pending: Buffer[];
  pendingBytes: number;
  messages: MessageSummary[];
  headerSent: boolean;
  /** Chunks sent and not yet acknowledged (at most FOLLOW_CHUNKS_IN_FLIGHT). */
  inFlight: number;
  /** The matcher has nothing more (its packet limit): end once what is pending is sent. */
  full: boolean;
  /** The next chunk's seq. */
  seq: number;
  /** Chunks acknowledged. */
  acked: number;
  /** The indexer's latest `through`, and the latest told to the dispatcher (with a chunk or follow:progress). */
  through: number;
  toldThrough: number;
  toldAt: number;
  progressTimer: NodeJS.Timeout | null;
  packets: number;
  bytes: number;
  ended: boolean;
}

/**
 * The agent's side of a live follow, on the dispatcher link's socket.
 * follow:run adds the query to the live indexer's matcher (a bounded number
 * at once); what it matches is sent as follow:chunk messages as it comes, up
 * to FOLLOW_CHUNKS_IN_FLIGHT unacknowledged (a packet does not wait for the
 * previous chunk's round trip, which includes the dispatcher's spool write).
 * The chunk that empties what is pending carries the indexer's `through`;
 * when nothing matched, follow:progress carries it, so the dispatcher need
 * not hold this host's packets for its whole reorder window. A dispatcher
 * that falls maxPendingBytes behind ends the follow (follow:end with the
 * reason) instead of making the agent hold more.
 */
export function serveFollows(socket: DispatcherSocket, opts: FollowServeOptions): FollowServer {
  const log = componentLogger('agent.follow', opts.logger);
  const maxFollows = opts.maxFollows ?? 4;
  const maxPending = opts.maxPendingBytes ?? 32 * 1024 * 1024;
  const ackMs = opts.chunkAckTimeoutMs ?? 30_000;
  const running = new Map<string, Running>();

  const end = (f: Running, error?: string): void => {
    if (f.ended) return;
    f.ended = true;
    if (f.progressTimer) clearTimeout(f.progressTimer);
    running.delete(f.id);
    opts.follows.remove(f.id);
    f.pending = [];
    if (socket.connected) {
      const e: Parameters<AgentToDispatcherEvents['follow:end']>[0] = { traceId: f.id, packets: f.packets, bytes: f.bytes, chunks: f.acked, ...(error ? { error: error.slice(0, 4096) } : {}) };
      socket.emit('follow:end', e);
    }
    if (error) log.warn({ traceId: f.id, reason: error }, 'follow ended');
    else log.info({ traceId: f.id, packets: f.packets }, 'follow ended');
  };

  /** Tells the dispatcher how far this host is through, at most every PROGRESS_MS, when no chunk will. */
  const progress = (f: Running): void => {
    if (f.ended || f.progressTimer || f.through <= f.toldThrough || f.pendingBytes > 0) return;
    const wait = f.toldAt + PROGRESS_MS - Date.now();
    if (wait > 0) {
      f.progressTimer = setTimeout(() => {
        f.progressTimer = null;
        progress(f);
      }, wait);
      return;
    }
    f.toldThrough = f.through;
    f.toldAt = Date.now();
    if (socket.connected) socket.emit('follow:progress', { traceId: f.id, through: f.through });
  };

  const pump = (f: Running): void => {
    while (!f.ended && f.inFlight < FOLLOW_CHUNKS_IN_FLIGHT && f.pendingBytes > 0) send(f);
    if (f.ended) return;
    if (f.pendingBytes === 0 && f.inFlight === 0 && f.full) return end(f);
    progress(f);
  };

  const send = (f: Running): void => {
    const all = f.pending.length === 1 ? f.pending[0] : Buffer.concat(f.pending);
    const data = all.subarray(0, CHUNK_BYTES);
    const rest = all.subarray(data.length);
    f.pending = rest.length ? [rest] : [];
    f.pendingBytes = rest.length;
    const messages = f.messages.splice(0, FOLLOW_CHUNK_MESSAGES);
    // Only once every matched byte up to `through` is in a chunk.
    const through = rest.length === 0 && f.through > f.toldThrough ? f.through : undefined;
    if (through !== undefined) {
      f.toldThrough = through;
      f.toldAt = Date.now();
    }
    f.inFlight++;
    const seq = f.seq++;
    socket.timeout(ackMs).emit('follow:chunk', { traceId: f.id, seq, data, messages, ...(through !== undefined ? { through } : {}) }, (err: Error | null, ack: unknown) => {
      f.inFlight--;
      if (f.ended) return;
      if (err) return end(f, `the dispatcher did not acknowledge chunk ${seq} within ${ackMs} ms`);
      const a = parseMessage(chunkAck, 'follow:chunk ack', ack);
      if (!a.ok) return end(f, a.error);
      if (!a.value.ok) return end(f, `the dispatcher refused chunk ${seq}: ${a.value.error ?? 'no reason given'}`);
      f.acked++;
      f.bytes += data.length;
      pump(f);
    });
  };

  const onBatch = (f: Running, b: FollowBatch): void => {
    if (f.ended) return;
    if (b.packets > 0) {
      if (!f.headerSent) {
        f.pending.push(pcapHeaderBytes({ linkType: b.linkType, nanos: true }));
        f.pendingBytes += 24;
        f.headerSent = true;
      }
      f.pending.push(b.records);
      f.pendingBytes += b.records.length;
      f.packets += b.packets;
    }
    if (f.messages.length < MAX_PENDING_MESSAGES) f.messages.push(...b.messages.slice(0, MAX_PENDING_MESSAGES - f.messages.length));
    if (b.otherLink) log.warn({ traceId: f.id, packets: b.otherLink }, 'packets of another link type left out of the follow (a PCAP stream has one)');
    if (b.full) f.full = true;
    f.through = Math.max(f.through, b.through);
    if (f.pendingBytes > maxPending) return end(f, `the dispatcher fell more than ${maxPending} bytes behind this follow; it was ended rather than held in the agent's memory`);
    pump(f);
  };

  const onRun = (...args: unknown[]): void => {
    const last = args[args.length - 1];
    const ack = typeof last === 'function' ? (last as (a: RunAck) => void) : null;
    const reply = (a: RunAck) => {
      if (!a.accepted) log.warn({ reason: a.error }, 'refused a follow:run');
      try {
        ack?.(a);
      } catch {
        /* the dispatcher is gone */
      }
    };
    const m = parseMessage(followRun, 'follow:run', args[0]);
    if (!m.ok) return reply({ accepted: false, error: m.error });
    const { traceId, query } = m.value;
    if (running.has(traceId)) return reply({ accepted: false, error: `follow ${traceId} is already running on this agent` });
    if (running.size >= maxFollows) return reply({ accepted: false, error: `this agent runs ${running.size} follows, its limit: stop one first` });
    try {
      buildQuerySpec(query);
    } catch (e) {
      return reply({ accepted: false, error: (e as Error).message });
    }
    const f: Running = {
      id: traceId, pending: [], pendingBytes: 0, messages: [], headerSent: false, inFlight: 0, full: false, seq: 0, acked: 0,
      through: 0, toldThrough: 0, toldAt: 0, progressTimer: null, packets: 0, bytes: 0, ended: false,
    };
    running.set(traceId, f);
    opts.follows.add(traceId, query, (b) => onBatch(f, b));
    reply({ accepted: true });
    log.info({ traceId }, 'following');
  };

  const onStop = (data: unknown): void => {
    const m = parseMessage(traceRef, 'follow:stop', data);
    if (!m.ok) return log.warn({ reason: m.error }, 'bad follow:stop ignored');
    const f = running.get(m.value.traceId);
    if (f) end(f);
  };

  const onDisconnect = (): void => {
    // The dispatcher ends the follow's part of this host; nothing is held for a reconnection.
    for (const f of [...running.values()]) end(f);
  };

  socket.on('follow:run', onRun);
  socket.on('follow:stop', onStop);
  socket.on('disconnect', onDisconnect);
  return {
    close() {
      socket.off('follow:run', onRun);
      socket.off('follow:stop', onStop);
      socket.off('disconnect', onDisconnect);
      for (const f of [...running.values()]) end(f, 'the agent is shutting down');
    },
    active: () => running.size,
  };
}
