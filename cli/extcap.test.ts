import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configText, interfacesText, parseCaptureFilter, parseExtcapArgs } from './extcap';
import { extcapFolderOf, launcherText, parseFolders } from './extcap-install';

test('Wireshark argument forms: --name value, --name=value, flags', () => {
  const a = parseExtcapArgs(['--capture', '--extcap-interface', 'tracefleet-follow', '--fifo=/tmp/f', '--number', '5551234', '--rtp', '--extcap-capture-filter', 'method INVITE']);
  assert.equal(a.values.get('--extcap-interface'), 'tracefleet-follow');
  assert.equal(a.values.get('--fifo'), '/tmp/f');
  assert.equal(a.values.get('--number'), '5551234');
  assert.equal(a.values.get('--extcap-capture-filter'), 'method INVITE');
  assert.ok(a.flags.has('--capture') && a.flags.has('--rtp'));
});

test('the capture filter box: tracefleet filter words, a BPF expression refused with what to write', () => {
  assert.deepEqual(parseCaptureFilter('number 5551234 and method INVITE,BYE call-id a@b'), { number: ['5551234'], method: ['INVITE', 'BYE'], callId: ['a@b'] });
  assert.deepEqual(parseCaptureFilter('  '), {});
  assert.throws(() => parseCaptureFilter('udp port 5060'), (e: Error & { code?: string }) => e.code === 'TF_EXTCAP_FILTER' && /'udp' is not a tracefleet filter word/.test(e.message));
  assert.throws(() => parseCaptureFilter('number'), /'number' needs a value/);
  assert.throws(() => parseCaptureFilter('number and ip 1.2.3.4'), /'number' needs a value/);
});

test('interfaces and config: one sentence per line, fields that cannot break the syntax', () => {
  const i = interfacesText('1.2}{x');
  assert.match(i, /^extcap \{version=1\.2  x\}/);
  assert.match(i, /\ninterface \{value=tracefleet-follow\}\{display=tracefleet follow\}\n/);
  const follow = configText('tracefleet-follow');
  assert.match(follow, /\{call=--token\}\{display=API token\}\{type=password\}/);
  assert.match(follow, /\{call=--duration\}/);
  assert.doesNotMatch(follow, /--since|--rtp/, 'a follow has no window and no live RTP');
  const trace = configText('tracefleet-trace');
  assert.match(trace, /\{call=--since\}.*\{default=15m\}/);
  const numbers = [...trace.matchAll(/^arg \{number=(\d+)\}/gm)].map((m) => Number(m[1]));
  assert.deepEqual(numbers, numbers.map((_, n) => n), 'args numbered 0.. without gaps');
});

test('the extcap folder from tshark -G folders, for Wireshark 4.0 and 4.2+', () => {
  const v40 = parseFolders('Temp:                \t/tmp\nPersonal configuration:\t/home/u/.config/wireshark\nExtcap path:         \t/usr/lib/x86_64-linux-gnu/wireshark/extcap\n');
  assert.equal(extcapFolderOf(v40, false), '/home/u/.config/wireshark/extcap');
  assert.equal(extcapFolderOf(v40, true), '/usr/lib/x86_64-linux-gnu/wireshark/extcap');
  const v42 = parseFolders('Personal configuration:\t/home/u/.config/wireshark\nPersonal Extcap path:\t/home/u/.local/lib/wireshark/extcap\nGlobal Extcap path:\t/usr/lib/x86_64-linux-gnu/wireshark/extcap\n');
  assert.equal(extcapFolderOf(v42, false), '/home/u/.local/lib/wireshark/extcap');
  assert.equal(extcapFolderOf(v42, true), '/usr/lib/x86_64-linux-gnu/wireshark/extcap');
  assert.equal(extcapFolderOf(new Map(), false), null);
});

test('the launcher quotes its paths for sh', () => {
  assert.equal(launcherText("/opt/no'de", '/a b/main.js').split('\n')[2], `exec '/opt/no'\\''de' '/a b/main.js' extcap "$@"`);
});
