import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, createWriteStream, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { readCaptureFile } from './reader';
import { encodePcapRecord, PcapFileWriterSync, PcapWriter, type WritableRecord } from './writer';
import { parsePcapHeader, readPcapRecordAt, PCAP_HEADER_LEN } from './pcap';
import { LINKTYPE, type PacketRecord } from './types';
import { prng, withTmp } from '../../test/support/with-tmp';

function randomRecords(n: number, seed: number): WritableRecord[] {
  const rnd = prng(seed);
  const out: WritableRecord[] = [];
  let sec = 1_700_000_000;
  for (let i = 0; i < n; i++) {
    sec += rnd() < 0.3 ? 1 : 0;
    const len = Math.floor(rnd() * 1600);
    const data = Buffer.alloc(len);
    for (let k = 0; k < len; k++) data[k] = Math.floor(rnd() * 256);
    out.push({
      tsSec: sec,
      tsNsec: i === 0 ? 999_999_999 : Math.floor(rnd() * 1_000_000_000),
      origLen: len + (rnd() < 0.2 ? Math.floor(rnd() * 3000) : 0),
      data,
    });
  }
  return out;
}

function tsharkFrames(file: string): string[][] {
  const out = execFileSync(
    'tshark',
    ['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

const epoch = (sec: number, nsec: number) => `${sec}.${String(nsec).padStart(9, '0')}`;

async function readAll(path: string): Promise<PacketRecord[]> {
  const out: PacketRecord[] = [];
  for await (const r of readCaptureFile(path)) out.push(r);
  return out;
}

for (const nanos of [false, true]) {
  test(
    `PcapWriter ${nanos ? 'ns' : 'µs'} file reads back identically here and in tshark`,
    withTmp(async (dir) => {
      const path = join(dir, 'w.pcap');
      const recs = randomRecords(500, nanos ? 2 : 1);
      const w = new PcapWriter(createWriteStream(path), { linkType: LINKTYPE.ETHERNET, nanos });
      for (const r of recs) {
        if (!w.write(r)) await w.waitDrain();
      }
      await w.end();
      assert.equal(w.count, recs.length);

      const expectNsec = (r: WritableRecord) => (nanos ? r.tsNsec : Math.floor(r.tsNsec / 1000) * 1000);
      const got = await readAll(path);
      assert.equal(got.length, recs.length);
      let offset = PCAP_HEADER_LEN;
      got.forEach((g, i) => {
        const r = recs[i];
        assert.equal(g.tsSec, r.tsSec);
        assert.equal(g.tsNsec, expectNsec(r));
        assert.equal(g.origLen, r.origLen);
        assert.equal(g.capLen, r.data.length);
        assert.deepEqual(g.data, r.data);
        assert.equal(g.linkType, LINKTYPE.ETHERNET);
        assert.equal(g.fileOffset, offset);
        offset += 16 + r.data.length;
      });

      const frames = tsharkFrames(path);
      assert.equal(frames.length, recs.length);
      frames.forEach(([t, len, cap], i) => {
        const r = recs[i];
        assert.equal(t, epoch(r.tsSec, expectNsec(r)), `frame ${i + 1}`);
        assert.equal(Number(len), r.origLen);
        assert.equal(Number(cap), r.data.length);
      });
    }),
  );
}

test(
  'PcapWriter: backpressure reported and waitDrain resolves; caller may reuse its data buffer',
  withTmp(async () => {
    const chunks: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 64,
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        setImmediate(cb);
      },
    });
    const w = new PcapWriter(sink, { linkType: LINKTYPE.RAW, nanos: true, snaplen: 1000 });
    const shared = Buffer.alloc(100, 0xaa);
    let sawFalse = false;
    // More than the batches the writer keeps in flight (four of 64 KiB) before it asks to wait.
    const n = 6000;
    for (let i = 0; i < n; i++) {
      shared.fill(i & 0xff);
      if (!w.write({ tsSec: i, tsNsec: i, origLen: 100, data: shared })) {
        sawFalse = true;
        await w.waitDrain();
      }
    }
    await w.end();
    assert.ok(sawFalse);
    const all = Buffer.concat(chunks);
    const h = parsePcapHeader(all);
    assert.equal(h.snaplen, 1000);
    assert.equal(h.linkType, LINKTYPE.RAW);
    assert.equal(all.length, PCAP_HEADER_LEN + n * 116);
    for (let i = 0; i < n; i++) assert.equal(all[PCAP_HEADER_LEN + i * 116 + 16], i & 0xff);
  }),
);

test('PcapWriter rejects records a reader would refuse', () => {
  const w = new PcapWriter(new Writable({ write: (_c, _e, cb) => cb() }), { linkType: 1, nanos: false, snaplen: 64 });
  assert.throws(() => w.write({ tsSec: 1, tsNsec: 0, origLen: 65, data: Buffer.alloc(65) }), /snaplen 64/);
  assert.throws(() => w.write({ tsSec: 1, tsNsec: 0, origLen: 10, data: Buffer.alloc(20) }), /origLen 10/);
  assert.throws(() => w.write({ tsSec: 1, tsNsec: 1_000_000_000, origLen: 1, data: Buffer.alloc(1) }), /tsNsec/);
  assert.throws(() => w.write({ tsSec: -1, tsNsec: 0, origLen: 1, data: Buffer.alloc(1) }), /tsSec/);
  assert.equal(w.count, 0);
});

test(
  'PcapWriter.end() rejects when the stream fails',
  withTmp(async (dir) => {
    const w = new PcapWriter(createWriteStream(join(dir, 'missing-dir', 'x.pcap')), { linkType: 1, nanos: false });
    await assert.rejects(w.end(), /ENOENT/);
  }),
);

test('encodePcapRecord gives header and the caller\'s data', () => {
  const data = Buffer.from('abc');
  const [hdr, d] = encodePcapRecord({ tsSec: 5, tsNsec: 123_456_789, origLen: 9, data }, false);
  assert.equal(d, data);
  assert.deepEqual([hdr.readUInt32LE(0), hdr.readUInt32LE(4), hdr.readUInt32LE(8), hdr.readUInt32LE(12)], [5, 123456, 3, 9]);
  const [hn] = encodePcapRecord({ tsSec: 5, tsNsec: 123_456_789, origLen: 9, data }, true);
  assert.equal(hn.readUInt32LE(4), 123_456_789);
});

test(
  'PcapFileWriterSync: offsets are exact, big and small records, append at a position, tshark agrees',
  withTmp(async (dir) => {
    const path = join(dir, 's.pcap');
    const recs = randomRecords(300, 7);
    recs.push({ tsSec: 1_700_001_000, tsNsec: 5, origLen: 5000, data: Buffer.alloc(5000, 7) });
    const fd = openSync(path, 'w+');
    const offsets: number[] = [];
    try {
      const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.LINUX_SLL, nanos: true, bufferSize: 4096 });
      for (const r of recs.slice(0, 200)) offsets.push(w.write(r));
      w.flush();
      const resumeAt = w.position;
      // A second writer continues the same file, as after a restart.
      const w2 = new PcapFileWriterSync(fd, { linkType: LINKTYPE.LINUX_SLL, nanos: true, position: resumeAt });
      for (const r of recs.slice(200)) offsets.push(w2.write(r));
      w2.flush();

      const header = parsePcapHeader(readFileSync(path).subarray(0, PCAP_HEADER_LEN));
      assert.equal(header.linkType, LINKTYPE.LINUX_SLL);
      recs.forEach((r, i) => {
        const g = readPcapRecordAt(fd, offsets[i], header);
        assert.ok(g, `record ${i}`);
        assert.equal(g.tsSec, r.tsSec);
        assert.equal(g.tsNsec, r.tsNsec);
        assert.deepEqual(g.data, r.data);
      });
    } finally {
      closeSync(fd);
    }
    const frames = tsharkFrames(path);
    assert.equal(frames.length, recs.length);
    frames.forEach(([t, len], i) => {
      assert.equal(t, epoch(recs[i].tsSec, recs[i].tsNsec));
      assert.equal(Number(len), recs[i].origLen);
    });
  }),
);

test('PcapWriter.writeEncodedRecords: the same bytes in the same chunks as write() a record at a time', async () => {
  const rnd = prng(77);
  const recs = randomRecords(3000, 78);
  // Records around the batch size (64 KiB here): one that takes a batch of its own, one that nearly fills one.
  recs[500] = { tsSec: 1, tsNsec: 5000, origLen: 200_000, data: Buffer.alloc(100_000, 3) };
  recs[1200] = { tsSec: 2, tsNsec: 6000, origLen: 65_000, data: Buffer.alloc(65_000, 4) };
  const encoded = Buffer.concat(recs.flatMap((r) => encodePcapRecord(r, true)));
  const ends: number[] = [];
  let at = 0;
  for (const r of recs) ends.push((at += 16 + r.data.length));
  const run = async (feed: (w: PcapWriter) => Promise<void>): Promise<Buffer[]> => {
    const chunks: Buffer[] = [];
    const sink = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _enc, cb) {
        chunks.push(Buffer.from(chunk));
        setImmediate(cb);
      },
    });
    const w = new PcapWriter(sink, { linkType: LINKTYPE.ETHERNET, nanos: true });
    await feed(w);
    await w.end();
    assert.equal(w.count, recs.length);
    return chunks;
  };
  const one = await run(async (w) => {
    for (const r of recs) if (!w.write(r)) await w.waitDrain();
  });
  const runs = await run(async (w) => {
    // Runs of 1 to 200 records, as a read window gives them.
    let i = 0;
    while (i < recs.length) {
      const n = Math.min(recs.length - i, 1 + Math.floor(rnd() * 200));
      const start = i === 0 ? 0 : ends[i - 1];
      if (!w.writeEncodedRecords(encoded, start, ends[i + n - 1], n)) await w.waitDrain();
      i += n;
    }
  });
  assert.ok(one.length > 10);
  assert.deepEqual(runs.map((c) => c.length), one.map((c) => c.length));
  assert.ok(Buffer.concat(runs).equals(Buffer.concat(one)));
  const w = new PcapWriter(new Writable({ write: (_c, _e, cb) => cb() }), { linkType: 1, nanos: true });
  assert.throws(() => w.writeEncodedRecords(encoded, 0, ends[0] - 1, 1), /runs past/);
});
