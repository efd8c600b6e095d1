import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parsePcapHeader } from '../../shared/pcap/pcap';
import { listSegments, parseSegmentName, segmentBaseName } from './layout';
import { MIN_SEGMENT_BYTES, SegmentWriter, type SegmentEvent } from './writer';

const T0 = Date.UTC(2024, 4, 1, 12, 0, 0) * 1000;

/** Ethernet + IPv4 + UDP frame around payload, so tshark can dissect the ports. */
function udpFrame(src: number, dst: number, payload: Buffer): Buffer {
  const f = Buffer.alloc(14 + 20 + 8 + payload.length);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(20 + 8 + payload.length, 16);
  f[22] = 64;
  f[23] = 17;
  f.writeUInt32BE(0x7f000001, 26);
  f.writeUInt32BE(0x7f000001, 30);
  f.writeUInt16BE(src, 34);
  f.writeUInt16BE(dst, 36);
  f.writeUInt16BE(8 + payload.length, 38);
  payload.copy(f, 42);
  return f;
}

/** A batch of PCAP records, seq i carrying "seq=i" and nanosecond ts i. */
function batch(from: number, count: number, payloadBytes: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = from; i < from + count; i++) {
    const p = Buffer.alloc(payloadBytes, 0x2e);
    p.write(`seq=${i};`);
    const frame = udpFrame(40000, 5060, p);
    const h = Buffer.alloc(16);
    h.writeUInt32LE(1714564800 + Math.floor(i / 1000), 0);
    h.writeUInt32LE((i % 1000) * 1_000_000 + 123, 4);
    h.writeUInt32LE(frame.length, 8);
    h.writeUInt32LE(frame.length, 12);
    parts.push(h, frame);
  }
  return Buffer.concat(parts);
}

function tsharkSeqs(file: string): { status: number | null; seqs: number[]; times: string[] } {
  const r = spawnSync('tshark', ['-n', '-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'udp.dstport', '-e', 'udp.payload'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  const seqs: number[] = [];
  const times: string[] = [];
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const [t, port, hex] = line.split('\t');
    assert.equal(port, '5060');
    const m = /^seq=(\d+);/.exec(Buffer.from(hex, 'hex').toString('latin1'));
    assert.ok(m, `payload of ${file} not recognised: ${hex.slice(0, 40)}`);
    seqs.push(Number(m[1]));
    times.push(t);
  }
  return { status: r.status, seqs, times };
}

function withRing(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'tf-writer-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function writer(dir: string, extra: Partial<ConstructorParameters<typeof SegmentWriter>[0]> = {}) {
  const opened: SegmentEvent[] = [];
  const closed: SegmentEvent[] = [];
  const w = new SegmentWriter({
    ringDir: dir,
    stream: 'eth0',
    linkType: 1,
    nanos: true,
    maxSegmentBytes: 1 << 20,
    maxSegmentSeconds: 300,
    snaplen: 65535,
    onOpen: (e) => opened.push(e),
    onClose: (e) => closed.push(e),
    ...extra,
  });
  return { w, opened, closed };
}

test('a segment is a nanosecond PCAP file named by layout.ts that tshark reads back unchanged', () => {
  withRing((dir) => {
    const { w, opened, closed } = writer(dir);
    assert.equal(readdirSync(dir).length, 0, 'nothing is created before the first packet');
    const b = batch(0, 10, 100);
    w.append(b, b.length, T0);
    assert.equal(opened.length, 1);
    assert.equal(opened[0].path, join(dir, segmentBaseName('eth0', T0) + '.pcap'));
    assert.deepEqual(w.current, { path: opened[0].path, bytes: 24 + b.length, startMicros: T0 });
    w.close();
    assert.equal(closed.length, 1);
    assert.equal(closed[0].bytes, 24 + b.length);
    assert.equal(w.current, null);

    const file = readFileSync(opened[0].path);
    assert.equal(file.readUInt32LE(0), 0xa1b23c4d);
    const h = parsePcapHeader(file);
    assert.equal(h.nanos, true);
    assert.equal(h.linkType, 1);
    assert.equal(h.snaplen, 65535);
    assert.ok(file.subarray(24).equals(b), 'records are written byte for byte');
    const r = tsharkSeqs(opened[0].path);
    assert.equal(r.status, 0);
    assert.deepEqual(r.seqs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(r.times[3], '1714564800.003000123', 'nanoseconds survive');
  });
});

test('size rotation splits batches at record boundaries, names stay unique, and nothing is lost or doubled', () => {
  withRing((dir) => {
    const max = MIN_SEGMENT_BYTES;
    const { w, opened, closed } = writer(dir, { maxSegmentBytes: max });
    // Same nowMicros for every batch: several segments open in one microsecond.
    let seq = 0;
    for (const n of [3, 40, 1, 77, 25, 54]) {
      const b = batch(seq, n, 250);
      w.append(b, b.length, T0);
      seq += n;
    }
    w.close();
    const segs = listSegments(dir);
    assert.ok(segs.length >= 6, `expected several segments, got ${segs.length}`);
    assert.equal(opened.length, segs.length);
    assert.deepEqual(closed.map((c) => c.path), segs.map((s) => s.path));
    assert.deepEqual(
      segs.map((s) => s.startMicros),
      segs.map((_, i) => T0 + i),
      'names move forward one microsecond per collision',
    );
    const recordBytes = 16 + 42 + 250;
    const all: number[] = [];
    for (const [i, s] of segs.entries()) {
      assert.equal(closed[i].bytes, s.bytes, 'closed event reports the file size');
      assert.ok(s.bytes <= max, `${s.base} is ${s.bytes} bytes, over ${max}`);
      assert.equal((s.bytes - 24) % recordBytes, 0, 'whole records only');
      if (i < segs.length - 1) assert.ok(s.bytes > max - recordBytes, `${s.base} rotated early at ${s.bytes}`);
      const r = tsharkSeqs(s.path);
      assert.equal(r.status, 0);
      all.push(...r.seqs);
    }
    assert.deepEqual(all, Array.from({ length: seq }, (_, i) => i));
  });
});

test('a record bigger than a segment gets a segment of its own', () => {
  withRing((dir) => {
    const max = MIN_SEGMENT_BYTES;
    const { w } = writer(dir, { maxSegmentBytes: max });
    const small = batch(0, 2, 100);
    const big = batch(2, 1, max + 500);
    const b = Buffer.concat([small, big, batch(3, 2, 100)]);
    w.append(b, b.length, T0);
    w.close();
    const segs = listSegments(dir);
    assert.deepEqual(
      segs.map((s) => tsharkSeqs(s.path).seqs),
      [[0, 1], [2], [3, 4]],
    );
    assert.equal(segs[1].bytes, 24 + big.length);
  });
});

test('age rotation closes a segment with packets once maxSegmentSeconds have passed, and only then', () => {
  withRing((dir) => {
    const { w, closed } = writer(dir, { maxSegmentSeconds: 2 });
    assert.equal(w.maybeRotate(T0 + 10_000_000), false, 'nothing open, nothing to rotate');
    const b = batch(0, 1, 50);
    w.append(b, b.length, T0);
    assert.equal(w.maybeRotate(T0 + 1_999_999), false);
    assert.equal(w.maybeRotate(T0 + 2_000_000), true);
    assert.equal(closed.length, 1);
    assert.equal(w.current, null);
    // An append to an aged segment moves to a fresh one first.
    w.append(b, b.length, T0 + 3_000_000);
    w.append(b, b.length, T0 + 5_500_000);
    w.close();
    const starts = listSegments(dir).map((s) => s.startMicros);
    assert.deepEqual(starts, [T0, T0 + 3_000_000, T0 + 5_500_000]);
  });
});

test('a batch that does not end on a record boundary is refused and writes nothing', () => {
  withRing((dir) => {
    const { w, opened } = writer(dir);
    const b = batch(0, 3, 60);
    assert.throws(() => w.append(b, b.length - 5, T0), /runs past the batch end/);
    assert.throws(() => w.append(b, 10, T0), /ends inside a record header/);
    assert.equal(opened.length, 0);
    assert.equal(readdirSync(dir).length, 0);
  });
});

test('appendRecord writes one packet with its own header, microseconds too', () => {
  withRing((dir) => {
    const { w, opened } = writer(dir, { nanos: false });
    const frame = udpFrame(40000, 5060, Buffer.from('seq=7;'));
    w.appendRecord(1714564800, 123_456_789, frame.length + 100, frame, T0);
    w.close();
    const file = readFileSync(opened[0].path);
    assert.equal(file.readUInt32LE(0), 0xa1b2c3d4);
    assert.equal(file.readUInt32LE(24 + 4), 123_456, 'microsecond file keeps floor(ns / 1000)');
    assert.equal(file.readUInt32LE(24 + 8), frame.length);
    assert.equal(file.readUInt32LE(24 + 12), frame.length + 100);
    assert.deepEqual(tsharkSeqs(opened[0].path).seqs, [7]);
  });
});

test('an existing file with the same name is never overwritten', () => {
  withRing((dir) => {
    const taken = join(dir, segmentBaseName('eth0', T0) + '.pcap');
    writeFileSync(taken, 'someone else');
    const { w, opened } = writer(dir);
    const b = batch(0, 1, 10);
    w.append(b, b.length, T0);
    w.close();
    assert.equal(readFileSync(taken, 'utf8'), 'someone else');
    assert.equal(parseSegmentName(opened[0].path.slice(dir.length + 1))!.startMicros, T0 + 1);
    assert.equal(statSync(opened[0].path).size, 24 + b.length);
  });
});

test('settings that cannot work are refused', () => {
  assert.throws(() => new SegmentWriter({ ringDir: tmpdir(), stream: 'x', linkType: 1, nanos: true, maxSegmentBytes: 100, maxSegmentSeconds: 1 }), /maxSegmentBytes must be at least/);
  assert.throws(() => new SegmentWriter({ ringDir: tmpdir(), stream: 'x', linkType: 1, nanos: true, maxSegmentBytes: 1 << 20, maxSegmentSeconds: 0 }), /maxSegmentSeconds must be positive/);
});
