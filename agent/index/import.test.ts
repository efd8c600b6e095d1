import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSipCapture } from '../../bench/common/sipgen';
import { PCAP_HEADER_LEN } from '../../shared/pcap/pcap';
import { INDEX_EXT, segmentBaseName } from '../ring/layout';
import { importCaptures, ImportOptions } from './import';
import { copyableRun } from './import-records';

/** The records of a little-endian PCAP file: [offset, size] each. */
function recordsOf(b: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let at = PCAP_HEADER_LEN; at + 16 <= b.length; at += 16 + b.readUInt32LE(at + 8)) out.push([at, 16 + b.readUInt32LE(at + 8)]);
  return out;
}

/** The same capture with big-endian headers (the record-by-record path only). */
function bigEndian(b: Buffer): Buffer {
  const c = Buffer.from(b);
  c.writeUInt32BE(b.readUInt32LE(0), 0);
  c.writeUInt16BE(b.readUInt16LE(4), 4);
  c.writeUInt16BE(b.readUInt16LE(6), 6);
  for (const at of [8, 12, 16, 20]) c.writeUInt32BE(b.readUInt32LE(at), at);
  for (const [at] of recordsOf(b)) for (let k = 0; k < 16; k += 4) c.writeUInt32BE(b.readUInt32LE(at + k), at + k);
  return c;
}

/**
 * Imports `files` every way: record by record and copied, each indexed in the importing thread and on two index
 * threads. Every segment and index file must be byte-identical, and the results (or the errors) the same.
 */
async function importBothWays(dir: string, name: string, files: string[], opts: ImportOptions = {}): Promise<{ packets: number; segments: number; tornBytes: number }> {
  const rings: Array<Record<string, Buffer>> = [];
  const results: unknown[] = [];
  for (const [copyVerbatim, indexThreads] of [[false, 0], [true, 0], [true, 2], [false, 2]] as const) {
    const ring = join(dir, `${name}-${copyVerbatim}-${indexThreads}`);
    let res: unknown;
    try {
      const r = await importCaptures(ring, files, { ...opts, copyVerbatim, indexThreads });
      res = { ...r, segments: r.segments.map((s) => s.slice(ring.length)) };
    } catch (e) {
      res = { error: (e as Error).message.split(ring).join('RING') };
    }
    results.push(res);
    const contents: Record<string, Buffer> = {};
    for (const f of readdirSync(ring).sort()) if (!f.startsWith('.') && !f.endsWith('.lock')) contents[f] = readFileSync(join(ring, f));
    rings.push(contents);
  }
  const failed = 'error' in (results[0] as object);
  for (let i = 1; i < rings.length; i++) {
    assert.deepEqual(results[i], results[0], `${name} (way ${i}): the same result`);
    assert.deepEqual(Object.keys(rings[i]), Object.keys(rings[0]), `${name} (way ${i}): the same files`);
    for (const f of Object.keys(rings[0])) {
      // A failed import leaves its last segment unsealed (no index) with what was written of it: the writer's
      // buffer is not flushed on an error, so the record-by-record path's is a prefix of the copy's.
      const unsealed = failed && f.endsWith('.pcap') && !rings[0][f.replace(/\.pcap$/, '.idx')];
      if (unsealed) assert.ok(rings[i][f].subarray(0, rings[0][f].length).equals(rings[0][f]), `${name} (way ${i}): ${f} (unsealed) starts the same`);
      else assert.ok(rings[0][f].equals(rings[i][f]), `${name} (way ${i}): ${f} byte-identical`);
    }
  }
  const r = results[0] as { packets?: number; segments?: string[]; tornBytes?: number };
  return { packets: r.packets ?? -1, segments: r.segments?.length ?? -1, tornBytes: r.tornBytes ?? -1 };
}

test('ring import: the verbatim copy and the record-by-record path write the same segments and indexes, whatever the files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-import-'));
  try {
    const gen = generateSipCapture({ outDir: dir, totalBytes: 3 * 2 ** 20, fileBytes: 2 * 2 ** 20, seed: 4242, rtp: { share: 0.3, seconds: 1 } });
    assert.ok(gen.files.length >= 2);
    const a = readFileSync(gen.files[0]);
    const recs = recordsOf(a);
    const write = (n: string, b: Buffer) => {
      const p = join(dir, n);
      writeFileSync(p, b);
      return p;
    };
    // Several files into one ring, segments rotated small (mid-file, mid-chunk).
    const plain = await importBothWays(dir, 'plain', gen.files, { maxSegmentBytes: 700_000 });
    assert.ok(plain.packets > 1000 && plain.segments >= 4, JSON.stringify(plain));
    // Segments of several read chunks (a thread copies many runs into each).
    const big = await importBothWays(dir, 'big', [...gen.files, ...gen.files], { maxSegmentBytes: 2_600_000 });
    assert.ok(big.segments >= 2, JSON.stringify(big));
    // A torn last record.
    const torn = await importBothWays(dir, 'torn', [write('torn.pcap', a.subarray(0, a.length - 7))]);
    assert.ok(torn.tornBytes > 0);
    // Microsecond resolution; one sub-second field of a second or more (carried: that record is rewritten, the copy steps aside there).
    const micro = Buffer.from(a);
    micro.writeUInt32LE(0xa1b2c3d4, 0);
    for (const [at] of recs) micro.writeUInt32LE(micro.readUInt32LE(at + 4) % 1_000_000, at + 4);
    await importBothWays(dir, 'micro', [write('micro.pcap', micro)]);
    const carried = Buffer.from(micro);
    carried.writeUInt32LE(2_500_000, recs[Math.floor(recs.length / 2)][0] + 4);
    const c = await importBothWays(dir, 'carried', [write('carried.pcap', carried), gen.files[1]]);
    assert.equal(c.packets, recs.length + recordsOf(readFileSync(gen.files[1])).length);
    // Big-endian headers: record by record only.
    await importBothWays(dir, 'big-endian', [write('be.pcap', bigEndian(a))]);
    // A corrupt record header two thirds in: the same error, the same segments up to it.
    const bad = Buffer.from(a);
    bad.writeUInt32LE(0x7fffffff, recs[Math.floor((2 * recs.length) / 3)][0] + 8);
    const e = await importBothWays(dir, 'corrupt', [gen.files[1], write('bad.pcap', bad)]);
    assert.equal(e.packets, -1, 'a corrupt record is an error');
    // A record longer than the segments' snap length (the record-by-record path refuses it), and one cut by its own.
    const long = Buffer.alloc(PCAP_HEADER_LEN + 16 + 300_000);
    a.copy(long, 0, 0, PCAP_HEADER_LEN);
    long.writeUInt32LE(400_000, 16);
    long.writeUInt32LE(1_795_000_000, PCAP_HEADER_LEN);
    long.writeUInt32LE(300_000, PCAP_HEADER_LEN + 8);
    long.writeUInt32LE(300_000, PCAP_HEADER_LEN + 12);
    await importBothWays(dir, 'long', [gen.files[0], write('long.pcap', long)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ring import: an index thread takes a run it copies only when its source still holds whole copyable records there', () => {
  const run = Buffer.alloc(2 * 16 + 100 + 60);
  run.writeUInt32LE(999_999, 4);
  run.writeUInt32LE(100, 8);
  run.writeUInt32LE(100, 12);
  run.writeUInt32LE(60, 116 + 8);
  run.writeUInt32LE(1500, 116 + 12);
  assert.ok(copyableRun(run, run.length, 262144, 1_000_000));
  assert.ok(!copyableRun(run, run.length - 1, 262144, 1_000_000), 'a record cut');
  assert.ok(!copyableRun(run, run.length, 262144, 999_999), 'a sub-second field of a second');
  assert.ok(!copyableRun(run, run.length, 99, 1_000_000), 'longer than the snap length');
  const grown = Buffer.from(run);
  grown.writeUInt32LE(101, 8);
  assert.ok(!copyableRun(grown, grown.length, 262144, 1_000_000), 'longer than its original length, and no longer ending where the run does');
});

test('ring import: an index that cannot be written fails the import with a code, the file named and what to do, on an index thread or not, and later segments are not left waiting', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-import-'));
  try {
    const gen = generateSipCapture({ outDir: dir, totalBytes: 3 * 2 ** 20, fileBytes: 3 * 2 ** 20, seed: 77 });
    const a = readFileSync(gen.files[0]);
    for (const [indexThreads, said] of [
      [2, /^ring import: cannot write or index ring segment .*import-.*\.pcap: .*EISDIR.*; a directory is in the way of a ring file: remove it$/],
      [0, /^ring import: cannot write ring .*: EISDIR.*import-.*\.idx\.seal-.*; a directory is in the way of a ring file: remove it$/],
    ] as const) {
      const ring = join(dir, `ring-${indexThreads}`);
      // The first segment's sealed index is written to a file beside it and renamed; a directory there fails the open.
      const micros = a.readUInt32LE(PCAP_HEADER_LEN) * 1_000_000 + Math.floor(a.readUInt32LE(PCAP_HEADER_LEN + 4) / 1000);
      const first = join(ring, segmentBaseName('import', micros) + INDEX_EXT);
      mkdirSync(`${first}.seal-${process.pid}`, { recursive: true });
      await assert.rejects(importCaptures(ring, gen.files, { maxSegmentBytes: 700_000, indexThreads }), (e: Error & { code?: string }) => {
        assert.match(e.message, said);
        assert.equal(e.code, 'TF_FAILED');
        return true;
      });
      // The ring is unlocked again: a second import runs (its segments take the next free names).
      const again = await importCaptures(ring, gen.files, { maxSegmentBytes: 700_000, indexThreads });
      assert.ok(again.packets > 0 && again.segments.length >= 4);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
