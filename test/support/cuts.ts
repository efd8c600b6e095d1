/**
 * `bytes` cut at pseudo-random points 1 to `max` bytes apart (a fixed LCG
 * from `seed`, so a failure repeats), so that headers and records of a
 * stream straddle its chunks. Views of `bytes`, not copies.
 */
export function unevenCuts(bytes: Buffer, seed: number, max: number): Buffer[] {
  const out: Buffer[] = [];
  let x = seed;
  for (let off = 0; off < bytes.length; ) {
    x = (x * 1103515245 + 12345) >>> 0;
    const n = 1 + (x % max);
    out.push(bytes.subarray(off, off + n));
    off += n;
  }
  return out;
}
