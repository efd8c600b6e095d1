import type { Argv } from 'yargs';
import type { RawQuery } from '../agent/query/spec';

/** The filter flags of `tracefleet query` and `tracefleet trace`: one definition so both stay the same. */
export function filterOptions<T>(y: Argv<T>) {
  return y
    .option('call-id', { type: 'string', array: true, describe: 'Call-ID (repeat or comma-separate for several)' })
    .option('number', { type: 'string', array: true, describe: 'phone number: matches R-URI/From/To/P-Asserted-Identity users whose digits end with it (at least 4 digits)' })
    .option('ip', { type: 'string', array: true, describe: 'IPv4 or IPv6 address (source or destination)' })
    .option('port', { type: 'string', array: true, describe: 'UDP/TCP port (source or destination)' })
    .option('correlation', { type: 'string', array: true, describe: 'correlation key (X-CID header or xref parameter)' })
    .option('method', { type: 'string', array: true, describe: 'SIP method (requests, and responses by CSeq)' })
    .option('status', { type: 'string', array: true, describe: 'SIP status code (486) or class (4xx)' })
    .option('since', { type: 'string', describe: 'start of the window: 15m, 2h, epoch seconds, or ISO 8601' })
    .option('until', { type: 'string', describe: 'end of the window (same forms as --since)' })
    .option('rtp', { type: 'boolean', default: false, describe: "add the RTP/RTCP announced in the dialogs' SDP" })
    .option('max-packets', { type: 'number', describe: 'stop after this many packets (the result says truncated)' })
    .option('max-bytes', { type: 'number', describe: 'stop after this many bytes (the result says truncated)' })
    .option('all', { type: 'boolean', default: false, describe: 'allow a query with no selective key' });
}

// yargs hands parsed flags over as loose records; this maps them onto the validated query shape.
export function rawQuery(a: Record<string, unknown>): RawQuery {
  const pick = <K extends string>(k: K) => (a[k] === undefined ? undefined : a[k]);
  return {
    callId: pick('callId') as string[] | undefined,
    number: pick('number') as string[] | undefined,
    ip: pick('ip') as string[] | undefined,
    port: pick('port') as string[] | undefined,
    correlation: pick('correlation') as string[] | undefined,
    method: pick('method') as string[] | undefined,
    status: pick('status') as string[] | undefined,
    since: pick('since') as string | undefined,
    until: pick('until') as string | undefined,
    rtp: a.rtp as boolean,
    maxPackets: pick('maxPackets') as number | undefined,
    maxBytes: pick('maxBytes') as number | undefined,
    all: a.all as boolean,
  };
}
