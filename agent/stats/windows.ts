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
  row: LiveRow;
  /** The start of the row's window. */
  start: number;
  /** The first INVITE's CSeq ("<n> INVITE"): its responses are the ones with this CSeq. */
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

/** Counts one more under k. */
const tally = <K>(t: Map<K, number>, k: K) => {
  t.set(k, (t.get(k) ?? 0) + 1);
};

/**
 * A row as it is counted in: the tallies (requests by method, responses and
 * finals by status) in Maps, which cost the indexer a fraction of what
 * objects keyed per message cost it; the rest in counts, whose tallies are
 * what a restore brought back. Made into a WindowRow when read (rowOf).
 */
interface LiveRow {
  peer: string;
  dir: Direction;
  counts: PeerCounts;
  requests: Map<string, number>;
  responses: Map<number, number>;
  finals: Map<number, number>;
}

const liveRow = (peer: string, dir: Direction, counts: PeerCounts): LiveRow => ({ peer, dir, counts, requests: new Map(), responses: new Map(), finals: new Map() });

function merged(base: Record<string, number>, t: Map<string | number, number>): Record<string, number> {
  const out = { ...base };
  for (const [k, n] of t) out[k] = (out[k] ?? 0) + n;
  return out;
}

/** A new WindowRow of a live one (nothing shared with it). */
const rowOf = (r: LiveRow): WindowRow => ({
  peer: r.peer,
  dir: r.dir,
  counts: { ...r.counts, requests: merged(r.counts.requests, r.requests), responses: merged(r.counts.responses, r.responses), finals: merged(r.counts.finals, r.finals) },
});

const byPeer = (a: WindowRow, b: WindowRow) => (a.peer < b.peer ? -1 : a.peer > b.peer ? 1 : a.dir < b.dir ? -1 : 1);
/** Dialogs are expired at most this often (seconds of packet time): a sweep visits every one. */
const SWEEP_EVERY = 5;
/** Peer slots kept at most (see row()). */
const MAX_SLOTS = 10_000;

interface Slot {
  gen: number;
  start: number;
  in: LiveRow | null;
  out: LiveRow | null;
}

export class WindowStats {
  readonly windowSeconds: number;
  private readonly retention: number;
  private readonly maxPeers: number;
  private readonly shortCall: number;
  private readonly maxDialogs: number;
  private readonly finalTimeout: number;
  private readonly maxCall: number;
  /** By window start; rows by "dir peer". */
  private readonly windows = new Map<number, Map<string, LiveRow>>();
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

  /**
   * Per peer name, its rows in the window it was last counted in. The
   * names are the resolver's own strings, so a lookup hashes nothing; a row
   * found through here is counted in without a string key made, hashed and
   * looked up per message (that was most of the statistics' cost). A slot
   * is good for one generation: bumped when windows are dropped, restored,
   * or handed out by takeChanged (a window found again is marked changed).
   */
  private readonly slots = new Map<string, Slot>();
  private gen = 0;
  /** The window start of the row row() last gave. */
  private rowStart = 0;

  private row(at: number, peer: string, dir: Direction): LiveRow | null {
    const start = Math.floor(at / this.windowSeconds) * this.windowSeconds;
    this.rowStart = start;
    let s = this.slots.get(peer);
    if (s === undefined) {
      // Bounded like the resolver's caches; refilled from the windows as messages come.
      if (this.slots.size >= MAX_SLOTS) this.slots.clear();
      this.slots.set(peer, (s = { gen: -1, start: 0, in: null, out: null }));
    }
    if (s.gen !== this.gen || s.start !== start) {
      s.gen = this.gen;
      s.start = start;
      s.in = s.out = null;
    }
    const r = dir === 'in' ? s.in : s.out;
    if (r !== null) return r;
    const found = this.findRow(start, peer, dir);
    if (dir === 'in') s.in = found;
    else s.out = found;
    return found;
  }

  private findRow(start: number, peer: string, dir: Direction): LiveRow | null {
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
    if (!r) w.set(key, (r = liveRow(peer, dir, emptyCounts())));
    this.changed.add(start);
    return r;
  }

  add(m: MessageRecord): void {
    const at = m.t[0] + m.t[1] / 1e9;
    if (at > this.newest) this.newest = at;
    if (at - this.lastSweep >= SWEEP_EVERY) this.sweep(at);
    const { peer, dir } = this.peers.classify(m.src, m.sp, m.dst, m.dp);
    const row = this.row(at, peer, dir);
    if (!row) return;
    if (m.m !== null) {
      tally(row.requests, methodLabel(m.m));
      if (m.m !== 'INVITE' && m.m !== 'BYE') return;
      const d = this.dialogs.get(m.c);
      if (m.m === 'INVITE' && !d) {
        // The CSeq number is all that is taken from the INVITE's CSeq: its method may lie.
        const q = m.q ?? '';
        const sp = q.indexOf(' ');
        const cseq = `${sp > 0 ? q.slice(0, sp) : q} INVITE`;
        row.counts.invites++;
        if (this.dialogs.size >= this.maxDialogs) this.giveUpOldest();
        this.dialogs.set(m.c, { row, start: this.rowStart, cseq, inviteAt: at, srd: false, final: null, answeredAt: null, doneAt: null });
      } else if (m.m === 'BYE' && d && d.answeredAt !== null && d.doneAt === null) {
        const secs = Math.max(0, at - d.answeredAt);
        d.row.counts.ended++;
        d.row.counts.durationSeconds += secs;
        if (secs < 1) d.row.counts.zeroDuration++;
        if (secs < this.shortCall) d.row.counts.short++;
        d.doneAt = at;
        this.changed.add(d.start);
      }
      return;
    }
    if (m.s === null) return;
    tally(row.responses, m.s);
    // Only the first INVITE's responses other than 100 count further: the others are not looked up.
    if (m.s === 100 || m.q === null || !m.q.endsWith(' INVITE')) return;
    const d = this.dialogs.get(m.c);
    if (!d || m.q !== d.cseq) return;
    if (!d.srd && m.s !== 100) {
      this.changed.add(d.start);
      d.srd = true;
      d.row.counts.srdCount++;
      d.row.counts.srdSeconds += Math.max(0, at - d.inviteAt);
    }
    if (m.s >= 200 && d.final === null) {
      this.changed.add(d.start);
      d.final = m.s;
      tally(d.row.finals, m.s);
      if (m.s < 300) d.answeredAt = at;
      else d.doneAt = at;
    }
  }

  private giveUpOldest(): void {
    const first = this.dialogs.entries().next().value;
    if (!first) return;
    const [c, d] = first;
    if (d.final === null) {
      d.row.counts.unfinished++;
      this.changed.add(d.start);
    }
    this.dialogs.delete(c);
  }

  /** Drops old windows, and dialogs past their time (counted unfinished when they never got a final). */
  private sweep(now: number): void {
    this.lastSweep = now;
    for (const start of this.windows.keys()) {
      if (start + this.windowSeconds < now - this.retention) {
        this.windows.delete(start);
        this.gen++;
      }
    }
    // forEach rather than for-of: no [key, value] pair made per dialog, and sweeps visit each one every few seconds.
    this.dialogs.forEach((d, c) => {
      if (d.doneAt !== null) {
        if (now - d.doneAt > LINGER_SECONDS) this.dialogs.delete(c);
      } else if (d.final === null && now - d.inviteAt > this.finalTimeout) {
        d.row.counts.unfinished++;
        this.changed.add(d.start);
        this.dialogs.delete(c);
      } else if (d.answeredAt !== null && now - d.answeredAt > this.maxCall) {
        this.dialogs.delete(c);
      }
    });
  }

  /** Windows overlapping [from, to) (Unix seconds), oldest first. */
  windowsBetween(from = -Infinity, to = Infinity): StatsWindow[] {
    return [...this.windows.entries()]
      .filter(([s]) => s + this.windowSeconds > from && s < to)
      .sort((a, b) => a[0] - b[0])
      .map(([start, rows]) => ({ start, seconds: this.windowSeconds, rows: [...rows.values()].map(rowOf).sort(byPeer) }));
  }

  /** What is saved beside the ring: the windows (dialogs in progress are not kept across a restart). */
  toJSON(): { version: 1; windowSeconds: number; newest: number; windows: StatsWindow[] } {
    return { version: 1, windowSeconds: this.windowSeconds, newest: this.newest, windows: this.windowsBetween() };
  }

  /** Takes back saved windows of the same length, within the retention. */
  restore(saved: { windowSeconds: number; newest: number; windows: StatsWindow[] }): void {
    if (saved.windowSeconds !== this.windowSeconds) return;
    this.newest = Math.max(this.newest, saved.newest);
    this.gen++;
    for (const w of saved.windows) {
      if (w.start + this.windowSeconds < this.newest - this.retention) continue;
      const rows = this.windows.get(w.start) ?? new Map<string, LiveRow>();
      for (const r of w.rows.slice(0, this.maxPeers)) if (!rows.has(`${r.dir} ${r.peer}`)) rows.set(`${r.dir} ${r.peer}`, liveRow(r.peer, r.dir, r.counts));
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
    // A cached row would count in without marking its window again.
    this.gen++;
    const out: StatsWindow[] = [];
    for (const start of [...this.changed].sort((a, b) => a - b)) {
      const rows = this.windows.get(start);
      if (rows) out.push({ start, seconds: this.windowSeconds, rows: [...rows.values()].map(rowOf).sort(byPeer) });
    }
    this.changed.clear();
    return out;
  }

  /** Ends the dialogs still open as if their time had passed (a ring read to its end: nothing more will come). */
  finish(): void {
    for (const d of this.dialogs.values()) if (d.final === null) d.row.counts.unfinished++;
    this.dialogs.clear();
  }
}
