import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { addressBytes, encodeHep3, HEP_PROTO } from '../../shared/hep/hep';

/*
 * HEP out: what the agent captures, mirrored as HEP3 over UDP to a HOMER,
 * heplify-server or any HEP collector (sngrep -L). Runs in the live
 * indexer's thread, where every SIP message is parsed anyway; the capture
 * threads never wait for it. A send is fire-and-forget with a bound on the
 * datagrams in flight: a collector that is slow or away costs dropped
 * (counted) messages, never memory and never capture.
 */

export interface HepOutConfig {
  host: string;
  port: number;
  /** HEP's capture agent id (chunk 0x000c). */
  captureId: number;
  /** Sent as HEP's node name chunk (0x0013) when set. */
  nodeName?: string;
  /** Sent as the auth-key chunk (0x000e) when set. */
  password?: string;
  /** Mirror RTCP too (HEP protocol type 5). */
  rtcp: boolean;
}

export interface HepOutCounters {
  /** Sent by the socket. */
  sent: number;
  /** Not sent: too many in flight (the collector or the link is slow). */
  dropped: number;
  /** The socket refused them (collector away: ICMP unreachable, no route) or they did not fit HEP3. */
  failed: number;
}

/** Datagrams handed to the socket and not yet sent. */
const MAX_IN_FLIGHT = 512;

export class HepSender {
  readonly counters: HepOutCounters = { sent: 0, dropped: 0, failed: 0 };
  private readonly sock: Socket;
  private inFlight = 0;
  private connected = false;
  private readonly nodeName: Buffer | null;
  private readonly authKey: Buffer | null;
  private readonly done: (err: Error | null) => void;

  constructor(private readonly cfg: HepOutConfig) {
    this.nodeName = cfg.nodeName ? Buffer.from(cfg.nodeName, 'utf8') : null;
    this.authKey = cfg.password ? Buffer.from(cfg.password, 'utf8') : null;
    this.sock = createSocket(isIP(cfg.host) === 6 ? 'udp6' : 'udp4');
    // A connected socket hears ICMP port unreachable (the collector is away) as an error on a later send,
    // counted in that send's callback; the listener keeps an error from being thrown, and counts no message.
    this.sock.on('error', () => undefined);
    this.sock.connect(cfg.port, cfg.host, () => {
      this.connected = true;
    });
    this.done = (err) => {
      this.inFlight--;
      if (err) this.counters.failed++;
      else this.counters.sent++;
    };
  }

  /** Mirrors one SIP message (its bytes as captured) with the addresses and time it was captured with. */
  sip(src: string, dst: string, sport: number, dport: number, proto: number, tsSec: number, tsNsec: number, bytes: Buffer): void {
    this.send(HEP_PROTO.SIP, src, dst, sport, dport, proto, tsSec, tsNsec, bytes);
  }

  rtcp(src: string, dst: string, sport: number, dport: number, tsSec: number, tsNsec: number, payload: Buffer): void {
    if (this.cfg.rtcp) this.send(HEP_PROTO.RTCP, src, dst, sport, dport, 17, tsSec, tsNsec, payload);
  }

  private send(protoType: number, src: string, dst: string, sport: number, dport: number, proto: number, tsSec: number, tsNsec: number, payload: Buffer): void {
    if (!this.connected || this.inFlight >= MAX_IN_FLIGHT) {
      this.counters.dropped++;
      return;
    }
    const s = addressBytes(src);
    const d = addressBytes(dst);
    const pkt = s && d && s.length === d.length
      ? encodeHep3({ family: s.length === 4 ? 4 : 6, proto, src: s, dst: d, sport, dport, tsSec, tsUsec: Math.floor(tsNsec / 1000), protoType, captureId: this.cfg.captureId, authKey: this.authKey, nodeName: this.nodeName, payload })
      : null;
    if (!pkt) {
      this.counters.failed++;
      return;
    }
    this.inFlight++;
    this.sock.send(pkt, this.done);
  }

  close(): void {
    try {
      this.sock.close();
    } catch {
      // already closed
    }
  }
}
