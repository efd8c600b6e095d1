import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { LiveIndexer } from './live';
import type { FollowBatch } from './follow-match';
import { buildQuerySpec, type TraceQuery } from '../../shared/query/query';

/**
 * The live indexer's thread. On Linux a nice value belongs to a thread, so
 * raising this one's leaves the capture threads ahead of it when CPU is
 * short: indexing may lag, capture must not drop.
 */
export type IndexerCommand =
  | { type: 'opened' | 'flushed' | 'closed' | 'deleted'; path: string }
  | { type: 'follow'; id: string; query: TraceQuery }
  | { type: 'unfollow'; id: string }
  | { type: 'stop' };

export type IndexerReport =
  | { type: 'status'; errors: number; lastError: string | null }
  | { type: 'stopped' }
  | FollowBatch;

export interface IndexerWorkerData {
  ringDir: string;
  correlationHeader?: string;
  nice: number;
}

if (parentPort) {
  const port = parentPort;
  const cfg = workerData as IndexerWorkerData;
  try {
    setPriority(0, cfg.nice);
  } catch {
    // Not permitted or not supported: index at normal priority.
  }
  const ix = new LiveIndexer(cfg.ringDir, { correlationHeader: cfg.correlationHeader, onFollow: (b) => port.postMessage(b satisfies IndexerReport) });
  let lastErrors = 0;
  port.on('message', (m: IndexerCommand) => {
    switch (m.type) {
      case 'opened': ix.segmentOpened(m.path); break;
      case 'flushed': ix.flushed(m.path); break;
      case 'closed': ix.segmentClosed(m.path); break;
      case 'deleted': ix.segmentDeleted(m.path); break;
      // The query was checked by the agent's main thread before it came here.
      case 'follow': ix.follows.add(m.id, buildQuerySpec(m.query)); break;
      case 'unfollow': ix.follows.remove(m.id); break;
      case 'stop':
        ix.stop();
        port.postMessage({ type: 'status', errors: ix.errors, lastError: ix.lastError } satisfies IndexerReport);
        port.postMessage({ type: 'stopped' } satisfies IndexerReport);
        port.close();
        return;
    }
    if (ix.errors !== lastErrors) {
      lastErrors = ix.errors;
      port.postMessage({ type: 'status', errors: ix.errors, lastError: ix.lastError } satisfies IndexerReport);
    }
  });
}
