import { isSipKeepalive, sipDatagramLength, sipStartLineEnd } from '../sip/framing';
import { FragmentReassembler, FragmentReassemblerOptions } from './frag';
import { decodeReassembled, IPPROTO } from './ip';
import { decodePacket } from './packet';
import { TcpSipReassembler, TcpSipReassemblerOptions } from './tcp';
import type { DecodedPacket, DecodeFailure, DissectorStats, DissectResult, TransportMessage } from './types';

export type { DissectResult, DissectorStats } from './types';

export interface DissectorOptions {
  fragments?: FragmentReassemblerOptions;
  tcp?: TcpSipReassemblerOptions;
}

const EMPTY: readonly TransportMessage[] = Object.freeze([]);

/**
 * Turns captured packets into decoded packets and SIP messages: decodes,
 * reassembles IP fragments, follows SIP over TCP. Holds reassembly state, so
 * one Dissector sees one capture's packets, in capture order.
 */
export class Dissector {
  private readonly frags: FragmentReassembler;
  private readonly tcp: TcpSipReassembler;
  private packets = 0;
  private decoded = 0;
  private readonly failures: Record<DecodeFailure, number> = {
    truncated: 0,
    'unsupported-link': 0,
    'bad-ip-header': 0,
    'bad-transport-header': 0,
  };
  private udpMessages = 0;
  private keepalives = 0;
  private reassembledFailures = 0;
  private cutFragments = 0;

  constructor(opts: DissectorOptions = {}) {
    this.frags = new FragmentReassembler(opts.fragments);
    this.tcp = new TcpSipReassembler(opts.tcp);
  }

  /**
   * Dissects one packet. `ordinal` identifies it in the messages' `packets`;
   * it must grow with every call. `messages` is a fresh array when non-empty
   * and a shared frozen empty array otherwise; a message's bytes may be a
   * view into `data`. `cut`: the capture kept only the first bytes of the
   * packet (its record's caplen < origlen); what it kept is still dissected
   * and the messages it ends are marked truncated.
   */
  push(ordinal: number, linkType: number, data: Buffer, tsSec: number, cut = false): DissectResult {
    this.packets++;
    const r = decodePacket(linkType, data, cut);
    if (typeof r === 'string') {
      this.failures[r]++;
      return { decoded: null, failure: r, messages: EMPTY };
    }
    this.decoded++;
    let messages = EMPTY;
    if (r.fragment !== null) {
      // Its datagram is still reassembled, up to the first byte the capture lost.
      if (r.truncated) this.cutFragments++;
      const d = this.frags.push(ordinal, tsSec, r);
      if (d !== null) {
        const whole = decodeReassembled(r, d.proto, d.datagram, d.truncated);
        if (typeof whole === 'string') this.reassembledFailures++;
        else messages = this.transport(ordinal, tsSec, whole, d.packets);
      }
    } else {
      this.frags.expire(tsSec);
      if (r.ipVersion !== 0) messages = this.transport(ordinal, tsSec, r, null);
    }
    return { decoded: r, failure: null, messages };
  }

  /**
   * Counts a packet its caller dissected itself, as push() would have: a
   * whole, unfragmented IPv4 UDP datagram holding one SIP message (the
   * indexer's native scan, agent/index/native-scan.ts). Fragments pending
   * reassembly expire by its time as they would.
   */
  countUdpSip(tsSec: number): void {
    this.packets++;
    this.decoded++;
    this.frags.expire(tsSec);
    this.udpMessages++;
  }

  private transport(ordinal: number, tsSec: number, p: DecodedPacket, fragments: number[] | null): readonly TransportMessage[] {
    if (p.proto === IPPROTO.UDP) return this.udp(ordinal, p, fragments);
    if (p.proto === IPPROTO.TCP && p.tcp !== null) {
      return this.tcp.push(ordinal, tsSec, p.src, p.sport, p.dst, p.dport, p.tcp, p.payload, fragments, p.truncated);
    }
    return EMPTY;
  }

  private udp(ordinal: number, p: DecodedPacket, fragments: number[] | null): readonly TransportMessage[] {
    const b = p.payload;
    const n = b.length;
    if (n === 0) return EMPTY;
    if (isSipKeepalive(b, 0, n)) {
      this.keepalives++;
      return EMPTY;
    }
    if (sipStartLineEnd(b, 0) < 0) return EMPTY;
    // One message per datagram; bytes past its Content-Length are not SIP.
    // Of a cut datagram the length is at most what was captured.
    const len = sipDatagramLength(b, 0, n);
    this.udpMessages++;
    return [
      {
        src: p.src,
        dst: p.dst,
        sport: p.sport,
        dport: p.dport,
        proto: IPPROTO.UDP,
        bytes: len > 0 && len < n ? b.subarray(0, len) : b,
        packets: fragments ?? [ordinal],
        // A message whose Content-Length ends before the cut is whole.
        truncated: p.truncated && !(len > 0 && len < n),
      },
    ];
  }

  stats(): DissectorStats {
    const f = this.frags.counters;
    const t = this.tcp.counters;
    return {
      packets: this.packets,
      decoded: this.decoded,
      failures: { ...this.failures },
      sipMessages: this.udpMessages + t.messages,
      keepalives: this.keepalives,
      fragmentsPending: this.frags.pending,
      fragmentsReassembled: f.reassembled,
      fragmentsExpired: f.expired,
      fragmentsEvicted: f.evicted,
      fragmentsDropped: f.dropped,
      fragmentsCut: this.cutFragments,
      reassembledFailures: this.reassembledFailures,
      tcpGaps: t.gaps,
      tcpDesyncs: t.desyncs,
      tcpFlows: this.tcp.flowCount,
      tcpFlowsEvicted: t.flowsEvicted,
      tcpFlowsExpired: t.flowsExpired,
    };
  }
}
