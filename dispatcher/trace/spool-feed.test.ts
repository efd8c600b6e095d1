import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { SpoolFeed } from './spool-feed';

const dir = mkdtempSync(join(tmpdir(), 'tf-feed-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Everything the reader gives, or the error it fails with. */
async function drain(r: Readable): Promise<Buffer | Error> {
  const parts: Buffer[] = [];
  try {
    for await (const c of r) parts.push(c as Buffer);
    return Buffer.concat(parts);
  } catch (e) {
    return e as Error;
  }
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

test('readers follow the file as it grows, see only written bytes, and end with the file', async () => {
  const path = join(dir, 'grow.pcap');
  writeFileSync(path, '');
  const feed = new SpoolFeed(path);
  const early = drain(feed.reader());
  const written: Buffer[] = [];
  let size = 0;
  for (let i = 0; i < 6; i++) {
    // Past one read's size (1 MiB) so a reader takes several reads of one step.
    const b = bytes(i === 3 ? 1_500_000 : 70_000 + i, i);
    appendFileSync(path, b);
    // Bytes appended but not yet announced are not given.
    appendFileSync(path, Buffer.from('not yet'));
    truncateSync(path, size + b.length);
    written.push(b);
    size += b.length;
    feed.grew(size);
    await sleep(5);
  }
  const late = drain(feed.reader());
  await sleep(20);
  assert.equal(feed.ended, false);
  feed.end(size);
  assert.equal(feed.ended, true);
  const whole = Buffer.concat(written);
  assert.deepEqual(await early, whole, 'a reader from before the first byte');
  assert.deepEqual(await late, whole, 'a reader started halfway');
  assert.deepEqual(await drain(feed.reader()), whole, 'a reader started after the end');
});

test('a file that ends other than followed fails its readers: trimmed, aborted, or ended at another size', async () => {
  const path = join(dir, 'cut.pcap');
  writeFileSync(path, bytes(300_000, 1));
  const trimmed = new SpoolFeed(path);
  trimmed.grew(300_000);
  const r = trimmed.reader();
  truncateSync(path, 200_000);
  trimmed.end(200_000);
  assert.equal(trimmed.ended, false, 'a size other than what was followed is no end');
  const got = await drain(r);
  assert.ok(got instanceof Error, 'the reader fails');

  writeFileSync(path, bytes(1000, 2));
  const stopped = new SpoolFeed(path);
  stopped.grew(1000);
  const waiting = drain(stopped.reader());
  await sleep(20);
  stopped.abort(new Error('the dispatcher is stopping'));
  const e = await waiting;
  assert.ok(e instanceof Error && /stopping/.test(e.message), 'a reader waiting at the end fails with the reason');
  stopped.end(1000);
  assert.equal(stopped.ended, false, 'an aborted feed stays aborted');
});

test('a reader destroyed while it waits leaves nothing open', async () => {
  const path = join(dir, 'gone.pcap');
  writeFileSync(path, bytes(10, 3));
  const feed = new SpoolFeed(path);
  feed.grew(10);
  const r = feed.reader();
  const first = await new Promise<Buffer>((resolve) => r.once('data', resolve));
  assert.equal(first.length, 10);
  r.destroy();
  await new Promise((resolve) => r.once('close', resolve));
  feed.grew(10);
  feed.end(10);
  assert.ok(r.destroyed);
});

test('while it has readers the feed keeps the last chunks written: a reader keeping up takes them, one behind reads the disk', async () => {
  const path = join(dir, 'window.pcap');
  writeFileSync(path, '');
  const feed = new SpoolFeed(path);
  /** A reader's bytes so far: the feed drops its window when it ends, so the readers are read up to the end first. */
  const follow = (): { parts: Buffer[]; bytes: () => number } => {
    const parts: Buffer[] = [];
    feed.reader().on('data', (c: Buffer) => parts.push(c));
    return { parts, bytes: () => parts.reduce((n, p) => n + p.length, 0) };
  };
  const early = follow();
  const chunks: Buffer[] = [];
  let size = 0;
  // 24 chunks of 256 KiB: 6 MiB, past the 4 MiB window.
  for (let i = 0; i < 24; i++) {
    const c = bytes(256 * 1024, i + 10);
    appendFileSync(path, c);
    size += c.length;
    feed.grew(size, c);
    chunks.push(c);
    await sleep(1);
  }
  const whole = Buffer.concat(chunks);
  // What the window holds is compared from memory: the file is changed under it to tell the two apart.
  const tail = size - 1024 * 1024;
  assert.equal(feed.matchesAt(tail, whole.subarray(tail, tail + 300_000)), true, 'the last MiB is held');
  const other = Buffer.from(whole.subarray(tail, tail + 300_000));
  other[299_999] ^= 1;
  assert.equal(feed.matchesAt(tail, other), false, 'a difference is found in the held bytes');
  assert.equal(feed.matchesAt(0, whole.subarray(0, 1000)), null, 'the first MiB is no longer held');
  assert.equal(feed.matchesAt(size - 10, Buffer.alloc(20)), null, 'past the end is not held');
  // A reader started now reads the start from the disk: zeros written over it show it did.
  const zeros = Buffer.alloc(1024 * 1024);
  const { openSync, writeSync, closeSync } = await import('node:fs');
  const fd = openSync(path, 'r+');
  writeSync(fd, zeros, 0, zeros.length, 0);
  writeSync(fd, zeros, 0, 1024, tail);
  closeSync(fd);
  const late = follow();
  for (let i = 0; i < 500 && (early.bytes() < size || late.bytes() < size); i++) await sleep(10);
  feed.end(size);
  assert.deepEqual(Buffer.concat(early.parts), whole, 'the reader that kept up got every chunk as written');
  const got = Buffer.concat(late.parts);
  assert.equal(got.length, size);
  assert.deepEqual(got.subarray(0, zeros.length), zeros, 'bytes older than the window come from the disk');
  assert.deepEqual(got.subarray(tail, tail + 1024), whole.subarray(tail, tail + 1024), 'bytes in the window come from memory');
});

test('caughtUp() waits for the slowest reader to be near the end, not for a reader not reading yet, and gives up on a stuck one', async () => {
  const path = join(dir, 'lag.pcap');
  writeFileSync(path, '');
  const feed = new SpoolFeed(path);
  let size = 0;
  const grow = (n: number): void => {
    const c = bytes(n, size);
    appendFileSync(path, c);
    size += c.length;
    feed.grew(size, c);
  };
  grow(3 << 20);
  await feed.caughtUp(); // no reader: at once
  const r = feed.reader();
  await feed.caughtUp(); // a reader that has not read yet (an upload waiting for its document) is not waited for
  const parts: Buffer[] = [];
  r.pause();
  r.on('data', (c: Buffer) => parts.push(c));
  r.read(0); // its first read: 1 MiB taken, 2 MiB behind
  await sleep(20);
  grow(1 << 20);
  let over = false;
  const waiting = feed.caughtUp().then(() => (over = true));
  await sleep(50);
  assert.equal(over, false, 'a reader 3 MiB behind is waited for');
  r.resume();
  const t0 = Date.now();
  await waiting;
  assert.ok(Date.now() - t0 < 900, 'the wait ends when the reader catches up, not on the timeout');
  // A reader that stops taking bytes: the wait gives up after its timeout, and later ones do not wait.
  r.pause();
  grow(4 << 20);
  const t1 = Date.now();
  await feed.caughtUp();
  assert.ok(Date.now() - t1 >= 900, 'waited out the timeout');
  const t2 = Date.now();
  await feed.caughtUp();
  assert.ok(Date.now() - t2 < 100, 'not waited for again');
  r.resume();
  for (let i = 0; i < 200 && parts.reduce((n, p) => n + p.length, 0) < size; i++) await sleep(10);
  feed.end(size);
  assert.equal(Buffer.concat(parts).length, size);
});
