import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './proc';
import { readRecords } from './pcapfile';
import { tsharkPackets, sameRecords, parseEpochNs, tsharkSelect } from './tshark';

const dir = mkdtempSync(join(tmpdir(), 'tf-tshark-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Pkt {
  epochNs: bigint;
  frame: Buffer;
}

function ipv4Udp(src: number, dst: number, sport: number, dport: number, payload: Buffer): Buffer {
  const udpLen = 8 + payload.length;
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + udpLen, 2);
  ip[8] = 64;
  ip[9] = 17;
  ip.writeUInt32BE(src, 12);
  ip.writeUInt32BE(dst, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(udpLen, 4);
  const eth = Buffer.from('02000000000102000000000208 00'.replace(/ /g, ''), 'hex');
  return Buffer.concat([eth, ip, udp, payload]);
}

/** Nanosecond-resolution little-endian pcap, written here so the comparison has inputs whose every bit is known. */
function writeNsPcap(path: string, pkts: Pkt[]): void {
  const hdr = Buffer.alloc(24);
  hdr.writeUInt32LE(0xa1b23c4d, 0);
  hdr.writeUInt16LE(2, 4);
  hdr.writeUInt16LE(4, 6);
  hdr.writeUInt32LE(65535, 16);
  hdr.writeUInt32LE(1, 20);
  const parts: Buffer[] = [hdr];
  for (const p of pkts) {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(Number(p.epochNs / 1_000_000_000n), 0);
    r.writeUInt32LE(Number(p.epochNs % 1_000_000_000n), 4);
    r.writeUInt32LE(p.frame.length, 8);
    r.writeUInt32LE(p.frame.length, 12);
    parts.push(r, p.frame);
  }
  writeFileSync(path, Buffer.concat(parts));
}

const base = 1_700_000_000_123_456_789n;
const pkts: Pkt[] = Array.from({ length: 6 }, (_, i) => ({
  epochNs: base + BigInt(i) * 1_000_001n,
  frame: ipv4Udp(0xc6120001, 0xc6120002, 40000 + i, 5060, Buffer.from(`OPTIONS sip:u${i}@x SIP/2.0\r\nCall-ID: c${i % 2}\r\nContent-Length: 0\r\n\r\n`)),
}));
const original = join(dir, 'orig-ns.pcap');
writeNsPcap(original, pkts);

test('parseEpochNs keeps every nanosecond digit', () => {
  assert.equal(parseEpochNs('1700000000.123456789'), 1_700_000_000_123_456_789n);
  assert.equal(parseEpochNs('1700000000.5'), 1_700_000_000_500_000_000n);
  assert.equal(parseEpochNs('12'), 12_000_000_000n);
  assert.throws(() => parseEpochNs('1.2e9'));
});

test('tsharkPackets: exact timestamps and bytes, agreeing with the written file', async () => {
  const got = await tsharkPackets(original, { bytes: true });
  assert.equal(got.length, pkts.length);
  for (const [i, p] of got.entries()) {
    assert.equal(p.frame, i + 1);
    assert.equal(p.epochNs, pkts[i].epochNs);
    assert.equal(p.len, pkts[i].frame.length);
    assert.equal(p.capLen, pkts[i].frame.length);
    assert.equal(p.bytesHex, pkts[i].frame.toString('hex'));
  }
});

test('sameRecords: pcapng and nanosecond pcap of the same packets are the same records', async () => {
  const ng = join(dir, 'conv.pcapng');
  await run('editcap', ['-F', 'pcapng', original, ng]);
  // The conversion must really have changed the container for this to mean anything.
  assert.notEqual(readRecords(ng).length, 0);
  const r = await sameRecords(original, ng);
  assert.equal(r.same, true, JSON.stringify(r.firstMismatch));
  assert.equal((await tsharkPackets(ng, { bytes: true }))[3].epochNs, pkts[3].epochNs);
});

test('sameRecords: microsecond pcap loses the nanoseconds and is reported different', async () => {
  const us = join(dir, 'conv-us.pcap');
  await run('editcap', ['-F', 'pcap', original, us]);
  const r = await sameRecords(original, us);
  assert.equal(r.same, false);
  assert.equal(r.firstMismatch?.index, 0);
  assert.match(r.firstMismatch!.reason, /timestamps/);
  assert.equal(r.onlyInA.length, pkts.length);
});

test('sameRecords: one changed byte is found', async () => {
  const changed = pkts.map((p) => ({ ...p, frame: Buffer.from(p.frame) }));
  changed[4].frame[changed[4].frame.length - 1] ^= 1;
  const f = join(dir, 'byte.pcap');
  writeNsPcap(f, changed);
  const r = await sameRecords(original, f, 'set');
  assert.equal(r.same, false);
  assert.deepEqual(
    r.onlyInA.map((p) => p.frame),
    [5],
  );
  assert.deepEqual(
    r.onlyInB.map((p) => p.frame),
    [5],
  );
});

test('sameRecords: reordered records are the same set but not the same sequence', async () => {
  const f = join(dir, 'reversed.pcap');
  writeNsPcap(f, [...pkts].reverse());
  assert.equal((await sameRecords(original, f, 'set')).same, true);
  const ordered = await sameRecords(original, f, 'ordered');
  assert.equal(ordered.same, false);
  assert.equal(ordered.firstMismatch?.index, 0);
});

test('sameRecords: a missing record is reported (set and ordered)', async () => {
  const f = join(dir, 'short.pcap');
  writeNsPcap(f, pkts.slice(0, -1));
  const s = await sameRecords(original, f, 'set');
  assert.equal(s.same, false);
  assert.deepEqual(
    s.onlyInA.map((p) => p.epochNs),
    [pkts[5].epochNs],
  );
  const o = await sameRecords(original, f);
  assert.equal(o.firstMismatch?.index, 5);
});

test('tsharkSelect passes decode-as rules: SIP on a moved port, or not SIP when overridden', async () => {
  const moved = pkts.map((p) => ({ ...p, frame: Buffer.from(p.frame) }));
  // UDP destination port 5060 → 7070 (offset 14 + 20 + 2); the UDP checksum is zero, so it stays valid.
  for (const m of moved) m.frame.writeUInt16BE(7070, 36);
  const f = join(dir, 'port7070.pcap');
  writeNsPcap(f, moved);
  // tshark's SIP heuristics find UDP SIP on any port, so only an explicit rule can hide it.
  assert.deepEqual(await tsharkSelect([f], 'sip.Call-ID == "c1"', { decodeAs: ['udp.port==7070,data'] }), []);
  const sel = await tsharkSelect([f, original], 'sip.Call-ID == "c1"', { sipPorts: [7070] });
  assert.deepEqual(sel, [
    { file: f, frame: 2 },
    { file: f, frame: 4 },
    { file: f, frame: 6 },
    { file: original, frame: 2 },
    { file: original, frame: 4 },
    { file: original, frame: 6 },
  ]);
});
