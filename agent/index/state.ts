import { DialogRecord, PACKET_ENTRY_LEN } from './format';
import type { FlowTableBuilder } from './flows';
import { MessageArena } from './message-arena';
import { objectArray } from './object-array';

/**
 * The index of one segment held in memory: what the indexer has built so far
 * (and journals), or what a reader rebuilt by replaying a journal. Sealing
 * and queries over unsealed segments both work from this.
 */
export class IndexState {
  private entries = entryBuffer(PACKET_ENTRY_LEN * 4096);
  /** entries as 32-bit words (an entry is 7 of them): addPacket's stores, one each rather than writeUInt32LE's checks. */
  private words = wordsOf(this.entries);
  packetCount = 0;
  readonly addresses: string[] = objectArray();
  private readonly addressIds = new Map<string, number>();
  /** The SIP message records, binary, off the heap (decoded when asked for). */
  readonly messages = new MessageArena();
  /** Segment bytes (from the start of the file) fully indexed. */
  indexedBytes = 0;
  firstSec = 0;
  firstNsec = 0;
  lastSec = 0;
  lastNsec = 0;
  /**
   * The segment's non-SIP UDP flows (agent/index/flows.ts) as far as they are known: null when
   * the journal replayed carried none (written before flows were journaled) or they were abandoned.
   */
  flows: FlowTableBuilder | null = null;

  addressId(addr: string): number {
    let id = this.addressIds.get(addr);
    if (id === undefined) {
      id = this.addresses.length;
      this.addresses.push(addr);
      this.addressIds.set(addr, id);
    }
    return id;
  }

  addPacket(offset: number, tsSec: number, tsNsec: number, src: number, dst: number, sport: number, dport: number, proto: number, flags: number, capLen: number): number {
    const ord = this.packetCount;
    let pos = ord * PACKET_ENTRY_LEN;
    if (pos + PACKET_ENTRY_LEN > this.entries.length) this.setEntries(this.entries.length * 2, pos);
    if (LITTLE_ENDIAN) {
      // writeUInt32LE refused what does not fit; of these only a segment offset could (the rest are read as u32 or u16).
      if (!(offset >= 0 && offset <= 0xffffffff)) throw new RangeError(`packet offset ${offset} does not fit the index's 32 bits`);
      const w = this.words;
      const k = pos >>> 2;
      w[k] = offset;
      w[k + 1] = tsSec;
      w[k + 2] = tsNsec;
      w[k + 3] = src;
      w[k + 4] = dst;
      w[k + 5] = (sport & 0xffff) | ((dport & 0xffff) << 16);
      w[k + 6] = (proto & 0xff) | ((flags & 0xff) << 8) | ((capLen > 0xffff ? 0 : capLen) << 16);
    } else {
      const e = this.entries;
      e.writeUInt32LE(offset, pos);
      e.writeUInt32LE(tsSec, pos + 4);
      e.writeUInt32LE(tsNsec, pos + 8);
      e.writeUInt32LE(src, pos + 12);
      e.writeUInt32LE(dst, pos + 16);
      e.writeUInt16LE(sport, pos + 20);
      e.writeUInt16LE(dport, pos + 22);
      e[pos + 24] = proto;
      e[pos + 25] = flags;
      e.writeUInt16LE(capLen > 0xffff ? 0 : capLen, pos + 26);
    }
    pos += PACKET_ENTRY_LEN;
    if (ord === 0) {
      this.firstSec = tsSec;
      this.firstNsec = tsNsec;
    }
    if (tsSec > this.lastSec || (tsSec === this.lastSec && tsNsec > this.lastNsec)) {
      this.lastSec = tsSec;
      this.lastNsec = tsNsec;
    }
    this.packetCount++;
    return ord;
  }

  /** Room for `packets` entries in all (journal replay, which knows how many it will add). */
  reserve(packets: number): void {
    if (packets * PACKET_ENTRY_LEN <= this.entries.length) return;
    this.setEntries(packets * PACKET_ENTRY_LEN, this.packetCount * PACKET_ENTRY_LEN);
  }

  /** Entries in a new buffer of `bytes`, the first `keep` bytes copied. */
  private setEntries(bytes: number, keep: number): void {
    const bigger = entryBuffer(bytes);
    this.entries.copy(bigger, 0, 0, keep);
    this.entries = bigger;
    this.words = wordsOf(bigger);
  }

  /** Appends whole packet entries (journal replay): copied as they are, only their times read. */
  addPacketEntries(buf: Buffer): void {
    const n = Math.floor(buf.length / PACKET_ENTRY_LEN);
    if (n === 0) return;
    const need = (this.packetCount + n) * PACKET_ENTRY_LEN;
    if (need > this.entries.length) {
      let size = this.entries.length * 2;
      while (size < need) size *= 2;
      this.setEntries(size, this.packetCount * PACKET_ENTRY_LEN);
    }
    buf.copy(this.entries, this.packetCount * PACKET_ENTRY_LEN, 0, n * PACKET_ENTRY_LEN);
    if (this.packetCount === 0) {
      this.firstSec = buf.readUInt32LE(4);
      this.firstNsec = buf.readUInt32LE(8);
    }
    let lastSec = this.lastSec;
    let lastNsec = this.lastNsec;
    for (let p = 4; p < n * PACKET_ENTRY_LEN; p += PACKET_ENTRY_LEN) {
      const sec = buf.readUInt32LE(p);
      if (sec < lastSec) continue;
      const nsec = buf.readUInt32LE(p + 4);
      if (sec > lastSec || nsec > lastNsec) {
        lastSec = sec;
        lastNsec = nsec;
      }
    }
    this.lastSec = lastSec;
    this.lastNsec = lastNsec;
    this.packetCount += n;
  }

  /** Entries [from, to) as a view. */
  packetEntries(from = 0, to = this.packetCount): Buffer {
    return this.entries.subarray(from * PACKET_ENTRY_LEN, to * PACKET_ENTRY_LEN);
  }

  /** Messages grouped by Call-ID, in first-seen order. */
  dialogs(): DialogRecord[] {
    const byId = new Map<string, DialogRecord>();
    for (let i = 0; i < this.messages.count; i++) {
      const m = this.messages.message(i);
      let d = byId.get(m.c);
      if (!d) {
        d = { c: m.c, msgs: [] };
        byId.set(m.c, d);
      }
      d.msgs.push(m);
    }
    return [...byId.values()];
  }
}

/** Zeroed, on an ArrayBuffer of its own (never the pool's), so that its words are aligned. */
function entryBuffer(bytes: number): Buffer {
  return Buffer.from(new ArrayBuffer(bytes));
}

function wordsOf(b: Buffer): Uint32Array {
  return new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2);
}

/** addPacket's word stores are the entry's little-endian layout only on a little-endian host. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
