import { humanBytes, safeText, table } from './format';
import { isFinalHost, StateChange, TraceProgressView } from './trace-state';

/**
 * Live progress of a trace on stderr: on a terminal a table redrawn in
 * place, otherwise (a log, a pipe, CI) one line per state change so the
 * output stays readable as a file.
 */
export interface ProgressSink {
  update(view: TraceProgressView, changes: StateChange[]): void;
  /** Something the user should know while waiting (connection lost, poll failing). */
  note(line: string): void;
  /** Draws the final state; no more output after. */
  finish(view: TraceProgressView): void;
}

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

export function progressFor(stream: ProgressStream, opts: { now?: () => number } = {}): ProgressSink {
  return stream.isTTY ? new TtyProgress(stream, opts.now ?? Date.now) : new PlainProgress(stream);
}

function hostCounts(v: TraceProgressView): { finished: number; byState: Map<string, number> } {
  const byState = new Map<string, number>();
  let finished = 0;
  for (const h of v.hosts) {
    byState.set(h.state, (byState.get(h.state) ?? 0) + 1);
    if (isFinalHost(h.state)) finished++;
  }
  return { finished, byState };
}

function countsText(byState: Map<string, number>): string {
  return [...byState.entries()].map(([s, n]) => `${n} ${s}`).join(', ');
}

/** The lines of the live table: a header, one row per host (as many as fit), the notes. */
export function progressLines(v: TraceProgressView, o: { width?: number; maxRows?: number; elapsedMs?: number; notes?: string[] } = {}): string[] {
  const { finished, byState } = hostCounts(v);
  const elapsed = o.elapsedMs !== undefined ? `  ${Math.floor(o.elapsedMs / 1000)}s` : '';
  const merged = v.merged ? `  merged: ${v.merged.packets} packets, ${humanBytes(v.merged.bytes)}${v.merged.duplicates ? `, ${v.merged.duplicates} duplicates dropped` : ''}` : '';
  // Every host finished and the trace still running: the dispatcher is merging their PCAPs.
  const state = v.state === 'running' && v.hosts.length > 0 && finished === v.hosts.length ? 'running (merging)' : v.state;
  const head = `trace ${v.id}  ${state}${elapsed}  ${finished}/${v.hosts.length} hosts finished${merged}`;
  const maxRows = Math.max(1, o.maxRows ?? Infinity);
  const shown = v.hosts.length > maxRows ? v.hosts.slice(0, maxRows - 1) : v.hosts;
  const rows = shown.map((h) => [h.host, h.state + (h.truncated ? ' (truncated)' : ''), String(h.packets), humanBytes(h.bytes), h.error ?? '']);
  const lines = [
    safeText(head),
    ...table([{ title: 'HOST' }, { title: 'STATE' }, { title: 'PACKETS', right: true }, { title: 'BYTES', right: true }, { title: 'ERROR' }], rows),
  ];
  if (shown.length < v.hosts.length) {
    const rest = new Map<string, number>();
    for (const h of v.hosts.slice(shown.length)) rest.set(h.state, (rest.get(h.state) ?? 0) + 1);
    lines.push(`… ${v.hosts.length - shown.length} more hosts: ${countsText(rest)}`);
  } else if (v.hosts.length > 1) {
    lines.push(`hosts: ${countsText(byState)}`);
  }
  for (const n of o.notes ?? []) lines.push(safeText(`note: ${n}`));
  const w = o.width;
  return w && w > 1 ? lines.map((l) => (l.length > w - 1 ? `${l.slice(0, w - 2)}…` : l)) : lines;
}

const REDRAW_MS = 100;
const MAX_NOTES = 3;

export class TtyProgress implements ProgressSink {
  private drawn = 0;
  private timer: NodeJS.Timeout | null = null;
  private ticker: NodeJS.Timeout | null = null;
  private last: TraceProgressView | null = null;
  private notes: string[] = [];
  private done = false;
  private readonly started: number;

  constructor(
    private readonly out: ProgressStream,
    private readonly now: () => number,
  ) {
    this.started = now();
  }

  update(view: TraceProgressView): void {
    if (this.done) return;
    this.last = view;
    // The elapsed time moves even when nothing else does.
    if (!this.ticker) {
      this.ticker = setInterval(() => this.draw(), 1000);
      this.ticker.unref();
    }
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.draw();
      }, REDRAW_MS);
      this.timer.unref();
    }
  }

  note(line: string): void {
    if (this.done) return;
    this.notes = [...this.notes, line].slice(-MAX_NOTES);
    if (this.last) this.draw();
    else this.out.write(`tracefleet: ${safeText(line)}\n`);
  }

  finish(view: TraceProgressView): void {
    if (this.done) return;
    this.last = view;
    this.draw();
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.ticker) clearInterval(this.ticker);
    this.timer = this.ticker = null;
  }

  private draw(): void {
    if (!this.last || this.done) return;
    const rows = this.out.rows && this.out.rows > 8 ? this.out.rows - 6 - this.notes.length : 20;
    const lines = progressLines(this.last, { width: this.out.columns, maxRows: rows, elapsedMs: this.now() - this.started, notes: this.notes });
    // Back to the table's first line, clear to the end of the screen, draw: one write, so it does not flicker.
    const up = this.drawn > 0 ? `\x1b[${this.drawn}F\x1b[J` : '';
    this.out.write(up + lines.join('\n') + '\n');
    this.drawn = lines.length;
  }
}

export class PlainProgress implements ProgressSink {
  private announced = false;
  private finished = false;

  constructor(private readonly out: ProgressStream) {}

  private line(s: string): void {
    this.out.write(`tracefleet: ${safeText(s)}\n`);
  }

  update(view: TraceProgressView, changes: StateChange[]): void {
    if (this.finished) return;
    if (!this.announced) {
      this.announced = true;
      const names = view.hosts.map((h) => h.host);
      this.line(`trace ${view.id}: asking ${names.length} host${names.length === 1 ? '' : 's'}: ${names.slice(0, 20).join(', ')}${names.length > 20 ? ', …' : ''}`);
    }
    for (const c of changes) {
      if (c.host === null) {
        // The trace's final state is the summary's to tell (finish), once.
        if (c.to !== 'running' && !isFinalTraceChange(c)) this.line(`trace ${view.id}: ${c.to}`);
        continue;
      }
      const p = c.progress!;
      const counts = isFinalHost(p.state) || p.packets > 0 ? ` (${p.packets} packets, ${humanBytes(p.bytes)}${p.truncated ? ', truncated' : ''})` : '';
      this.line(`trace ${view.id}: host ${p.host}: ${p.state}${counts}${p.error ? `: ${p.error}` : ''}`);
    }
  }

  note(line: string): void {
    if (!this.finished) this.line(line);
  }

  finish(view: TraceProgressView): void {
    if (this.finished) return;
    this.finished = true;
    const { byState } = hostCounts(view);
    const merged = view.merged ? `; merged ${view.merged.packets} packets, ${humanBytes(view.merged.bytes)}` : '';
    this.line(`trace ${view.id}: ${view.state}: hosts ${countsText(byState) || 'none'}${merged}`);
  }
}

function isFinalTraceChange(c: StateChange): boolean {
  return c.to === 'done' || c.to === 'partial' || c.to === 'failed' || c.to === 'cancelled' || c.to === 'interrupted';
}
