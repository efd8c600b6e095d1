import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A running agent owns its ring: it writes the newest segments and their
 * indexes. Other processes (a local `tracefleet query`) must then not rewrite
 * index files; when nobody owns the ring they may repair them.
 */
const LOCK_NAME = 'agent.pid';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid of the live process owning the ring, or null. */
export function ringOwner(ringDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(ringDir, LOCK_NAME), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
  } catch {
    return null;
  }
}

/** Takes ownership of the ring; throws if another live process has it. Returns a release function. */
export function lockRing(ringDir: string): () => void {
  const path = join(ringDir, LOCK_NAME);
  const owner = ringOwner(ringDir);
  if (owner !== null && owner !== process.pid) {
    throw new Error(`ring ${ringDir} is in use by process ${owner} (another agent?); stop it or use another --ring directory`);
  }
  try { unlinkSync(path); } catch { /* stale or absent */ }
  const fd = openSync(path, 'wx');
  writeSync(fd, `${process.pid}\n`);
  closeSync(fd);
  return () => {
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
    } catch { /* already gone */ }
  };
}
