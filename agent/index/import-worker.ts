import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { MessagePort, workerData } from 'node:worker_threads';
import { IndexerOptions, SegmentIndexer } from './builder';

/**
 * A thread of ring import's index pool (import-pool.ts): it writes and indexes the records of the segments it
 * is given, and seals each once the import has closed it. The verbatim copy's runs come in the thread's ring
 * (shared memory the import copied them into from the bytes it read): written to the segment and indexed from
 * there, so the segment is never read back. What the import wrote itself is read back: a range (`written`), or
 * whatever whole records the file has (`grown`, as the live indexer does). Segments are independent (each has
 * its own reassembly state), so two threads index two segments at once and write the same index files one
 * thread would.
 */

export type ImportIndexCommand =
  /** The import created the segment and wrote its PCAP header (`header`). */
  | { type: 'open'; path: string; indexPath: string; header: Uint8Array }
  /**
   * Whole records for the segment at file offset `at`, in the ring at `ringAt` (`len` bytes): write them there
   * and index them; then the ring is free up to `ringEnd` (a count of ring bytes ever given, wrap included).
   */
  | { type: 'run'; path: string; at: number; ringAt: number; len: number; ringEnd: number }
  /** The import wrote these whole records itself (the ring was full): read them back and index them. */
  | { type: 'written'; path: string; at: number; len: number }
  /** More whole records are in the file (written record by record): index them now rather than when it is closed. */
  | { type: 'grown'; path: string }
  /** The import wrote the segment's last byte and closed it. */
  | { type: 'seal'; path: string }
  /** The import failed: left unsealed, as the import leaves the segment it was writing. */
  | { type: 'abandon'; path: string }
  | { type: 'stop' };

export type ImportIndexReport =
  | { type: 'sealed'; path: string }
  | { type: 'abandoned'; path: string }
  /** `code`: the system error's (ENOSPC, EACCES...), when it was one. */
  | { type: 'error'; path: string; message: string; code: string | null };

export interface ImportWorkerData {
  port: MessagePort;
  /** [0]: reports posted, the import waits on it (Atomics.wait) while no thread is free; [1]: commands done. */
  posted: SharedArrayBuffer;
  /** This thread's ring of runs. */
  ring: SharedArrayBuffer;
  /** [0]: ring bytes this thread is done with (the import's ringEnd of the last run taken). */
  ringDone: SharedArrayBuffer;
  opts: Omit<IndexerOptions, 'onMessage' | 'onRtcp'>;
}

interface Segment {
  ix: SegmentIndexer;
  fd: number;
  header: Buffer;
}

const { port, posted, ring, ringDone, opts } = workerData as ImportWorkerData;
const count = new Int32Array(posted);
const ringBytes = Buffer.from(ring);
const done = new BigInt64Array(ringDone);
const open = new Map<string, Segment>();
/** Read-back buffer for `written` ranges (at most a copy chunk). */
let readBuf = Buffer.alloc(0);

function report(r: ImportIndexReport): void {
  port.postMessage(r);
  Atomics.add(count, 0, 1);
  Atomics.notify(count, 0);
}

function writeAll(fd: number, b: Buffer, at: number): void {
  for (let n = 0; n < b.length; ) n += writeSync(fd, b, n, b.length - n, at + n);
}

function end(path: string, s: Segment | undefined): void {
  open.delete(path);
  if (s) closeSync(s.fd);
}

function run(c: ImportIndexCommand): void {
  if (c.type === 'stop') {
    port.close();
    return;
  }
  if (c.type === 'open') {
    const header = Buffer.from(c.header.buffer, c.header.byteOffset, c.header.byteLength);
    const fd = openSync(c.path, 'r+');
    open.set(c.path, { ix: new SegmentIndexer(c.path, c.indexPath, { ...opts, journal: false }), fd, header });
    return;
  }
  const s = open.get(c.path);
  if (c.type === 'run') {
    try {
      // A segment whose error was reported already: the import throws it; later commands for it are moot.
      if (!s) return;
      const bytes = ringBytes.subarray(c.ringAt, c.ringAt + c.len);
      writeAll(s.fd, bytes, c.at);
      s.ix.indexWrittenRecords(s.header, bytes, c.at);
    } finally {
      Atomics.store(done, 0, BigInt(c.ringEnd));
    }
    return;
  }
  if (!s) return;
  if (c.type === 'written') {
    if (readBuf.length < c.len) readBuf = Buffer.allocUnsafe(c.len);
    const bytes = readBuf.subarray(0, c.len);
    for (let n = 0; n < c.len; ) {
      const got = readSync(s.fd, bytes, n, c.len - n, c.at + n);
      if (got === 0) throw new Error(`${c.path}: ${c.len - n} bytes at ${c.at + n} are missing`);
      n += got;
    }
    s.ix.indexWrittenRecords(s.header, bytes, c.at);
  } else if (c.type === 'grown') {
    s.ix.catchUp();
  } else if (c.type === 'seal') {
    end(c.path, s);
    s.ix.seal();
    report({ type: 'sealed', path: c.path });
  } else {
    end(c.path, s);
    s.ix.close();
    report({ type: 'abandoned', path: c.path });
  }
}

port.on('message', (c: ImportIndexCommand) => {
  try {
    run(c);
    if (c.type !== 'seal' && c.type !== 'abandon') Atomics.add(count, 1, 1);
  } catch (e) {
    const path = 'path' in c ? c.path : '';
    const s = open.get(path);
    try {
      end(path, s);
      s?.ix.close();
    } catch {
      // the error below is the one to report
    }
    report({ type: 'error', path, message: (e as Error).message, code: (e as NodeJS.ErrnoException).code ?? null });
  }
});
