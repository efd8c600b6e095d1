import { SegmentWriter } from '../ring/writer';
import { enforceBudget } from '../ring/budget';
import type { WorkerConfig, WorkerMessage } from './worker';

/**
 * A stream's ring segments as a worker thread writes them (a capture or the
 * HEP listener): the engine hears of each segment opened and closed, each
 * new flushed size (once per size), and the segments the budget deleted at
 * a rotation.
 */
export class StreamSegments {
  readonly writer: SegmentWriter;
  /** When the last 'flushed' was posted (ms). */
  lastFlushedAt = 0;
  private lastPath = '';
  private lastBytes = -1;
  private readonly stream: string;

  constructor(
    cfg: Pick<WorkerConfig, 'ringDir' | 'stream' | 'maxSegmentBytes' | 'maxSegmentSeconds' | 'budget'> & { linkType: number; nanos: boolean; snaplen: number },
    private readonly post: (m: WorkerMessage) => void,
  ) {
    const { ringDir, stream, budget } = cfg;
    this.writer = new SegmentWriter({
      ringDir,
      stream,
      linkType: cfg.linkType,
      nanos: cfg.nanos,
      snaplen: cfg.snaplen,
      maxSegmentBytes: cfg.maxSegmentBytes,
      maxSegmentSeconds: cfg.maxSegmentSeconds,
      onOpen: (s) => post({ type: 'segment-open', stream, path: s.path, linkType: s.linkType, nanos: s.nanos }),
      onClose: (s) => {
        // Readers tail a segment up to the last 'flushed'; make sure they
        // have its final size before they hear it is closed.
        this.flushed(s.path, s.bytes);
        post({ type: 'segment-closed', stream, path: s.path, bytes: s.bytes });
        if (!budget) return;
        try {
          const deleted = enforceBudget(ringDir, { maxBytes: budget.maxBytes, minFreeBytes: budget.minFreeBytes, keep: new Set(), keepNewestOf: budget.streams });
          for (const path of deleted) post({ type: 'segment-deleted', stream, path });
        } catch (e) {
          // The engine's own budget runs will try again; capture goes on.
          post({ type: 'error', stream, message: `ring budget: ${(e as Error).message}`, fatal: false });
        }
      },
    });
    this.stream = stream;
  }

  /** Tells the engine how far a segment is written, unless it heard that size already. */
  flushed(path: string, bytes: number): void {
    if (path === this.lastPath && bytes === this.lastBytes) return;
    this.lastPath = path;
    this.lastBytes = bytes;
    this.lastFlushedAt = Date.now();
    this.post({ type: 'flushed', stream: this.stream, path, bytes });
  }

  /**
   * Tells the current segment's size when the last 'flushed' is `everyMs`
   * old (at once when 0); false when there is a segment whose size waits.
   */
  flushCurrent(everyMs: number, now = Date.now()): boolean {
    const cur = this.writer.current;
    if (!cur) return true;
    if (now - this.lastFlushedAt < everyMs) return false;
    this.flushed(cur.path, cur.bytes);
    return true;
  }
}
