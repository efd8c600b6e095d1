import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import yargs from 'yargs';
import { QUERY_OPTIONS } from './commands/query';
import { TRACE_OPTIONS } from './commands/remote';
import { IMPORT_OPTIONS } from './commands/ring';
import { FlagTable, parseFlagsFast } from './flags';

/** The flags as yargs gives them to a command's handler (`query`'s unless told), or the error yargs raises. */
function viaYargs(argv: string[], table: FlagTable = QUERY_OPTIONS): Record<string, unknown> {
  return yargs(argv)
    .options(table)
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseSync();
}

/** Every name of every flag of the table, as the handler may read it, with what it holds (unset ones left out). */
function flagsOf(a: Record<string, unknown>, table: FlagTable = QUERY_OPTIONS): Record<string, unknown> {
  const names = Object.entries(table).flatMap(([k, f]) => [k, ...(f.alias !== undefined ? [f.alias] : [])]);
  const all = names.flatMap((n) => [n, n.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())]);
  return Object.fromEntries(all.filter((n) => a[n] !== undefined).map((n) => [n, a[n]]));
}

test('the hand parser reads the plain forms of `query` exactly as yargs does', () => {
  const cases = [
    ['--ring', '/r', '--call-id', 'a', '-o', 'x.pcap'],
    ['--ring=/r', '--call-id', 'a,b', '--call-id', 'c', '--json'],
    ['--ring', '/r', '--number', '+15550100', '--max-packets', '100', '--max-bytes=2048', '--rtp', '--all', '--output=-'],
    ['--ring', '/r', '--call-id', 'a', '-o', '-'],
    ['--ring', '/r', '--port', '5060', '--since', '15m', '--until', '2026-01-01T00:00:00Z', '--correlation-header', 'X-Foo', '--method', 'INVITE', '--status', '4xx', '--ip', '::1', '--correlation', 'k'],
    ['--call-id', '0123', '--ring', '/r', '-o', 'o.pcap'],
  ];
  for (const argv of cases) {
    const fast = parseFlagsFast(QUERY_OPTIONS, argv);
    assert.ok(fast, `taken by hand: ${argv.join(' ')}`);
    assert.deepEqual(flagsOf(fast), flagsOf(viaYargs(argv)), argv.join(' '));
  }
});

test('the hand parser reads the plain forms of `trace` exactly as yargs does', () => {
  const cases = [
    ['--call-id', 'a', '-o', 'x.pcap'],
    ['--number', '+15550100', '--since', '15m', '-o', '-', '--hosts', 'edge1,edge2', '--timeout', '30', '--timing'],
    ['--ip', '192.0.2.10', '--json', '--url', 'https://d:8060', '--token', 'tf_x', '--insecure', '--ca', '/ca.pem', '--align-clocks', '--rtp'],
    ['--call-id', 'a', '--user', 'alice', '--config', '/c.json', '--hosts', 'a', '--hosts', 'b', '--output=o.pcap'],
  ];
  for (const argv of cases) {
    const fast = parseFlagsFast(TRACE_OPTIONS, argv);
    assert.ok(fast, `taken by hand: ${argv.join(' ')}`);
    assert.deepEqual(flagsOf(fast, TRACE_OPTIONS), flagsOf(viaYargs(argv, TRACE_OPTIONS), TRACE_OPTIONS), argv.join(' '));
  }
  // Help and yargs' own forms stay yargs'.
  for (const argv of [['--help'], ['--call-id', 'a', '--no-rtp-stats'], ['--hosts', 'a', 'b'], ['--timeout', '1.5']]) assert.equal(parseFlagsFast(TRACE_OPTIONS, argv), undefined, argv.join(' '));
});

test('the hand parser reads the plain forms of `ring import` exactly as yargs does, its files included', () => {
  const cases = [
    ['--ring', '/r', 'a.pcap'],
    ['a.pcap', 'b.pcapng', '--ring=/r', '--json', '--segment-size', '16', '123'],
    ['--correlation-header', 'X-Foo', '--ring', '/r', 'a.pcap', '--segment-size=8', 'b.pcap'],
  ];
  for (const argv of cases) {
    const fast = parseFlagsFast(IMPORT_OPTIONS, argv, 'files');
    assert.ok(fast, `taken by hand: ${argv.join(' ')}`);
    // As the command is declared (cli/commands/ring.ts).
    const y = yargs(['import', ...argv])
      .command('import <files..>', '', (c) => c.positional('files', { type: 'string', array: true, demandOption: true }).options(IMPORT_OPTIONS))
      .strict()
      .exitProcess(false)
      .fail((msg, err) => {
        throw err ?? new Error(msg);
      })
      .parseSync();
    assert.deepEqual(flagsOf(fast, IMPORT_OPTIONS), flagsOf(y, IMPORT_OPTIONS), argv.join(' '));
    assert.deepEqual(fast.files, y.files, argv.join(' '));
  }
  // No file, help, a file after `--`, yargs' own forms: yargs answers.
  for (const argv of [['--ring', '/r'], ['--help'], ['--ring', '/r', '--', 'a.pcap'], ['--ring', '/r', 'a.pcap', '--no-json'], ['--ring', '/r', 'a', '--segment-size', '0.5']]) {
    assert.equal(parseFlagsFast(IMPORT_OPTIONS, argv, 'files'), undefined, argv.join(' '));
  }
});

test('whatever yargs might read otherwise, or must answer itself, is left to yargs', () => {
  const cases = [
    ['--help'],
    ['--version'],
    ['--ring', '/r', '--no-rtp'],
    ['--call-id', 'a'],
    ['--ring', '/r', '--call-id', 'a', 'b'],
    ['--ring', '/r', '--ring', '/s'],
    ['--ring', '/r', '--max-packets', '1e3'],
    ['--ring', '/r', '--max-packets', '-1'],
    ['--ring', '/r', '--bogus'],
    ['--ring', '/r', 'extra'],
    ['--ring', '/r', '--callId', 'a'],
    ['--ring', '/r', '--call-id', '-x'],
    ['--ring', '/r', '--json=false'],
    ['--ring', '/r', '--', '--call-id', 'a'],
    ['--ring', '/r', '--call-id', 'a', '--output', '-'],
    ['--ring', '/r', '--call-id', 'a', '-o=x.pcap'],
    ['--ring', '/r', '--call-id', 'a', '-ox.pcap'],
  ];
  for (const argv of cases) assert.equal(parseFlagsFast(QUERY_OPTIONS, argv), undefined, argv.join(' '));
});

test('`--version` and a plain `query` load no yargs, `--version` and the extcap answers no zod either', () => {
  const main = join(__dirname, '..', 'bin', 'main.js');
  const loaded = (args: string[]) => {
    // The CLI as bin/tracefleet runs it from dist/ (as main() does when the start-up bundle is not built or not
    // fresh: cli/hot-bundle.test.ts tests that one); on exit, the packages it had loaded.
    const script = `process.argv = [process.argv[0], 'tracefleet', ...${JSON.stringify(args)}];
      process.on('exit', () => process.stderr.write('\\nLOADED ' + JSON.stringify([...new Set(Object.keys(require.cache).map((k) => (/node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(k) ?? [])[1]).filter(Boolean))])));
      require(${JSON.stringify(main)}).main(process.argv.slice(2), { bundle: false });`;
    const p = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    const m = /\nLOADED (.*)$/.exec(p.stderr);
    assert.ok(m, p.stderr);
    return { status: p.status, stdout: p.stdout, stderr: p.stderr, packages: JSON.parse(m[1]) as string[] };
  };
  const version = loaded(['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  assert.deepEqual(version.packages, []);
  // A ring that is not there: the query fails after its flags are read and validated, as any query would.
  const query = loaded(['query', '--ring', join(__dirname, 'no-such-ring'), '--call-id', 'x', '--json']);
  assert.equal(query.status, 2, query.stderr);
  assert.match(query.stderr, /no-such-ring does not exist/);
  assert.deepEqual(query.packages, ['zod']);
  // The same with a flag the hand parser leaves alone: yargs answers.
  const viaYargsToo = loaded(['query', '--ring', join(__dirname, 'no-such-ring'), '--call-id', 'x', '--json', '--no-rtp']);
  assert.equal(viaYargsToo.status, 2);
  assert.ok(viaYargsToo.packages.includes('yargs'), viaYargsToo.packages.join(' '));
  // A plain `ring import`: neither yargs nor another command's packages (its error after its flags are read).
  const ring = mkdtempSync(join(tmpdir(), 'tf-flags-'));
  const imp = loaded(['ring', 'import', '--ring', ring, '--json', join(__dirname, 'no-such.pcap')]);
  rmSync(ring, { recursive: true, force: true });
  assert.equal(imp.status, 2, imp.stderr);
  assert.match(imp.stderr, /no-such\.pcap: no such file/);
  assert.ok(!imp.packages.includes('yargs'), imp.packages.join(' '));
  // What Wireshark runs at each start, and for each interface's dialog: no package at all.
  for (const args of [['extcap', '--extcap-interfaces', '--extcap-version=4.0'], ['extcap', '--extcap-config', '--extcap-interface', 'tracefleet-follow'], ['extcap', '--extcap-dlts', '--extcap-interface', 'tracefleet-trace']]) {
    const x = loaded(args);
    assert.equal(x.status, 0, x.stderr);
    assert.match(x.stdout, /^(extcap|arg|dlt) \{/);
    assert.deepEqual(x.packages, [], args.join(' '));
  }
});
