#!/usr/bin/env node
// Builds the start-up bundle of the hot CLI commands (cli/hot.ts) from the
// compiled dist/, after tsc (`npm run build` and scripts/setup.sh run it):
// dist/cli/hot.bundle.js, the V8 code cache of a `query` run from it
// (hot.bundle.cache), and the manifest the CLI checks before using either
// (hot.bundle.json). Why, and how staleness is kept out: cli/hot-bundle.ts.
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
const p = hotBundlePaths(dir);

function fail(msg) {
  process.stderr.write(`bundle-cli: ${msg}\n`);
  process.exit(1);
}

// The old manifest goes first: until the new one is written, the CLI runs from dist/.
rmSync(p.manifest, { force: true });
const built = esbuild.buildSync({
  absWorkingDir: root,
  entryPoints: [join(root, 'dist', 'cli', 'hot.js')],
  outfile: p.bundle,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // A compiled addon is loaded from where it was built; nothing of the hot path should reach one.
  external: ['*.node'],
  metafile: true,
  logLevel: 'warning',
});
if (built.errors.length) fail('esbuild failed');
const inputs = Object.keys(built.metafile.inputs).map((rel) => {
  const s = stampOf(join(root, rel));
  if (!s) fail(`input ${rel} vanished`);
  return [rel, ...s];
});

// The cache is taken after a real run of the hot path (a query on an empty ring), so that it holds the functions
// that run compiled, not only the bundle's top level. In a child: the same node, flags and clean process as the CLI.
const work = mkdtempSync(join(tmpdir(), 'tracefleet-bundle-'));
const cacheTmp = `${p.cache}.new`;
try {
  const train = `
    const { writeFileSync } = require('node:fs');
    const { loadHotBundle } = require(${JSON.stringify(join(root, 'dist', 'cli', 'hot-bundle.js'))});
    const { hot, script } = loadHotBundle(${JSON.stringify(dir)});
    process.on('exit', (code) => { if (code === 0) writeFileSync(${JSON.stringify(cacheTmp)}, script.createCachedData()); });
    if (!hot.hotCommand(['query', '--ring', ${JSON.stringify(work)}, '--call-id', 'x', '-o', ${JSON.stringify(join(work, 'out.pcap'))}])) process.exit(3);
  `;
  const r = spawnSync(process.execPath, ['-e', train], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) fail(`the bundle's trial query exited with ${r.status ?? r.signal}: ${r.stderr}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
renameSync(cacheTmp, p.cache);
const manifest = { root, bundle: stampOf(p.bundle), cache: stampOf(p.cache), inputs };
writeFileSync(`${p.manifest}.new`, JSON.stringify(manifest));
renameSync(`${p.manifest}.new`, p.manifest);
