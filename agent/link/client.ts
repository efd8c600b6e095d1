import { statSync } from 'node:fs';
import { io, Socket } from 'socket.io-client';
import type { CaptureEngineStats } from '../capture/capture';
import { listSegments } from '../ring/layout';
import { type Logger, componentLogger } from '../../shared/log/log';
import { AgentHello, AgentStatus, HEARTBEAT_MS, PROTOCOL_VERSION, RingStatus, helloAck, AgentToDispatcherEvents, DispatcherToAgentEvents } from '../../shared/protocol/agent';
import { parseMessage } from '../../shared/protocol/common';
import type { StatsOutbox } from '../stats/outbox';
import { AGENT_TRANSPORTS } from './transports';

export interface DispatcherLinkOptions {
  /** Dispatcher base URL, e.g. http://127.0.0.1:8060 (the link uses url + '/agent'). */
  url: string;
  token: string;
  name: string;
  hello: () => Omit<AgentHello, 'protocol'>;
  status: () => AgentStatus;
  /** The SIP statistics windows to send with the heartbeats (agent/stats/outbox.ts); absent: none. */
  stats?: Pick<StatsOutbox, 'take' | 'resendAll'>;
  /** PEM CA certificate(s) to trust for an https dispatcher (a private CA or a self-signed certificate); replaces the system's CAs for this link. */
  ca?: string;
  logger?: Logger;
}

/** The `/agent` socket as the agent sees it (shared/protocol/agent.ts's event maps). */
export type DispatcherSocket = Socket<DispatcherToAgentEvents, AgentToDispatcherEvents>;

export interface DispatcherLink {
  socket: DispatcherSocket;
  close(): void;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;
/** A connection that lasted this long resets the retry backoff. */
const STABLE_MS = 10_000;

/**
 * The agent's connection to the dispatcher's `/agent` namespace: hello on
 * every (re)connection, a heartbeat every HEARTBEAT_MS while connected, and
 * reconnection forever with randomized backoff, including after a refusal or
 * a disconnect by the server (which Socket.IO does not retry by itself).
 * Nothing here throws into the caller: a dispatcher away is only logged.
 */
export function connectDispatcher(opts: DispatcherLinkOptions): DispatcherLink {
  const log = componentLogger('agent.link', opts.logger);
  const base = opts.url.replace(/\/+$/, '');
  const socket: DispatcherSocket = io(`${base}/agent`, {
    auth: { token: opts.token, name: opts.name },
    forceNew: true,
    reconnection: true,
    reconnectionAttempts: Infinity,
    reconnectionDelay: RETRY_MIN_MS,
    reconnectionDelayMax: RETRY_MAX_MS,
    randomizationFactor: 0.5,
    timeout: 10_000,
    transportImplementations: AGENT_TRANSPORTS,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
  });
  let closed = false;
  let heartbeat: NodeJS.Timeout | null = null;
  let retry: NodeJS.Timeout | null = null;
  let attempts = 0;
  let connectedSince = 0;
  const logged = new Set<string>();

  const stopHeartbeat = () => {
    if (heartbeat) clearInterval(heartbeat);
    heartbeat = null;
  };
  /** Reconnects the way Socket.IO's manager would, for the cases it leaves to the application. */
  const retryLater = () => {
    if (closed || retry) return;
    const d = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempts, 10));
    attempts++;
    const delay = Math.round(d * (0.5 + Math.random()));
    retry = setTimeout(() => {
      retry = null;
      if (!closed && !socket.connected && !socket.active) socket.connect();
    }, Math.min(delay, RETRY_MAX_MS));
    retry.unref();
  };
  const safely = <T>(what: string, f: () => T): T | null => {
    try {
      return f();
    } catch (e) {
      log.error({ err: e, what }, 'dispatcher link: a callback failed');
      return null;
    }
  };

  socket.on('connect', () => {
    logged.clear();
    connectedSince = Date.now();
    log.info({ dispatcher: base, name: opts.name }, 'connected to dispatcher');
    const h = safely('hello', opts.hello);
    if (h) {
      socket.timeout(10_000).emit('agent:hello', { ...h, protocol: PROTOCOL_VERSION }, (err: Error | null, ack: unknown) => {
        if (err) return log.warn({ reason: err.message }, 'dispatcher did not acknowledge hello');
        const a = parseMessage(helloAck, 'hello ack', ack);
        if (!a.ok) log.warn({ reason: a.error }, 'bad hello ack');
        else if (!a.value.ok) log.error({ code: a.value.code, field: a.value.field, reason: a.value.message ?? a.value.error ?? 'no reason given' }, 'dispatcher refused hello');
      });
    }
    stopHeartbeat();
    // This dispatcher may never have had them (it restarted, or this agent was away).
    opts.stats?.resendAll();
    heartbeat = setInterval(() => {
      if (!socket.connected) return;
      const s = safely('status', opts.status);
      if (!s) return;
      const stats = opts.stats ? safely('stats', () => opts.stats!.take()) : null;
      socket.emit('agent:heartbeat', stats ? { ...s, stats } : s);
    }, HEARTBEAT_MS);
    heartbeat.unref();
  });

  socket.on('disconnect', (reason) => {
    stopHeartbeat();
    if (Date.now() - connectedSince >= STABLE_MS) attempts = 0;
    if (closed) return;
    log.warn({ reason }, 'disconnected from dispatcher; reconnecting');
    // The server hung up on purpose (e.g. another agent took this name): Socket.IO leaves retrying to us.
    if (reason === 'io server disconnect') retryLater();
  });

  socket.on('connect_error', (e: Error) => {
    if (closed) return;
    const msg = e.message;
    if (!logged.has(msg)) {
      logged.add(msg);
      if (/^unauthorized/.test(msg)) log.error({ reason: msg }, 'dispatcher refused this agent; retrying with backoff');
      else log.warn({ dispatcher: base, reason: msg }, 'cannot reach dispatcher; retrying');
    }
    // A refusal by the server's middleware is not retried by Socket.IO itself.
    if (!socket.active) retryLater();
  });

  return {
    socket,
    close() {
      closed = true;
      stopHeartbeat();
      if (retry) clearTimeout(retry);
      retry = null;
      socket.disconnect();
    },
  };
}

/**
 * The ring as the dispatcher sees it, from segment names and sizes (no index
 * is opened): oldest = opening time of the oldest segment, newest = last
 * write to the newest segment of any stream.
 */
export function readRingStatus(ringDir: string): RingStatus {
  let segs;
  try {
    segs = listSegments(ringDir);
  } catch {
    return { oldest: null, newest: null, bytes: 0, segments: 0 };
  }
  if (segs.length === 0) return { oldest: null, newest: null, bytes: 0, segments: 0 };
  const oldestMicros = Math.min(...segs.map((s) => s.startMicros));
  const newestByStream = new Map<string, (typeof segs)[number]>();
  for (const s of segs) {
    const cur = newestByStream.get(s.stream);
    if (!cur || s.startMicros >= cur.startMicros) newestByStream.set(s.stream, s);
  }
  let newestMs = 0;
  for (const s of newestByStream.values()) {
    try {
      newestMs = Math.max(newestMs, statSync(s.path).mtimeMs);
    } catch {
      newestMs = Math.max(newestMs, s.startMicros / 1000);
    }
  }
  return {
    oldest: new Date(Math.floor(oldestMicros / 1000)).toISOString(),
    newest: new Date(Math.floor(newestMs)).toISOString(),
    bytes: segs.reduce((n, s) => n + s.bytes, 0),
    segments: segs.length,
  };
}

/** AgentStatus from the capture engine's counters and the ring. */
export function agentStatusOf(stats: CaptureEngineStats, ringDir: string, indexErrors: number): AgentStatus {
  const capture: AgentStatus['capture'] = {};
  for (const [n, s] of Object.entries(stats.interfaces)) {
    capture[n] = { packets: s.packets, dropped: s.dropped, ifDropped: s.ifDropped, running: s.running };
  }
  return { ring: readRingStatus(ringDir), capture, indexErrors };
}
