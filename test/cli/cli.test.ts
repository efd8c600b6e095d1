import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { run } from '../support/proc';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { ethernet, ipv4, udp, ETH_IPV4, sipInvite } from '../support/packets';

/* Bad input: one clear line on stderr, exit code 2; nothing half-written. */

const CLI = join(resolve(__dirname, '..', '..', '..'), 'bin', 'tracefleet');

async function tf(args: string[]) {
  return run(process.execPath, [CLI, ...args], { check: false, timeoutMs: 30_000 });
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got: ${stderr}`);
  assert.match(lines[0], /^tracefleet: /);
  return lines[0];
}

test('bad input gets one clear line and exit code 2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ring = join(dir, 'ring');
  const pcap = join(dir, 'one.pcap');
  const fd = openSync(pcap, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: false });
  const frame = ethernet(ETH_IPV4, ipv4({ src: '192.0.2.1', dst: '192.0.2.2', proto: 17 }, udp(5060, 5060, sipInvite('cli-test@x'))));
  w.write({ tsSec: 1_795_000_000, tsNsec: 1000, origLen: frame.length, data: frame });
  w.flush();
  closeSync(fd);
  const notCapture = join(dir, 'notes.txt');
  writeFileSync(notCapture, 'call +1 555 123 4567 at 10:42, it failed\n');

  const imp = await tf(['ring', 'import', '--ring', ring, pcap]);
  assert.equal(imp.code, 0, imp.stderr);

  const cases: Array<[string[], RegExp]> = [
    [['query', '--ring', ring, '--call-id', 'x', '--bogus', '-o', join(dir, 'o.pcap')], /Unknown argument/i],
    [['query', '--ring', ring, '--ip', '10.0.0.300', '--json'], /bad IP address '10\.0\.0\.300'/],
    [['query', '--ring', ring, '--call-id', 'x', '--since', 'last tuesday', '--json'], /bad --since 'last tuesday'.*15m/],
    [['query', '--ring', join(dir, 'nope'), '--call-id', 'x', '--json'], /ring directory .*nope does not exist/],
    [['query', '--ring', ring, '--json'], /no selective key.*--all/],
    [['query', '--ring', ring, '--call-id', 'x'], /-o FILE/],
    [['query', '--ring', ring, '--number', '12', '--json'], /at least 4 are needed/],
    [['query', '--ring', ring, '--call-id', 'x', '-o', join(dir, 'no', 'such', 'o.pcap')], /cannot write -o .*no\/such\/o\.pcap: the directory .*no\/such does not exist: create it first \(mkdir -p /],
    [['query', '--ring', ring, '--call-id', 'x', '-o', dir], /is a directory: give a file name in it/],
    [['query', '--ring', ring, '--call-id', 'x', '-o', join(pcap, 'o.pcap')], /cannot write -o .*: a part of .*one\.pcap is not a directory/],
    [['ring', 'import', '--ring', ring, notCapture], /not a PCAP or PCAPNG/],
    [['ring', 'import', '--ring', ring, join(dir, 'missing.pcap')], /cannot read .*missing\.pcap: no such file/],
    [['ring', 'import', '--ring', join(dir, 'ring2'), dir], /cannot read .*: it is a directory; give the PCAP or PCAPNG files in it/],
  ];
  for (const [args, re] of cases) {
    const r = await tf(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(oneLine(r.stderr), re, args.join(' '));
  }

  // With --json the failure is also on stdout, with the catalogue's code and the request key it concerns.
  const coded: Array<[string[], string, string | null]> = [
    [['query', '--ring', ring, '--ip', '10.0.0.300', '--json'], 'TF_QUERY_BAD_IP', 'ip'],
    [['query', '--ring', ring, '--call-id', 'x', '--since', 'last tuesday', '--json'], 'TF_QUERY_BAD_SINCE', 'since'],
    [['query', '--ring', join(dir, 'nope'), '--call-id', 'x', '--json'], 'TF_RING_DIR', null],
    [['query', '--ring', ring, '--json'], 'TF_QUERY_NOT_SELECTIVE', null],
    [['query', '--ring', ring, '--number', '12', '--json'], 'TF_QUERY_BAD_NUMBER', 'number'],
  ];
  for (const [args, code, field] of coded) {
    const r = await tf(args);
    const out = JSON.parse(r.stdout) as { code: string; field: string | null; message: string };
    assert.deepEqual([out.code, out.field], [code, field], args.join(' '));
    assert.equal(`tracefleet: ${out.message}`, oneLine(r.stderr));
  }

  // The good query still works after all that.
  const ok = await tf(['query', '--ring', ring, '--call-id', 'cli-test@x', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout).callIds, ['cli-test@x']);
});
