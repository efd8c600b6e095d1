import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { loadNative, PcapCapture, repoRoot, type NativeHandle } from './pcap-native';
import { ephemeralReceiver, isRoot, NEEDS_ROOT, sendBurst, sleep, udpSender } from '../../test/support/capture';

const OPTS = { snaplen: 65535, bufferBytes: 4 << 20, promisc: false, nanos: true };

interface Rec {
  tsNs: bigint;
  capLen: number;
  origLen: number;
  data: Buffer;
}

function parseRecords(buf: Buffer, bytes: number): Rec[] {
  const out: Rec[] = [];
  for (let off = 0; off < bytes; ) {
    const capLen = buf.readUInt32LE(off + 8);
    out.push({
      tsNs: BigInt(buf.readUInt32LE(off)) * 1_000_000_000n + BigInt(buf.readUInt32LE(off + 4)),
      capLen,
      origLen: buf.readUInt32LE(off + 12),
      data: Buffer.from(buf.subarray(off + 16, off + 16 + capLen)),
    });
    off += 16 + capLen;
  }
  assert.equal(out.reduce((a, r) => a + 16 + r.capLen, 0), bytes, 'read() returns whole records only');
  return out;
}

/** Payload of a UDP datagram inside an Ethernet/IPv4 frame from lo. */
const udpPayload = (frame: Buffer) => frame.subarray(14 + (frame[14] & 0x0f) * 4 + 8);

test('read() batches whole PCAP records with nanosecond kernel timestamps; a record that does not fit waits for the next call', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const rx = await ephemeralReceiver();
  const tx = await udpSender();
  const cap = new PcapCapture('lo', `udp and src port ${tx.port} and dst port ${rx.port}`, OPTS);
  try {
    assert.equal(cap.precision, 'nano');
    const N = 300;
    const t0 = BigInt(Date.now()) * 1_000_000n;
    await sendBurst(tx.sock, rx.port, N, (i) => Buffer.from(`seq=${i};`.padEnd(100 + (i % 7) * 60, 'x')));
    const t1 = BigInt(Date.now() + 1) * 1_000_000n;
    // Room for two or three records per call: most calls end with a stashed one.
    const out = Buffer.alloc(1000);
    const recs: Rec[] = [];
    const until = Date.now() + 10_000;
    for (let i = 0; i < 5000 && recs.length < N && Date.now() < until; i++) {
      const r = cap.read(out, 200);
      const got = parseRecords(out, r.bytes);
      assert.equal(got.length, r.packets);
      recs.push(...got);
    }
    assert.equal(recs.length, N);
    assert.deepEqual(
      recs.map((r) => Number(/^seq=(\d+);/.exec(udpPayload(r.data).toString('latin1'))![1])),
      Array.from({ length: N }, (_, i) => i),
    );
    for (const [i, r] of recs.entries()) {
      assert.equal(r.capLen, r.origLen);
      assert.equal(udpPayload(r.data).length, 100 + (i % 7) * 60);
      assert.ok(r.tsNs >= t0 && r.tsNs <= t1, `timestamp ${r.tsNs} outside [${t0}, ${t1}]`);
      if (i > 0) assert.ok(r.tsNs >= recs[i - 1].tsNs, 'kernel timestamps do not go back');
    }
    assert.ok(recs.some((r) => r.tsNs % 1000n !== 0n), 'sub-microsecond digits present: nanoseconds kept');
    const s = cap.stats();
    assert.ok(s.received >= N, `received ${s.received} < ${N}`);
    assert.equal(s.dropped, 0);
    assert.equal(s.ifDropped, 0);
  } finally {
    cap.close();
    rx.sock.close();
    tx.sock.close();
  }
});

test('a buffer too small for the waiting record is an error that loses nothing', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const rx = await ephemeralReceiver();
  const tx = await udpSender();
  const cap = new PcapCapture('lo', `udp and src port ${tx.port}`, OPTS);
  try {
    await sendBurst(tx.sock, rx.port, 1, () => Buffer.alloc(500, 0x41));
    const tiny = Buffer.alloc(100);
    // The wait covers the 10 ms after which the kernel hands over a partly filled block.
    assert.deepEqual(cap.read(tiny, 500), { bytes: 0, packets: 0 }, 'the record cannot fit in 100 bytes');
    assert.throws(() => cap.read(tiny, 0), (e: NodeJS.ErrnoException) => e.code === 'ERANGE' && /cannot hold a record of 558 bytes/.test(e.message));
    const big = Buffer.alloc(4096);
    const r = cap.read(big, 0);
    assert.equal(r.packets, 1);
    assert.equal(r.bytes, 16 + 542);
    assert.ok(udpPayload(big.subarray(16, r.bytes)).equals(Buffer.alloc(500, 0x41)));
  } finally {
    cap.close();
    rx.sock.close();
    tx.sock.close();
  }
});

test('read() waits up to its timeout when nothing comes', (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  // Port 1 over UDP on lo: nothing sends there.
  const cap = new PcapCapture('lo', 'udp and dst port 1 and src port 1', OPTS);
  try {
    const start = process.hrtime.bigint();
    const r = cap.read(Buffer.alloc(65536), 150);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    assert.deepEqual(r, { bytes: 0, packets: 0 });
    assert.ok(ms >= 140 && ms < 1500, `waited ${ms} ms`);
  } finally {
    cap.close();
  }
});

test('open errors say what went wrong and what to do', (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const n = loadNative();
  assert.throws(
    () => n.open('tfnosuch0', 'udp', OPTS),
    (e: NodeJS.ErrnoException) => e.code === 'ENODEV' && /^no such capture interface "tfnosuch0" .*check the name with `ip link`/.test(e.message),
  );
  assert.throws(
    () => n.open('lo', 'udp prot 5060', OPTS),
    (e: NodeJS.ErrnoException) => e.code === 'EFILTER' && e.message.startsWith('invalid capture filter "udp prot 5060" on lo: ') && /syntax error/.test(e.message),
  );
  assert.throws(() => n.open('lo', 'udp', { ...OPTS, snaplen: 10 }), /snaplen must be between 64 and 262144/);
  assert.throws(() => n.open('lo', 'udp', { ...OPTS, nanos: 'yes' } as never), TypeError);
  assert.throws(() => n.read({} as NativeHandle, Buffer.alloc(10), 0), /expected a capture handle/);
  const h = n.open('lo', 'udp', OPTS);
  n.close(h);
  n.close(h);
  assert.throws(() => n.read(h, Buffer.alloc(100), 0), (e: NodeJS.ErrnoException) => e.code === 'ECLOSED');
  assert.throws(() => n.stats(h), /capture on lo is closed/);
});

test('without privileges the error says to run as root or grant the capabilities', (t) => {
  if (!isRoot()) return t.skip('needs root to switch to an unprivileged user for this check');
  const mod = `${repoRoot()}/dist/agent/capture/pcap-native.js`;
  const code = `
    const { loadNative } = require(${JSON.stringify(mod)});
    try { loadNative().open('lo', 'udp', ${JSON.stringify(OPTS)}); console.log('opened'); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
  const r = spawnSync(process.execPath, ['-e', code], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 20_000, cwd: '/' });
  if (r.status !== 0 && /EACCES|cannot find/.test(r.stderr)) return t.skip(`user nobody cannot read the build: ${r.stderr.trim()}`);
  assert.equal(r.status, 0, r.stderr);
  const e = JSON.parse(r.stdout.trim());
  assert.equal(e.code, 'EPERM');
  assert.match(e.message, /^permission denied capturing on lo \(.*\): run as root or give CAP_NET_RAW and CAP_NET_ADMIN$/);
});

test('stats() counts what passed the filter', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const rx = await ephemeralReceiver();
  const tx = await udpSender();
  const cap = new PcapCapture('lo', `udp and src port ${tx.port}`, OPTS);
  try {
    assert.deepEqual(cap.stats(), { received: 0, dropped: 0, ifDropped: 0 });
    await sendBurst(tx.sock, rx.port, 20, () => Buffer.from('x'));
    await sleep(50);
    // lo shows each datagram to packet sockets twice (out and in); libpcap
    // hands over one copy, the kernel counter sees both.
    const s = cap.stats();
    assert.equal(s.received, 40);
    assert.equal(s.dropped, 0);
    let got = 0;
    for (let i = 0; i < 50 && got < 20; i++) got += cap.read(Buffer.alloc(1 << 16), 50).packets;
    assert.equal(got, 20);
  } finally {
    cap.close();
    rx.sock.close();
    tx.sock.close();
  }
});
