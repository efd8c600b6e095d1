/*
 * The dispatcher, as the page reaches it: the REST API (fetch with the
 * session token as a Bearer token) and the `/client` Socket.IO namespace,
 * the same two the CLI uses. The session lives in sessionStorage: it ends
 * with the tab, and a reload keeps you logged in.
 */

import { io } from '/socket.io/socket.io.esm.min.js';

const KEY = 'tracefleet.session';

/** A refusal from the dispatcher: the HTTP status (0 for a network failure), its sentence, and its shared/errors code and field when it sent them. */
export class ApiError extends Error {
  constructor(status, message, code = null, field = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The page's own refusal, shaped as the dispatcher's acks are. */
const unreachable = (message) => ({ ok: false, code: 'TF_DISPATCHER_UNREACHABLE', field: null, message, error: message });

/** { token, user, roles, expiresAt } or null. */
export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
    if (s && typeof s.token === 'string' && typeof s.user === 'string' && Array.isArray(s.roles)) return s;
  } catch {
    /* a damaged entry is no session */
  }
  return null;
}

export function saveSession(s) {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

export function canTrace(session) {
  return Boolean(session && (session.roles.includes('tracer') || session.roles.includes('admin')));
}

async function request(method, path, { token, body } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, `the dispatcher did not answer (${e.message}): is it running, and is the network up?`);
  }
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      throw new ApiError(res.status, `the dispatcher answered ${res.status} with something that is not JSON`);
    }
  }
  if (!res.ok) throw new ApiError(res.status, (data && typeof data.error === 'string' && data.error) || `the dispatcher answered ${res.status}`, data?.code ?? null, data?.field ?? null);
  return data;
}

/** POST /api/login: the session to keep. */
export function login(user, password) {
  return request('POST', '/api/login', { body: { user, password } });
}

/** REST with the session; a 401 calls onUnauthorized (the session expired or was revoked). */
export function makeApi(session, onUnauthorized) {
  const call = async (method, path, body) => {
    try {
      return await request(method, path, { token: session.token, body });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) onUnauthorized(e.message);
      throw e;
    }
  };
  const enc = encodeURIComponent;
  return {
    me: () => call('GET', '/api/me'),
    traces: ({ limit = 20, bookmark } = {}) => call('GET', `/api/traces?limit=${limit}${bookmark ? `&bookmark=${enc(bookmark)}` : ''}`),
    trace: (id) => call('GET', `/api/traces/${enc(id)}`),
    messages: (id) => call('GET', `/api/traces/${enc(id)}/messages`),
    /** Message n (from 0, in the order of messages()) whole: `message.full`, decoded from its host's stored PCAP. */
    message: (id, n) => call('GET', `/api/traces/${enc(id)}/messages/${Number(n)}`),
    streams: (id) => call('GET', `/api/traces/${enc(id)}/streams`),
    alerts: () => call('GET', '/api/alerts'),
    alertRules: () => call('GET', '/api/alert-rules'),
    putAlertRule: (rule) => call('POST', '/api/alert-rules', rule),
    deleteAlertRule: (name) => call('DELETE', `/api/alert-rules/${enc(name)}`),
    agents: () => call('GET', '/api/agents'),
    /** GET /api/stats: { from, to, host, peer } (ISO times; host and peer one or a list). */
    stats(q = {}) {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(q)) for (const x of [].concat(v ?? [])) p.append(k, x);
      return call('GET', `/api/stats?${p}`);
    },
    /** The download's path: a link to it that carries no credentials (downloadUrl makes the one to follow). */
    downloadPath(id, what) {
      const base = `/api/traces/${enc(id)}`;
      return what === 'merged' ? `${base}/merged.pcap` : what === 'tar' ? `${base}/trace.tar` : `${base}/hosts/${enc(what.host)}/packets.pcap`;
    },
    /**
     * A URL for that path with a download token good for it alone, for a few
     * minutes: the session token never goes into a URL (history, proxy logs).
     */
    async downloadUrl(path) {
      return (await call('POST', '/api/download-token', { path })).url;
    },
  };
}

/**
 * The `/client` socket. handlers: onStatus('connected' | 'reconnecting' | 'offline', detail),
 * onUnauthorized(message), onUpdate(TraceUpdate), onReconnect(), onFollow('data' | 'end', payload, ack),
 * onAlert(AlertEvent).
 */
export function connectClient(session, handlers) {
  const socket = io('/client', {
    auth: { token: session.token },
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
    timeout: 10_000,
  });
  let everConnected = false;
  socket.on('connect', () => {
    handlers.onStatus('connected');
    if (everConnected) handlers.onReconnect();
    everConnected = true;
  });
  socket.on('disconnect', (reason) => handlers.onStatus('reconnecting', reason));
  socket.on('connect_error', (err) => {
    if (/^unauthorized/.test(err.message)) {
      socket.close();
      handlers.onUnauthorized(err.message);
      return;
    }
    handlers.onStatus('reconnecting', err.message);
  });
  socket.on('trace:update', (u) => handlers.onUpdate(u));
  // Several hosts' updates in one message (a fleet-wide trace's), in order.
  socket.on('trace:updates', (us) => {
    if (Array.isArray(us)) for (const u of us) handlers.onUpdate(u);
  });
  // A follow's stream goes to the socket that started it. Each chunk is acknowledged once a view has it (the dispatcher drops a client that stops acknowledging).
  socket.on('follow:data', (d, ack) => handlers.onFollow('data', d, typeof ack === 'function' ? ack : () => {}));
  socket.on('follow:end', (e) => handlers.onFollow('end', e, () => {}));
  socket.on('alert', (e) => handlers.onAlert?.(e));
  // The dispatcher ends a socket whose login no longer holds, and says so first.
  socket.on('session:ended', (e) => {
    socket.close();
    handlers.onUnauthorized(e.message);
  });

  /** Emits with an acknowledgement; resolves to the ack ({ ok: true, ... } or { ok: false, code, field, message, error }). */
  const connected = (waitMs) =>
    socket.connected
      ? Promise.resolve(true)
      : new Promise((resolve) => {
          const on = () => {
            clearTimeout(timer);
            resolve(true);
          };
          const timer = setTimeout(() => {
            socket.off('connect', on);
            resolve(false);
          }, waitMs);
          socket.once('connect', on);
        });
  const ask = async (event, payload, timeoutMs = 15_000) => {
    // Right after login (or a reload) the socket may still be connecting.
    if (!(await connected(10_000))) return unreachable('not connected to the dispatcher: waiting to reconnect, try again in a moment');
    try {
      return await socket.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      return unreachable(`the dispatcher did not answer ${event} within ${timeoutMs / 1000} s`);
    }
  };
  return {
    socket,
    ask,
    close: () => socket.close(),
  };
}
