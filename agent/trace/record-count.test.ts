import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { PcapngWriter } from '../../shared/pcap/pcapng-writer';
import { pcapHeaderBytes, PCAP_HEADER_LEN } from '../../shared/pcap/pcap';
import { PcapWriter } from '../../shared/pcap/writer';
import { RecordCounter } from './record-count';
import { unevenCuts } from '../../test/support/cuts';

/** Packets of lengths 0..max (a zero-length one, ones that straddle any split), with distinct times. */
function packets(n: number, max = 300): Array<{ tsSec: number; tsNsec: number; origLen: number; data: Buffer }> {
  return Array.from({ length: n }, (_, i) => {
    const len = (i * 37) % (max + 1);
    return { tsSec: 1_700_000_000 + i, tsNsec: i * 1000, origLen: len + (i % 3), data: Buffer.alloc(len, i & 0xff) };
  });
}

async function collect(write: (out: PassThrough) => Promise<void>): Promise<Buffer> {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (c: Buffer) => parts.push(c));
  await write(out);
  return Buffer.concat(parts);
}

/** Cuts `bytes` at pseudo-random points (1 byte to 700 bytes apart), so headers and records straddle chunks. */
const cuts = (bytes: Buffer, seed: number): Buffer[] => unevenCuts(bytes, seed, 700);

/** After every chunk, the counter's count is the parser's: whole records only (up to a corrupt record: every one before it). */
function sameAsParser(bytes: Buffer, seed: number): number {
  const counter = new RecordCounter('test');
  const parser = new CaptureStreamParser('test');
  let parsed = 0;
  let parserFailed = false;
  for (const c of cuts(bytes, seed)) {
    counter.push(c);
    if (!parserFailed) {
      try {
        parsed += parser.push(c).length;
      } catch {
        // The parser throws away the whole records of the chunk it fails in; the counter keeps them.
        parserFailed = true;
      }
    }
    if (parserFailed) assert.ok(counter.count >= parsed);
    else assert.equal(counter.count, parsed);
  }
  return counter.count;
}

test('RecordCounter: counts a PCAP\'s whole records from their framing, as the parser does, however the bytes are cut', async () => {
  const pk = packets(500);
  const nanos = await collect(async (out) => {
    const w = new PcapWriter(out, { linkType: 1, nanos: true });
    for (const p of pk) if (!w.write(p)) await w.waitDrain();
    await w.end();
  });
  for (const seed of [1, 2, 3]) assert.equal(sameAsParser(nanos, seed), 500);
  // One byte at a time: every header split every way.
  const one = new RecordCounter('test');
  for (let i = 0; i < nanos.length; i++) one.push(nanos.subarray(i, i + 1));
  assert.equal(one.count, 500);
});

test('RecordCounter: a big-endian microsecond PCAP, and a PCAPNG (the full parser)', async () => {
  // Big endian, as some writers make it: the header and each record header swapped.
  const pk = packets(200);
  const hdr = pcapHeaderBytes({ linkType: 1, nanos: false });
  const be = Buffer.alloc(PCAP_HEADER_LEN);
  be.writeUInt32BE(hdr.readUInt32LE(0), 0);
  be.writeUInt16BE(hdr.readUInt16LE(4), 4);
  be.writeUInt16BE(hdr.readUInt16LE(6), 6);
  be.writeUInt32BE(hdr.readUInt32LE(16), 16);
  be.writeUInt32BE(hdr.readUInt32LE(20), 20);
  const recs = pk.map((p) => {
    const h = Buffer.alloc(16);
    h.writeUInt32BE(p.tsSec, 0);
    h.writeUInt32BE(Math.floor(p.tsNsec / 1000), 4);
    h.writeUInt32BE(p.data.length, 8);
    h.writeUInt32BE(p.origLen, 12);
    return Buffer.concat([h, p.data]);
  });
  assert.equal(sameAsParser(Buffer.concat([be, ...recs]), 7), 200);

  const ng = await collect(async (out) => {
    const w = new PcapngWriter(out);
    for (const [i, p] of pk.entries()) if (!w.write({ ...p, linkType: i % 2 ? 1 : 113 }, true)) await w.waitDrain();
    await w.end();
  });
  assert.equal(sameAsParser(ng, 9), 200);
});

test('RecordCounter: a corrupt record header stops the count at the records before it; bytes that are no capture count nothing', async () => {
  const pk = packets(50);
  const good = await collect(async (out) => {
    const w = new PcapWriter(out, { linkType: 1, nanos: true });
    for (const p of pk) if (!w.write(p)) await w.waitDrain();
    await w.end();
  });
  // Record 10's caplen past its origlen.
  let off = PCAP_HEADER_LEN;
  for (let i = 0; i < 10; i++) off += 16 + good.readUInt32LE(off + 8);
  const bad = Buffer.from(good);
  bad.writeUInt32LE(bad.readUInt32LE(off + 12) + 1, off + 8);
  assert.equal(sameAsParser(bad, 5), 10);
  const huge = Buffer.from(good);
  huge.writeUInt32LE(0x7fffffff, off + 8);
  huge.writeUInt32LE(0x7fffffff, off + 12);
  assert.equal(sameAsParser(huge, 5), 10);

  const none = new RecordCounter('test');
  none.push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  none.push(good);
  assert.equal(none.count, 0);
});

test("RecordCounter under a ChunkWriter takes the PCAP writer's count of a chunk that is its batch, walks the rest, and after every chunk counts what the parser does", async () => {
  const { ChunkWriter } = await import('./chunks');
  const pk = packets(3000, 1500);
  // The same records as one encoded file, for writeEncoded*() ranges (records lie back to back after the header).
  const file = await collect(async (out) => {
    const w = new PcapWriter(out, { linkType: 1, nanos: true });
    for (const p of pk) if (!w.write(p)) await w.waitDrain();
    await w.end();
  });
  const at: number[] = [];
  for (let off = PCAP_HEADER_LEN; off < file.length; off += 16 + file.readUInt32LE(off + 8)) at.push(off);
  at.push(file.length);
  // Chunk sizes: batches of a whole chunk (each goes as it is, counted), and a small one where writes are gathered.
  for (const chunkBytes of [64 * 1024, 16 * 1024, 4096]) {
    const counter = new RecordCounter('test');
    const parser = new CaptureStreamParser('test');
    let parsed = 0;
    let taken = 0;
    const out: InstanceType<typeof ChunkWriter> = new ChunkWriter(async (_seq, data) => {
      const known = out.recordsIn(data);
      if (known !== undefined) taken++;
      counter.push(data, known);
      parsed += parser.push(data).length;
      assert.equal(counter.count, parsed, `chunkBytes ${chunkBytes}: after a chunk of ${data.length} bytes (writer's count ${known})`);
    }, chunkBytes);
    const w = new PcapWriter(out, { linkType: 1, nanos: true });
    for (let i = 0; i < pk.length; ) {
      // Records one at a time, runs cut at record boundaries (counted), and runs that may cut a record between batches (not).
      const n = Math.min(pk.length - i, 1 + ((i * 7) % 90));
      const kind = Math.floor(i / 90) % 3;
      let more: boolean;
      if (kind === 0) {
        more = true;
        for (let k = i; k < i + n; k++) more = w.write(pk[k]);
      } else if (kind === 1) more = w.writeEncodedRecords(file, at[i], at[i + n], n);
      else more = w.writeEncoded(file, at[i], at[i + n], n);
      if (!more) await w.waitDrain();
      i += n;
    }
    await w.end();
    assert.equal(counter.count, pk.length);
    assert.equal(parsed, pk.length);
    // Not all walked: the writer's counts were used (at 64 KiB every batch is a chunk).
    if (chunkBytes === 64 * 1024) assert.ok(taken > 0, 'no chunk carried its count');
  }
});
