import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ethernet, ETH_IPV4, ipv4, prng, sll, udp } from '../../test/support/packets';
import { LINKTYPE } from '../../shared/pcap/types';
import { DEDUP_INITIAL_ENTRIES, DEDUP_MAX_ENTRIES, DEDUP_RING_BYTES, dedupKey, HostDedup, networkBytes } from './dedup';

const T = 1_790_000_000;

function ip(i: number, size = 100): Buffer {
  const p = Buffer.alloc(size, i & 0xff);
  p.writeUInt32BE(i, 0);
  return ipv4({ src: '10.1.1.1', dst: '10.2.2.2', proto: 17 }, udp(1000, 2000, p));
}

test('HostDedup: the window bound is inclusive, across a second boundary and link types', () => {
  const d = new HostDedup(1000);
  assert.equal(d.isDuplicate(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, ip(1)), T, 999_999_500), false);
  assert.equal(d.isDuplicate(LINKTYPE.LINUX_SLL, sll(ETH_IPV4, ip(1)), T + 1, 500), true, '1000 ns later, over the second');
  assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(2), T + 1, 600), false);
  assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(2), T + 1, 1601), false, '1001 ns later: a packet of its own');
  // The second ip(2) is remembered too: a third copy right after it is a duplicate of it.
  assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(2), T + 1, 1602), true);
  // A copy that came earlier in time (an input gone backwards) still matches.
  assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(2), T + 1, 1000), true);
  assert.equal(d.forgotten, 0);
});

test('HostDedup: same length and hash-sampled bytes but a different middle is not a duplicate', () => {
  const d = new HostDedup(1_000_000);
  const a = ip(5, 1000);
  const b = Buffer.from(a);
  b[600] ^= 1; // outside the first 48 and last 8 bytes the hash looks at
  assert.equal(d.isDuplicate(LINKTYPE.RAW, a, T, 0), false);
  assert.equal(d.isDuplicate(LINKTYPE.RAW, b, T, 10), false);
  assert.equal(d.isDuplicate(LINKTYPE.RAW, Buffer.from(b), T, 20), true);
});

test('HostDedup: a packet one byte off anywhere is not a duplicate, whichever bytes the hash samples; an exact copy is, at any alignment', () => {
  const d = new HostDedup(1_000_000);
  const a = ip(7, 120);
  assert.equal(d.isDuplicate(LINKTYPE.RAW, a, T, 0), false);
  for (let i = 0; i < a.length; i++) {
    const b = Buffer.from(a);
    b[i] ^= 0x40;
    assert.equal(d.isDuplicate(LINKTYPE.RAW, b, T, 1 + i), false, `byte ${i} differs`);
  }
  // In a larger buffer at each offset mod 4, read through its DataView as the merge's fast path does.
  for (let shift = 0; shift < 4; shift++) {
    const buf = Buffer.alloc(a.length + 9, 0xee);
    a.copy(buf, shift + 3);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
    assert.equal(d.isDuplicateAt(LINKTYPE.RAW, buf, shift + 3, shift + 3 + a.length, T, 500 + shift, true, view), true, `at offset ${shift + 3}`);
  }
  assert.equal(d.forgotten, 0);
});

test('HostDedup: the packets of one RTP stream spread over the buckets (the bucket is the key\'s low bits)', () => {
  // One stream: the same addresses, ports, TTL and RTP flags, each packet its own sequence number, timestamp and payload.
  const keys = Array.from({ length: 512 }, (_, i) => {
    const rtp = Buffer.alloc(172, 0xd5);
    rtp[0] = 0x80;
    rtp[1] = 8;
    rtp.writeUInt16BE(i, 2);
    rtp.writeUInt32BE(i * 160, 4);
    rtp[171] = i & 0xff;
    return dedupKey(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, ipv4({ src: '10.1.1.1', dst: '10.2.2.2', proto: 17 }, udp(20000, 30000, rtp))));
  });
  for (const buckets of [DEDUP_INITIAL_ENTRIES, DEDUP_MAX_ENTRIES]) {
    const used = new Set(keys.map((k) => k & (buckets - 1))).size;
    // 512 keys drawn at random fill about 1 - e^(-512/buckets) of them: 32 of 32, or 480 of 4096.
    const expected = buckets * (1 - Math.exp(-keys.length / buckets));
    assert.ok(used >= 0.8 * expected, `${used} of ${buckets} buckets used, about ${Math.round(expected)} expected`);
  }
});

test('HostDedup: past its caps it forgets the oldest early and says so, and keeps working', () => {
  const d = new HostDedup(1_000_000_000);
  const n = DEDUP_MAX_ENTRIES + 100;
  for (let i = 0; i < n; i++) assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(i, 20), T, i), false);
  assert.equal(d.forgotten, 100);
  assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(n - 1, 20), T, n), true, 'recent ones still known');
  assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(0, 20), T, n), false, 'the first was forgotten');

  const big = new HostDedup(1_000_000_000);
  const size = Math.floor(DEDUP_RING_BYTES / 8);
  for (let i = 0; i < 20; i++) assert.equal(big.isDuplicate(LINKTYPE.RAW, ip(i, size), T, i), false);
  assert.ok(big.forgotten >= 12 && big.forgotten <= 14, `${big.forgotten} forgotten for want of bytes`);
  assert.equal(big.isDuplicate(LINKTYPE.RAW, ip(19, size), T, 30), true);
  const huge = Buffer.alloc(DEDUP_RING_BYTES, 7); // an undecodable link type: compared whole
  const before = big.forgotten;
  assert.equal(big.isDuplicate(999, huge, T, 40), false);
  assert.equal(big.isDuplicate(999, huge, T, 41), false, 'too big to remember: kept, and counted');
  assert.equal(big.forgotten, before + 2);
});

test('HostDedup: starts small and grows to its caps as a window fills, knowing every packet across each growth', () => {
  const d = new HostDedup(10_000);
  // A steady trickle first: entries leave the window, so the queue and its byte ring wrap before growing.
  for (let i = 0; i < 40; i++) {
    assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(i, 100), T, i * 1000), false);
    if (i > 0) assert.equal(d.isDuplicate(LINKTYPE.LINUX_SLL, sll(ETH_IPV4, ip(i - 1, 100)), T, i * 1000 + 1), true);
  }
  // Then a burst within one window: 3000 packets (about 180 KB) need the arrays and the ring at nearly their caps.
  const at = (i: number) => 50_000 + i;
  const n = 3000;
  for (let i = 0; i < n; i++) {
    assert.equal(d.isDuplicate(LINKTYPE.RAW, ip(1000 + i, 20 + (i % 50)), T, at(i)), false);
    // Now and then, a copy of an older one of the burst: remembered across every growth since.
    if (i % 97 === 0) {
      const j = Math.floor(i / 2);
      assert.equal(d.isDuplicate(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, ip(1000 + j, 20 + (j % 50))), T, at(i)), true, `packet ${j} at ${i}`);
    }
  }
  for (let i = 0; i < n; i += 7) assert.equal(d.isDuplicate(LINKTYPE.LINUX_SLL, sll(ETH_IPV4, ip(1000 + i, 20 + (i % 50))), T, at(n)), true, `packet ${i}`);
  assert.equal(d.forgotten, 0, 'below the caps nothing is forgotten');
  assert.ok(n < DEDUP_MAX_ENTRIES && n * 70 < DEDUP_RING_BYTES);
});

test('HostDedup: packets kept by reference (keep), hashed through a DataView, give the same answers as copied ones, across growth, detach and the caller reusing its buffer', () => {
  const copied = new HostDedup(20_000);
  const kept = new HostDedup(20_000);
  let buf = Buffer.alloc(0);
  let view = new DataView(new ArrayBuffer(0));
  let frames: Array<[number, number]> = [];
  // The caller's buffer of frames, as the merge's fast path holds them; detach() before it is overwritten.
  const refill = (from: number, n: number) => {
    kept.detach(buf);
    buf.fill(0xee);
    const parts = Array.from({ length: n }, (_, k) => ethernet(ETH_IPV4, ip(from + k, 20 + ((from + k) % 300))));
    frames = [];
    let o = 0;
    for (const p of parts) {
      frames.push([o, o + p.length]);
      o += p.length;
    }
    buf = Buffer.concat(parts);
    view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  };
  let t = 0;
  for (let round = 0; round < 40; round++) {
    refill(round * 50, 50 + (round % 7) * 40);
    for (const [a, b] of frames) {
      t += 150;
      const frame = buf.subarray(a, b);
      const want = copied.isDuplicate(LINKTYPE.ETHERNET, Buffer.from(frame), T, t);
      assert.equal(kept.isDuplicateAt(LINKTYPE.ETHERNET, buf, a, b, T, t, true, view), want);
      // A cooked copy of a packet a few back, as `any` saw it: found in both, referenced or detached
      // (and, hashed without the view, found by the hash made with it: they must agree).
      if ((a + round) % 5 === 0) {
        const j = Math.max(0, frames.findIndex(([x]) => x === a) - 3);
        const again = sll(ETH_IPV4, buf.subarray(frames[j][0] + 14, frames[j][1]));
        assert.equal(kept.isDuplicate(LINKTYPE.LINUX_SLL, again, T, t + 1), copied.isDuplicate(LINKTYPE.LINUX_SLL, again, T, t + 1));
      }
    }
  }
  assert.equal(kept.forgotten, copied.forgotten);
});

test('HostDedup answers as a plain list of what it remembers would, while slots and buckets are reused (chains are never unlinked), in copy and keep modes', () => {
  for (let seed = 1; seed <= 4; seed++) {
    const rnd = prng(seed * 4_099);
    const windowNs = 5_000;
    const copied = new HostDedup(windowNs);
    const kept = new HostDedup(windowNs);
    // The model: what was kept, in arrival order; the oldest leave while older than the window before the latest time.
    const model: Array<{ t: number; bytes: Buffer }> = [];
    let latest = -Infinity;
    // A few distinct packets, sent again and again: the same buckets, their slots evicted and reused all the time.
    const pool = Array.from({ length: 3 + seed * 5 }, (_, i) => ethernet(ETH_IPV4, ip(i, 20 + ((i * 37) % 200))));
    let ns = 0;
    let buf = Buffer.alloc(0);
    let dups = 0;
    for (let round = 0; round < 60; round++) {
      // The kept packets' bytes stay in the caller's buffer until it changes (as the merge's fast path holds them).
      kept.detach(buf);
      buf.fill(0xee);
      const frames = Array.from({ length: 20 + Math.floor(rnd() * 100) }, () => pool[Math.floor(rnd() * pool.length)]);
      buf = Buffer.concat(frames);
      const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
      let o = 0;
      for (const f of frames) {
        // Mostly forward, in steps around the window (a burst now and then fills it past the first sizes), sometimes back in time.
        const r = rnd();
        ns += r < 0.05 ? 40_000 : r < 0.3 ? 0 : Math.floor(rnd() * 1_500);
        const t = rnd() < 0.03 ? Math.max(0, ns - Math.floor(rnd() * 8_000)) : ns;
        const sec = T + Math.floor(t / 1e9);
        const nsec = t % 1e9;
        latest = Math.max(latest, t);
        while (model.length > 0 && latest - model[0].t > windowNs) model.shift();
        const bytes = networkBytes(LINKTYPE.ETHERNET, f);
        const want = model.some((m) => Math.abs(m.t - t) <= windowNs && m.bytes.equals(bytes));
        if (!want) model.push({ t, bytes: Buffer.from(bytes) });
        else dups++;
        assert.equal(copied.isDuplicate(LINKTYPE.ETHERNET, f, sec, nsec), want, `seed ${seed} round ${round} at ${t}`);
        assert.equal(kept.isDuplicateAt(LINKTYPE.ETHERNET, buf, o, o + f.length, sec, nsec, true, view), want, `seed ${seed} round ${round} at ${t}, kept`);
        o += f.length;
      }
    }
    assert.equal(copied.forgotten, 0);
    assert.equal(kept.forgotten, 0);
    assert.ok(dups > 500, `seed ${seed}: ${dups} duplicates`);
  }
});
