import { closeSync, openSync } from 'node:fs';
import { readPcapRecordAt } from '../../shared/pcap/pcap';
import { encodePcapRecord } from '../../shared/pcap/writer';
import type { MessageSummary, QuerySpec } from '../../shared/query/query';
import { messageMatches, summaryOf } from '../query/engine';
import type { SegmentIndexer } from './builder';
import type { MessageRecord } from './format';

/** What the indexer thread posts for a follow after each catch-up that matched something. */
export interface FollowBatch {
  type: 'follow';
  id: string;
  /** PCAP records (nanosecond headers) in capture order, all of `linkType`. */
  records: Buffer;
  linkType: number;
  packets: number;
  messages: MessageSummary[];
  /** Packets left out because their link type differs from the follow's first (a PCAP stream has one). */
  otherLink: number;
  /** Set once the follow reached its packet limit here: nothing more comes. */
  full?: true;
  /**
   * Capture time (ms since the epoch) through which this agent has matched
   * everything (0: not known yet): no later batch of this follow holds a
   * packet captured before it, except a new dialog's earlier packets.
   */
  through: number;
}

interface Follow {
  spec: QuerySpec;
  /** Call-IDs of the dialogs followed: every later message of them is taken. */
  dialogs: Set<string>;
  /** Packets taken, by ordinal per segment: a message's packets and a dialog's earlier ones are sent once. */
  sent: Map<SegmentIndexer, Set<number>>;
  linkType: number | null;
  taken: Array<{ sec: number; nsec: number; parts: Buffer[] }>;
  messages: MessageSummary[];
  packets: number;
  otherLink: number;
  full: boolean;
}

/** Packets one follow may take on this agent: the dispatcher's limit stops it before, this bounds `sent`. */
const MAX_FOLLOW_PACKETS = 10_000_000;

/**
 * Matches the messages the live indexer reads against the follows running
 * on this agent. A message that matches a follow's query adds its dialog;
 * every message of a followed dialog is taken with its packets, and when a
 * dialog is new, its messages already in the open segments (what the ring
 * holds of it in the indexer's memory) are taken first. Packets are read back
 * from the segment the indexer has just read them from.
 */
export class FollowMatcher {
  private readonly follows = new Map<string, Follow>();
  /**
   * Per open segment, its messages by Call-ID, extended as the segment grows:
   * a new dialog's earlier messages are found without scanning the segment
   * (every message a new dialog under a broad filter would make that
   * quadratic). Kept only while a follow runs.
   */
  private readonly byCallId = new Map<SegmentIndexer, { upTo: number; ids: Map<string, number[]> }>();

  /** A read descriptor per open segment packets are taken from, kept while follows run (a segment is opened once, not per message). */
  private readonly fds = new Map<SegmentIndexer, number>();

  constructor(private readonly openIndexers: () => Iterable<SegmentIndexer>) {}

  get size(): number {
    return this.follows.size;
  }

  add(id: string, spec: QuerySpec): void {
    this.follows.set(id, { spec, dialogs: new Set(), sent: new Map(), linkType: null, taken: [], messages: [], packets: 0, otherLink: 0, full: false });
  }

  remove(id: string): void {
    this.follows.delete(id);
    if (this.follows.size === 0) this.release();
  }

  private release(): void {
    this.byCallId.clear();
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }

  private fdOf(ix: SegmentIndexer): number {
    let fd = this.fds.get(ix);
    if (fd === undefined) this.fds.set(ix, (fd = openSync(ix.segmentPath, 'r')));
    return fd;
  }

  /** A segment's index is gone (sealed and closed, or deleted). */
  forget(ix: SegmentIndexer): void {
    this.byCallId.delete(ix);
    for (const f of this.follows.values()) f.sent.delete(ix);
    const fd = this.fds.get(ix);
    if (fd !== undefined) closeSync(fd);
    this.fds.delete(ix);
  }

  /** The messages of `callId` in an open segment, through its incrementally built Call-ID map. */
  private earlier(ix: SegmentIndexer, callId: string, except: number): MessageRecord[] {
    let e = this.byCallId.get(ix);
    if (!e) this.byCallId.set(ix, (e = { upTo: 0, ids: new Map() }));
    const msgs = ix.state.messages;
    for (; e.upTo < msgs.count; e.upTo++) {
      const c = msgs.callId(e.upTo);
      const list = e.ids.get(c);
      if (list) list.push(e.upTo);
      else e.ids.set(c, [e.upTo]);
    }
    const out: MessageRecord[] = [];
    for (const i of e.ids.get(callId) ?? []) if (i !== except) out.push(msgs.message(i));
    return out;
  }

  onMessage(m: MessageRecord, ix: SegmentIndexer): void {
    for (const f of this.follows.values()) {
      if (f.full) continue;
      if (f.dialogs.has(m.c)) {
        this.take(f, ix, [m]);
        continue;
      }
      if (!messageMatches(m, f.spec)) continue;
      f.dialogs.add(m.c);
      // The dialog's earlier messages in every open segment, then this one (already in its segment's list).
      for (const other of this.openIndexers()) {
        // m is the newest record of its own segment (the indexer adds it before telling us).
        const earlier = this.earlier(other, m.c, other === ix ? ix.state.messages.count - 1 : -1);
        if (earlier.length) this.take(f, other, earlier);
      }
      this.take(f, ix, [m]);
    }
  }

  private take(f: Follow, ix: SegmentIndexer, msgs: MessageRecord[]): void {
    const header = ix.pcapHeader;
    if (!header) return;
    let sent = f.sent.get(ix);
    if (!sent) f.sent.set(ix, (sent = new Set()));
    for (const m of msgs) {
      f.messages.push(summaryOf(m));
      for (const p of m.p) {
        if (sent.has(p)) continue;
        sent.add(p);
        const offset = ix.state.packetEntries(p, p + 1).readUInt32LE(0);
        // Usually still in the indexer's buffer; a dialog's earlier packets, or a message's first ones, are read back.
        const rec = ix.recordInScan(offset) ?? readPcapRecordAt(this.fdOf(ix), offset, header, ix.segmentPath);
        if (!rec) continue;
        f.linkType ??= rec.linkType;
        if (rec.linkType !== f.linkType) {
          f.otherLink++;
          continue;
        }
        // A copy: the indexer's buffer is read into again.
        f.taken.push({ sec: rec.tsSec, nsec: rec.tsNsec, parts: encodePcapRecord({ tsSec: rec.tsSec, tsNsec: rec.tsNsec, origLen: rec.origLen, data: Buffer.from(rec.data) }, true) });
        f.packets++;
        if (f.packets >= (f.spec.maxPackets ?? MAX_FOLLOW_PACKETS)) {
          f.full = true;
          return;
        }
      }
    }
  }

  /**
   * What was taken since the last call, one batch per follow that took
   * something; with `advanced`, an empty one for the others too, which
   * carries `through` alone.
   */
  batches(through: number, advanced: boolean): FollowBatch[] {
    const out: FollowBatch[] = [];
    for (const [id, f] of this.follows) {
      if (f.taken.length === 0 && f.messages.length === 0 && !f.full && !advanced) continue;
      // A dialog's earlier packets come before the newer ones that revealed it.
      f.taken.sort((a, b) => a.sec - b.sec || a.nsec - b.nsec);
      out.push({
        type: 'follow',
        id,
        records: Buffer.concat(f.taken.flatMap((t) => t.parts)),
        linkType: f.linkType ?? 0,
        packets: f.taken.length,
        messages: f.messages.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0)),
        otherLink: f.otherLink,
        ...(f.full ? { full: true as const } : {}),
        through,
      });
      f.taken = [];
      f.messages = [];
      f.otherLink = 0;
      if (f.full) this.follows.delete(id);
    }
    if (this.follows.size === 0) this.release();
    return out;
  }
}
