import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CaptureFormatError } from './errors';
import { PCAP_HEADER_LEN } from './pcap';
import { CaptureStreamParser, detectCaptureFormat, readCaptureFile } from './reader';
import { LINKTYPE, type PacketRecord } from './types';
import { PcapWriter, type WritableRecord } from './writer';
import { prng, withTmp } from '../../test/support/with-tmp';

function randomRecords(n: number, seed: number, maxLen = 1500): WritableRecord[] {
  const rnd = prng(seed);
  const out: WritableRecord[] = [];
  for (let i = 0; i < n; i++) {
    const len = Math.floor(rnd() * maxLen);
    const data = Buffer.alloc(len);
    for (let k = 0; k < len; k++) data[k] = Math.floor(rnd() * 256);
    out.push({ tsSec: 1_690_000_000 + i, tsNsec: Math.floor(rnd() * 1e9), origLen: len, data });
  }
  return out;
}

async function writePcap(path: string, recs: WritableRecord[], nanos = true): Promise<void> {
  const w = new PcapWriter(createWriteStream(path), { linkType: LINKTYPE.ETHERNET, nanos });
  for (const r of recs) if (!w.write(r)) await w.waitDrain();
  await w.end();
}

async function readAll(path: string, onTorn?: (n: number) => void): Promise<PacketRecord[]> {
  const out: PacketRecord[] = [];
  for await (const r of readCaptureFile(path, { onTorn })) out.push(r);
  return out;
}

function pushInChunks(buf: Buffer, sizes: () => number, name?: string): { recs: PacketRecord[]; torn: number } {
  const p = new CaptureStreamParser(name);
  const recs: PacketRecord[] = [];
  for (let pos = 0; pos < buf.length; ) {
    // Copy each chunk, as a stream would hand over fresh buffers.
    const chunk = Buffer.from(buf.subarray(pos, pos + sizes()));
    pos += chunk.length;
    recs.push(...p.push(chunk));
  }
  return { recs, torn: p.end().tornBytes };
}

const plain = (r: PacketRecord) => ({ ...r, data: r.data.toString('hex') });

async function rejectsWith(path: string, re: RegExp): Promise<void> {
  await assert.rejects(readAll(path), (e: unknown) => {
    assert.ok(e instanceof CaptureFormatError, `expected CaptureFormatError, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  });
}

test('detectCaptureFormat', () => {
  assert.equal(detectCaptureFormat(Buffer.from('d4c3b2a1', 'hex')), 'pcap');
  assert.equal(detectCaptureFormat(Buffer.from('a1b2c3d4', 'hex')), 'pcap');
  assert.equal(detectCaptureFormat(Buffer.from('4d3cb2a1', 'hex')), 'pcap');
  assert.equal(detectCaptureFormat(Buffer.from('a1b23c4d', 'hex')), 'pcap');
  assert.equal(detectCaptureFormat(Buffer.from('0a0d0d0a', 'hex')), 'pcapng');
  assert.equal(detectCaptureFormat(Buffer.from('0a0d0d0a1c0000004d3c2b1a', 'hex')), 'pcapng');
  assert.equal(detectCaptureFormat(Buffer.from('0a0d0d0a000000001c1a2b3c', 'hex')), null);
  assert.equal(detectCaptureFormat(Buffer.from('7f454c46', 'hex')), null);
  assert.equal(detectCaptureFormat(Buffer.from('d4c3b2', 'hex')), null);
});

test(
  'non-capture inputs give clear CaptureFormatErrors',
  withTmp(async (dir) => {
    const elf = join(dir, 'x.bin');
    writeFileSync(elf, Buffer.from('7f454c46020101000000000000000000', 'hex'));
    await rejectsWith(elf, /^.*x\.bin is not a PCAP or PCAPNG file \(first bytes 0x7f454c46\); give a capture file$/);

    const empty = join(dir, 'empty.pcap');
    writeFileSync(empty, '');
    await rejectsWith(empty, /empty\.pcap is empty; give a capture file/);

    await rejectsWith(join(dir, 'nope.pcap'), new RegExp(`^no such file ${join(dir, 'nope.pcap')}$`));

    const sub = join(dir, 'adir');
    mkdirSync(sub);
    await rejectsWith(sub, /adir is a directory; give a capture file/);

    const tiny = join(dir, 'tiny');
    writeFileSync(tiny, Buffer.from([0xd4, 0xc3]));
    await rejectsWith(tiny, /tiny is only 2 bytes long/);

    const pcap = join(dir, 'ok.pcap');
    await writePcap(pcap, randomRecords(5, 1));
    const shortHdr = join(dir, 'shorthdr.pcap');
    writeFileSync(shortHdr, readFileSync(pcap).subarray(0, 10));
    await rejectsWith(shortHdr, /shorthdr\.pcap ends after 10 bytes, inside the 24-byte PCAP file header/);

    const gz = join(dir, 'x.pcap.gz');
    writeFileSync(gz, gzipSync(readFileSync(pcap)));
    await rejectsWith(gz, /is not a PCAP or PCAPNG file \(first bytes 0x1f8b08..\); it looks gzip-compressed/);

    const mod = join(dir, 'mod.pcap');
    execFileSync('editcap', ['-F', 'modpcap', pcap, mod]);
    await rejectsWith(mod, /modified \(Kuznetzov\) libpcap format; convert it with "editcap -F pcap"/);

    const ng = join(dir, 'ok.pcapng');
    execFileSync('editcap', ['-F', 'pcapng', pcap, ng]);
    const shortShb = join(dir, 'shortshb.pcapng');
    writeFileSync(shortShb, readFileSync(ng).subarray(0, 20));
    await rejectsWith(shortShb, /shortshb\.pcapng ends after 20 bytes, inside the first PCAPNG Section Header Block/);
  }),
);

test(
  'torn final record/block: whole records are read and the torn bytes reported',
  withTmp(async (dir) => {
    const recs = randomRecords(40, 2);
    recs[39].data = Buffer.alloc(300, 9);
    recs[39].origLen = 300;
    const pcap = join(dir, 't.pcap');
    const ng = join(dir, 't.pcapng');
    await writePcap(pcap, recs);
    execFileSync('editcap', ['-F', 'pcapng', pcap, ng]);
    const ngBuf = readFileSync(ng);
    const ngLastOffset = (await readAll(ng))[39].fileOffset;
    const ngLastBlockLen = ngBuf.readUInt32LE(ngLastOffset + 4);
    assert.equal(ngLastOffset + ngLastBlockLen, ngBuf.length, 'the last packet block ends the file');

    for (const [path, lastUnit] of [
      [pcap, 16 + 300],
      [ng, ngLastBlockLen],
    ] as const) {
      const full = readFileSync(path);
      for (const cut of [3, 200, lastUnit - 7]) {
        writeFileSync(path, full.subarray(0, full.length - cut));
        const torn: number[] = [];
        const got = await readAll(path, (n) => torn.push(n));
        assert.equal(got.length, 39, `${path} cut ${cut}`);
        assert.deepEqual(torn, [lastUnit - cut]);
        assert.deepEqual(got[38].data, recs[38].data);
      }
      // Cut exactly at a record boundary: nothing torn, onTorn not called.
      writeFileSync(path, full.subarray(0, full.length - lastUnit));
      const torn: number[] = [];
      assert.equal((await readAll(path, (n) => torn.push(n))).length, 39);
      assert.deepEqual(torn, []);
      writeFileSync(path, full);
    }
  }),
);

test(
  'CaptureStreamParser: any chunking gives the same records and offsets, PCAP and PCAPNG',
  withTmp(async (dir) => {
    const recs = randomRecords(300, 3, 4000);
    const pcap = join(dir, 'c.pcap');
    const ng = join(dir, 'c.pcapng');
    await writePcap(pcap, recs);
    execFileSync('editcap', ['-F', 'pcapng', pcap, ng]);
    for (const path of [pcap, ng]) {
      const buf = readFileSync(path);
      const whole = pushInChunks(buf, () => buf.length);
      assert.equal(whole.recs.length, recs.length);
      assert.equal(whole.torn, 0);
      const ref = whole.recs.map(plain);
      const rnd = prng(5);
      for (const max of [1, 7, 100, 5000, 70000]) {
        const got = pushInChunks(buf, () => 1 + Math.floor(rnd() * max));
        assert.deepEqual(got.recs.map(plain), ref, `${path} chunks up to ${max}`);
        assert.equal(got.torn, 0);
      }
    }
  }),
);

test('CaptureStreamParser: a corrupt length fails as soon as its header arrives, with the offset', () => {
  const p = new CaptureStreamParser('live.pcap');
  const hdr = Buffer.alloc(PCAP_HEADER_LEN);
  hdr.writeUInt32LE(0xa1b2c3d4, 0);
  hdr.writeUInt16LE(2, 4);
  hdr.writeUInt16LE(4, 6);
  hdr.writeUInt32LE(65535, 16);
  hdr.writeUInt32LE(1, 20);
  const rec = Buffer.alloc(16 + 4);
  rec.writeUInt32LE(4, 8);
  rec.writeUInt32LE(4, 12);
  assert.deepEqual(p.push(Buffer.concat([hdr, rec])).length, 1);
  const bad = Buffer.alloc(16);
  bad.writeUInt32LE(0x40000000, 8);
  bad.writeUInt32LE(0x40000000, 12);
  assert.throws(
    () => {
      p.push(bad.subarray(0, 9));
      p.push(bad.subarray(9));
    },
    (e: unknown) => e instanceof CaptureFormatError && e.offset === 44 && /live\.pcap .* at offset 44: caplen 1073741824 exceeds the limit 262144/.test(e.message),
  );
});

test(
  'readCaptureFile: multi-MiB file, records kept across chunks stay intact; corruption mid-file throws after earlier records',
  withTmp(async (dir) => {
    const recs = randomRecords(3000, 4, 2500);
    const path = join(dir, 'big.pcap');
    await writePcap(path, recs, false);
    const got = await readAll(path);
    assert.ok(readFileSync(path).length > 3 * (1 << 20));
    assert.equal(got.length, recs.length);
    got.forEach((g, i) => assert.ok(g.data.equals(recs[i].data), `record ${i}`));

    const buf = readFileSync(path);
    const off = got[2000].fileOffset;
    buf.writeUInt32LE(0xffffff, off + 8);
    writeFileSync(path, buf);
    let seen = 0;
    await assert.rejects(
      (async () => {
        for await (const r of readCaptureFile(path)) {
          void r;
          seen++;
        }
      })(),
      (e: unknown) => e instanceof CaptureFormatError && e.offset === off && e.message.includes(`offset ${off}`),
    );
    assert.ok(seen >= 1 && seen <= 2000, `yielded ${seen} before the corrupt record`);
  }),
);

test(
  'readCaptureFile: stopping early closes the file',
  withTmp(async (dir) => {
    const path = join(dir, 'e.pcap');
    await writePcap(path, randomRecords(50, 6));
    const fds = () => readdirSync('/proc/self/fd').length;
    const before = fds();
    for (let i = 0; i < 20; i++) {
      for await (const r of readCaptureFile(path)) {
        void r;
        break;
      }
    }
    assert.equal(fds(), before);
  }),
);
