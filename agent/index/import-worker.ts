import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { MessagePort, workerData } from 'node:worker_threads';
import { IndexerOptions, SegmentIndexer } from './builder';
import { copyableRun } from './import-records';

/**
 * A thread of ring import's index pool (import-pool.ts): it indexes the segments it is given and seals each once
 * the import has closed it. The verbatim copy's runs it copies itself (`copy`: read from the source file, written
 * to the segment and indexed from the same bytes), so the import's thread only reads the source to find where
 * records and segments end. What the import wrote record by record it reads back (`grown`: whatever whole
 * records the file has, as the live indexer does). Segments are independent (each has its own reassembly
 * state), so two threads index two segments at once and write the same index files one thread would.
 */

export type ImportIndexCommand =
  /** The import created the segment and wrote its PCAP header (`header`). */
  | { type: 'open'; path: string; indexPath: string; header: Uint8Array }
  /**
   * Whole records for the segment at file offset `at`: `len` bytes at `srcAt` in the source file `src`, which
   * the import checked (copyable(), with `limit` and `subMax`). Checked again here: a file changed in between
   * fails the import rather than giving the segment records nobody checked.
   */
  | { type: 'copy'; path: string; src: string; srcAt: number; len: number; at: number; limit: number; subMax: number }
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
  /** [0]: segment bytes this thread has indexed (the pool gives a new segment to the thread with least left). */
  indexed: SharedArrayBuffer;
  opts: Omit<IndexerOptions, 'onMessage' | 'onRtcp'>;
}

interface Segment {
  ix: SegmentIndexer;
  fd: number;
  header: Buffer;
}

const { port, posted, indexed, opts } = workerData as ImportWorkerData;
const count = new Int32Array(posted);
const indexedBytes = new BigInt64Array(indexed);
const open = new Map<string, Segment>();
/** Bytes of the segments sealed or abandoned here. */
let closedBytes = 0;

function noteIndexed(): void {
  let n = closedBytes;
  for (const s of open.values()) n += s.ix.state.indexedBytes;
  Atomics.store(indexedBytes, 0, BigInt(n));
}
/** The runs' bytes (a run is at most the import's read chunk): reused, so that they stay in the cache. */
let runBuf = Buffer.alloc(0);
/** The source file being copied (the import reads its files one after the other). */
let source: { path: string; fd: number } | null = null;

function sourceFd(path: string): number {
  if (source?.path !== path) {
    if (source) closeSync(source.fd);
    source = { path, fd: openSync(path, 'r') };
  }
  return source.fd;
}

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
    if (source) closeSync(source.fd);
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
  // A segment whose error was reported already: the import throws it; later commands for it are moot.
  if (!s) return;
  if (c.type === 'copy') {
    if (runBuf.length < c.len) runBuf = Buffer.allocUnsafe(c.len);
    const bytes = runBuf.subarray(0, c.len);
    const fd = sourceFd(c.src);
    for (let n = 0; n < c.len; ) {
      const got = readSync(fd, bytes, n, c.len - n, c.srcAt + n);
      if (got === 0) throw new Error(`${c.src} is shorter than when it was read (changed while it was imported): import it again`);
      n += got;
    }
    if (!copyableRun(bytes, c.len, c.limit, c.subMax)) throw new Error(`${c.src} changed while it was imported (its records at ${c.srcAt} differ): import it again`);
    writeAll(s.fd, bytes, c.at);
    s.ix.indexWrittenRecords(s.header, bytes, c.at);
  } else if (c.type === 'grown') {
    s.ix.catchUp();
  } else if (c.type === 'seal') {
    end(c.path, s);
    s.ix.seal();
    closedBytes += s.ix.state.indexedBytes;
    report({ type: 'sealed', path: c.path });
  } else {
    end(c.path, s);
    s.ix.close();
    closedBytes += s.ix.state.indexedBytes;
    report({ type: 'abandoned', path: c.path });
  }
}

port.on('message', (c: ImportIndexCommand) => {
  try {
    run(c);
    noteIndexed();
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
