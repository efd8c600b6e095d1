import type { Namespace, Server, Socket } from 'socket.io';
import { z } from 'zod';
import { ClientAck, clientAuth, ClientAuth, parseMessage, Role, traceRequest } from '../../shared/protocol/wire';
import { StoreUnreachableError } from '../store/store';
import { TraceRequestError, Traces } from '../trace/types';

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

const traceRef = z.object({ traceId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'trace ids are 1-128 letters, digits, _ or -') }).strict();

export const traceRoom = (id: string) => `trace:${id}`;

type Failure = Extract<ClientAck<object>, { ok: false }>;

/** Turns what a handler threw into the answer a client can act on. */
function failure(e: unknown): Failure {
  if (e instanceof TraceRequestError) return { ok: false, error: e.message, code: e.code === 'not_found' ? 'not_found' : 'bad_request' };
  if (e instanceof StoreUnreachableError) return { ok: false, error: e.message, code: 'unavailable' };
  return { ok: false, error: `the dispatcher failed: ${(e as Error).message}`, code: 'failed' };
}

/**
 * The `/client` namespace (shared/protocol/wire.ts): people and scripts
 * start, watch and cancel traces and list agents. Every socket is
 * authenticated at connection; every message is validated; a handler's
 * failure becomes the ack's error, never the dispatcher's.
 */
export function attachClients(io: Server, opts: ClientNamespaceOptions): Namespace {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const nsp = io.of('/client');

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

  nsp.on('connection', (socket: Socket) => {
    const p = socket.data.principal as ClientPrincipal;

    const on = <T>(event: string, schema: z.ZodType<T> | null, need: 'trace' | 'read', handler: (data: T) => Promise<object>) => {
      socket.on(event, (...args: unknown[]) => {
        const cb = typeof args[args.length - 1] === 'function' ? (args.pop() as (r: unknown) => void) : null;
        const reply = (r: object) => {
          try {
            cb?.(r);
          } catch {
            /* the client is gone */
          }
        };
        if (!opts.auth.can(p, need)) {
          reply({ ok: false, error: `user ${p.name} (${p.roles.join(', ') || 'no role'}) may not ${need === 'trace' ? 'start or cancel traces: that needs the tracer or admin role' : 'read traces'}`, code: 'forbidden' } satisfies Failure);
          return;
        }
        let data = args[0] as T;
        if (schema) {
          const m = parseMessage(schema, event, args[0]);
          if (!m.ok) {
            reply({ ok: false, error: m.error, code: 'bad_request' } satisfies Failure);
            return;
          }
          data = m.value;
        }
        handler(data).then(
          (r) => reply({ ok: true, ...r }),
          (e) => {
            const f = failure(e);
            if (f.code === 'failed') log(`tracefleet dispatcher: client ${p.name}: ${event}: ${(e as Error).stack ?? e}`);
            reply(f);
          },
        );
      });
    };

    on('trace:start', traceRequest, 'trace', async (req) => {
      const trace = await opts.traces.start(req, p.name);
      await socket.join(traceRoom(trace.id));
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
    on('agents:list', null, 'read', async () => ({ agents: await opts.traces.agents() }));
  });
  return nsp;
}
