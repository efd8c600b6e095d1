import { PCAP_RECORD_HEADER_LEN, writePcapRecordHeader } from '../../shared/pcap/pcap';
import type { HepPacket } from '../../shared/hep/hep';

/*
 * A HEP payload as the packet it was on the wire: Ethernet, IPv4 or IPv6,
 * UDP or TCP, with the addresses, ports and time the HEP chunks carry, so
 * the ring's decoder and indexer take it as they take a sniffed one.
 * Transport checksums are left 0 (UDP over IPv4: "none"; tshark does not
 * check the others by default); the IPv4 header checksum is right.
 */

export const LINKTYPE_ETHERNET = 1;
const ETH_LEN = 14;
const IP4_LEN = 20;
const IP6_LEN = 40;
const UDP_LEN = 8;
const TCP_LEN = 20;
/** Locally administered MACs, "HEP" in them: a reader of the PCAP sees where the frame came from. */
const MAC_SRC = Buffer.from([0x02, 0x48, 0x45, 0x50, 0x00, 0x01]);
const MAC_DST = Buffer.from([0x02, 0x48, 0x45, 0x50, 0x00, 0x02]);

/** Most TCP flows whose next sequence number is remembered; the oldest is forgotten first. */
const MAX_TCP_FLOWS = 65_536;

/** The largest payload one synthesised packet carries (IPv4's 16-bit total length, TCP header included). */
export const MAX_FRAME_PAYLOAD = 0xffff - IP4_LEN - TCP_LEN;

/**
 * Builds PCAP records (16-byte header + frame) for HEP packets. TCP
 * messages of one flow get consecutive sequence numbers, so the TCP
 * reassembler follows them as one stream.
 */
export class HepFramer {
  private readonly seqs = new Map<string, number>();
  private ipId = 0;

  /** Bytes the record of `h` takes, or -1 when its payload is too big for one packet. */
  recordSize(h: HepPacket): number {
    if (h.payload.length > MAX_FRAME_PAYLOAD) return -1;
    return PCAP_RECORD_HEADER_LEN + ETH_LEN + (h.family === 4 ? IP4_LEN : IP6_LEN) + (h.proto === 6 ? TCP_LEN : UDP_LEN) + h.payload.length;
  }

  /** Writes the record of `h` at `at` (recordSize(h) bytes must be free there; nanosecond timestamps). Returns its size. */
  write(h: HepPacket, out: Buffer, at: number): number {
    const size = this.recordSize(h);
    const frameLen = size - PCAP_RECORD_HEADER_LEN;
    writePcapRecordHeader(out, at, h.tsSec, h.tsUsec * 1000, frameLen, frameLen, true);
    let p = at + PCAP_RECORD_HEADER_LEN;
    MAC_DST.copy(out, p);
    MAC_SRC.copy(out, p + 6);
    out.writeUInt16BE(h.family === 4 ? 0x0800 : 0x86dd, p + 12);
    p += ETH_LEN;
    const tcp = h.proto === 6;
    const l4 = (tcp ? TCP_LEN : UDP_LEN) + h.payload.length;
    if (h.family === 4) {
      out[p] = 0x45;
      out[p + 1] = 0;
      out.writeUInt16BE(IP4_LEN + l4, p + 2);
      out.writeUInt16BE((this.ipId = (this.ipId + 1) & 0xffff), p + 4);
      out.writeUInt16BE(0x4000, p + 6); // DF: never a fragment
      out[p + 8] = 64;
      out[p + 9] = h.proto;
      out.writeUInt16BE(0, p + 10);
      h.src.copy(out, p + 12);
      h.dst.copy(out, p + 16);
      out.writeUInt16BE(ip4Checksum(out, p), p + 10);
      p += IP4_LEN;
    } else {
      out.writeUInt32BE(0x60000000, p);
      out.writeUInt16BE(l4, p + 4);
      out[p + 6] = h.proto;
      out[p + 7] = 64;
      h.src.copy(out, p + 8);
      h.dst.copy(out, p + 24);
      p += IP6_LEN;
    }
    out.writeUInt16BE(h.sport, p);
    out.writeUInt16BE(h.dport, p + 2);
    if (tcp) {
      out.writeUInt32BE(this.nextSeq(h), p + 4);
      out.writeUInt32BE(0, p + 8);
      out[p + 12] = 0x50;
      out[p + 13] = 0x18; // PSH, ACK
      out.writeUInt16BE(0xffff, p + 14);
      out.writeUInt32BE(0, p + 16);
      p += TCP_LEN;
    } else {
      out.writeUInt16BE(UDP_LEN + h.payload.length, p + 4);
      out.writeUInt16BE(0, p + 6);
      p += UDP_LEN;
    }
    h.payload.copy(out, p);
    return size;
  }

  private nextSeq(h: HepPacket): number {
    const key = `${h.src.toString('hex')}:${h.sport}>${h.dst.toString('hex')}:${h.dport}`;
    let seq = this.seqs.get(key);
    if (seq === undefined) {
      if (this.seqs.size >= MAX_TCP_FLOWS) this.seqs.delete(this.seqs.keys().next().value as string);
      seq = 1;
    } else {
      this.seqs.delete(key); // re-inserted below: the map's order is then least recently used first
    }
    this.seqs.set(key, (seq + h.payload.length) >>> 0);
    return seq;
  }
}

function ip4Checksum(b: Buffer, at: number): number {
  let sum = 0;
  for (let i = 0; i < IP4_LEN; i += 2) sum += b.readUInt16BE(at + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
