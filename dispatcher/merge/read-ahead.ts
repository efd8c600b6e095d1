import type { ArenaItem } from './fifo-arena';
import { MinHeap } from '../../shared/heap/min-heap';

/** A packet read ahead; also what the writers take, so no object is made per write. */
export interface Held extends ArenaItem {
  tsSec: number;
  tsNsec: number;
  /** Position in its input, for stable ties. */
  seq: number;
  /** In the input's arena while off >= 0, else a private copy. */
  data: Buffer;
  origLen: number;
  linkType: number;
  nanos: boolean;
}

export const heldLess = (a: Held, b: Held) =>
  a.tsSec < b.tsSec || (a.tsSec === b.tsSec && (a.tsNsec < b.tsNsec || (a.tsNsec === b.tsNsec && a.seq < b.seq)));

/**
 * An input's read-ahead, earliest first. Captures are nearly always in
 * time order, so a packet no earlier than the last one in order is appended
 * to a FIFO run (O(1)); only a packet that goes back in time enters a heap.
 * A heap alone cost about twenty comparisons per packet at a full read-ahead.
 */
export class ReadAhead {
  private run: Held[] = [];
  private first = 0;
  private readonly late = new MinHeap<Held>(heldLess);

  get size(): number {
    return this.run.length - this.first + this.late.size;
  }

  push(h: Held): void {
    const r = this.run;
    if (r.length === this.first || !heldLess(h, r[r.length - 1])) r.push(h);
    else this.late.push(h);
  }

  peek(): Held | undefined {
    const a = this.run[this.first];
    const b = this.late.peek();
    if (a === undefined) return b;
    return b !== undefined && heldLess(b, a) ? b : a;
  }

  pop(): Held | undefined {
    const a = this.run[this.first];
    const b = this.late.peek();
    if (a === undefined || (b !== undefined && heldLess(b, a))) return this.late.pop();
    this.run[this.first++] = undefined as unknown as Held;
    if (this.first === this.run.length) {
      this.run.length = 0;
      this.first = 0;
    } else if (this.first >= 4096 && this.first * 2 >= this.run.length) {
      this.run = this.run.slice(this.first);
      this.first = 0;
    }
    return a;
  }

  *values(): Iterable<Held> {
    for (let i = this.first; i < this.run.length; i++) yield this.run[i];
    yield* this.late.values();
  }
}

