#!/usr/bin/env node
// Builds the start-up bundle of the hot CLI commands (cli/hot.ts) from the
// compiled dist/, after tsc (`npm run build` and scripts/setup.sh run it):
// dist/cli/hot.bundle.js, the V8 code cache of a `query` run from it
// (hot.bundle.cache), and the manifest the CLI checks before using either
// (hot.bundle.json); the same for `trace` (trace.bundle.*, cli/hot-trace.ts). Why, and how staleness is kept out: cli/hot-bundle.ts.
// --out DIR: build them there instead (tests build one aside).
'use strict';
const { spawnSync } = require('node:child_process');
const { mkdtempSync, renameSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, resolve } = require('node:path');
const esbuild = require('esbuild');

const root = resolve(__dirname, '..');
const outAt = process.argv.indexOf('--out');
const dir = outAt > 0 ? resolve(process.argv[outAt + 1]) : join(root, 'dist', 'cli');
const { hotBundlePaths, stampOf } = require(join(root, 'dist', 'cli', 'hot-bundle.js'));

function fail(msg) {
  process.stderr.write(`bundle-cli: ${msg}\n`);
  process.exit(1);
}

/*
 * Each bundle with the run its code cache is taken after (a child: the same node, flags and clean process as the CLI),
 * so that the cache holds the functions that run compiled, not only the bundle's top level. `ok`: the exit codes of a
 * good trial. `query` runs on an empty ring; `trace` against a port where no dispatcher listens (a refused
 * connection: its flags, connection, Socket.IO client and error path run; exit 1 is that error, as it should be).
 */
const BUNDLES = [
  {
    name: 'hot',
    entry: 'hot.js',
    ok: [0],
    argv: (work) => ['query', '--ring', work, '--call-id', 'x', '-o', join(work, 'out.pcap')],
  },
  {
    name: 'trace',
    entry: 'hot-trace.js',
    ok: [1],
    argv: (work) => ['trace', '--url', 'http://127.0.0.1:9', '--token', 'bundle-trial-token-not-a-secret', '--call-id', 'x', '-o', join(work, 'out.pcap'), '--timeout', '5'],
  },
];

for (const b of BUNDLES) {
  const p = hotBundlePaths(dir, b.name);
  // The old manifest goes first: until the new one is written, the CLI runs from dist/.
  rmSync(p.manifest, { force: true });
  const built = esbuild.buildSync({
    absWorkingDir: root,
    entryPoints: [join(root, 'dist', 'cli', b.entry)],
    outfile: p.bundle,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // A compiled addon is loaded from where it was built; ws's optional addons are found at run time (or not: it has JS
    // fallbacks), by the require the bundle is given.
    external: ['*.node', 'bufferutil', 'utf-8-validate'],
    metafile: true,
    // Whitespace and syntax only: names stay, for stack traces; a third less to read and hash at each start.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
  });
  if (built.errors.length) fail(`esbuild failed for ${b.name}`);
  const inputs = Object.keys(built.metafile.inputs).map((rel) => {
    const s = stampOf(join(root, rel));
    if (!s) fail(`input ${rel} vanished`);
    return [rel, ...s];
  });

  const work = mkdtempSync(join(tmpdir(), 'tracefleet-bundle-'));
  const cacheTmp = `${p.cache}.new`;
  try {
    const train = `
      const { writeFileSync } = require('node:fs');
      const { loadHotBundle } = require(${JSON.stringify(join(root, 'dist', 'cli', 'hot-bundle.js'))});
      const { hot, script } = loadHotBundle(${JSON.stringify(dir)}, undefined, ${JSON.stringify(b.name)});
      process.on('exit', (code) => { if (${JSON.stringify(b.ok)}.includes(code)) writeFileSync(${JSON.stringify(cacheTmp)}, script.createCachedData()); });
      if (!hot.hotCommand(${JSON.stringify(b.argv(work))})) process.exit(3);
    `;
    // No user's settings in the trial: its own empty config directory, no TRACEFLEET_* from the environment.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRACEFLEET_')));
    const r = spawnSync(process.execPath, ['-e', train], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], env: { ...env, XDG_CONFIG_HOME: work }, timeout: 60_000 });
    if (!b.ok.includes(r.status)) fail(`the ${b.name} bundle's trial run exited with ${r.status ?? r.signal}: ${r.stderr}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  renameSync(cacheTmp, p.cache);
  const manifest = { root, bundle: stampOf(p.bundle), cache: stampOf(p.cache), inputs };
  writeFileSync(`${p.manifest}.new`, JSON.stringify(manifest));
  renameSync(`${p.manifest}.new`, p.manifest);
}
