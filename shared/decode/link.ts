import { LINKTYPE } from '../pcap/types';
import type { DecodeFailure } from './types';

export const ETHERTYPE = {
  IPV4: 0x0800,
  IPV6: 0x86dd,
  VLAN: 0x8100,
  QINQ: 0x88a8,
  /** Pre-standard QinQ outer tag, still emitted by some switches. */
  QINQ_OLD: 0x9100,
} as const;

/** Where the network layer starts in a frame. Filled in by decodeLink. */
export interface LinkLayer {
  /** Offset of the network-layer header in the frame. */
  offset: number;
  /** Ethertype of the network layer; 0 when the link header names something that is not one (unknown AF, 802.3 length). */
  ethertype: number;
  /** VLAN ids, outer to inner. */
  vlans: number[];
}

const AF_INET = 2;

function afToEthertype(af: number): number {
  if (af === AF_INET) return ETHERTYPE.IPV4;
  // AF_INET6 differs between the BSDs (24 NetBSD/OpenBSD, 28 FreeBSD, 30 macOS) and Linux (10).
  if (af === 10 || af === 24 || af === 28 || af === 30) return ETHERTYPE.IPV6;
  return 0;
}

/**
 * Skips the VLAN tags at `off` (libpcap re-inserts them into cooked captures
 * too, so every link type with an ethertype goes through this).
 */
function vlanTags(data: Buffer, off: number, ethertype: number, out: LinkLayer): DecodeFailure | null {
  let et = ethertype;
  while (et === ETHERTYPE.VLAN || et === ETHERTYPE.QINQ || et === ETHERTYPE.QINQ_OLD) {
    if (off + 4 > data.length) return 'truncated';
    out.vlans.push(data.readUInt16BE(off) & 0x0fff);
    et = data.readUInt16BE(off + 2);
    off += 4;
  }
  out.offset = off;
  out.ethertype = et;
  return null;
}

function versionEthertype(data: Buffer): number {
  const v = data[0] >> 4;
  return v === 4 ? ETHERTYPE.IPV4 : v === 6 ? ETHERTYPE.IPV6 : 0;
}

/**
 * Decodes the link-layer header of a frame of the given LINKTYPE into `out`
 * (reused by the caller between packets; `out.vlans` is replaced by a fresh
 * array each call because it ends up in the result). Returns a failure or null.
 */
export function decodeLink(linkType: number, data: Buffer, out: LinkLayer): DecodeFailure | null {
  out.vlans = [];
  out.offset = 0;
  out.ethertype = 0;
  const len = data.length;
  switch (linkType) {
    case LINKTYPE.ETHERNET:
      if (len < 14) return 'truncated';
      return vlanTags(data, 14, data.readUInt16BE(12), out);
    case LINKTYPE.LINUX_SLL:
      if (len < 16) return 'truncated';
      return vlanTags(data, 16, data.readUInt16BE(14), out);
    case LINKTYPE.LINUX_SLL2:
      if (len < 20) return 'truncated';
      return vlanTags(data, 20, data.readUInt16BE(0), out);
    case LINKTYPE.RAW: {
      if (len < 1) return 'truncated';
      const et = versionEthertype(data);
      if (et === 0) return 'bad-ip-header';
      out.ethertype = et;
      return null;
    }
    case LINKTYPE.IPV4:
      if (len < 1) return 'truncated';
      out.ethertype = ETHERTYPE.IPV4;
      return null;
    case LINKTYPE.IPV6:
      if (len < 1) return 'truncated';
      out.ethertype = ETHERTYPE.IPV6;
      return null;
    case LINKTYPE.NULL: {
      if (len < 4) return 'truncated';
      // Host byte order of the capturing machine, which the file does not record;
      // AF values are small, so the order that yields one is the right one.
      let af = data.readUInt32LE(0);
      if (af > 0xffff) af = data.readUInt32BE(0);
      out.offset = 4;
      out.ethertype = afToEthertype(af);
      return null;
    }
    case LINKTYPE.LOOP:
      if (len < 4) return 'truncated';
      out.offset = 4;
      out.ethertype = afToEthertype(data.readUInt32BE(0));
      return null;
    default:
      return 'unsupported-link';
  }
}
