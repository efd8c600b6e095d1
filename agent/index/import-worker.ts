import { MessagePort, workerData } from 'node:worker_threads';
import { IndexerOptions, SegmentIndexer } from './builder';

/**
 * A thread of ring import's index pool (import-pool.ts): it indexes the segments the import writes, reading
 * each back as it grows (catchUp, as the live indexer does), and seals it once the import has closed it.
 * Segments are independent (each has its own reassembly state), so two threads index two segments at once
 * and write the same index files one thread would.
 */

export type ImportIndexCommand =
  | { type: 'open'; path: string; indexPath: string }
  /** More whole records are in the file: index them now rather than when it is closed. */
  | { type: 'grown'; path: string }
  /** The import wrote the segment's last byte and closed it. */
  | { type: 'seal'; path: string }
  /** The import failed: left unsealed, as the import leaves the segment it was writing. */
  | { type: 'abandon'; path: string }
  | { type: 'stop' };

export type ImportIndexReport =
  | { type: 'sealed'; path: string }
  | { type: 'abandoned'; path: string }
  | { type: 'error'; path: string; message: string };

export interface ImportWorkerData {
  port: MessagePort;
  /** [0]: reports posted, the import waits on it (Atomics.wait) while no thread is free; [1]: catch-ups done. */
  posted: SharedArrayBuffer;
  opts: Omit<IndexerOptions, 'onMessage' | 'onRtcp'>;
}

const { port, posted, opts } = workerData as ImportWorkerData;
const count = new Int32Array(posted);
const open = new Map<string, SegmentIndexer>();

function report(r: ImportIndexReport): void {
  port.postMessage(r);
  Atomics.add(count, 0, 1);
  Atomics.notify(count, 0);
}

function run(c: ImportIndexCommand): void {
  if (c.type === 'stop') {
    port.close();
    return;
  }
  if (c.type === 'open') {
    open.set(c.path, new SegmentIndexer(c.path, c.indexPath, { ...opts, journal: false }));
    return;
  }
  const ix = open.get(c.path);
  // A segment whose error was reported already: the import throws it; later commands for it are moot.
  if (!ix) return;
  if (c.type === 'grown') {
    ix.catchUp();
    Atomics.add(count, 1, 1);
  } else if (c.type === 'seal') {
    open.delete(c.path);
    ix.seal();
    report({ type: 'sealed', path: c.path });
  } else {
    open.delete(c.path);
    ix.close();
    report({ type: 'abandoned', path: c.path });
  }
}

port.on('message', (c: ImportIndexCommand) => {
  try {
    run(c);
  } catch (e) {
    const path = 'path' in c ? c.path : '';
    const ix = open.get(path);
    open.delete(path);
    try {
      ix?.close();
    } catch {
      // the error below is the one to report
    }
    report({ type: 'error', path, message: (e as Error).message });
  }
});
