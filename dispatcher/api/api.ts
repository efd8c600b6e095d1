/*
 * The dispatcher's REST API, /healthz, /metrics and (optionally) the web
 * page's files: one express app, mounted as the request handler of the same
 * http(s) server that Socket.IO is attached to. Routes and their answers are
 * listed in docs/ARCHITECTURE.md ("REST API").
 *
 * /healthz and /metrics need no credentials: load balancers and Prometheus
 * scrape them without any, and they tell only whether the store answers and
 * aggregate counts (no trace, user or agent names). Where even that must stay
 * private, keep the port off untrusted networks or block /metrics at the
 * proxy in front.
 */

import express, { NextFunction, Request, RequestHandler, Response } from 'express';
import { z } from 'zod';
import { Role, TraceView } from '../../shared/protocol/client';
import { traceId as traceIdSchema } from '../../shared/protocol/common';
import { QUERY_RULES, traceRequest } from '../../shared/query/query';
import { callFiguresOf } from '../../shared/query/call-figures';
import { HOST_ATTACHMENT, resultDocId, TraceDoc } from '../store/layout';
import { mergedPcap, storedAttachment } from '../store/parts';
import type { TraceStore } from '../store/store';
import type { Traces } from '../trace/types';
import { isFinalResult, traceView } from '../trace/view';
import { ClientAddress, clientAddress } from './client-address';
import { type Logger, componentLogger } from '../../shared/log/log';
import { downloadName, sendAttachment, sendTraceTar } from './download';
import { errorBody, TracefleetError } from '../../shared/errors/catalogue';
import { HttpError, toHttp } from './errors';
import { DEFAULT_FULL_MESSAGES, MAX_FULL_MESSAGES, mergedMessages, mergedStreams, withFullMessages } from './messages';
import { METRICS_CONTENT_TYPE, Metrics } from './metrics';
import type { FleetStats } from '../stats/fleet-stats';
import { statsQuery } from '../../shared/stats/answer';
import type { Alerts } from '../alerts/alerts';
import { alertRule, RULE_NAME_PATTERN } from '../../shared/alerts/rule';

export interface Principal {
  name: string;
  roles: Role[];
  via: 'password' | 'session' | 'token';
}

/** The Authorization header's credentials: a session or API token, or the base64 of `user:password` as sent. */
export type Credential = { bearer: string } | { basic: string };
export type Action = 'trace' | 'read' | 'admin';

/** What the API needs of dispatcher/auth (class Auth), typed by shape. */
export interface ApiAuth {
  authenticate(cred: Credential, ctx?: { address?: string }): Promise<Principal | null>;
  login(user: string, password: string, ctx?: { address?: string }): Promise<{ token: string; user: string; roles: Role[]; expiresAt: string } | null>;
  can(p: Principal, action: Action): boolean;
  downloadToken(p: Principal, path: string): Promise<{ token: string; expiresAt: string }>;
  /** `spend`: this request is the token's one download (a GET; a HEAD only checks it). */
  authenticateDownload(token: string, path: string, spend: boolean): Promise<Principal | null>;
  /** Whether p may cancel or delete a trace of `owner`. */
  canManage(p: Principal, owner: string): boolean;
}

export interface ApiDeps {
  store: TraceStore;
  /** The fleet's SIP statistics (GET /api/stats); absent: the route answers empty. */
  stats?: FleetStats;
  /** Alert rules and alerts (/api/alert-rules, /api/alerts); absent: those routes answer 404. */
  alerts?: Alerts;
  traces: Traces;
  auth: ApiAuth;
  metrics: Metrics;
  logger?: Logger;
  /** The web page's files, served at / when given. */
  staticDir?: string;
  /** Reverse proxies whose X-Forwarded-For is believed (client-address.ts); default none. */
  trustProxy?: readonly string[];
  /** Whether the dispatcher itself is keeping up (dispatcher/daemon/health.ts), for /healthz. */
  health?: () => { healthy: boolean; problems: string[] } & Record<string, unknown>;
}

/** Largest request body accepted (a trace request is a handful of filters). */
export const BODY_LIMIT = 64 * 1024;

const REALM = 'realm="tracefleet"';
const HOST = /^[^/\\\u0000-\u001f]{1,253}$/;

/** The paths a download token may open (as requested, percent-encoding and all). */
const DOWNLOAD_PATH = /^\/api\/traces\/[A-Za-z0-9_-]{1,128}\/(merged\.pcap|trace\.tar|hosts\/[^/?#]{1,800}\/packets\.pcap)$/;

/**
 * The page loads only its own files: no inline script or style (it has none),
 * no framing (clickjacking), no form posting elsewhere. CSSOM writes
 * (el.style.x = ...) are not inline styles and stay allowed.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const downloadTokenBody = z.object({ path: z.string().regex(DOWNLOAD_PATH, 'must be a download path: /api/traces/ID/merged.pcap, /api/traces/ID/trace.tar or /api/traces/ID/hosts/HOST/packets.pcap') }).strict();

const loginBody = z.object({ user: z.string().min(1).max(200), password: z.string().min(1).max(1024) }).strict();
const messagesQuery = z.object({
  full: z
    .enum(['0', '1', 'true', 'false'], { message: 'full is 1 (the whole messages, decoded from the stored PCAPs) or 0' })
    .transform((v) => v === '1' || v === 'true')
    .optional(),
  offset: z.string().regex(/^\d{1,9}$/, 'offset must be a whole number').transform(Number).optional(),
  limit: z
    .string()
    .regex(/^\d{1,9}$/, 'limit must be a whole number')
    .transform(Number)
    .refine((n) => n >= 1 && n <= MAX_FULL_MESSAGES, `limit must be a whole number from 1 to ${MAX_FULL_MESSAGES}`)
    .optional(),
});

const listQuery = z.object({
  limit: z
    .string()
    .regex(/^\d{1,4}$/, 'limit must be a whole number from 1 to 1000')
    .transform(Number)
    .refine((n) => n >= 1 && n <= 1000, 'limit must be a whole number from 1 to 1000')
    .optional(),
  bookmark: z.string().min(1).max(2048).optional(),
  user: z.string().min(1).max(200).optional(),
});

const NEEDS: Record<Action, string> = {
  read: 'the viewer, tracer or admin role',
  trace: 'the tracer or admin role',
  admin: 'the admin role',
};

function zodMessage(what: string, err: z.ZodError): string {
  const i = err.issues[0];
  return `bad ${what}: ${i.path.join('.') || 'body'}: ${i.message}`;
}

/** The top-level key a validation failure is about: the field the page shows it at. */
const zodField = (err: z.ZodError): string | null => (typeof err.issues[0].path[0] === 'string' ? err.issues[0].path[0] : null);

/** Express 4 does not catch a rejected promise: pass it on to the error handler. */
function h(fn: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return (req, res, next) => {
    fn(req, res).catch(next);
  };
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Who tried to log in, for the log: the user name of a password, never a token. */
type LoginWho = { user: string } | { with: 'token' };

export function createApi(deps: ApiDeps): express.Express {
  const { store, traces, auth, metrics } = deps;
  const log = componentLogger('dispatcher.api', deps.logger);
  const app = express();
  app.disable('x-powered-by');
  // Plain strings (or arrays when repeated), which the zod schemas then refuse or accept.
  app.set('query parser', 'simple');

  app.use((req, res, next) => {
    // Socket.IO answers these on the same server: a second answer would break its handshake.
    if (req.url.startsWith('/socket.io/')) return;
    res.once('finish', () => metrics.httpRequests.inc({ code: String(res.statusCode) }));
    // Downloads hold captured traffic: never let a browser sniff one into a page.
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
    // Older browsers that do not know frame-ancestors.
    res.setHeader('x-frame-options', 'DENY');
    res.setHeader('referrer-policy', 'no-referrer');
    next();
  });

  const peer: ClientAddress = clientAddress(deps.trustProxy);
  const address = (req: Request) => ({ address: peer(req) });

  const principal = (res: Response): Principal => res.locals.principal as Principal;

  const need = (p: Principal, action: Action, what: string): void => {
    if (!auth.can(p, action)) {
      throw new HttpError('TF_FORBIDDEN', `user ${p.name} (roles: ${p.roles.join(', ') || 'none'}) may not ${what}: that needs ${NEEDS[action]}; ask an admin`);
    }
  };

  const traceId = (req: Request): string => {
    const id = req.params.id;
    const r = traceIdSchema.safeParse(id);
    if (!r.success) throw new HttpError('TF_BAD_TRACE_ID', `${JSON.stringify(id.slice(0, 140))} is not a trace id: ${r.error.issues[0].message}`);
    return id;
  };

  const getTrace = async (id: string): Promise<TraceDoc> => {
    const t = await store.getTrace(id);
    if (!t) throw new TracefleetError('TF_TRACE_NOT_FOUND', { message: `no trace ${id}: list traces with GET /api/traces` });
    return t;
  };

  /** The stored trace as clients see it; a running one from the orchestrator, which knows its hosts' live state. */
  const viewOf = async (t: TraceDoc): Promise<TraceView> => {
    if (t.state === 'running') {
      const live = await traces.view(t.id);
      if (live) return live;
    }
    // By id, as Orchestrator.view() reads them.
    return traceView(t, await store.resultsOf(t.id, t.hosts));
  };

  // ---- outside /api: health and metrics (no credentials, see above) -------

  // Healthy or not, and why, but nothing about where the store is (no login is needed here).
  let storeWasDown = false;
  app.get(
    '/healthz',
    h(async (_req, res) => {
      res.set('cache-control', 'no-store');
      const self = deps.health?.() ?? { healthy: true, problems: [] };
      try {
        await store.ping();
        storeWasDown = false;
      } catch (e) {
        // The reason (with the store's address) goes to the log, once per outage.
        if (!storeWasDown) log.warn({ err: e }, '/healthz: the store does not answer');
        storeWasDown = true;
        res.status(503).json({ ok: false, ...errorBody(new TracefleetError('TF_STORE_UNREACHABLE', { message: 'the store does not answer: see the dispatcher\'s log' })), ...self });
        return;
      }
      let agents: { connected: number; known: number } | { error: string };
      try {
        const list = await traces.agents();
        agents = { connected: list.filter((a) => a.connected).length, known: list.length };
      } catch (e) {
        agents = { error: (e as Error).message };
      }
      res.status(self.healthy ? 200 : 503).json({ ok: self.healthy, store: 'ok', agents, ...self });
    }),
  );

  app.get(
    '/metrics',
    h(async (_req, res) => {
      const text = await metrics.render();
      // end(), not send(): send() would rewrite the content type's parameters.
      res.status(200).set('content-type', METRICS_CONTENT_TYPE).set('cache-control', 'no-store').end(text);
    }),
  );

  // ---- /api ------------------------------------------------------------------

  const api = express.Router();
  api.use((_req, res, next) => {
    res.set('cache-control', 'no-store');
    next();
  });
  api.use(express.json({ limit: BODY_LIMIT, strict: true, type: 'application/json' }));

  /** JSON bodies only: a form or text/plain body is what a cross-site page can send without asking. */
  const jsonBody = (req: Request): unknown => {
    if (!req.is('application/json')) {
      throw new HttpError('TF_BODY_NOT_JSON', 'send the request body as JSON with the header Content-Type: application/json');
    }
    return req.body;
  };

  // The page checks its form with the same rules the dispatcher and agents apply (shared/query); public like the page itself.
  const rules = JSON.stringify(QUERY_RULES);
  api.get('/query-rules', (_req, res) => {
    res.type('application/json').send(rules);
  });

  api.post(
    '/login',
    h(async (req, res) => {
      const body = loginBody.safeParse(jsonBody(req));
      if (!body.success) throw new HttpError('TF_PARAMS_INVALID', `${zodMessage('login', body.error)}; send {"user": "...", "password": "..."}`, {}, zodField(body.error));
      const ctx = address(req);
      const session = await loggedLogin({ user: body.data.user.slice(0, 64) }, ctx.address, () => auth.login(body.data.user, body.data.password, ctx));
      if (!session) throw new HttpError('TF_BAD_CREDENTIALS', 'wrong user name or password', { 'www-authenticate': `Bearer ${REALM}` });
      res.json({ token: session.token, user: session.user, roles: session.roles, expiresAt: session.expiresAt });
    }),
  );

  const credentialsName = (cred: Credential): LoginWho => {
    if ('bearer' in cred) return { with: 'token' };
    const text = Buffer.from(cred.basic, 'base64').toString('utf8');
    return { user: text.slice(0, Math.max(0, text.indexOf(':'))).slice(0, 64) };
  };

  /** Failed logins and lockouts are logged as the socket namespace logs them. */
  const loggedLogin = async <T>(who: LoginWho, from: string | undefined, check: () => Promise<T | null>): Promise<T | null> => {
    try {
      const out = await check();
      if (!out) log.warn({ ...who, addr: from, reason: 'bad credentials' }, 'refused REST client');
      return out;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'TF_LOGIN_RATE_LIMITED' || code === 'TF_LOGIN_BUSY') log.warn({ ...who, addr: from, code, reason: (e as Error).message }, 'refused REST client');
      throw e;
    }
  };

  /** Who is asking, from the Authorization header; a refusal says how to log in. */
  const authenticate = async (req: Request): Promise<Principal> => {
    const header = req.headers.authorization;
    let cred: Credential;
    if (header !== undefined) {
      const m = /^(Bearer|Basic)[ ]+([A-Za-z0-9._~+/=-]{1,2048})[ ]*$/i.exec(header);
      if (!m) {
        throw new HttpError('TF_AUTH_HEADER_INVALID', "the Authorization header must be 'Bearer <token>' or 'Basic <base64 of user:password>'", { 'www-authenticate': `Bearer ${REALM}` });
      }
      cred = m[1].toLowerCase() === 'bearer' ? { bearer: m[2] } : { basic: m[2] };
    } else if ((req.method === 'GET' || req.method === 'HEAD') && typeof req.query.dl === 'string') {
      // A browser link cannot carry a header: it carries a download token for its own path and one download only (POST /api/download-token).
      const path = req.originalUrl.split('?')[0];
      const p = DOWNLOAD_PATH.test(path) ? await auth.authenticateDownload(req.query.dl, path, req.method === 'GET') : null;
      if (!p) throw new HttpError('TF_DOWNLOAD_LINK_EXPIRED', 'this download link has expired or is not for this file: open the download again from the page (or send Authorization)', { 'www-authenticate': `Bearer ${REALM}, error="invalid_token"` });
      return p;
    } else {
      throw new HttpError('TF_UNAUTHENTICATED', 'log in first: send Authorization: Bearer <token> (from POST /api/login, or an API token) or Basic <base64 of user:password>', {
        'www-authenticate': `Bearer ${REALM}`,
      });
    }
    const ctx = address(req);
    const p = await loggedLogin(credentialsName(cred), ctx.address, () => auth.authenticate(cred, ctx));
    if (!p) {
      // Only a client that tried Basic is challenged for Basic: a browser would otherwise pop up its own login box over the web page.
      const challenge = 'basic' in cred ? `Basic ${REALM}, charset="UTF-8"` : `Bearer ${REALM}, error="invalid_token"`;
      throw new HttpError('TF_BAD_CREDENTIALS', 'unknown user, wrong password, or unknown/expired token: log in again with POST /api/login', { 'www-authenticate': challenge });
    }
    return p;
  };

  // Every route below needs credentials.
  api.use((req, res, next) => {
    authenticate(req).then((p) => {
      res.locals.principal = p;
      next();
    }, next);
  });

  api.post(
    '/download-token',
    h(async (req, res) => {
      const p = principal(res);
      need(p, 'read', 'download traces');
      const body = downloadTokenBody.safeParse(jsonBody(req));
      if (!body.success) throw new HttpError('TF_PARAMS_INVALID', zodMessage('download-token request', body.error), {}, zodField(body.error));
      const t = await auth.downloadToken(p, body.data.path);
      res.json({ url: `${body.data.path}?dl=${encodeURIComponent(t.token)}`, expiresAt: t.expiresAt });
    }),
  );

  api.get(
    '/me',
    h(async (_req, res) => {
      const p = principal(res);
      res.json({ user: p.name, roles: p.roles });
    }),
  );

  api.post(
    '/traces',
    h(async (req, res) => {
      const p = principal(res);
      need(p, 'trace', 'start traces');
      const body = traceRequest.safeParse(jsonBody(req));
      if (!body.success) {
        throw new TracefleetError('TF_REQUEST_INVALID', { message: `${zodMessage('trace request', body.error)} (see the REST API in docs/ARCHITECTURE.md)` }, zodField(body.error));
      }
      const trace = await traces.start(body.data, p.name);
      res.status(201).location(`/api/traces/${encodeURIComponent(trace.id)}`).json({ trace });
    }),
  );

  api.get(
    '/traces',
    h(async (req, res) => {
      need(principal(res), 'read', 'list traces');
      const q = listQuery.safeParse(req.query);
      if (!q.success) throw new HttpError('TF_PARAMS_INVALID', zodMessage('query', q.error), {}, zodField(q.error));
      const page = await store.listTraces({ limit: q.data.limit ?? 50, bookmark: q.data.bookmark, user: q.data.user });
      const views = await mapLimit(page.traces, 8, viewOf);
      res.json({ traces: views, ...(page.bookmark ? { bookmark: page.bookmark } : {}) });
    }),
  );

  api.get(
    '/traces/:id',
    h(async (req, res) => {
      need(principal(res), 'read', 'read traces');
      const id = traceId(req);
      const trace = await traces.view(id);
      if (!trace) throw new TracefleetError('TF_TRACE_NOT_FOUND', { message: `no trace ${id}: list traces with GET /api/traces` });
      res.json({ trace });
    }),
  );

  api.get(
    '/traces/:id/messages',
    h(async (req, res) => {
      need(principal(res), 'read', 'read traces');
      const id = traceId(req);
      const q = messagesQuery.safeParse(req.query);
      if (!q.success) throw new HttpError('TF_PARAMS_INVALID', zodMessage('query', q.error), {}, zodField(q.error));
      await getTrace(id);
      const results = await store.listResults(id);
      const all = mergedMessages(results);
      const offset = q.data.offset ?? 0;
      if (!q.data.full) {
        const page = q.data.limit === undefined ? all.slice(offset) : all.slice(offset, offset + q.data.limit);
        res.json({ messages: page, total: all.length, offset, calls: callFiguresOf(all) });
        return;
      }
      const page = all.slice(offset, offset + (q.data.limit ?? DEFAULT_FULL_MESSAGES));
      const full = await withFullMessages(store, id, results, page);
      res.json({ ...full, total: all.length, offset, calls: callFiguresOf(all) });
    }),
  );

  api.get(
    '/traces/:id/messages/:n',
    h(async (req, res) => {
      need(principal(res), 'read', 'read traces');
      const id = traceId(req);
      const n = /^\d{1,9}$/.test(req.params.n) ? Number(req.params.n) : -1;
      if (n < 0) throw new HttpError('TF_PARAMS_INVALID', `${JSON.stringify(req.params.n.slice(0, 20))} is not a message number: the messages are numbered from 0 in GET /api/traces/${id}/messages`);
      await getTrace(id);
      const results = await store.listResults(id);
      const all = mergedMessages(results);
      if (n >= all.length) throw new HttpError('TF_MESSAGE_NOT_FOUND', `trace ${id} has ${all.length} SIP messages, numbered from 0: there is no message ${n}`);
      const full = await withFullMessages(store, id, results, [all[n]]);
      res.json({ message: full.messages[0], total: all.length, ...(full.note ? { note: full.note } : {}) });
    }),
  );

  api.get(
    '/traces/:id/streams',
    h(async (req, res) => {
      need(principal(res), 'read', 'read traces');
      const id = traceId(req);
      await getTrace(id);
      res.json({ streams: mergedStreams(await store.listResults(id)) });
    }),
  );

  api.post(
    '/traces/:id/cancel',
    h(async (req, res) => {
      const p = principal(res);
      need(p, 'trace', 'cancel traces');
      const trace = await traces.cancel(traceId(req), (owner) => auth.canManage(p, owner));
      res.json({ trace });
    }),
  );

  api.delete(
    '/traces/:id',
    h(async (req, res) => {
      const p = principal(res);
      const id = traceId(req);
      need(p, 'read', 'delete traces');
      const t = await getTrace(id);
      if (!auth.canManage(p, t.user)) {
        throw new HttpError('TF_FORBIDDEN', `user ${p.name} may not delete trace ${id} of user ${t.user}: only its owner (with the tracer role) or an admin may`);
      }
      if (t.state === 'running') {
        throw new HttpError('TF_TRACE_RUNNING', `trace ${id} is still running: cancel it first (POST /api/traces/${id}/cancel), then delete it`);
      }
      await store.deleteTrace(id);
      res.status(204).end();
    }),
  );

  api.get(
    '/traces/:id/merged.pcap',
    h(async (req, res) => {
      need(principal(res), 'read', 'download traces');
      const id = traceId(req);
      const t = await getTrace(id);
      // Its own merged.pcap, or the one host's packets.pcap it is byte for byte (mergedPcap()).
      const merged = mergedPcap(t);
      if (!merged) {
        if (t.state === 'running') {
          throw new HttpError('TF_PACKETS_NOT_READY', `merged.pcap of trace ${id} is not ready yet: it is built once every host has finished; watch GET /api/traces/${id}`);
        }
        throw new HttpError('TF_NO_PACKETS', `trace ${id} (${t.state}) has no merged.pcap: no host stored packets for it; see each host's state in GET /api/traces/${id}`);
      }
      await sendAttachment(req, res, { store, docId: merged.docId, name: merged.name, stub: merged.stub, filename: downloadName(t, 'pcap'), log });
    }),
  );

  api.get(
    '/traces/:id/hosts/:host/packets.pcap',
    h(async (req, res) => {
      need(principal(res), 'read', 'download traces');
      const id = traceId(req);
      const host = req.params.host;
      if (!HOST.test(host)) throw new HttpError('TF_BAD_HOST_NAME', `${JSON.stringify(host.slice(0, 260))} is not a host name: use the agent's name as listed in the trace`);
      const t = await getTrace(id);
      if (!t.hosts.includes(host)) {
        throw new HttpError('TF_TRACE_HOST_UNKNOWN', `trace ${id} did not ask host ${host}; its hosts: ${t.hosts.slice(0, 20).join(', ')}${t.hosts.length > 20 ? ', ...' : ''}`);
      }
      const r = await store.getResult(id, host);
      const stub = storedAttachment(r, HOST_ATTACHMENT);
      if (!stub) {
        if (!r || !isFinalResult(r.state)) {
          throw new HttpError('TF_PACKETS_NOT_READY', `the packets of host ${host} in trace ${id} are not ready yet (${r?.state ?? 'queued'}): watch GET /api/traces/${id}`);
        }
        throw new HttpError('TF_NO_PACKETS', `host ${host} stored no packets for trace ${id} (${r.state}${r.error ? `: ${r.error}` : ''})`);
      }
      await sendAttachment(req, res, {
        store,
        docId: resultDocId(id, host),
        name: HOST_ATTACHMENT,
        stub,
        filename: downloadName(t, 'pcap', host),
        log,
      });
    }),
  );

  api.get(
    '/traces/:id/trace.tar',
    h(async (req, res) => {
      need(principal(res), 'read', 'download traces');
      const id = traceId(req);
      const trace = await getTrace(id);
      const results = await store.listResults(id);
      const view = trace.state === 'running' ? ((await traces.view(id)) ?? traceView(trace, results)) : traceView(trace, results);
      await sendTraceTar(req, res, { store, trace, results, view, messages: mergedMessages(results), streams: mergedStreams(results), log });
    }),
  );

  api.get(
    '/agents',
    h(async (_req, res) => {
      need(principal(res), 'read', 'list agents');
      res.json({ agents: await traces.agents() });
    }),
  );

  api.get(
    '/stats',
    h(async (req, res) => {
      need(principal(res), 'read', 'read the fleet\'s statistics');
      const q = statsQuery.safeParse(req.query);
      if (!q.success) throw new HttpError('TF_PARAMS_INVALID', `${zodMessage('query', q.error)} (GET /api/stats?from=ISO&to=ISO&host=NAME&peer=PEER)`, {}, zodField(q.error));
      res.json(deps.stats ? deps.stats.query(q.data) : { from: '', to: '', windows: [], peers: [], hosts: [] });
    }),
  );

  const alertsOf = (): Alerts => {
    if (!deps.alerts) throw new HttpError('TF_NO_ROUTE', 'this dispatcher keeps no alerts');
    return deps.alerts;
  };

  api.get(
    '/alerts',
    h(async (_req, res) => {
      need(principal(res), 'read', 'read alerts');
      const a = alertsOf();
      res.json({ firing: a.firing(), recent: await store.listAlerts(100) });
    }),
  );

  api.get(
    '/alert-rules',
    h(async (_req, res) => {
      need(principal(res), 'read', 'read alert rules');
      res.json({ rules: alertsOf().ruleList() });
    }),
  );

  /** POST creates or replaces the rule named in the body. */
  api.post(
    '/alert-rules',
    h(async (req, res) => {
      const p = principal(res);
      need(p, 'admin', 'edit alert rules');
      const body = alertRule.safeParse(jsonBody(req));
      if (!body.success) throw new TracefleetError('TF_ALERT_RULE_INVALID', { message: zodMessage('alert rule', body.error) }, zodField(body.error));
      await alertsOf().putRule(body.data, p.name);
      res.status(201).location(`/api/alert-rules/${encodeURIComponent(body.data.name)}`).json({ rule: body.data });
    }),
  );

  api.delete(
    '/alert-rules/:name',
    h(async (req, res) => {
      need(principal(res), 'admin', 'edit alert rules');
      const name = req.params.name;
      if (!new RegExp(RULE_NAME_PATTERN).test(name) || !(await alertsOf().removeRule(name))) {
        throw new TracefleetError('TF_ALERT_RULE_NOT_FOUND', { message: `no alert rule ${JSON.stringify(name.slice(0, 80))}: list them with GET /api/alert-rules` });
      }
      res.json({ removed: name });
    }),
  );

  api.use((req, _res, next) => next(new HttpError('TF_NO_ROUTE', `no route ${req.method} /api${req.path}: see the REST API in docs/ARCHITECTURE.md`)));
  app.use('/api', api);

  if (deps.staticDir) app.use(express.static(deps.staticDir, { index: 'index.html' }));

  app.use((req, _res, next) => next(new HttpError('TF_NO_ROUTE', `nothing at ${req.method} ${req.path}: the REST API is under /api`)));

  // Four arguments: express's error handler. Nothing thrown gets past it, so a bad request never harms the server.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const out = toHttp(err, BODY_LIMIT);
    if (out.internal) {
      metrics.errors.inc({ kind: 'api' });
      log.error({ method: req.method, path: req.originalUrl.split('?')[0], err }, 'request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.status(out.status).set(out.headers).json(out.body);
  });

  return app;
}
