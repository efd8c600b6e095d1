import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { PcapWriter } from '../../shared/pcap/writer';
import { MAX_CHUNK_BYTES } from '../../shared/protocol/agent';
import { ChunkWriter } from './chunks';

function writer(chunkBytes: number, inFlight = 2): { w: ChunkWriter; sent: Buffer[]; most: () => number } {
  const sent: Buffer[] = [];
  let out = 0;
  let most = 0;
  const w = new ChunkWriter(
    async (seq, data) => {
      assert.equal(seq, sent.length, 'chunks in seq order');
      sent.push(data);
      most = Math.max(most, ++out);
      await new Promise((r) => setTimeout(r, 1));
      out--;
    },
    chunkBytes,
    inFlight,
  );
  return { w, sent, most: () => most };
}

async function writeAll(w: ChunkWriter, bufs: Buffer[]): Promise<void> {
  for (const b of bufs) if (!w.write(b)) await new Promise((r) => w.once('drain', r));
  await new Promise<void>((resolve, reject) => w.end((e?: Error | null) => (e ? reject(e) : resolve())));
}

test('ChunkWriter: a write of half a chunk to a whole one goes as it is; smaller writes are gathered into whole chunks; the bytes are kept', async () => {
  const { w, sent, most } = writer(100);
  const whole = Buffer.alloc(100, 1);
  const half = Buffer.alloc(50, 2);
  const small = Array.from({ length: 30 }, (_, i) => Buffer.alloc(7, 10 + i));
  const big = Buffer.alloc(250, 3);
  const written = [whole, half, ...small, big, Buffer.alloc(60, 4)];
  await writeAll(w, written);
  assert.equal(sent[0], whole, 'a whole chunk is sent as the buffer written, not a copy');
  assert.equal(sent[1], half, 'so is half a chunk');
  // 210 small bytes then 250 big ones, gathered: whole chunks of 100 but the last.
  const gathered = sent.slice(2, -1);
  assert.ok(gathered.every((c) => c.length === 100), `gathered chunks are whole (${gathered.map((c) => c.length)})`);
  assert.ok(Buffer.concat(sent).equals(Buffer.concat(written)), 'the chunks hold the bytes written, in order');
  assert.equal(w.chunks, sent.length);
  assert.equal(w.bytes, Buffer.concat(written).length);
  assert.ok(most() <= 2, 'no more than inFlight chunks unacknowledged');
});

test('ChunkWriter: a write that finds bytes gathered is gathered with them: the chunks stay whole', async () => {
  const { w, sent } = writer(100);
  await writeAll(w, [Buffer.alloc(10, 1), Buffer.alloc(100, 2), Buffer.alloc(100, 3)]);
  assert.deepEqual(sent.map((c) => c.length), [100, 100, 10]);
});

test('ChunkWriter of MAX_CHUNK_BYTES under a PcapWriter: every batch goes as a chunk as it is, none copied into another', async () => {
  const { w, sent } = writer(MAX_CHUNK_BYTES, 4);
  const pcap = new PcapWriter(w, { linkType: 1, nanos: true });
  // 1016 bytes a record, which no chunk boundary falls between: a chunk gathered by copying would be exactly MAX_CHUNK_BYTES.
  const data = Buffer.alloc(1000, 0x5a);
  const records = Math.ceil((5 * MAX_CHUNK_BYTES) / 1016);
  for (let i = 0; i < records; i++) if (!pcap.write({ tsSec: 1_700_000_000 + i, tsNsec: 0, origLen: 1000, data })) await pcap.waitDrain();
  await pcap.end();
  assert.ok(sent.length >= 5 && sent.length <= 6, `${sent.length} chunks for ${records} records of 1016 bytes`);
  for (const c of sent.slice(0, -1)) {
    assert.ok(c.length * 2 >= MAX_CHUNK_BYTES && c.length < MAX_CHUNK_BYTES, `a chunk of ${c.length} bytes is a batch of whole records, not a copy cut at the chunk size`);
    assert.equal((c.length - (c === sent[0] ? 24 : 0)) % 1016, 0, 'whole records');
  }
  assert.equal(Buffer.concat(sent).length, 24 + records * 1016);
});

test('ChunkWriter under a PcapWriter: acknowledged chunks are built in again, never before their ack; the bytes are what a PassThrough gets', async () => {
  const records = Math.ceil((12 * MAX_CHUNK_BYTES) / 1016);
  const write = async (pcap: PcapWriter): Promise<void> => {
    for (let i = 0; i < records; i++) {
      if (!pcap.write({ tsSec: 1_700_000_000 + i, tsNsec: i, origLen: 1000, data: Buffer.alloc(1000, i & 0xff) })) await pcap.waitDrain();
    }
    await pcap.end();
  };
  const plain = new PassThrough();
  const got: Buffer[] = [];
  plain.on('data', (b: Buffer) => got.push(Buffer.from(b)));
  await write(new PcapWriter(plain, { linkType: 1, nanos: true }));

  const acked: Buffer[] = [];
  const memory = new Set<ArrayBufferLike>();
  const w = new ChunkWriter(
    async (_seq, data) => {
      memory.add(data.buffer);
      await new Promise((r) => setTimeout(r, 2));
      // Read at the ack, as the link has sent it by then: a buffer built in again before its ack shows here.
      acked.push(Buffer.from(data));
    },
    MAX_CHUNK_BYTES,
    4,
  );
  await write(new PcapWriter(w, { linkType: 1, nanos: true }));
  assert.ok(Buffer.concat(acked).equals(Buffer.concat(got)), 'the acknowledged chunks hold the PCAP');
  assert.ok(acked.length >= 12, `${acked.length} chunks`);
  assert.ok(memory.size <= 7, `${acked.length} chunks in ${memory.size} buffers: the acknowledged ones are built in again`);
});
