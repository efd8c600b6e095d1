import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parsePcapHeader, pcapHeaderBytes } from '../../shared/pcap/pcap';
import { detectCaptureFormat, forEachCaptureRecordSync } from '../../shared/pcap/reader';
import { CaptureFormatError, notACaptureError } from '../../shared/pcap/errors';
import type { PacketRecord } from '../../shared/pcap/types';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { IndexerOptions, SegmentIndexer } from './builder';
import { INDEX_EXT, SEGMENT_EXT, segmentBaseName } from '../ring/layout';
import { lockRing } from '../ring/lock';

export interface ImportOptions extends IndexerOptions {
  /** Segment size at which a new segment starts (default 64 MiB). */
  maxSegmentBytes?: number;
  /** Stream name of the imported segments (default "import"). */
  stream?: string;
}

export interface ImportResult {
  files: number;
  packets: number;
  segments: string[];
  tornBytes: number;
}

/** Segments are written in few large writes (a 256 KiB default made 256 pwrites per segment). */
const WRITE_BUFFER = 4 << 20;
const SNAPLEN = 262144;

function sourceIsNanos(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message;
    throw new CaptureFormatError(`cannot read ${path}: ${why}; give the path of a PCAP or PCAPNG file`);
  }
  try {
    // open(2) succeeds on a directory; only the read would fail, with a bare EISDIR.
    if (fstatSync(fd).isDirectory()) {
      throw new CaptureFormatError(`cannot read ${path}: it is a directory; give the PCAP or PCAPNG files in it (e.g. ${join(path, '*.pcap')})`);
    }
    const head = Buffer.alloc(24);
    const n = readSync(fd, head, 0, 24, 0);
    const fmt = detectCaptureFormat(head.subarray(0, n));
    if (fmt === null) throw notACaptureError(path, head.subarray(0, n));
    // PCAPNG resolution is per interface and known only while reading; nanosecond segments hold any of them exactly.
    return fmt === 'pcap' ? parsePcapHeader(head, path).nanos : true;
  } finally {
    closeSync(fd);
  }
}

/**
 * Builds ring segments (and their sealed indexes) from PCAP or PCAPNG files:
 * how a capture taken elsewhere is loaded. Packets keep their bytes and
 * timestamps; each link type gets its own stream, since a PCAP file holds one.
 */
export async function importCaptures(ringDir: string, files: string[], opts: ImportOptions = {}): Promise<ImportResult> {
  const maxBytes = opts.maxSegmentBytes ?? 64 * 1024 * 1024;
  mkdirSync(ringDir, { recursive: true });
  const release = lockRing(ringDir);
  const result: ImportResult = { files: 0, packets: 0, segments: [], tornBytes: 0 };
  // Each segment is indexed as it is written, from the records in hand: reading it back was a tenth of an import.
  type Open = { fd: number; w: PcapFileWriterSync; path: string; nanos: boolean; ix: SegmentIndexer; header: Buffer };
  const open = new Map<number, Open>();
  const finish = (o: Open) => {
    o.w.flush();
    closeSync(o.fd);
    o.ix.seal();
    result.segments.push(o.path);
  };
  try {
    for (const file of files) {
      const nanos = sourceIsNanos(file);
      forEachCaptureRecordSync(file, (rec: PacketRecord) => {
        let o = open.get(rec.linkType);
        if (o && (o.nanos !== nanos || o.w.position + 16 + rec.capLen > maxBytes)) {
          finish(o);
          open.delete(rec.linkType);
          o = undefined;
        }
        if (!o) {
          const stream = (opts.stream ?? 'import') + (rec.linkType === 1 ? '' : `_lt${rec.linkType}`);
          let micros = rec.tsSec * 1_000_000 + Math.floor(rec.tsNsec / 1000);
          let path: string;
          // Two segments may open at the same microsecond; names must stay unique.
          while (existsSync((path = join(ringDir, segmentBaseName(stream, micros) + SEGMENT_EXT)))) micros++;
          const fd = openSync(path, 'wx');
          const w = new PcapFileWriterSync(fd, { linkType: rec.linkType, nanos, snaplen: SNAPLEN, bufferSize: WRITE_BUFFER });
          const ix = new SegmentIndexer(path, path.slice(0, -SEGMENT_EXT.length) + INDEX_EXT, { ...opts, journal: false });
          o = { fd, path, nanos, w, ix, header: pcapHeaderBytes({ linkType: rec.linkType, nanos, snaplen: SNAPLEN }) };
          open.set(rec.linkType, o);
        }
        const fileOffset = o.w.write(rec);
        // The record as the segment holds it: a µs segment keeps whole microseconds (writePcapRecordHeader).
        // Written (copied) already and the reader's own fresh object: made the segment's in place, not copied.
        rec.fileOffset = fileOffset;
        if (!o.nanos) rec.tsNsec = Math.floor(rec.tsNsec / 1000) * 1000;
        o.ix.indexWritten(o.header, rec);
        result.packets++;
      }, { onTorn: (b) => (result.tornBytes += b) });
      result.files++;
    }
    for (const o of open.values()) finish(o);
    open.clear();
  } finally {
    for (const o of open.values()) {
      o.ix.close();
      try { closeSync(o.fd); } catch { /* closed */ }
    }
    release();
  }
  return result;
}
