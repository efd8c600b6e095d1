import type { IndexerOptions } from './builder';
import { openSegment } from './open';
import { listSegments } from '../ring/layout';
import { ringOwner } from '../ring/lock';

export interface RingReport {
  segments: number;
  packets: number;
  messages: number;
  bytes: number;
  oldest: string | null;
  newest: string | null;
  rebuilt: number;
  notes: string[];
}

function iso(ts: [number, number]): string {
  return new Date(ts[0] * 1000 + Math.floor(ts[1] / 1e6)).toISOString();
}

/** Opens every segment's index (repairing what it may) and sums up the ring. */
export function checkRing(ringDir: string, opts: IndexerOptions = {}): RingReport {
  const mayWrite = ringOwner(ringDir) === null;
  const r: RingReport = { segments: 0, packets: 0, messages: 0, bytes: 0, oldest: null, newest: null, rebuilt: 0, notes: [] };
  let first: [number, number] | null = null;
  let last: [number, number] | null = null;
  for (const info of listSegments(ringDir)) {
    const s = openSegment(info, mayWrite, opts);
    if (!s) continue;
    r.segments++;
    r.bytes += info.bytes;
    r.packets += s.index.packetCount;
    r.messages += s.index.messageCount;
    if (s.repair === 'rebuilt') r.rebuilt++;
    if (s.note) r.notes.push(s.note);
    if (s.index.packetCount > 0) {
      if (!first || s.index.first[0] < first[0] || (s.index.first[0] === first[0] && s.index.first[1] < first[1])) first = s.index.first;
      if (!last || s.index.last[0] > last[0] || (s.index.last[0] === last[0] && s.index.last[1] > last[1])) last = s.index.last;
    }
    s.index.close();
  }
  if (!mayWrite) r.notes.push('an agent owns this ring: indexes were checked, not rewritten');
  r.oldest = first ? iso(first) : null;
  r.newest = last ? iso(last) : null;
  return r;
}
