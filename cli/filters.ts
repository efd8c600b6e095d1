import type { Argv } from 'yargs';
import type { FlagTable } from './flags';
import type { TraceQuery, TraceRequest } from '../shared/query/query';
import { TracefleetError } from '../shared/errors/catalogue';

// Loaded when flags are checked, not when the CLI starts: the query module brings zod, which --help and --version need not pay for.
const queryModule = () => require('../shared/query/query') as typeof import('../shared/query/query');

/** The filter flags of `tracefleet query` and `tracefleet trace`: one definition so both stay the same (and the hand parser of cli/flags.ts reads it too). */
export const FILTER_OPTIONS = {
  'call-id': { type: 'string', array: true, describe: 'Call-ID (repeat or comma-separate for several)' },
  number: { type: 'string', array: true, describe: 'phone number: matches R-URI/From/To/P-Asserted-Identity users whose digits end with it (at least 4 digits)' },
  ip: { type: 'string', array: true, describe: 'IPv4 or IPv6 address (source or destination)' },
  port: { type: 'string', array: true, describe: 'UDP/TCP port (source or destination)' },
  correlation: { type: 'string', array: true, describe: 'correlation key (X-CID header or xref parameter)' },
  method: { type: 'string', array: true, describe: 'SIP method (requests, and responses by CSeq)' },
  status: { type: 'string', array: true, describe: 'SIP status code (486) or class (4xx)' },
  since: { type: 'string', describe: 'start of the window: 15m, 2h, epoch seconds, or ISO 8601' },
  until: { type: 'string', describe: 'end of the window (same forms as --since)' },
  rtp: { type: 'boolean', default: false, describe: "add the dialogs' RTP/RTCP: packets whose both ends their SDP announced (or one, behind NAT: see README)" },
  legs: { type: 'boolean', default: false, describe: "add the other legs of the calls found (a B2BUA's second Call-ID): dialogs sharing a correlation header, Session-ID, P-Charging-Vector icid, a --leg-callid-rule Call-ID or relayed SDP media" },
  'rtp-stats': { type: 'boolean', describe: 'RTP figures per stream (loss, jitter, MOS); default: on when the query names calls (--call-id, --number, --correlation)' },
  'max-packets': { type: 'number', describe: 'stop after this many packets (the result says truncated)' },
  'max-bytes': { type: 'number', describe: 'stop after this many bytes (the result says truncated)' },
  all: { type: 'boolean', default: false, describe: 'allow a query with no selective key' },
} as const satisfies FlagTable;

export function filterOptions<T>(y: Argv<T>) {
  return y.options(FILTER_OPTIONS);
}

/** "a,b" and repeated flags alike: the values of a list flag, or undefined when none. */
function splitList(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const list = (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((x) => x.trim()).filter((x) => x !== '');
  return list.length ? list : undefined;
}

/**
 * The CLI's boundary: yargs' loose record of flags to a validated trace
 * request (shape by traceRequest, values by checkQuery), a mistake named by
 * its flag. Throws TF_QUERY_* errors (exit code "bad input").
 */
function requestOfFlags(a: Record<string, unknown>): TraceRequest {
  const req: Record<string, unknown> = {
    callId: splitList(a.callId),
    number: splitList(a.number),
    ip: splitList(a.ip),
    port: splitList(a.port),
    correlation: splitList(a.correlation),
    method: splitList(a.method),
    status: splitList(a.status),
    since: a.since,
    until: a.until,
    rtp: a.rtp || undefined,
    legs: a.legs || undefined,
    rtpStats: a.rtpStats as boolean | undefined,
    maxPackets: a.maxPackets,
    maxBytes: a.maxBytes,
    all: a.all || undefined,
    hosts: splitList(a.hosts),
    alignClocks: a.alignClocks || undefined,
  };
  for (const k of Object.keys(req)) if (req[k] === undefined) delete req[k];
  const { traceRequest } = queryModule();
  const r = traceRequest.safeParse(req);
  if (!r.success) {
    const i = r.error.issues[0];
    const flag = i.path[0] === undefined ? 'the request' : `--${String(i.path[0]).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    throw new TracefleetError('TF_REQUEST_INVALID', { message: `bad ${flag}: ${i.message}` }, typeof i.path[0] === 'string' ? i.path[0] : null);
  }
  return r.data;
}

/** `tracefleet query`'s filters, validated: what buildQuerySpec takes. */
export function rawQuery(a: Record<string, unknown>): TraceQuery {
  const { hosts: _hosts, alignClocks: _align, ...query } = requestOfFlags({ ...a, hosts: undefined, alignClocks: undefined });
  return query;
}

/** `tracefleet trace`'s request, validated once here so bad input never reaches the dispatcher. */
export function traceRequestOf(a: Record<string, unknown>): TraceRequest {
  const req = requestOfFlags(a);
  queryModule().checkQuery(req);
  return req;
}
