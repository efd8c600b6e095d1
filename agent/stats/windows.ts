import type { MessageRecord } from '../index/format';
import { methodLabel } from '../../shared/sip/methods';
import { PeerResolver } from './peers';
import { emptyCounts, type Direction, type PeerCounts, type StatsWindow, type WindowRow } from '../../shared/stats/counts';

export { emptyCounts, type PeerCounts, type StatsWindow, type WindowRow };

/**
 * SIP statistics per time window, per remote peer and direction, fed with
 * the indexer's message records in capture order (live, or read back from a
 * ring's indexes). Messages are counted in the window of their timestamp; an
 * INVITE dialog is counted, with its outcome and duration, in the window its
 * first INVITE was seen in, even when the answer or the BYE come later.
 *
 * Memory is bounded: windows older than the retention are dropped, a
 * window's peers are capped (the rest are folded into "other"), and open
 * dialogs are capped and expired.
 */

export interface StatsOptions {
  /** Window length in seconds (default 360: the operator's "deci-hour"). */
  windowSeconds?: number;
  /** How long windows are kept, in seconds (default 24 h + one window). */
  retentionSeconds?: number;
  /** Peer-direction rows per window at most (default 200); the rest count as peer "other". */
  maxPeersPerWindow?: number;
  /** Answered calls shorter than this are "short" (default 10 s). */
  shortCallSeconds?: number;
  /** Dialogs followed at once at most (default 100 000); the oldest are given up past it. */
  maxDialogs?: number;
  /** An INVITE with no final response after this long is counted unfinished (default 300 s). */
  finalTimeoutSeconds?: number;
  /** An answered call with no BYE after this long is given up, with no duration (default 4 h). */
  maxCallSeconds?: number;
}

export const OTHER_PEER = 'other';


interface Dialog {
  row: PeerCounts;
  /** The start of the row's window. */
  start: number;
  cseq: string;
  inviteAt: number;
  srd: boolean;
  final: number | null;
  answeredAt: number | null;
  /** When it got a failure final or its BYE: kept a while after, so a retransmission is not a new dialog or a second end. */
  doneAt: number | null;
}

/** How long a finished dialog is remembered: RFC 3261 Timer H (64 x T1), the longest a retransmission goes on. */
const LINGER_SECONDS = 32;

const inc = (r: Record<string, number>, k: string, n = 1) => {
  r[k] = (r[k] ?? 0) + n;
};

/** Status codes as keys, made once: a string per response costs the indexer measurably. */
const CODE_KEYS = Array.from({ length: 700 }, (_, i) => String(i));
const codeKey = (s: number) => (s >= 0 && s < 700 ? CODE_KEYS[s] : String(s));
const byPeer = (a: WindowRow, b: WindowRow) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : a.dir < b.dir ? -1 : 1);
/** Dialogs are expired at most this often (seconds of packet time): a sweep visits every one. */
const SWEEP_EVERY = 5;

export class WindowStats {
  readonly windowSeconds: number;
  private readonly retention: number;
  private readonly maxPeers: number;
  private readonly shortCall: number;
  private readonly maxDialogs: number;
  private readonly finalTimeout: number;
  private readonly maxCall: number;
  /** By window start; rows by "dir peer". */
  private readonly windows = new Map<number, Map<string, WindowRow>>();
  private readonly dialogs = new Map<string, Dialog>();
  private newest = 0;
  private lastSweep = 0;
  /** Starts of the windows counted in since takeChanged(). */
  private readonly changed = new Set<number>();

  constructor(private readonly peers: PeerResolver, opts: StatsOptions = {}) {
    this.windowSeconds = opts.windowSeconds ?? 360;
    if (!(Number.isInteger(this.windowSeconds) && this.windowSeconds >= 1)) throw new RangeError('windowSeconds must be a whole number of seconds, at least 1');
    this.retention = opts.retentionSeconds ?? 86_400 + this.windowSeconds;
    this.maxPeers = opts.maxPeersPerWindow ?? 200;
    this.shortCall = opts.shortCallSeconds ?? 10;
    this.maxDialogs = opts.maxDialogs ?? 100_000;
    this.finalTimeout = opts.finalTimeoutSeconds ?? 300;
    this.maxCall = opts.maxCallSeconds ?? 4 * 3600;
  }

  /** The row of the last message: consecutive messages mostly share it. */
  private last: { start: number; peer: string; dir: Direction; counts: PeerCounts } | null = null;

  private row(at: number, peer: string, dir: Direction): PeerCounts | null {
    const start = Math.floor(at / this.windowSeconds) * this.windowSeconds;
    const l = this.last;
    if (l && l.start === start && l.peer === peer && l.dir === dir && this.windows.has(start)) return l.counts;
    const counts = this.findRow(start, peer, dir);
    this.last = counts ? { start, peer, dir, counts } : null;
    return counts;
  }

  private findRow(start: number, peer: string, dir: Direction): PeerCounts | null {
    if (start < this.newest - this.retention) return null;
    let w = this.windows.get(start);
    if (!w) this.windows.set(start, (w = new Map()));
    let key = `${dir} ${peer}`;
    let r = w.get(key);
    if (!r && w.size >= this.maxPeers - 2) {
      // Two rows are kept for "other", one per direction.
      key = `${dir} ${OTHER_PEER}`;
      r = w.get(key);
      peer = OTHER_PEER;
    }
    if (!r) w.set(key, (r = { peer, dir, counts: emptyCounts() }));
    this.changed.add(start);
    return r.counts;
  }

  add(m: MessageRecord): void {
    const at = m.t[0] + m.t[1] / 1e9;
    if (at > this.newest) this.newest = at;
    if (at - this.lastSweep >= SWEEP_EVERY) this.sweep(at);
    const { peer, dir } = this.peers.classify(m.src, m.sp, m.dst, m.dp);
    const row = this.row(at, peer, dir);
    if (!row) return;
    const q = m.q ?? '';
    const sp = q.indexOf(' ');
    if (m.m !== null) {
      inc(row.requests, methodLabel(m.m));
      if (m.m !== 'INVITE' && m.m !== 'BYE') return;
      const d = this.dialogs.get(m.c);
      if (m.m === 'INVITE' && !d) {
        const cseqNum = sp > 0 ? q.slice(0, sp) : q;
        row.invites++;
        if (this.dialogs.size >= this.maxDialogs) this.giveUpOldest();
        this.dialogs.set(m.c, { row, start: this.last?.start ?? Math.floor(at / this.windowSeconds) * this.windowSeconds, cseq: cseqNum, inviteAt: at, srd: false, final: null, answeredAt: null, doneAt: null });
      } else if (m.m === 'BYE' && d && d.answeredAt !== null && d.doneAt === null) {
        const secs = Math.max(0, at - d.answeredAt);
        d.row.ended++;
        d.row.durationSeconds += secs;
        if (secs < 1) d.row.zeroDuration++;
        if (secs < this.shortCall) d.row.short++;
        d.doneAt = at;
        this.changed.add(d.start);
      }
      return;
    }
    if (m.s === null) return;
    inc(row.responses, codeKey(m.s));
    const d = this.dialogs.get(m.c);
    // CSeq "<n> INVITE" of the dialog's first INVITE, compared without slicing.
    if (!d || sp !== d.cseq.length || !q.startsWith(d.cseq) || !q.endsWith(' INVITE') || q.length !== sp + 7) return;
    if (!d.srd && m.s !== 100) {
      this.changed.add(d.start);
      d.srd = true;
      d.row.srdCount++;
      d.row.srdSeconds += Math.max(0, at - d.inviteAt);
    }
    if (m.s >= 200 && d.final === null) {
      this.changed.add(d.start);
      d.final = m.s;
      inc(d.row.finals, codeKey(m.s));
      if (m.s < 300) d.answeredAt = at;
      else d.doneAt = at;
    }
  }

  private giveUpOldest(): void {
    const first = this.dialogs.entries().next().value;
    if (!first) return;
    const [c, d] = first;
    if (d.final === null) {
      d.row.unfinished++;
      this.changed.add(d.start);
    }
    this.dialogs.delete(c);
  }

  /** Drops old windows, and dialogs past their time (counted unfinished when they never got a final). */
  private sweep(now: number): void {
    this.lastSweep = now;
    this.last = null;
    for (const start of this.windows.keys()) if (start + this.windowSeconds < now - this.retention) this.windows.delete(start);
    for (const [c, d] of this.dialogs) {
      if (d.doneAt !== null) {
        if (now - d.doneAt > LINGER_SECONDS) this.dialogs.delete(c);
      } else if (d.final === null && now - d.inviteAt > this.finalTimeout) {
        d.row.unfinished++;
        this.changed.add(d.start);
        this.dialogs.delete(c);
      } else if (d.answeredAt !== null && now - d.answeredAt > this.maxCall) {
        this.dialogs.delete(c);
      }
    }
  }

  /** Windows overlapping [from, to) (Unix seconds), oldest first. */
  windowsBetween(from = -Infinity, to = Infinity): StatsWindow[] {
    return [...this.windows.entries()]
      .filter(([s]) => s + this.windowSeconds > from && s < to)
      .sort((a, b) => a[0] - b[0])
      .map(([start, rows]) => ({ start, seconds: this.windowSeconds, rows: [...rows.values()].sort(byPeer) }));
  }

  /** What is saved beside the ring: the windows (dialogs in progress are not kept across a restart). */
  toJSON(): { version: 1; windowSeconds: number; newest: number; windows: StatsWindow[] } {
    return { version: 1, windowSeconds: this.windowSeconds, newest: this.newest, windows: this.windowsBetween() };
  }

  /** Takes back saved windows of the same length, within the retention. */
  restore(saved: { windowSeconds: number; newest: number; windows: StatsWindow[] }): void {
    if (saved.windowSeconds !== this.windowSeconds) return;
    this.newest = Math.max(this.newest, saved.newest);
    this.last = null;
    for (const w of saved.windows) {
      if (w.start + this.windowSeconds < this.newest - this.retention) continue;
      const rows = this.windows.get(w.start) ?? new Map<string, WindowRow>();
      for (const r of w.rows.slice(0, this.maxPeers)) if (!rows.has(`${r.dir} ${r.peer}`)) rows.set(`${r.dir} ${r.peer}`, r);
      this.windows.set(w.start, rows);
      this.changed.add(w.start);
    }
  }

  /**
   * The windows counted in since the last call (whole, as windowsBetween
   * gives them): what the agent sends the dispatcher next. Windows dropped
   * by the retention meanwhile are not in it.
   */
  takeChanged(): StatsWindow[] {
    // The cached row of the last message would count in without marking its window again.
    this.last = null;
    const out: StatsWindow[] = [];
    for (const start of [...this.changed].sort((a, b) => a - b)) {
      const rows = this.windows.get(start);
      if (rows) out.push({ start, seconds: this.windowSeconds, rows: [...rows.values()].map((r) => structuredClone(r)).sort(byPeer) });
    }
    this.changed.clear();
    return out;
  }

  /** Ends the dialogs still open as if their time had passed (a ring read to its end: nothing more will come). */
  finish(): void {
    for (const d of this.dialogs.values()) if (d.final === null) d.row.unfinished++;
    this.dialogs.clear();
  }
}
