import { readFileSync } from 'node:fs';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { PassThrough, Readable, Writable } from 'node:stream';
import { mergeCaptures, type HostShift, type MergeInput, type MergeResult, type PacketObserver } from '../merge/merge';
import { ClockSampler } from '../merge/clock';
import { HopCollector } from '../merge/hops';
import { PCAP_HEADER_LEN, PCAP_RECORD_HEADER_LEN } from '../../shared/pcap/pcap';
import type { RtpHop, TraceClocks } from '../../shared/trace/vantage';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, type MergedReference, PCAP_CONTENT_TYPE, ResultDoc, resultDocId, traceDocId } from '../store/layout';
import { StoreError, TraceStore } from '../store/store';
import { sameAsMerge } from './same-as-file';
import type { Spool } from './spool';

export interface TraceMerge extends MergeResult {
  /** Null when no two hosts captured a common packet. */
  clocks: TraceClocks | null;
  hops: RtpHop[];
}

/**
 * Host PCAPs up to WHOLE_INPUT_MAX are read whole before the merge,
 * WHOLE_READS_AT_ONCE at a time and at most WHOLE_INPUTS_BYTES in all; the
 * rest are streamed. A k-way merge starts by reading every input: a stream
 * each for a 10,000-host trace meant 10,000 files (or store requests) open
 * at once on top of the agents' sockets, past the descriptor limit.
 */
const WHOLE_INPUT_MAX = 256 * 1024;
const WHOLE_INPUTS_BYTES = 64 * 1024 * 1024;
const WHOLE_READS_AT_ONCE = 32;

/** A sink for the survey pass of an aligned merge: the bytes are not wanted, only what the observer saw. */
function discard(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() });
}

/** The offset applied to a host, as the merged PCAPNG's interface comment says it. */
function shiftComment(host: string, c: TraceClocks['hosts'][number], reference: string): string {
  if (c.offsetMs === null) return `${host}: no clock offset known (no packet in common with another host), timestamps as captured`;
  if (host === reference) return `${host}: reference clock, timestamps as captured`;
  return `${host}: clock offset ${c.offsetMs.toFixed(6)} ms against ${reference} subtracted (spread ${c.spreadMs?.toFixed(6) ?? '?'} ms, ${c.samples} packets against ${c.against})`;
}

function observers(results: ResultDoc[]): { clock: ClockSampler; hopper: HopCollector } {
  return {
    clock: new ClockSampler(),
    hopper: new HopCollector(results.flatMap((r) => (r.streams ?? []).map((s) => ({ host: r.host, ssrc: s.ssrc, src: s.src, dst: s.dst })))),
  };
}

/** The trace's clocks and hops from what the observers saw (`aligned`: the clocks an aligned merge was made on). */
function figures(m: MergeResult, results: ResultDoc[], clock: ClockSampler, hopper: HopCollector, aligned?: TraceClocks | null): TraceMerge {
  const clocks = aligned !== undefined ? aligned : clock.estimate(results.map((r) => r.host));
  if (clocks && aligned !== undefined) clocks.aligned = true;
  const hops = hopper.hops(clocks, new Set(results.filter((r) => r.truncated).map((r) => r.host)));
  if (hopper.cut > 0) m.notes.push(`${hopper.cut} RTP packets were left out of the hop figures (more than the per-stream limit)`);
  return { ...m, clocks, hops };
}

/**
 * A one-host trace's merge, made while the host is received: `input`
 * follows the host's spool file (SpoolFeed), and merged.pcap is stored as
 * the merge writes it. One host has nothing to align or compare, so this
 * is mergeTrace()'s merge of the same file, byte for byte; its figures are
 * taken with liveMergeFigures() once the host's result is stored. Rejects
 * (storing nothing) when the input fails, as it does when the host's file
 * turns out not to be what was followed.
 *
 * With `same`: the host's file is first read through a FramingCheck
 * (sameAsMerge): when it proves the merge of that one host is the file
 * itself (a nanosecond PCAP in order and without duplicates, as agents send
 * them), the merge is not run at all, and when the host's packets.pcap was
 * stored from that same file (`same.hostStored` resolves with its length),
 * no byte is sent again: the trace document names packets.pcap as its
 * merged PCAP (mergedAttachment, see mergedPcap()), on every store; the
 * embedded store's server answers a direct GET of the trace's merged.pcap
 * with the named attachment. Otherwise (the check failed at some record, or
 * packets.pcap was not stored whole) the real merge runs over the whole
 * file again (`same.feed.reader()`) and its output is uploaded.
 */
export async function mergeOneLive(store: TraceStore, traceId: string, host: string, input: Readable, same?: SameInput): Promise<MergeResult> {
  if (same) return mergeOneChecked(store, traceId, host, input, same);
  const merged = new PassThrough();
  const merging = mergeCaptures([{ host, stream: input }], merged).catch((e: Error) => {
    merged.destroy(e);
    throw e;
  });
  const [m] = await Promise.all([merging, store.putAttachmentStream(traceDocId(traceId), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, merged)]);
  return m;
}

/** The followed spool file a one-host merge reads (`feed`: a reader of it again from its start), and when its packets.pcap was stored. */
export interface SameInput {
  hostStored: Promise<number | null>;
  feed: { reader(): Readable };
}

async function mergeOneChecked(store: TraceStore, traceId: string, host: string, input: Readable, same: SameInput): Promise<MergeResult> {
  const figures = await sameAsMerge(input, host);
  if (figures) {
    // The file's whole length: its header and a record header per packet besides the packets' bytes.
    const length = PCAP_HEADER_LEN + figures.packets * PCAP_RECORD_HEADER_LEN + figures.bytes;
    if ((await same.hostStored) === length) {
      const stub = await store.getAttachmentInfo(resultDocId(traceId, host), HOST_ATTACHMENT);
      if (stub?.length === length) {
        const ref: MergedReference = { doc: resultDocId(traceId, host), name: HOST_ATTACHMENT, content_type: stub.content_type, length: stub.length, digest: stub.digest };
        await store.updateTrace(traceId, (d) => {
          d.mergedAttachment = ref;
        });
        // What mergeCaptures() returns for such a file.
        return { packets: figures.packets, bytes: figures.bytes, duplicates: 0, format: 'pcap', notes: figures.notes };
      }
    }
  }
  return mergeOneLive(store, traceId, host, same.feed.reader());
}

/** What mergeTrace() gives for a one-host trace, from mergeOneLive()'s result (no packet was observed: one host has no peer). */
export function liveMergeFigures(m: MergeResult, results: ResultDoc[]): TraceMerge {
  const { clock, hopper } = observers(results);
  return figures({ ...m, notes: [...m.notes] }, results, clock, hopper);
}

/**
 * Merges the hosts' PCAPs of a finished trace into its merged.pcap in the
 * store, streaming: the hosts this dispatcher ran are read from its spool,
 * only peers' hosts come back from the store. The merge also works out the
 * hosts' clock offsets and the RTP hops from the packets passing through.
 * With `align`, those come from a first pass over the hosts' files, and the
 * second writes the merged file on the corrected clocks (a PCAPNG); the
 * hosts' own files are never changed.
 */
export async function mergeTrace(store: TraceStore, spool: Spool, traceId: string, results: ResultDoc[], align = false): Promise<TraceMerge> {
  let storeFailed: Error | null = null;
  const stored = results.filter((r) => r._attachments?.[HOST_ATTACHMENT]);
  // A peer's host, stored but not in this dispatcher's spool (the spool's files are read by the merge itself).
  const open = (r: ResultDoc): Readable => {
    const stream = store.getAttachmentStream(resultDocId(traceId, r.host), HOST_ATTACHMENT);
    stream.once('error', (e: Error) => {
      if (e instanceof StoreError) storeFailed ??= e;
    });
    return stream;
  };
  const whole = new Map<string, Buffer>();
  // A host's file in the spool is read by the merge itself (cheaper than a file stream); a peer's comes from the store.
  const inputs = (): MergeInput[] =>
    stored.map((r) => {
      const w = whole.get(r.host);
      if (w) return { host: r.host, stream: Readable.from([w], { objectMode: false }) };
      const local = spool.storedPcap(traceId, r.host);
      return local ? { host: r.host, path: local } : { host: r.host, stream: open(r) };
    });
  const { clock, hopper } = observers(results);
  // Clock offsets and hops compare hosts: one host's merge has nothing to observe (and is the merge's fast copy then).
  const observe: PacketObserver | undefined =
    new Set(stored.map((r) => r.host)).size < 2
      ? undefined
      : hopper.wanted
        ? (host, lt, data, sec, nsec) => {
            clock.observe(host, lt, data, sec, nsec);
            hopper.observe(host, lt, data, sec, nsec);
          }
        : (host, lt, data, sec, nsec) => clock.observe(host, lt, data, sec, nsec);
  const hosts = results.map((r) => r.host);
  try {
    let budget = WHOLE_INPUTS_BYTES;
    const small = stored.filter((r) => {
      const size = r._attachments?.[HOST_ATTACHMENT]?.length ?? r.bytes;
      if (size > WHOLE_INPUT_MAX || size > budget) return false;
      budget -= size;
      return true;
    });
    for (let i = 0; i < small.length; i += WHOLE_READS_AT_ONCE) {
      const batch = small.slice(i, i + WHOLE_READS_AT_ONCE);
      // A small spool file is read at once, on the loop: a stream each cost a 1 MiB buffer (MERGE_READ_CHUNK) and four
      // trips through the thread pool, and 10,000 of those were most of a fleet trace's merge. A batch blocks ~1 ms.
      const remote: ResultDoc[] = [];
      for (const r of batch) {
        const local = spool.storedPcap(traceId, r.host);
        if (local) whole.set(r.host, readFileSync(local));
        else remote.push(r);
      }
      await Promise.all(remote.map(async (r) => whole.set(r.host, Buffer.concat((await open(r).toArray()) as Buffer[]))));
      if (remote.length === 0) await yieldLoop();
    }
    let shifts: Map<string, HostShift> | undefined;
    let clocks: TraceClocks | null = null;
    if (align) {
      await mergeCaptures(inputs(), discard(), { observe });
      clocks = clock.estimate(hosts);
      shifts = new Map(
        hosts.map((h) => {
          const c = clocks?.hosts.find((x) => x.host === h) ?? { host: h, offsetMs: null, spreadMs: null, samples: 0, against: null, twoWay: false };
          return [h, { offsetNs: (c.offsetMs ?? 0) * 1e6, comment: shiftComment(h, c, clocks?.reference ?? h) }];
        }),
      );
    }
    const merged = new PassThrough();
    const merging = mergeCaptures(inputs(), merged, align ? { align: shifts } : { observe }).catch((e: Error) => {
      merged.destroy(e);
      throw e;
    });
    const [m] = await Promise.all([merging, store.putAttachmentStream(traceDocId(traceId), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, merged)]);
    return figures(m, results, clock, hopper, align ? clocks : undefined);
  } catch (e) {
    // An input read back from a store that went away is the store's failure: try the merge again later.
    if (storeFailed) throw storeFailed;
    throw e;
  }
}
