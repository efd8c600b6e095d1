import { z } from 'zod';

/*
 * SIP statistics as they are saved beside an agent's ring, sent to the
 * dispatcher and answered by GET /api/stats: one schema, the types inferred
 * from it. Counts of one peer, one direction, one window (agent/stats
 * explains how they are counted; shared/stats/figures.ts what they mean).
 */

const tally = z.record(z.string().max(16), z.number().nonnegative().finite()).refine((r) => Object.keys(r).length <= 1000, 'at most 1000 keys');
const n = z.number().nonnegative().finite();

export const peerCounts = z.object({
  /** Requests by method (unregistered methods as "other"). */
  requests: tally,
  /** Responses by status code. */
  responses: tally,
  /** New INVITE dialogs (a first INVITE for its Call-ID). */
  invites: n,
  /** Their final responses, by status code (the first final to the first INVITE's CSeq). */
  finals: tally,
  /** Dialogs that got no final response within the agent's final timeout, or were given up. */
  unfinished: n,
  /** Answered calls ended by a BYE: how many, total seconds, and those under 1 s and under the short-call length. */
  ended: n,
  durationSeconds: n,
  zeroDuration: n,
  short: n,
  /** Session request delay (RFC 6076 SRD): INVITE to its first response other than 100, summed over dialogs. */
  srdCount: n,
  srdSeconds: n,
});
export type PeerCounts = z.infer<typeof peerCounts>;

export const DIRECTIONS = ['in', 'out'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** A peer: an address, an operator's name, or "other" (past a window's cap). Plain printable text: it is shown and used as a label. */
export const peerName = z.string().min(1).max(64).regex(/^[\x21-\x7e]+$/, 'peer names are printable ASCII without spaces');

export const windowRow = z.object({ peer: peerName, dir: z.enum(DIRECTIONS), counts: peerCounts });
export type WindowRow = z.infer<typeof windowRow>;

export const statsWindow = z.object({
  /** Unix seconds. */
  start: z.number().int().nonnegative(),
  seconds: z.number().int().min(1).max(86_400),
  rows: z.array(windowRow).max(1000),
});
export type StatsWindow = z.infer<typeof statsWindow>;

export function emptyCounts(): PeerCounts {
  return { requests: {}, responses: {}, invites: 0, finals: {}, unfinished: 0, ended: 0, durationSeconds: 0, zeroDuration: 0, short: 0, srdCount: 0, srdSeconds: 0 };
}
