import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { ethernet, ipv4, udp, ETH_IPV4, sipInvite, sipResponse } from '../../test/support/packets';
import { SegmentIndexer } from './builder';
import { IndexCorruptError, INDEX_HEADER_LEN, messageHasNumber } from './format';
import { SealedIndex, replayJournal } from './reader';

function segment(dir: string, calls: number): string {
  const path = join(dir, 'seg.pcap');
  const fd = openSync(path, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true });
  for (let i = 0; i < calls; i++) {
    for (const [k, msg] of [sipInvite(`c${i}@x`), sipResponse(200, 'OK', `c${i}@x`)].entries()) {
      const f = ethernet(ETH_IPV4, ipv4({ src: '192.0.2.1', dst: '192.0.2.2', proto: 17 }, udp(5060, 5060, msg)));
      w.write({ tsSec: 1_795_000_000 + i, tsNsec: k, origLen: f.length, data: f });
    }
  }
  w.flush();
  closeSync(fd);
  return path;
}

test('a journal replays up to its last checkpoint; a torn tail is ignored, garbage is corruption', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-index-'));
  try {
    const seg = segment(dir, 20);
    const idx = join(dir, 'seg.idx');
    const ix = new SegmentIndexer(seg, idx);
    ix.catchUp();
    ix.close();
    const full = replayJournal(idx);
    assert.equal(full.state.packetCount, 40);
    assert.equal(full.state.messages.count, 40);
    assert.equal(full.state.indexedBytes, statSync(seg).size);

    // Cut inside the last record (the checkpoint): the batch before it is not committed.
    truncateSync(idx, statSync(idx).size - 3);
    const torn = replayJournal(idx);
    assert.ok(torn.state.packetCount <= 40);
    assert.equal(torn.state.dialogs().every((d) => d.msgs.every((m) => m.p.every((p) => p < torn.state.packetCount))), true);

    // A record type no writer produces, right after the header: corrupt.
    const fd = openSync(idx, 'r+');
    writeSync(fd, Buffer.from([0x7f]), 0, 1, INDEX_HEADER_LEN + 4);
    closeSync(fd);
    assert.throws(() => replayJournal(idx), IndexCorruptError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a sealed index finds dialogs by Call-ID and number with its lookup tables, and a lying footer is caught', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-index-'));
  try {
    const seg = segment(dir, 100);
    const idx = join(dir, 'seg.idx');
    const ix = new SegmentIndexer(seg, idx, { journal: false });
    ix.catchUp();
    ix.seal();
    const s = SealedIndex.open(idx)!;
    assert.ok(s, 'sealed');
    assert.equal(s.packetCount, 200);
    assert.equal(s.dialogCount, 100);
    const d = s.dialogsByCallId('c57@x');
    assert.equal(d.length, 1);
    assert.deepEqual(d[0].msgs.map((m) => m.m ?? m.s), ['INVITE', 200]);
    assert.equal(s.dialogsByCallId('c570@x').length, 0);
    assert.equal(s.dialogsByNumber('1234567').length, 100);
    assert.equal(s.dialogsByNumber('9234567').length, 0);
    s.close();
    // Point the footer's packet table past the end of the file.
    const buf = readFileSync(idx);
    const fd = openSync(idx, 'r+');
    const at = buf.length - 128 + 44;
    const b = Buffer.alloc(8);
    b.writeDoubleLE(buf.length * 2, 0);
    writeSync(fd, b, 0, 8, at);
    closeSync(fd);
    assert.throws(() => SealedIndex.open(idx), /footer points outside/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a sealed index with more keys than one read window finds every Call-ID, and entries read in runs are the table\'s', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-index-'));
  try {
    const calls = 3000;
    const seg = segment(dir, calls);
    const idx = join(dir, 'seg.idx');
    const ix = new SegmentIndexer(seg, idx, { journal: false });
    ix.catchUp();
    ix.seal();
    const s = SealedIndex.open(idx)!;
    for (let i = 0; i < calls; i++) assert.equal(s.dialogsByCallId(`c${i}@x`).length, 1, `c${i}@x`);
    assert.equal(s.dialogsByCallId(`c${calls}@x`).length, 0);
    // Two clusters far apart: read as two runs, not the whole table.
    const ords = Uint32Array.from([10, 11, 15, 19, 4000, 4002, 4010]);
    const part = Buffer.from(s.packetEntries(ords));
    const table = s.packetTable();
    ords.forEach((o, k) => assert.deepEqual(part.subarray(k * 28, (k + 1) * 28), table.subarray(o * 28, (o + 1) * 28), `entry ${o}`));
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the number table is binary-searched a page at a time as a scan of the dialogs finds; chunks and dense entries are the table\'s', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-index-'));
  try {
    // 5000 calls, each with a number of its own (P-Asserted-Identity), some sharing their last digits: a number
    // table of many 4 KiB pages, and 10,000 packets, more than one chunk.
    const calls = 5000;
    const path = join(dir, 'seg.pcap');
    const fd = openSync(path, 'w');
    const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true });
    const pai = (i: number) => `+1666${String((i * 7919) % 100_000).padStart(5, '0')}`;
    for (let i = 0; i < calls; i++) {
      for (const [k, msg] of [sipInvite(`c${i}@x`, `P-Asserted-Identity: <sip:${pai(i)}@example.com>\r\n`), sipResponse(200, 'OK', `c${i}@x`)].entries()) {
        const f = ethernet(ETH_IPV4, ipv4({ src: '192.0.2.1', dst: '192.0.2.2', proto: 17 }, udp(5060, 5060, msg)));
        w.write({ tsSec: 1_795_000_000 + i, tsNsec: k, origLen: f.length, data: f });
      }
    }
    w.flush();
    closeSync(fd);
    const idx = join(dir, 'seg.idx');
    const ix = new SegmentIndexer(path, idx, { journal: false });
    ix.catchUp();
    ix.seal();
    const s = SealedIndex.open(idx)!;
    const all = s.allDialogs();
    for (const digits of ['166600000', pai(1).slice(1), pai(4321).slice(-4), pai(4999).slice(-3), '5551234567', '9', '99999999', '0']) {
      const want = all.filter((d) => d.msgs.some((m) => messageHasNumber(m, digits))).map((d) => d.c).sort();
      assert.deepEqual(s.dialogsByNumber(digits).map((d) => d.c).sort(), want, digits);
    }
    assert.ok(s.dialogsByNumber(pai(4321).slice(-4)).length > 0);
    const table = Buffer.from(s.packetTable());
    s.releasePacketTable();
    // Copied as they come: a chunk's buffer is the next one's.
    const chunks: Buffer[] = [];
    for (const c of s.packetChunks()) chunks.push(Buffer.from(c.entries.subarray(0, c.count * 28)));
    assert.ok(chunks.length > 1);
    assert.deepEqual(Buffer.concat(chunks), table);
    // Dense: read as a span, chunk by chunk; into a buffer given.
    const ords = Uint32Array.from({ length: 4990 }, (_, k) => 2 * k + 1);
    const into = Buffer.alloc(ords.length * 28 + 5);
    const got = s.packetEntries(ords, into);
    assert.equal(got.buffer, into.buffer);
    ords.forEach((o, k) => assert.deepEqual(got.subarray(k * 28, (k + 1) * 28), table.subarray(o * 28, (o + 1) * 28), `entry ${o}`));
    assert.throws(() => s.packetEntries(ords, Buffer.alloc(28)), RangeError);
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
