/**
 * Where `len` bytes go in a ring buffer of `size` bytes whose next free
 * byte is `head` and whose oldest live allocation starts at `tail` (-1 when
 * none is live), or -1 when they do not fit now. The caller then sets head
 * to the result + max(len, 1): an empty allocation still takes a byte, so
 * head never lands on the tail and a full ring is never taken for empty.
 */
export function ringPlace(size: number, head: number, tail: number, len: number): number {
  const need = Math.max(len, 1);
  if (tail < 0) return need > size ? -1 : 0;
  if (head > tail) {
    // Used region [tail, head): room at the end, else from 0 up to (not onto) the tail.
    if (size - head >= need) return head;
    return tail > need ? 0 : -1;
  }
  // Wrapped: room in [head, tail), never all of it.
  return tail - head > need ? head : -1;
}

/**
 * What a ByteRing allocation is recorded in: the holder's own object (no
 * separate slot object per packet). `off` is -1 while it holds no ring bytes.
 */
export interface RingItem {
  off: number;
  len: number;
  freed: boolean;
}

/**
 * A fixed buffer handed out as a ring: allocations come from the head,
 * space comes back when the oldest allocation is freed (a newer one freed
 * first waits for it). Packets read ahead or remembered for a while live
 * here instead of in a fresh Buffer each: a merge of gigabytes then makes
 * little garbage of its own, which matters because Node collects external
 * memory lazily and its RSS would grow by tens of MiB.
 */
export class ByteRing<T extends RingItem> {
  readonly buf: Buffer;
  private items: T[] = [];
  private first = 0;
  private head = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }

  /** Allocations not given back (including freed ones waiting behind an older one). */
  get size(): number {
    return this.items.length - this.first;
  }

  /** The oldest allocation not given back. */
  oldest(): T | undefined {
    return this.items[this.first];
  }

  /** Records room for `item.len` bytes in item.off; false when there is none now. */
  alloc(item: T): boolean {
    const tail = this.items[this.first];
    const off = ringPlace(this.buf.length, this.head, tail ? tail.off : -1, item.len);
    if (off < 0) return false;
    item.off = off;
    item.freed = false;
    this.items.push(item);
    this.head = off + Math.max(item.len, 1);
    return true;
  }

  view(item: T): Buffer {
    return this.buf.subarray(item.off, item.off + item.len);
  }

  /** Gives the bytes back; the space is reused once every older allocation is given back too. */
  free(item: T): void {
    item.freed = true;
    item.off = -1;
    const a = this.items;
    while (this.first < a.length && a[this.first].freed) a[this.first++] = undefined as unknown as T;
    if (this.first === a.length) {
      a.length = 0;
      this.first = 0;
      this.head = 0;
    } else if (this.first > 1024 && this.first * 2 > a.length) {
      this.items = a.slice(this.first);
      this.first = 0;
    }
  }
}
