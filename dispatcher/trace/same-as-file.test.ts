import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, test } from 'node:test';
import { SameAsFile } from './same-as-file';

const dir = mkdtempSync(join(tmpdir(), 'tf-same-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const MB = 1 << 20;

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed + (i >> 12)) & 0xff;
  return b;
}

/** Writes `output` into a SameAsFile over `file` in uneven chunks; what it found, and what it handed on. */
async function run(file: Buffer, output: Buffer): Promise<{ same: boolean; checked: number; handed: Buffer | null }> {
  const path = join(dir, `f${Math.random().toString(36).slice(2)}`);
  writeFileSync(path, file);
  let handed: Promise<Buffer> | null = null;
  const sink = new SameAsFile(path, (r) => {
    handed = r.toArray().then((parts) => Buffer.concat(parts as Buffer[]));
  });
  const chunks: Buffer[] = [];
  // Chunk sizes from a few bytes to more than the 1 MiB slice, so a difference falls inside a chunk and across slices.
  for (let off = 0, k = 0; off < output.length; k++) {
    const n = Math.min(output.length - off, [7, 65_536, 3 * MB + 5, 1000][k % 4]);
    chunks.push(output.subarray(off, off + n));
    off += n;
  }
  await pipeline(Readable.from(chunks), sink);
  return { same: sink.same, checked: sink.checked, handed: handed ? await handed : null };
}

test('output the same as the file: nothing handed on, all of it checked', async () => {
  const file = bytes(5 * MB + 3, 1);
  assert.deepEqual(await run(file, file), { same: true, checked: file.length, handed: null });
  // A shorter output that is the file's start is "the same" up to its length: the caller compares lengths.
  assert.deepEqual(await run(file, file.subarray(0, 2 * MB + 1)), { same: true, checked: 2 * MB + 1, handed: null });
  assert.deepEqual(await run(file, Buffer.alloc(0)), { same: true, checked: 0, handed: null });
});

test('at the first difference the whole output is handed on, the matched start read back from the file', async () => {
  const file = bytes(5 * MB + 3, 2);
  for (const at of [0, 6, 7, MB - 1, MB + 70_000, 5 * MB + 2]) {
    const output = Buffer.from(file);
    output[at] ^= 0xff;
    const r = await run(file, output);
    assert.equal(r.same, false, `a difference at ${at}`);
    assert.ok(r.handed?.equals(output), `the output handed on is the output (difference at ${at})`);
  }
  // Longer than the file: its end is where they differ.
  const longer = Buffer.concat([file, bytes(MB, 3)]);
  const r = await run(file, longer);
  assert.equal(r.same, false);
  assert.ok(r.handed?.equals(longer));
});
