import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { importCaptures } from '../agent/index/import';
import { FULL_CALL_ID, writeCallPcap } from '../test/support/full-call';
import { withTmp } from '../test/support/with-tmp';
import { hotBundleState, HotBundleManifest, hotBundlePaths } from './hot-bundle';

const ROOT = join(__dirname, '..', '..');

/** One CLI run in a fresh node, from the bundle in `bundleDir` or (null) from dist/ as main() runs it without one (`entry`: the hot module there). */
function run(bundleDir: string | null, argv: string[], entry = 'hot.js', env: NodeJS.ProcessEnv = process.env) {
  const from = bundleDir === null
    ? `require(${JSON.stringify(join(__dirname, entry))}).hotCommand(argv)`
    : `require(${JSON.stringify(join(__dirname, 'hot-bundle.js'))}).runHotBundle(argv, ${JSON.stringify(bundleDir)})`;
  const script = `process.argv = [process.argv[0], 'tracefleet', ...${JSON.stringify(argv)}];
    const argv = process.argv.slice(2);
    process.on('exit', () => process.stderr.write('\\nLOADED ' + JSON.stringify(Object.keys(require.cache))));
    if (!(${from})) process.exit(99);`;
  const p = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env });
  const m = /\nLOADED (.*)$/.exec(p.stderr);
  assert.ok(m, p.stderr);
  return { status: p.status, stdout: p.stdout, stderr: p.stderr.slice(0, m.index), loaded: JSON.parse(m[1]) as string[] };
}

test('a fresh start-up bundle runs `query` as dist/ does, byte for byte, and a stale one is not run', withTmp(async (dir) => {
  const pcap = join(dir, 'call.pcap');
  const ring = join(dir, 'ring');
  writeCallPcap(pcap);
  await importCaptures(ring, [pcap]);
  const bundleDir = join(dir, 'bundle');
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts', 'bundle-cli.js'), '--out', bundleDir], { encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  assert.equal(hotBundleState(bundleDir).state, 'fresh');

  for (const [name, extra] of [['plain', []], ['json-full', ['--json', '--full']]] as const) {
    const argv = (out: string) => ['query', '--ring', ring, '--call-id', FULL_CALL_ID, '-o', join(dir, `${name}-${out}.pcap`), ...extra];
    const viaBundle = run(bundleDir, argv('bundle'));
    const viaDist = run(null, argv('dist'));
    assert.equal(viaBundle.status, 0, viaBundle.stderr);
    assert.equal(viaDist.status, 0, viaDist.stderr);
    assert.equal(viaBundle.stdout, viaDist.stdout);
    assert.equal(viaBundle.stderr.replaceAll('-bundle.pcap', '-dist.pcap'), viaDist.stderr);
    const result = readFileSync(join(dir, `${name}-bundle.pcap`));
    assert.ok(result.length > 24, 'the call was found');
    assert.deepEqual(result, readFileSync(join(dir, `${name}-dist.pcap`)));
    // The bundle brought everything: from dist/ only its loader, and no package at all.
    assert.deepEqual(viaBundle.loaded.filter((f) => f.includes(join('dist', '')) || f.includes('node_modules')).map((f) => f.slice(ROOT.length + 1)), [
      join('dist', 'cli', 'hot-bundle.js'),
    ]);
  }
  // A usage mistake is the bundle's to answer as dist/ would; a form the hand parser leaves to yargs is not its own.
  const noOut = run(bundleDir, ['query', '--ring', ring, '--call-id', FULL_CALL_ID]);
  assert.equal(noOut.status, 2);
  assert.equal(noOut.stderr, run(null, ['query', '--ring', ring, '--call-id', FULL_CALL_ID]).stderr);
  assert.equal(run(bundleDir, ['query', '--ring', ring, '--call-id', FULL_CALL_ID, '--no-rtp', '-o', join(dir, 'x.pcap')]).status, 99);

  // Any input that is not the file the bundle was made from (here: one mtime) sends the CLI to dist/.
  const { manifest } = hotBundlePaths(bundleDir);
  const m = JSON.parse(readFileSync(manifest, 'utf8')) as HotBundleManifest;
  const query = m.inputs.findIndex(([rel]) => rel === join('dist', 'shared', 'query', 'query.js'));
  assert.ok(query >= 0, 'the query module is in the bundle');
  m.inputs[query][2] += 1;
  writeFileSync(manifest, JSON.stringify(m));
  const stale = hotBundleState(bundleDir);
  assert.equal(stale.state, 'stale');
  assert.match(stale.state === 'stale' ? stale.why : '', /query\.js changed/);
  assert.equal(run(bundleDir, ['query', '--ring', ring, '--call-id', FULL_CALL_ID, '-o', join(dir, 'y.pcap')]).status, 99);
}));

test("`trace` runs from a bundle of its own as dist/ does; `query`'s bundle holds no Socket.IO", withTmp(async (dir) => {
  const bundleDir = join(dir, 'bundle');
  const built = spawnSync(process.execPath, [join(ROOT, 'scripts', 'bundle-cli.js'), '--out', bundleDir], { encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  assert.equal(hotBundleState(bundleDir, 'trace').state, 'fresh');
  const inputs = (name: 'hot' | 'trace') => (JSON.parse(readFileSync(hotBundlePaths(bundleDir, name).manifest, 'utf8')) as HotBundleManifest).inputs.map(([rel]) => rel);
  assert.ok(inputs('trace').some((rel) => rel.includes('socket.io-client')));
  assert.ok(!inputs('hot').some((rel) => rel.includes('socket.io')), 'query does not parse the Socket.IO client');

  // A dispatcher that is not there (a port nothing listens on): the flags, connection, Socket.IO client and error path run.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRACEFLEET_'))), XDG_CONFIG_HOME: dir };
  const argv = (out: string) => ['trace', '--url', 'http://127.0.0.1:9', '--token', 'test-token-not-a-secret', '--call-id', 'x', '-o', join(dir, out)];
  const viaBundle = run(bundleDir, argv('b.pcap'), 'hot-trace.js', env);
  const viaDist = run(null, argv('b.pcap'), 'hot-trace.js', env);
  assert.equal(viaBundle.status, 1, viaBundle.stderr);
  assert.equal(viaBundle.stderr, viaDist.stderr);
  assert.match(viaBundle.stderr, /cannot reach the dispatcher at http:\/\/127\.0\.0\.1:9: connection refused/);
  // From dist/ only the loader; from node_modules only ws's optional addons, which it finds at run time.
  assert.deepEqual(viaBundle.loaded.filter((f) => f.includes(join('dist', ''))).map((f) => f.slice(ROOT.length + 1)), [join('dist', 'cli', 'hot-bundle.js')]);
  const packages = new Set(viaBundle.loaded.map((f) => (/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f) ?? [])[1]).filter(Boolean));
  for (const p of packages) assert.ok(['bufferutil', 'utf-8-validate', 'node-gyp-build'].includes(p as string), `${p} loaded beside the bundle`);
  // --help is yargs' to answer.
  assert.equal(run(bundleDir, ['trace', '--help'], 'hot-trace.js', env).status, 99);
}));
