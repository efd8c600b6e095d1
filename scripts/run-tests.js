#!/usr/bin/env node
// Runs every compiled *.test.js under dist/ with node's built-in runner.
// Node 20's --test takes no glob, so the files are listed here.
// dist/test/containers/ (builds and runs the images: root, an engine, minutes)
// runs only when a SUBSTR names it: `npm run test:containers`.
'use strict';
const { readdirSync } = require('node:fs');
const { join } = require('node:path');
const { spawnSync } = require('node:child_process');

function walk(dir, out) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const only = process.argv.slice(2);
const OPT_IN = join('dist', 'test', 'containers') + '/';
let files = walk('dist', []).sort();
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
files = files.filter((f) => !f.startsWith(OPT_IN) || only.some((o) => o.includes('containers')));
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
