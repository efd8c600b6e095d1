import { PCAP_RECORD_HEADER_LEN } from '../../shared/pcap/pcap';

/**
 * Whether the record whose header is at `buf[off]` is held by a segment byte for byte (import.ts's verbatim
 * copy): its length within `limit` (the smaller snap length of file and segment) and its original length, its
 * sub-second field under `subMax` (a second at the segment's resolution). Little-endian headers only.
 */
export function copyable(buf: Buffer, off: number, limit: number, subMax: number): boolean {
  const capLen = buf.readUInt32LE(off + 8);
  return capLen <= limit && capLen <= buf.readUInt32LE(off + 12) && buf.readUInt32LE(off + 4) < subMax;
}

/** The records of buf[0, len) are whole and copyable: what an index thread checks of the source bytes it read for a run. */
export function copyableRun(buf: Buffer, len: number, limit: number, subMax: number): boolean {
  let off = 0;
  while (len - off >= PCAP_RECORD_HEADER_LEN) {
    if (!copyable(buf, off, limit, subMax)) return false;
    off += PCAP_RECORD_HEADER_LEN + buf.readUInt32LE(off + 8);
  }
  return off === len;
}
