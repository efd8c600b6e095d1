import type { NewResult, TraceStore } from '../store/store';

/** Host PCAPs up to this size go to the store inline, in a batch (bounded: at most BATCH_BYTES in memory). */
export const INLINE_MAX = 256 * 1024;
const BATCH_ITEMS = 200;
const BATCH_BYTES = 8 * 1024 * 1024;
const BATCH_WAIT_MS = 20;

/**
 * Final results of many hosts gathered and written in two requests
 * (store.writeResults): a fleet-wide trace finishes a thousand hosts within
 * a second, and a request or four per host swamps the store. While a batch
 * is being written the next one gathers for BATCH_WAIT_MS; a result that
 * finds the store idle goes at once (with whatever came in the same turn),
 * since waiting for company that is not coming was most of a one-host
 * trace's store time (bench/ttfp).
 */
export class ResultBatch {
  private queue: Array<{ result: NewResult; read: (() => Promise<Buffer>) | null; rev?: string; resolve: () => void; reject: (e: Error) => void; conflicts?: number }> = [];
  private timer: NodeJS.Timeout | null = null;
  /** Batches being read or written now. */
  private flushing = 0;

  constructor(private readonly store: TraceStore) {}

  /** `rev`: the document's revision when the caller knows it (see store.writeResults). */
  write(result: NewResult, read: (() => Promise<Buffer>) | null, rev?: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ result, read, rev, resolve, reject });
      this.timer ??= setTimeout(() => void this.flush(), this.flushing > 0 ? BATCH_WAIT_MS : 0);
    });
  }

  private async flush(): Promise<void> {
    this.flushing++;
    try {
      await this.flushOnce();
    } finally {
      this.flushing--;
    }
  }

  private async flushOnce(): Promise<void> {
    this.timer = null;
    const items: typeof this.queue = [];
    const pcaps: Array<Buffer | undefined> = [];
    let bytes = 0;
    while (this.queue.length && items.length < BATCH_ITEMS && bytes < BATCH_BYTES) {
      const it = this.queue.shift()!;
      try {
        const pcap = it.read ? await it.read() : undefined;
        bytes += pcap?.length ?? 0;
        items.push(it);
        pcaps.push(pcap);
      } catch (e) {
        it.reject(e as Error);
      }
    }
    if (this.queue.length) this.timer ??= setTimeout(() => void this.flush(), 0);
    if (!items.length) return;
    try {
      const errors = await this.store.writeResults(items.map((it, n) => ({ result: it.result, pcap: pcaps[n], rev: it.rev })));
      errors.forEach((err, n) => {
        const it = items[n];
        // A conflict is the doc's creation racing this write (or a peer's update): read its revision again, soon.
        if (err?.statusCode === 409 && (it.conflicts = (it.conflicts ?? 0) + 1) <= 5) {
          it.rev = undefined;
          this.queue.push(it);
          this.timer ??= setTimeout(() => void this.flush(), BATCH_WAIT_MS);
        } else if (err) it.reject(err);
        else it.resolve();
      });
    } catch (e) {
      for (const it of items) it.reject(e as Error);
    }
  }
}
