import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pcapHeaderBytes } from './pcap';
import { PcapngWriter } from './pcapng-writer';
import { CaptureStreamReader, type StreamRecord } from './stream-reader';
import { LINKTYPE } from './types';
import { encodePcapRecord } from './writer';

async function all(r: CaptureStreamReader): Promise<StreamRecord[]> {
  const out: StreamRecord[] = [];
  for (let rec = await r.next(); rec; rec = await r.next()) out.push({ ...rec, data: Buffer.from(rec.data) });
  return out;
}

function bytesOf(chunks: Buffer[], size: number): Readable {
  // One byte at a time for the first `size` bytes, then the rest at once: every split point.
  const b = Buffer.concat(chunks);
  const parts = [...b.subarray(0, size)].map((x) => Buffer.from([x]));
  parts.push(b.subarray(size));
  return Readable.from(parts, { objectMode: false });
}

test('CaptureStreamReader: records of a PCAP fed a byte at a time, tagged with the file\'s resolution', async () => {
  for (const nanos of [false, true]) {
    const recs = [0, 1, 2].map((i) => ({ tsSec: 100 + i, tsNsec: 5000 * i, origLen: 10, data: Buffer.alloc(10, i) }));
    const file = [pcapHeaderBytes({ linkType: LINKTYPE.RAW, nanos }), ...recs.flatMap((r) => encodePcapRecord(r, nanos))];
    const r = new CaptureStreamReader(bytesOf(file, 80), 'p');
    const got = await all(r);
    assert.equal(r.format, 'pcap');
    assert.deepEqual(got.map((g) => [g.tsSec, g.tsNsec, g.data[0], g.nanos, g.linkType]), recs.map((x, i) => [x.tsSec, x.tsNsec, i, nanos, LINKTYPE.RAW]));
    assert.ok(r.done);
    assert.equal(r.tornBytes, 0);
    assert.equal(r.formatError, null);
  }
});

test('CaptureStreamReader: PCAPNG records carry their interface\'s resolution', async () => {
  const chunks: Buffer[] = [];
  const w = new PcapngWriter(new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
  w.write({ linkType: LINKTYPE.ETHERNET, tsSec: 1, tsNsec: 2000, origLen: 1, data: Buffer.from([1]) }, false);
  w.write({ linkType: LINKTYPE.LINUX_SLL, tsSec: 1, tsNsec: 3000, origLen: 1, data: Buffer.from([2]) }, true);
  await w.end();
  const r = new CaptureStreamReader(bytesOf(chunks, 120));
  const got = await all(r);
  assert.deepEqual(got.map((g) => [g.linkType, g.tsNsec, g.nanos]), [[LINKTYPE.ETHERNET, 2000, false], [LINKTYPE.LINUX_SLL, 3000, true]]);
  assert.deepEqual(r.interfaces.map((i) => i.linkType), [LINKTYPE.ETHERNET, LINKTYPE.LINUX_SLL]);
});

test('CaptureStreamReader: empty, torn and non-capture inputs are reported, not thrown; stream failures reject', async () => {
  const empty = new CaptureStreamReader(Readable.from([], { objectMode: false }));
  assert.equal(await empty.next(), null);
  assert.ok(empty.empty);

  const rec = encodePcapRecord({ tsSec: 1, tsNsec: 0, origLen: 50, data: Buffer.alloc(50) }, false);
  const piped = new CaptureStreamReader(bytesOf([pcapHeaderBytes({ linkType: 1, nanos: false }), ...rec, ...rec], 0).pipe(new PassThrough()));
  const whole = Buffer.concat([pcapHeaderBytes({ linkType: 1, nanos: false }), ...rec, ...rec]);
  const cut = new CaptureStreamReader(Readable.from([whole.subarray(0, whole.length - 7)], { objectMode: false }));
  assert.equal((await all(piped)).length, 2);
  assert.equal((await all(cut)).length, 1);
  assert.equal(cut.tornBytes, 66 - 7);

  const text = new CaptureStreamReader(Readable.from([Buffer.from('GET / HTTP/1.1\r\n')], { objectMode: false }), 'web');
  assert.equal(await text.next(), null);
  assert.match(text.formatError!.message, /^web is not a PCAP or PCAPNG file/);

  // Fails before anyone reads: no crash, the next pull rejects.
  const early = new PassThrough();
  const r = new CaptureStreamReader(early, 'early');
  early.destroy(new Error('socket hang up'));
  await new Promise((res) => setImmediate(res));
  await assert.rejects(r.next(), /socket hang up/);

  const strings = new CaptureStreamReader(Readable.from(['abcd'], { objectMode: true }), 's');
  await assert.rejects(strings.next(), /gives string chunks; give a byte stream/);
});
