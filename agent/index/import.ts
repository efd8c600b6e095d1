import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { parsePcapHeader, PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN, pcapCapLenLimit, pcapHeaderBytes } from '../../shared/pcap/pcap';
import { detectCaptureFormat, forEachCaptureRecordSync } from '../../shared/pcap/reader';
import { CaptureFormatError, notACaptureError } from '../../shared/pcap/errors';
import { TracefleetError } from '../../shared/errors/catalogue';
import type { PacketRecord } from '../../shared/pcap/types';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { IndexerOptions, SegmentIndexer } from './builder';
import { ImportIndexPool, ImportThreadError } from './import-pool';
import { copyable } from './import-records';
import { INDEX_EXT, SEGMENT_EXT, segmentBaseName } from '../ring/layout';
import { lockRing } from '../ring/lock';

export interface ImportOptions extends IndexerOptions {
  /** Segment size at which a new segment starts (default 64 MiB). */
  maxSegmentBytes?: number;
  /** Stream name of the imported segments (default "import"). */
  stream?: string;
  /**
   * PCAP files whose records a segment holds as they are are copied many records a write (default); false:
   * every record is read and written one by one (the tests that compare both). The ring is the same either way.
   */
  copyVerbatim?: boolean;
  /**
   * Threads that index and seal segments while this one writes them (import-pool.ts): a new segment goes to
   * a thread that is free, else it is indexed here, from the records in hand, as every segment is with 0.
   * Default: TRACEFLEET_IMPORT_THREADS when set, else one a core but this one's (at most MAX_INDEX_THREADS)
   * when the files make more than one segment, else 0 (a thread's start costs more than it saves on one
   * segment). The ring is the same either way. With onMessage or onRtcp: always 0 (they are told in this
   * thread).
   */
  indexThreads?: number;
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
/**
 * Source bytes read at a time by the verbatim copy (copyVerbatim), and the most an index thread reads for one
 * run. Small enough that the walk over the record headers and the index find the bytes the read just brought in
 * still in the cache (8 MiB: the walk alone took four times as long); at least a record of the largest SNAPLEN.
 */
const COPY_CHUNK = 1 << 20;
const MAX_INDEX_THREADS = 4;

function indexThreadsFor(files: string[], maxBytes: number, opts: ImportOptions): number {
  if (opts.onMessage || opts.onRtcp) return 0;
  if (opts.indexThreads !== undefined) return Math.max(0, Math.floor(opts.indexThreads));
  const env = process.env.TRACEFLEET_IMPORT_THREADS;
  if (env !== undefined && env !== '') {
    if (!/^\d{1,2}$/.test(env)) throw new TracefleetError('TF_USAGE', { message: `TRACEFLEET_IMPORT_THREADS=${env}: give a number of index threads from 0 (index in the importing thread) to 99` });
    return Number(env);
  }
  let bytes = 0;
  for (const f of files) bytes += statSync(f, { throwIfNoEntry: false })?.size ?? 0;
  return bytes > maxBytes ? Math.min(availableParallelism() - 1, MAX_INDEX_THREADS) : 0;
}

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
  const threads = indexThreadsFor(files, maxBytes, opts);
  mkdirSync(ringDir, { recursive: true });
  const release = lockRing(ringDir);
  const result: ImportResult = { files: 0, packets: 0, segments: [], tornBytes: 0 };
  // A segment given to a thread is indexed there as it is written (read back as it grows); one kept here, from
  // the records in hand: reading it back was a tenth of a single-threaded import. Each isolate costs its own
  // start, JIT warm-up and heap, so this thread indexes too rather than wait for the threads.
  let pool: ImportIndexPool | null = null;
  const open = new Map<number, Open>();
  const finish = (o: Open) => {
    o.w?.flush();
    closeSync(o.fd);
    if (o.ix) o.ix.seal();
    else pool!.seal(o.path, positionOf(o));
    result.segments.push(o.path);
  };
  /** The segment a record of `size` bytes (header included) goes to: the open one of its link type if it fits, else a new one. */
  const segmentFor = (linkType: number, nanos: boolean, tsSec: number, tsNsec: number, size: number): Open => {
    let o = open.get(linkType);
    if (o && (o.nanos !== nanos || positionOf(o) + size > maxBytes)) {
      finish(o);
      open.delete(linkType);
      o = undefined;
    }
    if (!o) {
      const stream = (opts.stream ?? 'import') + (linkType === 1 ? '' : `_lt${linkType}`);
      let micros = tsSec * 1_000_000 + Math.floor(tsNsec / 1000);
      let path: string;
      // Two segments may open at the same microsecond; names must stay unique.
      while (existsSync((path = join(ringDir, segmentBaseName(stream, micros) + SEGMENT_EXT)))) micros++;
      const fd = openSync(path, 'wx');
      const header = pcapHeaderBytes({ linkType, nanos, snaplen: SNAPLEN });
      const indexPath = path.slice(0, -SEGMENT_EXT.length) + INDEX_EXT;
      o = { fd, path, nanos, linkType, w: null, end: header.length, header, ix: null, grownAt: 0, pool };
      open.set(linkType, o);
      // A thread's segment is written by the thread (its runs) and by this one (what the copy could not take):
      // the header first, for either to write after.
      if (pool) writeAt(fd, header, 0);
      if (!pool?.tryOpen(path, indexPath, header)) {
        o.w = new PcapFileWriterSync(fd, { linkType, nanos, snaplen: SNAPLEN, bufferSize: WRITE_BUFFER, position: pool ? header.length : 0 });
        o.ix = new SegmentIndexer(path, indexPath, { ...opts, journal: false });
      }
    }
    return o;
  };
  try {
    if (threads > 0) pool = new ImportIndexPool(threads, opts, maxBytes / 2);
    for (const file of files) {
      const nanos = sourceIsNanos(file);
      const copied = opts.copyVerbatim === false ? { done: false, records: 0 } : copyVerbatim(file, nanos, maxBytes, segmentFor, result);
      if (copied.done) {
        result.files++;
        continue;
      }
      // The rest of the file record by record, from the first record the copy could not take as it is.
      let skip = copied.records;
      forEachCaptureRecordSync(file, (rec: PacketRecord) => {
        if (skip > 0) {
          skip--;
          return;
        }
        const o = segmentFor(rec.linkType, nanos, rec.tsSec, rec.tsNsec, PCAP_RECORD_HEADER_LEN + rec.capLen);
        const fileOffset = writerOf(o).write(rec);
        // The record as the segment holds it: a µs segment keeps whole microseconds (writePcapRecordHeader).
        // Written (copied) already and the reader's own fresh object: made the segment's in place, not copied.
        if (o.ix) {
          rec.fileOffset = fileOffset;
          if (!o.nanos) rec.tsNsec = Math.floor(rec.tsNsec / 1000) * 1000;
          o.ix.indexWritten(o.header, rec);
        } else if (o.w!.position - o.grownAt >= WRITE_BUFFER) {
          // The writer has flushed about this much since: its thread indexes what is in the file.
          o.grownAt = o.w!.position;
          pool!.grown(o.path, o.grownAt);
        }
        result.packets++;
      }, { onTorn: (b) => (result.tornBytes += b) });
      result.files++;
    }
    for (const o of open.values()) finish(o);
    open.clear();
    pool?.drain();
  } catch (e) {
    throw ringWriteError(e, ringDir);
  } finally {
    for (const o of open.values()) {
      if (o.ix) o.ix.close();
      else pool!.abandonQuietly(o.path);
      try { closeSync(o.fd); } catch { /* closed */ }
    }
    try {
      // After a failure, the segments closed before it are still sealed, as without threads.
      pool?.drainQuietly();
    } finally {
      await pool?.stop();
      release();
    }
  }
  return result;
}

/** An open segment: indexed here (`ix`) or on the pool's threads. */
interface Open {
  path: string;
  fd: number;
  nanos: boolean;
  linkType: number;
  /**
   * Writes what this thread writes record by record; null until then in a thread's segment, whose runs its
   * thread writes (`end` is where the next goes). Once there is one, it writes everything after.
   */
  w: PcapFileWriterSync | null;
  end: number;
  ix: SegmentIndexer | null;
  pool: ImportIndexPool | null;
  /** Writer position when the pool was last told the segment grew. */
  grownAt: number;
  header: Buffer;
}

/** File offset of the segment's next record. */
function positionOf(o: Open): number {
  return o.w ? o.w.position : o.end;
}

/** The segment's writer, made at `end` in a thread's segment (its header and runs are written). */
function writerOf(o: Open): PcapFileWriterSync {
  o.w ??= new PcapFileWriterSync(o.fd, { linkType: o.linkType, nanos: o.nanos, snaplen: SNAPLEN, bufferSize: WRITE_BUFFER, position: o.end });
  return o.w;
}

function writeAt(fd: number, b: Buffer, at: number): void {
  for (let n = 0; n < b.length; ) n += writeSync(fd, b, n, b.length - n, at + n);
}

/** Errors of the disk (a full one, a directory that is not writable...) with what to do: the system's own says neither. */
const WRITE_ADVICE: Record<string, string> = {
  ENOSPC: 'the disk is full: free space there or import into a ring on another disk',
  EDQUOT: 'the disk quota is used up: free space there or import into a ring on another disk',
  EACCES: 'permission denied: import as a user that can write the ring directory, or into another ring',
  EPERM: 'not permitted: import as a user that can write the ring directory, or into another ring',
  EROFS: 'the file system is read-only: import into a ring on a writable disk',
  EISDIR: 'a directory is in the way of a ring file: remove it',
  EIO: 'the disk reported an I/O error: check it, or import into a ring on another disk',
};

/**
 * An import's failure as the user reads it: a system error while writing the ring (here or on an index thread)
 * says which file and what to do, with a catalogue code; the rest (input errors, already worded) as they are.
 * The segments sealed before it stay; the one being written is left unsealed.
 */
function ringWriteError(e: unknown, ringDir: string): unknown {
  if (e instanceof TracefleetError) return e;
  const thread = e instanceof ImportThreadError;
  const sys = e as NodeJS.ErrnoException;
  // Writes go by descriptor (no path); an input file's read error is not the ring's.
  if (!thread && (sys.code === undefined || (sys.syscall !== 'write' && !(sys.path && resolve(sys.path).startsWith(resolve(ringDir) + sep))))) return e;
  const code = thread ? e.code : (sys.code ?? null);
  const advice = (code && WRITE_ADVICE[code]) ?? `check the ring directory ${ringDir}`;
  const what = thread ? `cannot write or index ring segment ${e.path}: ${e.message}` : `cannot write ring ${ringDir}: ${(e as Error).message}`;
  return new TracefleetError('TF_FAILED', { message: `ring import: ${what}; ${advice}` });
}

/**
 * Copies the records of a PCAP file whose records a segment holds byte for byte (little-endian headers,
 * within the segment's snaplen, a sub-second field under a second) straight from the file's bytes to the
 * segments, many records a write, and indexes them from the same bytes: no record object, no copy per
 * record. Stops at the first record that would be written differently (or a corrupt or a torn one):
 * `done` false and the records copied so far, for the record-by-record path to take the rest, errors and
 * all. `done` true: the whole file was copied (a torn tail counted in result.tornBytes).
 */
function copyVerbatim(
  file: string, nanos: boolean, maxBytes: number,
  segmentFor: (linkType: number, nanos: boolean, tsSec: number, tsNsec: number, size: number) => Open,
  result: ImportResult,
): { done: boolean; records: number } {
  let records = 0;
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return { done: false, records };
  }
  try {
    const head = Buffer.alloc(PCAP_HEADER_LEN);
    if (readSync(fd, head, 0, PCAP_HEADER_LEN, 0) < PCAP_HEADER_LEN || detectCaptureFormat(head) !== 'pcap') return { done: false, records };
    const header = parsePcapHeader(head, file);
    if (!header.littleEndian || header.nanos !== nanos) return { done: false, records };
    const limit = Math.min(pcapCapLenLimit(header), SNAPLEN);
    const subMax = nanos ? 1_000_000_000 : 1_000_000;
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    let have = 0;
    /** File offset of buf[0]. */
    let bufAt = PCAP_HEADER_LEN;
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, buf, have, buf.length - have, bufAt + have);
      } catch {
        // The record-by-record path reads it again and says what is wrong.
        return { done: false, records };
      }
      if (got === 0) {
        if (have > 0) result.tornBytes += have;
        return { done: true, records };
      }
      have += got;
      let off = 0;
      let runStart = 0;
      let runRecords = 0;
      let o: Open | null = null;
      let segEnd = 0;
      const flushRun = () => {
        if (o !== null && off > runStart) {
          const bytes = buf.subarray(runStart, off);
          if (o.ix) o.ix.indexWrittenRecords(o.header, bytes, o.w!.writeRecordBytes(bytes));
          else if (o.w) {
            // Records written one by one before: the thread reads everything since back.
            o.w.writeRecordBytes(bytes);
            o.pool!.grown(o.path, o.w.position);
          } else {
            // Its thread copies the run itself (from the source's page cache), writing included: this thread,
            // which reads every byte of every file, only found where the records end.
            o.pool!.copy(o.path, file, bufAt + runStart, bytes.length, o.end, limit, subMax);
            o.end += bytes.length;
          }
          records += runRecords;
          result.packets += runRecords;
        }
        runStart = off;
        runRecords = 0;
      };
      while (have - off >= PCAP_RECORD_HEADER_LEN) {
        if (!copyable(buf, off, limit, subMax)) {
          flushRun();
          return { done: false, records };
        }
        const size = PCAP_RECORD_HEADER_LEN + buf.readUInt32LE(off + 8);
        if (have - off < size) break;
        // Where the record-by-record path would start a new segment, this run ends.
        if (o === null || segEnd + size > maxBytes) {
          flushRun();
          const sub = buf.readUInt32LE(off + 4);
          o = segmentFor(header.linkType, nanos, buf.readUInt32LE(off), nanos ? sub : sub * 1000, size);
          segEnd = positionOf(o);
        }
        segEnd += size;
        off += size;
        runRecords++;
      }
      flushRun();
      buf.copyWithin(0, off, have);
      have -= off;
      bufAt += off;
    }
  } finally {
    closeSync(fd);
  }
}
