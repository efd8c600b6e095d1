import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LINKTYPE } from '../pcap/types';
import { FragmentReassembler } from './frag';
import { decodePacket } from './packet';
import type { DecodedPacket } from './types';
import { fragmentIpv4, fragmentIpv6, ipv4, prng, udp } from '../../test/support/packets';

const A = { src: '10.1.1.1', dst: '10.2.2.2' };

function dec(b: Buffer): DecodedPacket {
  const r = decodePacket(LINKTYPE.RAW, b);
  if (typeof r === 'string') assert.fail(r);
  return r;
}

function payload(n: number, seed = 1): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

test('in-order and out-of-order IPv4 fragments rebuild the datagram', () => {
  const seg = udp(5060, 5060, payload(3000));
  const frags = fragmentIpv4({ ...A, proto: 17, id: 9 }, seg, [1480, 1480, 48]).map(dec);
  for (const order of [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]]) {
    const r = new FragmentReassembler();
    let done = null;
    order.forEach((i, k) => {
      const out = r.push(10 + i, 100, frags[i]);
      if (k < 2) assert.equal(out, null);
      else done = out;
    });
    assert.ok(done);
    const d = done as { datagram: Buffer; packets: number[]; proto: number };
    assert.deepEqual(d.datagram, seg);
    assert.deepEqual(d.packets, [10, 11, 12]);
    assert.equal(d.proto, 17);
    assert.equal(r.pending, 0);
    assert.equal(r.counters.reassembled, 1);
  }
});

test('overlapping and duplicate fragments: the first bytes seen win, every carrier is listed', () => {
  const seg = payload(64, 2);
  const other = payload(64, 3);
  const r = new FragmentReassembler();
  const f = (off: number, len: number, more: boolean, src: Buffer) =>
    dec(ipv4({ ...A, proto: 17, id: 5, fragOffset: off, more }, src.subarray(off, off + len)));
  assert.equal(r.push(1, 0, f(0, 24, true, seg)), null);
  assert.equal(r.push(2, 0, f(0, 24, true, other)), null); // duplicate with different bytes
  assert.equal(r.push(3, 0, f(16, 32, true, other)), null); // overlaps the first's tail
  const d = r.push(4, 0, f(40, 24, false, seg));
  assert.ok(d);
  const want = Buffer.concat([seg.subarray(0, 24), other.subarray(24, 48), seg.subarray(48)]);
  assert.deepEqual(d.datagram, want);
  assert.deepEqual(d.packets, [1, 2, 3, 4]);
});

test('datagrams are told apart by addresses, protocol and id', () => {
  const r = new FragmentReassembler();
  const seg = payload(32);
  const mk = (o: object) => fragmentIpv4({ ...A, proto: 17, id: 1, ...o }, seg, [16, 16]).map(dec);
  const a = mk({});
  const b = mk({ id: 2 });
  const c = mk({ proto: 6 });
  const d = mk({ src: '10.1.1.9' });
  r.push(1, 0, a[0]);
  assert.equal(r.push(2, 0, b[1]), null);
  assert.equal(r.push(3, 0, c[1]), null);
  assert.equal(r.push(4, 0, d[1]), null);
  assert.equal(r.pending, 4);
  assert.deepEqual(r.push(5, 0, a[1])?.packets, [1, 5]);
  assert.equal(r.pending, 3);
});

test('IPv6 fragments with a hop-by-hop header', () => {
  const frag = Buffer.concat([udp(5060, 5060, payload(200))]);
  const pk = fragmentIpv6({ src: '2001:db8::a', dst: '2001:db8::b' }, 17, 0x01020304, frag, [64, 64, 80], true).map(dec);
  assert.equal(pk[1].fragment?.offset, 64);
  const r = new FragmentReassembler();
  assert.equal(r.push(7, 1, pk[2]), null);
  assert.equal(r.push(8, 1, pk[0]), null);
  const d = r.push(9, 1, pk[1]);
  assert.ok(d);
  assert.deepEqual(d.datagram, frag);
  assert.deepEqual(d.packets, [7, 8, 9]);
});

test('incomplete datagrams expire by packet time', () => {
  const r = new FragmentReassembler({ timeoutSec: 30 });
  const f = fragmentIpv4({ ...A, proto: 17, id: 3 }, payload(48), [24, 24]).map(dec);
  r.push(1, 1000, f[0]);
  assert.equal(r.pending, 1);
  // The missing fragment arrives too late: the first is gone, so no datagram.
  assert.equal(r.push(2, 1031, f[1]), null);
  assert.equal(r.counters.expired, 1);
  assert.equal(r.pending, 1);
  // The sweep also drops datagrams nobody asks about.
  const g = fragmentIpv4({ ...A, proto: 17, id: 4 }, payload(48), [24, 24]).map(dec);
  r.push(3, 1100, g[0]);
  assert.equal(r.counters.expired, 2);
  assert.equal(r.pending, 1);
  // Within the timeout it completes.
  assert.ok(r.push(4, 1129, g[1]));
});

test('the pending cap evicts the oldest datagram', () => {
  const r = new FragmentReassembler({ maxPending: 3 });
  const sets = [1, 2, 3, 4].map((id) => fragmentIpv4({ ...A, proto: 17, id }, payload(32), [16, 16]).map(dec));
  sets.forEach((s, i) => r.push(i, 0, s[0]));
  assert.equal(r.pending, 3);
  assert.equal(r.counters.evicted, 1);
  assert.equal(r.push(10, 0, sets[0][1]), null);
  assert.ok(r.push(11, 0, sets[3][1]));
});

test('oversized and inconsistent datagrams are dropped', () => {
  const r = new FragmentReassembler({ maxDatagramBytes: 65535 });
  const last = dec(ipv4({ ...A, proto: 17, id: 8, fragOffset: 65528 }, Buffer.alloc(16)));
  assert.equal(r.push(1, 0, last), null);
  assert.equal(r.counters.dropped, 1);
  assert.equal(r.pending, 0);

  const end1 = dec(ipv4({ ...A, proto: 17, id: 9, fragOffset: 16 }, Buffer.alloc(8)));
  const end2 = dec(ipv4({ ...A, proto: 17, id: 9, fragOffset: 16 }, Buffer.alloc(16)));
  r.push(2, 0, end1);
  assert.equal(r.push(3, 0, end2), null);
  assert.equal(r.counters.dropped, 2);
  assert.equal(r.pending, 0);

  const small = new FragmentReassembler({ maxPieces: 2 });
  for (const off of [0, 16, 32]) small.push(off, 0, dec(ipv4({ ...A, proto: 17, id: 1, fragOffset: off, more: true }, Buffer.alloc(8))));
  assert.equal(small.counters.dropped, 1);
});

test('bytes claimed past the last fragment are cut', () => {
  const r = new FragmentReassembler();
  const seg = payload(40);
  r.push(1, 0, dec(ipv4({ ...A, proto: 17, id: 2, more: true }, Buffer.concat([seg.subarray(0, 24), Buffer.alloc(16, 0xee)]))));
  const d = r.push(2, 0, dec(ipv4({ ...A, proto: 17, id: 2, fragOffset: 24 }, seg.subarray(24, 32))));
  assert.ok(d);
  // The first fragment's bytes win where they overlap the last's.
  assert.deepEqual(d.datagram, Buffer.concat([seg.subarray(0, 24), Buffer.alloc(8, 0xee)]));
  assert.deepEqual(d.packets, [1, 2]);
});

/** A fragment as a capture with this snap length (bytes of IP packet) keeps it. */
function cutDec(b: Buffer, keep: number): DecodedPacket {
  const r = decodePacket(LINKTYPE.RAW, b.subarray(0, keep), true);
  if (typeof r === 'string') assert.fail(r);
  assert.equal(r.truncated, keep < b.length);
  return r;
}

test('cut fragments complete their datagram: given up to the first gap, marked; gaps hold no memory and captured bytes fill them', () => {
  const seg = payload(2000, 7);
  const frags = fragmentIpv4({ ...A, proto: 17, id: 11 }, seg, [800, 800, 400]);
  // Every fragment cut to 300 bytes of IP packet, in any order.
  for (const order of [[0, 1, 2], [2, 1, 0], [1, 0, 2]]) {
    const r = new FragmentReassembler({ maxPendingBytes: 1000 });
    let done = null;
    for (const i of order) done = r.push(i, 1, cutDec(frags[i], 300));
    assert.ok(done, `order ${order}`);
    assert.equal(done.truncated, true);
    assert.deepEqual(done.datagram, seg.subarray(0, 280));
    assert.deepEqual(done.packets, [0, 1, 2]);
    // 3 x 280 captured bytes fit in 1000 although the datagram claims 2000: nothing was evicted.
    assert.equal(r.counters.evicted, 0);
    assert.equal(r.pending, 0);
  }
  // Only the middle one cut: everything before its gap.
  const r = new FragmentReassembler();
  assert.equal(r.push(1, 1, dec(frags[0])), null);
  assert.equal(r.push(2, 1, cutDec(frags[1], 120)), null);
  const mid = r.push(3, 1, dec(frags[2]));
  assert.ok(mid);
  assert.equal(mid.truncated, true);
  assert.deepEqual(mid.datagram, seg.subarray(0, 900));
  // A whole copy of the cut fragment arriving before the datagram completes fills its gap.
  const f = new FragmentReassembler();
  assert.equal(f.push(1, 1, cutDec(frags[1], 120)), null);
  assert.equal(f.push(2, 1, dec(frags[1])), null);
  assert.equal(f.push(3, 1, dec(frags[0])), null);
  const whole = f.push(4, 1, dec(frags[2]));
  assert.ok(whole);
  assert.equal(whole.truncated, false);
  assert.deepEqual(whole.datagram, seg);
  assert.deepEqual(whole.packets, [1, 2, 3, 4]);
});

test('a cut fragment claiming past the largest datagram is dropped, counted', () => {
  const r = new FragmentReassembler({ maxDatagramBytes: 1000 });
  const big = ipv4({ ...A, proto: 17, id: 12, more: true }, payload(1200, 8));
  assert.equal(r.push(1, 1, cutDec(big, 200)), null);
  assert.equal(r.counters.dropped, 1);
  assert.equal(r.pending, 0);
});
