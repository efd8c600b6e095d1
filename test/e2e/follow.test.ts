import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket, Socket as UdpSocket } from 'node:dgram';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningAgent } from '../../agent/daemon/run';
import type { FollowServer } from '../../agent/follow/serve';
import { listSegments } from '../../agent/ring/layout';
import { FOLLOW_LIMITS, type FollowData, type FollowEndView, type TraceView } from '../../shared/protocol/client';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { startTestCouch, TestCouch } from '../support/couch';
import { ask, connectClient, startTestDispatcher, TestDispatcher, TRACER, VIEWER } from '../support/dispatcher';
import { isRoot, LOOPBACK, NEEDS_ROOT, sleep, tempDir, waitFor } from '../support/capture';
import { tsharkPackets, PacketInfo } from '../support/tshark';
import { callDatagrams, sipDatagram } from '../support/sip-datagrams';
import { LoAgent, startLoAgent } from '../support/lo-agent';

/*
 * A live follow end to end: a real dispatcher (embedded store), a real agent
 * capturing on lo into its ring, and `tracefleet follow` as users run it.
 * SIP datagrams go to 127.0.0.1 only. What the CLI wrote is checked against
 * tshark's reading of the agent's own ring.
 */

const CLI = join(__dirname, '..', '..', '..', 'bin', 'tracefleet');
const SIP_PORT = 5097;
const skip = isRoot() ? false : NEEDS_ROOT;

let couch: TestCouch;
let d: TestDispatcher;
let agent: RunningAgent;
let follows: FollowServer;
let lo: LoAgent;
let ring: string;
let dir: string;
let tx: UdpSocket;

function sip(first: string, callId: string, to: string, cseq: string): Buffer {
  return sipDatagram(first, callId, to, cseq, SIP_PORT);
}

function send(b: Buffer): Promise<void> {
  return new Promise((resolve, reject) => tx.send(b, SIP_PORT, LOOPBACK, (e) => (e ? reject(e) : resolve())));
}

/** A short call: INVITE, 100, 180, 200, ACK, BYE, 200. */
async function call(callId: string, to: string, gapMs = 20): Promise<void> {
  for (const m of callDatagrams(callId, to, SIP_PORT)) {
    await send(m);
    await sleep(gapMs);
  }
}

/** tshark's reading of every segment of the agent's ring: its packets whose payload names the Call-ID. */
async function ringPackets(callId: string): Promise<PacketInfo[]> {
  const out: PacketInfo[] = [];
  for (const s of listSegments(ring)) {
    for (const p of await tsharkPackets(s.path, { bytes: true })) {
      if (Buffer.from(p.bytesHex ?? '', 'hex').includes(`Call-ID: ${callId}\r\n`)) out.push(p);
    }
  }
  return out;
}

const key = (p: PacketInfo) => `${p.epochNs}|${p.bytesHex}`;

function tf(args: string[], user = TRACER): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args, '--url', d.url, '--user', user.name], {
      env: { ...process.env, TRACEFLEET_PASSWORD: user.password, XDG_CONFIG_HOME: join(dir, 'cfg'), TRACEFLEET_TOKEN: '', TRACEFLEET_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    c.stdout.on('data', (b: Buffer) => out.push(b));
    c.stderr.on('data', (b: Buffer) => (err += b.toString()));
    c.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: err }));
  });
}

/** The agent runs no follow (an earlier test's has ended there too). */
async function idle(): Promise<void> {
  assert.ok(await waitFor(() => follows.active() === 0, 10_000), 'an earlier follow still runs on the agent');
}

async function traceFinal(id: string): Promise<TraceView> {
  let v: TraceView | null = null;
  const until = Date.now() + 20_000;
  while (Date.now() < until) {
    v = await d.orchestrator.view(id);
    if (v && v.state !== 'running') return v;
    await sleep(100);
  }
  throw new Error(`trace ${id} did not finish: ${JSON.stringify(v)}`);
}

before(async () => {
  if (skip) return;
  couch = await startTestCouch();
  d = await startTestDispatcher(couch.url);
  dir = tempDir('tf-follow-');
  ring = join(dir, 'ring');
  lo = await startLoAgent(d, { name: 'lo1', ring: ring, filter: `udp port ${SIP_PORT}`, ringMaxBytes: 256 * 1024 * 1024 });
  ({ agent, follows } = lo);
  tx = createSocket('udp4');
  await new Promise<void>((resolve) => tx.bind(0, LOOPBACK, () => resolve()));
});

after(async () => {
  if (skip) return;
  tx?.close();
  await lo?.stop();
  await d?.stop();
  await couch?.stop();
});

test('follow by number: the new call arrives at the CLI live, with an earlier packet of its dialog, and is stored as a trace', { skip, timeout: 90_000 }, async (t) => {
  const number = '5551234';
  const callId = `follow-${Date.now()}`;
  const old = `old-${Date.now()}`;
  // Before the follow: an unrelated-looking message of the dialog that will match later, and a whole call to the number that never continues.
  await send(sip(`OPTIONS sip:probe@${LOOPBACK} SIP/2.0`, callId, 'probe', '7 OPTIONS'));
  await call(old, `+1555${number}`, 5);
  await sleep(300);

  const out = join(dir, 'follow.pcap');
  await idle();
  const running = tf(['follow', '--number', number, '--duration', '6s', '-o', out]);
  assert.ok(await waitFor(() => follows.active() === 1, 10_000), 'the agent never started following');
  const startedAt = Date.now();
  await call(callId, `+1555${number}`);
  await call(`other-${Date.now()}`, '+15550177001');
  const r = await running;
  t.diagnostic(`CLI: ${r.stderr.trim()}`);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(Date.now() - startedAt < 15_000);

  const got = await tsharkPackets(out, { bytes: true });
  const want = await ringPackets(callId);
  assert.equal(want.length, 8, `the ring holds ${want.length} packets of ${callId}`);
  assert.deepEqual(got.map(key).sort(), want.map(key).sort(), 'the follow holds exactly the dialog\'s packets, the one before the follow included');
  for (let i = 1; i < got.length; i++) assert.ok(got[i].epochNs >= got[i - 1].epochNs, 'the live PCAP is in capture order');
  assert.ok(Buffer.from(got[0].bytesHex ?? '', 'hex').includes('OPTIONS sip:probe'), 'the earlier packet of the dialog comes first');

  const id = /stored as trace (\S+) /.exec(r.stderr)?.[1];
  assert.ok(id, r.stderr);
  const v = await traceFinal(id);
  assert.equal(v.state, 'done', JSON.stringify(v));
  assert.equal(v.merged?.packets, 8);
  assert.equal(v.hosts[0].packets, 8);
});

test('follow ends at --max-packets', { skip, timeout: 60_000 }, async () => {
  const callId = `max-${Date.now()}`;
  const out = join(dir, 'max.pcap');
  await idle();
  const running = tf(['follow', '--call-id', callId, '--max-packets', '3', '--duration', '30s', '-o', out]);
  assert.ok(await waitFor(() => follows.active() === 1, 10_000));
  const t0 = Date.now();
  await call(callId, '+15550100555');
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /--max-packets reached/);
  assert.ok(Date.now() - t0 < 20_000, 'it ended at the limit, not at --duration');
  const got = await tsharkPackets(out, { bytes: true });
  assert.equal(got.length, 3);
  const want = (await ringPackets(callId)).slice(0, 3);
  assert.deepEqual(got.map(key), want.map(key));
});

test('a viewer may not follow; a follow with no selective key is refused', { skip, timeout: 30_000 }, async () => {
  const r = await tf(['follow', '--number', '5551234', '--duration', '5s', '-o', join(dir, 'v.pcap')], VIEWER);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /tracer or admin role/);
  const s = await connectClient(d.url, { user: TRACER.name, password: TRACER.password });
  try {
    const a = await ask(s, 'follow:start', { method: ['INVITE'] });
    assert.equal(a.ok, false);
    assert.equal((a as { code: string }).code, 'TF_QUERY_NOT_SELECTIVE');
    const v = await connectClient(d.url, { user: VIEWER.name, password: VIEWER.password });
    const b = await ask(v, 'follow:start', { callId: ['x'] });
    v.close();
    assert.equal((b as { code: string }).code, 'TF_FORBIDDEN');
  } finally {
    s.close();
  }
});

test('a client that does not acknowledge is dropped with TF_FOLLOW_SLOW_CLIENT, and the follow is stored', { skip, timeout: 60_000 }, async () => {
  const s = await connectClient(d.url, { user: TRACER.name, password: TRACER.password });
  let end: FollowEndView | null = null;
  let disconnected = false;
  s.on('follow:end', (e: FollowEndView) => (end = e));
  s.on('disconnect', () => (disconnected = true));
  // follow:data is never acknowledged: this client reads nothing.
  s.on('follow:data', () => {});
  await idle();
  const a = await ask<{ trace: TraceView }>(s, 'follow:start', { port: [String(SIP_PORT)], durationMs: 30_000 });
  assert.ok(a.ok, JSON.stringify(a));
  assert.ok(await waitFor(() => follows.active() === 1, 10_000));
  // 8 MiB must pile up: big datagrams (under the 64 KiB UDP limit), bounded in count.
  const pad = 'x'.repeat(60_000);
  for (let i = 0; i < 400 && !end; i++) {
    await send(Buffer.from(`OPTIONS sip:p@${LOOPBACK} SIP/2.0\r\nCall-ID: slow-${i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: ${pad.length}\r\n\r\n${pad}`));
    if (i % 10 === 9) await sleep(100);
  }
  assert.ok(await waitFor(() => end !== null, 10_000), 'no follow:end');
  assert.equal((end as unknown as FollowEndView).code, 'TF_FOLLOW_SLOW_CLIENT', JSON.stringify(end));
  assert.ok(await waitFor(() => disconnected, 5_000), 'the slow client was not disconnected');
  const v = await traceFinal(a.trace.id);
  assert.ok(v.hosts[0].packets > 0);
  s.close();
});

test('latency from capture to the follow client, at a moderate rate', { skip, timeout: 90_000 }, async (t) => {
  const s = await connectClient(d.url, { user: TRACER.name, password: TRACER.password });
  const lat: number[] = [];
  const pktLat: number[] = [];
  const parser = new CaptureStreamParser('follow');
  let ended = false;
  s.on('follow:data', (fd: FollowData, ack: (a: object) => void) => {
    const now = Date.now();
    for (const m of fd.messages) lat.push(now - Number(m.ts) * 1000);
    for (const r of parser.push(Buffer.from(fd.data))) pktLat.push(now - (r.tsSec * 1000 + r.tsNsec / 1e6));
    ack({});
  });
  s.on('follow:end', () => (ended = true));
  const tag = `lat-${Date.now()}`;
  await idle();
  const a = await ask<{ trace: TraceView }>(s, 'follow:start', { port: [String(SIP_PORT)], durationMs: 60_000 });
  assert.ok(a.ok, JSON.stringify(a));
  assert.ok(await waitFor(() => follows.active() === 1, 10_000));
  // 1000 messages at about 500/s, bounded.
  const N = 1000;
  for (let i = 0; i < N; i++) {
    await send(sip(`OPTIONS sip:probe@${LOOPBACK} SIP/2.0`, `${tag}-${i}`, 'probe', '1 OPTIONS'));
    if (i % 10 === 9) await sleep(20);
  }
  assert.ok(await waitFor(() => lat.length >= N, 15_000), `only ${lat.length} of ${N} arrived`);
  await ask(s, 'follow:stop', { traceId: a.trace.id });
  await waitFor(() => ended, 5_000);
  s.close();
  lat.sort((x, y) => x - y);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
  t.diagnostic(`capture -> client latency over ${lat.length} SIP messages at ~500/s: p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms, max ${lat[lat.length - 1].toFixed(1)} ms`);
  assert.ok(pct(99) < 2000, `p99 ${pct(99)} ms`);
  // The PCAP packets: the only host following says how far it is through,
  // so the dispatcher sends them on without waiting out its reorder window.
  pktLat.sort((x, y) => x - y);
  const pktP50 = pktLat[Math.floor(pktLat.length / 2)];
  t.diagnostic(`capture -> client latency of their ${pktLat.length} PCAP packets: p50 ${pktP50.toFixed(1)} ms`);
  assert.ok(pktLat.length >= N, `only ${pktLat.length} of ${N} packets arrived`);
  assert.ok(pktP50 < FOLLOW_LIMITS.reorderMs, `packets p50 ${pktP50} ms: held for the reorder window (${FOLLOW_LIMITS.reorderMs} ms) although the only host was through them`);
});

test('a spool file the dispatcher cannot write: the host is an error saying why, the follow is stored, the dispatcher lives on', { skip, timeout: 60_000 }, async () => {
  const s = await connectClient(d.url, { user: TRACER.name, password: TRACER.password });
  s.on('follow:data', (_fd: FollowData, ack: (a: object) => void) => ack({}));
  try {
    await idle();
    const tag = `nospool-${Date.now()}`;
    const a = await ask<{ trace: TraceView }>(s, 'follow:start', { callId: [tag], durationMs: 30_000 });
    assert.ok(a.ok, JSON.stringify(a));
    // A directory where the host's spool file goes: its open fails (EISDIR), as on a full or removed disk.
    mkdirSync(join(d.dataDir, 'spool', a.trace.id, 'lo1.pcap'), { recursive: true });
    assert.ok(await waitFor(() => follows.active() === 1, 10_000));
    await call(tag, '+15550100777');
    await sleep(500);
    await ask(s, 'follow:stop', { traceId: a.trace.id });
    const v = await traceFinal(a.trace.id);
    assert.equal(v.hosts[0].state, 'error', JSON.stringify(v));
    assert.match(v.hosts[0].error ?? '', /could not write this host's packets to its spool \(EISDIR.*check the free space and permissions/);
    // The dispatcher still answers.
    const b = await ask(s, 'follow:start', { callId: [`${tag}-2`], durationMs: 1_000 });
    assert.ok(b.ok, JSON.stringify(b));
  } finally {
    s.close();
  }
});
