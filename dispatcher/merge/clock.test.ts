import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClockSampler, CLOCK_MAX_SAMPLES, pairEstimate } from './clock';
import { ETH_IPV4, ethernet, ipv4, udp } from '../../test/support/packets';
import { LINKTYPE } from '../../shared/pcap/types';

const T0 = 1_795_400_000;

/** A UDP packet between two addresses, numbered so every one has bytes of its own. */
function frame(src: string, dst: string, n: number, ttl = 64): Buffer {
  const p = Buffer.alloc(40);
  p.writeUInt32BE(n, 0);
  return ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17, id: n & 0xffff, ttl }, udp(4000, 4001, p)));
}

/** Feeds `host` the packet at T0 + ns. */
function see(c: ClockSampler, host: string, f: Buffer, ns: number): void {
  c.observe(host, LINKTYPE.ETHERNET, f, T0 + Math.floor(ns / 1e9), ns % 1e9);
}

test('pairEstimate: one way gives the median difference; both ways cancel a symmetric path delay; the spread is the IQR around each direction', () => {
  const one = pairEstimate(new Map([['1>2', [5, 1, 3, 2, 4]]]))!;
  assert.deepEqual([one.offsetNs, one.samples, one.twoWay], [3, 5, false]);
  assert.equal(one.spreadNs, 2);
  // Offset 1000, path 100 each way: +1100 one way, +900 the other.
  const two = pairEstimate(new Map([['1>2', [1100, 1101, 1099]], ['2>1', [900, 901, 899]]]))!;
  assert.deepEqual([two.offsetNs, two.samples, two.twoWay], [1000, 6, true]);
  assert.equal(pairEstimate(new Map()), null);
});

test('ClockSampler: three hosts in a chain (a sees b, b sees c, a never sees c) each placed against the reference; a router between them is no obstacle', () => {
  const c = new ClockSampler();
  // b is 5 ms ahead of a, c 2 ms behind a; paths take 0.2 ms both ways.
  const off = { a: 0, b: 5_000_000, c: -2_000_000 };
  const path = 200_000;
  let n = 0;
  for (let i = 0; i < 50; i++) {
    const t = i * 20_000_000;
    const ab = frame('192.0.2.1', '192.0.2.2', n++);
    see(c, 'a', ab, t + off.a);
    see(c, 'b', ab, t + path + off.b);
    const ba = frame('192.0.2.2', '192.0.2.1', n++);
    see(c, 'b', ba, t + 1000 + off.b);
    see(c, 'a', ba, t + 1000 + path + off.a);
    // b to c crosses a router: TTL (and so the header checksum) differ between the two captures.
    see(c, 'b', frame('192.0.2.2', '198.51.100.3', n, 64), t + 2000 + off.b);
    see(c, 'c', frame('192.0.2.2', '198.51.100.3', n++, 63), t + 2000 + path + off.c);
    see(c, 'c', frame('198.51.100.3', '192.0.2.2', n, 64), t + 3000 + off.c);
    see(c, 'b', frame('198.51.100.3', '192.0.2.2', n++, 63), t + 3000 + path + off.b);
  }
  // d shares nothing with anyone.
  see(c, 'd', frame('203.0.113.1', '203.0.113.2', n++), 0);
  const r = c.estimate(['a', 'b', 'c', 'd', 'e'])!;
  // b shares packets with both a and c: it is the reference.
  assert.equal(r.reference, 'b');
  const by = Object.fromEntries(r.hosts.map((h) => [h.host, h]));
  assert.deepEqual(Object.keys(by), ['a', 'b', 'c', 'd', 'e']);
  assert.equal(by.b.offsetMs, 0);
  assert.ok(Math.abs(by.a.offsetMs! - -5) < 1e-9, `a: ${by.a.offsetMs}`);
  assert.ok(Math.abs(by.c.offsetMs! - -7) < 1e-9, `c: ${by.c.offsetMs}`);
  assert.deepEqual([by.a.samples, by.a.against, by.a.twoWay], [100, 'b', true]);
  assert.deepEqual([by.c.samples, by.c.against], [100, 'b']);
  for (const h of ['d', 'e']) assert.deepEqual([by[h].offsetMs, by[h].samples, by[h].against], [null, 0, null]);
});

test('ClockSampler: bytes a host saw twice are no use for timing; no common packet gives null', () => {
  const c = new ClockSampler();
  const f = frame('192.0.2.1', '192.0.2.2', 1);
  see(c, 'a', f, 0);
  see(c, 'a', f, 500_000_000);
  see(c, 'b', f, 1_000_000);
  assert.equal(c.estimate(['a', 'b']), null);
});

test('ClockSampler: past CLOCK_MAX_SAMPLES a host keeps a hash-chosen part, the same on every host, and the estimate stands', () => {
  const c = new ClockSampler();
  const n = CLOCK_MAX_SAMPLES + 5000;
  for (let i = 0; i < n; i++) {
    const f = frame('192.0.2.1', '192.0.2.2', i);
    see(c, 'a', f, i * 10_000);
    see(c, 'b', f, i * 10_000 + 3_000_000);
  }
  const r = c.estimate(['a', 'b'])!;
  const b = r.hosts.find((h) => h.host === 'b')!;
  assert.ok(b.samples <= CLOCK_MAX_SAMPLES && b.samples > CLOCK_MAX_SAMPLES / 4, `samples ${b.samples}`);
  assert.equal(b.offsetMs, 3);
});
