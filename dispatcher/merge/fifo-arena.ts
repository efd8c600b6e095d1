/**
 * Where `len` bytes go in a FIFO arena of `size` bytes whose next free
 * byte is `head` and whose oldest live allocation starts at `tail` (-1 when
 * none is live), or -1 when they do not fit now. The caller then sets head
 * to the result + max(len, 1): an empty allocation still takes a byte, so
 * head never lands on the tail and a full arena is never taken for empty.
 */
export function arenaPlace(size: number, head: number, tail: number, len: number): number {
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
 * A buffer for an arena: small ones from Node's shared pool (a thousand inputs
 * of a few packets then make a few hundred allocations, not thousands),
 * others a buffer of their own, never a slice of a pool another holder
 * could keep alive.
 */
export function smallOrSlow(size: number): Buffer {
  return size < Buffer.poolSize >>> 1 ? Buffer.allocUnsafe(size) : Buffer.allocUnsafeSlow(size);
}

/**
 * What a FifoArena allocation is recorded in: the holder's own object (no
 * separate slot object per packet). `off` is -1 while it holds no arena bytes.
 */
export interface ArenaItem {
  off: number;
  len: number;
  freed: boolean;
}

/**
 * A buffer handed out first in, first out: allocations come from the head, space
 * comes back when the oldest allocation is freed (a newer one freed first
 * waits for it). Packets read ahead or remembered for a while live here
 * instead of in a fresh Buffer each: a merge of gigabytes then makes little
 * garbage of its own, which matters because Node collects external memory
 * lazily and its RSS would grow by tens of MiB.
 *
 * The buffer starts at `initialSize` and doubles, up to `maxSize`, when an
 * allocation does not fit: a merge of a thousand captures of a few packets
 * each then takes a few KiB per capture, not the megabytes a busy one needs.
 * Growing leaves the live allocations where they are: they leave the arena
 * (off becomes -1, as if never in it) and their holders' views keep the old
 * buffer alive until the last of them is dropped.
 */
export class FifoArena<T extends ArenaItem> {
  private bufRef: Buffer;
  readonly maxSize: number;
  private items: T[] = [];
  private first = 0;
  private head = 0;

  constructor(initialSize: number, maxSize = initialSize) {
    if (!(initialSize > 0 && maxSize >= initialSize)) throw new RangeError(`FifoArena: sizes ${initialSize}..${maxSize} must be 0 < initial <= max`);
    this.bufRef = smallOrSlow(initialSize);
    this.maxSize = maxSize;
  }

  /** The current buffer (replaced when the arena grows). */
  get buf(): Buffer {
    return this.bufRef;
  }

  /** Allocations not given back (including freed ones waiting behind an older one). */
  get size(): number {
    return this.items.length - this.first;
  }

  /** The oldest allocation not given back. */
  oldest(): T | undefined {
    return this.items[this.first];
  }

  /**
   * Records room for `item.len` bytes in item.off, growing the buffer if it
   * may; false when there is no room now (the buffer is at maxSize, or the
   * item is bigger than maxSize). Growing takes every live allocation out
   * of the arena (see the class comment), so their holders must not call
   * view() on them again.
   */
  alloc(item: T): boolean {
    if (this.place(item)) return true;
    const need = Math.max(item.len, 1);
    if (this.bufRef.length >= this.maxSize || need > this.maxSize) return false;
    let size = this.bufRef.length * 2;
    while (size < need) size *= 2;
    this.detachAll();
    this.bufRef = smallOrSlow(Math.min(size, this.maxSize));
    return this.place(item);
  }

  private place(item: T): boolean {
    const tail = this.items[this.first];
    const off = arenaPlace(this.bufRef.length, this.head, tail ? tail.off : -1, item.len);
    if (off < 0) return false;
    item.off = off;
    item.freed = false;
    this.items.push(item);
    this.head = off + Math.max(item.len, 1);
    return true;
  }

  private detachAll(): void {
    for (let i = this.first; i < this.items.length; i++) this.items[i].off = -1;
    this.items = [];
    this.first = 0;
    this.head = 0;
  }

  view(item: T): Buffer {
    return this.bufRef.subarray(item.off, item.off + item.len);
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
