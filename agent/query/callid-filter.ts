/**
 * A Bloom filter of Call-IDs: a fixed number of bits, however many are
 * added. "No" is certain; "maybe" may be wrong (rarely, at the sizes the
 * engine picks), so the engine checks a maybe against the indexes before
 * acting on it. The hash is seeded per filter at random: Call-IDs are chosen
 * by whoever sends the packets, and must not be able to aim at the maybes.
 */
export class CallIdFilter {
  private readonly bits: Uint32Array;
  private readonly mask: number;
  private readonly seeds: Uint32Array;

  /** `bits`: a power of two, 2^5 to 2^31. */
  constructor(bits: number) {
    if (!Number.isInteger(Math.log2(bits)) || bits < 32 || bits > 2 ** 31) throw new RangeError(`CallIdFilter: ${bits} bits is not a power of two from 32 to 2^31`);
    this.bits = new Uint32Array(bits / 32);
    this.mask = bits - 1;
    // node:crypto only here (broad queries): a Call-ID query loading it at start-up was 3-4 ms of a 110 ms process.
    this.seeds = new Uint32Array((require('node:crypto') as typeof import('node:crypto')).randomBytes(8).buffer);
  }

  /**
   * Bits for a ring of `messages` SIP messages: 4 a message, so about 24 a
   * dialog of 6 (a maybe in about 2,000 for a Call-ID not added, with 4
   * probes), within [2^20, 2^26] (128 KiB to 8 MiB). Past 2^26 bits (some
   * 16 M messages) the maybes grow more common: each costs lookups, never a
   * wrong answer.
   */
  static bitsFor(messages: number): number {
    return 2 ** Math.min(26, Math.max(20, Math.ceil(Math.log2(Math.max(1, messages) * 4))));
  }

  add(c: string): void {
    this.probe(c, true);
  }

  mayHave(c: string): boolean {
    return this.probe(c, false);
  }

  /** Four probes by double hashing of two seeded FNV-1a hashes over the UTF-16 code units. */
  private probe(c: string, set: boolean): boolean {
    let h1 = this.seeds[0] ^ 0x811c9dc5;
    let h2 = this.seeds[1] ^ 0x01000193;
    for (let i = 0; i < c.length; i++) {
      const u = c.charCodeAt(i);
      h1 = Math.imul(h1 ^ u, 0x01000193);
      h2 = Math.imul(h2 ^ u, 0x5bd1e995);
    }
    h2 = (h2 ^ (h2 >>> 15)) | 1;
    let all = true;
    for (let k = 0; k < 4; k++) {
      const bit = (h1 + Math.imul(k, h2)) & this.mask;
      const w = bit >>> 5;
      const b = 1 << (bit & 31);
      if (set) this.bits[w] |= b;
      else if ((this.bits[w] & b) === 0) {
        all = false;
        break;
      }
    }
    return all;
  }
}
