import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { ringBytes } from '../ring/budget';
import { indexPathFor, listSegments } from '../ring/layout';
import { CaptureEngine, type CaptureError } from './capture';
import { repoRoot } from './pcap-native';
import {
  ephemeralReceiver,
  isRoot,
  NEEDS_ROOT,
  sendBurst,
  seqsOf,
  sipPayload,
  sleep,
  tempDir,
  tsharkRead,
  udpReceiver,
  udpSender,
  waitFor,
  type TsharkPacket,
} from '../../test/support/capture';

type Msg = { type: string; path?: string; bytes?: number; [k: string]: unknown };

function record(engine: CaptureEngine): Msg[] {
  const events: Msg[] = [];
  for (const type of ['ready', 'segment-open', 'flushed', 'segment-closed', 'stats', 'segment-deleted', 'worker-exit']) {
    engine.on(type, (m: Msg) => events.push({ ...m, type }));
  }
  return events;
}

/** tshark output of every segment, oldest first, with the status of each read. */
function readRing(dir: string): Array<{ path: string; bytes: number; status: number | null; stderr: string; packets: TsharkPacket[] }> {
  return listSegments(dir).map((s) => ({ path: s.path, bytes: s.bytes, ...tsharkRead(s.path) }));
}

function assertTimes(packets: TsharkPacket[], fromNs: bigint, toNs: bigint): void {
  for (const [i, p] of packets.entries()) {
    assert.equal(p.fracDigits, 9, 'tshark prints nanoseconds for a nanosecond file');
    assert.ok(p.tsNs >= fromNs && p.tsNs <= toNs, `packet ${i} at ${p.tsNs} outside the test's window [${fromNs}, ${toNs}]`);
    if (i > 0) assert.ok(p.tsNs >= packets[i - 1].tsNs, `packet ${i} goes back in time`);
  }
  assert.ok(packets.some((p) => p.tsNs % 1000n !== 0n), 'no sub-microsecond digits: timestamps were rounded somewhere');
}

const nowNs = () => BigInt(Date.now()) * 1_000_000n;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

test('captures exactly the SIP-port datagrams on lo into a nanosecond PCAP segment that tshark reads', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-cap-');
  const sip = await udpReceiver(5100, 5299);
  const other = await ephemeralReceiver();
  const tx = await udpSender();
  const engine = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], ringMaxBytes: 1 << 30, minFreeBytes: 0 });
  const events = record(engine);
  try {
    await engine.start();
    assert.deepEqual(engine.stats().interfaces.lo.precision, 'nano');
    const N = 2000;
    const t0 = nowNs();
    for (let i = 0; i < N; i += 100) {
      await sendBurst(tx.sock, sip.port, 100, (k) => sipPayload('cap1', i + k));
      await sendBurst(tx.sock, other.port, 25, (k) => sipPayload('other1', i + k));
    }
    const t1 = nowNs() + 1_000_000n;
    assert.ok(await waitFor(() => events.some((e) => e.type === 'stats'), 3000), 'a stats message within a second or so');
    await engine.stop();

    const segs = readRing(ring);
    assert.equal(segs.length, 1, 'one segment: nothing here reaches 64 MiB or 300 s');
    const head = readFileSync(segs[0].path).subarray(0, 24);
    assert.equal(head.readUInt32LE(0), 0xa1b23c4d, 'nanosecond PCAP magic');
    assert.equal(head.readUInt32LE(20), 1, 'LINKTYPE_ETHERNET, as libpcap reports lo');
    assert.equal(segs[0].status, 0, segs[0].stderr);
    const mine = segs[0].packets.filter((p) => p.srcPort === tx.port);
    assert.equal(mine.length, N, 'every datagram to the SIP port, and none to the other port');
    assert.ok(mine.every((p) => p.dstPort === sip.port));
    assert.deepEqual(seqsOf(mine, 'cap1'), range(N), 'in order, none doubled');
    assertTimes(mine, t0, t1);

    const opened = events.filter((e) => e.type === 'segment-open');
    const closed = events.filter((e) => e.type === 'segment-closed');
    assert.deepEqual(opened.map((e) => [e.path, e.stream, e.linkType, e.nanos]), [[segs[0].path, 'lo', 1, true]]);
    assert.deepEqual(closed.map((e) => [e.path, e.bytes]), [[segs[0].path, segs[0].bytes]]);
    const flushed = events.filter((e) => e.type === 'flushed');
    assert.ok(flushed.length >= 1);
    assert.deepEqual(flushed.at(-1), { type: 'flushed', stream: 'lo', path: segs[0].path, bytes: segs[0].bytes });
    assert.ok(events.indexOf(flushed.at(-1)!) < events.indexOf(closed[0]), "final 'flushed' comes before 'segment-closed'");
    for (let i = 1; i < flushed.length; i++) assert.ok(flushed[i].bytes! > flushed[i - 1].bytes!);

    const st = engine.stats().interfaces.lo;
    // lo shows the kernel filter each datagram twice (out and in).
    assert.ok(st.received >= 2 * N, `received ${st.received}`);
    assert.equal(st.dropped, 0);
    assert.ok(st.packets >= N && st.bytes > 0);
    const lastStats = events.filter((e) => e.type === 'stats').at(-1)!;
    assert.equal(lastStats.packets, st.packets);
    assert.equal(st.running, false);
  } finally {
    await engine.stop();
    sip.sock.close();
    other.sock.close();
    tx.sock.close();
    rmSync(ring, { recursive: true, force: true });
  }
});

test('rotation by size gives many segments, each readable, with every packet exactly once', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-rot-');
  const sip = await udpReceiver(5100, 5299);
  const tx = await udpSender();
  const max = 16 * 1024;
  const engine = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], maxSegmentBytes: max, ringMaxBytes: 1 << 30, minFreeBytes: 0 });
  const events = record(engine);
  try {
    await engine.start();
    const N = 2000;
    const t0 = nowNs();
    await sendBurst(tx.sock, sip.port, N, (i) => sipPayload('rot', i));
    const t1 = nowNs() + 1_000_000n;
    await engine.stop();

    const segs = readRing(ring);
    assert.ok(segs.length >= 10, `expected many segments, got ${segs.length}`);
    const all: TsharkPacket[] = [];
    for (const s of segs) {
      assert.equal(s.status, 0, `${s.path}: ${s.stderr}`);
      assert.ok(s.bytes <= max, `${s.path} is ${s.bytes} bytes`);
      all.push(...s.packets.filter((p) => p.srcPort === tx.port));
    }
    assert.deepEqual(seqsOf(all, 'rot'), range(N));
    assertTimes(all, t0, t1);
    const opened = events.filter((e) => e.type === 'segment-open').map((e) => e.path);
    const closed = events.filter((e) => e.type === 'segment-closed');
    assert.deepEqual(opened, segs.map((s) => s.path));
    assert.deepEqual(closed.map((e) => [e.path, e.bytes]), segs.map((s) => [s.path, s.bytes]));
  } finally {
    await engine.stop();
    sip.sock.close();
    tx.sock.close();
    rmSync(ring, { recursive: true, force: true });
  }
});

test('an idle segment is closed once it is maxSegmentSeconds old, without more traffic', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-age-');
  const sip = await udpReceiver(5100, 5299);
  const tx = await udpSender();
  const engine = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], maxSegmentSeconds: 1, ringMaxBytes: 1 << 30, minFreeBytes: 0 });
  const events = record(engine);
  try {
    await engine.start();
    await sendBurst(tx.sock, sip.port, 5, (i) => sipPayload('age', i));
    const sentAt = Date.now();
    assert.ok(await waitFor(() => events.some((e) => e.type === 'segment-closed'), 4000), 'segment not closed by age');
    const waited = Date.now() - sentAt;
    assert.ok(waited >= 800 && waited < 3000, `closed after ${waited} ms`);
    const closed = events.find((e) => e.type === 'segment-closed')!;
    assert.equal(engine.openSegments().includes(closed.path!), false);
    const mine = tsharkRead(closed.path!).packets.filter((p) => p.srcPort === tx.port);
    assert.deepEqual(seqsOf(mine, 'age'), range(5));
  } finally {
    await engine.stop();
    sip.sock.close();
    tx.sock.close();
    rmSync(ring, { recursive: true, force: true });
  }
});

test('the budget keeps the ring within ringMaxBytes over many rotations, oldest first, never the open segment', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-budget-');
  const sip = await udpReceiver(5100, 5299);
  const tx = await udpSender();
  const max = 32 * 1024;
  const ringMax = 256 * 1024;
  const engine = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], maxSegmentBytes: max, ringMaxBytes: ringMax, minFreeBytes: 0 });
  const open = new Set<string>();
  const violations: string[] = [];
  let peak = 0;
  engine.on('segment-open', (m: Msg) => open.add(m.path!));
  engine.on('segment-deleted', (m: Msg) => {
    if (open.has(m.path!)) violations.push(`deleted open segment ${m.path}`);
  });
  engine.on('segment-closed', (m: Msg) => {
    open.delete(m.path!);
    // Stand in for the indexer so the budget has indexes to count and delete.
    if (existsSync(m.path!)) writeFileSync(indexPathFor(m.path!), Buffer.alloc(512));
    // The engine has enforced the budget before telling us.
    peak = Math.max(peak, ringBytes(ring));
  });
  // Between budget runs the open segment keeps growing; the engine leaves
  // room for it, so the ring stays within budget then too.
  engine.on('flushed', () => {
    peak = Math.max(peak, ringBytes(ring));
  });
  const deleted: string[] = [];
  engine.on('segment-deleted', (m: Msg) => deleted.push(m.path!));
  try {
    await engine.start();
    const N = 3000;
    // Paced, so that no batch is bigger than a segment and the check above
    // measures the engine rather than a race with the worker.
    await sendBurst(tx.sock, sip.port, N, (i) => sipPayload('budget', i), { burst: 20, pauseMs: 4 });
    await engine.stop();

    assert.deepEqual(violations, []);
    assert.ok(deleted.length >= 5, `expected deletions, got ${deleted.length}`);
    assert.ok(peak > 0 && peak <= ringMax, `ring reached ${peak} bytes, budget ${ringMax}`);
    assert.ok(ringBytes(ring) <= ringMax);
    const names = readdirSync(ring);
    for (const n of names.filter((x) => x.endsWith('.idx'))) {
      assert.ok(names.includes(n.replace(/\.idx$/, '.pcap')), `${n} outlived its segment`);
    }
    const left = readRing(ring);
    for (const s of left) assert.equal(s.status, 0, s.stderr);
    const seqs = seqsOf(left.flatMap((s) => s.packets.filter((p) => p.srcPort === tx.port)), 'budget');
    assert.ok(seqs.length > 0 && seqs.length < N);
    assert.deepEqual(seqs, range(seqs.length).map((i) => N - seqs.length + i), 'what is left is the newest packets, with no gap');
  } finally {
    await engine.stop();
    sip.sock.close();
    tx.sock.close();
    rmSync(ring, { recursive: true, force: true });
  }
});

test('an invalid filter or an unknown interface makes start() reject with a clear error', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-err-');
  try {
    const bad = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], filter: 'udp prot 5060', ringMaxBytes: 1 << 30, minFreeBytes: 0 });
    await assert.rejects(bad.start(), (e: CaptureError) => {
      assert.match(e.message, /^invalid capture filter "udp prot 5060" on lo: .*syntax error/);
      assert.equal(e.code, 'EFILTER');
      return true;
    });
    const missing = new CaptureEngine({ ringDir: ring, interfaces: ['lo', 'tfnosuch0'], ringMaxBytes: 1 << 30, minFreeBytes: 0 });
    const exits: Msg[] = [];
    missing.on('worker-exit', (m: Msg) => exits.push(m));
    await assert.rejects(missing.start(), (e: CaptureError) => {
      assert.match(e.message, /^no such capture interface "tfnosuch0" .*`ip link`/);
      assert.equal(e.stream, 'tfnosuch0');
      return true;
    });
    assert.deepEqual(exits.map((m) => m.stream).sort(), ['lo', 'tfnosuch0'], 'the interface that did open was stopped again');
    assert.equal(missing.stats().interfaces.lo.running, false);
    await sleep(700);
    assert.equal(exits.length, 2, 'no restart after a failed start');
    assert.deepEqual(listSegments(ring), []);
  } finally {
    rmSync(ring, { recursive: true, force: true });
  }
  assert.throws(
    () => new CaptureEngine({ ringDir: ring, interfaces: ['lo'], maxSegmentBytes: 1 << 20, ringMaxBytes: 1 << 20 }),
    /ringMaxBytes \(1048576\) must be at least 2 x maxSegmentBytes x interfaces \(2097152\)/,
  );
});

test('a worker that dies is reported and restarted, and capture goes on', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-restart-');
  const sip = await udpReceiver(5100, 5299);
  const tx = await udpSender();
  const engine = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], ringMaxBytes: 1 << 30, minFreeBytes: 0 });
  const events = record(engine);
  const errors: CaptureError[] = [];
  engine.on('error', (e: CaptureError) => errors.push(e));
  try {
    await engine.start();
    await sendBurst(tx.sock, sip.port, 100, (i) => sipPayload('before', i));
    assert.ok(await waitFor(() => events.some((e) => e.type === 'flushed'), 3000));
    // Past the 10 ms block timeout and the 20 ms batch: all 100 are on disk.
    await sleep(250);
    // Reach in for the thread itself: this is what a crash inside it looks like from outside.
    const states = (engine as unknown as { states: Array<{ worker: Worker | null }> }).states;
    await states[0].worker!.terminate();
    assert.ok(await waitFor(() => events.filter((e) => e.type === 'ready').length === 2, 5000), 'restarted within the first backoff');
    assert.ok(events.some((e) => e.type === 'worker-exit'));
    assert.ok(errors.some((e) => /capture worker for lo exited/.test(e.message) && e.fatal === true));
    const firstSeg = events.find((e) => e.type === 'segment-open')!.path;
    assert.ok(events.some((e) => e.type === 'segment-closed' && e.path === firstSeg), "the dead worker's segment is reported closed");
    assert.equal(engine.stats().interfaces.lo.restarts, 1);
    assert.equal(engine.stats().interfaces.lo.running, true);

    await sendBurst(tx.sock, sip.port, 100, (i) => sipPayload('after', i));
    await engine.stop();
    const segs = readRing(ring);
    assert.ok(segs.length >= 2);
    for (const s of segs) assert.equal(s.status, 0, s.stderr);
    const mine = segs.flatMap((s) => s.packets.filter((p) => p.srcPort === tx.port));
    assert.deepEqual(seqsOf(mine, 'after'), range(100));
    assert.deepEqual(seqsOf(mine, 'before'), range(100));
  } finally {
    await engine.stop();
    sip.sock.close();
    tx.sock.close();
    rmSync(ring, { recursive: true, force: true });
  }
});

test('SIGKILL of a capturing process leaves segments that tshark still reads, with nothing lost', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-kill-');
  const sip = await udpReceiver(5100, 5299);
  const tx = await udpSender();
  const script = join(ring, '..', `${ring.split('/').pop()}-child.js`);
  writeFileSync(
    script,
    `const { CaptureEngine } = require(${JSON.stringify(join(repoRoot(), 'dist/agent/capture/capture.js'))});
     const e = new CaptureEngine({ ringDir: ${JSON.stringify(ring)}, interfaces: ['lo'], maxSegmentBytes: 32768, ringMaxBytes: 1 << 30, minFreeBytes: 0 });
     for (const ty of ['ready', 'stats', 'segment-closed']) e.on(ty, (m) => console.log(JSON.stringify(m)));
     e.on('error', (err) => console.log(JSON.stringify({ type: 'error', message: err.message })));
     e.start().catch((err) => { console.log(JSON.stringify({ type: 'start-failed', message: err.message })); process.exit(1); });
     setTimeout(() => process.exit(3), 60000).unref();`,
  );
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Msg[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, sig) => r(sig)));
  try {
    assert.ok(await waitFor(() => lines.some((l) => l.type === 'ready' || l.type === 'start-failed'), 15000), 'child did not start');
    assert.ok(lines.some((l) => l.type === 'ready'), JSON.stringify(lines));
    const N = 1000;
    await sendBurst(tx.sock, sip.port, N, (i) => sipPayload('kill', i));
    const sentAt = Date.now();
    assert.ok(
      await waitFor(() => lines.some((l) => l.type === 'stats' && (l.packets as number) >= N) && Date.now() - sentAt > 200, 10000),
      'child never reported the packets written',
    );
    assert.ok(lines.some((l) => l.type === 'segment-closed'), 'some segments rotated before the kill');
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');

    const segs = readRing(ring);
    assert.ok(segs.length >= 2);
    for (const s of segs) {
      // A segment cut inside its last record is allowed; anything else is not.
      assert.ok(s.status === 0 || /cut short in the middle of a packet/.test(s.stderr), `${s.path}: ${s.stderr}`);
    }
    const mine = segs.flatMap((s) => s.packets.filter((p) => p.srcPort === tx.port));
    assert.deepEqual(seqsOf(mine, 'kill'), range(N));

    // The next run on the same ring leaves the old segments alone.
    const before = new Map(segs.map((s) => [s.path, statSync(s.path).size]));
    const again = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], maxSegmentBytes: 32768, ringMaxBytes: 1 << 30, minFreeBytes: 0 });
    await again.start();
    await sendBurst(tx.sock, sip.port, 10, (i) => sipPayload('again', i));
    await again.stop();
    for (const [p, size] of before) assert.equal(statSync(p).size, size, `${p} changed`);
    const newer = readRing(ring).filter((s) => !before.has(s.path));
    assert.deepEqual(seqsOf(newer.flatMap((s) => s.packets.filter((p) => p.srcPort === tx.port)), 'again'), range(10));
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    sip.sock.close();
    tx.sock.close();
    rmSync(script, { force: true });
    rmSync(ring, { recursive: true, force: true });
  }
});
