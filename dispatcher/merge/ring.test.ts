import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../test/support/packets';
import { ByteRing, ringPlace, type RingItem } from './ring';

interface Item extends RingItem {
  id: number;
}

test('ByteRing: live allocations never overlap or change, whatever the order of frees', () => {
  const rnd = prng(7);
  const ring = new ByteRing<Item>(10_000);
  const live: Item[] = [];
  let failures = 0;
  for (let step = 0; step < 50_000; step++) {
    if (live.length > 0 && rnd() < 0.45) {
      // Mostly the oldest (as a time-ordered read-ahead frees), sometimes any.
      const i = rnd() < 0.7 ? 0 : Math.floor(rnd() * live.length);
      const [it] = live.splice(i, 1);
      assert.ok(ring.view(it).every((b) => b === (it.id & 0xff)), `item ${it.id} was overwritten`);
      ring.free(it);
      assert.equal(it.off, -1);
      continue;
    }
    const it: Item = { id: step, off: -1, len: rnd() < 0.05 ? 0 : 1 + Math.floor(rnd() * 1500), freed: false };
    if (!ring.alloc(it)) {
      failures++;
      // Full: the caller frees the oldest, as the merge does.
      const old = ring.oldest()!;
      live.splice(live.indexOf(old), 1);
      ring.free(old);
      continue;
    }
    assert.ok(it.off >= 0 && it.off + it.len <= 10_000);
    ring.view(it).fill(it.id & 0xff);
    live.push(it);
  }
  assert.ok(failures > 100, 'the ring filled up now and then');
  for (const it of live) assert.ok(ring.view(it).every((b) => b === (it.id & 0xff)));
});

test('ringPlace: empty, end, wrap, full', () => {
  assert.equal(ringPlace(100, 0, -1, 100), 0);
  assert.equal(ringPlace(100, 0, -1, 101), -1);
  assert.equal(ringPlace(100, 60, 10, 40), 60);
  assert.equal(ringPlace(100, 60, 10, 41), -1, 'would wrap onto the tail');
  assert.equal(ringPlace(100, 60, 50, 41), 0);
  assert.equal(ringPlace(100, 20, 50, 29), 20);
  assert.equal(ringPlace(100, 20, 50, 30), -1, 'would fill the gap and look empty');
  assert.equal(ringPlace(100, 20, 50, 0), 20);
});

test('ByteRing: grows by doubling up to its max; allocations it lets go of keep their bytes in the old buffer', () => {
  const rnd = prng(11);
  type Held = Item & { data: Buffer };
  const ring = new ByteRing<Held>(64, 8192);
  assert.equal(ring.buf.length, 64);
  const live: Held[] = [];
  const sizes = new Set<number>();
  let detached = 0;
  for (let step = 0; step < 20_000; step++) {
    if (live.length > 0 && rnd() < 0.45) {
      const [it] = live.splice(rnd() < 0.7 ? 0 : Math.floor(rnd() * live.length), 1);
      assert.ok(it.data.every((b) => b === (it.id & 0xff)), `item ${it.id} was overwritten`);
      // What the merge does: only allocations still in the ring are given back.
      if (it.off >= 0) ring.free(it);
      else detached++;
      continue;
    }
    const it: Held = { id: step, off: -1, len: 1 + Math.floor(rnd() * 700), freed: false, data: Buffer.alloc(0) };
    if (!ring.alloc(it)) {
      assert.equal(ring.buf.length, 8192, 'fails only at its max');
      const old = ring.oldest()!;
      live.splice(live.indexOf(old), 1);
      ring.free(old);
      continue;
    }
    sizes.add(ring.buf.length);
    it.data = ring.view(it);
    it.data.fill(it.id & 0xff);
    live.push(it);
  }
  for (const n of sizes) assert.ok(n <= 8192 && Number.isInteger(Math.log2(n / 64)), `size ${n} is 64 doubled`);
  assert.ok(sizes.has(8192), 'reached its max');
  assert.ok(detached > 0, 'growing let some live allocations go');
  for (const it of live) assert.ok(it.data.every((b) => b === (it.id & 0xff)));
  const tooBig: Held = { id: -1, off: -1, len: 8193, freed: false, data: Buffer.alloc(0) };
  assert.equal(ring.alloc(tooBig), false);
  assert.equal(tooBig.off, -1);
  assert.throws(() => new ByteRing<Item>(100, 50), RangeError);
});
