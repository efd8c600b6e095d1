import { isIP } from 'node:net';
import { z } from 'zod';
import { normalizeNumberQuery } from '../../shared/sip/number';

/** A point in time as [seconds, nanoseconds]: the index's own resolution. */
export type Ts = [number, number];

export function cmpTs(a: Ts, b: Ts): number {
  return a[0] - b[0] || a[1] - b[1];
}

/** What a query asks for, validated and normalized. Every present key must match (AND); values of one key are alternatives (OR). */
export interface QuerySpec {
  callIds: string[];
  numbers: string[];
  ips: string[];
  ports: number[];
  correlations: string[];
  methods: string[];
  /** Exact codes or classes: 486, or 4 for 4xx. */
  statuses: Array<{ code: number } | { cls: number }>;
  since: Ts | null;
  until: Ts | null;
  rtp: boolean;
  maxPackets: number | null;
  maxBytes: number | null;
  all: boolean;
}

export class QueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueryError';
  }
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
  throw new QueryError(
    `bad ${what} '${input}': use a duration back from now (15m, 2h, 30s, 1d), epoch seconds, or ISO 8601 like 2026-11-23T10:42:00Z`,
  );
}

function msToTs(ms: number): Ts {
  const sec = Math.floor(ms / 1000);
  return [sec, (ms - sec * 1000) * 1_000_000];
}

/** IPv6 in the decoders' text form (RFC 5952: lower case, longest zero run compressed). */
export function normalizeIp(input: string): string {
  const s = input.trim();
  const v = isIP(s);
  if (v === 4) return s.split('.').map((o) => String(Number(o))).join('.');
  if (v === 6) return new URL(`http://[${s}]/`).hostname.slice(1, -1);
  throw new QueryError(`bad IP address '${input}': give an IPv4 (192.0.2.10) or IPv6 (2001:db8::10) address`);
}

const list = z
  .union([z.string(), z.number(), z.array(z.union([z.string(), z.number()]))])
  .optional()
  .transform((v) => (v === undefined ? [] : (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((x) => x.trim()).filter((x) => x !== '')));

/** The raw shape a query arrives in (CLI flags, or later the wire protocol). */
export const rawQuerySchema = z
  .object({
    callId: list,
    number: list,
    ip: list,
    port: list,
    correlation: list,
    method: list,
    status: list,
    since: z.string().optional(),
    until: z.string().optional(),
    rtp: z.boolean().optional(),
    maxPackets: z.number().int().positive().optional(),
    maxBytes: z.number().int().positive().optional(),
    all: z.boolean().optional(),
  })
  .strict();

export type RawQuery = z.input<typeof rawQuerySchema>;

/** Validates and normalizes a query; throws QueryError saying what is wrong and what to do. */
export function buildQuerySpec(raw: RawQuery, now: Date = new Date()): QuerySpec {
  const parsed = rawQuerySchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new QueryError(`bad query: ${i.path.join('.') || 'input'}: ${i.message}`);
  }
  const r = parsed.data;
  const numbers = r.number.map((n) => {
    try {
      return normalizeNumberQuery(n);
    } catch (e) {
      throw new QueryError((e as Error).message);
    }
  });
  const ports = r.port.map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new QueryError(`bad port '${p}': give a number from 1 to 65535`);
    return n;
  });
  const methods = r.method.map((m) => {
    // Any RFC 3261 token: extension methods may hold digits and -.!%*_+`'~.
    if (!/^[A-Za-z0-9\-.!%*_+`'~]+$/.test(m)) throw new QueryError(`bad method '${m}': give a SIP method name like INVITE or BYE`);
    return m.toUpperCase();
  });
  const statuses = r.status.map((s) => {
    const cls = /^([1-6])xx$/i.exec(s);
    if (cls) return { cls: Number(cls[1]) };
    if (/^[1-6]\d\d$/.test(s)) return { code: Number(s) };
    throw new QueryError(`bad status '${s}': give a SIP status code (486) or class (4xx)`);
  });
  const since = r.since !== undefined ? parseTime(r.since, now, '--since') : null;
  const until = r.until !== undefined ? parseTime(r.until, now, '--until') : null;
  if (since && until && cmpTs(since, until) > 0) throw new QueryError('--since is after --until: give the earlier time to --since');
  const spec: QuerySpec = {
    callIds: r.callId,
    numbers,
    ips: r.ip.map(normalizeIp),
    ports,
    correlations: r.correlation,
    methods,
    statuses,
    since,
    until,
    rtp: r.rtp ?? false,
    maxPackets: r.maxPackets ?? null,
    maxBytes: r.maxBytes ?? null,
    all: r.all ?? false,
  };
  const selective = spec.callIds.length + spec.numbers.length + spec.ips.length + spec.ports.length + spec.correlations.length > 0;
  if (!selective && !spec.all) {
    throw new QueryError(
      'refusing a query with no selective key: give --call-id, --number, --ip, --port or --correlation (time, method and status only narrow), or --all to dump every match of the window',
    );
  }
  return spec;
}
