import { z } from 'zod';
import { peerCounts, peerName, DIRECTIONS, type PeerCounts } from './counts';
import { figuresOf, type Figures } from './figures';
import { AGENT_NAME_PATTERN } from '../protocol/common';

/*
 * GET /api/stats: what it takes and what it answers. The page and
 * `tracefleet stats` read the answer; the dispatcher makes it
 * (dispatcher/stats/fleet-stats.ts).
 */

const one = <T extends z.ZodTypeAny>(s: T) => z.union([s, z.array(s).max(64)]).transform((v) => (Array.isArray(v) ? v : [v]) as z.infer<T>[]);
const time = z.string().max(64).refine((s) => !Number.isNaN(Date.parse(s)), 'give an ISO 8601 time, e.g. 2026-12-04T10:00:00Z').transform((s) => Date.parse(s) / 1000);

/** The query string: a time range (default the last hour), and hosts and peers to keep (repeat the key for several). */
export const statsQuery = z
  .object({
    from: time.optional(),
    to: time.optional(),
    host: one(z.string().regex(new RegExp(AGENT_NAME_PATTERN), 'host names are agent names: 1-64 letters, digits, _, . or -')).optional(),
    peer: one(peerName).optional(),
  })
  .strict()
  .refine((q) => q.from === undefined || q.to === undefined || q.from < q.to, { message: 'from must be before to', path: ['from'] });
export type StatsQuery = z.infer<typeof statsQuery>;

/** Counts added up, and what they mean. */
export interface StatsCell {
  counts: PeerCounts;
  figures: Figures;
}

export interface StatsAnswer {
  /** The range asked for, ISO. */
  from: string;
  to: string;
  /** Per window (oldest first): the fleet's total, and a row per host, peer and direction. */
  windows: Array<{ start: string; seconds: number; hosts: string[]; total: StatsCell; rows: Array<{ host: string; peer: string; dir: (typeof DIRECTIONS)[number] } & StatsCell> }>;
  /** Per peer and direction over the range, the worst first: most failed INVITE dialogs, then the highest error ratio. */
  peers: Array<{ peer: string; dir: (typeof DIRECTIONS)[number]; hosts: string[] } & StatsCell>;
  /** Per host over the range, the worst first. */
  hosts: Array<{ host: string } & StatsCell>;
}

export const cell = (counts: PeerCounts): StatsCell => ({ counts, figures: figuresOf(counts) });

/** Failed INVITE dialogs, as the error ratio counts them: what "worst" sorts by. */
export const failures = (f: Figures): number => f.failed['4xx'] + f.failed['5xx'] + f.failed['6xx'] + f.unfinished;

export function worstFirst<T extends StatsCell>(a: T, b: T): number {
  return failures(b.figures) - failures(a.figures) || (b.figures.errorRatio ?? -1) - (a.figures.errorRatio ?? -1) || b.figures.invites - a.figures.invites;
}


/** The part of the answer a client checks and uses: the windows' counts (figures are computed again from them). */
export const statsAnswerCounts = z.object({
  from: z.string(),
  to: z.string(),
  windows: z.array(z.object({ start: z.string(), seconds: z.number(), rows: z.array(z.object({ host: z.string().max(64), peer: peerName, dir: z.enum(DIRECTIONS), counts: peerCounts })) })),
});
