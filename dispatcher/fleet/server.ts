import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Namespace, Server, Socket } from 'socket.io';
import { AGENT_MESSAGE_MAX_BYTES, agentAuth, agentHeartbeat, agentHello, AgentToDispatcherEvents, DispatcherToAgentEvents, HelloAck } from '../../shared/protocol/agent';
import { parseMessage, refusal } from '../../shared/protocol/common';
import { errorBody, TracefleetError } from '../../shared/errors/catalogue';
import { AgentRegistry } from './registry';
import type { StatsWindow } from '../../shared/stats/counts';
import { type Logger, componentLogger } from '../../shared/log/log';

export interface FleetToken {
  token: string;
  /** The one agent name this token is good for; undefined: a shared token, any name. */
  agent?: string;
}

export interface FleetOptions {
  host?: string;
  port?: number;
  tokens: FleetToken[];
  logger?: Logger;
}

/** A trace:* message from an agent, validated later by whoever runs the trace. */
export type TraceEventHandler = (agent: string, socketId: string, event: string, data: unknown, ack: (r: unknown) => void) => void;

/** The `/agent` namespace and one agent's socket, typed by shared/protocol/agent.ts's event maps. */
export type AgentNamespace = Namespace<AgentToDispatcherEvents, DispatcherToAgentEvents>;
export type AgentSocket = Socket<AgentToDispatcherEvents, DispatcherToAgentEvents>;

/** The `/agent` namespace on a Socket.IO server. */
export interface AgentFleet {
  agents: AgentNamespace;
  registry: AgentRegistry;
  /** Where trace:* messages from agents go (set by the trace machinery). */
  onTraceEvent(handler: TraceEventHandler): void;
  /** Where follow:* messages from agents go (set by dispatcher/follow). */
  onFollowEvent(handler: TraceEventHandler): void;
  /** Where the SIP statistics windows of heartbeats go (dispatcher/stats). */
  onStats(handler: (agent: string, windows: StatsWindow[]) => void): void;
  /** Called when an agent's current connection ends. */
  onAgentGone(listener: (agent: string, socketId: string) => void): void;
  /** The current socket of a connected agent, on this dispatcher. */
  socketOf(agent: string): AgentSocket | undefined;
}

export interface Fleet extends AgentFleet {
  /** http://host:port (the agents connect to url + '/agent'). */
  url: string;
  io: Server;
  http: HttpServer;
  close(): Promise<void>;
}

/** Agent → dispatcher events about a trace. */
export const TRACE_EVENTS = ['trace:started', 'trace:progress', 'trace:chunk', 'trace:done', 'trace:result', 'trace:error'] as const;

/** Agent → dispatcher events about a live follow. */
export const FOLLOW_EVENTS = ['follow:chunk', 'follow:progress', 'follow:end'] as const;

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Printable, bounded rendering of an untrusted value for a log line. */
function shown(v: unknown): string {
  return JSON.stringify(typeof v === 'string' ? v.slice(0, 64) : typeof v) ?? 'undefined';
}

/**
 * The dispatcher's side of the fleet: an http server carrying Socket.IO with
 * the `/agent` namespace (shared/protocol/agent.ts). Agents authenticate with
 * a token at connection; hello and heartbeats feed the registry. A malformed
 * message is answered or logged, never fatal.
 */
export async function startFleet(opts: FleetOptions): Promise<Fleet> {
  const http = createServer();
  const io = new Server(http, { serveClient: false, maxHttpBufferSize: AGENT_MESSAGE_MAX_BYTES });
  const fleet = attachFleet(io, opts);
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      http.off('error', reject);
      resolve();
    });
  });
  const a = http.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  let closing: Promise<void> | null = null;
  return {
    ...fleet,
    url: `http://${host}:${a.port}`,
    io,
    http,
    close() {
      closing ??= new Promise<void>((resolve) => {
        io.close(() => resolve());
        http.closeAllConnections();
      });
      return closing;
    },
  };
}

/**
 * The `/agent` namespace on an existing Socket.IO server (the dispatcher's,
 * which also carries `/client`). Socket.IO's maxHttpBufferSize must be at
 * least AGENT_MESSAGE_MAX_BYTES: a trace:chunk of MAX_CHUNK_BYTES (what
 * trace:run offers) with its framing.
 */
export function attachFleet(io: Server, opts: Omit<FleetOptions, 'host' | 'port'>): AgentFleet {
  const log = componentLogger('dispatcher.fleet', opts.logger);
  const tokens = opts.tokens.map((t) => ({ digest: digest(t.token), agent: t.agent }));
  const registry = new AgentRegistry();
  // One Server carries /agent and /client, each with its own event map, so the namespace is typed here.
  const nsp = io.of('/agent') as unknown as AgentNamespace;
  let traceHandler: TraceEventHandler | null = null;
  let followHandler: TraceEventHandler | null = null;
  let statsHandler: ((agent: string, windows: StatsWindow[]) => void) | null = null;
  const goneListeners: Array<(agent: string, socketId: string) => void> = [];

  nsp.use((socket, next) => {
    const addr = socket.handshake.address;
    const auth = parseMessage(agentAuth, 'auth', socket.handshake.auth);
    if (!auth.ok) {
      const name = (socket.handshake.auth as { name?: unknown } | undefined)?.name;
      // A bad name is worth telling the agent; anything wrong with the token is just an unknown token.
      const reason = auth.error.startsWith('bad auth message: name:') ? auth.error : 'unknown token';
      log.warn({ agent: shown(name), addr, reason }, 'refused agent');
      return next(new Error(`unauthorized: ${reason}`));
    }
    const d = digest(auth.value.token);
    const ok = tokens.some((t) => timingSafeEqual(t.digest, d) && (t.agent === undefined || t.agent === auth.value.name));
    if (!ok) {
      log.warn({ agent: shown(auth.value.name), addr, reason: 'unknown token' }, 'refused agent');
      return next(new Error('unauthorized: unknown token'));
    }
    socket.data.name = auth.value.name;
    next();
  });

  nsp.on('connection', (socket: AgentSocket) => {
    const name = socket.data.name as string;
    const addr = socket.handshake.address;
    const alog = log.child({ agent: name });
    const previous = registry.connected(name, socket.id);
    if (previous) {
      alog.info({ addr }, 'agent connected again; replacing its previous connection');
      nsp.sockets.get(previous)?.disconnect(true);
    } else alog.info({ addr }, 'agent connected');
    socket.data.view = registry.get(name);

    /** Registers a handler that no payload, missing ack or thrown error can turn into a crash. */
    const on = (event: keyof AgentToDispatcherEvents, handler: (data: unknown, ack: (r: unknown) => void) => void) => {
      socket.on(event, (...args: unknown[]) => {
        const cb = typeof args[args.length - 1] === 'function' ? (args.pop() as (r: unknown) => void) : null;
        const ack = (r: unknown) => {
          if (!cb) return;
          try {
            cb(r);
          } catch {
            /* the peer is gone */
          }
        };
        try {
          handler(args[0], ack);
        } catch (e) {
          alog.error({ err: e, event }, 'agent event handler failed');
          ack({ ok: false, ...errorBody(new TracefleetError('TF_INTERNAL', { reason: `${event} failed` })) });
        }
      });
    };

    on('agent:hello', (data, ack) => {
      const m = parseMessage(agentHello, 'agent:hello', data);
      if (!m.ok) {
        alog.warn({ reason: m.error }, 'bad message from agent');
        ack({ ok: false, ...refusal('TF_AGENT_MESSAGE_INVALID', m.error, m.field) } satisfies HelloAck);
        return;
      }
      if (!registry.isCurrent(name, socket.id)) return;
      registry.hello(name, m.value);
      // Peers (Redis adapter) see agents through fetchSockets(), which carries socket.data.
      socket.data.view = registry.get(name);
      ack({ ok: true } satisfies HelloAck);
    });

    on('agent:heartbeat', (data) => {
      const m = parseMessage(agentHeartbeat, 'agent:heartbeat', data);
      if (!m.ok) {
        alog.warn({ reason: m.error }, 'bad message from agent');
        return;
      }
      if (!registry.isCurrent(name, socket.id)) return;
      const { stats, ...status } = m.value;
      registry.status(name, status);
      socket.data.view = registry.get(name);
      if (stats && statsHandler) statsHandler(name, stats.windows);
    });

    for (const event of TRACE_EVENTS) {
      on(event, (data, ack) => {
        if (!traceHandler) {
          ack({ ok: false, ...refusal('TF_DISPATCHER_NO_TRACES', 'this dispatcher runs no traces') });
          return;
        }
        traceHandler(name, socket.id, event, data, ack);
      });
    }

    for (const event of FOLLOW_EVENTS) {
      on(event, (data, ack) => {
        if (!followHandler) {
          ack({ ok: false, error: 'this dispatcher runs no follows' });
          return;
        }
        followHandler(name, socket.id, event, data, ack);
      });
    }

    socket.on('error', (e: Error) => alog.warn({ err: e }, 'agent socket error'));
    socket.on('disconnect', (reason) => {
      // Traces on a replaced connection are lost too: the agent aborted them when it reconnected.
      for (const l of goneListeners) l(name, socket.id);
      if (!registry.isCurrent(name, socket.id)) return;
      registry.disconnected(name, socket.id);
      alog.info({ reason }, 'agent disconnected');
    });
  });

  return {
    agents: nsp,
    registry,
    onTraceEvent(h) {
      traceHandler = h;
    },
    onFollowEvent(h) {
      followHandler = h;
    },
    onStats(h) {
      statsHandler = h;
    },
    onAgentGone(l) {
      goneListeners.push(l);
    },
    socketOf(agent) {
      const id = registry.socketIdOf(agent);
      return id ? nsp.sockets.get(id) : undefined;
    },
  };
}
