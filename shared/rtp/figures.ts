import { z } from 'zod';

/**
 * The quality figures of one RTP stream of a traced call: the agent computes
 * them (shared/rtp/stats.ts over its ring), trace:done carries them, the
 * dispatcher stores them, the CLI and the page show them. One schema for all.
 */
const count = z.number().int().nonnegative();
const ms = z.number().nonnegative();

export const MAX_STREAM_EVENTS = 64;
export const MAX_STREAM_POINTS = 120;

export const rtpEvent = z.object({
  /** RFC 4733 event: '0'-'9', '*', '#', 'A'-'D', 'flash' or its number. */
  event: z.string().max(8),
  /** Epoch seconds, nine decimals, of the event's first packet. */
  ts: z.string().max(32),
  durationMs: ms,
});

export const rtpStreamFigures = z.object({
  /** Hex, 8 digits: 0x1a2b3c4d. */
  ssrc: z.string().regex(/^0x[0-9a-f]{8}$/),
  src: z.string().max(64),
  dst: z.string().max(64),
  payloadType: z.number().int().min(0).max(127),
  /**
   * The dialog whose SDP announced the stream's ends (its first packet's, when
   * two dialogs did): the page groups streams by the call and leg of it.
   * Absent in figures stored before it was sent.
   */
  callId: z.string().max(1024).optional(),
  /** From the dialog's SDP rtpmap, else the static RTP/AVP table; null when unknown. */
  codec: z.string().max(64).nullable(),
  /** Epoch seconds with nine decimals, as message summaries have them. */
  first: z.string().max(32),
  last: z.string().max(32),
  packets: count,
  /** Highest extended sequence number minus the lowest plus one. */
  expected: count,
  /** Expected minus distinct sequence numbers received; never negative. */
  lost: count,
  duplicated: count,
  /** Packets that came after one with a higher sequence number. */
  outOfOrder: count,
  /** Largest time between two consecutive packets (arrival order), ms. */
  maxGapMs: ms,
  /** RFC 3550 §6.4.1 interarrival jitter in ms: the mean of its running value over the packets, and its maximum; null without a known clock rate. */
  jitterMeanMs: ms.nullable(),
  jitterMaxMs: ms.nullable(),
  /** RFC 2833/4733 telephone events, the first MAX_STREAM_EVENTS. */
  events: z.array(rtpEvent).max(MAX_STREAM_EVENTS),
  eventCount: count,
  /** ITU-T G.107 E-model estimate (see docs/ARCHITECTURE.md for the constants); null when the codec is unknown. */
  rFactor: z.number().min(0).max(100).nullable(),
  mos: z.number().min(1).max(4.5).nullable(),
  /** Jitter (running value, ms, the highest in the bucket) and packets lost per time bucket, for the page's chart. */
  series: z.object({
    bucketMs: z.number().int().positive(),
    points: z.array(z.object({ t: ms, jitterMs: ms, lost: count })).max(MAX_STREAM_POINTS),
  }),
});
export type RtpStreamFigures = z.infer<typeof rtpStreamFigures>;
export type RtpEvent = z.infer<typeof rtpEvent>;

/** Streams per trace:done at most; more are summed up in a note. */
export const MAX_STREAMS = 1000;
export const rtpStreamList = z.array(rtpStreamFigures).max(MAX_STREAMS);
