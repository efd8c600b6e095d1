import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { mergeCaptures } from '../merge/merge';
import { pcapHeaderBytes } from '../../shared/pcap/pcap';
import { FramingCheck, sameAsMerge } from './same-as-file';
import { unevenCuts } from '../../test/support/cuts';

interface Rec {
  sec: number;
  sub: number;
  data: Buffer;
  origLen?: number;
}

/** An Ethernet/IPv4/UDP frame whose payload says `n` (distinct packets unless n repeats). */
function frame(n: number, payload = 40 + (n % 200)): Buffer {
  const b = Buffer.alloc(14 + 20 + 8 + payload);
  b.writeUInt16BE(0x0800, 12);
  b[14] = 0x45;
  b.writeUInt16BE(20 + 8 + payload, 16);
  b[22] = 64;
  b[23] = 17;
  b.writeUInt32BE(0xc0000232, 26);
  b.writeUInt32BE(0xc0000233, 30);
  b.writeUInt16BE(40000, 34);
  b.writeUInt16BE(40002, 36);
  b.writeUInt16BE(8 + payload, 38);
  b.writeUInt32BE(n, 42);
  return b;
}

function pcap(recs: Rec[], opts: { nanos?: boolean; snaplen?: number; bigEndian?: boolean } = {}): Buffer {
  const nanos = opts.nanos ?? true;
  const hdr = pcapHeaderBytes({ linkType: 1, nanos, snaplen: opts.snaplen });
  const parts = [hdr];
  if (opts.bigEndian) {
    const be = Buffer.alloc(24);
    be.writeUInt32BE(hdr.readUInt32LE(0), 0);
    be.writeUInt16BE(2, 4);
    be.writeUInt16BE(4, 6);
    be.writeUInt32BE(hdr.readUInt32LE(16), 16);
    be.writeUInt32BE(1, 20);
    parts[0] = be;
  }
  for (const r of recs) {
    const h = Buffer.alloc(16);
    const w = (v: number, o: number) => (opts.bigEndian ? h.writeUInt32BE(v, o) : h.writeUInt32LE(v, o));
    w(r.sec, 0);
    w(r.sub, 4);
    w(r.data.length, 8);
    w(r.origLen ?? r.data.length, 12);
    parts.push(h, r.data);
  }
  return Buffer.concat(parts);
}

/** A stream of `b` in uneven chunks (1 byte to 3 KiB), so records and headers straddle them. */
function chunked(b: Buffer, seed: number): Readable {
  return Readable.from(unevenCuts(b, seed, 3000), { objectMode: false });
}

async function realMerge(file: Buffer): Promise<{ out: Buffer; m: Awaited<ReturnType<typeof mergeCaptures>> }> {
  const sink = new PassThrough();
  const parts: Buffer[] = [];
  sink.on('data', (c: Buffer) => parts.push(c));
  const m = await mergeCaptures([{ host: 'h', stream: Readable.from([file], { objectMode: false }) }], sink);
  return { out: Buffer.concat(parts), m };
}

/** sameAsMerge() of `file`, however it is chunked, against the real merge: when it says same, the merge IS the file, with those figures. */
async function check(file: Buffer): Promise<boolean> {
  const { out, m } = await realMerge(file);
  let answer: boolean | null = null;
  for (const seed of [1, 2, 3]) {
    const f = await sameAsMerge(chunked(file, seed), 'h');
    if (answer !== null) assert.equal(f !== null, answer, 'the same answer however the file is cut');
    answer = f !== null;
    if (f) {
      assert.ok(out.equals(file), 'a file found to be its own merge is its merge, byte for byte');
      assert.deepEqual({ packets: m.packets, bytes: m.bytes, duplicates: m.duplicates, format: m.format, notes: m.notes }, { packets: f.packets, bytes: f.bytes, duplicates: 0, format: 'pcap', notes: f.notes });
    }
  }
  return answer!;
}

const inOrder = (n: number, step = 20_000): Rec[] => Array.from({ length: n }, (_, i) => ({ sec: 1_700_000_000 + Math.floor((i * step) / 1e9), sub: (i * step) % 1e9, data: frame(i) }));

test('sameAsMerge: a nanosecond PCAP in order without duplicates is its own one-host merge (also with ties, µs, a big snaplen and more packets in a window than the dedup keeps)', async () => {
  assert.equal(await check(pcap(inOrder(3000))), true);
  // Packets at the same instant: the merge keeps file order.
  const ties = inOrder(500);
  ties[10] = { ...ties[10], sec: ties[9].sec, sub: ties[9].sub };
  assert.equal(await check(pcap(ties)), true);
  assert.equal(await check(pcap(inOrder(500).map((r) => ({ ...r, sub: Math.floor(r.sub / 1000) })), { nanos: false })), true);
  assert.equal(await check(pcap(inOrder(100), { snaplen: 1 << 20 })), true);
  // More packets within one dedup window than the dedup keeps: it forgets some early, as the merge's does, and says so as the merge does.
  const dense = pcap(inOrder(6000, 10));
  assert.equal(await check(dense), true);
  assert.match((await sameAsMerge(Readable.from([dense], { objectMode: false }), 'h'))!.notes.join(' '), /forgotten within their/);
});

test('sameAsMerge: out of order, duplicated, torn, corrupt or otherwise framed files are not, and the real merge then differs or is refused', async () => {
  const base = inOrder(2000);
  // Out of order within the merge's read-ahead: it sorts them.
  const swapped = [...base];
  [swapped[100], swapped[101]] = [swapped[101], swapped[100]];
  assert.equal(await check(pcap(swapped)), false);
  assert.ok(!(await realMerge(pcap(swapped))).out.equals(pcap(swapped)));
  // The same packet twice within the dedup window (two interfaces): the merge keeps it once.
  const dup = [...base];
  dup.splice(501, 0, { ...base[500], sub: base[500].sub + 1000 });
  assert.equal(await check(pcap(dup)), false);
  assert.equal((await realMerge(pcap(dup))).m.duplicates, 1);
  // The same bytes again, but further apart than the window: not a duplicate, so the file is its merge.
  const far = [...base];
  far.push({ sec: base[1999].sec + 5, sub: 0, data: frame(0) });
  assert.equal(await check(pcap(far)), true);
  // Torn at the end, in the last record's header or data.
  const whole = pcap(base);
  assert.equal(await check(whole.subarray(0, whole.length - 7)), false);
  assert.equal(await check(whole.subarray(0, whole.length - frame(1999).length - 9)), false);
  // A caplen past the origlen (corrupt), a subsecond field of a second or more, big endian, a snaplen the merge raises.
  const corrupt = [...base];
  corrupt[300] = { ...base[300], origLen: base[300].data.length - 1 };
  assert.equal(await check(pcap(corrupt)), false);
  const over = [...base];
  over[300] = { ...base[300], sub: 1_000_000_000 };
  assert.equal(await check(pcap(over)), false);
  assert.equal(await check(pcap(base, { bigEndian: true })), false);
  assert.equal(await check(pcap(base, { snaplen: 65535 })), false);
  // A header alone, and bytes that are no capture.
  assert.equal(await check(pcap([])), false);
  const v3 = pcap(base);
  v3.writeUInt16LE(3, 4);
  assert.equal(new FramingCheck().push(v3), false, 'a PCAP version the reader refuses is not its own merge (and throws nothing)');
  const none = new FramingCheck();
  assert.equal(none.push(Buffer.from('not a capture at all, no magic here')), false);
});
