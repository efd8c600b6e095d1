import type { Readable } from 'node:stream';
import { HostDedup } from '../merge/dedup';
import { DEFAULT_DEDUP_WINDOW_NS, forgottenNotes } from '../merge/merge';
import { isPcapMagic, parsePcapHeader, pcapCapLenLimit, pcapHeaderBytes, PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN } from '../../shared/pcap/pcap';
import { type OnPcapRecord, PcapRecordWalker } from '../../shared/pcap/record-walker';
import { PCAPNG_MAX_BLOCK_LEN } from '../../shared/pcap/pcapng';

/** What a one-host merge of a file that passed FramingCheck gives: the file's packets, none left out. */
export interface SameFigures {
  packets: number;
  /** Captured bytes of the packets (record headers not counted), as MergeResult counts them. */
  bytes: number;
  /** The merge's notes: only that its dedup forgot packets early, when it did (more than it keeps within one window). */
  notes: string[];
}

/**
 * Proves from a host's PCAP's framing alone that the merge of that one
 * host (mergeCaptures with it as the only input, the default dedup window)
 * is the file itself, byte for byte, so that the merge's output need not be
 * built, nor compared: building it cost the dispatcher a fresh 256 KiB
 * buffer per batch and a copy and a comparison of every byte. That holds
 * when the merge's PCAP fast path (dispatcher/merge/pcap-runs.ts) copies
 * every record as it is and leaves none out:
 *
 * - the file's header is the one the merge writes (little endian, version
 *   2.4, the snaplen the merge gives its output, no FCS bits);
 * - every record is whole (nothing torn at the end), its header sound
 *   (caplen within the output's snaplen and its origlen), its subsecond
 *   field below a second, and its time not before the previous record's
 *   (ties keep file order in the merge too);
 * - no record is a duplicate in the merge's sense (HostDedup, the merge's
 *   own, fed the same packets in the same order; what it forgets early it
 *   forgets as the merge does, which says so in a note, as we do);
 * - there is at least one packet.
 *
 * Anything else (out of order, duplicated, microseconds big endian,
 * PCAPNG, corrupt or torn) answers false at the first record that breaks
 * it, and the caller makes the real merge. Memory: a record at most (one
 * that straddles two chunks), the dedup's window.
 */
export class FramingCheck {
  private failed = false;
  private head: Buffer | null = Buffer.alloc(0);
  private linkType = 0;
  private snaplen = 0;
  private subLimit = 0;
  private nanos = false;
  private lastSec = -1;
  private lastSub = 0;
  readonly dedup = new HostDedup(DEFAULT_DEDUP_WINDOW_NS);
  /** The records after the header (made once the header is read); it gathers a record that straddles chunks. */
  private walker: PcapRecordWalker | null = null;
  private readonly onRecord: OnPcapRecord = (b, off, capLen, inChunk) => this.record(b, off, capLen, inChunk);
  /** A view of the chunk being pushed (offset 0 is its first byte). */
  private view: DataView | null = null;
  packets = 0;
  bytes = 0;

  /** False once the file is known not to be its own merge (nothing more is looked at then). */
  get same(): boolean {
    return !this.failed;
  }

  push(chunk: Buffer): boolean {
    if (this.failed) return false;
    // One view a chunk: the dedup's hash and the record's time read words through it (see isDuplicateAt's `view`), not a
    // byte at a time with a bounds check each.
    this.view = new DataView(chunk.buffer, chunk.byteOffset, chunk.length);
    try {
      return this.walk(chunk);
    } finally {
      this.view = null;
      // The dedup copies only what it still remembers of this chunk: the caller may drop or reuse it after us.
      this.dedup.detach(chunk);
    }
  }

  private walk(chunk: Buffer): boolean {
    let off = 0;
    if (this.head) {
      const n = Math.min(PCAP_HEADER_LEN - this.head.length, chunk.length);
      this.head = Buffer.concat([this.head, chunk.subarray(0, n)]);
      off = n;
      if (this.head.length < PCAP_HEADER_LEN) return true;
      if (!this.header(this.head)) return this.fail();
      this.head = null;
      this.walker = new PcapRecordWalker(true, this.snaplen);
    }
    return this.walker!.push(chunk, off, this.onRecord) || this.fail();
  }

  /** The file ended: whether it was its own merge all through. */
  end(): boolean {
    if (this.failed || this.head !== null || !this.walker?.atRecordBoundary || this.packets === 0) return this.fail();
    return true;
  }

  private fail(): false {
    this.failed = true;
    this.walker = null;
    return false;
  }

  private header(h: Buffer): boolean {
    if (!isPcapMagic(h)) return false;
    let p: ReturnType<typeof parsePcapHeader>;
    try {
      p = parsePcapHeader(h);
    } catch {
      return false; // a version the reader refuses: the real merge says what it makes of it
    }
    // The merge's output snaplen for this one input (merge.ts, mergeRunSources).
    const snaplen = Math.min(pcapCapLenLimit(p), PCAPNG_MAX_BLOCK_LEN);
    if (!p.littleEndian || !h.equals(pcapHeaderBytes({ linkType: p.linkType, nanos: p.nanos, snaplen }))) return false;
    this.linkType = p.linkType;
    this.snaplen = snaplen;
    this.nanos = p.nanos;
    this.subLimit = p.nanos ? 1_000_000_000 : 1_000_000;
    return true;
  }

  /**
   * One whole record at b[off..]: whether the merge copies it as it is.
   * `inChunk`: b is the chunk being pushed, which stays as it is until
   * push() detaches it, so the dedup need not copy every packet it
   * remembers (a copy and a fresh view per packet, about 95 bytes of heap
   * each: 87 MB for a 200 MiB result); the gathered record's buffer is
   * reused, so its packet is copied.
   */
  private record(b: Buffer, off: number, capLen: number, inChunk: boolean): boolean {
    // The gathered record's buffer is not the chunk: no view of it (the dedup hashes it the other way, to the same value).
    const view = inChunk ? this.view! : undefined;
    const sec = view !== undefined ? view.getUint32(off, true) : b.readUInt32LE(off);
    const sub = view !== undefined ? view.getUint32(off + 4, true) : b.readUInt32LE(off + 4);
    // The walker checked caplen against the snaplen and origlen.
    if (sub >= this.subLimit) return false;
    if (sec < this.lastSec || (sec === this.lastSec && sub < this.lastSub)) return false;
    this.lastSec = sec;
    this.lastSub = sub;
    const at = off + PCAP_RECORD_HEADER_LEN;
    if (this.dedup.isDuplicateAt(this.linkType, b, at, at + capLen, sec, this.nanos ? sub : sub * 1000, inChunk, view)) return false;
    this.packets++;
    this.bytes += capLen;
    return true;
  }
}

/**
 * Reads `input` (a host's PCAP) through a FramingCheck: its figures when
 * the one-host merge of it is the file itself, null at the first record
 * that says otherwise (the input is destroyed then). Rejects when the
 * input fails.
 */
export async function sameAsMerge(input: Readable, host: string): Promise<SameFigures | null> {
  const check = new FramingCheck();
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) if (!check.push(chunk)) return null;
  } finally {
    if (!input.readableEnded) input.destroy();
  }
  if (!check.end()) return null;
  return { packets: check.packets, bytes: check.bytes, notes: forgottenNotes([{ host, path: '' }], new Map([[host, check.dedup]]), DEFAULT_DEDUP_WINDOW_NS) };
}
