import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Argv, CommandModule } from 'yargs';
import { FILTER_OPTIONS, rawQuery } from '../filters';
import { checkWritable } from '../output-file';
import type { FlagTable } from '../flags';
import { formatStreams } from '../format';
import { Args, UsageError, fail } from './local';

/*
 * `tracefleet query`: a trace from a local ring, like stenoread. It loads
 * the engine only when it runs, and nothing of the dispatcher ever.
 */

function openOutput(o: string): Writable {
  if (o === '-') {
    if (process.stdout.isTTY) throw new UsageError('refusing to write a binary PCAP to a terminal: pipe it (| wireshark -k -i -) or give -o FILE');
    return process.stdout;
  }
  return createWriteStream(o);
}

async function queryCmd(a: Args): Promise<void> {
  const out = a.o as string | undefined;
  const json = a.json as boolean;
  if (!out && !json) throw new UsageError('say where the result goes: -o FILE, -o - (stdout), and/or --json');
  if (out === '-' && json) throw new UsageError('-o - and --json would both write to stdout: give -o FILE with --json');
  if (out && out !== '-') checkWritable(out);
  const { buildQuerySpec } = await import('../../shared/query/query');
  const { CALL_IDS_KEPT, closeResult, runQuery, writeResultPcap } = await import('../../agent/query/engine');
  const { callFiguresOf } = await import('../../shared/query/call-figures');
  const { legCallIdRulesOf } = await import('../../agent/query/legs');
  const spec = buildQuerySpec(rawQuery(a));
  const legCallIdRules = legCallIdRulesOf(a.legCallidRule);
  // --json lists every Call-ID; otherwise only their number is printed, and a broad query's need not all be kept.
  const r = runQuery(a.ring as string, spec, { correlationHeader: a.correlationHeader as string | undefined, legCallIdRules, maxCallIds: json ? undefined : CALL_IDS_KEPT });
  for (const n of r.notes) process.stderr.write(`tracefleet: note: ${n}\n`);
  if (r.messagesMatched > r.messages.length) {
    process.stderr.write(`tracefleet: note: ${r.messagesMatched} SIP messages matched; the summaries list the first ${r.messages.length} by time (the capture has every packet)\n`);
  }
  let messages: unknown[] = r.messages;
  try {
    if (json && a.full) {
      // The whole messages come from the result's own PCAP, read as it is written: never held whole.
      const { PassThrough } = await import('node:stream');
      const { readFullMessages } = await import('../../shared/decode/full-messages');
      const pcap = new PassThrough();
      const file = out ? openOutput(out) : null;
      if (file) pcap.pipe(file);
      else pcap.resume();
      const reading = readFullMessages(pcap.pipe(new PassThrough()), r.messages, 'the query result', { drain: true });
      const [, full] = await Promise.all([writeResultPcap(r, pcap), reading]);
      messages = r.messages.map((m, i) => ({ ...m, full: full.messages[i] }));
      if (file) await new Promise<void>((ok, ko) => (file.writableFinished ? ok() : file.once('finish', ok).once('error', ko)));
    } else if (out) await writeResultPcap(r, openOutput(out));
  } finally {
    closeResult(r);
  }
  if (json) {
    process.stdout.write(
      JSON.stringify({ callIds: r.callIds, packets: r.packets, truncated: r.truncated, messagesMatched: r.messagesMatched, calls: callFiguresOf(r.messages), messages, streams: r.streams, notes: r.notes }, null, 2) + '\n',
    );
  } else if (out !== '-') {
    process.stderr.write(`tracefleet: ${r.packets} packets of ${r.dialogs} dialogs written to ${out}${r.truncated ? ' (truncated by a limit)' : ''}\n`);
    if (spec.rtpStats) process.stdout.write(formatStreams(r.streams).join('\n') + '\n');
  }
  if (r.truncated) process.stderr.write('tracefleet: result truncated by --max-packets/--max-bytes\n');
}

/** The flags of `tracefleet query`, read by yargs and by the hand parser of cli/flags.ts alike. */
export const QUERY_OPTIONS = {
  ...FILTER_OPTIONS,
  ring: { type: 'string', demandOption: true, describe: 'ring directory' },
  o: { alias: 'output', type: 'string', describe: 'write the PCAP here (- for stdout)' },
  json: { type: 'boolean', default: false, describe: 'print the SIP message summaries as JSON' },
  full: { type: 'boolean', default: false, describe: 'with --json: each message whole (start line, every header, body, bytes in base64) as `full`' },
  'correlation-header': { type: 'string', default: 'X-CID', describe: 'header holding a correlation key' },
  'leg-callid-rule': { type: 'string', array: true, describe: "with --legs: prefix:TEXT or suffix:TEXT a B2BUA adds to the other leg's Call-ID (repeat for several)" },
} as const satisfies FlagTable;

export const queryCommand: CommandModule<object, Args> = {
  command: 'query',
  describe: "answer a trace from a local ring (like stenoread): matching packets as one PCAP, SIP summaries as JSON",
  builder: (y) => y.options(QUERY_OPTIONS) as unknown as Argv<Args>,
  handler: (a) => queryCmd(a).catch((e) => fail(e, a.json === true)),
};
