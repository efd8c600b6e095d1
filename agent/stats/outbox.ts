import type { StatsWindow } from '../../shared/stats/counts';
import { STATS_DELTA_BYTES, type StatsDelta } from '../../shared/protocol/agent';

/**
 * The agent's windows on their way to the dispatcher. The indexer thread
 * hands over each window it counted in (whole); they wait here until a
 * heartbeat takes them. A window sent again replaces the dispatcher's copy,
 * so nothing needs acknowledging: after a reconnection (the dispatcher may
 * have restarted) every window kept is sent again, a heartbeat's worth at a
 * time, so a day of windows never makes one huge message.
 */
export class StatsOutbox {
  private readonly kept = new Map<number, StatsWindow>();
  private readonly pending = new Set<number>();

  /** retentionSeconds: windows older than the newest by more are forgotten, as the indexer forgets them. */
  constructor(private readonly retentionSeconds = 86_400 + 360) {}

  update(windows: StatsWindow[]): void {
    let newest = 0;
    for (const w of windows) {
      this.kept.set(w.start, w);
      this.pending.add(w.start);
    }
    for (const s of this.kept.keys()) newest = Math.max(newest, s);
    for (const [s, w] of this.kept) {
      if (s + w.seconds < newest - this.retentionSeconds) {
        this.kept.delete(s);
        this.pending.delete(s);
      }
    }
  }

  /** Everything is to be sent again (a new connection). */
  resendAll(): void {
    for (const s of this.kept.keys()) this.pending.add(s);
  }

  /**
   * The windows to send with the next heartbeat, newest first (what an
   * operator looks at, and what alerts are evaluated on), within maxBytes of
   * JSON; null when none wait. A window bigger than maxBytes alone is dropped
   * (it cannot be, with the indexer's row cap; counted in `oversize`).
   */
  take(maxBytes = STATS_DELTA_BYTES): StatsDelta | null {
    if (this.pending.size === 0) return null;
    const out: StatsWindow[] = [];
    let bytes = 0;
    for (const s of [...this.pending].sort((a, b) => b - a)) {
      const w = this.kept.get(s);
      if (!w) {
        this.pending.delete(s);
        continue;
      }
      const size = JSON.stringify(w).length + 1;
      if (size > maxBytes) {
        this.pending.delete(s);
        this.oversize++;
        continue;
      }
      if (bytes + size > maxBytes) break;
      bytes += size;
      out.push(w);
      this.pending.delete(s);
    }
    return out.length > 0 ? { windows: out } : null;
  }

  oversize = 0;

  get waiting(): number {
    return this.pending.size;
  }
}
