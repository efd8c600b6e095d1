import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { TracefleetError } from '../../shared/errors/catalogue';

/**
 * A ring is one directory of segment files. Each capture stream (one per
 * interface, or "import") writes its own sequence of segments; a segment's
 * index lives beside it under the same base name (Stenographer keeps IDX
 * beside PKT), so deleting a segment means deleting both.
 *
 *   <stream>-<YYYYMMDD>T<HHMMSS>.<micros>Z.pcap   packets, standard PCAP
 *   <stream>-<YYYYMMDD>T<HHMMSS>.<micros>Z.idx    its index
 *
 * The start time in the name is when the segment was opened, so names sort
 * by time within a stream.
 */
export interface SegmentInfo {
  /** Absolute path of the .pcap file. */
  path: string;
  /** Path of its index file. */
  indexPath: string;
  /** File name without extension. */
  base: string;
  stream: string;
  /** Opening time from the name, in microseconds since the epoch. */
  startMicros: number;
  /** Size of the .pcap file when listed. */
  bytes: number;
}

export const SEGMENT_EXT = '.pcap';
/**
 * The stream HEP packets are written to (agent/hep/worker.ts): its messages
 * are marked as having come through HEP. An interface of that name cannot
 * be captured beside a HEP listener.
 */
export const HEP_STREAM = 'hep';
export const INDEX_EXT = '.idx';

const NAME_RE = /^([A-Za-z0-9_.@:+=-]+?)-(\d{8})T(\d{6})\.(\d{6})Z\.pcap$/;

/** Stream names come from interface names; keep them file-name safe. */
export function sanitizeStream(name: string): string {
  const s = name.replace(/[^A-Za-z0-9_.@:+=]/g, '_');
  return s.length > 0 ? s : 'stream';
}

export function segmentBaseName(stream: string, startMicros: number): string {
  const d = new Date(Math.floor(startMicros / 1000));
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const micros = ((startMicros % 1_000_000) + 1_000_000) % 1_000_000;
  return (
    `${sanitizeStream(stream)}-${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `T${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}.${p(micros, 6)}Z`
  );
}

/** Whether a segment file belongs to the HEP stream. */
export function isHepSegment(segmentPath: string): boolean {
  const slash = segmentPath.lastIndexOf('/');
  return parseSegmentName(segmentPath.slice(slash + 1))?.stream === HEP_STREAM;
}

export function indexPathFor(segmentPath: string): string {
  return segmentPath.slice(0, -SEGMENT_EXT.length) + INDEX_EXT;
}

export function parseSegmentName(name: string): { stream: string; startMicros: number } | null {
  const m = NAME_RE.exec(name);
  if (!m) return null;
  const [, stream, ymd, hms, micros] = m;
  const ms = Date.UTC(
    Number(ymd.slice(0, 4)), Number(ymd.slice(4, 6)) - 1, Number(ymd.slice(6, 8)),
    Number(hms.slice(0, 2)), Number(hms.slice(2, 4)), Number(hms.slice(4, 6)),
  );
  return { stream, startMicros: Math.floor(ms / 1000) * 1_000_000 + Number(micros) };
}

/** Segments of a ring, oldest first (by opening time, then name). Throws a clear error when the ring cannot be read. */
export function listSegments(ringDir: string): SegmentInfo[] {
  let names: string[];
  try {
    names = readdirSync(ringDir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new TracefleetError('TF_RING_DIR', { message: `ring directory ${ringDir} does not exist (give --ring the directory the agent or 'ring import' writes)` });
    if (code === 'ENOTDIR') throw new TracefleetError('TF_RING_DIR', { message: `${ringDir} is not a directory (give --ring a ring directory)` });
    if (code === 'EACCES') throw new TracefleetError('TF_RING_DIR', { message: `ring directory ${ringDir} is not readable (run as a user that can read it)` });
    throw e;
  }
  const out: SegmentInfo[] = [];
  for (const name of names) {
    const parsed = parseSegmentName(name);
    if (!parsed) continue;
    const path = join(ringDir, name);
    let bytes: number;
    try {
      bytes = statSync(path).size;
    } catch {
      continue; // deleted by rotation between readdir and stat
    }
    const base = name.slice(0, -SEGMENT_EXT.length);
    out.push({ path, indexPath: join(ringDir, base + INDEX_EXT), base, stream: parsed.stream, startMicros: parsed.startMicros, bytes });
  }
  out.sort((a, b) => a.startMicros - b.startMicros || (a.base < b.base ? -1 : a.base > b.base ? 1 : 0));
  return out;
}
