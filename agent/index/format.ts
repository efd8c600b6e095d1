import { TracefleetError } from '../../shared/errors/catalogue';
import { numberMatches, sipDigits } from '../../shared/sip/number';
import { endpointText } from '../../shared/query/query';

/**
 * On-disk layout of a segment's index file (`<segment>.idx`).
 *
 * While its segment is written the file is a journal: a header, then
 * length-prefixed records appended as packets are indexed. When the segment
 * is closed the indexer appends lookup sections (sorted key tables, a packet
 * table, dialog records) and a fixed footer. A reader that finds the footer
 * answers Call-ID and number queries with a few small preads; one that does
 * not replays the journal. A torn last journal record (crash) is ignored.
 *
 *   header   : "TFIDX\0\0\x01" u32 version u32 reserved (16 bytes)
 *   record   : u32 length (of type + body) | u8 type | body
 *   footer   : see FOOTER_* below, the last FOOTER_LEN bytes
 */
export const INDEX_MAGIC = Buffer.from('TFIDX\0\0\x01', 'latin1');
/**
 * 2: message records are binary (`m` records, message-binary.ts), and so are
 * the sealed dialog blocks (FOOTER_FLAG.BINARY_RECORDS). Version 1 indexes
 * (JSON `M` records and blocks) are still read.
 */
export const INDEX_VERSION = 2;
export const INDEX_HEADER_LEN = 16;
export const RECORD_PREFIX_LEN = 5;
/** Sanity bound on one journal record; bigger means corruption. */
export const MAX_RECORD_LEN = 64 * 1024 * 1024;

export const REC = {
  /** Segment identity: the PCAP global header of the segment (24 bytes). */
  SEGMENT: 0x48, // 'H'
  /** New address strings: u32 first id, then NUL-separated latin1 strings. */
  ADDRESSES: 0x41, // 'A'
  /** A batch of packet entries (PACKET_ENTRY_LEN each). */
  PACKETS: 0x50, // 'P'
  /** One SIP message, JSON (see MessageRecord): index version 1, read only. */
  MESSAGE: 0x4d, // 'M'
  /** One SIP message, binary (agent/index/message-binary.ts): index version 2. */
  MESSAGE_BIN: 0x6d, // 'm'
  /** What changed in the segment's flows (FlowTableBuilder.journal()); the first says the journal carries them. */
  FLOWS: 0x66, // 'f'
  /** Checkpoint: f64 number of segment bytes fully indexed so far. */
  CHECKPOINT: 0x43, // 'C'
  /** Sealed sections: */
  PACKET_TABLE: 0x54, // 'T' all packet entries, contiguous
  ADDRESS_TABLE: 0x53, // 'S' JSON array of all address strings
  KEY_TABLE: 0x4b, // 'K' sorted (u32 hash, u32 dialog) pairs for Call-ID, correlation and leg keys (see LegKeyKind)
  NUMBER_TABLE: 0x4e, // 'N' sorted (reversed digits[NUMBER_KEY_LEN], u32 dialog)
  DIALOGS: 0x44, // 'D' u32 dialogs, u32 blocks, u32 block offsets[blocks+1], deflated blocks of DIALOGS_PER_BLOCK dialogs (see FOOTER_FLAG)
  FLOW_TABLE: 0x46, // 'F' the non-SIP UDP packets (RTP, RTCP) as flows with their packet ordinals (agent/index/flows.ts)
} as const;

/**
 * Packet entry, little-endian:
 *   0 u32 record offset in the segment   4 u32 ts seconds   8 u32 ts nanoseconds
 *  12 u32 src address id  16 u32 dst address id (NO_ADDRESS when none)
 *  20 u16 sport  22 u16 dport  24 u8 ip protocol  25 u8 flags  26 u16 captured length / 0 when > 65535
 */
export const PACKET_ENTRY_LEN = 28;
export const NO_ADDRESS = 0xffffffff;
export const PKT_FLAG = {
  DECODE_FAILED: 0x01,
  FRAGMENT: 0x02,
  SIP: 0x04,
  /** Cut by the snap length: caplen < origlen. */
  TRUNCATED: 0x08,
} as const;

export const NUMBER_KEY_LEN = 24;
export const NUMBER_ENTRY_LEN = NUMBER_KEY_LEN + 4;
export const KEY_ENTRY_LEN = 8;

/**
 * Footer, little-endian, FOOTER_LEN bytes at the very end of a sealed index:
 *   0  "TFIDXEND"
 *   8  f64 segment bytes indexed    16 u32 packets   20 u32 messages   24 u32 dialogs
 *  28  u32 first ts sec  32 u32 first ts nsec  36 u32 last ts sec  40 u32 last ts nsec
 *  44  f64 offset of PACKET_TABLE body  52 f64 offset of ADDRESS_TABLE body
 *  60  f64 offset of KEY_TABLE body     68 f64 offset of NUMBER_TABLE body
 *  76  f64 offset of DIALOGS body       84 u32 key entries  88 u32 number entries
 *  92  u32 address table length (bytes) 96 u32 dialogs section length (bytes)
 * 100  u32 flags (FOOTER_FLAG)
 * 104  f64 offset of FLOW_TABLE body 112 u32 flow section length (bytes)   (with FOOTER_FLAG.FLOWS)
 * 116  reserved to 128
 */
export const FOOTER_FLAG = {
  /**
   * DIALOGS holds raw-deflated blocks of newline-separated JSON records. Raw deflate (RFC 1951) is the format,
   * not one compressor's bytes: the indexer's addon compresses with libdeflate where it was built with it and
   * with zlib otherwise (seal-deflate.cc), and every reader inflates either to the same block.
   */
  DIALOG_BLOCKS: 0x1,
  /** KEY_TABLE also holds the Session-ID, icid and media keys (LegKeyKind); older indexes hold only 'c' and 'x'. */
  LEG_KEYS: 0x2,
  /** FLOW_TABLE is there; older indexes have their RTP found by scanning the packet table. */
  FLOWS: 0x4,
  /**
   * The dialog blocks hold binary dialogs, each: u32 message count, then per
   * message u32 length and its binary record (message-binary.ts); without the
   * flag (version 1) they are newline-separated JSON `{ c, msgs }` lines.
   */
  BINARY_RECORDS: 0x8,
} as const;
export const DIALOGS_PER_BLOCK = 32;
/**
 * A dialog block inflates to at most dialogBlockBound(the bytes its index
 * covers), never less than this (a journal record's cap): a reader stops a
 * corrupt or hostile block there instead of inflating it whole.
 */
export const MAX_DIALOG_BLOCK = MAX_RECORD_LEN;
/** Whatever a corrupt footer says it covers, no block is inflated past this. */
export const MAX_DIALOG_BLOCK_CAP = 1024 * 1024 * 1024;

/**
 * What a dialog block of an index covering `indexedBytes` of its segment may
 * inflate to. Its records come from those bytes: a record's text is taken
 * from its packets and its fixed part and addresses are smaller than their
 * headers, so the records of a segment are under twice its size, and four
 * times it always fits the block, even when a flood of one Call-ID puts a
 * whole segment in one dialog (a 64 MiB bound alone would refuse that block
 * on segments above 64 MiB).
 */
export function dialogBlockBound(indexedBytes: number): number {
  const bytes = Number.isFinite(indexedBytes) && indexedBytes > 0 ? indexedBytes : 0;
  return Math.min(MAX_DIALOG_BLOCK_CAP, Math.max(MAX_DIALOG_BLOCK, 4 * bytes));
}
export const FOOTER_MAGIC = Buffer.from('TFIDXEND', 'latin1');
export const FOOTER_LEN = 128;

/** What the journal keeps of one SIP message; short keys keep the index small. */
export interface MessageRecord {
  /** Packet ordinals (in this segment) carrying the message. */
  p: number[];
  /** Time of the last packet, [sec, nsec]. */
  t: [number, number];
  src: string;
  dst: string;
  sp: number;
  dp: number;
  /** 6 TCP, 17 UDP. */
  pr: number;
  /** Method (requests) or null. */
  m: string | null;
  /** Status (responses) or null. */
  s: number | null;
  /** Reason phrase (responses). */
  r?: string;
  /** Call-ID. */
  c: string;
  /** CSeq as "<n> <METHOD>". */
  q: string | null;
  /** User parts: R-URI, From, To, P-Asserted-Identity. */
  ru: string | null;
  fu: string | null;
  tu: string | null;
  pu?: string[];
  /** Correlation key. */
  x?: string;
  /**
   * RFC 7989 Session-ID: the sender's UUID, and the peer's (`remote`). Both
   * are leg keys: a compliant B2BUA passes both through, and one that makes
   * up a side's UUID still repeats the other side's as remote.
   */
  si?: string;
  sr?: string;
  /** P-Charging-Vector icid-value. */
  ic?: string;
  /** SDP media endpoints [addr, port]. */
  sdp?: Array<[string, number]>;
  /** RTCP endpoints announced with `a=rtcp` (RFC 3605), where they differ from port + 1; absent in indexes built before. */
  rc?: Array<[string, number]>;
  /** The SDP's `a=rtpmap` entries [payload type, encoding/clock], for naming the codec of a stream. */
  pm?: Array<[number, string]>;
  /** Message size in bytes (as captured). */
  n: number;
  /** 1 when a packet of it was cut by the snap length (caplen < origlen). */
  tr?: 1;
  /** 1 when it came through HEP (a segment of the HEP stream), not from the wire. */
  h?: 1;
}

/** The user parts a number query is matched against: R-URI, From, To, P-Asserted-Identity. */
export function messageUsers(m: MessageRecord): Array<string | null> {
  return [m.ru, m.fu, m.tu, ...(m.pu ?? [])];
}

/** Whether a user part of the message has digits ending with `digits` (a normalized number query). */
export function messageHasNumber(m: MessageRecord, digits: string): boolean {
  return messageUsers(m).some((u) => numberMatches(sipDigits(u), digits));
}

/** A dialog's record in a sealed index: every message of one Call-ID in this segment. */
export interface DialogRecord {
  c: string;
  msgs: MessageRecord[];
}

/**
 * The keys that link the legs of one call (agent/query/legs.ts), as the key
 * table types them: x correlation header or xref, s Session-ID UUID, i
 * P-Charging-Vector icid-value, m an SDP media endpoint ("addr:port").
 */
export type LegKeyKind = 'x' | 's' | 'i' | 'm';
export type KeyKind = 'c' | LegKeyKind;

/**
 * The leg keys one message carries, each told to `add`; its SDP endpoints to `addEndpoint` when given (as
 * host and port, for a caller that needs only endpointKeyHash, no "addr:port" string a message).
 */
export function messageLegKeys(
  m: MessageRecord, add: (kind: LegKeyKind, value: string) => void, addEndpoint?: (host: string, port: number) => void,
): void {
  if (m.x) add('x', m.x);
  if (m.si) add('s', m.si);
  if (m.sr && m.sr !== m.si) add('s', m.sr);
  if (m.ic) add('i', m.ic);
  if (m.sdp) {
    if (addEndpoint) for (const [a, port] of m.sdp) addEndpoint(a, port);
    else for (const [a, port] of m.sdp) add('m', endpointText(a, port));
  }
}

/** Whether a message carries the leg key. */
export function messageHasLegKey(m: MessageRecord, kind: LegKeyKind, value: string): boolean {
  switch (kind) {
    case 'x': return m.x === value;
    case 's': return m.si === value || m.sr === value;
    case 'i': return m.ic === value;
    case 'm': return m.sdp?.some(([a, port]) => endpointText(a, port) === value) ?? false;
  }
}

/** 32-bit FNV-1a over the UTF-8 bytes of a typed key ("<kind>\0<value>": c Call-ID, else a LegKeyKind). */
export function keyHash(kind: KeyKind, value: string): number {
  // Call-IDs are ASCII in practice, and an ASCII string's UTF-8 bytes are its
  // char codes: hashed from the string, without encoding it into a Buffer.
  let h = 0x811c9dc5;
  h ^= kind.charCodeAt(0);
  h = Math.imul(h, 0x01000193);
  h = Math.imul(h, 0x01000193); // the '\0' separator: XOR with 0 leaves h as it is
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x80) return keyHashUtf8(kind + '\0' + value);
    h ^= c;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** keyHash('m', endpointText(host, port)), without the string for an ASCII IPv4 or name host and a port 0-65535. */
export function endpointKeyHash(host: string, port: number): number {
  if (!(Number.isInteger(port) && port >= 0 && port <= 65535)) return keyHash('m', endpointText(host, port));
  let h = Math.imul(Math.imul(0x811c9dc5 ^ 0x6d, 0x01000193), 0x01000193); // 'm', then the '\0' separator
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    // An IPv6 host is bracketed in the text; past ASCII it is hashed as UTF-8: both by keyHash itself.
    if (c >= 0x80 || c === 0x3a) return keyHash('m', endpointText(host, port));
    h = Math.imul(h ^ c, 0x01000193);
  }
  h = Math.imul(h ^ 0x3a, 0x01000193);
  let div = 1;
  while (div * 10 <= port) div *= 10;
  for (; div >= 1; div /= 10) h = Math.imul(h ^ (48 + (Math.floor(port / div) % 10)), 0x01000193);
  return h >>> 0;
}

function keyHashUtf8(s: string): number {
  let h = 0x811c9dc5;
  const b = Buffer.from(s, 'utf8');
  for (let i = 0; i < b.length; i++) {
    h ^= b[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The number table key: a user part's digits, reversed, so that a suffix query becomes a prefix search. */
export function numberKey(digits: string): Buffer {
  const key = Buffer.alloc(NUMBER_KEY_LEN);
  key.write(numberKeyText(digits), 0, 'latin1');
  return key;
}

/** numberKey's bytes before their zero padding, as text (its digits are ASCII). */
export function numberKeyText(digits: string): string {
  const n = Math.min(digits.length, NUMBER_KEY_LEN);
  let s = '';
  for (let i = 0; i < n; i++) s += digits[digits.length - 1 - i];
  return s;
}

/** A class of its own: the index opener rebuilds on it and only on it. */
export class IndexCorruptError extends TracefleetError {
  constructor(path: string, what: string) {
    super('TF_INDEX_CORRUPT', { path, what });
    this.name = 'IndexCorruptError';
  }
}
