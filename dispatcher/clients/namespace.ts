import type { Namespace, Server, Socket } from 'socket.io';
import { z } from 'zod';
import { ClientAck, clientAuth, ClientAuth, ClientToDispatcherEvents, DispatcherToClientEvents, followRequest, Role } from '../../shared/protocol/client';
import { parseMessage, traceRef } from '../../shared/protocol/common';
import { answerOf, errorBody, TracefleetError } from '../../shared/errors/catalogue';
import { traceRequest } from '../../shared/query/query';
import { Traces } from '../trace/types';
import type { Follows } from '../follow/follows';
import { ClientLimits, DEFAULT_CLIENT_LIMITS, FreshReads, TokenBucket } from './limits';
import { UpdateBatcher } from './update-batch';
import { type Logger, componentLogger } from '../../shared/log/log';

export interface ClientPrincipal {
  name: string;
  roles: Role[];
}

/** What the namespace needs of dispatcher/auth. */
export interface ClientAuthenticator {
  authenticate(cred: ClientAuth | { bearer: string }, ctx?: { address?: string }): Promise<ClientPrincipal | null>;
  /** The principal as the store has it now (roles changed), or null once its credential no longer holds. */
  current(p: ClientPrincipal): Promise<ClientPrincipal | null>;
  can(p: ClientPrincipal, action: 'trace' | 'read' | 'admin'): boolean;
  canManage(p: ClientPrincipal, owner: string): boolean;
}

export interface ClientNamespaceOptions {
  traces: Traces;
  /** Live follows; without them follow:start is refused. */
  follows?: Follows;
  auth: ClientAuthenticator;
  logger?: Logger;
  /** Defaults: DEFAULT_CLIENT_LIMITS. */
  limits?: Partial<ClientLimits>;
  /** How often idle connections are checked against their user (ms, default 5 s): a removed user stops receiving updates. */
  recheckMs?: number;
}

/** agents:list takes `{}` or nothing. */
const noArgs = z.object({}).strict().optional();
/** Errors can quote what was sent (zod names unknown keys): a client gets back a sentence, not its own megabytes. */
const MAX_ERROR_CHARS = 1000;
const bounded = (s: string) => (s.length > MAX_ERROR_CHARS ? `${s.slice(0, MAX_ERROR_CHARS - 1)}…` : s);

export const traceRoom = (id: string) => `trace:${id}`;

type Failure = Extract<ClientAck<object>, { ok: false }>;

/** Turns what a handler threw into the answer a client can act on; `internal` ones are the dispatcher's to log. */
function failure(e: unknown): Failure & { internal?: true } {
  const { error, internal } = answerOf(e);
  const f: Failure = { ok: false, ...errorBody(error, bounded(error.message)) };
  return internal ? { ...f, internal } : f;
}

/**
 * The `/client` namespace (shared/protocol/client.ts): people and scripts
 * start, watch and cancel traces and list agents. Every socket is
 * authenticated at connection, and every message against the user as the
 * store has it now (a connection outlives role changes, removals and
 * revoked tokens: those end it). Every message is counted against the
 * socket's and the user's limits (limits.ts) before any work, then
 * validated; a handler's failure becomes the ack's error, never the
 * dispatcher's.
 */
export type ClientNamespace = Namespace<ClientToDispatcherEvents, DispatcherToClientEvents>;

export function attachClients(io: Server, opts: ClientNamespaceOptions): ClientNamespace {
  const log = componentLogger('dispatcher.clients', opts.logger);
  // One Server carries /agent and /client, each with its own event map, so the namespace is typed here.
  const nsp = io.of('/client') as unknown as ClientNamespace;
  const limits: ClientLimits = { ...DEFAULT_CLIENT_LIMITS, ...opts.limits };
  /** Each user's bucket, shared by their sockets here, and how many sockets hold it. */
  const userBuckets = new Map<string, { bucket: TokenBucket; sockets: number }>();
  const views = new FreshReads<Awaited<ReturnType<Traces['view']>>>();
  const agentLists = new FreshReads<Awaited<ReturnType<Traces['agents']>>>();

  const expired = 'your login no longer holds (user removed, password changed, API token revoked or session expired): connect again';
  /** Refreshes the socket's principal from the store; false when its user or credential is gone. */
  const holds = async (socket: Socket): Promise<boolean> => {
    const now = await opts.auth.current(socket.data.principal as ClientPrincipal);
    if (now) socket.data.principal = now;
    return now !== null;
  };
  const end = (socket: Socket): void => {
    log.info({ client: (socket.data.principal as ClientPrincipal).name }, 'login no longer holds; client disconnected');
    // Said before the end, so that a client ended between two messages knows why (and does not retry in vain).
    socket.emit('session:ended', errorBody(new TracefleetError('TF_SESSION_ENDED', { message: expired })));
    socket.disconnect(true);
  };
  // Idle sockets still receive their rooms' updates: they are checked now and then, only while there are any.
  let sweep: NodeJS.Timeout | null = null;
  const sweeping = () => {
    if (sweep || nsp.sockets.size === 0) return;
    sweep = setInterval(() => {
      if (nsp.sockets.size === 0) {
        clearInterval(sweep!);
        sweep = null;
        return;
      }
      for (const s of nsp.sockets.values()) {
        holds(s as Socket).then((ok) => ok || end(s as Socket), () => {}); // store down: the next sweep or message tries again
      }
    }, opts.recheckMs ?? 5000);
    sweep.unref();
  };

  nsp.use((socket, next) => {
    const addr = socket.handshake.address;
    const auth = parseMessage(clientAuth, 'auth', socket.handshake.auth);
    if (!auth.ok) return next(new Error('unauthorized: give a token, or a user and password'));
    opts.auth.authenticate(auth.value, { address: addr }).then(
      (p) => {
        if (!p) {
          const who = 'user' in auth.value ? { user: auth.value.user.slice(0, 64) } : { with: 'token' };
          log.warn({ ...who, addr, reason: 'bad credentials' }, 'refused client');
          return next(new Error('unauthorized: unknown user, wrong password, or unknown/expired token'));
        }
        socket.data.principal = p;
        next();
      },
      (e: Error) => next(new Error(`unavailable: ${e.message}`)),
    );
  });

  // Updates go to the trace's room; with the Redis adapter that reaches clients on every dispatcher. A host's
  // updates are gathered (update-batch.ts): a fleet-wide trace's went out one message each.
  const batcher = new UpdateBatcher((traceId, us) => {
    if (us.length === 1) nsp.to(traceRoom(traceId)).emit('trace:update', us[0]);
    else nsp.to(traceRoom(traceId)).emit('trace:updates', us);
  });
  opts.traces.onUpdate((u) => batcher.push(u));

  nsp.on('connection', (socket: Socket<ClientToDispatcherEvents, DispatcherToClientEvents>) => {
    const name = (socket.data.principal as ClientPrincipal).name;
    /** Events this socket sent without an ack callback, logged once each. */
    const noAck = new Set<string>();
    const socketBucket = new TokenBucket(limits.socketBurst, limits.socketPerSec);
    let shared = userBuckets.get(name);
    if (!shared) userBuckets.set(name, (shared = { bucket: new TokenBucket(limits.userBurst, limits.userPerSec), sockets: 0 }));
    shared.sockets++;
    const userBucket = shared.bucket;
    let inFlight = 0;
    let refused = 0;
    let inRow = 0;
    socket.on('disconnect', () => {
      const u = userBuckets.get(name);
      if (u && --u.sockets <= 0) userBuckets.delete(name);
    });
    sweeping();

    /** The refusal for an event over a limit, or null when it may go on. Cheap: a flood costs the dispatcher this and an ack. */
    const overLimit = (): Failure | null => {
      const now = Date.now();
      let why: string | null = null;
      const s = socketBucket.take(now);
      if (!s.ok) why = `this connection sent more than ${limits.socketPerSec} events a second (bursts of ${limits.socketBurst}); retry in ${s.retryMs} ms`;
      else {
        const u = userBucket.take(now);
        if (!u.ok) why = `user ${name}'s connections sent more than ${limits.userPerSec} events a second together; retry in ${u.retryMs} ms`;
        else if (inFlight >= limits.socketInFlight) why = `this connection has ${inFlight} requests unanswered, its limit: wait for their answers`;
      }
      if (!why) {
        inRow = 0;
        return null;
      }
      // One log line per burst refused, not one per event.
      if (refused++ % 1000 === 0) log.warn({ client: name, refused, reason: why }, 'client events refused as over the limits');
      if (++inRow === limits.socketRefusedMax) {
        log.warn({ client: name, addr: socket.handshake.address, inRow }, 'client events refused in a row as over the limits; disconnected');
        // After this event's answer: the client learns why.
        setImmediate(() => socket.disconnect(true));
      }
      return { ok: false, ...errorBody(new TracefleetError('TF_RATE_LIMITED', { message: `slow down: ${why}` })) };
    };

    const on = <T>(event: keyof ClientToDispatcherEvents, schema: z.ZodType<T>, need: 'trace' | 'read', handler: (data: T, p: ClientPrincipal) => Promise<object>) => {
      socket.on(event, (...args: unknown[]) => {
        const cb = typeof args[args.length - 1] === 'function' ? (args.pop() as (r: unknown) => void) : null;
        const limited = overLimit();
        if (!cb) {
          // Every answer, success or refusal, is the ack: acting on a message nobody can hear the answer to
          // (a trace started, or not, with no id to follow) only surprises the sender.
          if (!noAck.has(event)) {
            noAck.add(event);
            log.warn({ client: name, event }, 'message without an acknowledgement callback refused; emit it with a callback to get the answer');
          }
          return;
        }
        const reply = (r: object) => {
          try {
            cb(r);
          } catch {
            /* the client is gone */
          }
        };
        if (limited) return reply(limited);
        const m = parseMessage(schema, event, args[0]);
        if (!m.ok) {
          reply(failure(new TracefleetError('TF_REQUEST_INVALID', { message: m.error }, m.field)));
          return;
        }
        inFlight++;
        const run = async (): Promise<object> => {
          // The user as the store has it now: a demoted, removed or revoked user's open socket may do no more than REST lets them.
          if (!(await holds(socket as Socket))) return { ok: false, ...errorBody(new TracefleetError('TF_SESSION_ENDED', { message: expired })) } satisfies Failure;
          const p = socket.data.principal as ClientPrincipal;
          if (!opts.auth.can(p, need)) {
            return failure(new TracefleetError('TF_FORBIDDEN', { message: `user ${p.name} (${p.roles.join(', ') || 'no role'}) may not ${need === 'trace' ? 'start or cancel traces: that needs the tracer or admin role' : 'read traces'}` }));
          }
          return { ok: true, ...(await handler(m.value, p)) };
        };
        run().then(
          (r) => {
            inFlight--;
            reply(r);
            // A moment after the answer, so that it is flushed (long-polling waits for the client's next GET): the client learns why before the connection ends.
            if ((r as Failure).code === 'TF_SESSION_ENDED') setTimeout(() => end(socket as Socket), 200).unref();
          },
          (e) => {
            inFlight--;
            const { internal, ...f } = failure(e);
            if (internal) log.error({ client: name, event, err: e }, 'client request failed');
            reply(f);
          },
        );
      });
    };

    on('trace:start', traceRequest, 'trace', async (req, p) => {
      // In the room before any agent is asked: the first updates can come before start() returns.
      const trace = await opts.traces.start(req, p.name, (id) => socket.join(traceRoom(id)));
      return { trace };
    });
    on('trace:watch', traceRef, 'read', async ({ traceId }) => {
      const room = traceRoom(traceId);
      // Rooms are the socket's own id plus the traces it watches.
      if (!socket.rooms.has(room) && socket.rooms.size > limits.socketWatches) {
        throw new TracefleetError('TF_RATE_LIMITED', { message: `this connection watches ${socket.rooms.size - 1} traces, its limit: unwatch some (trace:unwatch) first` });
      }
      await socket.join(room);
      // Many watchers of one trace (a page each) share one read of the store.
      const trace = await views.read(traceId, () => opts.traces.view(traceId));
      if (!trace) {
        await socket.leave(traceRoom(traceId));
        throw new TracefleetError('TF_TRACE_NOT_FOUND', { message: `no trace ${traceId}` });
      }
      return { trace };
    });
    on('trace:unwatch', traceRef, 'read', async ({ traceId }) => {
      await socket.leave(traceRoom(traceId));
      return {};
    });
    on('trace:cancel', traceRef, 'trace', async ({ traceId }, p) => ({ trace: await opts.traces.cancel(traceId, (owner) => opts.auth.canManage(p, owner)) }));
    /** The follows this socket started: they end when it goes. */
    const following = new Set<string>();
    socket.on('disconnect', () => {
      for (const id of following) opts.follows?.clientGone(id);
    });
    on('follow:start', followRequest, 'trace', async (req, p) => {
      const follows = opts.follows;
      if (!follows) throw new TracefleetError('TF_FOLLOW_NO_AGENT', { message: 'this dispatcher runs no live follows' });
      if (following.size >= limits.socketWatches) throw new TracefleetError('TF_RATE_LIMITED', { message: `this connection runs ${following.size} follows, its limit: stop one first` });
      let id = '';
      const trace = await follows.start(req, p.name, {
        send: (d) =>
          new Promise<void>((resolve, reject) => {
            if (!socket.connected) return reject(new Error('gone'));
            socket.emit('follow:data', d, () => resolve());
          }),
        ended: (e) => {
          following.delete(e.traceId);
          if (socket.connected) socket.emit('follow:end', e);
        },
        drop: () => {
          log.warn({ client: name, traceId: id }, 'follow client too slow; disconnected');
          // After the follow:end it was sent: the client learns why.
          setTimeout(() => socket.disconnect(true), 200).unref();
        },
      });
      id = trace.id;
      following.add(id);
      await socket.join(traceRoom(id));
      return { trace };
    });
    on('follow:stop', traceRef, 'trace', async ({ traceId }, p) => {
      if (!opts.follows) throw new TracefleetError('TF_TRACE_NOT_FOUND', { message: `no follow ${traceId}` });
      opts.follows.stop(traceId, (owner) => opts.auth.canManage(p, owner));
      return {};
    });
    on('agents:list', noArgs, 'read', async () => ({ agents: await agentLists.read('agents', () => opts.traces.agents()) }));
  });
  return nsp;
}
