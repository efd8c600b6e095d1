import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { WindowStats } from './windows';

/**
 * The statistics file beside the ring (sipstats.json): written aside and
 * renamed, so a crash leaves the previous one; read back through a schema,
 * since a file on disk is outside input like any other.
 */
export const STATS_FILE = 'sipstats.json';

const counts = z.record(z.string().max(16), z.number().nonnegative().finite());
const peerCounts = z.object({
  requests: counts, responses: counts, invites: z.number().nonnegative(), finals: counts, unfinished: z.number().nonnegative(),
  ended: z.number().nonnegative(), durationSeconds: z.number().nonnegative(), zeroDuration: z.number().nonnegative(), short: z.number().nonnegative(),
  srdCount: z.number().nonnegative(), srdSeconds: z.number().nonnegative(),
});
export const savedStats = z.object({
  version: z.literal(1),
  windowSeconds: z.number().int().positive(),
  newest: z.number(),
  windows: z.array(z.object({
    start: z.number(),
    seconds: z.number().int().positive(),
    rows: z.array(z.object({ peer: z.string().max(64), dir: z.enum(['in', 'out']), counts: peerCounts })),
  })).max(100_000),
});
export type SavedStats = z.infer<typeof savedStats>;

export function statsPath(ringDir: string): string {
  return join(ringDir, STATS_FILE);
}

export function saveStats(ringDir: string, stats: WindowStats): void {
  const path = statsPath(ringDir);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o640);
  try {
    writeSync(fd, JSON.stringify(stats.toJSON()));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/** The saved statistics, or null when there are none; throws with the reason when the file is not ours. */
export function loadStats(ringDir: string): SavedStats | null {
  let text: string;
  try {
    text = readFileSync(statsPath(ringDir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const r = savedStats.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`${statsPath(ringDir)}: not a statistics file (${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message})`);
  return r.data;
}
