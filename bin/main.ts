import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import yargs, { Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { closeResult, runQuery, writeResultPcap } from '../agent/query/engine';
import { QueryError, RawQuery, buildQuerySpec } from '../agent/query/spec';
import { importCaptures } from '../agent/ring/import';
import { checkRing } from '../agent/ring/check';
import { CaptureFormatError } from '../shared/pcap/errors';

/** Exit codes: 0 done, 1 failed while running, 2 bad input (usage, query, file). */
export const EXIT = { OK: 0, FAILED: 1, BAD_INPUT: 2 } as const;

class UsageError extends Error {}

function fail(e: unknown): never {
  const err = e as Error;
  const bad = err instanceof QueryError || err instanceof UsageError || err instanceof CaptureFormatError || /ring directory|not a directory|no such file/i.test(err.message);
  process.stderr.write(`tracefleet: ${err.message}\n`);
  if (process.env.TRACEFLEET_DEBUG) process.stderr.write(`${err.stack}\n`);
  process.exit(bad ? EXIT.BAD_INPUT : EXIT.FAILED);
}

function openOutput(o: string): Writable {
  if (o === '-') {
    if (process.stdout.isTTY) throw new UsageError('refusing to write a binary PCAP to a terminal: pipe it (| wireshark -k -i -) or give -o FILE');
    return process.stdout;
  }
  return createWriteStream(o);
}

function filterOptions<T>(y: Argv<T>) {
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
function rawQuery(a: Record<string, unknown>): RawQuery {
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

async function queryCommand(a: Record<string, unknown>): Promise<void> {
  const out = a.o as string | undefined;
  const json = a.json as boolean;
  if (!out && !json) throw new UsageError('say where the result goes: -o FILE, -o - (stdout), and/or --json');
  if (out === '-' && json) throw new UsageError('-o - and --json would both write to stdout: give -o FILE with --json');
  const spec = buildQuerySpec(rawQuery(a));
  const r = runQuery(a.ring as string, spec, { correlationHeader: a.correlationHeader as string | undefined });
  for (const n of r.notes) process.stderr.write(`tracefleet: note: ${n}\n`);
  try {
    if (out) await writeResultPcap(r, openOutput(out));
  } finally {
    closeResult(r);
  }
  if (json) {
    process.stdout.write(
      JSON.stringify({ callIds: r.callIds, packets: r.refs.length, truncated: r.truncated, messages: r.messages, notes: r.notes }, null, 2) + '\n',
    );
  } else if (out !== '-') {
    process.stderr.write(`tracefleet: ${r.refs.length} packets of ${r.callIds.length} dialogs written to ${out}${r.truncated ? ' (truncated by a limit)' : ''}\n`);
  }
  if (r.truncated) process.stderr.write('tracefleet: result truncated by --max-packets/--max-bytes\n');
}

export function cli(argv: string[]) {
  return yargs(argv)
    .scriptName('tracefleet')
    .usage('$0 <command> [options]')
    .command(
      'query',
      "answer a trace from a local ring (like stenoread): matching packets as one PCAP, SIP summaries as JSON",
      (y) =>
        filterOptions(y)
          .option('ring', { type: 'string', demandOption: true, describe: 'ring directory' })
          .option('o', { alias: 'output', type: 'string', describe: 'write the PCAP here (- for stdout)' })
          .option('json', { type: 'boolean', default: false, describe: 'print the SIP message summaries as JSON' })
          .option('correlation-header', { type: 'string', default: 'X-CID', describe: 'header holding a correlation key' }),
      (a) => queryCommand(a as Record<string, unknown>).catch(fail),
    )
    .command('ring', 'manage a ring directory', (y) =>
      y
        .command(
          'import <files..>',
          'build ring segments and indexes from PCAP/PCAPNG files',
          (y2) =>
            y2
              .positional('files', { type: 'string', array: true, demandOption: true })
              .option('ring', { type: 'string', demandOption: true, describe: 'ring directory (created if missing)' })
              .option('segment-size', { type: 'number', default: 64, describe: 'segment size in MiB' })
              .option('correlation-header', { type: 'string', default: 'X-CID' })
              .option('json', { type: 'boolean', default: false }),
          (a) =>
            importCaptures(a.ring, a.files as string[], { maxSegmentBytes: a.segmentSize * 1024 * 1024, correlationHeader: a.correlationHeader })
              .then((r) => {
                if (a.json) process.stdout.write(JSON.stringify(r) + '\n');
                else process.stderr.write(`tracefleet: imported ${r.packets} packets from ${r.files} file(s) into ${r.segments.length} segment(s)${r.tornBytes ? `; ${r.tornBytes} bytes of a torn last record skipped` : ''}\n`);
              })
              .catch(fail),
        )
        .command(
          'check',
          'verify every segment has a sound index; rebuild missing or corrupt ones',
          (y2) => y2.option('ring', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }).option('correlation-header', { type: 'string', default: 'X-CID' }),
          (a) => {
            try {
              const r = checkRing(a.ring, { correlationHeader: a.correlationHeader });
              if (a.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
              else {
                process.stdout.write(`${r.segments} segments, ${r.packets} packets, ${r.bytes} bytes, ${r.messages} SIP messages; span ${r.oldest ?? '-'} .. ${r.newest ?? '-'}\n`);
                for (const n of r.notes) process.stdout.write(`${n}\n`);
              }
            } catch (e) {
              fail(e);
            }
          },
        )
        .demandCommand(1, 'give a ring sub-command: import or check'),
    )
    .demandCommand(1, 'give a command; see --help')
    .strict()
    .fail((msg, err) => {
      if (err) fail(err);
      process.stderr.write(`tracefleet: ${msg}\n(see tracefleet --help)\n`);
      process.exit(EXIT.BAD_INPUT);
    })
    .help()
    .version();
}

export function main(): void {
  void cli(hideBin(process.argv)).parseAsync();
}

if (require.main === module) main();
