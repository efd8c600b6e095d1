import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, truncateSync, writeSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { ethernet, ipv4, udp, ETH_IPV4, sipInvite, sipResponse } from '../../test/support/packets';
import { SegmentIndexer } from './builder';
import { deflateRawSync } from 'node:zlib';
import { dialogBlockBound, FOOTER_FLAG, FOOTER_LEN, IndexCorruptError, INDEX_HEADER_LEN, MAX_DIALOG_BLOCK, MAX_DIALOG_BLOCK_CAP, messageHasNumber } from './format';
import { binaryRecord } from './message-binary';
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

test('a dialog block that inflates past the bound is a corrupt index, not memory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-index-'));
  try {
    const seg = segment(dir, 3);
    const idx = join(dir, 'seg.idx');
    const ix = new SegmentIndexer(seg, idx, { journal: false });
    ix.catchUp();
    ix.seal();
    const orig = readFileSync(idx);
    const footer = Buffer.from(orig.subarray(orig.length - FOOTER_LEN));
    const dialogsAt = footer.readDoubleLE(76);
    const real = SealedIndex.open(idx)!;
    const first = real.dialogsByCallId('c0@x')[0].msgs[0];
    real.close();
    // The same block, but its first dialog's message carries a reason phrase just past the bound: a
    // well-formed block (read whole it would be found), small deflated, that a reader must not inflate.
    const huge = binaryRecord({ ...first, r: 'x'.repeat(MAX_DIALOG_BLOCK) });
    const plain = Buffer.alloc(8 + huge.length);
    plain.writeUInt32LE(1, 0);
    plain.writeUInt32LE(huge.length, 4);
    huge.copy(plain, 8);
    const bomb = deflateRawSync(plain, { level: 9 });
    assert.ok(bomb.length < 1 << 20, 'the bomb is small on disk');
    const table = Buffer.alloc(8 + 4 * 2);
    table.writeUInt32LE(1, 0);
    table.writeUInt32LE(1, 4);
    table.writeUInt32LE(table.length, 8);
    table.writeUInt32LE(table.length + bomb.length, 12);
    const body = Buffer.concat([table, bomb]);
    // The dialog count stays 3 (one block); the flow table after the dialogs is dropped with its flag.
    footer.writeUInt32LE(body.length, 96);
    footer.writeUInt32LE(footer.readUInt32LE(100) & ~FOOTER_FLAG.FLOWS, 100);
    const file = Buffer.concat([orig.subarray(0, dialogsAt), body, footer]);
    const fd = openSync(idx, 'w');
    writeSync(fd, file);
    closeSync(fd);
    const s = SealedIndex.open(idx)!;
    try {
      // Without the bound the lookup reads the block whole and finds the dialog.
      assert.throws(() => s.dialogsByCallId('c0@x'), (e: unknown) => e instanceof IndexCorruptError && /inflates past/.test((e as Error).message));
    } finally {
      s.close();
    }
    // The bound follows the bytes the index covers: the same block in the index of a 32 MiB segment
    // (a flood of one Call-ID can put that much in one dialog) is read, not refused.
    assert.equal(dialogBlockBound(32 * 1024 * 1024), 128 * 1024 * 1024);
    assert.equal(dialogBlockBound(1e15), MAX_DIALOG_BLOCK_CAP, 'a corrupt footer cannot lift it past the cap');
    assert.equal(dialogBlockBound(Number.NaN), MAX_DIALOG_BLOCK);
    footer.writeDoubleLE(32 * 1024 * 1024, 8);
    const big = openSync(idx, 'w');
    writeSync(big, Buffer.concat([orig.subarray(0, dialogsAt), body, footer]));
    closeSync(big);
    const t = SealedIndex.open(idx)!;
    try {
      const found = t.dialogsByCallId('c0@x');
      assert.equal(found.length, 1);
      assert.equal(found[0].msgs[0].r?.length, MAX_DIALOG_BLOCK);
    } finally {
      t.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

test('a seal that fails on a full disk leaves no half-written sealed file; the journal still opens', { skip: isRoot ? false : 'needs root: mounts a small tmpfs to fill' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-index-full-'));
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  try {
    const seg = segment(mnt, 1500);
    const idx = join(mnt, 'seg.idx');
    const ix = new SegmentIndexer(seg, idx);
    ix.catchUp();
    // Fill what is left, so the sealed file's first writes fail.
    const fd = openSync(join(mnt, 'filler'), 'w');
    const block = Buffer.alloc(64 * 1024);
    try {
      for (let i = 0; i < 128; i++) writeSync(fd, block);
      assert.fail('the 4 MiB tmpfs did not fill');
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
    }
    // Down to the last bytes: a write of one byte at a time until it fails too.
    for (let i = 0; i < 1 << 16; i++) {
      try {
        writeSync(fd, block, 0, 1);
      } catch {
        break;
      }
    }
    closeSync(fd);
    assert.throws(() => ix.seal(), (e: NodeJS.ErrnoException) => e.code === 'ENOSPC');
    assert.deepEqual(readdirSync(mnt).filter((n) => n.includes('.seal-')), [], 'no half-written sealed file left');
    const replay = replayJournal(idx);
    assert.equal(replay.state.packetCount, 3000);
  } finally {
    execFileSync('umount', [mnt]);
    rmSync(dir, { recursive: true, force: true });
  }
});
