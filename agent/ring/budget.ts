import { statSync, statfsSync, unlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { listSegments, type SegmentInfo } from './layout';

export interface BudgetOptions {
  /** Most bytes the ring's segments and their indexes may take together. */
  maxBytes: number;
  /** Least free space to leave on the ring's filesystem (0 to ignore). */
  minFreeBytes?: number;
  /** Segments being written; never deleted. */
  keep: Set<string>;
  /**
   * Streams whose newest segment is never deleted. A capture worker opens a
   * segment before its parent hears of it, so the newest one of a running
   * stream may be open even when `keep` does not say so yet.
   */
  keepNewestOf?: Iterable<string>;
}

function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Bytes of every segment and index in the ring. */
export function ringBytes(ringDir: string): number {
  let total = 0;
  for (const s of listSegments(ringDir)) total += s.bytes + fileBytes(s.indexPath);
  return total;
}

/**
 * Deletes the oldest segments, each with the index beside it, until the ring
 * fits in maxBytes and the filesystem has minFreeBytes free. Returns the
 * deleted segment paths, oldest first. Stops short when only protected
 * segments are left.
 */
export function enforceBudget(ringDir: string, opts: BudgetOptions): string[] {
  const minFree = opts.minFreeBytes ?? 0;
  const segs = listSegments(ringDir);
  const keep = new Set([...opts.keep].map((p) => resolve(p)));
  const newest = new Map<string, SegmentInfo>();
  for (const s of segs) newest.set(s.stream, s); // oldest first, so the last one wins
  for (const stream of opts.keepNewestOf ?? []) {
    const s = newest.get(stream);
    if (s) keep.add(resolve(s.path));
  }

  const sizes = segs.map((s) => s.bytes + fileBytes(s.indexPath));
  let total = sizes.reduce((a, b) => a + b, 0);
  let free = minFree > 0 ? freeBytes(ringDir) : Infinity;
  const deleted: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    if (total <= opts.maxBytes && free >= minFree) break;
    const s = segs[i];
    if (keep.has(resolve(s.path))) continue;
    // The index goes first: an index without its segment would point at
    // nothing, while a segment without an index is merely unindexed.
    unlinkIfThere(s.indexPath);
    unlinkIfThere(s.path);
    total -= sizes[i];
    // A reader holding the file open delays the space coming back, so ask
    // the filesystem again rather than assume.
    if (minFree > 0) free = freeBytes(ringDir);
    deleted.push(s.path);
  }
  return deleted;
}
