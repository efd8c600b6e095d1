import { z } from 'zod';
import { MIN_QUERY_DIGITS, normalizeNumberQuery } from '../sip/number';
import { AGENT_NAME_PATTERN, TRACE_ID_PATTERN } from '../protocol/common';
import { TracefleetError } from '../errors/catalogue';

/*
 * The query: one module that the CLI, the dispatcher, the agent and (through
 * GET /api/query-rules) the web page use.
 *
 *   TraceQuery    the filters as they travel (CLI -> dispatcher -> agent), validated by `traceQuery`
 *   TraceRequest  a TraceQuery and the agents to ask: what a client sends to the dispatcher
 *   QuerySpec     the filters normalized for the engine (agent/query/engine.ts), by buildQuerySpec
 *
 * Every present key must match (AND); the values of one key are alternatives (OR).
 */

/** Per list key: how many values, how long each. The zod schema and the page's rules are both built from this. */
export const LIST_KEYS = {
  callId: { maxValues: 64, maxLength: 1024 },
  number: { maxValues: 64, maxLength: 64 },
  ip: { maxValues: 64, maxLength: 64 },
  port: { maxValues: 64, maxLength: 8 },
  correlation: { maxValues: 64, maxLength: 1024 },
  linkedCallId: { maxValues: 64, maxLength: 1024 },
  method: { maxValues: 32, maxLength: 32 },
  status: { maxValues: 32, maxLength: 8 },
} as const;
type ListKey = keyof typeof LIST_KEYS;
const TIME_MAX_LENGTH = 64;
/** Keys that pick dialogs; time, method and status only narrow. */
const SELECTIVE_KEYS = ['callId', 'number', 'ip', 'port', 'correlation'] as const;

const PATTERNS = {
  /** What normalizeNumberQuery (shared/sip/number.ts) accepts around the digits. */
  number: '^[0-9+ \\t\\-.()]+$',
  // Any RFC 3261 token: extension methods may hold digits and -.!%*_+`'~.
  method: "^[A-Za-z0-9\\-.!%*_+`'~]+$",
  status: '^[1-6](\\d\\d|xx)$',
  port: '^\\d{1,5}$',
};

/** The windows the page offers (the CLI takes any duration). */
const WINDOWS = [
  { value: '5m', label: 'Last 5 min', ms: 5 * 60_000 },
  { value: '15m', label: 'Last 15 min', ms: 15 * 60_000 },
  { value: '1h', label: 'Last 1 hour', ms: 3_600_000 },
  { value: 'custom', label: 'Custom (from – to)', ms: null },
];

/** What the page needs to check a form before sending it: plain JSON, served by the dispatcher. */
export const QUERY_RULES = {
  lists: LIST_KEYS,
  timeMaxLength: TIME_MAX_LENGTH,
  selectiveKeys: SELECTIVE_KEYS,
  minNumberDigits: MIN_QUERY_DIGITS,
  port: { min: 1, max: 65535 },
  patterns: { ...PATTERNS, traceId: TRACE_ID_PATTERN, agentName: AGENT_NAME_PATTERN },
  windows: WINDOWS,
};
export type QueryRules = typeof QUERY_RULES;

const list = (k: ListKey) => z.array(z.string().max(LIST_KEYS[k].maxLength)).max(LIST_KEYS[k].maxValues).optional();

/** The filters of a trace as they travel; buildQuerySpec checks their values. */
export const traceQuery = z
  .object({
    callId: list('callId'),
    number: list('number'),
    ip: list('ip'),
    port: list('port'),
    correlation: list('correlation'),
    /**
     * Set by the dispatcher, not by users: Call-IDs of legs of the trace's
     * calls found on other hosts. Their dialogs are taken as well as (not
     * only) what the other keys select, and with `legs`, their legs too.
     */
    linkedCallId: list('linkedCallId'),
    method: list('method'),
    status: list('status'),
    since: z.string().max(TIME_MAX_LENGTH).optional(),
    until: z.string().max(TIME_MAX_LENGTH).optional(),
    rtp: z.boolean().optional(),
    /** Add the other legs of the selected calls (agent/query/legs.ts); default off (the page's form sets it). */
    legs: z.boolean().optional(),
    /** RTP figures per stream of the selected dialogs; default: on when the query names calls (Call-ID, number, correlation). */
    rtpStats: z.boolean().optional(),
    maxPackets: z.number().int().positive().optional(),
    maxBytes: z.number().int().positive().optional(),
    all: z.boolean().optional(),
  })
  .strict();
export type TraceQuery = z.infer<typeof traceQuery>;

/** A trace as asked for: the filters, and the agents to ask (all connected ones when absent). */
const hostName = z.string().regex(new RegExp(AGENT_NAME_PATTERN), 'host names are agent names: 1-64 letters, digits, _, . or -');
export const traceRequest = traceQuery
  .extend({
    hosts: z.array(hostName).min(1).max(10_000).optional(),
    /** Write the merged file on corrected clocks (PCAPNG, the offset applied said per interface); the dispatcher's, not the agents'. */
    alignClocks: z.boolean().optional(),
  })
  .strict();
export type TraceRequest = z.infer<typeof traceRequest>;

/** How a leg was linked to the calls a trace selected: the key two dialogs shared. */
export const LEG_VIAS = ['correlation', 'session-id', 'icid', 'call-id-rule', 'media'] as const;
export type LegVia = (typeof LEG_VIAS)[number];

/** One SIP message of a result as the ladder shows it: the engine makes them, trace:done carries them. */
export const messageSummary = z.object({
  /** Epoch seconds with nine decimals, exact. */
  ts: z.string(),
  time: z.string(),
  src: z.string(),
  dst: z.string(),
  transport: z.enum(['udp', 'tcp']),
  method: z.string().nullable(),
  status: z.number().int().nullable(),
  reason: z.string().nullable(),
  callId: z.string(),
  cseq: z.string().nullable(),
  from: z.string().nullable(),
  to: z.string().nullable(),
  ruri: z.string().nullable(),
  correlation: z.string().nullable(),
  bytes: z.number().int().nonnegative(),
  packets: z.number().int().nonnegative(),
  /** Set when a packet of the message was cut by the snap length: the message is what was captured of it. */
  truncated: z.boolean().optional(),
  /**
   * With `legs`: the call the message's dialog is a leg of, named by the
   * Call-ID of its earliest leg (the same for every leg of one call).
   */
  legGroup: z.string().max(1024).optional(),
  /** With `legs`, for a dialog the query did not select itself: the key that linked it. */
  legVia: z.enum(LEG_VIAS).optional(),
  /** Set when the message came through HEP (sent by a proxy's HEP agent) rather than from the wire. */
  hep: z.boolean().optional(),
});
export type MessageSummary = z.infer<typeof messageSummary>;

/** An address and port as a summary's src and dst give them: `192.0.2.1:5060`, `[2001:db8::1]:5060`. */
export function endpointText(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A point in time as [seconds, nanoseconds]: the index's own resolution. */
export type Ts = [number, number];

export function cmpTs(a: Ts, b: Ts): number {
  return a[0] - b[0] || a[1] - b[1];
}

/** What a query asks for, validated and normalized: what the engine runs. */
export interface QuerySpec {
  callIds: string[];
  numbers: string[];
  ips: string[];
  ports: number[];
  correlations: string[];
  linkedCallIds: string[];
  methods: string[];
  /** Exact codes or classes: 486, or 4 for 4xx. */
  statuses: Array<{ code: number } | { cls: number }>;
  since: Ts | null;
  until: Ts | null;
  rtp: boolean;
  legs: boolean;
  rtpStats: boolean;
  maxPackets: number | null;
  maxBytes: number | null;
  all: boolean;
}

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a time: "now", a duration back from now ("15m", "2h", "90s", "1d"),
 * epoch seconds ("1732377600.123456789"), or an ISO 8601 date-time.
 */
export function parseTime(input: string, now: Date = new Date(), what = 'time'): Ts {
  const s = input.trim();
  if (s === 'now') return msToTs(now.getTime());
  const d = DURATION_RE.exec(s);
  if (d) return msToTs(now.getTime() - Number(d[1]) * UNIT_MS[d[2]]);
  const epoch = /^(\d{9,11})(?:\.(\d{1,9}))?$/.exec(s);
  if (epoch) return [Number(epoch[1]), Number((epoch[2] ?? '').padEnd(9, '0'))];
  // ISO with optional fraction up to nanoseconds; Date keeps milliseconds only, so take the fraction ourselves.
  const iso = /^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$/.exec(s);
  if (iso) {
    const ms = Date.parse(`${iso[1].replace(' ', 'T')}${iso[3] ?? 'Z'}`);
    if (!Number.isNaN(ms)) return [Math.floor(ms / 1000), Number((iso[2] ?? '').padEnd(9, '0'))];
  }
  if (what === '--since') throw new TracefleetError('TF_QUERY_BAD_SINCE', { value: input });
  if (what === '--until') throw new TracefleetError('TF_QUERY_BAD_UNTIL', { value: input });
  throw new TracefleetError('TF_QUERY_BAD_TIME', { what, value: input });
}

/** A duration as the time flags write it ("90s", "10m", "2h"), in ms; null when it is not one. */
export function parseDurationMs(input: string): number | null {
  const d = DURATION_RE.exec(input.trim());
  return d ? Number(d[1]) * UNIT_MS[d[2]] : null;
}

function msToTs(ms: number): Ts {
  const sec = Math.floor(ms / 1000);
  return [sec, (ms - sec * 1000) * 1_000_000];
}

/** IPv6 in the decoders' text form (RFC 5952: lower case, longest zero run compressed). */
export function normalizeIp(input: string): string {
  const s = input.trim();
  // node:net (sockets, streams) only when a query names an address: every query and every dispatcher request loads this module.
  const v = (require('node:net') as typeof import('node:net')).isIP(s);
  if (v === 4) return s.split('.').map((o) => String(Number(o))).join('.');
  if (v === 6) return new URL(`http://[${s}]/`).hostname.slice(1, -1);
  throw new TracefleetError('TF_QUERY_BAD_IP', { value: input });
}

/** A list key's values; "a,b" is two values, as on the command line. */
function values(v: string[] | undefined): string[] {
  return (v ?? []).flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '');
}

const METHOD_RE = new RegExp(PATTERNS.method);

/**
 * Checks a query's values and normalizes them for the engine; throws
 * a TracefleetError (TF_QUERY_*) saying what is wrong and what to do. The query's shape is the
 * caller's to validate (traceQuery, at the boundary it came in by); relative
 * times resolve against `now`.
 */
export function buildQuerySpec(q: TraceQuery, now: Date = new Date()): QuerySpec {
  const numbers = values(q.number).map((n) => {
    try {
      return normalizeNumberQuery(n);
    } catch (e) {
      throw new TracefleetError('TF_QUERY_BAD_NUMBER', { message: (e as Error).message });
    }
  });
  const ports = values(q.port).map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < QUERY_RULES.port.min || n > QUERY_RULES.port.max) throw new TracefleetError('TF_QUERY_BAD_PORT', { value: p });
    return n;
  });
  const methods = values(q.method).map((m) => {
    if (!METHOD_RE.test(m)) throw new TracefleetError('TF_QUERY_BAD_METHOD', { value: m });
    return m.toUpperCase();
  });
  const statuses = values(q.status).map((s) => {
    const cls = /^([1-6])xx$/i.exec(s);
    if (cls) return { cls: Number(cls[1]) };
    if (/^[1-6]\d\d$/.test(s)) return { code: Number(s) };
    throw new TracefleetError('TF_QUERY_BAD_STATUS', { value: s });
  });
  const since = q.since !== undefined ? parseTime(q.since, now, '--since') : null;
  const until = q.until !== undefined ? parseTime(q.until, now, '--until') : null;
  if (since && until && cmpTs(since, until) > 0) throw new TracefleetError('TF_QUERY_SINCE_AFTER_UNTIL', {});
  const spec: QuerySpec = {
    callIds: values(q.callId),
    numbers,
    ips: values(q.ip).map(normalizeIp),
    ports,
    correlations: values(q.correlation),
    // Not split at commas: Call-IDs are taken whole here, as the dispatcher found them.
    linkedCallIds: (q.linkedCallId ?? []).filter((c) => c !== ''),
    methods,
    statuses,
    since,
    until,
    rtp: q.rtp ?? false,
    legs: q.legs ?? false,
    rtpStats: q.rtpStats ?? values(q.callId).length + numbers.length + values(q.correlation).length > 0,
    maxPackets: q.maxPackets ?? null,
    maxBytes: q.maxBytes ?? null,
    all: q.all ?? false,
  };
  const selective = spec.callIds.length + spec.numbers.length + spec.ips.length + spec.ports.length + spec.correlations.length > 0;
  if (!selective && !spec.all) {
    throw new TracefleetError('TF_QUERY_NOT_SELECTIVE', {});
  }
  return spec;
}

/**
 * Checks a query's values where it is only passed on (the CLI's `trace`, the
 * dispatcher): the spec is not kept because relative times ("15m") must
 * resolve on the agent when it runs, and the trace keeps the request as asked.
 */
export function checkQuery(q: TraceQuery): void {
  buildQuerySpec(q);
}
