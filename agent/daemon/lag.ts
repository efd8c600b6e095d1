/**
 * How far the live indexer is behind the capture, from the two reports the
 * main thread already gets: the capture's 'flushed' (bytes written to a
 * segment) and the indexer's 'status' (bytes indexed). Bytes behind are the
 * sum over segments; seconds behind are the age of the oldest flush whose
 * bytes are not indexed yet (0 when caught up).
 */

/** A flush remembered at most once per this many ms: the lag in seconds is exact to about this much. */
const MARK_EVERY_MS = 1000;
/** Marks kept per segment at most; past it the oldest are kept (the lag is then never under-reported). */
const MAX_MARKS = 4096;

interface Tracked {
  flushed: number;
  indexed: number;
  /** [bytes, ms] of flushes not yet indexed, oldest first. */
  marks: Array<[number, number]>;
  closed: boolean;
}

export class IndexLag {
  private readonly segments = new Map<string, Tracked>();

  private get(path: string): Tracked {
    let t = this.segments.get(path);
    if (!t) this.segments.set(path, (t = { flushed: 0, indexed: 0, marks: [], closed: false }));
    return t;
  }

  flushed(path: string, bytes: number, now = Date.now()): void {
    const t = this.get(path);
    if (bytes <= t.flushed) return;
    t.flushed = bytes;
    const last = t.marks[t.marks.length - 1];
    if (last && now - last[1] < MARK_EVERY_MS) last[0] = bytes;
    else if (t.marks.length < MAX_MARKS) t.marks.push([bytes, now]);
    else t.marks[t.marks.length - 1][0] = bytes;
  }

  closed(path: string): void {
    const t = this.segments.get(path);
    if (t) t.closed = true;
  }

  deleted(path: string): void {
    this.segments.delete(path);
  }

  indexed(progress: Array<[string, number]>): void {
    for (const [path, bytes] of progress) {
      const t = this.segments.get(path);
      if (!t) continue;
      t.indexed = Math.max(t.indexed, bytes);
      while (t.marks.length > 0 && t.marks[0][0] <= t.indexed) t.marks.shift();
      if (t.closed && t.marks.length === 0) this.segments.delete(path);
    }
  }

  bytes(): number {
    let n = 0;
    for (const t of this.segments.values()) n += Math.max(0, t.flushed - t.indexed);
    return n;
  }

  seconds(now = Date.now()): number {
    let oldest = Infinity;
    for (const t of this.segments.values()) if (t.marks.length > 0) oldest = Math.min(oldest, t.marks[0][1]);
    return oldest === Infinity ? 0 : Math.max(0, now - oldest) / 1000;
  }
}
