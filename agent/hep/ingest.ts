import { timingSafeEqual } from 'node:crypto';
import { HEP_PROTO, HEP_TLS_PROTO, parseHep, type HepDropReason } from '../../shared/hep/hep';
import { HepFramer, MAX_FRAME_PAYLOAD } from './frame';

/** Bytes of PCAP records gathered before they are written, as the capture worker's batch. */
export const HEP_BATCH_BYTES = 2 * 1024 * 1024;
/** Senders tracked per second for the flood rule; packets from more are dropped as a flood. */
const MAX_SENDERS = 4096;

/**
 * What the HEP listener does with one datagram, apart from the sockets and
 * the ring (agent/hep/worker.ts; bench/hep measures it alone): the flood
 * rule, the bounded parse, the password, the types taken, and the packet
 * synthesised into a batch of PCAP records. Faults are counted in `drops`.
 */
export class HepIngest {
  readonly batch = Buffer.allocUnsafe(HEP_BATCH_BYTES);
  used = 0;
  usedPackets = 0;
  private readonly framer = new HepFramer();
  private readonly password: Buffer | null;
  private second = 0;
  private readonly perSender = new Map<string, number>();

  constructor(
    private readonly cfg: { password?: string; perSenderPerSecond: number },
    readonly drops: Record<HepDropReason, number>,
  ) {
    this.password = cfg.password !== undefined ? Buffer.from(cfg.password, 'utf8') : null;
  }

  /**
   * Takes one datagram: 'ok' (in the batch), 'dropped' (counted), or 'full':
   * write the batch, clear() it and give the same datagram again with
   * `again` (so it is not counted against its sender twice).
   */
  take(dgram: Buffer, sender: string, again = false): 'ok' | 'dropped' | 'full' {
    if (!again && !this.admit(sender)) {
      this.drops.flood++;
      return 'dropped';
    }
    const r = parseHep(dgram);
    if (!r.ok) {
      this.drops[r.reason]++;
      return 'dropped';
    }
    const h = r.hep;
    if (h.proto === HEP_TLS_PROTO) h.proto = 6;
    const pw = this.password;
    if (pw && !(h.authKey && h.authKey.length === pw.length && timingSafeEqual(h.authKey, pw))) {
      this.drops.auth++;
      return 'dropped';
    }
    if ((h.protoType !== HEP_PROTO.SIP && h.protoType !== HEP_PROTO.RTCP) || (h.proto !== 17 && h.proto !== 6)) {
      this.drops.unsupported++;
      return 'dropped';
    }
    if (h.payload.length > MAX_FRAME_PAYLOAD) {
      this.drops.too_big++;
      return 'dropped';
    }
    if (HEP_BATCH_BYTES - this.used < this.framer.recordSize(h)) return 'full';
    this.used += this.framer.write(h, this.batch, this.used);
    this.usedPackets++;
    return 'ok';
  }

  clear(): void {
    this.used = 0;
    this.usedPackets = 0;
  }

  /** The flood rule: packets per sender in the current second, and a bound on the senders. */
  private admit(sender: string): boolean {
    const now = Math.floor(Date.now() / 1000);
    if (now !== this.second) {
      this.second = now;
      this.perSender.clear();
    }
    const n = this.perSender.get(sender);
    if (n === undefined) {
      if (this.perSender.size >= MAX_SENDERS) return false;
      this.perSender.set(sender, 1);
      return true;
    }
    if (n >= this.cfg.perSenderPerSecond) return false;
    this.perSender.set(sender, n + 1);
    return true;
  }
}
