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

/** Control characters from the dispatcher (error texts, names) would move the cursor: shown escaped. */
export function safeText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => (c === '\n' || c === '\t' ? ' ' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
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
  const cells = rows.map((r) => r.map((c) => safeText(c)));
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
