import { deflateRawSync } from 'node:zlib';
import { RECORD_PREFIX_LEN, REC, MessageRecord } from './format';
import type { IndexAddon } from './native-scan';
import { binaryRecordBound, binaryRecordCallId, readBinaryRecord, writeBinaryRecord } from './message-binary';
import { objectArray } from './object-array';

const CHUNK = 1 << 20;
/** An arena's current chunk once released: room() refuses it. */
const RELEASED = Buffer.alloc(0);

/**
 * The message records of a segment (being indexed, or replayed from its
 * journal), each stored once as its journal record (prefix and binary
 * record, message-binary.ts), off the V8 heap until the seal: the journal
 * writes them from here and seal() copies them into the dialog blocks.
 * Kept as objects (or their JSON as strings, before) they were most of what
 * the collector copied and promoted; a record is decoded only when asked for.
 *
 * Records are laid out back to back in 1 MiB chunks, so the records of a
 * flush are a few contiguous views (more when a batch's records written in
 * place and records added one by one alternate: see batchRoom).
 */
export class MessageArena {
  private chunks: Buffer[] = objectArray();
  private cur: Buffer = Buffer.allocUnsafe(0);
  private used = 0;
  /** Per record: its chunk, its offset in the chunk, its record length (prefix included). */
  private chunkOf: Uint32Array = new Uint32Array(1024);
  private startOf: Uint32Array = new Uint32Array(1024);
  private lenOf: Uint32Array = new Uint32Array(1024);
  count = 0;

  private room(bound: number): void {
    if (this.cur === RELEASED) throw new Error('message records released (sealed)');
    if (this.used + bound > this.cur.length) {
      this.cur = Buffer.allocUnsafe(Math.max(CHUNK, bound));
      this.chunks.push(this.cur);
      this.used = 0;
    }
  }

  private added(len: number): void {
    this.place(this.chunks.length - 1, this.used, len);
    this.used += len;
  }

  private place(chunk: number, start: number, len: number): void {
    const i = this.count;
    if (i === this.chunkOf.length) {
      this.chunkOf = grow(this.chunkOf);
      this.startOf = grow(this.startOf);
      this.lenOf = grow(this.lenOf);
    }
    this.chunkOf[i] = chunk;
    this.startOf[i] = start;
    this.lenOf[i] = len;
    this.count++;
  }

  /**
   * Where a batch may write journal records in place (the native scan's): the current chunk from its first
   * free byte, at least `min` bytes. batchWritten() then keeps what it wrote there; records added after it
   * go after those bytes, so records need not lie in their order (records() joins only adjacent ones).
   */
  batchRoom(min: number): Buffer {
    this.room(min);
    return this.cur.subarray(this.used);
  }

  /** The batch wrote `bytes` bytes at the start of batchRoom()'s buffer: kept; returns their chunk offset (addInPlace). */
  batchWritten(bytes: number): number {
    const start = this.used;
    this.used += bytes;
    return start;
  }

  /** The current chunk's number (addInPlace). */
  get chunkIndex(): number {
    return this.chunks.length - 1;
  }

  /** Appends the journal record a batch wrote at chunk `chunk`, offset `start` (batchWritten's bytes). */
  addInPlace(chunk: number, start: number, len: number): void {
    this.place(chunk, start, len);
  }

  /** Appends the journal record of one message. */
  add(m: MessageRecord): void {
    this.room(RECORD_PREFIX_LEN + binaryRecordBound(m));
    const end = writeBinaryRecord(m, this.cur, this.used + RECORD_PREFIX_LEN);
    this.prefix(end - this.used);
  }

  /** Appends a journal record (prefix and binary record) written elsewhere: buf[start, start + len) (the native scan's). */
  addRecord(buf: Buffer, start: number, len: number): void {
    this.room(len);
    buf.copy(this.cur, this.used, start, start + len);
    this.added(len);
  }

  /** Appends a binary record as read from a journal (its caller has checked that it decodes). */
  addRaw(body: Buffer): void {
    this.room(RECORD_PREFIX_LEN + body.length);
    body.copy(this.cur, this.used + RECORD_PREFIX_LEN);
    this.prefix(RECORD_PREFIX_LEN + body.length);
  }

  private prefix(len: number): void {
    this.cur.writeUInt32LE(len - 4, this.used);
    this.cur[this.used + 4] = REC.MESSAGE_BIN;
    this.added(len);
  }

  /** Length of record i's binary record in bytes. */
  recordLength(i: number): number {
    return this.lenOf[i] - RECORD_PREFIX_LEN;
  }

  /** Copies record i's binary record into `out` at `at`; returns the offset after it. */
  copyRecord(i: number, out: Buffer, at: number): number {
    const start = this.startOf[i] + RECORD_PREFIX_LEN;
    return at + this.chunks[this.chunkOf[i]].copy(out, at, start, this.startOf[i] + this.lenOf[i]);
  }

  /** Record i, decoded. */
  message(i: number): MessageRecord {
    const start = this.startOf[i];
    return readBinaryRecord(this.chunks[this.chunkOf[i]], start + RECORD_PREFIX_LEN, start + this.lenOf[i]);
  }

  /** Record i's Call-ID, without decoding the rest. */
  callId(i: number): string {
    const start = this.startOf[i];
    return binaryRecordCallId(this.chunks[this.chunkOf[i]], start + RECORD_PREFIX_LEN, start + this.lenOf[i]);
  }

  /** Records [from, to) as views, contiguous runs joined (for a writev). */
  records(from: number, to: number): Buffer[] {
    const out: Buffer[] = [];
    let i = from;
    while (i < to) {
      const c = this.chunkOf[i];
      const start = this.startOf[i];
      let end = start + this.lenOf[i];
      i++;
      while (i < to && this.chunkOf[i] === c && this.startOf[i] === end) end = this.startOf[i] + this.lenOf[i++];
      out.push(this.chunks[c].subarray(start, end));
    }
    return out;
  }

  /**
   * The DIALOGS section's body (format.ts), as parts to write one after the other: the table (u32 dialogs, u32
   * blocks, u32 offsets of each block and of the end) then the blocks, each of `perBlock` dialogs (dialog d's
   * messages are order[ends[d - 1], ends[d]): DialogKeys.dialogMessages), each dialog u32 its message count, then
   * per message u32 its binary record's length and the record, raw-deflated. With the addon, assembled and
   * deflated there from the chunks (libdeflate where it was built with it); without, here and by node:zlib.
   */
  dialogSection(order: Uint32Array, ends: Uint32Array, perBlock: number, addon: IndexAddon | null): Buffer[] {
    const nBlocks = Math.ceil(ends.length / perBlock);
    const table = Buffer.alloc(8 + 4 * (nBlocks + 1));
    table.writeUInt32LE(ends.length, 0);
    table.writeUInt32LE(nBlocks, 4);
    table.writeUInt32LE(table.length, 8);
    if (addon !== null) {
      const blockEnds = new Uint32Array(nBlocks);
      const blocks = addon.deflateDialogs(this.chunks, this.chunkOf, this.startOf, this.lenOf, this.count, RECORD_PREFIX_LEN, order, ends, perBlock, blockEnds);
      for (let b = 0; b < nBlocks; b++) table.writeUInt32LE(table.length + blockEnds[b], 12 + 4 * b);
      return [table, blocks];
    }
    const parts = [table];
    let at = table.length;
    let block = Buffer.allocUnsafe(1 << 16);
    for (let b = 0; b < nBlocks; b++) {
      const dFrom = b * perBlock;
      const dTo = Math.min(ends.length, dFrom + perBlock);
      const mFrom = dFrom === 0 ? 0 : ends[dFrom - 1];
      let size = 4 * (dTo - dFrom);
      for (let k = mFrom; k < ends[dTo - 1]; k++) size += 4 + this.recordLength(order[k]);
      if (size > block.length) block = Buffer.allocUnsafe(Math.max(size, 2 * block.length));
      let w = 0;
      for (let d = dFrom, k = mFrom; d < dTo; d++) {
        block.writeUInt32LE(ends[d] - k, w);
        w += 4;
        for (; k < ends[d]; k++) {
          block.writeUInt32LE(this.recordLength(order[k]), w);
          w = this.copyRecord(order[k], block, w + 4);
        }
      }
      const z = deflateRawSync(block.subarray(0, w), { level: 1 });
      parts.push(z);
      at += z.length;
      table.writeUInt32LE(at, 12 + 4 * b);
    }
    return parts;
  }

  /** Frees the records (the segment is sealed); the count stays. */
  release(): void {
    // Fields that were never stored to again keep their value here (chunks emptied in place, released told by cur):
    // a first store to such a field deoptimizes the code that counted on it staying, the indexer's hottest, which
    // each index thread would then compile again for its next segment.
    this.chunks.length = 0;
    this.cur = RELEASED;
    this.used = 0;
    this.chunkOf = this.startOf = this.lenOf = new Uint32Array(0);
  }
}

function grow(a: Uint32Array): Uint32Array {
  const b = new Uint32Array(a.length * 2);
  b.set(a);
  return b;
}
