import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import {
  DIALOGS_PER_BLOCK, DialogRecord, FOOTER_FLAG, FOOTER_LEN, FOOTER_MAGIC, INDEX_HEADER_LEN, INDEX_MAGIC, IndexCorruptError, KEY_ENTRY_LEN,
  dialogBlockBound, MAX_RECORD_LEN, MessageRecord, NUMBER_ENTRY_LEN, NUMBER_KEY_LEN, PACKET_ENTRY_LEN, REC, RECORD_PREFIX_LEN,
  KeyKind, LegKeyKind, keyHash, messageHasLegKey, messageHasNumber, numberKey,
} from './format';
import { IndexState } from './state';
import { FlowTable, FlowTableBuilder, decodeOrdinals, flowEntriesLength } from './flows';
import { readBinaryRecord } from './message-binary';

/**
 * A pread costs from about 1 µs (bare metal) to 20 µs (a sandboxed kernel, as
 * measured here), as much as reading 3 to 60 KiB: counted as this many
 * entries (14 KiB). The whole packet table is read when the runs of wanted
 * entries would cost more, their preads so counted and their entries.
 */
const PACKET_READS_PER_TABLE = 512;
/** Entries wanted at most this many apart (28 KiB) are read in one pread, the entries between them with them. */
const PACKET_READ_GAP = 1024;

/**
 * Packet entries read at a time by a pass over much of a packet table (224
 * KiB): into one buffer that the passes share, where reading each segment's
 * whole table (5 MiB for a 64 MiB segment) as a fresh Buffer left a broad
 * query's garbage, and so its resident peak, growing with the segments.
 */
const PACKET_CHUNK = 8192;
/** The buffer a pass reads its chunks into: taken by a pass while it runs (one more is made for a pass inside another). */
let spareChunk: Buffer | null = null;

/** Key entries read around where a hash should be (8 KiB); see SealedIndex.keyWindow. */
const KEY_WINDOW = 1024;

/**
 * Number entries read at a time by the number table's binary search (4 KiB):
 * a search reads about log2(entries / NUMBER_PAGE) + 2 pages, where reading
 * the whole table (670 KiB a segment of the 10 GiB ring) and keeping it was
 * most of a number query's time and memory.
 */
const NUMBER_PAGE = Math.floor(4096 / NUMBER_ENTRY_LEN);

/**
 * Decoded dialogs kept, over all the open sealed indexes: the few a targeted
 * query reads twice (select, then collect) stay decoded. One bound for all,
 * not one an index: a broad query looks Call-IDs up in every segment of the
 * ring, and 256 an index (with a block of 32 each) kept 5 MiB of heap on a
 * ring of 16 segments, ten times that on the agent's default budget.
 */
const DIALOG_CACHE_MAX = 1024;
/** Oldest first out; keyed by the index's number * 2^32 + the dialog's. */
const decodedDialogs = new Map<number, DialogRecord>();
/** The last block a lookup inflated (a pass over all dialogs inflates its own), with its index's number. */
let lastBlock: { index: number; n: number; lines: BlockDialogs } | null = null;
/** A dialog block's dialogs: JSON lines (version 1) or views of their binary records (FOOTER_FLAG.BINARY_RECORDS). */
type BlockDialogs = string[] | Buffer[];
let indexNumbers = 0;

/** A binary dialog block's dialogs (u32 message count, then per message u32 length and record), as views; throws RangeError when they overrun it. */
function splitDialogs(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < data.length) {
    if (at + 4 > data.length) throw new RangeError('dialog cut short');
    const start = at;
    const n = data.readUInt32LE(at);
    at += 4;
    for (let k = 0; k < n; k++) {
      if (at + 4 > data.length) throw new RangeError('dialog cut short');
      at += 4 + data.readUInt32LE(at);
    }
    if (at > data.length) throw new RangeError('dialog cut short');
    out.push(data.subarray(start, at));
  }
  return out;
}

/** One binary dialog (a view splitDialogs made) decoded. */
function readBinaryDialog(d: Buffer): DialogRecord {
  const n = d.readUInt32LE(0);
  if (n === 0) throw new RangeError('dialog without messages');
  const msgs: MessageRecord[] = [];
  let at = 4;
  for (let k = 0; k < n; k++) {
    const len = d.readUInt32LE(at);
    msgs.push(readBinaryRecord(d, at + 4, at + 4 + len));
    at += 4 + len;
  }
  return { c: msgs[0].c, msgs };
}

/** What the query engine needs of one segment's index, sealed or not. */
export interface SegmentIndex {
  readonly sealed: boolean;
  /** Segment bytes the index covers. */
  readonly indexedBytes: number;
  readonly packetCount: number;
  readonly messageCount: number;
  readonly first: [number, number];
  readonly last: [number, number];
  dialogsByCallId(callId: string): DialogRecord[];
  dialogsByCorrelation(x: string): DialogRecord[];
  /** Dialogs a message of which carries the leg key (agent/query/legs.ts). */
  dialogsByLegKey(kind: LegKeyKind, value: string): DialogRecord[];
  /** Dialogs with a user part whose digits end with `digits`. */
  dialogsByNumber(digits: string): DialogRecord[];
  allDialogs(): DialogRecord[];
  /** The dialogs one by one: what a pass over all of them holds is one (allDialogs holds the segment's). */
  eachDialog(): Iterable<DialogRecord>;
  /** All packet entries (PACKET_ENTRY_LEN each), read whole and kept until releasePacketTable(): for tests; a pass over them uses packetChunks. */
  packetTable(): Buffer;
  /** Lets go of the packet table packetTable() read (28 bytes a packet): a pass over a whole ring must not hold every segment's. */
  releasePacketTable(): void;
  /**
   * The entries of packets [from, to) as consecutive chunks of at most
   * PACKET_CHUNK entries (the first at ordinal `first`): each chunk's buffer
   * is overwritten by the next, so keep nothing of it.
   */
  packetChunks(from?: number, to?: number): Iterable<PacketChunk>;
  /**
   * The entries of the given packets (ascending ordinals), one after the
   * other, into `into` when given (at least PACKET_ENTRY_LEN bytes a packet);
   * a sealed index reads only those when they are few, else their span in chunks.
   */
  packetEntries(ords: Uint32Array, into?: Buffer): Buffer;
  /** The segment's non-SIP UDP flows (agent/index/flows.ts); null when the index has none (sealed before flows were, a journal without them, or too many flows). */
  flowTable(): FlowTable | null;
  /** The packet ordinals of flow `i` of flowTable(), ascending. */
  flowPackets(i: number): Uint32Array;
  addresses(): string[];
  close(): void;
}

/** Entries of packets first .. first + count - 1, PACKET_ENTRY_LEN each from the start of `entries`. */
export interface PacketChunk {
  entries: Buffer;
  first: number;
  count: number;
}

function readInto(fd: number, b: Buffer, len: number, pos: number): Buffer {
  let got = 0;
  while (got < len) {
    const n = readSync(fd, b, got, len - got, pos + got);
    if (n <= 0) throw new Error(`short read at ${pos + got}`);
    got += n;
  }
  return b;
}

function readExactly(fd: number, len: number, pos: number): Buffer {
  return readInto(fd, Buffer.allocUnsafe(len), len, pos);
}

/** The buffer `into` for `n` entries, or a new one; checked, since a short one would be written past. */
function entriesBuffer(n: number, into?: Buffer): Buffer {
  if (!into) return Buffer.allocUnsafe(n * PACKET_ENTRY_LEN);
  if (into.length < n * PACKET_ENTRY_LEN) throw new RangeError(`packetEntries: ${into.length} bytes for ${n} entries`);
  return into.subarray(0, n * PACKET_ENTRY_LEN);
}

/**
 * Copies the entries of `ords` (ascending) that are in `c` into `out`, from
 * out entry k; the next k. Consecutive ordinals are copied as one range: a
 * broad query wants most of a segment's packets, and a Buffer#copy() per
 * 28-byte entry (its argument checks, a view made) cost more than the bytes.
 */
function copyFromChunk(c: PacketChunk, ords: Uint32Array, k: number, out: Buffer): number {
  const end = c.first + c.count;
  while (k < ords.length && ords[k] < end) {
    let j = k + 1;
    while (j < ords.length && ords[j] < end && ords[j] === ords[j - 1] + 1) j++;
    c.entries.copy(out, k * PACKET_ENTRY_LEN, (ords[k] - c.first) * PACKET_ENTRY_LEN, (ords[j - 1] - c.first + 1) * PACKET_ENTRY_LEN);
    k = j;
  }
  return k;
}

/** A sealed index, read lazily with small preads. */
export class SealedIndex implements SegmentIndex {
  readonly sealed = true;
  readonly indexedBytes: number;
  /** What one of its dialog blocks may inflate to (dialogBlockBound). */
  private readonly blockBound: number;
  readonly packetCount: number;
  readonly messageCount: number;
  readonly dialogCount: number;
  readonly first: [number, number];
  readonly last: [number, number];
  private readonly off: { packets: number; addresses: number; keys: number; numbers: number; dialogs: number };
  private readonly nKeys: number;
  private readonly nNumbers: number;
  private readonly addrLen: number;
  private readonly dialogsLen: number;
  private readonly legKeys: boolean;
  /** Its dialog blocks hold binary records (index version 2), not JSON lines. */
  private readonly binary: boolean;
  private readonly flowsAt: number | null;
  /** Bytes of the FLOW_TABLE section; 0 without one. */
  readonly flowSectionBytes: number;
  private flows: FlowTable | null = null;
  /** Its number in decodedDialogs and lastBlock. */
  private readonly number = ++indexNumbers;
  private keyTable: Buffer | null = null;
  private dialogOffsets: Buffer | null = null;
  private addressList: string[] | null = null;
  private packetBuf: Buffer | null = null;

  private constructor(private readonly fd: number, private readonly path: string, footer: Buffer) {
    this.indexedBytes = footer.readDoubleLE(8);
    this.blockBound = dialogBlockBound(this.indexedBytes);
    this.packetCount = footer.readUInt32LE(16);
    this.messageCount = footer.readUInt32LE(20);
    this.dialogCount = footer.readUInt32LE(24);
    this.first = [footer.readUInt32LE(28), footer.readUInt32LE(32)];
    this.last = [footer.readUInt32LE(36), footer.readUInt32LE(40)];
    this.off = {
      packets: footer.readDoubleLE(44),
      addresses: footer.readDoubleLE(52),
      keys: footer.readDoubleLE(60),
      numbers: footer.readDoubleLE(68),
      dialogs: footer.readDoubleLE(76),
    };
    this.nKeys = footer.readUInt32LE(84);
    this.nNumbers = footer.readUInt32LE(88);
    this.addrLen = footer.readUInt32LE(92);
    this.dialogsLen = footer.readUInt32LE(96);
    if (!(footer.readUInt32LE(100) & FOOTER_FLAG.DIALOG_BLOCKS)) throw new IndexCorruptError(path, 'older index layout');
    this.legKeys = (footer.readUInt32LE(100) & FOOTER_FLAG.LEG_KEYS) !== 0;
    this.binary = (footer.readUInt32LE(100) & FOOTER_FLAG.BINARY_RECORDS) !== 0;
    const hasFlows = (footer.readUInt32LE(100) & FOOTER_FLAG.FLOWS) !== 0;
    this.flowsAt = hasFlows ? footer.readDoubleLE(104) : null;
    this.flowSectionBytes = hasFlows ? footer.readUInt32LE(112) : 0;
  }

  /** Opens a sealed index; null when the file has no footer (a journal); throws IndexCorruptError when it lies. */
  static open(path: string): SealedIndex | null {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size < INDEX_HEADER_LEN) throw new IndexCorruptError(path, 'shorter than its header');
      const head = readExactly(fd, INDEX_HEADER_LEN, 0);
      if (!head.subarray(0, 8).equals(INDEX_MAGIC)) throw new IndexCorruptError(path, 'bad magic');
      if (size < INDEX_HEADER_LEN + FOOTER_LEN) {
        closeSync(fd);
        return null;
      }
      const footer = readExactly(fd, FOOTER_LEN, size - FOOTER_LEN);
      if (!footer.subarray(0, 8).equals(FOOTER_MAGIC)) {
        closeSync(fd);
        return null;
      }
      const ix = new SealedIndex(fd, path, footer);
      const end = size - FOOTER_LEN;
      const o = ix.off;
      const ok =
        o.packets + ix.packetCount * PACKET_ENTRY_LEN <= end &&
        o.addresses + ix.addrLen <= end &&
        o.keys + ix.nKeys * KEY_ENTRY_LEN <= end &&
        o.numbers + ix.nNumbers * NUMBER_ENTRY_LEN <= end &&
        o.dialogs + ix.dialogsLen <= end &&
        (ix.flowsAt === null || (ix.flowSectionBytes >= 8 && ix.flowsAt + ix.flowSectionBytes <= end));
      if (!ok) throw new IndexCorruptError(path, 'footer points outside the file');
      return ix;
    } catch (e) {
      try { closeSync(fd); } catch { /* already closed */ }
      throw e;
    }
  }

  private keys(): Buffer {
    return (this.keyTable ??= readExactly(this.fd, this.nKeys * KEY_ENTRY_LEN, this.off.keys));
  }

  /** The dialogs of block b: DIALOGS_PER_BLOCK (fewer in the last), JSON lines or binary. */
  private block(b: number, i: number): BlockDialogs {
    try {
      const nBlocks = Math.ceil(this.dialogCount / DIALOGS_PER_BLOCK);
      this.dialogOffsets ??= readExactly(this.fd, 8 + 4 * (nBlocks + 1), this.off.dialogs);
      const start = this.dialogOffsets.readUInt32LE(8 + 4 * b);
      const end = this.dialogOffsets.readUInt32LE(12 + 4 * b);
      if (end < start || end > this.dialogsLen) throw new RangeError('block outside its section');
      const raw = readExactly(this.fd, end - start, this.off.dialogs + start);
      let data: Buffer;
      try {
        // The footer does not say how big a block inflates to: a corrupt or hostile
        // one (deflate expands up to 1032:1) is stopped at the bound, not in memory.
        data = inflateRawSync(raw, { maxOutputLength: this.blockBound });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new IndexCorruptError(this.path, `dialog block ${b} inflates past ${this.blockBound} bytes`);
        throw e;
      }
      return this.binary ? splitDialogs(data) : data.toString('utf8').split('\n');
    } catch (e) {
      if (e instanceof IndexCorruptError) throw e;
      throw new IndexCorruptError(this.path, `dialog ${i} unreadable`);
    }
  }

  private parse(i: number, lines: BlockDialogs): DialogRecord {
    try {
      const line = lines[i % DIALOGS_PER_BLOCK];
      if (line === undefined) throw new RangeError('past its block');
      if (typeof line !== 'string') return readBinaryDialog(line);
      return JSON.parse(line) as DialogRecord;
    } catch {
      throw new IndexCorruptError(this.path, `dialog ${i} unreadable`);
    }
  }

  /** Dialog i, for a lookup: kept decoded (a few, over all indexes). */
  private dialog(i: number): DialogRecord {
    if (i >= this.dialogCount) throw new IndexCorruptError(this.path, `dialog ${i} out of range`);
    const key = this.number * 2 ** 32 + i;
    let d = decodedDialogs.get(key);
    if (d) return d;
    const b = Math.floor(i / DIALOGS_PER_BLOCK);
    if (lastBlock?.index !== this.number || lastBlock.n !== b) lastBlock = { index: this.number, n: b, lines: this.block(b, i) };
    d = this.parse(i, lastBlock.lines);
    if (decodedDialogs.size >= DIALOG_CACHE_MAX) decodedDialogs.delete(decodedDialogs.keys().next().value as number);
    decodedDialogs.set(key, d);
    return d;
  }

  /**
   * The entries of the key table that may hold hash h: a window read where
   * h's entries must be, or the whole table. FNV hashes spread evenly, so
   * entry h sits near h / 2^32 of the table, give or take about √n: one pread
   * of KEY_WINDOW entries around there almost always brackets it. A query
   * looks in every segment of the ring; reading each segment's whole table
   * (hundreds of KiB) was most of a Call-ID query's time on a big ring.
   */
  private keyWindow(h: number): { keys: Buffer; count: number } {
    const n = this.nKeys;
    if (this.keyTable || n <= KEY_WINDOW) return { keys: this.keys(), count: n };
    const guess = Math.floor((h / 2 ** 32) * n);
    const from = Math.max(0, Math.min(n - KEY_WINDOW, guess - KEY_WINDOW / 2));
    const keys = readExactly(this.fd, KEY_WINDOW * KEY_ENTRY_LEN, this.off.keys + from * KEY_ENTRY_LEN);
    const first = keys.readUInt32LE(0);
    const last = keys.readUInt32LE((KEY_WINDOW - 1) * KEY_ENTRY_LEN);
    // Bracketed (or at an end of the table): every entry equal to h is in the window.
    if ((from === 0 || first < h) && (from + KEY_WINDOW === n || last > h)) return { keys, count: KEY_WINDOW };
    return { keys: this.keys(), count: n };
  }

  private byKey(kind: KeyKind, value: string): DialogRecord[] {
    const h = keyHash(kind, value);
    const { keys, count } = this.keyWindow(h);
    let lo = 0;
    let hi = count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys.readUInt32LE(mid * KEY_ENTRY_LEN) < h) lo = mid + 1;
      else hi = mid;
    }
    const out: DialogRecord[] = [];
    for (let k = lo; k < count && keys.readUInt32LE(k * KEY_ENTRY_LEN) === h; k++) {
      const d = this.dialog(keys.readUInt32LE(k * KEY_ENTRY_LEN + 4));
      // The hash only narrows; the record decides.
      if (kind === 'c' ? d.c === value : d.msgs.some((m) => messageHasLegKey(m, kind, value))) out.push(d);
    }
    return out;
  }

  dialogsByCallId(callId: string): DialogRecord[] {
    return this.byKey('c', callId);
  }

  dialogsByCorrelation(x: string): DialogRecord[] {
    return this.byKey('x', x);
  }

  dialogsByLegKey(kind: LegKeyKind, value: string): DialogRecord[] {
    // An index sealed before leg keys were tabled has its correlation keys only: the rest is a scan of its dialogs.
    if (kind !== 'x' && !this.legKeys) return this.allDialogs().filter((d) => d.msgs.some((m) => messageHasLegKey(m, kind, value)));
    return this.byKey(kind, value);
  }

  dialogsByNumber(digits: string): DialogRecord[] {
    // The table read a page at a time, the page holding the entry asked for (pages aligned, so the last steps of
    // the search and the scan after it stay in one or two).
    const page = Buffer.allocUnsafe(NUMBER_PAGE * NUMBER_ENTRY_LEN);
    let pageFirst = -1;
    let pageCount = 0;
    const at = (k: number): number => {
      if (k < pageFirst || k >= pageFirst + pageCount) {
        pageFirst = k - (k % NUMBER_PAGE);
        pageCount = Math.min(NUMBER_PAGE, this.nNumbers - pageFirst);
        readInto(this.fd, page, pageCount * NUMBER_ENTRY_LEN, this.off.numbers + pageFirst * NUMBER_ENTRY_LEN);
      }
      return (k - pageFirst) * NUMBER_ENTRY_LEN;
    };
    const prefix = numberKey(digits).subarray(0, Math.min(digits.length, NUMBER_KEY_LEN));
    const cmp = (k: number) => {
      const p = at(k);
      return page.compare(prefix, 0, prefix.length, p, p + prefix.length);
    };
    let lo = 0;
    let hi = this.nNumbers;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cmp(mid) < 0) lo = mid + 1;
      else hi = mid;
    }
    const seen = new Set<number>();
    const out: DialogRecord[] = [];
    for (let k = lo; k < this.nNumbers && cmp(k) === 0; k++) {
      const i = page.readUInt32LE(at(k) + NUMBER_KEY_LEN);
      if (seen.has(i)) continue;
      seen.add(i);
      const d = this.dialog(i);
      if (d.msgs.some((m) => messageHasNumber(m, digits))) out.push(d);
    }
    return out;
  }

  allDialogs(): DialogRecord[] {
    return [...this.eachDialog()];
  }

  *eachDialog(): Iterable<DialogRecord> {
    // Not kept: a broad query passes over every segment of the ring, all open until its result is closed, and
    // 256 decoded dialogs kept by each made its memory grow with the ring.
    // Its block is its own: lookups in between (a broad query's, in other segments) do not make it inflate again.
    for (let b = 0; b * DIALOGS_PER_BLOCK < this.dialogCount; b++) {
      const lines = this.block(b, b * DIALOGS_PER_BLOCK);
      for (let i = b * DIALOGS_PER_BLOCK; i < Math.min(this.dialogCount, (b + 1) * DIALOGS_PER_BLOCK); i++) yield this.parse(i, lines);
    }
  }

  packetTable(): Buffer {
    return (this.packetBuf ??= readExactly(this.fd, this.packetCount * PACKET_ENTRY_LEN, this.off.packets));
  }

  releasePacketTable(): void {
    this.packetBuf = null;
  }

  *packetChunks(from = 0, to = this.packetCount): Iterable<PacketChunk> {
    if (from < 0 || to > this.packetCount || from > to) throw new RangeError(`packetChunks: [${from}, ${to}) of ${this.packetCount} packets`);
    if (this.packetBuf) {
      for (let first = from; first < to; first += PACKET_CHUNK) {
        const count = Math.min(PACKET_CHUNK, to - first);
        yield { entries: this.packetBuf.subarray(first * PACKET_ENTRY_LEN, (first + count) * PACKET_ENTRY_LEN), first, count };
      }
      return;
    }
    const buf = spareChunk ?? Buffer.allocUnsafeSlow(PACKET_CHUNK * PACKET_ENTRY_LEN);
    spareChunk = null;
    try {
      for (let first = from; first < to; first += PACKET_CHUNK) {
        const count = Math.min(PACKET_CHUNK, to - first);
        readInto(this.fd, buf, count * PACKET_ENTRY_LEN, this.off.packets + first * PACKET_ENTRY_LEN);
        yield { entries: buf, first, count };
      }
    } finally {
      spareChunk = buf;
    }
  }

  packetEntries(ords: Uint32Array, into?: Buffer): Buffer {
    const n = ords.length;
    const out = entriesBuffer(n, into);
    for (let k = 0; k < n; k++) {
      if (ords[k] >= this.packetCount || (k > 0 && ords[k] <= ords[k - 1])) throw new IndexCorruptError(this.path, `packet ${ords[k]} asked of ${this.packetCount}`);
    }
    // The runs of wanted entries (close ones read together), against the whole table: a call's RTP is a few
    // thousand entries close together, one read of some KiB, where counting entries alone would read it all.
    const runEnds: number[] = [];
    let runEntries = 0;
    for (let i = 0; i < n && !this.packetBuf; ) {
      let j = i + 1;
      while (j < n && ords[j] - ords[j - 1] <= PACKET_READ_GAP) j++;
      runEnds.push(j);
      runEntries += ords[j - 1] + 1 - ords[i];
      i = j;
    }
    if (n === 0) return out;
    if (this.packetBuf || runEnds.length * PACKET_READS_PER_TABLE + runEntries > this.packetCount) {
      // Their whole span, a chunk at a time (a table read whole was a fresh 5 MiB a segment).
      let k = 0;
      for (const c of this.packetChunks(ords[0], ords[n - 1] + 1)) k = copyFromChunk(c, ords, k, out);
      return out;
    }
    let i = 0;
    for (const j of runEnds) {
      const from = ords[i];
      const run = readExactly(this.fd, (ords[j - 1] + 1 - from) * PACKET_ENTRY_LEN, this.off.packets + from * PACKET_ENTRY_LEN);
      copyFromChunk({ entries: run, first: from, count: ords[j - 1] + 1 - from }, ords.subarray(i, j), 0, out.subarray(i * PACKET_ENTRY_LEN));
      i = j;
    }
    return out;
  }

  flowTable(): FlowTable | null {
    if (this.flowsAt === null) return null;
    if (!this.flows) {
      const head = readExactly(this.fd, 8, this.flowsAt);
      const len = flowEntriesLength(head);
      if (len > this.flowSectionBytes) throw new IndexCorruptError(this.path, 'flow table longer than its section');
      this.flows = new FlowTable(readExactly(this.fd, len, this.flowsAt));
    }
    return this.flows;
  }

  flowPackets(i: number): Uint32Array {
    const t = this.flowTable();
    if (!t || i >= t.length) throw new IndexCorruptError(this.path, `flow ${i} out of range`);
    const { offset, length } = t.list(i);
    if (offset + length > this.flowSectionBytes) throw new IndexCorruptError(this.path, `flow ${i} points outside its section`);
    const ords = decodeOrdinals(length > 0 ? readExactly(this.fd, length, this.flowsAt! + offset) : Buffer.alloc(0), t.packets(i), this.packetCount);
    if (!ords) throw new IndexCorruptError(this.path, `flow ${i} packet list unreadable`);
    return ords;
  }

  addresses(): string[] {
    if (!this.addressList) {
      try {
        this.addressList = JSON.parse(readExactly(this.fd, this.addrLen, this.off.addresses).toString('utf8')) as string[];
      } catch {
        throw new IndexCorruptError(this.path, 'address table unreadable');
      }
    }
    return this.addressList;
  }

  close(): void {
    closeSync(this.fd);
    // What it had decoded goes with it.
    const from = this.number * 2 ** 32;
    for (const key of decodedDialogs.keys()) if (key >= from && key < from + 2 ** 32) decodedDialogs.delete(key);
    if (lastBlock?.index === this.number) lastBlock = null;
  }
}

/** An index held in memory: a replayed journal, possibly extended by indexing the segment's tail. */
export class MemoryIndex implements SegmentIndex {
  readonly sealed = false;
  private byCallId: Map<string, DialogRecord> | null = null;

  constructor(readonly state: IndexState) {}

  get indexedBytes(): number { return this.state.indexedBytes; }
  get packetCount(): number { return this.state.packetCount; }
  get messageCount(): number { return this.state.messages.count; }
  get first(): [number, number] { return [this.state.firstSec, this.state.firstNsec]; }
  get last(): [number, number] { return [this.state.lastSec, this.state.lastNsec]; }

  private map(): Map<string, DialogRecord> {
    if (!this.byCallId) {
      this.byCallId = new Map();
      for (const d of this.state.dialogs()) this.byCallId.set(d.c, d);
    }
    return this.byCallId;
  }

  dialogsByCallId(callId: string): DialogRecord[] {
    const d = this.map().get(callId);
    return d ? [d] : [];
  }

  dialogsByCorrelation(x: string): DialogRecord[] {
    return [...this.map().values()].filter((d) => d.msgs.some((m) => m.x === x));
  }

  dialogsByLegKey(kind: LegKeyKind, value: string): DialogRecord[] {
    return [...this.map().values()].filter((d) => d.msgs.some((m) => messageHasLegKey(m, kind, value)));
  }

  dialogsByNumber(digits: string): DialogRecord[] {
    return [...this.map().values()].filter((d) => d.msgs.some((m) => messageHasNumber(m, digits)));
  }

  allDialogs(): DialogRecord[] {
    return [...this.map().values()];
  }

  eachDialog(): Iterable<DialogRecord> {
    return this.map().values();
  }

  packetTable(): Buffer {
    return this.state.packetEntries();
  }

  releasePacketTable(): void {}

  *packetChunks(from = 0, to = this.packetCount): Iterable<PacketChunk> {
    if (from < 0 || to > this.packetCount || from > to) throw new RangeError(`packetChunks: [${from}, ${to}) of ${this.packetCount} packets`);
    for (let first = from; first < to; first += PACKET_CHUNK) {
      const count = Math.min(PACKET_CHUNK, to - first);
      yield { entries: this.state.packetEntries(first, first + count), first, count };
    }
  }

  packetEntries(ords: Uint32Array, into?: Buffer): Buffer {
    const t = this.state.packetEntries();
    const out = entriesBuffer(ords.length, into);
    ords.forEach((ord, k) => t.copy(out, k * PACKET_ENTRY_LEN, ord * PACKET_ENTRY_LEN, (ord + 1) * PACKET_ENTRY_LEN));
    return out;
  }

  flowTable(): FlowTable | null {
    const f = this.state.flows;
    return f && !f.abandoned ? f.table() : null;
  }

  flowPackets(i: number): Uint32Array {
    const ords = this.state.flows?.packetsOf(i, this.state.packetCount);
    if (!ords) throw new Error(`flow ${i} of the in-memory index unreadable`);
    return ords;
  }

  addresses(): string[] {
    return this.state.addresses;
  }

  close(): void {}
}

/** A version 1 journal's JSON message record, checked for what storing it as binary relies on. */
function jsonMessage(v: unknown): MessageRecord {
  const m = v as MessageRecord;
  const str = (x: unknown) => typeof x === 'string';
  const nul = (x: unknown) => x === null || typeof x === 'string';
  const opt = (x: unknown) => x === undefined || typeof x === 'string';
  const num = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
  const pairs = (x: unknown, a: (y: unknown) => boolean, b: (y: unknown) => boolean) =>
    x === undefined || (Array.isArray(x) && x.every((e) => Array.isArray(e) && e.length === 2 && a(e[0]) && b(e[1])));
  const ok = typeof m === 'object' && m !== null && Array.isArray(m.p) && m.p.every(num) && Array.isArray(m.t) && m.t.length === 2 && num(m.t[0]) && num(m.t[1]) &&
    str(m.src) && str(m.dst) && str(m.c) && num(m.sp) && num(m.dp) && num(m.pr) && num(m.n) && nul(m.m) && (m.s === null || num(m.s)) &&
    nul(m.q) && nul(m.ru) && nul(m.fu) && nul(m.tu) && opt(m.r) && opt(m.x) && opt(m.si) && opt(m.sr) && opt(m.ic) &&
    (m.pu === undefined || (Array.isArray(m.pu) && m.pu.every(str))) && pairs(m.sdp, str, num) && pairs(m.rc, str, num) && pairs(m.pm, num, str);
  if (!ok) throw new RangeError('not a message record');
  return m;
}

/**
 * Replays a journal into memory. Stops quietly at a torn last record (what a
 * crash leaves); throws IndexCorruptError for anything else that is wrong.
 * Returns the state and the PCAP global header recorded in the journal.
 */
export function replayJournal(path: string): { state: IndexState; segmentHeader: Buffer | null } {
  if (!existsSync(path)) throw new IndexCorruptError(path, 'missing');
  const fd = openSync(path, 'r');
  let buf: Buffer;
  try {
    const size = fstatSync(fd).size;
    buf = size > 0 ? readExactly(fd, size, 0) : Buffer.alloc(0);
  } finally {
    closeSync(fd);
  }
  if (buf.length < INDEX_HEADER_LEN || !buf.subarray(0, 8).equals(INDEX_MAGIC)) throw new IndexCorruptError(path, 'bad header');
  const state = new IndexState();
  let segmentHeader: Buffer | null = null;
  let pos = INDEX_HEADER_LEN;
  // Messages and packets are committed only at a checkpoint, so that a torn
  // flush never leaves messages pointing at packets the replay lacks.
  let pendingMessages: Array<MessageRecord | Buffer> = [];
  let pendingPackets: Buffer[] = [];
  let pendingAddresses: string[] = [];
  let pendingFlows: Buffer[] = [];
  // The packet table in one piece, not grown as its batches come: a live segment's journal holds thousands of them.
  let entries = 0;
  for (let p = pos; p + RECORD_PREFIX_LEN <= buf.length && buf.readUInt32LE(p) >= 1; p += 4 + buf.readUInt32LE(p)) if (buf[p + 4] === REC.PACKETS && p + 4 + buf.readUInt32LE(p) <= buf.length) entries += buf.readUInt32LE(p) - 1;
  state.reserve(Math.floor(entries / PACKET_ENTRY_LEN));
  while (pos + RECORD_PREFIX_LEN <= buf.length) {
    const len = buf.readUInt32LE(pos);
    if (len < 1 || len > MAX_RECORD_LEN) throw new IndexCorruptError(path, `record length ${len} at ${pos}`);
    if (pos + 4 + len > buf.length) break; // torn
    const type = buf[pos + 4];
    const body = buf.subarray(pos + RECORD_PREFIX_LEN, pos + 4 + len);
    switch (type) {
      case REC.SEGMENT:
        segmentHeader = Buffer.from(body);
        state.indexedBytes = body.length;
        break;
      case REC.ADDRESSES: {
        const first = body.readUInt32LE(0);
        if (first !== state.addresses.length + pendingAddresses.length) throw new IndexCorruptError(path, `address ids out of order at ${pos}`);
        const names = body.subarray(4).toString('latin1');
        if (names.length > 0) pendingAddresses.push(...names.split('\0'));
        break;
      }
      case REC.PACKETS:
        if (body.length % PACKET_ENTRY_LEN !== 0) throw new IndexCorruptError(path, `packet batch size at ${pos}`);
        pendingPackets.push(body);
        break;
      case REC.MESSAGE:
        try {
          pendingMessages.push(jsonMessage(JSON.parse(body.toString('utf8'))));
        } catch {
          throw new IndexCorruptError(path, `message record at ${pos}`);
        }
        break;
      case REC.MESSAGE_BIN:
        try {
          readBinaryRecord(body, 0, body.length);
        } catch {
          throw new IndexCorruptError(path, `message record at ${pos}`);
        }
        pendingMessages.push(body);
        break;
      case REC.FLOWS:
        pendingFlows.push(body);
        break;
      case REC.CHECKPOINT:
        for (const a of pendingAddresses) state.addressId(a);
        for (const p of pendingPackets) state.addPacketEntries(p);
        for (const f of pendingFlows) {
          try {
            (state.flows ??= new FlowTableBuilder()).replay(f, state.packetCount);
          } catch (e) {
            throw new IndexCorruptError(path, (e as Error).message);
          }
        }
        pendingFlows = [];
        for (const m of pendingMessages) {
          if (Buffer.isBuffer(m)) state.messages.addRaw(m);
          else state.messages.add(m);
        }
        state.indexedBytes = body.readDoubleLE(0);
        pendingAddresses = [];
        pendingPackets = [];
        pendingMessages = [];
        break;
      case REC.PACKET_TABLE:
      case REC.ADDRESS_TABLE:
      case REC.KEY_TABLE:
      case REC.NUMBER_TABLE:
      case REC.DIALOGS:
      case REC.FLOW_TABLE:
        // Sealed sections of an index whose footer was lost: the journal before them is complete.
        break;
      default:
        throw new IndexCorruptError(path, `unknown record type 0x${type.toString(16)} at ${pos}`);
    }
    pos += 4 + len;
  }
  return { state, segmentHeader };
}
