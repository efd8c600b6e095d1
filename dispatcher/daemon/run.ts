import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Server } from 'socket.io';
import { attachClients } from '../clients/namespace';
import { Follows } from '../follow/follows';
import { attachFleet, FleetToken } from '../fleet/server';
import { AGENT_MESSAGE_MAX_BYTES } from '../../shared/protocol/agent';
import { Orchestrator } from '../trace/orchestrator';
import type { HostRunTimeouts } from '../trace/host-run';
import { Spool } from '../trace/spool';
import { openStore, StoreAccess } from './store-access';
import { Auth } from '../auth/auth';
import { createApi } from '../api/api';
import { FleetStats } from '../stats/fleet-stats';
import { Alerts } from '../alerts/alerts';
import { AlertWebhook } from '../alerts/webhook';
import { Metrics } from '../api/metrics';
import { connectRedis, RedisLink } from './redis';
import { clientAddress } from '../api/client-address';
import { DispatcherHealth } from './health';
import { type Logger, processLogger } from '../../shared/log/log';

export interface DispatcherOptions {
  host?: string;
  port?: number;
  /** Apache CouchDB (--couchdb, COUCHDB_URL); absent: the embedded store under dataDir. */
  couchdbUrl?: string;
  db?: string;
  dataDir: string;
  agentTokens: FleetToken[];
  tls?: { cert: string; key: string };
  /** Shares agents and clients with other dispatchers (REDIS_URL). */
  redisUrl?: string;
  retentionDays?: number;
  timeouts?: Partial<HostRunTimeouts>;
  retryMs?: number;
  /** The web page's files, served at /. */
  staticDir?: string;
  /** Reverse proxies whose X-Forwarded-For is believed (--trust-proxy): addresses or CIDRs. */
  trustProxy?: string[];
  /** The process's root logger, of which each component gets a child (default: processLogger()). */
  logger?: Logger;
  /** Where raised and cleared alerts are POSTed (Alertmanager's webhook JSON). */
  alertWebhook?: string;
}

export interface RunningDispatcher {
  url: string;
  store: StoreAccess;
  orchestrator: Orchestrator;
  follows: Follows;
  /** The fleet's SIP statistics windows (GET /api/stats, alerts). */
  stats: FleetStats;
  alerts: Alerts;
  http: HttpServer;
  io: Server;
  close(): Promise<void>;
}

const PURGE_EVERY_MS = 6 * 3600_000;

/**
 * The dispatcher: one http(s) port carrying the REST API, the web page and
 * Socket.IO (`/agent` for agents, `/client` for people and scripts), a
 * store (CouchDB or the embedded one), and the disk spool under dataDir.
 */
export async function startDispatcher(opts: DispatcherOptions): Promise<RunningDispatcher> {
  const root = opts.logger ?? processLogger();
  const child = (component: string) => root.child({ component });
  const log = child('dispatcher');
  // First, so that a bad --trust-proxy entry fails before anything starts.
  const peer = clientAddress(opts.trustProxy);
  // The spool and the embedded store hold captured calls: for this user only.
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(opts.dataDir, 0o700);
  const store = await openStore({ couchdbUrl: opts.couchdbUrl, dataDir: opts.dataDir, db: opts.db, logger: child('dispatcher.store'), publish: true });
  const cleanups: Array<() => Promise<void> | void> = [() => store.close()];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  };
  try {
    const spool = new Spool(join(opts.dataDir, 'spool'));
    const http = opts.tls
      ? createHttpsServer({ cert: readFileSync(opts.tls.cert), key: readFileSync(opts.tls.key) })
      : createHttpServer();
    // A trace:done with its SIP summaries (up to ~1 MB, agent/trace/serve.ts) and a trace:chunk of MAX_CHUNK_BYTES must fit in
    // one Socket.IO message (AGENT_MESSAGE_MAX_BYTES).
    // serveClient: the web page imports the browser client from /socket.io/socket.io.esm.min.js (the server's own version).
    const io = new Server(http, { serveClient: true, maxHttpBufferSize: AGENT_MESSAGE_MAX_BYTES });
    // Nothing is served on the default namespace: an open door there would only
    // hold sockets (and memory) for whoever knocks, unauthenticated.
    io.use((_socket, next) => next(new Error('nothing is served on the default namespace: agents connect to /agent, clients to /client')));
    // The socket handshake's address (failed logins are counted per address) is the client's
    // behind a trusted proxy too; set here, before any namespace builds its handshake.
    io.engine.on('connection', (raw: { request: import('node:http').IncomingMessage; remoteAddress: string }) => {
      raw.remoteAddress = peer(raw.request);
    });
    let redis: RedisLink | null = null;
    if (opts.redisUrl) {
      redis = await connectRedis(io, opts.redisUrl, child('dispatcher.redis'));
      cleanups.push(() => redis!.close());
    }
    const auth = await Auth.open(store.store, { spentTokens: redis?.spentTokens });
    const fleet = attachFleet(io, { tokens: opts.agentTokens, logger: child('dispatcher.fleet') });
    const orchestrator = new Orchestrator({ store: store.store, fleet, spool, timeouts: opts.timeouts, retryMs: opts.retryMs, clustered: redis !== null, logger: child('dispatcher.trace') });
    cleanups.push(() => orchestrator.close());
    const follows = new Follows({ orchestrator, fleet, logger: child('dispatcher.follow') });
    cleanups.push(() => follows.close());
    attachClients(io, { traces: orchestrator, follows, auth, logger: child('dispatcher.clients') });
    const health = new DispatcherHealth();
    cleanups.push(() => health.close());
    const stats = new FleetStats();
    fleet.onStats((agent, windows) => stats.apply(agent, windows));
    // The webhook's links need the URL, known once listening: it is set then.
    let publicUrl = '';
    const webhook = opts.alertWebhook ? new AlertWebhook(opts.alertWebhook, () => publicUrl, child('dispatcher.alerts')) : undefined;
    if (webhook) cleanups.push(() => webhook.close());
    const metrics = new Metrics({ orchestrator, registry: fleet.registry, store: store.store, webhook });
    // Every page of every dispatcher (through the Redis adapter when clustered).
    const alerts = new Alerts({ store: store.store, stats, webhook, publish: (e) => io.of('/client').emit('alert', e), logger: child('dispatcher.alerts') });
    cleanups.push(() => alerts.close());
    await alerts.load();
    const app = createApi({ store: store.store, stats, alerts, traces: orchestrator, auth, metrics, logger: child('dispatcher.api'), staticDir: opts.staticDir, trustProxy: opts.trustProxy, health: () => ({ ...health.check() }) });
    http.on('request', app);
    await orchestrator.recover();

    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(opts.port ?? 8060, opts.host ?? '127.0.0.1', () => {
        http.off('error', reject);
        resolve();
      });
    });
    const a = http.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    const url = `${opts.tls ? 'https' : 'http'}://${host}:${a.port}`;
    publicUrl = url;
    log.info({ url, agents: `${url}/agent`, redis: redis?.url }, 'listening');

    const days = opts.retentionDays ?? 30;
    const purge = async () => {
      try {
        const n = await store.store.purgeOlderThan(days);
        if (n > 0) log.info({ traces: n, retentionDays: days }, 'purged old traces');
      } catch (e) {
        log.error({ err: e }, 'purging old traces failed');
      }
    };
    void purge();
    const purgeTimer = setInterval(() => void purge(), PURGE_EVERY_MS);
    purgeTimer.unref();
    cleanups.push(() => clearInterval(purgeTimer));

    let closing: Promise<void> | null = null;
    return {
      url,
      store,
      orchestrator,
      follows,
      stats,
      alerts,
      http,
      io,
      close() {
        closing ??= (async () => {
          await new Promise<void>((resolve) => {
            io.close(() => resolve());
            http.closeAllConnections();
          });
          await cleanup();
        })();
        return closing;
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
