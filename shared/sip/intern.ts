/**
 * Bounded interning for short values that repeat across SIP messages and are
 * kept in index records (SDP media addresses, codec names): one shared string
 * instead of one per message, and never a slice of the text it was cut from.
 * V8 keeps the whole parent of a sliced string alive, so a codec name sliced
 * out of an SDP body pinned the body for as long as the record lived
 * (measured: 844 bytes retained per indexed message, 715 without this).
 * Hostile input can present endless distinct values: a full table starts afresh.
 */
export class Interner {
  private readonly map = new Map<string, string>();

  constructor(private readonly capacity: number) {}

  get(s: string): string {
    const v = this.map.get(s);
    if (v !== undefined) return v;
    if (this.map.size >= this.capacity) this.map.clear();
    // V8 copies slices shorter than 13 characters anyway; JSON's round trip
    // builds a new flat string that owns its characters.
    const own = s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
    this.map.set(own, own);
    return own;
  }
}

type Latin1Sliced = { latin1Slice(start: number, end: number): string };

/** bytes[s, e) as latin1: Buffer's own slice, without toString's argument handling. */
export function latin1(bytes: Buffer, s: number, e: number): string {
  return (bytes as unknown as Latin1Sliced).latin1Slice(s, e);
}

/** The largest buffer whose view ByteInterner keeps between calls. */
const VIEW_KEEP_MAX = 16 * 1024 * 1024;

/** Values longer than this are made afresh each time: a slot never holds more than it. */
const BYTE_INTERN_MAX_LEN = 64;

/**
 * Strings of bytes that repeat message after message (a dialog's Call-ID,
 * users and CSeq, methods, reasons), made once and then found again from the
 * bytes: a direct-mapped table of `slots` strings, each slot with a copy of
 * its string's bytes that the bytes asked for are compared with, so a
 * collision or an evicted value costs only a fresh string, never a wrong
 * one. Making a string through Buffer's binding costs a call into C++, its
 * argument checks and an allocation (about 480 instructions a value,
 * callgrind); the strings found again are the same objects, so V8's cached
 * hash serves the Map lookups that follow (the dialog of a Call-ID, the
 * statistics' dialogs) and the collector has fewer young strings to
 * scavenge. Compared with the string's own characters (charCodeAt) rather
 * than a byte copy, the loop cost as much as the binding saved (callgrind).
 * Memory is bounded: slots × 64 bytes (a cache line a slot), and the slots' strings; longer values are
 * made afresh each time.
 */
export class ByteInterner {
  private readonly texts: Array<string | undefined>;
  private readonly lens: Uint8Array;
  private readonly store: DataView;
  private readonly mask: number;
  /** A view of the bytes last asked about (a read chunk serves many values): words read through it are inlined. */
  private viewOf: Uint8Array | null = null;
  private view: DataView = new DataView(new ArrayBuffer(0));

  constructor(slots: number) {
    if (!(slots > 0 && (slots & (slots - 1)) === 0)) throw new RangeError('slots must be a power of two');
    this.texts = new Array<string | undefined>(slots).fill(undefined);
    this.lens = new Uint8Array(slots);
    this.store = new DataView(new ArrayBuffer(slots * BYTE_INTERN_MAX_LEN));
    this.mask = slots - 1;
  }

  /** bytes[s, e) as latin1 (the string `bytes.latin1Slice(s, e)` gives). */
  get(bytes: Uint8Array, s: number, e: number): string {
    const n = e - s;
    if (n > BYTE_INTERN_MAX_LEN || n < 4) return n < 4 ? this.short(bytes, s, n) : latin1(bytes as Buffer, s, e);
    let v = this.view;
    if (bytes !== this.viewOf) {
      v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      // Kept for the next call only over a buffer of at most 16 MiB (the indexer's 4 MiB and 8 MiB reads):
      // the table outlives the buffers it is asked about, and would hold the last one alive.
      if (bytes.buffer.byteLength <= VIEW_KEEP_MAX) {
        this.view = v;
        this.viewOf = bytes;
      }
    }
    // Where to look: the length and the first and last 4 bytes (a Call-ID's random part and host, a
    // number's last digits); equality is checked below, a word at a time.
    const first = v.getInt32(s, true);
    const last = v.getInt32(e - 4, true);
    let h = Math.imul(0x811c9dc5 ^ n, 0x01000193);
    h = Math.imul(h ^ first, 0x01000193);
    h = Math.imul(h ^ last, 0x01000193);
    const slot = (h ^ (h >>> 15)) & this.mask;
    const store = this.store;
    const base = slot * BYTE_INTERN_MAX_LEN;
    if (this.lens[slot] === n && store.getInt32(base + n - 4, true) === last) {
      let i = 0;
      while (i < n - 4 && store.getInt32(base + i, true) === v.getInt32(s + i, true)) i += 4;
      if (i >= n - 4) return this.texts[slot]!;
    }
    const made = latin1(bytes as Buffer, s, e);
    for (let i = 0; i < n; i++) store.setUint8(base + i, bytes[s + i]);
    this.lens[slot] = n;
    this.texts[slot] = made;
    return made;
  }

  /** get() for 0 to 3 bytes (ACK, BYE, OK): the bytes are the key, in slots of their own kind (length below 4). */
  private short(bytes: Uint8Array, s: number, n: number): string {
    if (n === 0) return '';
    const key = bytes[s] | (n > 1 ? bytes[s + 1] << 8 : 0) | (n > 2 ? bytes[s + 2] << 16 : 0);
    let h = Math.imul(0x811c9dc5 ^ n, 0x01000193);
    h = Math.imul(h ^ key, 0x01000193);
    const slot = (h ^ (h >>> 15)) & this.mask;
    const base = slot * BYTE_INTERN_MAX_LEN;
    if (this.lens[slot] === n && (this.store.getUint32(base, true) & 0xffffff) === key) return this.texts[slot]!;
    const made = latin1(bytes as Buffer, s, s + n);
    this.store.setUint32(base, key, true);
    this.lens[slot] = n;
    this.texts[slot] = made;
    return made;
  }
}

/**
 * The one ByteInterner a thread for the index records' values (the indexer's decoded strings, the binary
 * records' strings read back): 8,192 slots, 512 KiB of bytes.
 */
export const byteTexts = new ByteInterner(8192);
