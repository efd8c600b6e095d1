import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { WindowStats } from './windows';
import { statsWindow } from '../../shared/stats/counts';

/**
 * The statistics file beside the ring (sipstats.json): written aside and
 * renamed, so a crash leaves the previous one; read back through a schema,
 * since a file on disk is outside input like any other.
 */
export const STATS_FILE = 'sipstats.json';

export const savedStats = z.object({
  version: z.literal(1),
  windowSeconds: z.number().int().positive(),
  newest: z.number(),
  windows: z.array(statsWindow).max(100_000),
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
