import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { prng } from '../../test/support/packets';
import { indexAddon } from './native-scan';

const addon = indexAddon();

/** Blocks of the kinds a seal meets (and a few it does not), in an order that grows and shrinks the output room. */
function blocks(): Buffer[] {
  const rnd = prng(1312);
  const noise = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const records = (n: number) => {
    const parts: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const id = Math.floor(rnd() * 1e9).toString(16);
      parts.push(Buffer.from(`INVITE sip:+1555${String(i % 9999).padStart(7, '0')}@10.0.0.${i % 250} ${id}@host\0`, 'latin1'), noise(1 + (i % 7)));
    }
    return Buffer.concat(parts);
  };
  return [
    Buffer.alloc(0),
    Buffer.from([7]),
    records(200),
    noise(70_000), // stored blocks: no compression helps
    Buffer.alloc(300_000, 0x41), // long matches
    records(60_000), // over the 4 MiB of room kept between blocks
    records(3),
    noise(5 << 20),
    records(500),
  ];
}

test('deflateBlock: raw deflate that node:zlib inflates to the block, whichever deflate the addon has', { skip: addon === null && 'index addon not built' }, () => {
  const a = addon!;
  for (const b of blocks()) {
    const z = a.deflateBlock(b);
    assert.ok(Buffer.isBuffer(z));
    assert.ok(inflateRawSync(z).equals(b), `block of ${b.length} bytes`);
    // zlib's build keeps deflateRawSync's bytes (indexes sealed before libdeflate are what it writes).
    if (a.deflateKind() === 'zlib') assert.ok(z.equals(deflateRawSync(b, { level: 1 })), `zlib bytes, block of ${b.length}`);
    // Level 1 of either still compresses what repeats.
    if (b.length >= 300_000 && b[0] === 0x41) assert.ok(z.length < b.length / 100);
  }
  assert.throws(() => a.deflateBlock('text' as unknown as Uint8Array), TypeError);
  assert.throws(() => a.deflateBlock(new Uint16Array(4) as unknown as Uint8Array), TypeError);
});

test('deflateBlock: built with libdeflate where setup installs it', { skip: (addon === null && 'index addon not built') || (!existsSync('/usr/include/libdeflate.h') && 'no libdeflate-dev here') }, () => {
  assert.equal(addon!.deflateKind(), 'libdeflate');
});
