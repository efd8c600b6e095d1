import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { prng } from '../../test/support/packets';
import { RECORD_PREFIX_LEN } from './format';
import { MessageArena } from './message-arena';
import { indexAddon } from './native-scan';

const addon = indexAddon();
const noAddon = addon === null && 'index addon not built';

/** An arena of `sizes.length` records of those sizes (journal prefix + bytes), random or repetitive by turns. */
function arena(sizes: number[], seed: number): MessageArena {
  const rnd = prng(seed);
  const a = new MessageArena();
  sizes.forEach((n, i) => {
    const rec = Buffer.alloc(RECORD_PREFIX_LEN + n);
    rec.writeUInt32LE(n + 1, 0);
    for (let k = RECORD_PREFIX_LEN; k < rec.length; k++) rec[k] = i % 3 === 0 ? Math.floor(rnd() * 256) : 0x41 + (k % 17);
    a.addRecord(rec, 0, rec.length);
  });
  return a;
}

/** Dialogs as DialogKeys.dialogMessages gives them. */
function flat(dialogs: number[][]): [Uint32Array, Uint32Array] {
  const ends = new Uint32Array(dialogs.length);
  dialogs.forEach((ms, d) => (ends[d] = (d === 0 ? 0 : ends[d - 1]) + ms.length));
  return [Uint32Array.from(dialogs.flat()), ends];
}

/** The section's blocks, inflated, as the reader splits them (its table's offsets). */
function inflated(parts: Buffer[]): { dialogs: number; blocks: Buffer[] } {
  const body = Buffer.concat(parts);
  const n = body.readUInt32LE(4);
  const blocks: Buffer[] = [];
  for (let b = 0; b < n; b++) blocks.push(inflateRawSync(body.subarray(body.readUInt32LE(8 + 4 * b), body.readUInt32LE(12 + 4 * b))));
  assert.equal(body.readUInt32LE(8 + 4 * n), body.length);
  return { dialogs: body.readUInt32LE(0), blocks };
}

test('dialogSection: the addon assembles and deflates the same blocks as the JS path', { skip: noAddon }, () => {
  const rnd = prng(77);
  const cases: Array<{ sizes: number[]; dialogs: number[][]; perBlock: number }> = [];
  // No dialog; one; exactly two blocks; a last block short; empty dialogs; a record over the 4 MiB of room kept.
  cases.push({ sizes: [], dialogs: [], perBlock: 32 });
  cases.push({ sizes: [10], dialogs: [[0]], perBlock: 32 });
  const many = Array.from({ length: 3000 }, () => 1 + Math.floor(rnd() * 400));
  const spread = (count: number, dialogs: number) => {
    const out: number[][] = Array.from({ length: dialogs }, () => []);
    for (let i = 0; i < count; i++) out[Math.floor(rnd() * dialogs)].push(i);
    return out;
  };
  cases.push({ sizes: many, dialogs: spread(many.length, 64), perBlock: 32 });
  cases.push({ sizes: many, dialogs: spread(many.length, 700), perBlock: 32 });
  cases.push({ sizes: many, dialogs: spread(many.length, 5000), perBlock: 7 });
  cases.push({ sizes: [3, 5 << 20, 9, 0], dialogs: [[3, 0], [1], [], [2]], perBlock: 2 });
  const first: Buffer[] = [];
  cases.forEach(({ sizes, dialogs, perBlock }, c) => {
    const a = arena(sizes, c + 1);
    const native = a.dialogSection(...flat(dialogs), perBlock, addon);
    first.push(Buffer.concat(native));
    const js = a.dialogSection(...flat(dialogs), perBlock, null);
    const n = inflated(native);
    const j = inflated(js);
    assert.equal(n.dialogs, dialogs.length);
    assert.equal(n.blocks.length, Math.ceil(dialogs.length / perBlock));
    assert.equal(n.blocks.length, j.blocks.length);
    n.blocks.forEach((b, i) => assert.ok(b.equals(j.blocks[i]), `case ${c}, block ${i}`));
    // The first dialog of each block, read back: its count and its first record's length.
    n.blocks.forEach((b, i) => {
      const ms = dialogs[i * perBlock];
      assert.equal(b.readUInt32LE(0), ms.length);
      if (ms.length > 0) assert.equal(b.readUInt32LE(4), sizes[ms[0]]);
    });
    // zlib's build keeps node:zlib's bytes (what indexes sealed before libdeflate hold).
    if (addon!.deflateKind() === 'zlib') assert.ok(Buffer.concat(native).equals(Buffer.concat(js)), `case ${c}: zlib bytes`);
  });
  // A segment's sealed bytes do not depend on what its thread sealed before (an import's threads take any segment).
  cases.reverse().forEach(({ sizes, dialogs, perBlock }, r) => {
    const c = cases.length - 1 - r;
    assert.ok(Buffer.concat(arena(sizes, c + 1).dialogSection(...flat(dialogs), perBlock, addon)).equals(first[c]), `case ${c} sealed again, after others`);
  });
});

test('deflateDialogs: indexes outside the arena are refused, not read', { skip: noAddon }, () => {
  const chunk = new Uint8Array(100);
  const call = (o: { startOf?: number[]; lenOf?: number[]; chunkOf?: number[]; count?: number; order?: number[]; ends?: number[]; blockEnds?: number }) =>
    addon!.deflateDialogs(
      [chunk], Uint32Array.from(o.chunkOf ?? [0, 0]), Uint32Array.from(o.startOf ?? [0, 50]), Uint32Array.from(o.lenOf ?? [50, 50]),
      o.count ?? 2, RECORD_PREFIX_LEN, Uint32Array.from(o.order ?? [0, 1]), Uint32Array.from(o.ends ?? [1, 2]), 32, new Uint32Array(o.blockEnds ?? 1),
    );
  assert.ok(inflateRawSync(call({})).length === 4 + 4 + 45 + 4 + 4 + 45);
  assert.throws(() => call({ startOf: [0, 51] }), RangeError); // past its chunk's end
  assert.throws(() => call({ startOf: [0, 0xffffffff] }), RangeError);
  assert.throws(() => call({ lenOf: [50, 2] }), RangeError); // shorter than its prefix
  assert.throws(() => call({ chunkOf: [0, 1] }), RangeError);
  assert.throws(() => call({ order: [0, 2] }), RangeError); // past count
  assert.throws(() => call({ count: 3 }), RangeError); // past the arrays
  assert.throws(() => call({ ends: [2, 1] }), RangeError);
  assert.throws(() => call({ ends: [1, 3] }), RangeError); // past order
  assert.throws(() => call({ blockEnds: 2 }), RangeError);
  assert.throws(() => addon!.deflateDialogs('x' as unknown as Uint8Array[], new Uint32Array(0), new Uint32Array(0), new Uint32Array(0), 0, 0, new Uint32Array(0), new Uint32Array(0), 1, new Uint32Array(0)), TypeError);
});

test('deflateDialogs: built with libdeflate where setup installs it', { skip: noAddon || (!existsSync('/usr/include/libdeflate.h') && 'no libdeflate-dev here') }, () => {
  assert.equal(addon!.deflateKind(), 'libdeflate');
});
