import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync, writevSync } from 'node:fs';
import { Dissector } from '../../shared/decode/dissector';
import { corruptRecord, PcapHeader, parsePcapHeader, PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN, pcapCapLenLimit, pcapRecordIn, scanPcapRecords } from '../../shared/pcap/pcap';
import { correlationForScan, icidOf, ParseSipOptions, parseSip, parseSipScanned, sdpFromBody, sessionIdOf, sessionRemoteOf } from '../../shared/sip/parse';
import type { SdpInfo, SipMessage } from '../../shared/sip/types';
import { ipv4Text } from '../../shared/decode/ip';
import { byteTexts, latin1 } from '../../shared/sip/intern';
import type { PacketRecord } from '../../shared/pcap/types';
import type { DecodedPacket, TransportMessage } from '../../shared/decode/types';
import { isRtcp } from '../../shared/rtp/stats';
import {
  DIALOGS_PER_BLOCK, FOOTER_FLAG, FOOTER_LEN, FOOTER_MAGIC, INDEX_HEADER_LEN, INDEX_MAGIC, INDEX_VERSION, MessageRecord,
  NO_ADDRESS, PACKET_ENTRY_LEN, PKT_FLAG, REC, RECORD_PREFIX_LEN,
} from './format';
import { IndexState } from './state';
import { binaryRecordSdp } from './message-binary';
import { DialogKeys } from './dialog-keys';
import { FLOW_KIND, FlowTableBuilder, payloadKind, payloadSsrc } from './flows';
import { isHepSegment } from '../ring/layout';
import {
  BATCH_CORRUPT, BATCH_FULL, BATCH_HEAD, BATCH_OUT_LEN, BATCH_RECORDS, BATCH_STOP, BATCH_USED, ENTRY_CAPLEN, ENTRY_FAST, ENTRY_NSEC, ENTRY_OFF,
  ENTRY_REC, ENTRY_REC_LEN, BATCH_REC_BYTES,
  ENTRY_SCAN, ENTRY_SEC, IndexAddon, indexAddon, SCAN_DPORT, SCAN_IP, SCAN_LENGTH, SCAN_LINE_COUNT, SCAN_LINES, SCAN_OUT_LEN,
  SCAN_PAYLOAD, SCAN_SIP, SCAN_SPORT, SCAN_DEC, DEC_OK, DEC_CALL_ID, DEC_CSEQ, DEC_RURI_USER, DEC_FROM_USER, DEC_TO_USER, DEC_REASON,
  DEC_STATUS, DEC_CORRELATION, DEC_SESSION_ID, DEC_CHARGING_VECTOR, DEC_CONTENT_TYPE, DEC_BODY_END, DEC_PAI_COUNT, DEC_PAI_USER_COUNT,
  DEC_PAI_USERS, DEC_METHOD_END, SCAN_START, SCAN_HEADER_LEN,
} from './native-scan';

export interface IndexerOptions {
  /**
   * Journal as packets are indexed (default). Off for a segment indexed in
   * one go (import, rebuild): nothing is written until seal().
   */
  journal?: boolean;
  /** Header carrying a correlation key (e.g. X-CID); an `xref` parameter is used when it is absent. */
  correlationHeader?: string;
  /**
   * Told of every SIP message indexed, in capture order (the live indexer's
   * counters and statistics, the live follows, HEP out), with its bytes (a
   * view valid only during the call).
   */
  onMessage?: (m: MessageRecord, ix: SegmentIndexer, bytes: Buffer) => void;
  /** Told of every UDP packet that is RTCP (HEP out's --hep-out-rtcp); the payload is a view valid only during the call. */
  onRtcp?: (d: DecodedPacket, tsSec: number, tsNsec: number) => void;
  /** Flows a segment keeps at most before its RTP is left to the scan (agent/index/flows.ts; default MAX_FLOWS). */
  maxFlows?: number;
  /**
   * Whole IPv4 UDP SIP packets (Ethernet, Linux cooked) are scanned by the native addon when it is
   * built (default); false: every packet takes the JS path (the tests that
   * compare both). The index is the same either way.
   */
  nativeScan?: boolean;
}

/** The native scan's output: indexing is synchronous, so one serves every indexer of a thread. */
const scanOut = new Int32Array(SCAN_OUT_LEN);
/**
 * The batch scan's output (scanRecords), one a thread but for an indexer that runs while another's batch is
 * being read (from an onMessage): that one gets its own (batchBusy).
 */
const sharedBatch = new Int32Array(BATCH_OUT_LEN);
/**
 * The journal records the batch scan writes (ENTRY_REC) go straight into the message arena's chunk, at least
 * this much room a batch (a batch that fills it leaves the rest to JS); an indexer run from another's onMessage
 * has them written into a buffer of its own and copies them.
 */
const BATCH_RECORDS_MIN = 32 * 1024;
const BATCH_RECORDS_OWN = 512 * 1024;
let batchBusy = false;

const READ_CHUNK = 4 * 1024 * 1024;

/** The decoded extent at o[k], o[k + 1] (in the message at buf[at]) as a string; null when absent (start -1). */
function extent(buf: Buffer, at: number, o: Int32Array, k: number): string | null {
  const s = o[k];
  return s < 0 ? null : latin1(buf, at + s, at + o[k + 1]);
}

/**
 * extent() for a value the record keeps (ASCII: the scan checked), found again from its bytes (byteTexts): a
 * dialog's messages repeat its Call-ID, users and CSeq.
 */
function kept(buf: Buffer, at: number, o: Int32Array, k: number): string | null {
  const s = o[k];
  return s < 0 ? null : byteTexts.get(buf, at + s, at + o[k + 1]);
}

function indexHeader(): Buffer {
  const head = Buffer.alloc(INDEX_HEADER_LEN);
  INDEX_MAGIC.copy(head, 0);
  head.writeUInt32LE(INDEX_VERSION, 8);
  return head;
}

function recordPrefix(type: number, bodyLength: number): Buffer {
  const prefix = Buffer.allocUnsafe(RECORD_PREFIX_LEN);
  prefix.writeUInt32LE(bodyLength + 1, 0);
  prefix[4] = type;
  return prefix;
}

export function recordBytes(type: number, body: Buffer): Buffer {
  return Buffer.concat([recordPrefix(type, body.length), body]);
}

/**
 * Builds the index of one segment, incrementally: `catchUp()` indexes the
 * whole records written since the last call and appends them to the journal,
 * so the newest segment is queryable while the capture writes it. `seal()`
 * adds the lookup sections once the segment is closed.
 *
 * Reassembly state (IP fragments, TCP streams) lives in this object; an
 * indexer that restarts rebuilds the segment's index from its first byte.
 */
export class SegmentIndexer {
  readonly state: IndexState = new IndexState();
  private readonly dissector = new Dissector();
  /** -1 when the index is kept in memory only (a query indexing a segment it may not write). */
  private idxFd: number;
  private idxPos = 0;
  private header: PcapHeader | null = null;
  private headerBytes: Buffer | null = null;
  // Grown to the rounds' size (at most READ_CHUNK but for a bigger record): a query completing a live segment reads a small tail.
  private readBuf = Buffer.alloc(0);
  /** The segment bytes being indexed (while catchUp() scans them) and their file offset. */
  private scan: { buf: Buffer; base: number } | null = null;
  private flushedPackets = 0;
  private flushedAddresses = 0;
  private flushedMessages = 0;
  private sealed = false;
  messagesWithoutCallId = 0;
  /** Packets the native scan read (the rest took the JS path). */
  nativeScanned = 0;
  /** Of those, the messages whose values the scan decoded too (DEC_OK). */
  nativeDecoded = 0;
  /** Of those, the messages whose journal record the scan wrote (ENTRY_REC). */
  nativeRecords = 0;
  /** Where the current batch's records were written in the arena (chunk, offset of its first); -1: in a buffer of its own. */
  private inPlaceChunk = 0;
  private inPlaceStart = -1;
  // Made once: parseSip runs for every message.
  private readonly parseWhole: ParseSipOptions;
  /** The correlation header's name for the native scan, which then decodes the values too; null: it does not. */
  private readonly scanCorrelation: Buffer | null;
  private readonly parseCut: ParseSipOptions;
  corruptAt: number | null = null;
  /** The messages' dialogs and lookup keys, gathered as they are indexed, for seal(). */
  private keys = new DialogKeys();
  /** The segment is the HEP stream's: its messages are marked so. */
  readonly viaHep: boolean;
  /**
   * Whether seal() writes the flows: not for an indexer that resumed a
   * replayed journal, whose flows may lack packets (a journal written before
   * flows were) or have some without their RTP kind and SSRC (see below).
   */
  private readonly sealFlows: boolean;
  private readonly scanner: IndexAddon | null;
  /**
   * With `indexPath` null nothing is written. `resume` continues from a
   * replayed journal: only the segment's bytes after it are indexed (IP and
   * TCP reassembly across that boundary is not possible and is skipped).
   */
  constructor(
    readonly segmentPath: string,
    readonly indexPath: string | null,
    private readonly opts: IndexerOptions = {},
    resume?: { state: IndexState; segmentHeader: Buffer },
  ) {
    if (resume) {
      this.state = resume.state;
      this.header = parsePcapHeader(resume.segmentHeader, segmentPath);
      this.headerBytes = resume.segmentHeader;
      this.flushedPackets = this.state.packetCount;
      this.flushedAddresses = this.state.addresses.length;
      this.flushedMessages = this.state.messages.count;
      for (let i = 0; i < this.state.messages.count; i++) this.keys.add(this.state.messages.message(i));
    }
    this.viaHep = isHepSegment(segmentPath);
    this.sealFlows = !resume;
    if (!resume) this.state.flows = new FlowTableBuilder(opts.maxFlows);
    else if (this.state.flows) {
      // The journal's flows end at its last flow record: the packets replayed after it join them from their entries
      // (their payloads are not at hand: kind OTHER, which the selection does not read).
      const fl = this.state.flows;
      const t = this.state.packetEntries();
      for (let ord = fl.through; ord < this.state.packetCount; ord++) {
        const p = ord * PACKET_ENTRY_LEN;
        const src = t.readUInt32LE(p + 12);
        const dst = t.readUInt32LE(p + 16);
        if (t[p + 24] !== 17 || t[p + 25] & PKT_FLAG.SIP || src === NO_ADDRESS || dst === NO_ADDRESS) continue;
        fl.add(ord, src, t.readUInt16LE(p + 20), dst, t.readUInt16LE(p + 22), FLOW_KIND.OTHER, 0, t.readUInt32LE(p + 4), t.readUInt32LE(p + 8));
      }
    }
    this.scanner = opts.nativeScan === false ? null : indexAddon();
    this.parseWhole = { correlationHeader: opts.correlationHeader, truncated: false, allHeaders: false };
    this.scanCorrelation = correlationForScan(opts.correlationHeader);
    this.parseCut = { ...this.parseWhole, truncated: true };
    this.idxFd = indexPath === null || opts.journal === false ? -1 : openSync(indexPath, 'w');
    this.write(indexHeader());
  }

  private write(buf: Buffer): void {
    if (this.idxFd < 0) return;
    let done = 0;
    while (done < buf.length) done += writeSync(this.idxFd, buf, done, buf.length - done, this.idxPos + done);
    this.idxPos += buf.length;
  }

  /** Indexes every whole record now in the segment; returns how many packets were added. */
  catchUp(): number {
    if (this.sealed) return 0;
    const before = this.state.packetCount;
    const fd = openSync(this.segmentPath, 'r');
    try {
      const size = fstatSync(fd).size;
      if (!this.header) {
        if (size < PCAP_HEADER_LEN) return 0;
        const hb = Buffer.alloc(PCAP_HEADER_LEN);
        readSync(fd, hb, 0, PCAP_HEADER_LEN, 0);
        this.header = parsePcapHeader(hb, this.segmentPath);
        this.headerBytes = hb;
        this.state.indexedBytes = PCAP_HEADER_LEN;
        this.write(recordBytes(REC.SEGMENT, hb));
      }
      const header = this.header;
      while (this.state.indexedBytes < size && this.corruptAt === null) {
        const want = Math.min(READ_CHUNK, size - this.state.indexedBytes);
        if (want > this.readBuf.length) this.readBuf = Buffer.allocUnsafe(want);
        const got = readSync(fd, this.readBuf, 0, want, this.state.indexedBytes);
        if (got <= 0) break;
        const chunk = this.readBuf.subarray(0, got);
        let used: number;
        this.scan = { buf: chunk, base: this.state.indexedBytes };
        try {
          used = this.indexRecords(chunk, this.state.indexedBytes, header);
        } catch {
          // A corrupt record header (e.g. after a torn write that was later
          // appended to) ends what can be indexed of this segment.
          this.corruptAt = this.state.indexedBytes;
          break;
        } finally {
          this.scan = null;
        }
        if (used === 0) {
          // Only a partial record is left: either still being written, or a
          // record bigger than our buffer.
          if (want === READ_CHUNK && got === want) this.readBuf = Buffer.allocUnsafe(this.readBuf.length * 2);
          else break;
        }
        this.state.indexedBytes += used;
      }
    } finally {
      closeSync(fd);
    }
    this.flush();
    return this.state.packetCount - before;
  }

  /**
   * Indexes a record its caller has just written to the segment (ring
   * import), so that the segment is not read back: `segmentHeader` is the
   * segment's PCAP header (given with the first record), `rec` the record as
   * the segment holds it (its offset there, its time at the segment's
   * resolution). Not mixed with catchUp() until every record written is given.
   */
  indexWritten(segmentHeader: Buffer, rec: PacketRecord): void {
    if (!this.header) {
      this.header = parsePcapHeader(segmentHeader, this.segmentPath);
      this.headerBytes = segmentHeader;
      this.state.indexedBytes = PCAP_HEADER_LEN;
      this.write(recordBytes(REC.SEGMENT, segmentHeader));
    }
    if (rec.fileOffset !== this.state.indexedBytes) throw new Error(`${this.segmentPath}: record at ${rec.fileOffset} given after ${this.state.indexedBytes} bytes`);
    this.indexRecord(rec);
    this.state.indexedBytes = rec.fileOffset + PCAP_RECORD_HEADER_LEN + rec.capLen;
  }

  /**
   * Indexes whole records its caller has just written to the segment at `fileOffset` from `bytes` (ring
   * import's copy of records that needed no rewriting), as catchUp() would read them back. Mixes with
   * indexWritten(): each continues where the other stopped.
   */
  indexWrittenRecords(segmentHeader: Buffer, bytes: Buffer, fileOffset: number): void {
    if (!this.header) {
      this.header = parsePcapHeader(segmentHeader, this.segmentPath);
      this.headerBytes = segmentHeader;
      this.state.indexedBytes = PCAP_HEADER_LEN;
      this.write(recordBytes(REC.SEGMENT, segmentHeader));
    }
    if (fileOffset !== this.state.indexedBytes) throw new Error(`${this.segmentPath}: records at ${fileOffset} given after ${this.state.indexedBytes} bytes`);
    this.scan = { buf: bytes, base: fileOffset };
    let used: number;
    try {
      used = this.indexRecords(bytes, fileOffset, this.header);
    } finally {
      this.scan = null;
    }
    if (used !== bytes.length) throw new Error(`${this.segmentPath}: ${bytes.length - used} bytes at ${fileOffset + used} are not whole records`);
    this.state.indexedBytes = fileOffset + used;
  }

  /**
   * The record at file offset `offset` when it is among the bytes being
   * indexed now (from onMessage: the live follows take a message's packets
   * without reading them back); its data is a view valid only during the
   * call. Null otherwise.
   */
  recordInScan(offset: number): PacketRecord | null {
    const s = this.scan;
    if (!s || !this.header || offset < s.base) return null;
    return pcapRecordIn(s.buf, offset - s.base, offset, this.header, this.segmentPath);
  }

  /**
   * Indexes the whole records of `buf` (file offset `base`, on a record boundary); returns the bytes they
   * take. With the addon, the record walk and the scan of each frame are native, many records a call, and
   * the records it did not claim take the JS path (indexRecord) in their turn.
   */
  private indexRecords(buf: Buffer, base: number, header: PcapHeader): number {
    const sc = this.scanner;
    if (sc === null) return scanPcapRecords(buf, base, header, (rec) => this.indexRecord(rec));
    const own = batchBusy;
    const o = own ? new Int32Array(BATCH_OUT_LEN) : sharedBatch;
    const recs = own ? Buffer.allocUnsafe(BATCH_RECORDS_OWN) : null;
    batchBusy = true;
    try {
      return this.walkBatches(sc, o, recs, buf, base, header);
    } finally {
      if (!own) batchBusy = false;
    }
  }

  /** `own`: the records buffer of an indexer run from another's onMessage (copied from); null: the arena's chunk. */
  private walkBatches(sc: IndexAddon, o: Int32Array, own: Buffer | null, buf: Buffer, base: number, header: PcapHeader): number {
    const limit = pcapCapLenLimit(header);
    const arena = this.state.messages;
    let off = 0;
    for (;;) {
      const recs = own ?? arena.batchRoom(BATCH_RECORDS_MIN);
      // Each record adds one packet: the batch's records are the packets from packetCount on.
      sc.scanRecords(buf, off, header.littleEndian, header.nanos, limit, header.linkType, o, this.scanCorrelation, recs, this.state.packetCount, this.viaHep);
      if (own === null) {
        this.inPlaceChunk = arena.chunkIndex;
        this.inPlaceStart = arena.batchWritten(o[BATCH_REC_BYTES]);
      } else this.inPlaceStart = -1;
      const n = o[BATCH_RECORDS];
      for (let i = 0, e = BATCH_HEAD; i < n; i++) {
        const at = o[e + ENTRY_OFF];
        if (o[e + ENTRY_FAST] === 1) {
          this.indexScanned(
            buf, at + PCAP_RECORD_HEADER_LEN, base + at, o[e + ENTRY_SEC] >>> 0, o[e + ENTRY_NSEC], o[e + ENTRY_CAPLEN], o, e + ENTRY_SCAN,
            recs, o[e + ENTRY_REC], o[e + ENTRY_REC_LEN],
          );
          e += ENTRY_SCAN + SCAN_LINES + 4 * o[e + ENTRY_SCAN + SCAN_LINE_COUNT];
        } else {
          this.indexRecord(pcapRecordIn(buf, at, base + at, header, this.segmentPath)!, false);
          e += ENTRY_SCAN;
        }
      }
      off = o[BATCH_USED];
      const stop = o[BATCH_STOP];
      if (stop === BATCH_CORRUPT) {
        const cap = header.littleEndian ? buf.readUInt32LE(off + 8) : buf.readUInt32BE(off + 8);
        const orig = header.littleEndian ? buf.readUInt32LE(off + 12) : buf.readUInt32BE(off + 12);
        throw corruptRecord(this.segmentPath, base + off, cap, orig, limit);
      }
      if (stop !== BATCH_FULL) return off;
    }
  }

  /** `scan` false: the native scan has already declined the record. */
  private indexRecord(rec: PacketRecord, scan = true): void {
    const st = this.state;
    const ordinal = st.packetCount;
    const cut = rec.capLen < rec.origLen;
    if (scan && !cut && this.scanner !== null && this.scanner.scan(rec.data, scanOut, rec.linkType, this.scanCorrelation) === 1) {
      this.indexScanned(rec.data, 0, rec.fileOffset, rec.tsSec, rec.tsNsec, rec.capLen, scanOut, 0, null, -1, 0);
      return;
    }
    const r = this.dissector.push(ordinal, rec.linkType, rec.data, rec.tsSec, cut);
    const d = r.decoded;
    let flags = 0;
    let src = NO_ADDRESS;
    let dst = NO_ADDRESS;
    let sport = 0;
    let dport = 0;
    let proto = 0;
    if (d) {
      if (d.ipVersion !== 0) {
        src = st.addressId(d.src);
        dst = st.addressId(d.dst);
      }
      sport = d.sport;
      dport = d.dport;
      proto = d.proto;
      if (d.fragment) flags |= PKT_FLAG.FRAGMENT;
    } else {
      flags |= PKT_FLAG.DECODE_FAILED;
    }
    if (r.messages.length > 0) flags |= PKT_FLAG.SIP;
    else if (this.opts.onRtcp && d && d.proto === 17 && !d.fragment && !this.viaHep && isRtcp(d.payload)) this.opts.onRtcp(d, rec.tsSec, rec.tsNsec);
    if (cut) flags |= PKT_FLAG.TRUNCATED;
    st.addPacket(rec.fileOffset, rec.tsSec, rec.tsNsec, src, dst, sport, dport, proto, flags, rec.capLen);
    // The packets the RTP selection considers (engine.ts): UDP, not SIP, both addresses known.
    const flows = st.flows;
    if (flows && proto === 17 && !(flags & PKT_FLAG.SIP) && src !== NO_ADDRESS && dst !== NO_ADDRESS) {
      const kind = d && !d.fragment ? payloadKind(d.payload) : 0;
      flows.add(ordinal, src, sport, dst, dport, kind, kind ? payloadSsrc(d!.payload, kind) : 0, rec.tsSec, rec.tsNsec);
    }
    for (const m of r.messages) this.indexMessage(m, rec);
  }

  /**
   * A whole IPv4 UDP packet of one SIP message the native scan read: indexed
   * as indexRecord and indexMessage index it from the JS dissector's reading.
   */
  private indexScanned(
    buf: Buffer, frame: number, fileOffset: number, tsSec: number, tsNsec: number, capLen: number, o: Int32Array, s: number,
    recs: Buffer | null, recAt: number, recLen: number,
  ): void {
    const st = this.state;
    // The frame at buf[frame]; its scan at o[s] (scan()'s layout); the message's journal record at recs[recAt] when the scan wrote it.
    const ordinal = st.packetCount;
    this.nativeScanned++;
    this.dissector.countUdpSip(tsSec);
    const srcText = ipv4Text(buf, frame + o[s + SCAN_IP] + 12);
    const dstText = ipv4Text(buf, frame + o[s + SCAN_IP] + 16);
    const src = st.addressId(srcText);
    const dst = st.addressId(dstText);
    const sport = o[s + SCAN_SPORT];
    const dport = o[s + SCAN_DPORT];
    st.addPacket(fileOffset, tsSec, tsNsec, src, dst, sport, dport, 17, PKT_FLAG.SIP, capLen);
    const at = frame + o[s + SCAN_PAYLOAD];
    if (o[s + SCAN_DEC + DEC_OK] === 1) {
      this.nativeDecoded++;
      this.indexDecoded(buf, at, o[s + SCAN_LENGTH], o, s, srcText, dstText, sport, dport, ordinal, tsSec, tsNsec, recs, recAt, recLen);
      return;
    }
    const bytes = buf.subarray(at, at + o[s + SCAN_LENGTH]);
    const sip = parseSipScanned(bytes, this.parseWhole, o, s + SCAN_SIP);
    this.indexParsed(sip, srcText, dstText, sport, dport, 17, [ordinal], false, bytes, tsSec, tsNsec);
  }

  /**
   * A scanned message whose values the scan decoded too (DEC_*): its record as indexParsed makes it from
   * parseSip's reading, with strings cut from the bytes only for what the record keeps.
   */
  private indexDecoded(
    buf: Buffer, at: number, len: number, o: Int32Array, s: number, srcText: string, dstText: string, sport: number, dport: number,
    ordinal: number, tsSec: number, tsNsec: number, recs: Buffer | null, recAt: number, recLen: number,
  ): void {
    const d = s + SCAN_DEC;
    const cs = o[d + DEC_CALL_ID];
    if (cs < 0) {
      this.messagesWithoutCallId++;
      return;
    }
    const methodEnd = o[d + DEC_METHOD_END];
    const rec: MessageRecord = {
      p: [ordinal],
      t: [tsSec, tsNsec],
      src: srcText,
      dst: dstText,
      sp: sport,
      dp: dport,
      pr: 17,
      m: methodEnd < 0 ? null : byteTexts.get(buf, at + o[s + SCAN_START], at + methodEnd),
      s: methodEnd < 0 ? o[d + DEC_STATUS] : null,
      c: byteTexts.get(buf, at + cs, at + o[d + DEC_CALL_ID + 1]),
      q: kept(buf, at, o, d + DEC_CSEQ),
      ru: kept(buf, at, o, d + DEC_RURI_USER),
      fu: kept(buf, at, o, d + DEC_FROM_USER),
      tu: kept(buf, at, o, d + DEC_TO_USER),
      n: len,
    };
    if (o[d + DEC_REASON] >= 0) rec.r = byteTexts.get(buf, at + o[d + DEC_REASON], at + o[d + DEC_REASON + 1]);
    if (this.viaHep) rec.h = 1;
    if (o[d + DEC_PAI_COUNT] > 0) {
      const pu: string[] = [];
      for (let i = 0, k = d + DEC_PAI_USERS; i < o[d + DEC_PAI_USER_COUNT]; i++, k += 2) pu.push(byteTexts.get(buf, at + o[k], at + o[k + 1]));
      rec.pu = pu;
    }
    if (o[d + DEC_CORRELATION] >= 0) rec.x = byteTexts.get(buf, at + o[d + DEC_CORRELATION], at + o[d + DEC_CORRELATION + 1]);
    const session = extent(buf, at, o, d + DEC_SESSION_ID);
    if (session !== null) {
      const si = sessionIdOf(session);
      const sr = sessionRemoteOf(session);
      if (si) rec.si = si;
      if (sr) rec.sr = sr;
    }
    const pcv = extent(buf, at, o, d + DEC_CHARGING_VECTOR);
    if (pcv !== null) {
      const ic = icidOf(pcv);
      if (ic) rec.ic = ic;
    }
    const headerLength = o[s + SCAN_HEADER_LEN];
    const bodyEnd = o[d + DEC_BODY_END];
    if (o[d + DEC_CONTENT_TYPE] >= 0 && bodyEnd > headerLength) {
      // The SDP the scan read for the record it wrote, read back from that record rather than the body again.
      if (recAt >= 0) binaryRecordSdp(recs!, recAt + RECORD_PREFIX_LEN, recAt + recLen, rec);
      else this.addSdp(rec, sdpFromBody(extent(buf, at, o, d + DEC_CONTENT_TYPE)!, buf.subarray(at + headerLength, at + bodyEnd)));
    }
    // The scan wrote this record's bytes (ENTRY_REC) when it needed nothing read here (no Session-ID or icid, no multipart).
    if (recAt >= 0) {
      this.nativeRecords++;
      if (this.inPlaceStart >= 0) this.state.messages.addInPlace(this.inPlaceChunk, this.inPlaceStart + recAt, recLen);
      else this.state.messages.addRecord(recs!, recAt, recLen);
    } else this.state.messages.add(rec);
    this.keys.add(rec);
    const onMessage = this.opts.onMessage;
    if (onMessage) onMessage(rec, this, buf.subarray(at, at + len));
  }

  /** The record's media endpoints, RTCP endpoints and payload types from its SDP. */
  private addSdp(rec: MessageRecord, sdp: SdpInfo | null): void {
    if (!sdp) return;
    const eps: Array<[string, number]> = [];
    const rtcp: Array<[string, number]> = [];
    const map: Array<[number, string]> = [];
    for (const m of sdp.media) {
      if (!m.addr || m.port === 0) continue;
      eps.push([m.addr, m.port]);
      const ra = m.rtcpAddr ?? m.addr;
      if (m.rtcpPort !== null && !(ra === m.addr && m.rtcpPort === m.port + 1)) rtcp.push([ra, m.rtcpPort]);
      for (const e of m.rtpmap) if (!map.some((x) => x[0] === e[0])) map.push(e);
    }
    if (eps.length > 0) rec.sdp = eps;
    if (rtcp.length > 0) rec.rc = rtcp;
    if (map.length > 0) rec.pm = map;
  }

  private indexMessage(tm: TransportMessage, last: PacketRecord): void {
    const sip = parseSip(tm.bytes, tm.truncated ? this.parseCut : this.parseWhole);
    if (!sip) return;
    this.indexParsed(sip, tm.src, tm.dst, tm.sport, tm.dport, tm.proto, tm.packets, tm.truncated, tm.bytes, last.tsSec, last.tsNsec);
  }

  private indexParsed(
    sip: SipMessage, srcText: string, dstText: string, sport: number, dport: number, proto: number,
    packets: number[], truncated: boolean, bytes: Buffer, tsSec: number, tsNsec: number,
  ): void {
    if (!sip.callId) {
      this.messagesWithoutCallId++;
      return;
    }
    const rec: MessageRecord = {
      p: packets,
      t: [tsSec, tsNsec],
      src: srcText,
      dst: dstText,
      sp: sport,
      dp: dport,
      pr: proto,
      m: sip.method,
      s: sip.status,
      c: sip.callId,
      q: sip.cseq ? `${sip.cseq.seq} ${sip.cseq.method}` : null,
      ru: sip.ruriUser,
      fu: sip.from?.user ?? null,
      tu: sip.to?.user ?? null,
      n: bytes.length,
    };
    if (sip.reason) rec.r = sip.reason;
    if (truncated) rec.tr = 1;
    if (this.viaHep) rec.h = 1;
    if (sip.pai.length > 0) {
      const pu: string[] = [];
      for (const p of sip.pai) if (p.user) pu.push(p.user);
      rec.pu = pu;
    }
    if (sip.correlation) rec.x = sip.correlation;
    if (sip.sessionId) rec.si = sip.sessionId;
    if (sip.sessionRemote) rec.sr = sip.sessionRemote;
    if (sip.icid) rec.ic = sip.icid;
    this.addSdp(rec, sip.sdp);
    // Written straight into the off-heap records: the object is garbage once onMessage returns.
    this.state.messages.add(rec);
    this.keys.add(rec);
    this.opts.onMessage?.(rec, this, bytes);
  }

  /** Appends what was indexed since the last flush to the journal. */
  private flush(): void {
    if (this.idxFd < 0) return;
    const st = this.state;
    // Records go out in one writev, each from where it already is: no copy
    // of the packet entries, no concatenation of the parts.
    const parts: Buffer[] = [];
    if (st.addresses.length > this.flushedAddresses) {
      const first = Buffer.alloc(4);
      first.writeUInt32LE(this.flushedAddresses, 0);
      const names = Buffer.from(st.addresses.slice(this.flushedAddresses).join('\0'), 'latin1');
      parts.push(recordPrefix(REC.ADDRESSES, first.length + names.length), first, names);
      this.flushedAddresses = st.addresses.length;
    }
    if (st.packetCount > this.flushedPackets) {
      const entries = st.packetEntries(this.flushedPackets);
      parts.push(recordPrefix(REC.PACKETS, entries.length), entries);
      this.flushedPackets = st.packetCount;
    }
    const msgs = st.messages;
    if (msgs.count > this.flushedMessages) parts.push(...msgs.records(this.flushedMessages, msgs.count));
    this.flushedMessages = msgs.count;
    if (parts.length === 0) return;
    const flows = st.flows?.journal(st.packetCount) ?? null;
    if (flows) parts.push(recordPrefix(REC.FLOWS, flows.length), flows);
    const cp = Buffer.alloc(8);
    cp.writeDoubleLE(st.indexedBytes, 0);
    parts.push(recordBytes(REC.CHECKPOINT, cp));
    this.writeParts(parts);
  }

  private writeParts(parts: Buffer[]): void {
    let total = 0;
    for (const p of parts) total += p.length;
    let done = writevSync(this.idxFd, parts, this.idxPos);
    // A short writev (rare: a signal, a full disk) is finished part by part.
    if (done < total) {
      let skip = done;
      for (const p of parts) {
        if (skip >= p.length) {
          skip -= p.length;
          continue;
        }
        const rest = p.subarray(skip);
        skip = 0;
        let w = 0;
        while (w < rest.length) w += writeSync(this.idxFd, rest, w, rest.length - w, this.idxPos + done + w);
        done += rest.length;
      }
    }
    this.idxPos += total;
  }

  /** Writes the lookup sections and the footer; the segment must be complete. */
  seal(): void {
    if (this.sealed) return;
    this.catchUp();
    const tmpPath = this.indexPath === null ? null : `${this.indexPath}.seal-${process.pid}`;
    try {
      this.sealTo(tmpPath);
    } catch (e) {
      // A full disk or an I/O error mid-seal: the journal stays the index (a
      // later open reseals it); the half-written sealed file must not stay
      // beside it, one per failed attempt.
      if (tmpPath !== null && !this.sealed) {
        if (this.idxFd >= 0) {
          try {
            closeSync(this.idxFd);
          } catch {
            /* already failing: the first error is the one to report */
          }
          this.idxFd = -1;
        }
        try {
          rmSync(tmpPath, { force: true });
        } catch {
          /* not a file we made (a directory in the way): left as it is */
        }
      }
      throw e;
    }
  }

  private sealTo(tmpPath: string | null): void {
    const st = this.state;
    const msgs = st.messages;
    const dialogIds = this.keys.ids;
    const { order: dialogOrder, ends: dialogEnds } = this.keys.dialogMessages();
    const dialogCount = dialogIds.length;
    // The sealed file is written afresh beside the journal and renamed over
    // it: the journal's messages would otherwise be stored twice. Readers
    // holding the journal open keep reading their (unlinked) copy.
    if (tmpPath !== null) {
      if (this.idxFd >= 0) closeSync(this.idxFd);
      this.idxFd = -1; // closed: a failing open below must not leave the number to be closed again
      this.idxFd = openSync(tmpPath, 'w');
      this.idxPos = 0;
      this.write(indexHeader());
      if (this.headerBytes) this.write(recordBytes(REC.SEGMENT, this.headerBytes));
    }

    const keyTable = this.keys.keyTable();
    const numberTable = this.keys.numberTable();

    const offsets: number[] = [];
    // Sections are megabytes: their prefix is written apart rather than copied in front of them.
    const section = (type: number, ...body: Buffer[]): number => {
      let len = 0;
      for (const b of body) len += b.length;
      offsets.push(this.idxPos + RECORD_PREFIX_LEN);
      this.write(recordPrefix(type, len));
      for (const b of body) this.write(b);
      return len;
    };

    section(REC.PACKET_TABLE, st.packetEntries());
    const addrBody = Buffer.from(JSON.stringify(st.addresses), 'utf8');
    section(REC.ADDRESS_TABLE, addrBody);
    section(REC.KEY_TABLE, keyTable.body);
    section(REC.NUMBER_TABLE, numberTable.body);
    // Dialog records are most of an index. They are stored as deflated
    // blocks of DIALOGS_PER_BLOCK dialogs (one deflate per block rather than
    // per dialog), each dialog its message count and its messages' binary
    // records, copied from where the journal wrote them from. The addon's
    // deflate whether or not the scan is native, so that both paths seal the
    // same bytes; without the addon, node:zlib's.
    const dialogLen = section(REC.DIALOGS, ...msgs.dialogSection(dialogOrder, dialogEnds, DIALOGS_PER_BLOCK, this.scanner ?? indexAddon()));
    const flowBody = this.sealFlows ? (st.flows?.encode() ?? null) : null;
    if (flowBody) section(REC.FLOW_TABLE, flowBody);

    const f = Buffer.alloc(FOOTER_LEN);
    FOOTER_MAGIC.copy(f, 0);
    f.writeDoubleLE(st.indexedBytes, 8);
    f.writeUInt32LE(st.packetCount, 16);
    f.writeUInt32LE(msgs.count, 20);
    f.writeUInt32LE(dialogCount, 24);
    f.writeUInt32LE(st.firstSec, 28);
    f.writeUInt32LE(st.firstNsec, 32);
    f.writeUInt32LE(st.lastSec, 36);
    f.writeUInt32LE(st.lastNsec, 40);
    offsets.slice(0, 5).forEach((o, i) => f.writeDoubleLE(o, 44 + 8 * i));
    f.writeUInt32LE(keyTable.count, 84);
    f.writeUInt32LE(numberTable.count, 88);
    f.writeUInt32LE(addrBody.length, 92);
    f.writeUInt32LE(dialogLen, 96);
    f.writeUInt32LE(FOOTER_FLAG.DIALOG_BLOCKS | FOOTER_FLAG.LEG_KEYS | FOOTER_FLAG.BINARY_RECORDS | (flowBody ? FOOTER_FLAG.FLOWS : 0), 100);
    if (flowBody) {
      f.writeDoubleLE(offsets[5], 104);
      f.writeUInt32LE(flowBody.length, 112);
    }
    this.write(f);
    this.sealed = true;
    msgs.release();
    // Emptied rather than replaced: a store to the field would deoptimize the code that read it as constant.
    this.keys.clear();
    if (this.idxFd >= 0) closeSync(this.idxFd);
    if (tmpPath !== null && this.indexPath !== null) renameSync(tmpPath, this.indexPath);
  }

  /** The segment's PCAP header, once read. */
  get pcapHeader(): PcapHeader | null {
    return this.header;
  }

  /** Closes without sealing (the segment is still being written by someone else, or we are stopping). */
  close(): void {
    if (!this.sealed) {
      this.sealed = true;
      if (this.idxFd >= 0) closeSync(this.idxFd);
    }
  }

  stats() {
    return { ...this.dissector.stats(), messagesWithoutCallId: this.messagesWithoutCallId, nativeScanned: this.nativeScanned, nativeDecoded: this.nativeDecoded, nativeRecords: this.nativeRecords };
  }
}
