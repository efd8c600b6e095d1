import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CaptureFormatError } from './errors';
import {
  parsePcapHeader,
  pcapHeaderBytes,
  PCAP_HEADER_LEN,
  PCAP_RECORD_HEADER_LEN,
  readPcapEncodedAt,
  readPcapRecordAt,
  readPcapRecordsAt,
  scanPcapRecords,
  writePcapRecordHeader,
  type PcapHeader,
} from './pcap';
import { readCaptureFile } from './reader';
import { LINKTYPE, type PacketRecord } from './types';
import { prng, withTmp } from '../../test/support/with-tmp';

interface RawRec {
  sec: number;
  sub: number;
  data: Buffer;
  origLen: number;
}

/** Builds PCAP bytes by hand, in either byte order, independent of pcap.ts's writer. */
function buildPcap(o: { le: boolean; nanos: boolean; linkType: number; snaplen: number; recs: RawRec[] }): Buffer {
  const w32 = (b: Buffer, v: number, at: number) => (o.le ? b.writeUInt32LE(v, at) : b.writeUInt32BE(v, at));
  const w16 = (b: Buffer, v: number, at: number) => (o.le ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
  const h = Buffer.alloc(24);
  w32(h, o.nanos ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  w16(h, 2, 4);
  w16(h, 4, 6);
  w32(h, o.snaplen, 16);
  w32(h, o.linkType, 20);
  const parts: Buffer[] = [h];
  for (const r of o.recs) {
    const rh = Buffer.alloc(16);
    w32(rh, r.sec, 0);
    w32(rh, r.sub, 4);
    w32(rh, r.data.length, 8);
    w32(rh, r.origLen, 12);
    parts.push(rh, r.data);
  }
  return Buffer.concat(parts);
}

function randomRaw(n: number, seed: number, nanos: boolean, maxLen = 1600): RawRec[] {
  const rnd = prng(seed);
  const out: RawRec[] = [];
  for (let i = 0; i < n; i++) {
    const len = Math.floor(rnd() * maxLen);
    const data = Buffer.alloc(len);
    for (let k = 0; k < len; k++) data[k] = Math.floor(rnd() * 256);
    out.push({
      sec: 1_600_000_000 + i,
      sub: Math.floor(rnd() * (nanos ? 1e9 : 1e6)),
      data,
      origLen: len + (i % 5 === 0 ? 100 : 0),
    });
  }
  return out;
}

/** Writes `file` and then half of one more record: a record torn at the end, as a crash leaves it. */
function writeWithTornTail(path: string, file: Buffer, nanos: boolean): void {
  const extra = Buffer.alloc(16 + 50);
  writePcapRecordHeader(extra, 0, 1, 0, 50, 50, nanos);
  writeFileSync(path, Buffer.concat([file, extra.subarray(0, 30)]));
}

function scanAll(buf: Buffer, header: PcapHeader): PacketRecord[] {
  const out: PacketRecord[] = [];
  const used = scanPcapRecords(buf.subarray(PCAP_HEADER_LEN), PCAP_HEADER_LEN, header, (r) => out.push(r));
  assert.equal(used, buf.length - PCAP_HEADER_LEN);
  return out;
}

const strip = (r: PacketRecord) => ({ ...r, data: Buffer.from(r.data) });

test('parsePcapHeader: all four magics, both byte orders, link-type FCS bits masked', () => {
  for (const le of [true, false]) {
    for (const nanos of [true, false]) {
      const b = buildPcap({ le, nanos, linkType: 0x10000000 | LINKTYPE.LINUX_SLL2, snaplen: 65535, recs: [] });
      assert.deepEqual(parsePcapHeader(b, 'x'), {
        linkType: LINKTYPE.LINUX_SLL2,
        nanos,
        littleEndian: le,
        snaplen: 65535,
        versionMajor: 2,
        versionMinor: 4,
      });
    }
  }
  assert.deepEqual(parsePcapHeader(pcapHeaderBytes({ linkType: 1, nanos: true })), {
    linkType: 1,
    nanos: true,
    littleEndian: true,
    snaplen: 262144,
    versionMajor: 2,
    versionMinor: 4,
  });
});

test('parsePcapHeader: clear errors for garbage, short input and unknown versions', () => {
  assert.throws(
    () => parsePcapHeader(Buffer.from('7f454c4602010100000000000000000000000000000000ff', 'hex'), 'x.bin'),
    (e: unknown) =>
      e instanceof CaptureFormatError &&
      /^x\.bin is not a PCAP or PCAPNG file \(first bytes 0x7f454c46\); give a capture file$/.test(e.message),
  );
  assert.throws(() => parsePcapHeader(pcapHeaderBytes({ linkType: 1, nanos: false }).subarray(0, 10), 'short.pcap'), {
    name: 'CaptureFormatError',
    message: /short\.pcap ends after 10 bytes, inside the 24-byte PCAP file header/,
  });
  const v3 = pcapHeaderBytes({ linkType: 1, nanos: false });
  v3.writeUInt16LE(3, 4);
  assert.throws(() => parsePcapHeader(v3, 'v3.pcap'), /version 3\.4 at offset 4/);
});

test(
  'big-endian PCAP (hand-built) reads the same here and in tshark',
  withTmp(async (dir) => {
    for (const nanos of [false, true]) {
      const recs = randomRaw(50, nanos ? 11 : 12, nanos);
      const path = join(dir, `be-${nanos}.pcap`);
      writeFileSync(path, buildPcap({ le: false, nanos, linkType: LINKTYPE.ETHERNET, snaplen: 65535, recs }));
      const got: PacketRecord[] = [];
      for await (const r of readCaptureFile(path)) got.push(r);
      assert.equal(got.length, recs.length);
      const tshark = execFileSync('tshark', ['-r', path, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      })
        .trim()
        .split('\n');
      assert.equal(tshark.length, recs.length);
      got.forEach((g, i) => {
        assert.equal(g.tsSec, recs[i].sec);
        assert.equal(g.tsNsec, nanos ? recs[i].sub : recs[i].sub * 1000);
        assert.equal(g.origLen, recs[i].origLen);
        assert.deepEqual(g.data, recs[i].data);
        assert.equal(tshark[i], `${g.tsSec}.${String(g.tsNsec).padStart(9, '0')}\t${g.origLen}`);
      });
    }
  }),
);

test('scanPcapRecords: fed in random chunk sizes, as the indexer does, yields identical records', () => {
  const recs = randomRaw(400, 3, true, 3000);
  const file = buildPcap({ le: true, nanos: true, linkType: 1, snaplen: 262144, recs });
  const header = parsePcapHeader(file);
  const whole = scanAll(file, header).map(strip);
  assert.equal(whole.length, recs.length);
  const rnd = prng(99);
  for (let round = 0; round < 20; round++) {
    const got: PacketRecord[] = [];
    let pos = PCAP_HEADER_LEN;
    let pending = Buffer.alloc(0);
    let pendingAt = PCAP_HEADER_LEN;
    while (pos < file.length) {
      const size = 1 + Math.floor(rnd() * (round < 10 ? 40 : 8000));
      const chunk = file.subarray(pos, Math.min(file.length, pos + size));
      pos += chunk.length;
      const buf = Buffer.concat([pending, chunk]);
      const used = scanPcapRecords(buf, pendingAt, header, (r) => got.push(strip(r)));
      pending = buf.subarray(used);
      pendingAt += used;
    }
    assert.equal(pending.length, 0);
    assert.deepEqual(got, whole);
  }
  // Last record torn: consumed stops at its header.
  const torn = file.subarray(PCAP_HEADER_LEN, file.length - 1);
  const n: PacketRecord[] = [];
  const used = scanPcapRecords(torn, PCAP_HEADER_LEN, header, (r) => n.push(r));
  assert.equal(n.length, recs.length - 1);
  assert.equal(PCAP_HEADER_LEN + used, whole[whole.length - 1].fileOffset);
});

test('scanPcapRecords: µs field of a second or more is carried into seconds', () => {
  const file = buildPcap({
    le: true,
    nanos: false,
    linkType: 1,
    snaplen: 100,
    recs: [{ sec: 10, sub: 2_500_000, data: Buffer.alloc(4), origLen: 4 }],
  });
  const [r] = scanAll(file, parsePcapHeader(file));
  assert.equal(r.tsSec, 12);
  assert.equal(r.tsNsec, 500_000_000);
});

test('scanPcapRecords: corrupt caplen throws naming the file offset; caplen > origlen too', () => {
  const recs = randomRaw(10, 5, false, 200);
  const file = buildPcap({ le: true, nanos: false, linkType: 1, snaplen: 65535, recs });
  const header = parsePcapHeader(file);
  const offsets = scanAll(file, header).map((r) => r.fileOffset);
  const bad = Buffer.from(file);
  bad.writeUInt32LE(0x7fffffff, offsets[6] + 8);
  // Offset 1000 into the "file" for the slice: the message must add it.
  const slice = bad.subarray(PCAP_HEADER_LEN);
  assert.throws(
    () => scanPcapRecords(slice, 1000, header, () => undefined, 'seg.pcap'),
    (e: unknown) =>
      e instanceof CaptureFormatError &&
      e.offset === 1000 + offsets[6] - PCAP_HEADER_LEN &&
      e.message.includes(`seg.pcap has a corrupt PCAP record header at offset ${1000 + offsets[6] - PCAP_HEADER_LEN}`) &&
      e.message.includes('caplen 2147483647 exceeds the limit 262144'),
  );
  // Header alone (data not yet arrived) is enough to detect it.
  const justHeader = bad.subarray(offsets[6], offsets[6] + PCAP_RECORD_HEADER_LEN);
  assert.throws(() => scanPcapRecords(justHeader, offsets[6], header, () => undefined), CaptureFormatError);

  const bad2 = Buffer.from(file);
  bad2.writeUInt32LE(recs[3].data.length + 1, offsets[3] + 8);
  bad2.writeUInt32LE(recs[3].data.length, offsets[3] + 12);
  assert.throws(() => scanAll(bad2, header), new RegExp(`offset ${offsets[3]}: caplen \\d+ exceeds the original length`));

  // A big snaplen raises the limit.
  const big = buildPcap({
    le: true,
    nanos: false,
    linkType: 1,
    snaplen: 1 << 20,
    recs: [{ sec: 1, sub: 0, data: Buffer.alloc(300_000), origLen: 300_000 }],
  });
  assert.equal(scanAll(big, parsePcapHeader(big)).length, 1);
});

test(
  'readPcapRecordAt / readPcapRecordsAt return exactly the records at the offsets',
  withTmp((dir) => {
    const rnd = prng(21);
    const recs = randomRaw(3000, 8, true, 1500);
    // A few records longer than the batch reader's tail guess, and a long gap.
    recs[100].data = Buffer.alloc(9000, 1);
    recs[100].origLen = 9000;
    recs[1500].data = Buffer.alloc(200_000, 2);
    recs[1500].origLen = 200_000;
    const file = buildPcap({ le: true, nanos: true, linkType: 1, snaplen: 262144, recs });
    const header = parsePcapHeader(file);
    const all = scanAll(file, header).map(strip);
    const path = join(dir, 'r.pcap');
    writeWithTornTail(path, file, true);
    const fd = openSync(path, 'r');
    try {
      for (const i of [0, 100, 1500, 2999]) assert.deepEqual(readPcapRecordAt(fd, all[i].fileOffset, header), all[i]);
      assert.equal(readPcapRecordAt(fd, file.length, header), null, 'torn record');
      assert.equal(readPcapRecordAt(fd, file.length + 10_000, header), null, 'beyond EOF');

      const pickSets: number[][] = [
        all.map((_, i) => i),
        all.map((_, i) => i).filter(() => rnd() < 0.1),
        all.map((_, i) => i).filter(() => rnd() < 0.005),
        [99, 100, 101, 1499, 1500, 1501, 2998, 2999],
      ];
      for (const picks of pickSets) {
        const offsets = picks.map((i) => all[i].fileOffset);
        const got = [...readPcapRecordsAt(fd, offsets, header)];
        assert.deepEqual(got, picks.map((i) => all[i]));
      }
      // Torn/out-of-range offsets are skipped, the rest still come back.
      const withTorn = [all[2998].fileOffset, all[2999].fileOffset, file.length, file.length + 100];
      assert.deepEqual([...readPcapRecordsAt(fd, withTorn, header)], [all[2998], all[2999]]);
      // Descending order still works.
      assert.deepEqual([...readPcapRecordsAt(fd, [all[5].fileOffset, all[2].fileOffset], header)], [all[5], all[2]]);
      // Records stay valid after the generator moves on (window reuse).
      const kept = [...readPcapRecordsAt(fd, all.slice(0, 50).map((r) => r.fileOffset), header)];
      assert.deepEqual(kept, all.slice(0, 50));

      const bad = Buffer.from(file);
      bad.writeUInt32LE(5_000_000, all[10].fileOffset + 8);
      writeFileSync(path, bad);
      assert.throws(() => readPcapRecordAt(fd, all[10].fileOffset, header), new RegExp(`offset ${all[10].fileOffset}`));
      assert.throws(
        () => [...readPcapRecordsAt(fd, [all[9].fileOffset, all[10].fileOffset], header)],
        new RegExp(`offset ${all[10].fileOffset}`),
      );
    } finally {
      closeSync(fd);
    }
  }),
);

test(
  'readPcapEncodedAt gives the bytes of the records at the offsets: back-to-back ones as one range, the rest decoded',
  withTmp((dir) => {
    for (const nanos of [true, false]) {
      const rnd = prng(nanos ? 5 : 6);
      const recs = randomRaw(2000, nanos ? 31 : 32, nanos, 1500);
      recs[100].data = Buffer.alloc(9000, 1);
      recs[100].origLen = 9000;
      // Beyond the snaplen asked for: decoded, for the caller's writer to judge.
      recs[700].data = Buffer.alloc(70_000, 2);
      recs[700].origLen = 70_000;
      // A sub-second field out of range, which a reader carries into the seconds: decoded too.
      recs[900].sub = nanos ? 1_500_000_000 : 1_500_000;
      const file = buildPcap({ le: true, nanos, linkType: 1, snaplen: 262144, recs });
      const header = parsePcapHeader(file);
      const all = scanAll(file, header);
      const path = join(dir, 'e.pcap');
      writeWithTornTail(path, file, nanos);
      const fd = openSync(path, 'r');
      try {
        const picks: number[][] = [
          all.map((_, i) => i),
          all.map((_, i) => i).filter(() => rnd() < 0.3),
          all.map((_, i) => i).filter(() => rnd() < 0.01),
          [99, 100, 101, 699, 700, 701, 899, 900, 901, 1998, 1999],
        ];
        for (const p of picks) {
          const offsets = p.map((i) => all[i].fileOffset);
          const want = Buffer.concat(p.filter((i) => i !== 900).map((i) => file.subarray(all[i].fileOffset, all[i].fileOffset + PCAP_RECORD_HEADER_LEN + all[i].capLen)));
          const parts: Buffer[] = [];
          let records = 0;
          let ranges = 0;
          const decoded: number[] = [];
          for (const item of readPcapEncodedAt(fd, [...offsets, file.length], header, 65_536, { window: Buffer.alloc(0) })) {
            if ('buf' in item) {
              parts.push(Buffer.from(item.buf.subarray(item.start, item.end)));
              records += item.records;
              ranges++;
            } else {
              decoded.push(item.fileOffset);
              if (item.fileOffset === all[900].fileOffset) {
                assert.equal(item.tsNsec, 500_000_000);
                continue;
              }
              const h = Buffer.alloc(PCAP_RECORD_HEADER_LEN);
              writePcapRecordHeader(h, 0, item.tsSec, item.tsNsec, item.capLen, item.origLen, nanos);
              parts.push(h, Buffer.from(item.data));
              records++;
            }
          }
          assert.ok(Buffer.concat(parts).equals(want), `${p.length} picks`);
          assert.equal(records, p.filter((i) => i !== 900).length);
          for (const i of [700, 900]) assert.equal(decoded.includes(all[i].fileOffset), p.includes(i));
          // All records: a range per coalesced read (around the decoded ones), not one a record.
          if (p.length === all.length) assert.ok(ranges < 20, `${ranges} ranges`);
        }
        const bad = Buffer.from(file);
        bad.writeUInt32LE(5_000_000, all[10].fileOffset + 8);
        writeFileSync(path, bad);
        assert.throws(() => [...readPcapEncodedAt(fd, [all[9].fileOffset, all[10].fileOffset], header, 65_536, { window: Buffer.alloc(0) })], new RegExp(`offset ${all[10].fileOffset}`));
      } finally {
        closeSync(fd);
      }
    }
  }),
);
