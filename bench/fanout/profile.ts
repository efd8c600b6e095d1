import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/*
 * Self time by function from V8 .cpuprofile files (node --cpu-prof): where a
 * process spent its CPU, grouped by function and by where its code lives
 * (our file, an npm package, node's internals, GC, idle).
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  name: string;
  ms: number;
}

export interface ProfileSummary {
  totalMs: number;
  byFunction: SelfTime[];
  byPlace: SelfTime[];
  /** Self time charged to the nearest caller in our code or an npm package (native and node: frames walked up). */
  byCaller: SelfTime[];
}

const V8_OWN = new Set(['(idle)', '(garbage collector)', '(program)', '(root)']);

/** Where code lives: "dispatcher/store/store.js", "npm:nano", "node:internal", or V8's own (GC, idle, program). */
function place(url: string, fn: string): string {
  if (!url) return `(${fn || 'anonymous'})`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `npm:${nm[1]}`;
  if (url.startsWith('node:')) return url;
  const dist = /\/dist\/(.+)$/.exec(url);
  return dist ? dist[1] : url.replace(/^file:\/\//, '');
}

/**
 * Sums the samples of the profiles in `dir` that fall in one of `windows`
 * (wall-clock ms). On Linux a sample's time is the monotonic clock's; elsewhere
 * a profile's startTime is taken as `startedAt`, the wall time the process was
 * spawned (off by node's start-up). With `pid`, only that process's profiles.
 */
export function summarizeProfiles(dir: string, startedAt: number, windows: Array<[number, number]>, top = 15, pid?: number): ProfileSummary | null {
  let files: string[];
  try {
    // node names them CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; children that inherit the directory write there too.
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && (pid === undefined || f.split('.')[3] === String(pid)));
  } catch {
    return null;
  }
  if (files.length === 0) return null;
  // V8 stamps samples in µs of the machine's monotonic clock (Linux), the same in every process: taken to wall
  // time here, not from the spawn time, which missed by node's start-up (hundreds of ms on a loaded machine).
  const monoToWall = process.platform === 'linux' ? performance.timeOrigin + performance.now() - Number(process.hrtime.bigint()) / 1e6 : null;
  const byFn = new Map<string, number>();
  const byPlace = new Map<string, number>();
  const byCaller = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const nodes = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const callerOf = (n: ProfileNode): string => {
      if (V8_OWN.has(n.callFrame.functionName)) return n.callFrame.functionName;
      let cur: ProfileNode | undefined = n;
      // Bounded by the tree's depth: each step goes to a parent.
      for (let depth = 0; cur && depth < 10_000; depth++) {
        const u = cur.callFrame.url;
        if (u && !u.startsWith('node:')) return `${cur.callFrame.functionName || '(anonymous)'} ${place(u, '')}:${cur.callFrame.lineNumber + 1}`;
        const up = parent.get(cur.id);
        cur = up === undefined ? undefined : nodes.get(up);
      }
      return `${n.callFrame.functionName || '(anonymous)'} (no caller in our code or a package)`;
    };
    let t = p.startTime;
    for (let i = 0; i < p.samples.length; i++) {
      const n = nodes.get(p.samples[i]);
      const ms = (p.timeDeltas[i] ?? 0) / 1000;
      t += p.timeDeltas[i] ?? 0;
      const wall = monoToWall !== null ? monoToWall + t / 1000 : startedAt + (t - p.startTime) / 1000;
      if (!n || ms <= 0 || !windows.some(([a, b]) => wall >= a && wall <= b)) continue;
      total += ms;
      const cf = n.callFrame;
      const where = place(cf.url, cf.functionName);
      const fn = `${cf.functionName || '(anonymous)'} ${cf.url ? `${where}:${cf.lineNumber + 1}` : ''}`.trim();
      byFn.set(fn, (byFn.get(fn) ?? 0) + ms);
      byPlace.set(where, (byPlace.get(where) ?? 0) + ms);
      const caller = callerOf(n);
      byCaller.set(caller, (byCaller.get(caller) ?? 0) + ms);
    }
  }
  const sorted = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms: Math.round(ms) }));
  return { totalMs: Math.round(total), byFunction: sorted(byFn), byPlace: sorted(byPlace), byCaller: sorted(byCaller) };
}
