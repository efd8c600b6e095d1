import assert from 'node:assert/strict';
import { test } from 'node:test';
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
