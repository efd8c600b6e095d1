import { readCaptureFile } from '../../shared/pcap/reader';

export interface Pkt {
  sec: number;
  nsec: number;
  origLen: number;
  data: Buffer;
}

/** Every packet of a capture file, in file order (data copied: the reader reuses its chunks). */
export async function readPackets(path: string): Promise<Pkt[]> {
  const out: Pkt[] = [];
  for await (const r of readCaptureFile(path)) out.push({ sec: r.tsSec, nsec: r.tsNsec, origLen: r.origLen, data: Buffer.from(r.data) });
  return out;
}

export interface Comparison {
  match: boolean;
  countA: number;
  countB: number;
  /** Human-readable differences, first few only. */
  details: string[];
}

function key(p: Pkt): string {
  return `${p.sec}.${String(p.nsec).padStart(9, '0')}`;
}

/**
 * Same packets, in time order: equal count, and pairwise equal timestamp,
 * wire length and bytes. Sorting is stable, so packets with equal
 * timestamps are compared in file order.
 */
export function comparePackets(a: Pkt[], b: Pkt[], nameA = 'ours', nameB = 'reference', maxDetails = 5): Comparison {
  const byTime = (x: Pkt, y: Pkt) => x.sec - y.sec || x.nsec - y.nsec;
  const sa = [...a].sort(byTime);
  const sb = [...b].sort(byTime);
  const details: string[] = [];
  if (sa.length !== sb.length) details.push(`${nameA} has ${sa.length} packets, ${nameB} has ${sb.length}`);
  const ta = new Set(sa.map(key));
  const tb = new Set(sb.map(key));
  for (const p of sa) if (!tb.has(key(p)) && details.length < maxDetails) details.push(`only in ${nameA}: packet at ${key(p)} (${p.data.length} bytes)`);
  for (const p of sb) if (!ta.has(key(p)) && details.length < maxDetails) details.push(`only in ${nameB}: packet at ${key(p)} (${p.data.length} bytes)`);
  const n = Math.min(sa.length, sb.length);
  for (let i = 0; i < n && details.length < maxDetails; i++) {
    const x = sa[i];
    const y = sb[i];
    if (byTime(x, y) !== 0) details.push(`#${i}: time ${key(x)} vs ${key(y)}`);
    else if (x.origLen !== y.origLen) details.push(`#${i} at ${key(x)}: wire length ${x.origLen} vs ${y.origLen}`);
    else if (!x.data.equals(y.data)) details.push(`#${i} at ${key(x)}: bytes differ (${x.data.length} vs ${y.data.length} captured)`);
  }
  return { match: details.length === 0, countA: sa.length, countB: sb.length, details };
}
