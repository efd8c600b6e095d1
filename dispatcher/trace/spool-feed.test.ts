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
