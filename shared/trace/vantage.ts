import { z } from 'zod';

/**
 * What the merge of a trace learns from seeing one packet on several hosts
 * (dispatcher/merge/clock.ts, dispatcher/merge/hops.ts): each host's clock
 * against a reference host, and per RTP stream seen on several hosts, what
 * each hop between two vantage points did to it. The dispatcher stores
 * them in the trace document; the REST API, summary.json, the CLI and the
 * page show them. One schema for all.
 */
const count = z.number().int().nonnegative();
const ms = z.number().nonnegative();

export const hostClock = z.object({
  host: z.string(),
  /**
   * How far this host's clock is ahead of the reference host's, ms: its
   * timestamps minus this are on the reference's clock. 0 for the
   * reference; null when the host shares no packet with any host that has
   * an offset.
   */
  offsetMs: z.number().nullable(),
  /** Interquartile range of the per-packet differences around their direction's median, ms; null without samples. */
  spreadMs: ms.nullable(),
  /** Packets seen both here and on the host this offset was measured against. */
  samples: count,
  /** The host the offset was measured against (the reference, or a host already placed); null for the reference and unplaced hosts. */
  against: z.string().nullable(),
  /**
   * True when packets went both ways between the two hosts, so the offset is
   * the mean of the two directions' medians (the path's delay cancels out
   * when it is the same both ways); false when they went one way only and
   * the offset includes that path's delay.
   */
  twoWay: z.boolean(),
});
export type HostClock = z.infer<typeof hostClock>;

export const traceClocks = z.object({
  /** The host every offset is against: the one sharing the most packets with the others. */
  reference: z.string(),
  hosts: z.array(hostClock),
  /** Set when the merged file was written with corrected timestamps (--align-clocks). */
  aligned: z.boolean(),
});
export type TraceClocks = z.infer<typeof traceClocks>;

export const MAX_HOPS = 1000;

export const rtpHop = z.object({
  /** The stream: hex SSRC and its 5-tuple's ends, as shared/rtp/figures.ts writes them. */
  ssrc: z.string().regex(/^0x[0-9a-f]{8}$/),
  src: z.string().max(64),
  dst: z.string().max(64),
  /** The vantage point that saw the stream first (corrected clocks) and the next one. */
  from: z.string(),
  to: z.string(),
  /** Distinct sequence numbers seen at `from`. */
  packets: count,
  /** Seen at `from`, never at `to`: lost on this hop. */
  lost: count,
  /** Seen at `to`, never at `from`: the upstream vantage point missed them (its capture dropped them, or they took another path). */
  unseenUpstream: count,
  /** Median and largest time from `from` to `to` of the packets both saw, clock offsets applied; null when none was seen by both. */
  delayMs: z.number().nullable(),
  delayMaxMs: z.number().nullable(),
  /**
   * Jitter this hop added: RFC 3550's running estimate (gain 1/16) applied
   * to the per-packet transit time from `from` to `to` in sequence order,
   * ms; its mean over the packets and its maximum. Needs no codec clock.
   */
  jitterAddedMeanMs: ms.nullable(),
  jitterAddedMaxMs: ms.nullable(),
  /** False when either host has no clock offset, so the delay is on raw clocks. */
  corrected: z.boolean(),
});
export type RtpHop = z.infer<typeof rtpHop>;
export const rtpHopList = z.array(rtpHop).max(MAX_HOPS);
