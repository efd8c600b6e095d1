/** One captured packet as stored in a capture file. Bytes and timestamp are never altered. */
export interface PacketRecord {
  /** Seconds since the epoch. */
  tsSec: number;
  /** Nanoseconds within the second (0..999_999_999), whatever the file's resolution. */
  tsNsec: number;
  /** Bytes captured (data.length). */
  capLen: number;
  /** Bytes on the wire. */
  origLen: number;
  /** The captured bytes; may be a view into a larger buffer, copy it to keep it. */
  data: Buffer;
  /** LINKTYPE_* of the interface that captured it. */
  linkType: number;
  /** PCAPNG interface id (0 for PCAP). */
  interfaceId: number;
  /** Byte offset of the record's header (PCAP) or block (PCAPNG) in its file. */
  fileOffset: number;
}

/** The link types this project decodes (tcpdump.org LINKTYPE_* values). */
export const LINKTYPE = {
  NULL: 0,
  ETHERNET: 1,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;
