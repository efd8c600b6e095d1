import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PCAP_RECORD_HEADER_LEN } from './pcap';
import { PcapRecordWalker } from './record-walker';
import { unevenCuts } from '../../test/support/cuts';

/** Records after a file header: lengths 0..300 (zero-length ones too), each record's bytes its index; [header bytes, data bytes] per record. */
function records(n: number, littleEndian: boolean): { bytes: Buffer; each: Buffer[] } {
  const each: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const len = (i * 37) % 301;
    const r = Buffer.alloc(PCAP_RECORD_HEADER_LEN + len, i & 0xff);
    const w = (v: number, at: number): number => (littleEndian ? r.writeUInt32LE(v, at) : r.writeUInt32BE(v, at));
    w(1_700_000_000 + i, 0);
    w(i, 4);
    w(len, 8);
    w(len + (i % 3), 12);
    each.push(r);
  }
  return { bytes: Buffer.concat(each), each };
}

/** Every record the walker hands on, copied, and whether each came from the chunk pushed. */
function walk(chunks: Buffer[], littleEndian: boolean, limit: number): { got: Buffer[]; inChunk: boolean[]; ok: boolean; boundary: boolean } {
  const w = new PcapRecordWalker(littleEndian, limit);
  const got: Buffer[] = [];
  const inChunk: boolean[] = [];
  let ok = true;
  for (const c of chunks) {
    ok = w.push(c, 0, (b, off, capLen, mine) => {
      got.push(Buffer.from(b.subarray(off, off + PCAP_RECORD_HEADER_LEN + capLen)));
      inChunk.push(mine);
      if (mine) assert.equal(b, c);
      return true;
    });
    if (!ok) break;
  }
  return { got, inChunk, ok, boundary: w.atRecordBoundary };
}

test('PcapRecordWalker hands on every record whole, however the stream is cut, in both byte orders', () => {
  for (const le of [true, false]) {
    const { bytes, each } = records(500, le);
    for (let seed = 1; seed <= 20; seed++) {
      const r = walk(unevenCuts(bytes, seed, 700), le, 262144);
      assert.equal(r.ok, true);
      assert.equal(r.boundary, true);
      assert.deepEqual(r.got, each);
      // Records that straddled a cut come from the walker's own buffer, the rest from the chunk.
      assert.ok(r.inChunk.includes(true) && r.inChunk.includes(false));
    }
  }
});

test('PcapRecordWalker: a torn last record is not handed on and leaves it mid-record', () => {
  const { bytes, each } = records(50, true);
  const r = walk(unevenCuts(bytes.subarray(0, bytes.length - 3), 7, 700), true, 262144);
  assert.equal(r.ok, true);
  assert.equal(r.boundary, false);
  assert.deepEqual(r.got, each.slice(0, -1));
});

test('PcapRecordWalker stops at a record header whose caplen passes the limit or its origlen, in the chunk or straddling', () => {
  for (const fault of ['limit', 'origlen'] as const) {
    const { each } = records(40, true);
    const bad = Buffer.from(each[20]);
    if (fault === 'limit') bad.writeUInt32LE(0xfffffff0, 8);
    else bad.writeUInt32LE(bad.readUInt32LE(8) - 1, 12);
    const bytes = Buffer.concat([...each.slice(0, 20), bad, ...each.slice(21)]);
    for (let seed = 1; seed <= 10; seed++) {
      const r = walk(unevenCuts(bytes, seed, 700), true, 1000);
      assert.equal(r.ok, false);
      assert.deepEqual(r.got, each.slice(0, 20));
    }
    // Stopped for good: nothing more is handed on.
    const w = new PcapRecordWalker(true, 1000);
    assert.equal(w.push(bytes, 0, () => true), false);
    assert.equal(w.push(each[0], 0, () => assert.fail('handed on after stopping')), false);
  }
});

test('PcapRecordWalker stops when the callback says so, and starts at the offset given', () => {
  const { bytes, each } = records(10, true);
  const w = new PcapRecordWalker(true, 262144);
  let n = 0;
  assert.equal(
    w.push(Buffer.concat([Buffer.alloc(24, 0xee), bytes]), 24, () => ++n < 3),
    false,
  );
  assert.equal(n, 3);
  assert.equal(each.length, 10);
});
