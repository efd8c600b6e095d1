import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Argv, CommandModule } from 'yargs';
import { filterOptions, rawQuery } from '../filters';
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
  const { buildQuerySpec } = await import('../../shared/query/query');
  const { closeResult, runQuery, writeResultPcap } = await import('../../agent/query/engine');
  const spec = buildQuerySpec(rawQuery(a));
  const r = runQuery(a.ring as string, spec, { correlationHeader: a.correlationHeader as string | undefined });
  for (const n of r.notes) process.stderr.write(`tracefleet: note: ${n}\n`);
  if (r.messagesMatched > r.messages.length) {
    process.stderr.write(`tracefleet: note: ${r.messagesMatched} SIP messages matched; the summaries list the first ${r.messages.length} by time (the capture has every packet)\n`);
  }
  try {
    if (out) await writeResultPcap(r, openOutput(out));
  } finally {
    closeResult(r);
  }
  if (json) {
    process.stdout.write(
      JSON.stringify({ callIds: r.callIds, packets: r.refs.length, truncated: r.truncated, messagesMatched: r.messagesMatched, messages: r.messages, streams: r.streams, notes: r.notes }, null, 2) + '\n',
    );
  } else if (out !== '-') {
    process.stderr.write(`tracefleet: ${r.refs.length} packets of ${r.callIds.length} dialogs written to ${out}${r.truncated ? ' (truncated by a limit)' : ''}\n`);
    if (spec.rtpStats) process.stdout.write(formatStreams(r.streams).join('\n') + '\n');
  }
  if (r.truncated) process.stderr.write('tracefleet: result truncated by --max-packets/--max-bytes\n');
}

export const queryCommand: CommandModule<object, Args> = {
  command: 'query',
  describe: "answer a trace from a local ring (like stenoread): matching packets as one PCAP, SIP summaries as JSON",
  builder: (y) =>
    filterOptions(y)
      .option('ring', { type: 'string', demandOption: true, describe: 'ring directory' })
      .option('o', { alias: 'output', type: 'string', describe: 'write the PCAP here (- for stdout)' })
      .option('json', { type: 'boolean', default: false, describe: 'print the SIP message summaries as JSON' })
      .option('correlation-header', { type: 'string', default: 'X-CID', describe: 'header holding a correlation key' }) as unknown as Argv<Args>,
  handler: (a) => queryCmd(a).catch((e) => fail(e, a.json === true)),
};
