import { closeSync, existsSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { FOOTER_LEN, FOOTER_MAGIC, INDEX_HEADER_LEN, MAX_RECORD_LEN, RECORD_PREFIX_LEN, REC } from '../../agent/index/format';
import { listSegments } from '../../agent/ring/layout';

export interface LagSample {
  /** ms since the probe was made. */
  t: number;
  segments: number;
  /** Segments whose index is sealed (footer written). */
  sealed: number;
  /** Segment bytes over the whole ring not yet covered by a journal checkpoint or a sealed index. */
  lagBytes: number;
}

/**
 * Watches how far the live index of a ring trails the segments, from
 * outside the agent: each segment's size against the last checkpoint record
 * ('C', f64 bytes indexed) of its journal, or nothing when its index is
 * sealed. Reads each journal incrementally, so a sample costs only the
 * bytes appended since the previous one.
 */
export class IndexLagProbe {
  private readonly journals = new Map<string, { offset: number; checkpoint: number }>();
  private readonly sealedIdx = new Set<string>();
  private readonly t0 = Date.now();
  private readonly chunk = Buffer.allocUnsafe(4 * 1024 * 1024);

  constructor(private readonly ringDir: string) {}

  sample(): LagSample {
    const t = Date.now() - this.t0;
    let segs;
    try {
      segs = listSegments(this.ringDir);
    } catch {
      return { t, segments: 0, sealed: 0, lagBytes: 0 };
    }
    let lagBytes = 0;
    let sealed = 0;
    for (const seg of segs) {
      if (this.isSealed(seg.indexPath)) {
        sealed++;
        continue;
      }
      let size = seg.bytes;
      try {
        size = statSync(seg.path).size;
      } catch {
        continue; // deleted between the listing and now
      }
      // A segment holding only its PCAP header needs no indexing.
      if (size > 24) lagBytes += Math.max(0, size - this.checkpoint(seg.indexPath));
    }
    return { t, segments: segs.length, sealed, lagBytes };
  }

  private isSealed(idxPath: string): boolean {
    if (this.sealedIdx.has(idxPath)) return true;
    let fd: number;
    try {
      fd = openSync(idxPath, 'r');
    } catch {
      return false;
    }
    try {
      const size = fstatSync(fd).size;
      if (size < INDEX_HEADER_LEN + FOOTER_LEN) return false;
      const b = Buffer.alloc(FOOTER_MAGIC.length);
      readSync(fd, b, 0, b.length, size - FOOTER_LEN);
      if (!b.equals(FOOTER_MAGIC)) return false;
      this.sealedIdx.add(idxPath);
      this.journals.delete(idxPath);
      return true;
    } finally {
      closeSync(fd);
    }
  }

  private checkpoint(idxPath: string): number {
    let st = this.journals.get(idxPath);
    if (!st) this.journals.set(idxPath, (st = { offset: INDEX_HEADER_LEN, checkpoint: 0 }));
    if (!existsSync(idxPath)) return st.checkpoint;
    let fd: number;
    try {
      fd = openSync(idxPath, 'r');
    } catch {
      return st.checkpoint;
    }
    try {
      const size = fstatSync(fd).size;
      while (st.offset < size) {
        const n = readSync(fd, this.chunk, 0, Math.min(this.chunk.length, size - st.offset), st.offset);
        if (n <= 0) break;
        let p = 0;
        let progressed = false;
        while (p + RECORD_PREFIX_LEN <= n) {
          const len = this.chunk.readUInt32LE(p);
          // The sealed footer (or a torn record) ends the journal: nothing past it is a record.
          if (len < 1 || len > MAX_RECORD_LEN) return st.checkpoint;
          const end = p + 4 + len;
          if (end > n) {
            if (4 + len > this.chunk.length) {
              // A record bigger than the chunk (a sealed section): skip it without reading it.
              if (st.offset + p + 4 + len > size) return st.checkpoint;
              st.offset += p + 4 + len;
              p = 0;
              progressed = true;
            }
            break;
          }
          if (this.chunk[p + 4] === REC.CHECKPOINT && len >= 9) st.checkpoint = this.chunk.readDoubleLE(p + 5);
          p = end;
          progressed = true;
        }
        if (!progressed) break;
        if (p > 0) st.offset += p;
      }
    } finally {
      closeSync(fd);
    }
    return st.checkpoint;
  }
}
