import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FollowServer } from '../../agent/follow/serve';
import type { TraceView } from '../../shared/protocol/client';
import { startTestCouch, TestCouch } from '../support/couch';
import { startTestDispatcher, TestDispatcher, TRACER } from '../support/dispatcher';
import { isRoot, LOOPBACK, NEEDS_ROOT, sleep, tempDir, waitFor } from '../support/capture';
import { runSippCalls } from '../support/sipp';
import { tsharkPackets, PacketInfo } from '../support/tshark';
import { LoAgent, startLoAgent } from '../support/lo-agent';

/*
 * Wireshark's own capture engine driving `tracefleet extcap`: the launcher
 * installed by `tracefleet extcap install` into the personal extcap folder
 * of a temporary HOME, and tshark (dumpcap underneath) running it as it
 * would for the capture dialog, with the dialog's fields as -o
 * extcap.IFACE.NAME:VALUE. A real dispatcher, a real agent on lo, real sipp
 * calls on 127.0.0.1 that start after the follow does.
 */

const CLI = join(__dirname, '..', '..', '..', 'bin', 'tracefleet');
const UAS_PORT = 5098;
const UAC_PORT = 5099;
const skip = isRoot() ? false : NEEDS_ROOT;

let couch: TestCouch;
let d: TestDispatcher;
let follows: FollowServer;
let lo: LoAgent;
let dir: string;
let home: string;
let token: string;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spawnRun(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { env: { ...process.env, HOME: home, XDG_CONFIG_HOME: '', TRACEFLEET_URL: '', TRACEFLEET_TOKEN: '', TRACEFLEET_CONFIG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const kill = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, stdout, stderr });
    });
  });
}

/** tshark on one of the interfaces, the dialog's fields given as extcap preferences. */
function tshark(iface: 'tracefleet_follow' | 'tracefleet_trace', prefs: Record<string, string>, extra: string[], env: NodeJS.ProcessEnv = { TRACEFLEET_TOKEN: token }): Promise<Ran> {
  const o = Object.entries(prefs).flatMap(([k, v]) => ['-o', `extcap.${iface}.${k}:${v}`]);
  return spawnRun('tshark', ['-i', iface.replace('_', '-'), ...o, ...extra], env, 90_000);
}

const key = (p: PacketInfo) => `${p.epochNs}|${p.bytesHex}`;

/** Equal packet lists (time and bytes), said in a line rather than thousands of hex digits. */
function assertSamePackets(got: PacketInfo[], want: PacketInfo[], what: string): void {
  const a = got.map(key);
  const b = want.map(key);
  const differ = a.findIndex((k, i) => k !== b[i]);
  assert.ok(a.length === b.length && differ < 0, `${what}: ${a.length} vs ${b.length} packets, first difference at ${differ}`);
}

async function traceFinal(id: string): Promise<TraceView> {
  const until = Date.now() + 20_000;
  for (;;) {
    const v = await d.orchestrator.view(id);
    if (v && v.state !== 'running') return v;
    if (Date.now() > until) throw new Error(`trace ${id} did not finish: ${JSON.stringify(v)}`);
    await sleep(100);
  }
}

before(async () => {
  if (skip) return;
  couch = await startTestCouch();
  d = await startTestDispatcher(couch.url);
  dir = tempDir('tf-extcap-');
  home = join(dir, 'home');
  lo = await startLoAgent(d, { name: 'lo-x', ring: join(dir, 'ring'), filter: `udp port ${UAS_PORT}`, ringMaxBytes: 256 * 1024 * 1024, traces: true });
  ({ follows } = lo);
  const res = await fetch(`${d.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: TRACER.name, password: TRACER.password }) });
  token = ((await res.json()) as { token: string }).token;
  assert.ok(token);
});

after(async () => {
  if (skip) return;
  await lo?.stop();
  await d?.stop();
  await couch?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('extcap install puts an executable launcher in the personal extcap folder, and tshark -D lists both interfaces', { skip, timeout: 60_000 }, async () => {
  const r = await spawnRun(process.execPath, [CLI, 'extcap', 'install'], {}, 30_000);
  assert.equal(r.code, 0, r.stderr);
  const path = /installed the tracefleet extcap at (\S+) /.exec(r.stdout)?.[1] ?? '';
  assert.ok(path.startsWith(home), r.stdout);
  assert.ok((statSync(path).mode & 0o111) !== 0, 'the launcher is executable');
  const t0 = Date.now();
  const i = await spawnRun(path, ['--extcap-interfaces', '--extcap-version=4.0'], {}, 10_000);
  assert.equal(i.code, 0, i.stderr);
  assert.equal(i.stderr, '', 'nothing on stderr: Wireshark would show it as an error');
  assert.match(i.stdout, /^extcap \{version=[^}]+\}/);
  assert.ok(Date.now() - t0 < 5_000);
  // The capture filter box: Wireshark colours it by what the extcap prints (nothing: good).
  const good = await spawnRun(path, ['--extcap-interface', 'tracefleet-follow', '--extcap-capture-filter', 'number 5551234 and method INVITE'], {}, 10_000);
  assert.equal(good.stdout, '');
  const bpf = await spawnRun(path, ['--extcap-interface', 'tracefleet-follow', '--extcap-capture-filter', 'udp port 5060'], {}, 10_000);
  assert.match(bpf.stdout, /^bad tracefleet capture filter 'udp port 5060': 'udp' is not a tracefleet filter word/);
  const dl = await spawnRun('tshark', ['-D'], {}, 30_000);
  assert.match(dl.stdout, /\d+\. tracefleet-follow \(tracefleet follow\)/, dl.stdout + dl.stderr);
  assert.match(dl.stdout, /\d+\. tracefleet-trace \(tracefleet fleet trace\)/);
});

test('tshark -i tracefleet-follow while sipp calls run: the same packets as the stored follow and as a fleet trace over the window', { skip, timeout: 150_000 }, async (t) => {
  assert.ok(await waitFor(() => follows.active() === 0, 10_000));
  const number = `1555${String(Date.now()).slice(-7)}`;
  const out = join(dir, 'follow.pcapng');
  const since = new Date(Date.now() - 1000).toISOString();
  const running = tshark('tracefleet_follow', { url: d.url, number: number.slice(-7), duration: '60s' }, ['-a', 'duration:12', '-w', out]);
  assert.ok(await waitFor(() => follows.active() === 1, 20_000), 'the agent never started following');
  const calls = await runSippCalls({ transport: 'udp', uasHost: { addr: LOOPBACK, port: UAS_PORT }, uacHost: { addr: LOOPBACK, port: UAC_PORT }, calls: 3, rate: 5, number });
  assert.equal(calls.successful, 3, calls.errors);
  // Unrelated traffic on the same port while the follow runs.
  const other = await runSippCalls({ transport: 'udp', uasHost: { addr: LOOPBACK, port: UAS_PORT }, uacHost: { addr: LOOPBACK, port: UAC_PORT }, calls: 1, number: '15550177001' });
  assert.equal(other.successful, 1);
  const r = await running;
  t.diagnostic(`tshark: ${r.stderr.trim()}`);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Error by extcap/);
  const until = new Date(Date.now()).toISOString();

  const got = await tsharkPackets(out, { bytes: true });
  assert.equal(got.length, 3 * 7, `${got.length} packets: each call's seven messages, and no other call's`);
  for (const id of calls.callIds) assert.equal(got.filter((p) => Buffer.from(p.bytesHex ?? '', 'hex').includes(`Call-ID: ${id}`)).length, 7, id);

  // The follow was stored when Wireshark stopped it: the same packets.
  assert.ok(await waitFor(() => follows.active() === 0, 10_000));
  const list = (await (await fetch(`${d.url}/api/traces?limit=5`, { headers: { authorization: `Bearer ${token}` } })).json()) as { traces: TraceView[] };
  const stored = await traceFinal(list.traces[0].id);
  const merged = join(dir, 'stored.pcap');
  writeFileSync(merged, Buffer.from(await (await fetch(`${d.url}/api/traces/${stored.id}/merged.pcap`, { headers: { authorization: `Bearer ${token}` } })).arrayBuffer()));
  assertSamePackets(await tsharkPackets(merged, { bytes: true }), got, 'the stored follow holds what Wireshark got');

  // The fleet trace interface over the same window reads the agents' rings: the same packets again.
  const traced = join(dir, 'trace.pcapng');
  const tr = await tshark('tracefleet_trace', { url: d.url, number: number.slice(-7), since, until }, ['-w', traced]);
  assert.equal(tr.code, 0, tr.stderr);
  assert.doesNotMatch(tr.stderr, /Error by extcap/, tr.stderr);
  assertSamePackets(await tsharkPackets(traced, { bytes: true }), got, 'a trace over the window gives the same packets');
});

test('a bad token, an unreachable dispatcher and a bad capture filter reach tshark as errors, not an empty capture', { skip, timeout: 90_000 }, async () => {
  const out = join(dir, 'bad.pcapng');
  const bad = await tshark('tracefleet_follow', { url: d.url, number: '5551234' }, ['-a', 'duration:20', '-w', out], { TRACEFLEET_TOKEN: 'not-a-token' });
  assert.notEqual(bad.code, 0, bad.stderr);
  assert.match(bad.stderr, /Error by extcap pipe: tracefleet: the dispatcher refused the login/, bad.stderr);

  const away = await tshark('tracefleet_trace', { url: 'http://127.0.0.1:1', number: '5551234' }, ['-w', out]);
  assert.notEqual(away.code, 0);
  assert.match(away.stderr, /Error by extcap pipe: tracefleet: cannot reach the dispatcher at http:\/\/127\.0\.0\.1:1: connection refused/, away.stderr);

  const filter = await tshark('tracefleet_follow', { url: d.url }, ['-f', 'udp port 5060', '-a', 'duration:20', '-w', out]);
  assert.notEqual(filter.code, 0);
  assert.match(filter.stderr, /bad tracefleet capture filter 'udp port 5060'/, filter.stderr);

  const unselective = await tshark('tracefleet_follow', { url: d.url }, ['-a', 'duration:20', '-w', out]);
  assert.notEqual(unselective.code, 0);
  assert.match(unselective.stderr, /refusing a query with no selective key/, unselective.stderr);
});
