import { decodeIPv4, decodeIPv6, makePacket } from './ip';
import { decodeLink, ETHERTYPE, LinkLayer } from './link';
import type { DecodeFailure, DecodedPacket } from './types';

// Decoding is synchronous and never re-entered, so one scratch serves every call.
const link: LinkLayer = { offset: 0, ethertype: 0, vlans: [] };

/**
 * Decodes one captured frame of the given LINKTYPE. Returns the failure
 * reason instead of throwing for anything the bytes hold. Frames that carry
 * no IP (ARP, LLDP, unknown AF) decode with ipVersion 0 and the network-layer
 * bytes as payload. `payload` is a view into `data`.
 *
 * `cut` says the capture kept fewer bytes than the packet had (the record's
 * caplen < origlen): lengths in the headers that run past the captured bytes
 * are then expected, and what was captured is decoded (marked `truncated`);
 * on an uncut packet they are a lie and the packet is refused.
 */
export function decodePacket(linkType: number, data: Buffer, cut = false): DecodedPacket | DecodeFailure {
  const f = decodeLink(linkType, data, link);
  if (f !== null) return f;
  if (link.ethertype === ETHERTYPE.IPV4) return decodeIPv4(data, link.offset, link.vlans, cut);
  if (link.ethertype === ETHERTYPE.IPV6) return decodeIPv6(data, link.offset, link.vlans, cut);
  return makePacket(0, '', '', 0, link.vlans, null, data.subarray(link.offset));
}

/** Narrows decodePacket's result. */
export function isDecodeFailure(r: DecodedPacket | DecodeFailure): r is DecodeFailure {
  return typeof r === 'string';
}
