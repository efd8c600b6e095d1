import { closeSync, openSync, readSync } from 'node:fs';
import { PCAP_HEADER_LEN, PcapHeader, parsePcapHeader } from '../../shared/pcap/pcap';
import type { SegmentInfo } from '../ring/layout';
import type { IndexerOptions } from './builder';
import { IndexCorruptError } from './format';
import { MemoryIndex, SealedIndex, SegmentIndex, replayJournal } from './reader';

// Loaded only to index: a query over sealed segments (the common case, and every
// `tracefleet query` start-up) then never loads the dissector and the SIP parser.
const builder = () => require('./builder') as typeof import('./builder');

export interface OpenedSegment {
  segment: SegmentInfo;
  header: PcapHeader;
  index: SegmentIndex;
  /** What had to be done to get a usable index, for the caller to report. */
  repair: 'none' | 'rebuilt' | 'in-memory';
  note?: string;
}

function readSegmentHeader(seg: SegmentInfo): PcapHeader | null {
  const fd = openSync(seg.path, 'r');
  try {
    const b = Buffer.alloc(PCAP_HEADER_LEN);
    if (readSync(fd, b, 0, PCAP_HEADER_LEN, 0) < PCAP_HEADER_LEN) return null;
    return parsePcapHeader(b, seg.path);
  } finally {
    closeSync(fd);
  }
}

function withLazyHeader(seg: SegmentInfo, index: SealedIndex): OpenedSegment {
  let header: PcapHeader | null = null;
  return {
    segment: seg,
    index,
    repair: 'none',
    get header(): PcapHeader {
      if (header) return header;
      try {
        header = readSegmentHeader(seg);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (!header) throw new Error(`segment ${seg.path} was deleted or cut by ring rotation while the query ran; query a narrower or more recent window, or give the ring more room`);
      return header;
    },
  };
}

/** Rebuilds a segment's index on disk (written aside, then renamed, so readers never see half a file). */
export function rebuildIndex(seg: SegmentInfo, opts: IndexerOptions = {}): SealedIndex {
  // Without a journal nothing is written until seal(), which writes aside and renames.
  const ix = new (builder().SegmentIndexer)(seg.path, seg.indexPath, { ...opts, journal: false });
  ix.catchUp();
  ix.seal();
  const sealed = SealedIndex.open(seg.indexPath);
  if (!sealed) throw new Error(`rebuilt index ${seg.indexPath} has no footer`);
  return sealed;
}

/**
 * Opens the index of a segment. `mayWrite` says whether this process may
 * repair index files (nobody else owns the ring, so every segment is
 * complete). Otherwise a missing, stale or unsealed index is completed in
 * memory: the newest segment is queryable while it is written.
 * Returns null for a segment too short to hold a PCAP header.
 */
export function openSegment(seg: SegmentInfo, mayWrite: boolean, opts: IndexerOptions = {}): OpenedSegment | null {
  // The common case, a sealed index of the whole segment: its PCAP header is read only if a packet of it is
  // (three syscalls a segment less for a query, which opens every segment of the ring and reads from few).
  if (seg.bytes >= PCAP_HEADER_LEN) {
    let sealed: SealedIndex | null = null;
    try {
      sealed = SealedIndex.open(seg.indexPath);
    } catch {
      // Said and repaired below.
    }
    if (sealed && sealed.indexedBytes === seg.bytes) return withLazyHeader(seg, sealed);
    sealed?.close();
  }
  const header = readSegmentHeader(seg);
  if (!header) return null;
  let why = '';
  try {
    const sealed = SealedIndex.open(seg.indexPath);
    if (sealed) {
      if (sealed.indexedBytes === seg.bytes) return { segment: seg, header, index: sealed, repair: 'none' };
      sealed.close();
      why = `index covers ${sealed.indexedBytes} of ${seg.bytes} bytes`;
    } else if (!mayWrite) {
      // A journal: the segment is being written, or its writer died.
      const { state, segmentHeader } = replayJournal(seg.indexPath);
      if (segmentHeader) {
        const ix = new (builder().SegmentIndexer)(seg.path, null, opts, { state, segmentHeader });
        ix.catchUp();
        return { segment: seg, header, index: new MemoryIndex(ix.state), repair: 'none' };
      }
      why = 'journal has no segment header';
    } else {
      why = 'index was never sealed (its writer stopped)';
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') why = 'index missing';
    else if (e instanceof IndexCorruptError) why = e.message;
    else throw e;
  }
  if (mayWrite) {
    return { segment: seg, header, index: rebuildIndex(seg, opts), repair: 'rebuilt', note: `${seg.indexPath}: ${why}; rebuilt` };
  }
  const ix = new (builder().SegmentIndexer)(seg.path, null, opts);
  ix.catchUp();
  return { segment: seg, header, index: new MemoryIndex(ix.state), repair: 'in-memory', note: `${seg.indexPath}: ${why}; indexed in memory` };
}
