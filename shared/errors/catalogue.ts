import type { TraceRequest } from '../query/query';

/*
 * Every error a user, a script or the page can be shown, in one place (after
 * fastify's error codes): a stable code to branch on, the request key it
 * concerns, the HTTP status the REST API answers with, the exit code the CLI
 * ends with, and the sentence (what was wrong, what to do). Acks, REST error
 * bodies and the CLI's --json carry `{code, field, message}`; docs/API.md
 * lists the codes and a test keeps it equal to this table.
 *
 * Plain data with no dependency: the CLI loads it on every failure, and it
 * must not bring zod or the dispatcher with it.
 */

/** The CLI's exit codes (README "Exit codes"): scripts branch on them, so each means one thing. */
export const EXIT = {
  /** Done: every host done, the command did what was asked. */
  OK: 0,
  /** Failed: the trace failed/was cancelled/interrupted, the dispatcher or store unreachable or failed. */
  FAILED: 1,
  /** Bad input: flags, config, files, or a request the dispatcher refused as malformed. */
  BAD_INPUT: 2,
  /** The trace is partial: some hosts failed or did not finish. */
  PARTIAL: 3,
  /** Not logged in, wrong credentials or not allowed. */
  UNAUTHORIZED: 4,
  /** Interrupted by Ctrl-C (128 + SIGINT). */
  INTERRUPTED: 130,
} as const;
export type Exit = (typeof EXIT)[keyof typeof EXIT];

/** The trace request key an error concerns (the page puts the message at that key's input); null: the request as a whole. */
export type ErrorField = (keyof TraceRequest & string) | null;

interface Entry<P> {
  /** The request key it concerns, fixed; 'path' when it is the key a validation failure names. */
  field: ErrorField | 'path';
  /** The REST API's status; null for errors of the machine the CLI runs on, never sent over HTTP. */
  status: number | null;
  exit: Exit;
  message: (p: P) => string;
}

/** What a site gives when the sentence is its own (a wrapped library message, a generic refusal). */
type Said = { message: string };

const entry = <P>(e: Entry<P>): Entry<P> => e;
const said = (p: Said) => p.message;

export const ERRORS = {
  // ---- the query: the values of a trace request or `tracefleet query` ----
  TF_REQUEST_INVALID: entry<Said>({ field: 'path', status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_QUERY_BAD_NUMBER: entry<Said>({ field: 'number', status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_QUERY_BAD_PORT: entry<{ value: string }>({
    field: 'port', status: 400, exit: EXIT.BAD_INPUT,
    message: (p) => `bad port '${p.value}': give a number from 1 to 65535`,
  }),
  TF_QUERY_BAD_IP: entry<{ value: string }>({
    field: 'ip', status: 400, exit: EXIT.BAD_INPUT,
    message: (p) => `bad IP address '${p.value}': give an IPv4 (192.0.2.10) or IPv6 (2001:db8::10) address`,
  }),
  TF_QUERY_BAD_METHOD: entry<{ value: string }>({
    field: 'method', status: 400, exit: EXIT.BAD_INPUT,
    message: (p) => `bad method '${p.value}': give a SIP method name like INVITE or BYE`,
  }),
  TF_QUERY_BAD_STATUS: entry<{ value: string }>({
    field: 'status', status: 400, exit: EXIT.BAD_INPUT,
    message: (p) => `bad status '${p.value}': give a SIP status code (486) or class (4xx)`,
  }),
  TF_QUERY_BAD_SINCE: entry<{ value: string }>({ field: 'since', status: 400, exit: EXIT.BAD_INPUT, message: (p) => badTime('--since', p.value) }),
  TF_QUERY_BAD_UNTIL: entry<{ value: string }>({ field: 'until', status: 400, exit: EXIT.BAD_INPUT, message: (p) => badTime('--until', p.value) }),
  TF_QUERY_BAD_TIME: entry<{ what: string; value: string }>({ field: null, status: 400, exit: EXIT.BAD_INPUT, message: (p) => badTime(p.what, p.value) }),
  TF_QUERY_SINCE_AFTER_UNTIL: entry<object>({
    field: 'until', status: 400, exit: EXIT.BAD_INPUT,
    message: () => '--since is after --until: give the earlier time to --since',
  }),
  TF_QUERY_NOT_SELECTIVE: entry<object>({
    field: null, status: 400, exit: EXIT.BAD_INPUT,
    message: () =>
      'refusing a query with no selective key: give --call-id, --number, --ip, --port or --correlation (time, method and status only narrow), or --all to dump every match of the window',
  }),

  // ---- traces on the dispatcher ----
  TF_TRACE_UNKNOWN_HOSTS: entry<{ unknown: string[]; known: string[] }>({
    field: 'hosts', status: 400, exit: EXIT.BAD_INPUT,
    message: (p) =>
      `unknown host${p.unknown.length > 1 ? 's' : ''} ${p.unknown.join(', ')}: no agent of that name has connected; known agents: ${[...p.known].sort().slice(0, 20).join(', ') || 'none'}`,
  }),
  TF_TRACE_NO_AGENTS: entry<object>({
    field: null, status: 409, exit: EXIT.BAD_INPUT,
    message: () => 'no agent is connected to the dispatcher, so there is nobody to trace: start agents with --dispatcher',
  }),
  TF_TRACE_NOT_FOUND: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  TF_TRACE_NOT_RUNNING: entry<{ id: string; state: string }>({
    field: null, status: 409, exit: EXIT.BAD_INPUT,
    message: (p) => `trace ${p.id} is already ${p.state}`,
  }),
  /** A follow's client did not take its packets fast enough: it is dropped rather than buffered for without bound. */
  TF_FOLLOW_SLOW_CLIENT: entry<{ bytes: number }>({
    field: null, status: 429, exit: EXIT.FAILED,
    message: (p) => `this client fell ${p.bytes} bytes behind the follow and was dropped: read the stream faster (do not leave the pipe unread), or narrow the filter; what was followed is stored as a trace`,
  }),
  /** No chosen agent took the follow (each refused it or is not connected). */
  TF_FOLLOW_NO_AGENT: entry<Said>({ field: 'hosts', status: 409, exit: EXIT.BAD_INPUT, message: said }),

  // ---- who is asking ----
  TF_UNAUTHENTICATED: entry<Said>({ field: null, status: 401, exit: EXIT.UNAUTHORIZED, message: said }),
  TF_FORBIDDEN: entry<Said>({ field: null, status: 403, exit: EXIT.UNAUTHORIZED, message: said }),
  TF_LOGIN_RATE_LIMITED: entry<Said>({ field: null, status: 429, exit: EXIT.FAILED, message: said }),
  /** More password checks waiting than the hashing queue holds. */
  TF_LOGIN_BUSY: entry<Said>({ field: null, status: 429, exit: EXIT.FAILED, message: said }),
  /** A /client socket or user sending events faster than its limits. */
  TF_RATE_LIMITED: entry<Said>({ field: null, status: 429, exit: EXIT.FAILED, message: said }),
  /** The user, their roles, password or token changed while the socket was open: connect again. */
  TF_SESSION_ENDED: entry<Said>({ field: null, status: 401, exit: EXIT.UNAUTHORIZED, message: said }),
  /** A download link followed a second time: each opens one download. */
  TF_DOWNLOAD_LINK_USED: entry<object>({
    field: null, status: 410, exit: EXIT.FAILED,
    message: () => 'this download link was used already (each link opens one download): download again from the page for a new link, or ask for one with POST /api/download-token',
  }),
  /** Users and tokens (dispatcher/auth): a name, role or password the policy refuses. */
  TF_AUTH_BAD_INPUT: entry<Said>({ field: null, status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_AUTH_NOT_FOUND: entry<Said>({ field: null, status: 404, exit: EXIT.BAD_INPUT, message: said }),
  TF_AUTH_CONFLICT: entry<Said>({ field: null, status: 409, exit: EXIT.BAD_INPUT, message: said }),

  /** A login that named a user and a password the dispatcher does not accept together (or a token it does not know): ask again. */
  TF_BAD_CREDENTIALS: entry<Said>({ field: null, status: 401, exit: EXIT.UNAUTHORIZED, message: said }),
  /** An Authorization header of neither form (Bearer, Basic): the client's code is wrong, asking the user again will not help. */
  TF_AUTH_HEADER_INVALID: entry<Said>({ field: null, status: 401, exit: EXIT.UNAUTHORIZED, message: said }),
  /** A signed download link past its time or for another file: get a new link. */
  TF_DOWNLOAD_LINK_EXPIRED: entry<Said>({ field: null, status: 401, exit: EXIT.UNAUTHORIZED, message: said }),

  // ---- the REST API's other refusals ----
  /** A body or URL parameter of a request other than a trace request (login, listing, download link) that its schema refuses. */
  TF_PARAMS_INVALID: entry<Said>({ field: 'path', status: 400, exit: EXIT.BAD_INPUT, message: said }),
  /** An alert rule the dispatcher refuses (shared/alerts/rule.ts): `field` names the key at fault. */
  TF_ALERT_RULE_INVALID: entry<Said>({ field: 'path', status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_ALERT_RULE_NOT_FOUND: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  /** The body is not JSON (or not declared as such, or not UTF-8). */
  TF_BODY_NOT_JSON: entry<Said>({ field: null, status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_BAD_TRACE_ID: entry<Said>({ field: null, status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_BAD_HOST_NAME: entry<Said>({ field: null, status: 400, exit: EXIT.BAD_INPUT, message: said }),
  /** The trace did not ask this host: nothing to wait for. */
  TF_TRACE_HOST_UNKNOWN: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  /** A still-running trace cannot be deleted: cancel it first. */
  TF_TRACE_RUNNING: entry<Said>({ field: null, status: 409, exit: EXIT.BAD_INPUT, message: said }),
  /** Packets asked for before they are there: wait for the trace (or host) to finish and ask again. */
  TF_PACKETS_NOT_READY: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  /** The trace (or host) finished with no packets stored: asking again will not change it. */
  TF_NO_PACKETS: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  /** A message number past the trace's last SIP message. */
  TF_MESSAGE_NOT_FOUND: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  TF_NO_ROUTE: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  TF_BAD_REQUEST: entry<Said>({ field: null, status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_NOT_FOUND: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  TF_CONFLICT: entry<Said>({ field: null, status: 409, exit: EXIT.BAD_INPUT, message: said }),
  TF_BODY_TOO_LARGE: entry<{ limitKiB: number }>({
    field: null, status: 413, exit: EXIT.BAD_INPUT,
    message: (p) => `the request body is larger than the ${p.limitKiB} KiB allowed: a trace request is a few filters, send less`,
  }),

  // ---- the store ----
  TF_STORE_UNREACHABLE: entry<Said>({ field: null, status: 503, exit: EXIT.FAILED, message: said }),
  /** CouchDB refused as asked (bad bookmark, missing or existing document): passed on with its status. */
  TF_STORE_BAD_REQUEST: entry<Said>({ field: null, status: 400, exit: EXIT.BAD_INPUT, message: said }),
  TF_STORE_NOT_FOUND: entry<Said>({ field: null, status: 404, exit: EXIT.FAILED, message: said }),
  TF_STORE_CONFLICT: entry<Said>({ field: null, status: 409, exit: EXIT.BAD_INPUT, message: said }),
  TF_STORE_FAILED: entry<Said>({ field: null, status: 500, exit: EXIT.FAILED, message: said }),
  TF_INTERNAL: entry<{ reason: string }>({
    field: null, status: 500, exit: EXIT.FAILED,
    message: (p) => `the dispatcher failed: ${p.reason}; see the dispatcher's log`,
  }),

  // ---- the agent link (/agent acks, dispatcher <-> agent): never over HTTP ----
  /** A message or ack that does not fit the protocol (its key named): a bug or a version mismatch of one side. */
  TF_AGENT_MESSAGE_INVALID: entry<Said>({ field: 'path', status: null, exit: EXIT.FAILED, message: said }),
  /** A dispatcher started without traces (a peer's link only) was sent a trace message. */
  TF_DISPATCHER_NO_TRACES: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  /** A chunk for a trace the dispatcher has finished (cancelled, timed out): stop sending it. */
  TF_TRACE_OVER: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  TF_CHUNK_OUT_OF_ORDER: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  /** The dispatcher could not write a result to its spool disk. */
  TF_SPOOL_FAILED: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  TF_TRACE_ALREADY_RUNNING: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  /** The agent's running traces and queue are full: retry the trace when some have ended. */
  TF_AGENT_BUSY: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  TF_AGENT_FAILED: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),

  // ---- the machine the CLI runs on ----
  /** Flags, environment or config file the command cannot use. */
  TF_USAGE: entry<Said>({ field: null, status: null, exit: EXIT.BAD_INPUT, message: said }),
  TF_RING_DIR: entry<Said>({ field: null, status: null, exit: EXIT.BAD_INPUT, message: said }),
  TF_CAPTURE_FORMAT: entry<Said>({ field: null, status: null, exit: EXIT.BAD_INPUT, message: said }),
  /** The agent cannot listen for HEP on a --hep-listen address (taken, not this host's, not permitted). */
  TF_HEP_LISTEN: entry<Said>({ field: null, status: null, exit: EXIT.BAD_INPUT, message: said }),
  TF_INDEX_CORRUPT: entry<{ path: string; what: string }>({
    field: null, status: null, exit: EXIT.FAILED,
    message: (p) => `index ${p.path} is corrupt (${p.what}); it will be rebuilt from its segment`,
  }),
  /** The dispatcher cannot be reached or answered what this client does not understand. */
  TF_DISPATCHER_UNREACHABLE: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  TF_FAILED: entry<Said>({ field: null, status: null, exit: EXIT.FAILED, message: said }),
  TF_INTERRUPTED: entry<object>({ field: null, status: null, exit: EXIT.INTERRUPTED, message: () => 'interrupted' }),

  // ---- Wireshark's extcap (tracefleet extcap) ----
  /** The capture filter typed in Wireshark is not tracefleet's filter words. */
  TF_EXTCAP_FILTER: entry<{ value: string; why: string }>({
    field: null, status: null, exit: EXIT.BAD_INPUT,
    message: (p) =>
      `bad tracefleet capture filter '${p.value}': ${p.why}; write words like: number 5551234, call-id ID, ip 192.0.2.10, port 5060, method INVITE, status 486, correlation KEY (several joined by spaces or "and")`,
  }),
  /** Wireshark asked for an interface this extcap does not have (an old launcher, a typo in -i). */
  TF_EXTCAP_INTERFACE: entry<{ value: string; known: string[] }>({
    field: null, status: null, exit: EXIT.BAD_INPUT,
    message: (p) => `unknown extcap interface '${p.value}': tracefleet has ${p.known.join(', ')}`,
  }),
} as const;

function badTime(what: string, value: string): string {
  return `bad ${what} '${value}': use a duration back from now (15m, 2h, 30s, 1d), epoch seconds, or ISO 8601 like 2026-11-23T10:42:00Z`;
}

export type ErrorCode = keyof typeof ERRORS;
type ParamsOf<C extends ErrorCode> = Parameters<(typeof ERRORS)[C]['message']>[0];
/** The codes whose sentence is the site's own. */
export type SaidCode = { [C in ErrorCode]: ParamsOf<C> extends Said ? C : never }[ErrorCode];

/** The one error class: every refusal and failure worth a code is one of these (or a thin subclass). */
export class TracefleetError<C extends ErrorCode = ErrorCode> extends Error {
  /** An ErrorField, or for a 'path' entry whatever key the failing message named. */
  readonly field: string | null;
  readonly status: number | null;
  readonly exit: Exit;

  /**
   * `field` only for entries whose field is 'path' (the failing key of a
   * validated message); `sentence` only where a client re-raises a refusal
   * the dispatcher sent, worded as it came instead of the template.
   */
  constructor(
    readonly code: C,
    params: ParamsOf<C>,
    field: string | null = null,
    sentence?: string,
  ) {
    const e = ERRORS[code] as Entry<ParamsOf<C>>;
    super(sentence ?? e.message(params));
    this.name = 'TracefleetError';
    this.field = e.field === 'path' ? field : e.field;
    this.status = e.status;
    this.exit = e.exit;
  }
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code);
}

/**
 * What travels: REST error bodies and `/client` acks. `error` is the same
 * sentence as `message`, kept because scripts and the page read it since
 * before the codes.
 */
export interface ErrorBody {
  code: ErrorCode;
  field: string | null;
  message: string;
  error: string;
}

export function errorBody(e: TracefleetError, message: string = e.message): ErrorBody {
  return { code: e.code, field: e.field, message, error: message };
}

/** The generic code of an HTTP status: a REST refusal with no more specific code, or an answer without one (a proxy's). */
export function codeOfStatus(status: number): ErrorCode {
  const code = ({ 400: 'TF_BAD_REQUEST', 401: 'TF_UNAUTHENTICATED', 403: 'TF_FORBIDDEN', 404: 'TF_NOT_FOUND', 409: 'TF_CONFLICT', 413: 'TF_BODY_TOO_LARGE', 422: 'TF_BAD_REQUEST', 429: 'TF_LOGIN_RATE_LIMITED', 503: 'TF_STORE_UNREACHABLE' } as const)[status];
  return code ?? 'TF_FAILED';
}

/**
 * A refusal a dispatcher sent (REST body or ack), as the client raises it:
 * the code and field as sent, the sentence as the client words it. A code
 * this client does not know (a newer dispatcher) falls back to the status's.
 */
export function receivedError(sent: { code?: unknown; field?: unknown }, sentence: string, status?: number): TracefleetError {
  const code = isErrorCode(sent.code) ? sent.code : status !== undefined ? codeOfStatus(status) : 'TF_FAILED';
  return new TracefleetError(code as 'TF_FAILED', { message: sentence }, typeof sent.field === 'string' ? sent.field : null, sentence);
}

/**
 * What a server answers for anything a handler threw: the error itself when
 * it is the asker's to act on (a refusal, the store away), else TF_INTERNAL,
 * which the caller logs with the original's stack.
 */
export function answerOf(e: unknown): { error: TracefleetError; internal: boolean } {
  if (e instanceof TracefleetError && e.status !== null && (e.status < 500 || e.status === 503)) return { error: e, internal: false };
  return { error: new TracefleetError('TF_INTERNAL', { reason: (e as Error)?.message ?? String(e) }), internal: true };
}
