import { existsSync } from 'node:fs';
import { IndexerOptions, SegmentIndexer } from './builder';
import { FollowBatch, FollowMatcher } from './follow-match';
import { FlowOverflow, addFlowOverflow } from './flows';
import { rebuildIndex } from './open';
import { SealedIndex } from './reader';
import { indexPathFor, listSegments } from '../ring/layout';

/**
 * Keeps the indexes of a ring that this process's capture writes: a
 * SegmentIndexer per open segment, fed as the capture reports flushed bytes,
 * sealed when the capture closes the segment. Runs in the indexer's own
 * worker thread (live-worker.ts, at nice +10); the capture runs in worker
 * threads of its own and never waits for it.
 */
export class LiveIndexer {
  private readonly open = new Map<string, SegmentIndexer>();
  private readonly pending = new Set<string>();
  /** The next catch-up: a timer, or (while someone follows) an immediate. */
  private timer: { t: NodeJS.Timeout } | { i: NodeJS.Immediate } | null = null;
  /** The `through` last posted to the follows, so an unchanged one is not posted again. */
  private postedThrough = 0;
  /** Segments sealed since the last progress(), with the bytes their index covers. */
  private sealedSince: Array<[string, number]> = [];
  errors = 0;
  lastError: string | null = null;
  /** The flow overflows of the segments sealed or deleted so far (flowOverflow() adds the open ones'). */
  private readonly flowsGone: FlowOverflow = { abandoned: 0, dropped: 0, folded: 0 };
  /** The live follows: matched against every message as it is indexed. */
  readonly follows = new FollowMatcher(() => this.open.values());
  private readonly opts: IndexerOptions;

  constructor(
    private readonly ringDir: string,
    opts: IndexerOptions & {
      catchUpMs?: number;
      onFollow?: (b: FollowBatch) => void;
      /** After each round of indexing (the worker reports progress). */
      onIndexed?: () => void;
    } = {},
  ) {
    const counted = opts.onMessage;
    this.opts = {
      ...opts,
      onMessage: (m, ix, bytes) => {
        counted?.(m, ix, bytes);
        this.follows.onMessage(m, ix);
      },
    };
    this.catchUpMs = opts.catchUpMs ?? 50;
    this.onFollow = opts.onFollow ?? null;
    this.onIndexed = opts.onIndexed ?? null;
  }

  private readonly catchUpMs: number;
  private readonly onFollow: ((b: FollowBatch) => void) | null;
  private readonly onIndexed: (() => void) | null;

  segmentOpened(path: string): void {
    this.open.set(path, new SegmentIndexer(path, indexPathFor(path), this.opts));
  }

  /**
   * Bytes reached the segment: index them soon, coalesced over catchUpMs;
   * while someone follows live, as soon as the messages already queued to
   * this thread are in (the capture tells of each write, so the tail is read
   * as it is written, and the rounds follow the data, not a timer).
   */
  flushed(path: string): void {
    this.pending.add(path);
    if (this.timer) return;
    this.timer = this.follows.size > 0 ? { i: setImmediate(() => this.drain()) } : { t: setTimeout(() => this.drain(), this.catchUpMs) };
  }

  private drain(): void {
    this.timer = null;
    for (const path of this.pending) this.guard(path, (ix) => ix.catchUp());
    this.pending.clear();
    this.postFollows();
    this.onIndexed?.();
  }

  /**
   * Capture time (ms) through which every open segment with packets is
   * indexed: its stream's packets up to then have all been matched. The
   * dispatcher releases a host's packets before its reorder window ends
   * once every host following is through their time.
   */
  private through(): number {
    let t = Infinity;
    for (const ix of this.open.values()) {
      const st = ix.state;
      if (st.packetCount > 0) t = Math.min(t, st.lastSec * 1000 + st.lastNsec / 1e6);
    }
    return Number.isFinite(t) ? t : 0;
  }

  private postFollows(): void {
    if (!this.onFollow || this.follows.size === 0) return;
    const through = this.through();
    const advanced = through > this.postedThrough;
    this.postedThrough = Math.max(this.postedThrough, through);
    for (const b of this.follows.batches(through, advanced)) this.onFollow(b);
  }

  /** Bytes of each segment indexed so far: the open ones, and those sealed since the last call (then forgotten). */
  progress(): Array<[string, number]> {
    const out: Array<[string, number]> = [...this.sealedSince];
    this.sealedSince = [];
    for (const [path, ix] of this.open) out.push([path, ix.state.indexedBytes]);
    return out;
  }

  /** What the flows of every segment indexed so far could not keep (agent/index/flows.ts). */
  flowOverflow(): FlowOverflow {
    const out = { ...this.flowsGone };
    for (const ix of this.open.values()) addFlowOverflow(out, ix.state.flows);
    return out;
  }

  segmentClosed(path: string): void {
    this.pending.delete(path);
    this.guard(path, (ix) => ix.seal());
    const ix = this.open.get(path);
    if (ix) {
      addFlowOverflow(this.flowsGone, ix.state.flows);
      this.sealedSince.push([path, ix.state.indexedBytes]);
      this.follows.forget(ix);
    }
    this.open.delete(path);
    this.postFollows();
    this.onIndexed?.();
  }

  segmentDeleted(path: string): void {
    const ix = this.open.get(path);
    if (ix) {
      addFlowOverflow(this.flowsGone, ix.state.flows);
      ix.close();
      this.follows.forget(ix);
    }
    this.open.delete(path);
    this.pending.delete(path);
  }

  private guard(path: string, fn: (ix: SegmentIndexer) => void): void {
    let ix = this.open.get(path);
    if (!ix && existsSync(path)) this.open.set(path, (ix = new SegmentIndexer(path, indexPathFor(path), this.opts)));
    if (!ix) return;
    try {
      fn(ix);
    } catch (e) {
      // An index that cannot be written is rebuilt later from its segment; capture goes on.
      this.errors++;
      this.lastError = `${path}: ${(e as Error).message}`;
    }
  }

  /** Indexes what is pending and seals every open segment (the capture has stopped). */
  stop(): void {
    if (this.timer && 't' in this.timer) clearTimeout(this.timer.t);
    else if (this.timer) clearImmediate(this.timer.i);
    this.timer = null;
    for (const path of [...this.open.keys()]) this.segmentClosed(path);
  }
}

/** Seals or rebuilds every segment of a ring left without a sound index (a previous run's, or a crash's). Call before capture starts. */
export function repairRing(ringDir: string, opts: IndexerOptions = {}): string[] {
  const notes: string[] = [];
  for (const seg of listSegments(ringDir)) {
    if (seg.bytes < 24) continue;
    let ok = false;
    try {
      const s = SealedIndex.open(seg.indexPath);
      ok = !!s && s.indexedBytes === seg.bytes;
      s?.close();
    } catch {
      ok = false;
    }
    if (!ok) {
      try {
        rebuildIndex(seg, opts).close();
        notes.push(`rebuilt ${seg.indexPath}`);
      } catch (e) {
        notes.push(`could not rebuild ${seg.indexPath}: ${(e as Error).message}`);
      }
    }
  }
  return notes;
}
