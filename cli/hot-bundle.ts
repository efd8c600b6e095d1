import { readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Script } from 'node:vm';

/*
 * The hot commands (cli/hot.ts: a plain `query`) run from one
 * file that `npm run build` makes after tsc (scripts/bundle-cli.js): their
 * ~50 files, zod included, in one esbuild bundle, compiled from a V8 code
 * cache made by a run of `query` at build time. Resolving, reading and
 * compiling those modules one by one was most of what `query` added to bare
 * node (docs/ARCHITECTURE.md, "The CLI").
 *
 * A bundle is a copy, so it is run only while it is exactly what the build
 * made it from: its manifest lists every input file with its size and mtime,
 * and any difference (a `tsc` run alone rewrites every file in dist/, an npm
 * install replaces zod) sends the CLI down the ordinary path through dist/.
 * V8 itself refuses a code cache made by another node or with other flags;
 * the manifest pins the cache to the bundle's own bytes, which V8 does not.
 */

/**
 * The bundles and the command each runs: `query`'s hot.bundle.* (entry
 * cli/hot.ts) and `trace`'s trace.bundle.* (entry cli/hot-trace.ts), apart
 * so that `query` does not pay for Socket.IO's client.
 */
export const HOT_BUNDLES = { query: 'hot', trace: 'trace' } as const;
export type HotBundleName = (typeof HOT_BUNDLES)[keyof typeof HOT_BUNDLES];

/** The bundle that runs argv's command, or null. */
export function bundleOf(argv: string[]): HotBundleName | null {
  const c = argv[0] ?? '';
  return Object.hasOwn(HOT_BUNDLES, c) ? HOT_BUNDLES[c as keyof typeof HOT_BUNDLES] : null;
}

/** A bundle's files, beside this module in dist/cli/ unless told otherwise (tests build one aside). */
export function hotBundlePaths(dir = __dirname, name: HotBundleName = 'hot') {
  return { bundle: join(dir, `${name}.bundle.js`), cache: join(dir, `${name}.bundle.cache`), manifest: join(dir, `${name}.bundle.json`) };
}

type Stamp = [size: number, mtimeMs: number];

/** What the build wrote beside the bundle; paths of inputs are relative to `root`. */
export interface HotBundleManifest {
  root: string;
  bundle: Stamp;
  cache: Stamp | null;
  inputs: Array<[path: string, size: number, mtimeMs: number]>;
}

export function stampOf(path: string): Stamp | null {
  const s = statSync(path, { throwIfNoEntry: false });
  return s ? [s.size, s.mtimeMs] : null;
}

const same = (a: Stamp | null, b: Stamp | null) => a !== null && b !== null && a[0] === b[0] && a[1] === b[1];

/** 'fresh' when the bundle may run; otherwise why not (what bench:query prints beside its figures). */
export function hotBundleState(dir?: string, name: HotBundleName = 'hot'): { state: 'fresh'; manifest: HotBundleManifest } | { state: 'missing' | 'stale'; why: string } {
  const p = hotBundlePaths(dir, name);
  let m: HotBundleManifest;
  try {
    m = JSON.parse(readFileSync(p.manifest, 'utf8')) as HotBundleManifest;
  } catch {
    return { state: 'missing', why: `no ${p.manifest} (npm run build makes it)` };
  }
  if (!same(stampOf(p.bundle), m.bundle)) return { state: 'stale', why: `${p.bundle} is not the file the manifest describes` };
  for (const [rel, size, mtimeMs] of m.inputs) {
    if (!same(stampOf(join(m.root, rel)), [size, mtimeMs])) return { state: 'stale', why: `${rel} changed since the bundle was built` };
  }
  return { state: 'fresh', manifest: m };
}

/** What each bundle's entry exports (cli/hot.ts, cli/hot-trace.ts). */
interface HotEntry {
  hotCommand(argv: string[]): boolean;
}

/** A bundle's exports, compiled with `cachedData` when given; `script` to make a cache from after a run. */
export function loadHotBundle(dir?: string, cachedData?: Buffer, name: HotBundleName = 'hot'): { hot: HotEntry; script: Script } {
  const p = hotBundlePaths(dir, name);
  const source = readFileSync(p.bundle, 'utf8');
  // The wrapper Node puts around a CommonJS file; the bundle require()s built-in modules only, and (trace's) ws's optional addons.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: p.bundle, cachedData });
  const module = { exports: {} as HotEntry };
  (script.runInThisContext() as (...a: unknown[]) => void)(module.exports, createRequire(p.bundle), module, p.bundle, dir ?? __dirname);
  return { hot: module.exports, script };
}

/**
 * Runs a hot command's argv (isHotCommand) from the bundle when it is
 * fresh; true when it was handled there. False sends the caller to dist/
 * (and to yargs for anything the hand parser leaves alone).
 */
export function runHotBundle(argv: string[], dir?: string): boolean {
  const name = bundleOf(argv);
  if (!name) return false;
  const fresh = hotBundleState(dir, name);
  if (fresh.state !== 'fresh') return false;
  const p = hotBundlePaths(dir, name);
  const cachedData = same(stampOf(p.cache), fresh.manifest.cache) ? readFileSync(p.cache) : undefined;
  return loadHotBundle(dir, cachedData, name).hot.hotCommand(argv);
}
