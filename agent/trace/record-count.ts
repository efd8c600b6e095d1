import { CaptureStreamParser } from '../../shared/pcap/reader';
import { isPcapMagic, parsePcapHeader, pcapCapLenLimit, PCAP_HEADER_LEN } from '../../shared/pcap/pcap';
import { type OnPcapRecord, PcapRecordWalker } from '../../shared/pcap/record-walker';

/**
 * Counts the packets in a capture as its bytes are sent, for the trace's
 * progress reports. A PCAP's records are counted from their framing alone
 * (shared/pcap/record-walker.ts: each record header's caplen says where the next one starts): parsing
 * every chunk into a record object per packet only to count them was about
 * 8% of the agent's CPU for a big result. Anything else (a PCAPNG, for
 * several link types) goes to the full parser. At the first bytes that are
 * not a capture, counting stops: the count stays where it was, the result
 * still goes out.
 */
export class RecordCounter {
  private packets = 0;
  private stopped = false;
  /** Bytes seen before the PCAP header was complete (at most its 24). */
  private head: Buffer | null = Buffer.alloc(0);
  /** The records after the header (made once the header is read). */
  private walker: PcapRecordWalker | null = null;
  private readonly onRecord: OnPcapRecord = () => {
    this.packets++;
    return true;
  };
  /** Not a classic PCAP: the full parser. */
  private other: CaptureStreamParser | null = null;

  constructor(private readonly name: string) {}

  get count(): number {
    return this.packets;
  }

  /**
   * `records`, when given, is how many whole records `data` holds after
   * what it has of the file header, as the writer that made it counted
   * them: taken as they are when the walk is between records (nothing of a
   * record gathered), instead of walking them again.
   */
  push(data: Buffer, records?: number): void {
    if (this.stopped) return;
    try {
      if (this.other) {
        this.packets += this.other.push(data).length;
        return;
      }
      let off = 0;
      if (this.head) {
        const n = Math.min(PCAP_HEADER_LEN - this.head.length, data.length);
        this.head = Buffer.concat([this.head, data.subarray(0, n)]);
        if (this.head.length >= 4 && !isPcapMagic(this.head)) {
          this.other = new CaptureStreamParser(this.name);
          const h = this.head;
          this.head = null;
          this.packets += this.other.push(h).length;
          this.packets += this.other.push(data.subarray(n)).length;
          return;
        }
        if (this.head.length < PCAP_HEADER_LEN) return;
        const hdr = parsePcapHeader(this.head, this.name);
        this.walker = new PcapRecordWalker(hdr.littleEndian, pcapCapLenLimit(hdr));
        this.head = null;
        off = n;
      }
      if (records !== undefined && this.walker!.atRecordBoundary) {
        this.packets += records;
        return;
      }
      // What the parser refuses as a corrupt record header stops the walk: the count stays where it was, as with the parser.
      if (!this.walker!.push(data, off, this.onRecord)) this.stopped = true;
    } catch {
      this.stopped = true;
    }
  }
}
