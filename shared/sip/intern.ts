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

  /**
   * `copy`: the values may be slices of larger text (as parseSdp's are) and
   * each new one is copied; without it they are kept as given.
   */
  constructor(
    private readonly capacity: number,
    private readonly copy: boolean,
  ) {}

  get(s: string): string {
    const v = this.map.get(s);
    if (v !== undefined) return v;
    if (this.map.size >= this.capacity) this.map.clear();
    // V8 copies slices shorter than 13 characters anyway; JSON's round trip
    // builds a new flat string that owns its characters.
    const own = !this.copy || s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string);
    this.map.set(own, own);
    return own;
  }
}
