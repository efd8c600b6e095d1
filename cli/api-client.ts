import { Agent as HttpAgent, IncomingMessage, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { io, Socket } from 'socket.io-client';
import { z } from 'zod';
import { statsAnswerCounts } from '../shared/stats/answer';
import { alertRule, type AlertRule, type AlertRuleInput } from '../shared/alerts/rule';
import { callFigures, type CallFigures } from '../shared/query/call-figures';
import { agentView, AgentView, ClientToDispatcherEvents, DispatcherToClientEvents, fullMessagesPage, FullMessagesPage, loginResult, LoginResult, traceMessage, TraceMessage, traceStream, TraceStream, traceView, TraceView } from '../shared/protocol/client';
import type { Connection } from './connection';
import { EXIT, receivedError, TracefleetError } from '../shared/errors/catalogue';
import { CliError } from './errors';

/*
 * What the dispatcher answers is outside input like any other: every body
 * is validated here, with shared/protocol/client.ts's schemas, before a
 * command looks at it.
 */

export type { TraceMessage };
/** The `/client` socket as this side sees it. */
export type ClientSocket = Socket<DispatcherToClientEvents, ClientToDispatcherEvents>;

/** Validates a dispatcher answer; a mismatch means a dispatcher of another version. */
export function parseAnswer<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, what: string, data: unknown): T {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  throw new CliError(`the dispatcher's answer to ${what} is not what this tracefleet understands (${i.path.join('.') || 'body'}: ${i.message}): is the dispatcher the same version?`, EXIT.FAILED);
}

const JSON_LIMIT = 256 * 1024 * 1024;
const REQUEST_TIMEOUT_MS = 30_000;
/** A download may take long; a connection silent this long is dead. */
const IDLE_TIMEOUT_MS = 60_000;

const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
]);

/** What went wrong reaching the dispatcher, said so the user knows what to do. */
export function networkError(e: Error & { code?: string }, url: string): CliError {
  const code = e.code ?? '';
  let why: string;
  if (code === 'ECONNREFUSED') why = 'connection refused: is the dispatcher running there? (set --url or TRACEFLEET_URL)';
  else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') why = 'unknown host name: check --url or TRACEFLEET_URL';
  else if (code === 'ETIMEDOUT' || code === 'ECONNRESET' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') why = `${code}: check the network path to the dispatcher`;
  else if (TLS_TRUST_CODES.has(code)) why = `its TLS certificate is not trusted (${code}): give --ca FILE with the CA that signed it, or --insecure to skip the check`;
  else if (code === 'CERT_HAS_EXPIRED') why = 'its TLS certificate has expired: renew it, or give --insecure to skip the check';
  else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') why = "its TLS certificate is for another name: use the name in the certificate in --url, or give --insecure";
  else if (code === 'EPROTO' || /wrong version number|ssl3_get_record/i.test(e.message)) why = 'TLS handshake failed: is it http:// rather than https://?';
  else why = e.message;
  return new CliError(`cannot reach the dispatcher at ${url}: ${why}`, EXIT.FAILED);
}

/** A REST error answer turned into one line with what to do. */
function statusError(status: number, sent: { code?: unknown; field?: unknown }, message: string, conn: Connection): TracefleetError {
  let hint = '';
  if (status === 401) {
    hint = conn.credentials
      ? ` (credentials from ${conn.credentialSource}; a saved session may have expired: run tracefleet login)`
      : ': log in with tracefleet login, or give --token/TRACEFLEET_TOKEN or --user';
  } else if (status === 403) hint = ': ask an admin for the role this needs';
  return receivedError(sent, `the dispatcher refused (${status}): ${message}${hint}`, status);
}

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'DELETE';
  body?: unknown;
  /** Send no credentials (login). */
  anonymous?: boolean;
}

/** The dispatcher's REST API and /client namespace, as the CLI uses them. */
export class DispatcherClient {
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly https: boolean;
  private readonly base: URL;

  constructor(readonly conn: Connection) {
    this.base = new URL(conn.url);
    this.https = this.base.protocol === 'https:';
    this.agent = this.https ? new HttpsAgent({ keepAlive: false, rejectUnauthorized: !conn.tls.insecure, ca: conn.tls.ca }) : new HttpAgent({ keepAlive: false });
  }

  private authHeader(): Record<string, string> {
    const c = this.conn.credentials;
    if (!c) return {};
    if ('token' in c) return { authorization: `Bearer ${c.token}` };
    if (c.password === undefined) return {};
    return { authorization: `Basic ${Buffer.from(`${c.user}:${c.password}`, 'utf8').toString('base64')}` };
  }

  /** Sends a request; resolves with the response once its headers are in, whatever the status. */
  private send(path: string, opts: RequestOptions, timeoutMs: number): Promise<IncomingMessage> {
    const url = new URL(this.base.pathname.replace(/\/$/, '') + path, this.base);
    const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: Record<string, string> = {
      accept: 'application/json, application/octet-stream',
      ...(opts.anonymous ? {} : this.authHeader()),
      ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}),
    };
    const req = (this.https ? httpsRequest : httpRequest)(url, { method: opts.method ?? 'GET', headers, agent: this.agent });
    return new Promise<IncomingMessage>((resolve, reject) => {
      req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
      req.once('error', (e) => reject(networkError(e, this.conn.url)));
      req.once('response', (res) => {
        // From here the response's own timeout applies (a stalled body).
        res.socket.setTimeout(timeoutMs, () => res.destroy(Object.assign(new Error(`the dispatcher went silent for ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
        resolve(res);
      });
      req.end(body);
    });
  }

  private async readBody(res: IncomingMessage): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of res as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > JSON_LIMIT) {
        res.destroy();
        throw new CliError(`the dispatcher's answer is over ${JSON_LIMIT} bytes: ask for less (--limit)`, EXIT.FAILED);
      }
      parts.push(c);
    }
    return Buffer.concat(parts);
  }

  private async failure(res: IncomingMessage): Promise<TracefleetError> {
    let message = res.statusMessage || 'error';
    let sent: { code?: string; field?: string | null } = {};
    try {
      const text = (await this.readBody(res)).toString('utf8');
      const j = z.object({ error: z.string(), code: z.string().optional(), field: z.string().nullish() }).safeParse(JSON.parse(text));
      if (j.success) ({ error: message, ...sent } = j.data);
      else if (text.trim()) message = text.trim().split('\n')[0].slice(0, 300);
    } catch {
      /* the status says enough */
    }
    return statusError(res.statusCode ?? 0, sent, message, this.conn);
  }

  /** A JSON request; the answer validated with `schema`. */
  async json<T>(path: string, schema: z.ZodType<T, z.ZodTypeDef, unknown>, opts: RequestOptions = {}): Promise<T> {
    let res: IncomingMessage;
    let text: string;
    try {
      res = await this.send(path, opts, REQUEST_TIMEOUT_MS);
      if (res.statusCode !== 200 && res.statusCode !== 201) throw await this.failure(res);
      text = (await this.readBody(res)).toString('utf8');
    } catch (e) {
      if (e instanceof TracefleetError) throw e;
      throw networkError(e as Error, this.conn.url);
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      throw new CliError(`the dispatcher's answer to ${path} is not JSON: is ${this.conn.url} a tracefleet dispatcher?`, EXIT.FAILED);
    }
    return parseAnswer(schema, `${opts.method ?? 'GET'} ${path.split('?')[0]}`, data);
  }

  /**
   * Streams a binary answer into the stream `open` returns, which is only
   * called once the dispatcher said yes (so an error leaves no empty file).
   * Resolves with the bytes written.
   */
  async download(path: string, open: () => Writable, opts: { end?: boolean; signal?: AbortSignal } = {}): Promise<number> {
    let res: IncomingMessage;
    try {
      res = await this.send(path, {}, IDLE_TIMEOUT_MS);
    } catch (e) {
      if (e instanceof TracefleetError) throw e;
      throw networkError(e as Error, this.conn.url);
    }
    if (res.statusCode !== 200) throw await this.failure(res);
    const out = open();
    let bytes = 0;
    const counter = new Transform({
      transform(c: Buffer, _enc, done) {
        bytes += c.length;
        done(null, c);
      },
    });
    const expected = res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : null;
    try {
      await pipeline(res, counter, out, { end: opts.end ?? true, ...(opts.signal ? { signal: opts.signal } : {}) });
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.name === 'AbortError') throw new CliError('interrupted', EXIT.INTERRUPTED);
      if (err.code === 'EPIPE') throw new CliError('the reader of the output went away before the end', EXIT.FAILED);
      if (err.code === 'ERR_STREAM_PREMATURE_CLOSE' || err.code === 'ECONNRESET' || err.code === 'ETIMEDOUT') {
        throw new CliError(`the download from ${this.conn.url} broke off after ${bytes} bytes (${err.message}): try again`, EXIT.FAILED);
      }
      if (err.syscall || err.code?.startsWith('E')) throw new CliError(`cannot write the output: ${err.message}`, EXIT.FAILED);
      throw e;
    }
    if (expected !== null && Number.isFinite(expected) && bytes !== expected) {
      throw new CliError(`the download broke off: ${bytes} of ${expected} bytes: try again`, EXIT.FAILED);
    }
    return bytes;
  }

  // ---- REST ----------------------------------------------------------------

  login(user: string, password: string): Promise<LoginResult> {
    return this.json('/api/login', loginResult, { method: 'POST', body: { user, password }, anonymous: true });
  }

  traces(opts: { limit?: number; bookmark?: string; user?: string } = {}): Promise<{ traces: TraceView[]; bookmark?: string }> {
    const q = new URLSearchParams();
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    if (opts.bookmark) q.set('bookmark', opts.bookmark);
    if (opts.user) q.set('user', opts.user);
    const qs = q.toString();
    return this.json(`/api/traces${qs ? `?${qs}` : ''}`, z.object({ traces: z.array(traceView), bookmark: z.string().optional() }));
  }

  async trace(id: string): Promise<TraceView> {
    return (await this.json(`/api/traces/${encodeURIComponent(id)}`, z.object({ trace: traceView }))).trace;
  }

  /** Cancels a running trace over REST (when the Socket.IO connection is down). */
  async cancel(id: string): Promise<TraceView> {
    return (await this.json(`/api/traces/${encodeURIComponent(id)}/cancel`, z.object({ trace: traceView }), { method: 'POST', body: {} })).trace;
  }

  /** Every message's summary, and the figures of every dialog. */
  async messages(id: string): Promise<{ messages: TraceMessage[]; calls: CallFigures[] }> {
    return this.json(`/api/traces/${encodeURIComponent(id)}/messages`, z.object({ messages: z.array(traceMessage), calls: z.array(callFigures) }));
  }

  /** One page of the trace's messages, each whole (decoded by the dispatcher from the hosts' stored PCAPs). */
  async fullMessages(id: string, offset: number, limit: number): Promise<FullMessagesPage> {
    return this.json(`/api/traces/${encodeURIComponent(id)}/messages?full=1&offset=${offset}&limit=${limit}`, fullMessagesPage);
  }

  async streams(id: string): Promise<TraceStream[]> {
    return (await this.json(`/api/traces/${encodeURIComponent(id)}/streams`, z.object({ streams: z.array(traceStream) }))).streams;
  }

  /** GET /api/stats: the counts as sent (the figures are the caller's to compute again from them). */
  stats(q: URLSearchParams): Promise<z.infer<typeof statsAnswerCounts>> {
    return this.json(`/api/stats?${q.toString()}`, statsAnswerCounts);
  }

  /** Alert rules (any role may read them). */
  async alertRules(): Promise<AlertRule[]> {
    return (await this.json('/api/alert-rules', z.object({ rules: z.array(alertRule) }))).rules;
  }

  /** Creates or replaces a rule (admin); the dispatcher checks it again. */
  async putAlertRule(rule: AlertRuleInput): Promise<AlertRule> {
    return (await this.json('/api/alert-rules', z.object({ rule: alertRule }), { method: 'POST', body: rule })).rule;
  }

  async deleteAlertRule(name: string): Promise<void> {
    await this.json(`/api/alert-rules/${encodeURIComponent(name)}`, z.object({ removed: z.string() }), { method: 'DELETE' });
  }

  async agents(): Promise<AgentView[]> {
    return (await this.json('/api/agents', z.object({ agents: z.array(agentView) }))).agents;
  }

  /** The REST path of a trace's merged PCAP, one host's PCAP, or the whole trace as a tar. */
  static pcapPath(id: string, what: { host?: string; tar?: boolean } = {}): string {
    const t = `/api/traces/${encodeURIComponent(id)}`;
    if (what.tar) return `${t}/trace.tar`;
    if (what.host) return `${t}/hosts/${encodeURIComponent(what.host)}/packets.pcap`;
    return `${t}/merged.pcap`;
  }

  // ---- Socket.IO /client ----------------------------------------------------

  /**
   * Connects to the /client namespace. Resolves once connected; a refusal
   * or an unreachable dispatcher rejects with what to do. Later drops are
   * reconnected by Socket.IO (the caller watches `connect` to rejoin rooms).
   */
  async socket(): Promise<ClientSocket> {
    const c = this.conn.credentials;
    if (!c) throw new CliError(`no credentials for ${this.conn.url}: run tracefleet login, or give --token/TRACEFLEET_TOKEN or --user`, EXIT.UNAUTHORIZED);
    if ('user' in c && c.password === undefined) throw new CliError(`no password for user ${c.user}`, EXIT.BAD_INPUT);
    const auth = 'token' in c ? { token: c.token } : { user: c.user, password: c.password! };
    const prefix = this.base.pathname.replace(/\/+$/, '');
    const socket = io(`${this.base.origin}/client`, {
      path: `${prefix}/socket.io`,
      auth,
      forceNew: true,
      // WebSocket first: it needs no sticky sessions when dispatchers share agents behind a balancer.
      transports: ['websocket', 'polling'],
      tryAllTransports: true,
      reconnection: true,
      reconnectionAttempts: 30,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5_000,
      timeout: REQUEST_TIMEOUT_MS,
      ...(this.https ? { rejectUnauthorized: !this.conn.tls.insecure, ...(this.conn.tls.ca ? { ca: this.conn.tls.ca.toString('latin1') } : {}) } : {}),
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', (e: Error) => reject(e));
      });
      return socket;
    } catch (e) {
      socket.disconnect();
      const msg = (e as Error).message;
      if (/^unauthorized/.test(msg)) {
        throw new CliError(`the dispatcher refused the login: ${msg.replace(/^unauthorized:\s*/, '')} (credentials from ${this.conn.credentialSource}; run tracefleet login)`, EXIT.UNAUTHORIZED);
      }
      if (/^unavailable/.test(msg)) throw new CliError(`the dispatcher cannot check the login now: ${msg.replace(/^unavailable:\s*/, '')}; try again`, EXIT.FAILED);
      // A transport error says little ("websocket error"); the REST API on the same port says why.
      await this.json('/api/agents', z.unknown());
      throw new CliError(`cannot open the dispatcher's Socket.IO connection at ${this.conn.url}: ${msg}`, EXIT.FAILED);
    }
  }

  close(): void {
    this.agent.destroy();
  }
}
