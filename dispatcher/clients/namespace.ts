import type { Namespace, Server, Socket } from 'socket.io';
import { z } from 'zod';
import { ClientAck, clientAuth, ClientAuth, parseMessage, Role, traceRequest } from '../../shared/protocol/wire';
import { StoreUnreachableError } from '../store/store';
import { TraceRequestError, Traces } from '../trace/types';
import { type Logger, componentLogger } from '../../shared/log/log';

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
  logger?: Logger;
}

const traceRef = z.object({ traceId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'trace ids are 1-128 letters, digits, _ or -') }).strict();
/** agents:list takes `{}` or nothing. */
const noArgs = z.object({}).strict().optional();
/** Errors can quote what was sent (zod names unknown keys): a client gets back a sentence, not its own megabytes. */
const MAX_ERROR_CHARS = 1000;
const bounded = (s: string) => (s.length > MAX_ERROR_CHARS ? `${s.slice(0, MAX_ERROR_CHARS - 1)}…` : s);

export const traceRoom = (id: string) => `trace:${id}`;

type Failure = Extract<ClientAck<object>, { ok: false }>;

/** Turns what a handler threw into the answer a client can act on. */
function failure(e: unknown): Failure {
  if (e instanceof TraceRequestError) return { ok: false, error: bounded(e.message), code: e.code === 'not_found' ? 'not_found' : 'bad_request' };
  if (e instanceof StoreUnreachableError) return { ok: false, error: bounded(e.message), code: 'unavailable' };
  return { ok: false, error: bounded(`the dispatcher failed: ${(e as Error).message}`), code: 'failed' };
}

/**
 * The `/client` namespace (shared/protocol/wire.ts): people and scripts
 * start, watch and cancel traces and list agents. Every socket is
 * authenticated at connection; every message is validated; a handler's
 * failure becomes the ack's error, never the dispatcher's.
 */
export function attachClients(io: Server, opts: ClientNamespaceOptions): Namespace {
  const log = componentLogger('dispatcher.clients', opts.logger);
  const nsp = io.of('/client');

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

  // Updates go to the trace's room; with the Redis adapter that reaches clients on every dispatcher.
  opts.traces.onUpdate((u) => nsp.to(traceRoom(u.traceId)).emit('trace:update', u));

  nsp.on('connection', (socket: Socket) => {
    const p = socket.data.principal as ClientPrincipal;
    /** Events this socket sent without an ack callback, logged once each. */
    const noAck = new Set<string>();

    const on = <T>(event: string, schema: z.ZodType<T>, need: 'trace' | 'read', handler: (data: T) => Promise<object>) => {
      socket.on(event, (...args: unknown[]) => {
        const cb = typeof args[args.length - 1] === 'function' ? (args.pop() as (r: unknown) => void) : null;
        if (!cb) {
          // Every answer, success or refusal, is the ack: acting on a message nobody can hear the answer to
          // (a trace started, or not, with no id to follow) only surprises the sender.
          if (!noAck.has(event)) {
            noAck.add(event);
            log.warn({ client: p.name, event }, 'message without an acknowledgement callback refused; emit it with a callback to get the answer');
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
          reply({ ok: false, error: `user ${p.name} (${p.roles.join(', ') || 'no role'}) may not ${need === 'trace' ? 'start or cancel traces: that needs the tracer or admin role' : 'read traces'}`, code: 'forbidden' } satisfies Failure);
          return;
        }
        const m = parseMessage(schema, event, args[0]);
        if (!m.ok) {
          reply({ ok: false, error: bounded(m.error), code: 'bad_request' } satisfies Failure);
          return;
        }
        handler(m.value).then(
          (r) => reply({ ok: true, ...r }),
          (e) => {
            const f = failure(e);
            if (f.code === 'failed') log.error({ client: p.name, event, err: e }, 'client request failed');
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
        throw new TraceRequestError(`no trace ${traceId}`, 'not_found');
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
