import { z } from 'zod';
import { recordsOf } from '../../test/support/log';

/** Parsers for what the capture bench's tools print. */

export interface TcpreplayResult {
  /** "Actual: N packets (B bytes) sent in S seconds". */
  actualPackets: number;
  actualBytes: number;
  seconds: number;
  /** "Rated: ... pps": the rate tcpreplay achieved. */
  pps: number;
  mbps: number;
  /** From "Statistics for network device": what the kernel accepted. */
  successful: number;
  failed: number;
  truncated: number;
  retriedEnobufs: number;
  retriedEagain: number;
}

function num(re: RegExp, text: string, what: string): number {
  const m = re.exec(text);
  if (!m) throw new Error(`tcpreplay output has no ${what}: ${text.slice(-600)}`);
  return Number(m[1]);
}

export function parseTcpreplay(out: string): TcpreplayResult {
  const actual = /Actual:\s+(\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds/.exec(out);
  if (!actual) throw new Error(`tcpreplay output has no "Actual:" line: ${out.slice(-600)}`);
  const rated = /Rated:\s+[\d.]+ Bps,\s+([\d.]+) Mbps,\s+([\d.]+) pps/.exec(out);
  if (!rated) throw new Error(`tcpreplay output has no "Rated:" line: ${out.slice(-600)}`);
  return {
    actualPackets: Number(actual[1]),
    actualBytes: Number(actual[2]),
    seconds: Number(actual[3]),
    mbps: Number(rated[1]),
    pps: Number(rated[2]),
    successful: num(/Successful packets:\s+(\d+)/, out, 'Successful packets'),
    failed: num(/Failed packets:\s+(\d+)/, out, 'Failed packets'),
    truncated: num(/Truncated packets:\s+(\d+)/, out, 'Truncated packets'),
    retriedEnobufs: num(/Retried packets \(ENOBUFS\):\s+(\d+)/, out, 'Retried packets (ENOBUFS)'),
    retriedEagain: num(/Retried packets \(EAGAIN\):\s+(\d+)/, out, 'Retried packets (EAGAIN)'),
  };
}

export interface DumpcapStats {
  /** dumpcap's "received": packets it took from libpcap (and wrote). */
  received: number;
  /** dumpcap's total "dropped" (pcap + dumpcap + flushed). */
  dropped: number;
  /** pcap_stats ps_drop: dropped by the kernel because the capture buffer was full. */
  pcapDropped: number;
  /** Dropped inside dumpcap (its own queue). */
  dumpcapDropped: number;
  flushed: number;
  /** pcap_stats ps_ifdrop: dropped by the interface/driver. */
  ifDropped: number;
}

/** `Packets received/dropped on interface 'l0': 1966429/33584 (pcap:33584/dumpcap:0/flushed:0/ps_ifdrop:0) (98.3%)` */
export function parseDumpcapStats(stderr: string): DumpcapStats | null {
  const m = /Packets received\/dropped on interface '[^']*': (\d+)\/(\d+)(?: \(pcap:(\d+)\/dumpcap:(\d+)\/flushed:(\d+)(?:\/ps_ifdrop:(\d+))?\))?/.exec(stderr);
  if (!m) return null;
  const n = (s: string | undefined) => (s === undefined ? 0 : Number(s));
  return { received: n(m[1]), dropped: n(m[2]), pcapDropped: n(m[3]), dumpcapDropped: n(m[4]), flushed: n(m[5]), ifDropped: n(m[6]) };
}

export interface AgentStatsLine {
  packets: number;
  dropped: number;
  ifDropped: number;
  indexErrors: number;
}

const captureStats = z.object({
  msg: z.literal('capture stats'),
  interfaces: z.record(z.object({ packets: z.number(), dropped: z.number(), ifDropped: z.number() })),
  indexErrors: z.number(),
});

/** Every `capture stats` record (JSON lines, `--log-format json`) of the agent that has interface `iface`, in order. */
export function parseAgentStats(stderr: string, iface: string): AgentStatsLine[] {
  const out: AgentStatsLine[] = [];
  for (const r of recordsOf(stderr)) {
    const s = captureStats.safeParse(r);
    const i = s.success ? s.data.interfaces[iface] : undefined;
    if (s.success && i) out.push({ packets: i.packets, dropped: i.dropped, ifDropped: i.ifDropped, indexErrors: s.data.indexErrors });
  }
  return out;
}

/** Sum of "Number of packets:" over every file in `capinfos -c -M` output; throws when a file has none. */
export function parseCapinfosCount(out: string, files: number): number {
  const counts = [...out.matchAll(/^Number of packets:\s+(\d+)\s*$/gm)].map((m) => Number(m[1]));
  if (counts.length !== files) throw new Error(`capinfos reported ${counts.length} packet counts for ${files} file(s): ${out.slice(0, 600)}`);
  return counts.reduce((a, b) => a + b, 0);
}
