import type { Argv, CommandModule } from 'yargs';
import { Args, UsageError, fail } from './local';
import type { StatsWindow } from '../../agent/stats/windows';

/* `tracefleet stats --ring DIR`: SIP statistics per window, peer and direction, of a ring (imported or live), as a table or JSON. */

/** The statistics' options, shared by `agent` (with prefix "stats-") and `stats`. */
export function statsOptions<T>(y: Argv<T>, prefix: '' | 'stats-'): Argv<T> {
  return y
    .option(`${prefix}window`, { type: 'number', default: 360, describe: 'statistics window in seconds' })
    .option(`${prefix}local`, { type: 'string', array: true, describe: "this host's side: ADDR, ADDR/PREFIX, IPv4:PORT or [IPv6]:PORT (repeat; default: the host's addresses)" })
    .option(`${prefix}peer`, { type: 'string', array: true, describe: 'a name for a peer: NAME=ADDR or NAME=ADDR/PREFIX (repeat)' })
    .option(`${prefix}short-call`, { type: 'number', default: 10, describe: 'answered calls shorter than this many seconds count as short' }) as Argv<T>;
}

/** The statistics' configuration from those options; a bad value is a usage error naming it. */
export async function statsConfigOf(a: Args, prefix: '' | 'stats-') {
  const camel = (s: string) => (prefix ? 'stats' + s[0].toUpperCase() + s.slice(1) : s);
  const { PeerResolver, PeerConfigError } = await import('../../agent/stats/peers');
  const windowSeconds = a[camel('window')] as number;
  const shortCallSeconds = a[camel('shortCall')] as number;
  if (!(Number.isInteger(windowSeconds) && windowSeconds >= 1 && windowSeconds <= 86_400)) throw new UsageError(`bad --${prefix}window ${windowSeconds}: give whole seconds, 1 to 86400`);
  if (!(shortCallSeconds >= 0)) throw new UsageError(`bad --${prefix}short-call ${shortCallSeconds}: give seconds, 0 or more`);
  const local = a[camel('local')] as string[] | undefined;
  try {
    const peers = new PeerResolver({ local: local?.flatMap((s) => s.split(',')).filter(Boolean), names: a[camel('peer')] as string[] | undefined });
    return { peers, windowSeconds, shortCallSeconds };
  } catch (e) {
    if (e instanceof PeerConfigError) throw new UsageError(`${e.message} (--${prefix}local, --${prefix}peer)`);
    throw e;
  }
}

const pct = (x: number | null) => (x === null ? '-' : x.toFixed(1));
const secs = (x: number | null) => (x === null ? '-' : x.toFixed(2));

async function table(windows: StatsWindow[]): Promise<string> {
  const { figuresOf } = await import('../../shared/stats/figures');
  const head = ['window', 'dir', 'peer', 'msgs', 'INVITE', 'ans', 'busy', 'noans', 'cancel', 'f3xx', 'f4xx', 'f5xx', 'f6xx', 'unfin', 'zero', 'short', 'SER%', 'SEER%', 'ISA%', 'SRD s', 'dur s'];
  const lines: string[][] = [head];
  for (const w of windows) {
    for (const r of w.rows) {
      const f = figuresOf(r.counts);
      const msgs = [...Object.values(r.counts.requests), ...Object.values(r.counts.responses)].reduce((x, y) => x + y, 0);
      lines.push([
        new Date(w.start * 1000).toISOString().slice(0, 16).replace('T', ' '), r.dir, r.peer, String(msgs), String(f.invites), String(f.answered), String(f.busy), String(f.noAnswer), String(f.cancelled),
        String(f.failed['3xx']), String(f.failed['4xx']), String(f.failed['5xx']), String(f.failed['6xx']), String(f.unfinished), String(f.zeroDuration), String(f.short),
        pct(f.ser), pct(f.seer), pct(f.isa), secs(f.srd), secs(f.meanDuration),
      ]);
    }
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines.map((l) => l.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

async function statsCmd(a: Args): Promise<void> {
  const ring = a.ring as string;
  const from = a.from === undefined ? -Infinity : Date.parse(a.from as string) / 1000;
  const to = a.to === undefined ? Infinity : Date.parse(a.to as string) / 1000;
  if (Number.isNaN(from) || Number.isNaN(to)) throw new UsageError('bad --from/--to: give ISO 8601 times, e.g. 2026-12-04T05:00:00Z');
  let windows: StatsWindow[];
  let notes: string[] = [];
  if (a.saved) {
    const { loadStats } = await import('../../agent/stats/store');
    const saved = loadStats(ring);
    windows = (saved?.windows ?? []).filter((w) => w.start + w.seconds > from && w.start < to);
  } else {
    const cfg = await statsConfigOf(a, '');
    const { statsOfRing } = await import('../../agent/stats/ring');
    const r = statsOfRing(ring, cfg.peers, { windowSeconds: cfg.windowSeconds, shortCallSeconds: cfg.shortCallSeconds, correlationHeader: a.correlationHeader as string });
    windows = r.stats.windowsBetween(from, to);
    notes = r.notes;
  }
  if (a.json) {
    const { figuresOf } = await import('../../shared/stats/figures');
    const out = windows.map((w) => ({ start: new Date(w.start * 1000).toISOString(), seconds: w.seconds, rows: w.rows.map((r) => ({ ...r, figures: figuresOf(r.counts) })) }));
    process.stdout.write(JSON.stringify({ windows: out, notes }) + '\n');
    return;
  }
  process.stdout.write(await table(windows));
  for (const n of notes) process.stderr.write(`tracefleet: ${n}\n`);
}

export const statsCommand: CommandModule<object, Args> = {
  command: 'stats',
  describe: 'SIP statistics per window, peer and direction of a ring (RFC 6076 SER, SEER, ISA, SRD; call outcomes)',
  builder: (y) =>
    statsOptions(
      y
        .option('ring', { type: 'string', demandOption: true, describe: 'ring directory' })
        .option('saved', { type: 'boolean', default: false, describe: "show the statistics the agent saved beside the ring (24 h, beyond what the segments hold) instead of computing them from the segments" })
        .option('from', { type: 'string', describe: 'windows ending after this time (ISO 8601)' })
        .option('to', { type: 'string', describe: 'windows starting before this time (ISO 8601)' })
        .option('correlation-header', { type: 'string', default: 'X-CID' })
        .option('json', { type: 'boolean', default: false }),
      '',
    ) as unknown as Argv<Args>,
  handler: (a) => statsCmd(a).catch((e) => fail(e, a.json === true)),
};
