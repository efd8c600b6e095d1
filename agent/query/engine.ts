import { closeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { DialogRecord, MessageRecord, PACKET_ENTRY_LEN, PKT_FLAG, NO_ADDRESS, messageHasNumber } from '../index/format';
import { OpenedSegment, openSegment } from '../index/open';
import type { SegmentIndex } from '../index/reader';
import type { IndexerOptions } from '../index/builder';
import { isHepSegment, listSegments } from '../ring/layout';
import { ringOwner } from '../ring/lock';
import { MessageSummary, QuerySpec, Ts, cmpTs, endpointText } from '../../shared/query/query';
import { decodePacket } from '../../shared/decode/packet';
import type { RtpStreamFigures } from '../../shared/rtp/figures';
import { RtpStreamStats } from '../../shared/rtp/stats';
import { DialogMedia, addToMedia, inSpan, spanEnd, spansOverlap } from './media';
import { CallIdFilter } from './callid-filter';
import { LegCallIdRule, LegLinks, linkLegs } from './legs';
import { PacketMarks, PacketRefs, ResultPlan, collectRefs, fillRefs, planResult, refColumns, resultRecords, timeOrdered, writePlannedPcap } from './result';

export type { PacketRef } from './result';

/** A SIP message as the ladder and the message table show it. */
export type { MessageSummary };

export interface QueryResult {
  segments: OpenedSegment[];
  /** Which packets, and how they are put out: streamed by writeResultPcap, never listed whole. */
  plan: ResultPlan;
  /** Packets in the result (after the query's limits). */
  packets: number;
  /** The first `maxMessages` SIP messages by time. */
  messages: MessageSummary[];
  /** How many SIP messages the selected dialogs have; more than `messages` holds when they were cut. */
  messagesMatched: number;
  /** The selected dialogs' Call-IDs; only the first `maxCallIds` (and the linked legs) when more were selected. */
  callIds: string[];
  /** How many Call-IDs were selected. */
  dialogs: number;
  truncated: boolean;
  /** Bytes of the PCAP records selected (16-byte headers included). */
  bytes: number;
  notes: string[];
  /** RTP figures per stream of the selected dialogs (`rtpStats`), whether or not the RTP packets are in `refs`. */
  streams: RtpStreamFigures[];
}

export interface QueryOptions extends IndexerOptions {
  /** Let this process repair index files; default: when no live agent owns the ring. */
  mayWrite?: boolean;
  /** Summaries kept, the earliest first; default MAX_SUMMARIES. The packets are never cut by this. */
  maxMessages?: number;
  /** The operator's Call-ID rules for linking legs (`--leg-callid-rule`), used when the query asks for legs. */
  legCallIdRules?: readonly LegCallIdRule[];
  /**
   * Call-IDs a broad query (no Call-ID, correlation or number) keeps at most; past it the selection is a
   * filter of fixed size (memory that does not grow with the ring) and callIds lists the first ones only.
   * Default: no limit. Not applied with legs, which need every Call-ID.
   */
  maxCallIds?: number;
  /** Only which dialogs (legs included) are selected: `callIds`, with no packets, messages or figures (the dispatcher's search for legs across hosts). */
  selectOnly?: boolean;
}

/**
 * Each message kept costs about 1 KiB while a result lives (its decoded index
 * record, then its summary): a query matching every SIP packet of a big ring
 * (`--port 5060`) would otherwise hold gigabytes on the call server. The
 * trace wire carries at most this many anyway.
 */
export const MAX_SUMMARIES = 100_000;

/**
 * maxCallIds for a caller that does not list every Call-ID (the agent's
 * traces, `tracefleet query` without --json): a Call-ID kept costs about
 * 100 bytes, and a broad query over a 10 GiB ring selects millions.
 */
export const CALL_IDS_KEPT = 10_000;

function tsString(sec: number, nsec: number): string {
  return `${sec}.${String(nsec).padStart(9, '0')}`;
}

function isoTime(sec: number, nsec: number): string {
  return new Date(sec * 1000).toISOString().replace(/\.\d{3}Z$/, `.${String(nsec).padStart(9, '0')}Z`);
}


/** A message record as a result lists it. */
export function summaryOf(m: MessageRecord): MessageSummary {
  return {
    ts: tsString(m.t[0], m.t[1]),
    time: isoTime(m.t[0], m.t[1]),
    src: endpointText(m.src, m.sp),
    dst: endpointText(m.dst, m.dp),
    transport: m.pr === 6 ? 'tcp' : 'udp',
    method: m.m,
    status: m.s,
    reason: m.r ?? null,
    callId: m.c,
    cseq: m.q,
    from: m.fu,
    to: m.tu,
    ruri: m.ru,
    correlation: m.x ?? null,
    bytes: m.n,
    packets: m.p.length,
    ...(m.tr ? { truncated: true } : {}),
    ...(m.h ? { hep: true } : {}),
  };
}

/** Whether one SIP message matches a query: the engine's phase 1, and the live follow's test of each new message. */
export function messageMatches(m: MessageRecord, q: QuerySpec): boolean {
  if (q.callIds.length && !q.callIds.includes(m.c)) return false;
  if (q.correlations.length && !(m.x && q.correlations.includes(m.x))) return false;
  if (q.numbers.length && !q.numbers.some((n) => messageHasNumber(m, n))) return false;
  if (q.ips.length && !q.ips.includes(m.src) && !q.ips.includes(m.dst)) return false;
  if (q.ports.length && !q.ports.includes(m.sp) && !q.ports.includes(m.dp)) return false;
  if (q.methods.length) {
    const cseqMethod = m.q ? m.q.slice(m.q.indexOf(' ') + 1) : null;
    if (!q.methods.includes(m.m ?? cseqMethod ?? '')) return false;
  }
  if (q.statuses.length) {
    if (m.s === null) return false;
    const s = m.s;
    if (!q.statuses.some((x) => ('code' in x ? x.code === s : Math.floor(s / 100) === x.cls))) return false;
  }
  if (q.since && cmpTs(m.t, q.since) < 0) return false;
  if (q.until && cmpTs(m.t, q.until) > 0) return false;
  return true;
}

function overlaps(first: Ts, last: Ts, since: Ts | null, until: Ts | null): boolean {
  if (since && cmpTs(last, since) < 0) return false;
  if (until && cmpTs(first, until) > 0) return false;
  return true;
}

/**
 * Answers a query from a ring's indexes. A match on any SIP message selects
 * its whole dialog: every packet of every message with that Call-ID in the
 * ring. Packets are returned time-ordered; nothing is read from the segments
 * here except what the indexes lack.
 */
export function runQuery(ringDir: string, q: QuerySpec, opts: QueryOptions = {}): QueryResult {
  const steps = querySteps(ringDir, q, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * runQuery for a process with other work on its event loop (the agent
 * daemon: heartbeats, cancels, other traces): it yields to the loop after
 * every segment it opens or scans, calls `onStep` there, and stops, releasing
 * what it opened, when `stopped` returns a reason.
 */
export async function runQueryYielding(
  ringDir: string,
  q: QuerySpec,
  opts: QueryOptions & { onStep?: () => void; stopped?: () => string | null } = {},
): Promise<QueryResult> {
  const steps = querySteps(ringDir, q, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise((resolve) => setImmediate(resolve));
    opts.onStep?.();
    const why = opts.stopped?.();
    if (why) {
      steps.return(undefined as never); // runs its finally: the segments opened so far are closed
      throw new Error(why);
    }
  }
}

/** The query, one segment's work per step; the segments stay open only in a result that is returned. */
function* querySteps(ringDir: string, q: QuerySpec, opts: QueryOptions): Generator<void, QueryResult, void> {
  const mayWrite = opts.mayWrite ?? ringOwner(ringDir) === null;
  const notes: string[] = [];
  const segments: OpenedSegment[] = [];
  let returned = false;
  try {
    const result = yield* selectPackets(ringDir, q, opts, mayWrite, segments, notes);
    returned = true;
    return result;
  } finally {
    if (!returned) for (const s of segments) s.index.close();
  }
}

function* selectPackets(ringDir: string, q: QuerySpec, opts: QueryOptions, mayWrite: boolean, segments: OpenedSegment[], notes: string[]): Generator<void, QueryResult, void> {
  for (const info of listSegments(ringDir)) {
    let s: OpenedSegment | null;
    try {
      s = openSegment(info, mayWrite, opts);
    } catch (e) {
      // Rotation may delete the oldest segment between listing and opening it.
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    if (!s) continue;
    if (s.note) notes.push(s.note);
    segments.push(s);
    yield;
  }

  // Phase 1: which dialogs (Call-IDs) have a matching message.
  // A broad query (no Call-ID, correlation or number to look up) may select most of the ring's dialogs: beyond
  // opts.maxCallIds their Call-IDs are not kept, only a filter of them of a fixed size, and phase 2 decides each
  // dialog again from its messages (and, for a maybe of the filter, from the other segments' index).
  const mm = (m: MessageRecord) => messageMatches(m, q);
  const keyed = q.callIds.length + q.correlations.length + q.numbers.length > 0;
  const limit = keyed || q.legs || opts.selectOnly ? Infinity : (opts.maxCallIds ?? Infinity);
  const inWindow = (ix: SegmentIndex) => ix.packetCount > 0 && overlaps(ix.first, ix.last, q.since, q.until);
  const selected = new Set<string>();
  let matched: CallIdFilter | null = null;
  for (const s of segments) {
    const ix = s.index;
    let candidates: Iterable<DialogRecord>;
    if (q.callIds.length) candidates = q.callIds.flatMap((c) => ix.dialogsByCallId(c));
    else if (q.correlations.length) candidates = q.correlations.flatMap((x) => ix.dialogsByCorrelation(x));
    else if (q.numbers.length) candidates = q.numbers.flatMap((n) => ix.dialogsByNumber(n));
    else if (inWindow(ix)) candidates = ix.eachDialog();
    else candidates = [];
    for (const d of candidates) {
      if (matched) {
        if (d.msgs.some(mm)) matched.add(d.c);
      } else if (!selected.has(d.c) && d.msgs.some(mm)) {
        selected.add(d.c);
        if (selected.size > limit) {
          matched = new CallIdFilter(CallIdFilter.bitsFor(segments.reduce((n, sg) => n + sg.index.messageCount, 0)));
          for (const c of selected) matched.add(c);
          selected.delete(d.c); // the first `limit` stay listed
        }
      }
    }
    yield;
  }

  // Legs another host found: taken as they are, whatever the other keys say.
  const linked = q.linkedCallIds.filter((c) => !selected.has(c) && segments.some((s) => s.index.dialogsByCallId(c).length > 0));

  // The other legs of those calls: their dialogs are taken whole like the selected ones.
  let legs: LegLinks | null = null;
  if (q.legs && selected.size + linked.length > 0) {
    legs = yield* linkLegs(segments, selected, opts.legCallIdRules ?? [], notes, linked);
    for (const c of legs.group.keys()) selected.add(c);
  }
  for (const c of linked) selected.add(c);
  if (opts.selectOnly) {
    const plan = yield* planResult(segments, new PacketMarks(segments), null, null);
    return { segments, plan, packets: 0, messages: [], messagesMatched: 0, callIds: [...selected], dialogs: selected.size, truncated: false, bytes: 0, notes, streams: [] };
  }

  // Past the limit: a dialog of a segment is selected when a message of it matches there, it was linked, or
  // (a maybe of the filter) its Call-ID has a matching dialog in a segment, the nearest looked at first.
  // It is counted in the first segment that has its Call-ID.
  let dialogs = selected.size;
  function* broadDialogs(si: number, filter: CallIdFilter, seen: CallIdFilter): Generator<DialogRecord> {
    // This segment too: it may have another dialog of the Call-ID that matched.
    const matchedElsewhere = (c: string): boolean => {
      for (let k = 0; k < segments.length; k++) {
        for (const t of k === 0 ? [si] : [si - k, si + k]) {
          if (t < 0 || t >= segments.length) continue;
          const ix = segments[t].index;
          if (inWindow(ix) && ix.dialogsByCallId(c).some((d) => d.msgs.some(mm))) return true;
        }
      }
      return false;
    };
    const inEarlier = (c: string): boolean => {
      for (let t = si - 1; t >= 0; t--) if (segments[t].index.dialogsByCallId(c).length > 0) return true;
      return false;
    };
    const ix = segments[si].index;
    const here = inWindow(ix);
    const countedHere = new Set<string>();
    for (const d of ix.eachDialog()) {
      if (!((here && d.msgs.some(mm)) || selected.has(d.c) || (filter.mayHave(d.c) && matchedElsewhere(d.c)))) continue;
      if (!countedHere.has(d.c)) {
        if (!seen.mayHave(d.c) || !inEarlier(d.c)) dialogs++;
        countedHere.add(d.c);
        seen.add(d.c);
      }
      yield d;
    }
  }
  const seen = matched ? new CallIdFilter(CallIdFilter.bitsFor(segments.reduce((n, sg) => n + sg.index.messageCount, 0))) : null;
  if (matched) dialogs = 0;

  // Phase 2: every message of those dialogs, in every segment.
  // Per segment, a bit per packet: a set of ordinals costs ~50 bytes each, and broad queries take millions.
  const chosen = new PacketMarks(segments);
  const take = (seg: number, ord: number) => void chosen.mark(seg, ord);
  const maxMessages = opts.maxMessages ?? MAX_SUMMARIES;
  let messages: Array<{ m: MessageRecord; seg: number }> = [];
  let messagesMatched = 0;
  const byTime = (a: { m: MessageRecord; seg: number }, b: { m: MessageRecord; seg: number }) => cmpTs(a.m.t, b.m.t) || a.seg - b.seg || a.m.p[0] - b.m.p[0];
  // The earliest maxMessages, kept by sorting and cutting whenever twice as many have gathered: memory stays bounded.
  // Once maxMessages are kept, a message later than all of them cannot be among the earliest and is not pushed: held
  // until the next cut, a broad query's millions of records outlived the young generation and piled up in the old
  // one as garbage (100 MiB of heap between full GCs on a 1 GiB ring).
  let latestKept: { m: MessageRecord; seg: number } | null = null;
  const keepEarliest = () => {
    messages.sort(byTime);
    if (messages.length > maxMessages) messages = messages.slice(0, maxMessages);
    latestKept = messages.length === maxMessages ? messages[maxMessages - 1] : null;
  };
  const afterLatestKept = (m: MessageRecord, seg: number) =>
    latestKept !== null && (cmpTs(m.t, latestKept.m.t) || seg - latestKept.seg || m.p[0] - latestKept.m.p[0]) > 0;
  const wantRtp = q.rtp || q.rtpStats;
  const dialogMedia = new Map<string, DialogMedia>();
  const keep = (m: MessageRecord, si: number) => {
    messagesMatched++;
    if (maxMessages > 0 && !afterLatestKept(m, si)) {
      messages.push({ m, seg: si });
      if (messages.length >= 2 * maxMessages) keepEarliest();
    }
    for (const p of m.p) take(si, p);
    if (wantRtp) addToMedia(dialogMedia, m);
  };
  // A message both sniffed and received through HEP is kept once (hepCopies): the HEP ones wait for every sniffed one.
  const copies = segments.some((s) => isHepSegment(s.segment.path)) ? new SniffedCopies() : null;
  const viaHep: Array<{ m: MessageRecord; seg: number }> = [];
  for (const [si, s] of segments.entries()) {
    for (const d of matched ? broadDialogs(si, matched, seen!) : selectedDialogs(s.index, selected)) {
      for (const m of d.msgs) {
        if (copies && m.h) {
          viaHep.push({ m, seg: si });
          continue;
        }
        copies?.add(m);
        keep(m, si);
      }
    }
    yield;
  }
  for (const { m, seg } of viaHep) if (!copies!.claim(m)) keep(m, seg);

  // Packets that are not SIP, by address or port, when the query names no SIP-only key.
  const sipOnly = q.callIds.length + q.numbers.length + q.correlations.length + q.methods.length + q.statuses.length > 0;
  const rawByEndpoint = !sipOnly && (q.ips.length > 0 || q.ports.length > 0 || q.all);
  const spans = [...dialogMedia.values()].filter((d) => d.ends.size > 0);
  const byEnd = new Map<string, DialogMedia[]>();
  for (const d of spans) for (const e of d.ends) (byEnd.get(e) ?? byEnd.set(e, []).get(e)!).push(d);
  // Who else announced those endpoints, for the one-ended (NAT) rule: read only when a packet needs it.
  let announcers: Map<string, DialogMedia[]> | null = null;
  const contested = (end: string, d: DialogMedia): boolean => {
    announcers ??= announcersOf(segments, byEnd, spans);
    return (announcers.get(end) ?? []).some((o) => o.callId !== d.callId && spansOverlap(o, d));
  };
  // Per segment, the packets given to a dialog for the figures and that dialog's number: each packet is tested once
  // (one scan, or the one flow it is in), so lists need no marks against repeats.
  const rtpChosen: (MediaPackets | undefined)[] = [];
  const spanIndex = new Map(spans.map((d, i) => [d, i]));
  let rtpTotal = 0;
  if (rawByEndpoint || spans.length > 0) {
    for (const [si, s] of segments.entries()) {
      const ix = s.index;
      if (ix.packetCount === 0) continue;
      const wantRaw = rawByEndpoint && overlaps(ix.first, ix.last, q.since, q.until);
      const rtpSpans = spans.filter((sp) => overlaps(ix.first, ix.last, sp.first, spanEnd(sp)));
      if (!wantRaw && rtpSpans.length === 0) continue;
      const addrs = ix.addresses();
      // The announced endpoints as numbers (address id * 65536 + port): most packets are ruled out without making a string.
      const endKeys = new Set<number>();
      if (rtpSpans.length) {
        const idOf = new Map(addrs.map((a, id) => [a, id]));
        for (const e of byEnd.keys()) {
          const colon = e.lastIndexOf(':');
          const host = e.startsWith('[') ? e.slice(1, colon - 1) : e.slice(0, colon);
          const id = idOf.get(host);
          if (id !== undefined) endKeys.add(id * 65536 + Number(e.slice(colon + 1)));
        }
      }
      const ipIds = new Set<number>();
      if (wantRaw) addrs.forEach((a, id) => q.ips.includes(a) && ipIds.add(id));
      // A packet the exact-RTP rule gave to dialog d: taken for --rtp, marked with its dialog for the figures.
      const chooseMedia = (ord: number, d: DialogMedia) => {
        if (q.rtp) take(si, ord);
        if (q.rtpStats) {
          // With the dialog's number, so the figures name codecs from its own SDP.
          const chosenHere = (rtpChosen[si] ??= { ords: [], dialogs: [] });
          chosenHere.ords.push(ord);
          chosenHere.dialogs.push(spanIndex.get(d)!);
          rtpTotal++;
        }
      };
      // A sealed index's flows hold exactly the packets the scan below would test for media: only the flows with an
      // announced end are read, and their packets tested as the scan would.
      const flows = wantRaw ? null : ix.flowTable();
      if (flows) {
        for (let f = 0; f < flows.length; f++) {
          const src = flows.src(f);
          const dst = flows.dst(f);
          const sport = flows.sport(f);
          const dport = flows.dport(f);
          if (!endKeys.has(src * 65536 + sport) && !endKeys.has(dst * 65536 + dport)) continue;
          const first = flows.first(f);
          const last = flows.last(f);
          const a = endpointText(addrs[src], sport);
          const b = endpointText(addrs[dst], dport);
          const la = byEnd.get(a);
          const lb = byEnd.get(b);
          if (uniformOver(la, first, last) && uniformOver(lb, first, last)) {
            // Every dialog the flow could belong to spans all of it or none (the flows of other calls, mostly): one
            // answer for all its packets, and neither their list nor their times are read unless it is yes.
            const d = dialogOfMedia(la, lb, a, b, first, contested);
            if (d) for (const ord of ix.flowPackets(f)) chooseMedia(ord, d);
            continue;
          }
          const ords = ix.flowPackets(f);
          const e = ix.packetEntries(ords);
          for (let k = 0; k < ords.length; k++) {
            const d = dialogOfMedia(la, lb, a, b, [e.readUInt32LE(k * PACKET_ENTRY_LEN + 4), e.readUInt32LE(k * PACKET_ENTRY_LEN + 8)], contested);
            if (d) chooseMedia(ords[k], d);
          }
        }
        ix.releasePacketTable();
        yield;
        continue;
      }
      for (const { entries: t, first, count } of ix.packetChunks()) {
        // Entry fields through a view: `t.readUInt32LE` is a generic load through Buffer.prototype (a dictionary) and a
        // call, six a packet of the segment; and the time as an array only where it is compared.
        const v = new DataView(t.buffer, t.byteOffset, t.length);
        for (let ord = first; ord < first + count; ord++) {
          const p = (ord - first) * PACKET_ENTRY_LEN;
          if (t[p + 25] & PKT_FLAG.SIP) continue;
          const src = v.getUint32(p + 12, true);
          const dst = v.getUint32(p + 16, true);
          const sport = v.getUint16(p + 20, true);
          const dport = v.getUint16(p + 22, true);
          if (wantRaw) {
            let ok = true;
            if (q.ips.length && !(ipIds.has(src) || ipIds.has(dst))) ok = false;
            if (ok && q.ports.length && !(q.ports.includes(sport) || q.ports.includes(dport))) ok = false;
            if (ok && (q.since || q.until)) {
              const ts: Ts = [v.getUint32(p + 4, true), v.getUint32(p + 8, true)];
              if (q.since && cmpTs(ts, q.since) < 0) ok = false;
              if (ok && q.until && cmpTs(ts, q.until) > 0) ok = false;
            }
            if (ok) {
              take(si, ord);
              continue;
            }
          }
          if (rtpSpans.length && t[p + 24] === 17 && src !== NO_ADDRESS && dst !== NO_ADDRESS && (endKeys.has(src * 65536 + sport) || endKeys.has(dst * 65536 + dport))) {
            const a = endpointText(addrs[src], sport);
            const b = endpointText(addrs[dst], dport);
            const ts: Ts = [v.getUint32(p + 4, true), v.getUint32(p + 8, true)];
            const d = dialogOfMedia(byEnd.get(a), byEnd.get(b), a, b, ts, contested);
            if (d) chooseMedia(ord, d);
          }
        }
      }
      ix.releasePacketTable();
      yield;
    }
  }

  // Time order across segments and streams, and the query's limits: counted here, put out as they are written.
  const plan = yield* planResult(segments, chosen, q.maxPackets, q.maxBytes);

  let streams: RtpStreamFigures[] = [];
  if (q.rtpStats && rtpTotal > 0) streams = yield* rtpFigures(segments, rtpChosen, rtpTotal, spans, notes);

  keepEarliest();
  const summaries: MessageSummary[] = messages.map(({ m }) => {
    const sum = summaryOf(m);
    if (!legs) return sum;
    const via = legs.via.get(m.c);
    return { ...sum, legGroup: legs.group.get(m.c) ?? m.c, ...(via ? { legVia: via } : {}) };
  });
  return { segments, plan, packets: plan.packets, messages: summaries, messagesMatched, callIds: [...selected], dialogs, truncated: plan.truncated, bytes: plan.bytes, notes, streams };
}

/**
 * How far apart (seconds) the HEP copy of a message and its sniffed copy may
 * be: the proxy's clock against the agent's, and the proxy's HEP send after
 * its socket write.
 */
export const HEP_DUPLICATE_WINDOW_S = 2;

/**
 * The sniffed messages of a result, to recognise a HEP copy of one: same
 * Call-ID, CSeq, method or status, addresses, ports, transport and size, at
 * most HEP_DUPLICATE_WINDOW_S apart. Each sniffed message absorbs at most
 * one HEP copy (the nearest in time), so retransmissions stay counted. The
 * sniffed copy is the one kept: its headers are the wire's own.
 */
class SniffedCopies {
  private readonly byKey = new Map<string, Array<{ t: number; claimed: boolean }>>();

  private static key(m: MessageRecord): string {
    return `${m.c}\n${m.q}\n${m.m ?? m.s}\n${m.src}\n${m.sp}\n${m.dst}\n${m.dp}\n${m.pr}\n${m.n}`;
  }

  add(m: MessageRecord): void {
    const k = SniffedCopies.key(m);
    const list = this.byKey.get(k) ?? this.byKey.set(k, []).get(k)!;
    list.push({ t: m.t[0] + m.t[1] / 1e9, claimed: false });
  }

  /** Whether a sniffed copy of this HEP message was kept (then it is taken, for no other HEP copy). */
  claim(m: MessageRecord): boolean {
    const list = this.byKey.get(SniffedCopies.key(m));
    if (!list) return false;
    const t = m.t[0] + m.t[1] / 1e9;
    let best: { t: number; claimed: boolean } | null = null;
    for (const e of list) {
      if (e.claimed || Math.abs(e.t - t) > HEP_DUPLICATE_WINDOW_S) continue;
      if (!best || Math.abs(e.t - t) < Math.abs(best.t - t)) best = e;
    }
    if (!best) return false;
    best.claimed = true;
    return true;
  }
}

/**
 * The exact-RTP rule. A packet between a and b belongs to a selected dialog
 * when, at its time, that dialog's SDP announced both ends; or (symmetric
 * RTP behind NAT: the far end was never announced) one end, which no other
 * dialog overlapping it in time announced too. Two calls sharing a media
 * server's address and port thus each keep their own packets.
 */
function dialogOfMedia(
  la: DialogMedia[] | undefined,
  lb: DialogMedia[] | undefined,
  a: string,
  b: string,
  ts: Ts,
  contested: (end: string, d: DialogMedia) => boolean,
): DialogMedia | null {
  if (la && lb) for (const d of la) if (lb.includes(d) && inSpan(d, ts)) return d;
  if (la) for (const d of la) if (!d.ends.has(b) && inSpan(d, ts) && !contested(a, d)) return d;
  if (lb) for (const d of lb) if (!d.ends.has(a) && inSpan(d, ts) && !contested(b, d)) return d;
  return null;
}

/**
 * Whether each dialog of `ds` spans either all of [first, last] or none of
 * it: then dialogOfMedia answers the same for every packet of a flow that
 * lasted from first to last, since time enters the rule only through inSpan.
 */
function uniformOver(ds: DialogMedia[] | undefined, first: Ts, last: Ts): boolean {
  for (const d of ds ?? []) {
    const allIn = inSpan(d, first) && inSpan(d, last);
    const allOut = cmpTs(last, d.first) < 0 || cmpTs(first, spanEnd(d)) > 0;
    if (!allIn && !allOut) return false;
  }
  return true;
}

/**
 * Every dialog of the ring (selected or not) that announced one of the
 * selected dialogs' endpoints, with its whole span. Segments that begin
 * after every selected span has ended cannot hold a dialog overlapping one.
 */
function announcersOf(segments: OpenedSegment[], byEnd: Map<string, DialogMedia[]>, spans: DialogMedia[]): Map<string, DialogMedia[]> {
  let latest: Ts = [0, 0];
  for (const d of spans) if (cmpTs(spanEnd(d), latest) > 0) latest = spanEnd(d);
  const others = new Map<string, DialogMedia>();
  for (const s of segments) {
    const ix = s.index;
    if (ix.packetCount === 0 || cmpTs(ix.first, latest) > 0) continue;
    for (const dr of ix.allDialogs()) {
      const known = others.has(dr.c);
      if (!known && !dr.msgs.some((m) => m.sdp?.some(([a, port]) => byEnd.has(endpointText(a, port)) || byEnd.has(endpointText(a, port + 1))) || m.rc?.some(([a, port]) => byEnd.has(endpointText(a, port))))) continue;
      for (const m of dr.msgs) addToMedia(others, m);
    }
  }
  const out = new Map<string, DialogMedia[]>();
  for (const d of others.values()) for (const e of d.ends) if (byEnd.has(e)) (out.get(e) ?? out.set(e, []).get(e)!).push(d);
  return out;
}

/** The RTP packets of one segment given to dialogs (numbers in the result's media spans), in the order they were found. */
interface MediaPackets {
  ords: number[];
  dialogs: number[];
}

/** A segment's media packets sorted by ordinal (the flows give them flow by flow). */
function byOrdinal(m: MediaPackets, dialogCount: number): { ords: Uint32Array; dialogs: Uint32Array } {
  const n = m.ords.length;
  let sorted = true;
  for (let i = 1; i < n && sorted; i++) sorted = m.ords[i - 1] < m.ords[i];
  if (sorted) return { ords: Uint32Array.from(m.ords), dialogs: Uint32Array.from(m.dialogs) };
  const ords = new Uint32Array(n);
  const dialogs = new Uint32Array(n);
  if (dialogCount <= 1 << 21) {
    // Ordinal and dialog in one float (32 + 21 bits): a native numeric sort, where a comparator costs a call per step.
    const keys = Float64Array.from(m.ords, (ord, i) => ord * (1 << 21) + m.dialogs[i]).sort();
    keys.forEach((key, i) => {
      ords[i] = Math.floor(key / (1 << 21));
      dialogs[i] = key % (1 << 21);
    });
  } else {
    const order = Uint32Array.from(m.ords.keys()).sort((x, y) => m.ords[x] - m.ords[y]);
    order.forEach((j, i) => {
      ords[i] = m.ords[j];
      dialogs[i] = m.dialogs[j];
    });
  }
  return { ords, dialogs };
}

/** Packets read for RTP figures at most per trace; beyond, the figures cover the earliest and a note says so. */
const MAX_STATS_PACKETS = 2_000_000;

/** The RTP figures of the marked packets, read from the segments in time order; yields now and then. */
function* rtpFigures(
  segments: OpenedSegment[],
  chosen: (MediaPackets | undefined)[],
  total: number,
  dialogs: DialogMedia[],
  notes: string[],
): Generator<void, RtpStreamFigures[], void> {
  const stats = new RtpStreamStats();
  // The receiver's rtpmap names what it was sent; else any of the dialog's (a NATed end announced another address).
  const codecOf = (d: DialogMedia, dst: string) => (pt: number) => {
    const own = d.rtpmap.get(dst)?.get(pt);
    if (own) return own;
    for (const map of d.rtpmap.values()) if (map.has(pt)) return map.get(pt)!;
    return null;
  };
  const cols = refColumns(total);
  // Per segment, the chosen ordinals ascending and their dialogs, to find a record's dialog by binary search.
  const bySeg: Array<{ ords: Uint32Array; dialogs: Uint32Array } | undefined> = [];
  let k = 0;
  for (const [si, m] of chosen.entries()) {
    if (!m) continue;
    const { ords, dialogs: ds } = byOrdinal(m, dialogs.length);
    bySeg[si] = { ords, dialogs: ds };
    k = fillRefs(cols, k, si, ords, segments[si].index.packetEntries(ords));
    segments[si].index.releasePacketTable();
  }
  const dialogAt = (si: number, ord: number): DialogMedia => {
    const { ords, dialogs: ds } = bySeg[si]!;
    let lo = 0;
    let hi = ords.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ords[mid] < ord) lo = mid + 1;
      else hi = mid;
    }
    return dialogs[ds[lo]];
  };
  let refs = new PacketRefs(timeOrdered(cols, total), total);
  if (refs.length > MAX_STATS_PACKETS) {
    notes.push(`the RTP figures cover the first ${MAX_STATS_PACKETS} of ${refs.length} RTP packets of the selected dialogs`);
    refs = refs.head(MAX_STATS_PACKETS);
  }
  const fds = new Map<number, number>();
  try {
    let n = 0;
    for (const { rec, linkType, ref } of resultRecords(refs, segments, fds)) {
      const r = refs.at(ref);
      const dialog = dialogAt(r.seg, r.ord);
      const d = decodePacket(linkType, rec.data, rec.capLen < rec.origLen);
      if (typeof d !== 'string' && d.proto === 17 && d.fragment === null) {
        const dst = endpointText(d.dst, d.dport);
        stats.push(rec.tsSec, rec.tsNsec, endpointText(d.src, d.sport), dst, d.payload, codecOf(dialog, dst), dialog.callId);
      }
      if (++n % 50_000 === 0) yield;
    }
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
  return stats.figures();
}

/**
 * Above this many messages of a segment per selected dialog, each selected
 * Call-ID is looked up; below, one pass over the segment's dialogs costs less
 * (a lookup inflates a block of 32 dialogs for one). A broad query selects
 * most of the ring's dialogs: lookups would cost segments × dialogs.
 */
const MESSAGES_PER_LOOKUP = 50;

/** The segment's dialogs whose Call-ID is selected. */
function* selectedDialogs(ix: SegmentIndex, selected: Set<string>): Generator<DialogRecord> {
  if (selected.size * MESSAGES_PER_LOOKUP < ix.messageCount) {
    for (const c of selected) yield* ix.dialogsByCallId(c);
    return;
  }
  for (const d of ix.eachDialog()) if (selected.has(d.c)) yield d;
}

/**
 * Writes a result's packets as one capture (see writePlannedPcap): streamed
 * with backpressure, never held in memory.
 */
export function writeResultPcap(r: QueryResult, out: Writable): Promise<{ packets: number; bytes: number; format: 'pcap' | 'pcapng' }> {
  return writePlannedPcap(r.segments, r.plan, out);
}

/** Every packet of a result, in order, in one list: for tests and small results (a broad query's is ring-sized). Before closeResult. */
export function resultRefs(r: QueryResult): PacketRefs {
  return collectRefs(r.segments, r.plan);
}

/** Releases the index files a result holds open. */
export function closeResult(r: QueryResult): void {
  for (const s of r.segments) s.index.close();
}
