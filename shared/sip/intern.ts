/**
 * Bounded interning for short values that repeat across SIP messages and are
 * kept in index records (codec names, media addresses, methods): one shared
 * string instead of one per message. It also cuts the tie of a kept value to
 * the text it was cut from: V8 keeps the whole parent of a sliced string
 * alive, so a codec name sliced out of an SDP body pinned the body (measured:
 * the indexer retained about 840 bytes per message, most of it such text).
 * Hostile input can present endless distinct values: a full table starts afresh.
 */
export class Interner {
  private readonly map = new Map<string, string>();

  constructor(private readonly capacity: number) {}

  get(s: string): string {
    const v = this.map.get(s);
    if (v !== undefined) return v;
    if (this.map.size >= this.capacity) this.map.clear();
    // join() builds a new flat string: the copy kept owns its characters.
    const own = s.length < 13 ? s : s.split('').join('');
    this.map.set(own, own);
    return own;
  }
}
