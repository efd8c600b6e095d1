import type { Argv, CommandModule } from 'yargs';
import { Args, UsageError, fail } from './local';
import type { StatsWindow, PeerCounts } from '../../shared/stats/counts';

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

/** One line of the table: a window (Unix seconds), a host when the rows come from several, a peer and direction, and the counts. */
type Line = { start: number; host?: string; dir: string; peer: string; counts: PeerCounts };

async function table(rows: Line[], withHost: boolean): Promise<string> {
  const { figuresOf } = await import('../../shared/stats/figures');
  const { safeText } = await import('../format');
  const head = ['window', ...(withHost ? ['host'] : []), 'dir', 'peer', 'msgs', 'INVITE', 'ans', 'busy', 'noans', 'cancel', 'f3xx', 'f4xx', 'f5xx', 'f6xx', 'unfin', 'zero', 'short', 'SER%', 'SEER%', 'ISA%', 'SRD s', 'dur s'];
  const left = withHost ? 4 : 3;
  const lines: string[][] = [head];
  for (const r of rows) {
    const f = figuresOf(r.counts);
    lines.push([
      new Date(r.start * 1000).toISOString().slice(0, 16).replace('T', ' '), ...(withHost ? [safeText(r.host ?? '')] : []), r.dir, safeText(r.peer), String(f.messages), String(f.invites), String(f.answered), String(f.busy), String(f.noAnswer), String(f.cancelled),
      String(f.failed['3xx']), String(f.failed['4xx']), String(f.failed['5xx']), String(f.failed['6xx']), String(f.unfinished), String(f.zeroDuration), String(f.short),
      pct(f.ser), pct(f.seer), pct(f.isa), secs(f.srd), secs(f.meanDuration),
    ]);
  }
  const widths = head.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  return lines.map((l) => l.map((c, i) => (i < left ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

async function ringStats(a: Args): Promise<void> {
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
  process.stdout.write(await table(windows.flatMap((w) => w.rows.map((r) => ({ start: w.start, ...r }))), false));
  for (const n of notes) process.stderr.write(`tracefleet: ${n}\n`);
}

/** The fleet's windows from the dispatcher (GET /api/stats), figures computed here from the counts. */
async function fleetStats(a: Args): Promise<import('../../shared/errors/catalogue').Exit> {
  const { connect } = await import('./remote');
  const { DispatcherClient } = await import('../api-client');
  const { figuresOf } = await import('../../shared/stats/figures');
  const { EXIT } = await import('../../shared/errors/catalogue');
  const q = new URLSearchParams();
  for (const k of ['from', 'to'] as const) if (a[k] !== undefined) q.set(k, a[k] as string);
  for (const h of (a.host as string[] | undefined) ?? []) q.append('host', h);
  for (const p of (a.onlyPeer as string[] | undefined) ?? []) q.append('peer', p);
  const client = new DispatcherClient(await connect(a));
  try {
    const ans = await client.stats(q);
    if (a.json) {
      const windows = ans.windows.map((w) => ({ ...w, rows: w.rows.map((r) => ({ ...r, figures: figuresOf(r.counts) })) }));
      process.stdout.write(JSON.stringify({ from: ans.from, to: ans.to, windows }) + '\n');
    } else if (ans.windows.length === 0) {
      process.stderr.write(`tracefleet: no statistics from ${ans.from} to ${ans.to}: no agent counted SIP then (agents send their windows with their heartbeats)\n`);
    } else {
      process.stdout.write(await table(ans.windows.flatMap((w) => w.rows.map((r) => ({ start: Date.parse(w.start) / 1000, ...r }))), true));
    }
    return EXIT.OK;
  } finally {
    client.close();
  }
}

export const statsCommand: CommandModule<object, Args> = {
  command: 'stats',
  describe: 'SIP statistics per window, peer and direction (RFC 6076 SER, SEER, ISA, SRD; call outcomes): the fleet\'s from the dispatcher, or one ring\'s with --ring',
  builder: (y) => {
    const { connectionOptions } = require('./remote') as typeof import('./remote');
    return connectionOptions(
      statsOptions(
        y
          .option('ring', { type: 'string', describe: 'a ring directory: its statistics, computed here (no dispatcher)' })
          .option('saved', { type: 'boolean', default: false, describe: "with --ring: the statistics the agent saved beside the ring (24 h, beyond what the segments hold) instead of computing them from the segments" })
          .option('from', { type: 'string', describe: 'windows ending after this time (ISO 8601; from the dispatcher, default an hour before --to)' })
          .option('to', { type: 'string', describe: 'windows starting before this time (ISO 8601; default now)' })
          .option('host', { type: 'string', array: true, describe: "from the dispatcher: only these agents' windows (repeat)" })
          .option('only-peer', { type: 'string', array: true, describe: 'from the dispatcher: only these peers, as the table names them (repeat)' })
          .option('correlation-header', { type: 'string', default: 'X-CID' })
          .option('json', { type: 'boolean', default: false }),
        '',
      ),
    ) as unknown as Argv<Args>;
  },
  handler: (a) => {
    if (a.ring !== undefined) return ringStats(a).catch((e) => fail(e, a.json === true));
    const { run } = require('./remote') as typeof import('./remote');
    return run(fleetStats)(a);
  },
};
