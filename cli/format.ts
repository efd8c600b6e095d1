import type { RtpStreamFigures } from '../shared/rtp/figures';
import type { RtpHop, TraceClocks } from '../shared/trace/vantage';
/** Plain-text tables and values for terminals and logs. */

/** 1536 -> "1.5 KiB"; exact below 1 KiB. */
export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** An ISO time to the second, UTC, for tables: 2025-11-23 19:14:05Z. Unparseable text is shown as is. */
export function shortTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/**
 * Control characters from the dispatcher (error texts, names, SIP text) would
 * move the cursor, and bidirectional overrides and zero-width characters
 * would make a line read as something it is not: all shown escaped.
 */
export function safeText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/g, (c) => {
    if (c === '\n' || c === '\t') return ' ';
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}

/** Milliseconds with up to three decimals, or '-' when unknown. */
function msText(v: number | null): string {
  return v === null ? '-' : String(Math.round(v * 1000) / 1000);
}

/** The RTP stream table of `query --rtp-stats` and `show`: one line a stream, figures as shared/rtp/figures.ts defines them. */
export function formatStreams(streams: Array<RtpStreamFigures & { host?: string }>): string[] {
  if (streams.length === 0) return ['no RTP streams'];
  const withHost = streams.some((s) => s.host !== undefined);
  const cols = [
    ...(withHost ? [{ title: 'HOST' }] : []),
    { title: 'SSRC' }, { title: 'SRC' }, { title: '' }, { title: 'DST' }, { title: 'CODEC' },
    { title: 'PKTS', right: true }, { title: 'EXPECTED', right: true }, { title: 'LOST', right: true }, { title: 'DUP', right: true }, { title: 'OOO', right: true },
    { title: 'MAX GAP ms', right: true }, { title: 'JITTER ms mean/max', right: true }, { title: 'EVENTS' }, { title: 'R', right: true }, { title: 'MOS', right: true },
  ];
  const rows = streams.map((s) => [
    ...(withHost ? [s.host ?? ''] : []),
    s.ssrc, s.src, '→', s.dst, s.codec ?? `PT ${s.payloadType}`,
    String(s.packets), String(s.expected), String(s.lost), String(s.duplicated), String(s.outOfOrder),
    msText(s.maxGapMs), `${msText(s.jitterMeanMs)}/${msText(s.jitterMaxMs)}`,
    s.eventCount ? s.events.map((e) => e.event).join('') + (s.eventCount > s.events.length ? '…' : '') : '',
    s.rFactor === null ? '-' : s.rFactor.toFixed(1), s.mos === null ? '-' : s.mos.toFixed(2),
  ]);
  return table(cols, rows);
}

/** Signed milliseconds with three decimals, '-' when unknown. */
function signedMs(v: number | null): string {
  return v === null ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(3)}`;
}

/** Each host's clock against the trace's reference host (the merge's estimate). */
export function formatClocks(c: TraceClocks): string[] {
  return [
    `clocks against ${c.reference}${c.aligned ? ' (merged file on corrected clocks)' : ''}`,
    ...table(
      [{ title: 'HOST' }, { title: 'OFFSET ms', right: true }, { title: 'SPREAD ms', right: true }, { title: 'PACKETS', right: true }, { title: 'AGAINST' }, { title: 'WAYS' }],
      c.hosts.map((h) => [
        h.host,
        h.host === c.reference ? 'reference' : signedMs(h.offsetMs),
        h.spreadMs === null ? '-' : h.spreadMs.toFixed(3),
        String(h.samples),
        h.against ?? '-',
        h.against === null ? '' : h.twoWay ? 'both' : 'one',
      ]),
    ),
  ];
}

/** The per-hop table: each RTP stream seen on several hosts, one line per hop between two of them. */
export function formatHops(hops: RtpHop[]): string[] {
  if (hops.length === 0) return ['no RTP stream was seen by two hosts with its packets (hops need --rtp)'];
  return table(
    [
      { title: 'SSRC' }, { title: 'SRC' }, { title: '' }, { title: 'DST' }, { title: 'HOP' },
      { title: 'PKTS', right: true }, { title: 'LOST', right: true }, { title: 'UNSEEN UP', right: true },
      { title: 'DELAY ms med/max', right: true }, { title: 'JITTER+ ms mean/max', right: true }, { title: 'CLOCKS' },
    ],
    hops.map((h) => [
      h.ssrc, h.src, '→', h.dst, `${h.from} → ${h.to}`,
      String(h.packets), String(h.lost), String(h.unseenUpstream),
      `${msText(h.delayMs)}/${msText(h.delayMaxMs)}`, `${msText(h.jitterAddedMeanMs)}/${msText(h.jitterAddedMaxMs)}`,
      h.corrected ? 'corrected' : 'raw',
    ]),
  );
}

/** Widest table cell; longer ones (a reason phrase of kilobytes) are cut with an ellipsis. --json keeps full text. */
export const MAX_CELL = 60;

function cutCell(s: string): string {
  return s.length > MAX_CELL ? `${s.slice(0, MAX_CELL - 1)}…` : s;
}

export interface Column {
  title: string;
  /** Numbers line up on the right. */
  right?: boolean;
}

/**
 * Lines of a table with columns padded to their widest cell. The last
 * column is not padded; with `width`, lines are cut to it (a wrapped line
 * would break the in-place redraw of the progress table).
 */
export function table(columns: Column[], rows: string[][], width?: number): string[] {
  const cells = rows.map((r) => r.map((c) => cutCell(safeText(c))));
  const widths = columns.map((c, i) => Math.max(c.title.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    columns
      .map((c, i) => {
        const v = r[i] ?? '';
        if (i === columns.length - 1 && !c.right) return v;
        return c.right ? v.padStart(widths[i]) : v.padEnd(widths[i]);
      })
      .join('  ')
      .replace(/\s+$/, '');
  const out = [line(columns.map((c) => c.title)), ...cells.map(line)];
  return width && width > 0 ? out.map((l) => (l.length > width ? `${l.slice(0, Math.max(0, width - 1))}…` : l)) : out;
}
