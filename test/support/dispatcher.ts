/*
 * Test helpers for a whole dispatcher: startDispatcher in this process on a
 * database of its own, users of each role, and real Socket.IO clients of the
 * `/client` and `/agent` namespaces.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nano from 'nano';
import { io, Socket as ClientSocket } from 'socket.io-client';
import type { ClientAck, Role, TraceUpdate, TraceView } from '../../shared/protocol/client';
import { Auth } from '../../dispatcher/auth/auth';
import { uniqueDbName } from './couch';
import { DispatcherOptions, RunningDispatcher, startDispatcher } from '../../dispatcher/daemon/run';
import { MemoryLog, memoryLogger } from './log';

export const AGENT_TOKEN = 'dispatcher-test-agent-token-0123456789';

export interface TestUser {
  name: string;
  password: string;
  roles: Role[];
}

export const ADMIN: TestUser = { name: 'ada', password: 'admin-password-1', roles: ['admin'] };
export const TRACER: TestUser = { name: 'tom', password: 'tracer-password-1', roles: ['tracer'] };
export const VIEWER: TestUser = { name: 'vera', password: 'viewer-password-1', roles: ['viewer'] };

export interface TestDispatcher extends RunningDispatcher {
  /** Every record the dispatcher logged (its components are children of this logger). */
  log: MemoryLog;
  db: string;
  dataDir: string;
  auth: Auth;
  /** close(), then drop the database and remove the data dir. */
  stop(): Promise<void>;
}

/**
 * A dispatcher on 127.0.0.1 (any port) with its own database on couchUrl
 * and the users ADMIN, TRACER and VIEWER. Agents use AGENT_TOKEN unless
 * opts.agentTokens says otherwise.
 */
export async function startTestDispatcher(couchUrl: string, opts: Partial<DispatcherOptions> = {}): Promise<TestDispatcher> {
  const db = opts.db ?? uniqueDbName();
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'tf-dispatcher-'));
  const log = memoryLogger();
  const d = await startDispatcher({
    host: '127.0.0.1',
    port: 0,
    agentTokens: [{ token: AGENT_TOKEN }],
    timeouts: { runAckMs: 3000, idleMs: 5000 },
    retryMs: 200,
    ...opts,
    couchdbUrl: couchUrl,
    db,
    dataDir,
    logger: log.logger,
  });
  const auth = await Auth.open(d.store.store);
  for (const u of [ADMIN, TRACER, VIEWER]) await auth.addUser(u.name, u.password, u.roles);
  let stopping: Promise<void> | null = null;
  return {
    ...d,
    log,
    db,
    dataDir,
    auth,
    stop() {
      stopping ??= (async () => {
        await d.close();
        await nano(couchUrl).db.destroy(db).catch(() => {});
        rmSync(dataDir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

export interface ConnectOptions {
  /** PEM CA to trust for https. */
  ca?: string;
  transports?: Array<'polling' | 'websocket'>;
}

function open(url: string, nsp: '/client' | '/agent', auth: object, opts: ConnectOptions): ClientSocket {
  return io(`${url}${nsp}`, {
    auth,
    forceNew: true,
    reconnection: false,
    timeout: 10_000,
    ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
    ...(opts.transports ? { transports: opts.transports } : {}),
  });
}

/** A connected socket; rejects with the server's refusal (connect_error) as the message. */
export function connectSocket(url: string, nsp: '/client' | '/agent', auth: object, opts: ConnectOptions = {}): Promise<ClientSocket> {
  const s = open(url, nsp, auth, opts);
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', (e: Error) => {
      s.close();
      reject(e);
    });
  });
}

export const connectClient = (url: string, auth: object, opts: ConnectOptions = {}) => connectSocket(url, '/client', auth, opts);

/** The connect_error message of a connection the server must refuse; throws if it connects. */
export async function refusal(url: string, nsp: '/client' | '/agent', auth: object, opts: ConnectOptions = {}): Promise<string> {
  let s: ClientSocket;
  try {
    s = await connectSocket(url, nsp, auth, opts);
  } catch (e) {
    return (e as Error).message;
  }
  s.close();
  throw new Error(`${nsp} accepted ${JSON.stringify(auth).slice(0, 200)}; it must refuse it`);
}

/** Emits with an ack (5 s at most) and returns the ack. */
export async function ask<T extends object = object>(s: ClientSocket, event: string, ...args: unknown[]): Promise<ClientAck<T>> {
  return (await s.timeout(5_000).emitWithAck(event, ...args)) as ClientAck<T>;
}

export type TraceAck = ClientAck<{ trace: TraceView }>;

/** Every update (trace:update, trace:updates) a client socket receives, in arrival order. */
export class UpdateLog {
  readonly updates: TraceUpdate[] = [];
  constructor(socket: ClientSocket) {
    socket.on('trace:update', (u: TraceUpdate) => this.updates.push(u));
    socket.on('trace:updates', (us: TraceUpdate[]) => this.updates.push(...us));
  }

  of(traceId: string, host?: string | null): TraceUpdate[] {
    return this.updates.filter((u) => u.traceId === traceId && (host === undefined || u.host === host));
  }

  /** The whole trace's final update (host null, not running). */
  final(traceId: string): TraceUpdate | undefined {
    return this.updates.find((u) => u.traceId === traceId && u.host === null && u.state !== 'running');
  }
}
