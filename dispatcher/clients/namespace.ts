import type { Namespace, Server, Socket } from 'socket.io';
import { z } from 'zod';
import { ClientAck, clientAuth, ClientAuth, ClientToDispatcherEvents, DispatcherToClientEvents, Role } from '../../shared/protocol/client';
import { parseMessage, traceRef } from '../../shared/protocol/common';
import { answerOf, errorBody, TracefleetError } from '../../shared/errors/catalogue';
import { traceRequest } from '../../shared/query/query';
import { Traces } from '../trace/types';

export interface ClientPrincipal {
  name: string;
  roles: Role[];
}

/** What the namespace needs of dispatcher/auth. */
export interface ClientAuthenticator {
  authenticate(cred: ClientAuth | { bearer: string }, ctx?: { address?: string }): Promise<ClientPrincipal | null>;
  can(p: ClientPrincipal, action: 'trace' | 'read' | 'admin'): boolean;
}

export interface ClientNamespaceOptions {
  traces: Traces;
  auth: ClientAuthenticator;
  log?: (line: string) => void;
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
 * authenticated at connection; every message is validated; a handler's
 * failure becomes the ack's error, never the dispatcher's.
 */
export type ClientNamespace = Namespace<ClientToDispatcherEvents, DispatcherToClientEvents>;

export function attachClients(io: Server, opts: ClientNamespaceOptions): ClientNamespace {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  // One Server carries /agent and /client, each with its own event map, so the namespace is typed here.
  const nsp = io.of('/client') as unknown as ClientNamespace;

  nsp.use((socket, next) => {
    const addr = socket.handshake.address;
    const auth = parseMessage(clientAuth, 'auth', socket.handshake.auth);
    if (!auth.ok) return next(new Error('unauthorized: give a token, or a user and password'));
    opts.auth.authenticate(auth.value, { address: addr }).then(
      (p) => {
        if (!p) {
          const who = 'user' in auth.value ? `user ${JSON.stringify(auth.value.user.slice(0, 64))}` : 'a token';
          log(`tracefleet dispatcher: refused client ${who} from ${addr}: bad credentials`);
          return next(new Error('unauthorized: unknown user, wrong password, or unknown/expired token'));
        }
        socket.data.principal = p;
        next();
      },
      (e: Error) => next(new Error(`unavailable: ${e.message}`)),
    );
  });

  // Updates go to the trace's room; with the Redis adapter that reaches clients on every dispatcher.
  opts.traces.onUpdate((u) => nsp.to(traceRoom(u.traceId)).emit('trace:update', u));

  nsp.on('connection', (socket: Socket<ClientToDispatcherEvents, DispatcherToClientEvents>) => {
    const p = socket.data.principal as ClientPrincipal;
    /** Events this socket sent without an ack callback, logged once each. */
    const noAck = new Set<string>();

    const on = <T>(event: keyof ClientToDispatcherEvents, schema: z.ZodType<T>, need: 'trace' | 'read', handler: (data: T) => Promise<object>) => {
      socket.on(event, (...args: unknown[]) => {
        const cb = typeof args[args.length - 1] === 'function' ? (args.pop() as (r: unknown) => void) : null;
        if (!cb) {
          // Every answer, success or refusal, is the ack: acting on a message nobody can hear the answer to
          // (a trace started, or not, with no id to follow) only surprises the sender.
          if (!noAck.has(event)) {
            noAck.add(event);
            log(`tracefleet dispatcher: client ${p.name}: ${event} without an acknowledgement callback: refused; emit it with a callback to get the answer`);
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
        if (!opts.auth.can(p, need)) {
          reply(failure(new TracefleetError('TF_FORBIDDEN', { message: `user ${p.name} (${p.roles.join(', ') || 'no role'}) may not ${need === 'trace' ? 'start or cancel traces: that needs the tracer or admin role' : 'read traces'}` })));
          return;
        }
        const m = parseMessage(schema, event, args[0]);
        if (!m.ok) {
          reply(failure(new TracefleetError('TF_REQUEST_INVALID', { message: m.error }, m.field)));
          return;
        }
        handler(m.value).then(
          (r) => reply({ ok: true, ...r }),
          (e) => {
            const { internal, ...f } = failure(e);
            if (internal) log(`tracefleet dispatcher: client ${p.name}: ${event}: ${(e as Error).stack ?? e}`);
            reply(f);
          },
        );
      });
    };

    on('trace:start', traceRequest, 'trace', async (req) => {
      // In the room before any agent is asked: the first updates can come before start() returns.
      const trace = await opts.traces.start(req, p.name, (id) => socket.join(traceRoom(id)));
      return { trace };
    });
    on('trace:watch', traceRef, 'read', async ({ traceId }) => {
      await socket.join(traceRoom(traceId));
      const trace = await opts.traces.view(traceId);
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
    on('trace:cancel', traceRef, 'trace', async ({ traceId }) => ({ trace: await opts.traces.cancel(traceId) }));
    on('agents:list', noArgs, 'read', async () => ({ agents: await opts.traces.agents() }));
  });
  return nsp;
}
