import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng } from '../../test/support/packets';
import { FifoArena, arenaPlace, type ArenaItem } from './fifo-arena';

interface Item extends ArenaItem {
  id: number;
}

test('FifoArena: live allocations never overlap or change, whatever the order of frees', () => {
  const rnd = prng(7);
  const arena = new FifoArena<Item>(10_000);
  const live: Item[] = [];
  let failures = 0;
  for (let step = 0; step < 50_000; step++) {
    if (live.length > 0 && rnd() < 0.45) {
      // Mostly the oldest (as a time-ordered read-ahead frees), sometimes any.
      const i = rnd() < 0.7 ? 0 : Math.floor(rnd() * live.length);
      const [it] = live.splice(i, 1);
      assert.ok(arena.view(it).every((b) => b === (it.id & 0xff)), `item ${it.id} was overwritten`);
      arena.free(it);
      assert.equal(it.off, -1);
      continue;
    }
    const it: Item = { id: step, off: -1, len: rnd() < 0.05 ? 0 : 1 + Math.floor(rnd() * 1500), freed: false };
    if (!arena.alloc(it)) {
      failures++;
      // Full: the caller frees the oldest, as the merge does.
      const old = arena.oldest()!;
      live.splice(live.indexOf(old), 1);
      arena.free(old);
      continue;
    }
    assert.ok(it.off >= 0 && it.off + it.len <= 10_000);
    arena.view(it).fill(it.id & 0xff);
    live.push(it);
  }
  assert.ok(failures > 100, 'the arena filled up now and then');
  for (const it of live) assert.ok(arena.view(it).every((b) => b === (it.id & 0xff)));
});

test('arenaPlace: empty, end, wrap, full', () => {
  assert.equal(arenaPlace(100, 0, -1, 100), 0);
  assert.equal(arenaPlace(100, 0, -1, 101), -1);
  assert.equal(arenaPlace(100, 60, 10, 40), 60);
  assert.equal(arenaPlace(100, 60, 10, 41), -1, 'would wrap onto the tail');
  assert.equal(arenaPlace(100, 60, 50, 41), 0);
  assert.equal(arenaPlace(100, 20, 50, 29), 20);
  assert.equal(arenaPlace(100, 20, 50, 30), -1, 'would fill the gap and look empty');
  assert.equal(arenaPlace(100, 20, 50, 0), 20);
});

test('FifoArena: grows by doubling up to its max; allocations it lets go of keep their bytes in the old buffer', () => {
  const rnd = prng(11);
  type Held = Item & { data: Buffer };
  const arena = new FifoArena<Held>(64, 8192);
  assert.equal(arena.buf.length, 64);
  const live: Held[] = [];
  const sizes = new Set<number>();
  let detached = 0;
  for (let step = 0; step < 20_000; step++) {
    if (live.length > 0 && rnd() < 0.45) {
      const [it] = live.splice(rnd() < 0.7 ? 0 : Math.floor(rnd() * live.length), 1);
      assert.ok(it.data.every((b) => b === (it.id & 0xff)), `item ${it.id} was overwritten`);
      // What the merge does: only allocations still in the arena are given back.
      if (it.off >= 0) arena.free(it);
      else detached++;
      continue;
    }
    const it: Held = { id: step, off: -1, len: 1 + Math.floor(rnd() * 700), freed: false, data: Buffer.alloc(0) };
    if (!arena.alloc(it)) {
      assert.equal(arena.buf.length, 8192, 'fails only at its max');
      const old = arena.oldest()!;
      live.splice(live.indexOf(old), 1);
      arena.free(old);
      continue;
    }
    sizes.add(arena.buf.length);
    it.data = arena.view(it);
    it.data.fill(it.id & 0xff);
    live.push(it);
  }
  for (const n of sizes) assert.ok(n <= 8192 && Number.isInteger(Math.log2(n / 64)), `size ${n} is 64 doubled`);
  assert.ok(sizes.has(8192), 'reached its max');
  assert.ok(detached > 0, 'growing let some live allocations go');
  for (const it of live) assert.ok(it.data.every((b) => b === (it.id & 0xff)));
  const tooBig: Held = { id: -1, off: -1, len: 8193, freed: false, data: Buffer.alloc(0) };
  assert.equal(arena.alloc(tooBig), false);
  assert.equal(tooBig.off, -1);
  assert.throws(() => new FifoArena<Item>(100, 50), RangeError);
});
