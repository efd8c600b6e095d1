import { openSegment } from '../index/open';
import { listSegments } from '../ring/layout';
import type { MessageRecord } from '../index/format';
import { PeerResolver } from './peers';
import { StatsOptions, WindowStats } from './windows';

/**
 * Statistics of a ring read back from its indexes (an imported ring, or a
 * live one: nothing is written, the newest segment is indexed in memory).
 * Segments are read in the order they were opened and each one's messages
 * in time order, one segment in memory at a time; with several interfaces
 * the segments of one stream may overlap another's in time, and a dialog
 * whose answer sits in a segment read before its INVITE's is not matched.
 */
export function statsOfRing(ringDir: string, peers: PeerResolver, opts: StatsOptions & { correlationHeader?: string } = {}): { stats: WindowStats; segments: number; notes: string[] } {
  const stats = new WindowStats(peers, opts);
  const notes: string[] = [];
  const segs = listSegments(ringDir).sort((a, b) => a.startMicros - b.startMicros);
  let segments = 0;
  for (const seg of segs) {
    const o = openSegment(seg, false, { correlationHeader: opts.correlationHeader });
    if (!o) continue;
    segments++;
    if (o.note) notes.push(o.note);
    try {
      const msgs: MessageRecord[] = o.index.allDialogs().flatMap((d) => d.msgs);
      // Stable: messages of one packet time keep the order the indexer found them in.
      msgs.sort((a, b) => a.t[0] - b.t[0] || a.t[1] - b.t[1] || a.p[0] - b.p[0]);
      for (const m of msgs) stats.add(m);
    } finally {
      o.index.close();
    }
  }
  stats.finish();
  return { stats, segments, notes };
}
