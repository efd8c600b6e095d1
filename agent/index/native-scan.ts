import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../capture/pcap-native';

/**
 * The indexer's native per-packet scan (agent/index/native/scan.cc): for a
 * whole IPv4/UDP frame (Ethernet or Linux cooked, VLAN tags or not) holding one SIP message it finds, in one
 * call, what the JS dissector, framing and parseSip's line scan would: the
 * ports, the message's extent and its header lines (SCAN_* below). Anything
 * it is not sure of (other link types, IPv6, fragments, TCP, lax start lines, ...) it
 * leaves to the JS path, so what is indexed is the same either way
 * (agent/index/native-scan.test.ts compares both on every corpus).
 */
export interface IndexAddon {
  /**
   * 1 and `out` filled (SCAN_*); 0: the JS path reads the frame. With `correlation` (the correlation
   * header's name, lower case: correlationForScan) it also decodes the values (DEC_*).
   */
  scan(frame: Uint8Array, out: Int32Array, linkType: number, correlation?: Uint8Array | null): number;
  /**
   * The PCAP record walk and scan() of each record, in one call for many: from `from`, the whole records of
   * `buf` (scanPcapRecords' checks) until its end, a corrupt record header or `out` is full (BATCH_*).
   */
  scanRecords(
    buf: Uint8Array, from: number, littleEndian: boolean, nanos: boolean, capLenLimit: number, linkType: number, out: Int32Array,
    correlation?: Uint8Array | null, records?: Uint8Array | null, ordinal?: number, hep?: boolean,
  ): void;
  /**
   * The sealed index's dialog blocks from the message arena's records (MessageArena.dialogSection, which says what
   * each argument is), each raw-deflated at level 1 (seal-deflate.cc): by libdeflate where the addon was built with
   * it, else with zlib.deflateRawSync(block, { level: 1 })'s bytes. Either inflates with node:zlib to the same block.
   * Returns the blocks back to back; blockEnds[b] is where block b ends.
   */
  deflateDialogs(
    chunks: Uint8Array[], chunkOf: Uint32Array, startOf: Uint32Array, lenOf: Uint32Array, count: number, skip: number,
    order: Uint32Array, ends: Uint32Array, perBlock: number, blockEnds: Uint32Array,
  ): Buffer;
  /** Which deflate deflateDialogs uses. */
  deflateKind(): 'libdeflate' | 'zlib';
}

/** Slots of the scan's output: the IPv4 header's offset, the ports, the message's offset and length. */
export const SCAN_IP = 0;
export const SCAN_SPORT = 1;
export const SCAN_DPORT = 2;
export const SCAN_PAYLOAD = 3;
export const SCAN_LENGTH = 4;
/** Where parseSipScanned's layout starts (shared/sip/parse.ts). */
export const SCAN_SIP = 5;
/** Header lines the scan reports at most; a message with more goes the JS way. */
export const SCAN_MAX_LINES = 256;
export const SCAN_OUT_LEN = 50 + 4 * SCAN_MAX_LINES;

/** A batch's head: the bytes walked, the entries, why it stopped (BATCH_END, _CORRUPT, _FULL); entries from BATCH_HEAD. */
export const BATCH_USED = 0;
export const BATCH_RECORDS = 1;
export const BATCH_STOP = 2;
/** Bytes of journal records the batch wrote into `records`, from its start (ENTRY_REC). */
export const BATCH_REC_BYTES = 3;
export const BATCH_HEAD = 4;
export const BATCH_END = 0;
/** The record header at BATCH_USED is corrupt. */
export const BATCH_CORRUPT = 1;
/** `out` (or `records`) is full: call again from BATCH_USED. */
export const BATCH_FULL = 2;
/**
 * An entry: the record's offset, caplen, origlen, seconds (unsigned), nanoseconds, 1 when scanned, where its
 * message's journal record is in `records` and its length (-1 and 0: none); then scan()'s layout.
 */
export const ENTRY_OFF = 0;
export const ENTRY_CAPLEN = 1;
export const ENTRY_ORIGLEN = 2;
export const ENTRY_SEC = 3;
export const ENTRY_NSEC = 4;
export const ENTRY_FAST = 5;
/**
 * With `records` given, the scan writes the journal record (message-arena.ts's prefix and message-binary.ts's
 * record, byte for byte what the builder would write) of each message it decoded whose record needs nothing
 * JS reads its own way (no Session-ID, P-Charging-Vector or body), packet ordinals counted from `ordinal` a
 * record; the builder copies it rather than writing one.
 */
export const ENTRY_REC = 6;
export const ENTRY_REC_LEN = 7;
export const ENTRY_SCAN = 8;
/** The scan's line count, from an entry's scan layout. */
export const SCAN_LINE_COUNT = SCAN_SIP + 9;
/** The scan layout's size before its lines. */
export const SCAN_LINES = 50;
/**
 * The decoded values (scan.cc decodeFields), from SCAN_DEC: extents [start, end) in the message, start -1
 * when absent. DEC_OK 0: the values were not decoded (something the JS parse reads its own way), the JS
 * parse (parseSipScanned) reads the message from the lines.
 */
export const SCAN_DEC = 16;
export const DEC_OK = 0;
/** The first non-empty Call-ID. */
export const DEC_CALL_ID = 1;
/** The CSeq as the record keeps it ("<n> <METHOD>": the bytes are that); -1 when none or malformed. */
export const DEC_CSEQ = 3;
export const DEC_RURI_USER = 5;
export const DEC_FROM_USER = 7;
export const DEC_TO_USER = 9;
/** A response's reason phrase; -1 when empty. */
export const DEC_REASON = 11;
export const DEC_STATUS = 13;
export const DEC_CORRELATION = 14;
export const DEC_SESSION_ID = 16;
export const DEC_CHARGING_VECTOR = 18;
export const DEC_CONTENT_TYPE = 20;
/** The body's end (Content-Length's, or the message's). */
export const DEC_BODY_END = 22;
/** P-Asserted-Identity entries with a URI, and their users (DEC_PAI_USERS, 2 slots each). */
export const DEC_PAI_COUNT = 23;
export const DEC_PAI_USER_COUNT = 24;
export const DEC_PAI_USERS = 25;
/** A request's method ends there (it starts at the scan's start). */
export const DEC_METHOD_END = 33;
/** Where the start line starts (the scan's O_START), from an entry's scan layout. */
export const SCAN_START = SCAN_SIP;
/** The header block's length with its blank line (the body starts there), from an entry's scan layout. */
export const SCAN_HEADER_LEN = SCAN_SIP + 5;
/** Ints of a batch: a few hundred typical messages a call. */
export const BATCH_OUT_LEN = 1 << 16;

const ADDON_REL = join('agent', 'index', 'native', 'build', 'Release', 'tfindex.node');

let loaded: IndexAddon | null | undefined;

/**
 * The addon, loaded once; null when it is not built (a source tree where
 * setup did not run yet) or TRACEFLEET_INDEX_NATIVE=0: the indexer then
 * takes the JS path for every packet, which indexes the same, slower.
 */
export function indexAddon(): IndexAddon | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  // The JS path for every packet, e.g. for bench:index's comparison of both in one run.
  if (process.env.TRACEFLEET_INDEX_NATIVE === '0') return null;
  let path: string;
  try {
    path = join(repoRoot(), ADDON_REL);
  } catch {
    return null;
  }
  if (!existsSync(path)) return null;
  try {
    loaded = require(path) as IndexAddon;
  } catch (e) {
    throw new Error(`index addon ${path} failed to load (${(e as Error).message}): run npm run build (it must be rebuilt for this Node version)`);
  }
  return loaded;
}
