/**
 * What the decoders make of one captured packet. Addresses are in their usual
 * text form (IPv4 dotted quad, IPv6 RFC 5952 compressed lower-case).
 */
export interface DecodedPacket {
  /** 4 or 6; 0 when the packet carries no IP (ARP, LLDP, ...). */
  ipVersion: 0 | 4 | 6;
  src: string;
  dst: string;
  /** IP protocol number of the transport (after IPv6 extension headers): 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6; 0 when none. */
  proto: number;
  /** Transport ports; 0 when the protocol has none or the packet is a non-first fragment. */
  sport: number;
  dport: number;
  /** VLAN ids from outer to inner (802.1Q / QinQ), empty when untagged. */
  vlans: number[];
  /** Set when this packet is one fragment of an IP datagram. */
  fragment: FragmentInfo | null;
  /** Present on TCP packets. */
  tcp: TcpInfo | null;
  /** The transport payload (UDP data, TCP segment data), or for a fragment the fragment's IP payload. A view into the packet buffer. */
  payload: Buffer;
  /**
   * The capture cut this packet (snap length) before the end its IP or UDP
   * length gives: `payload` holds only what was captured.
   */
  truncated: boolean;
}

export interface FragmentInfo {
  /** IPv4 identification or IPv6 fragment header identification. */
  id: number;
  /** Byte offset of this fragment's data in the datagram's IP payload. */
  offset: number;
  /** More-fragments flag. */
  more: boolean;
  /**
   * Bytes of the datagram this fragment carries by its IP header: more than
   * the packet's payload when the capture cut it (then the rest is a gap).
   */
  length: number;
  /** Transport protocol carried by the datagram. */
  proto: number;
}

export interface TcpInfo {
  seq: number;
  ack: number;
  /** TCP flag bits: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10. */
  flags: number;
}

/** Why a packet was not decoded; counted, never thrown. */
export type DecodeFailure =
  | 'truncated'
  | 'unsupported-link'
  | 'bad-ip-header'
  | 'bad-transport-header';

/**
 * An application message (for now: one SIP message) rebuilt from one or more
 * packets: a UDP datagram, a reassembled IP datagram, or a Content-Length
 * framed message taken from a TCP stream.
 */
export interface TransportMessage {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** 6 TCP or 17 UDP. */
  proto: number;
  /** The message bytes, exactly as they crossed the wire. */
  bytes: Buffer;
  /** Ordinals (as given to the dissector) of every packet that carried bytes of this message, ascending. */
  packets: number[];
  /** Only the start of the message: a packet carrying it was cut by the snap length, and `bytes` end where the capture did. */
  truncated: boolean;
}

/** What the dissector makes of one packet (see Dissector.push). */
export interface DissectResult {
  /** The decoded packet, or null when decoding failed. */
  decoded: DecodedPacket | null;
  failure: DecodeFailure | null;
  /**
   * SIP messages completed by this packet, in stream order. A fresh array
   * when non-empty; a shared frozen empty array otherwise. A message's
   * `bytes` may be a view into the `data` passed to push (copy it to keep it
   * past the caller's buffer).
   */
  messages: readonly TransportMessage[];
}

/** Counters of a Dissector; a snapshot, not live. */
export interface DissectorStats {
  packets: number;
  decoded: number;
  failures: Record<DecodeFailure, number>;
  sipMessages: number;
  /** CRLF keepalives (RFC 5626) seen in UDP datagrams. */
  keepalives: number;
  /** IP datagrams waiting for more fragments right now. */
  fragmentsPending: number;
  fragmentsReassembled: number;
  /** Pending datagrams dropped because their fragments stopped coming (timeout). */
  fragmentsExpired: number;
  /** Pending datagrams dropped to stay within the pending caps. */
  fragmentsEvicted: number;
  /** Pending datagrams dropped as too large or inconsistent. */
  fragmentsDropped: number;
  /** Fragments cut by the snap length, left out of reassembly. */
  fragmentsCut: number;
  /** Reassembled datagrams whose transport header did not decode. */
  reassembledFailures: number;
  /** Holes in TCP streams that were given up on (data dropped, stream resynced). */
  tcpGaps: number;
  /** SIP-framed TCP streams whose bytes stopped parsing as SIP (data dropped, stream resynced). */
  tcpDesyncs: number;
  /** TCP flows tracked right now. */
  tcpFlows: number;
  tcpFlowsEvicted: number;
  tcpFlowsExpired: number;
}
