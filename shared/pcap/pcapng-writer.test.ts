import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { PcapngParser } from './pcapng';
import { PcapngWriter, type PcapngWritableRecord } from './pcapng-writer';
import { readCaptureFile } from './reader';
import { LINKTYPE, type PacketRecord } from './types';
import { prng, withTmp } from '../../test/support/with-tmp';

type Rec = PcapngWritableRecord & { nanos: boolean };

/** Random packets over three link types, each µs or ns, as a merge of sources would give. */
function randomRecords(n: number, seed: number): Rec[] {
  const rnd = prng(seed);
  const kinds = [
    { linkType: LINKTYPE.ETHERNET, nanos: false },
    { linkType: LINKTYPE.LINUX_SLL, nanos: true },
    { linkType: LINKTYPE.RAW, nanos: false },
    { linkType: LINKTYPE.ETHERNET, nanos: true },
  ];
  const out: Rec[] = [];
  let sec = 1_760_000_000;
  for (let i = 0; i < n; i++) {
    sec += rnd() < 0.3 ? 1 : 0;
    const kind = kinds[Math.floor(rnd() * kinds.length)];
    const len = Math.floor(rnd() * 1600);
    const data = Buffer.alloc(len);
    for (let k = 0; k < len; k++) data[k] = Math.floor(rnd() * 256);
    let nsec = Math.floor(rnd() * 1_000_000_000);
    if (!kind.nanos) nsec -= nsec % 1000;
    out.push({ ...kind, tsSec: sec, tsNsec: nsec, origLen: len + (rnd() < 0.2 ? Math.floor(rnd() * 3000) : 0), data });
  }
  return out;
}

async function writeAll(w: PcapngWriter, recs: Rec[]): Promise<void> {
  for (const r of recs) if (!w.write(r, r.nanos)) await w.waitDrain();
  await w.end();
}

async function readAll(path: string): Promise<PacketRecord[]> {
  const out: PacketRecord[] = [];
  for await (const r of readCaptureFile(path)) out.push(r);
  return out;
}

function tsharkFrames(file: string): string[][] {
  const out = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len', '-e', 'frame.cap_len'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

const epoch = (sec: number, nsec: number) => `${sec}.${String(nsec).padStart(9, '0')}`;

test(
  'PcapngWriter: mixed link types and resolutions read back exactly here and in tshark; rewriting gives the same bytes',
  withTmp(async (dir) => {
    const path = join(dir, 'w.pcapng');
    const recs = randomRecords(600, 11);
    // The extremes of the timestamp range, where a double would round.
    recs.push({ linkType: LINKTYPE.RAW, nanos: true, tsSec: 0xffffffff, tsNsec: 999_999_999, origLen: 3, data: Buffer.from('end') });
    recs.push({ linkType: LINKTYPE.RAW, nanos: false, tsSec: 0xffffffff, tsNsec: 999_999_000, origLen: 1, data: Buffer.from('x') });
    recs.push({ linkType: LINKTYPE.RAW, nanos: true, tsSec: 0, tsNsec: 1, origLen: 0, data: Buffer.alloc(0) });
    const w = new PcapngWriter(createWriteStream(path));
    await writeAll(w, recs);
    assert.equal(w.count, recs.length);
    assert.equal(w.interfaceCount, 5, 'one IDB per (link type, resolution) pair used');

    const got = await readAll(path);
    assert.equal(got.length, recs.length);
    got.forEach((g, i) => {
      const r = recs[i];
      assert.equal(g.tsSec, r.tsSec, `record ${i}`);
      assert.equal(g.tsNsec, r.tsNsec, `record ${i}`);
      assert.equal(g.origLen, r.origLen);
      assert.equal(g.capLen, r.data.length);
      assert.ok(g.data.equals(r.data));
      assert.equal(g.linkType, r.linkType);
    });

    // Each interface says its resolution and snaplen.
    const parser = new PcapngParser();
    const bytes = readFileSync(path);
    assert.equal(parser.scan(bytes, 0, () => undefined), bytes.length);
    const seen = new Map<number, boolean>();
    got.forEach((g, i) => seen.set(g.interfaceId, recs[i].nanos));
    for (const [id, nanos] of seen) {
      const iface = parser.interfaces[id];
      assert.equal(iface.tsBase, 10);
      assert.equal(iface.tsExponent, nanos ? 9 : 6);
      assert.equal(iface.snaplen, 262144);
    }

    // Byte-exact round trip: what the reader gives, written again, is the same file.
    const again = join(dir, 'again.pcapng');
    const w2 = new PcapngWriter(createWriteStream(again));
    await writeAll(
      w2,
      got.map((g) => ({ ...g, nanos: parser.interfaces[g.interfaceId].tsExponent === 9 })),
    );
    assert.ok(readFileSync(again).equals(bytes));

    // tshark cannot show 2106-02-07 (tsSec 0xffffffff) portably; check it on the rest.
    const frames = tsharkFrames(path);
    assert.equal(frames.length, recs.length);
    frames.forEach(([t, len, cap], i) => {
      const r = recs[i];
      if (r.tsSec !== 0xffffffff) assert.equal(t, epoch(r.tsSec, r.tsNsec), `frame ${i + 1}`);
      assert.equal(Number(len), r.origLen);
      assert.equal(Number(cap), r.data.length);
    });
  }),
);

test(
  'PcapngWriter: IDBs declared up front come before any packet; an empty file is valid',
  withTmp(async (dir) => {
    const path = join(dir, 'ifaces.pcapng');
    const w = new PcapngWriter(createWriteStream(path));
    assert.equal(w.interfaceFor(LINKTYPE.ETHERNET, true), 0);
    assert.equal(w.interfaceFor(LINKTYPE.LINUX_SLL, true), 1);
    assert.equal(w.interfaceFor(LINKTYPE.ETHERNET, true), 0);
    w.write({ linkType: LINKTYPE.LINUX_SLL, tsSec: 1, tsNsec: 2, origLen: 4, data: Buffer.from('abcd') }, true);
    await w.end();
    const got = await readAll(path);
    assert.equal(got.length, 1);
    assert.equal(got[0].interfaceId, 1);
    assert.equal(got[0].linkType, LINKTYPE.LINUX_SLL);

    const empty = join(dir, 'empty.pcapng');
    await new PcapngWriter(createWriteStream(empty)).end();
    assert.deepEqual(await readAll(empty), []);
    assert.deepEqual(tsharkFrames(empty), []);
  }),
);

test(
  'PcapngWriter: labelled interfaces (one per host of an aligned merge) carry their name and comment, as tshark and capinfos read them',
  withTmp(async (dir) => {
    const path = join(dir, 'labelled.pcapng');
    const w = new PcapngWriter(createWriteStream(path));
    const rec = (n: number) => ({ linkType: LINKTYPE.RAW, tsSec: 1_760_000_000, tsNsec: n, origLen: 4, data: Buffer.from([0x45, 0, 0, n]) });
    const a = { key: 'a', name: 'host-a', comment: 'a: reference clock' };
    const b = { key: 'b', name: 'host-b', comment: `b: clock offset 12.300000 ms subtracted ${'é'.repeat(3)}` };
    w.write(rec(1), true, a);
    w.write(rec(2), true, b);
    w.write(rec(3), true, a);
    // Unlabelled packets keep the shared interface of their link type (unnamed: tshark says "unknown").
    w.write(rec(4), true);
    await w.end();
    assert.equal(w.interfaceCount, 3);
    assert.deepEqual((await readAll(path)).map((r) => r.interfaceId), [0, 1, 0, 2]);
    const names = execFileSync('tshark', ['-r', path, '-T', 'fields', '-e', 'frame.interface_name'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    assert.deepEqual(names.trim().split('\n'), ['host-a', 'host-b', 'host-a', 'unknown']);
    const info = execFileSync('capinfos', [path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    assert.match(info, /Comment = a: reference clock\n/);
    assert.ok(info.includes(`Comment = ${b.comment}`), info);
  }),
);

test('PcapngWriter: backpressure reported and waitDrain resolves; caller may reuse its data buffer', async () => {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 64,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      setImmediate(cb);
    },
  });
  const w = new PcapngWriter(sink);
  const shared = Buffer.alloc(101);
  let sawFalse = false;
  // More than the batches the writer keeps in flight (four of 64 KiB) before it asks to wait.
  const n = 6000;
  for (let i = 0; i < n; i++) {
    shared.fill(i & 0xff);
    if (!w.write({ linkType: LINKTYPE.RAW, tsSec: i, tsNsec: i, origLen: 101, data: shared }, true)) {
      sawFalse = true;
      await w.waitDrain();
    }
  }
  await w.end();
  assert.ok(sawFalse);
  const recs: PacketRecord[] = [];
  const all = Buffer.concat(chunks);
  new PcapngParser().scan(all, 0, (r) => recs.push({ ...r, data: Buffer.from(r.data) }));
  assert.equal(recs.length, n);
  recs.forEach((r, i) => {
    assert.equal(r.tsNsec, i);
    assert.ok(r.data.equals(Buffer.alloc(101, i & 0xff)));
  });
});

test('PcapngWriter rejects what it cannot write exactly, and writes after end', async () => {
  const w = new PcapngWriter(new Writable({ write: (_c, _e, cb) => cb() }), { snaplen: 64 });
  const ok = { linkType: 1, tsSec: 1, tsNsec: 0, origLen: 1, data: Buffer.alloc(1) };
  assert.throws(() => w.write({ ...ok, origLen: 65, data: Buffer.alloc(65) }, true), /snaplen 64/);
  assert.throws(() => w.write({ ...ok, origLen: 10, data: Buffer.alloc(20) }, true), /origLen 10/);
  assert.throws(() => w.write({ ...ok, tsNsec: 1_000_000_000 }, true), /tsNsec/);
  assert.throws(() => w.write({ ...ok, tsSec: -1 }, true), /tsSec/);
  assert.throws(() => w.write({ ...ok, tsNsec: 1500 }, false), /whole number of microseconds/);
  assert.throws(() => w.write({ ...ok, linkType: 70000 }, true), /16-bit/);
  assert.equal(w.count, 0);
  await w.end();
  assert.throws(() => w.write(ok, true), /after end/);
});

test(
  'PcapngWriter.end() rejects when the stream fails',
  withTmp(async (dir) => {
    const w = new PcapngWriter(createWriteStream(join(dir, 'missing-dir', 'x.pcapng')));
    await assert.rejects(w.end(), /ENOENT/);
  }),
);
