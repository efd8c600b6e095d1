import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CaptureFormatError } from './errors';
import { makeInterface, PcapngParser, setPcapngTimestamp } from './pcapng';
import { readCaptureFile } from './reader';
import { LINKTYPE, type PacketRecord } from './types';
import { PcapWriter, type WritableRecord } from './writer';
import { prng, withTmp } from '../../test/support/with-tmp';

function randomRecords(n: number, seed: number, startSec: number): WritableRecord[] {
  const rnd = prng(seed);
  const out: WritableRecord[] = [];
  let sec = startSec;
  for (let i = 0; i < n; i++) {
    sec += rnd() < 0.5 ? 1 : 0;
    const len = Math.floor(rnd() * 1500);
    const data = Buffer.alloc(len);
    for (let k = 0; k < len; k++) data[k] = Math.floor(rnd() * 256);
    out.push({ tsSec: sec, tsNsec: Math.floor(rnd() * 1e9), origLen: len + (i % 7 === 0 ? 40 : 0), data });
  }
  return out;
}

async function writePcap(path: string, recs: WritableRecord[], linkType: number, nanos: boolean): Promise<void> {
  const w = new PcapWriter(createWriteStream(path), { linkType, nanos });
  for (const r of recs) if (!w.write(r)) await w.waitDrain();
  await w.end();
}

async function readAll(path: string): Promise<PacketRecord[]> {
  const out: PacketRecord[] = [];
  for await (const r of readCaptureFile(path)) out.push(r);
  return out;
}

function tshark(path: string, fields: string[]): string[][] {
  const args = ['-r', path, '-T', 'fields'];
  for (const f of fields) args.push('-e', f);
  return execFileSync('tshark', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('\t'));
}

const epoch = (sec: number, nsec: number) => `${sec}.${String(nsec).padStart(9, '0')}`;

/** Writes PCAPNG blocks by hand, so tests do not depend on the parser's own idea of the layout. */
class NgBuilder {
  private parts: Buffer[] = [];
  private le = true;

  private u32(v: number): Buffer {
    const b = Buffer.alloc(4);
    if (this.le) b.writeUInt32LE(v);
    else b.writeUInt32BE(v);
    return b;
  }
  private u16(v: number): Buffer {
    const b = Buffer.alloc(2);
    if (this.le) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  }
  private pad(b: Buffer): Buffer {
    return Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  }
  private option(code: number, value: Buffer): Buffer {
    return Buffer.concat([this.u16(code), this.u16(value.length), this.pad(value)]);
  }
  private endOpts(): Buffer {
    return Buffer.alloc(4);
  }

  block(type: number, body: Buffer): this {
    const b = this.pad(body);
    const len = 12 + b.length;
    this.parts.push(this.u32(type), this.u32(len), b, this.u32(len));
    return this;
  }

  shb(le: boolean): this {
    this.le = le;
    const body = Buffer.concat([
      this.u32(0x1a2b3c4d),
      this.u16(1),
      this.u16(0),
      Buffer.alloc(8, 0xff),
      this.option(4, Buffer.from('tracefleet test')),
      this.endOpts(),
    ]);
    return this.block(0x0a0d0d0a, body);
  }

  idb(linkType: number, snaplen: number, opts: { tsresol?: number; tsoffset?: bigint } = {}): this {
    const o: Buffer[] = [this.option(2, Buffer.from('eth-test'))];
    if (opts.tsresol !== undefined) o.push(this.option(9, Buffer.from([opts.tsresol])));
    if (opts.tsoffset !== undefined) {
      const v = Buffer.alloc(8);
      if (this.le) v.writeBigInt64LE(opts.tsoffset);
      else v.writeBigInt64BE(opts.tsoffset);
      o.push(this.option(14, v));
    }
    return this.block(1, Buffer.concat([this.u16(linkType), this.u16(0), this.u32(snaplen), ...o, this.endOpts()]));
  }

  epb(ifId: number, ts: bigint, data: Buffer, origLen = data.length): this {
    return this.block(
      6,
      Buffer.concat([
        this.u32(ifId),
        this.u32(Number(ts >> 32n)),
        this.u32(Number(ts & 0xffffffffn)),
        this.u32(data.length),
        this.u32(origLen),
        this.pad(data),
        this.option(1, Buffer.from('a comment')),
        this.endOpts(),
      ]),
    );
  }

  pb(ifId: number, ts: bigint, data: Buffer, origLen = data.length): this {
    return this.block(
      2,
      Buffer.concat([
        this.u16(ifId),
        this.u16(0),
        this.u32(Number(ts >> 32n)),
        this.u32(Number(ts & 0xffffffffn)),
        this.u32(data.length),
        this.u32(origLen),
        this.pad(data),
      ]),
    );
  }

  spb(data: Buffer, origLen = data.length): this {
    return this.block(3, Buffer.concat([this.u32(origLen), data]));
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Reference conversion, straight from the definition, in BigInt. */
function refTime(ts: bigint, base: 10 | 2, exp: number, offset = 0n): [number, number] {
  const ns = base === 10 ? (ts * 1_000_000_000n) / 10n ** BigInt(exp) : (ts * 1_000_000_000n) >> BigInt(exp);
  return [Number(ns / 1_000_000_000n + offset), Number(ns % 1_000_000_000n)];
}

const stripOffset = (r: PacketRecord) => ({ ...r, fileOffset: 0, interfaceId: 0, data: Buffer.from(r.data) });

test(
  'PCAPNG from "editcap -F pcapng" of a µs PCAP has the same records',
  withTmp(async (dir) => {
    const recs = randomRecords(300, 1, 1_650_000_000);
    const pcap = join(dir, 'a.pcap');
    const ng = join(dir, 'a.pcapng');
    await writePcap(pcap, recs, LINKTYPE.ETHERNET, false);
    execFileSync('editcap', ['-F', 'pcapng', pcap, ng]);
    const fromPcap = await readAll(pcap);
    const fromNg = await readAll(ng);
    assert.equal(fromNg.length, recs.length);
    assert.deepEqual(fromNg.map(stripOffset), fromPcap.map(stripOffset));
    assert.ok(fromNg.every((r) => r.interfaceId === 0 && r.linkType === LINKTYPE.ETHERNET));
    // fileOffset points at each EPB: strictly increasing, first after SHB+IDB.
    assert.ok(fromNg[0].fileOffset > 0);
    for (let i = 1; i < fromNg.length; i++) assert.ok(fromNg[i].fileOffset > fromNg[i - 1].fileOffset);
    const buf = readFileSync(ng);
    assert.ok(fromNg.every((r) => buf.readUInt32LE(r.fileOffset) === 6));
  }),
);

test(
  'PCAPNG with if_tsresol=9 (editcap of a nanosecond PCAP) keeps exact nanoseconds',
  withTmp(async (dir) => {
    const recs = randomRecords(300, 2, 1_760_000_000);
    const pcap = join(dir, 'n.pcap');
    const ng = join(dir, 'n.pcapng');
    await writePcap(pcap, recs, LINKTYPE.RAW, true);
    execFileSync('editcap', ['-F', 'pcapng', pcap, ng]);
    const got = await readAll(ng);
    assert.equal(got.length, recs.length);
    got.forEach((g, i) => {
      assert.equal(g.tsSec, recs[i].tsSec);
      assert.equal(g.tsNsec, recs[i].tsNsec);
      assert.equal(g.origLen, recs[i].origLen);
      assert.equal(g.linkType, LINKTYPE.RAW);
      assert.deepEqual(g.data, recs[i].data);
    });
    const ts = tshark(ng, ['frame.time_epoch']).map((f) => f[0]);
    assert.deepEqual(ts, got.map((g) => epoch(g.tsSec, g.tsNsec)));
  }),
);

test(
  'PCAPNG from mergecap of two link types: two interfaces, each record tagged right',
  withTmp(async (dir) => {
    const eth = randomRecords(150, 3, 1_700_000_000);
    const sll = randomRecords(150, 4, 1_700_000_000);
    const a = join(dir, 'eth.pcap');
    const b = join(dir, 'sll.pcap');
    const m = join(dir, 'm.pcapng');
    await writePcap(a, eth, LINKTYPE.ETHERNET, true);
    await writePcap(b, sll, LINKTYPE.LINUX_SLL, true);
    execFileSync('mergecap', ['-F', 'pcapng', '-w', m, a, b]);
    const got = await readAll(m);
    assert.equal(got.length, eth.length + sll.length);
    const byIf = new Map<number, PacketRecord[]>();
    for (const r of got) byIf.set(r.interfaceId, [...(byIf.get(r.interfaceId) ?? []), r]);
    assert.deepEqual([...byIf.keys()].sort(), [0, 1]);
    const linkOf = (id: number) => byIf.get(id)![0].linkType;
    assert.deepEqual(new Set([linkOf(0), linkOf(1)]), new Set([LINKTYPE.ETHERNET, LINKTYPE.LINUX_SLL]));
    for (const [id, rs] of byIf) {
      assert.ok(rs.every((r) => r.linkType === linkOf(id)));
      const src = linkOf(id) === LINKTYPE.ETHERNET ? eth : sll;
      assert.deepEqual(
        rs.map((r) => [r.tsSec, r.tsNsec, r.origLen, r.data.toString('hex')]),
        src.map((r) => [r.tsSec, r.tsNsec, r.origLen, r.data.toString('hex')]),
      );
    }
    const ref = tshark(m, ['frame.time_epoch', 'frame.interface_id', 'frame.len']);
    assert.deepEqual(ref, got.map((g) => [epoch(g.tsSec, g.tsNsec), String(g.interfaceId), String(g.origLen)]));
  }),
);

test(
  'hand-built PCAPNG: sections of both byte orders, resolutions, SPB, obsolete PB, skipped blocks; tshark agrees',
  withTmp(async (dir) => {
    const d = (n: number, fill: number) => Buffer.alloc(n, fill);
    const t0 = 1_712_345_678n;
    const b = new NgBuilder()
      .shb(true)
      .idb(LINKTYPE.ETHERNET, 0) // default µs
      .idb(LINKTYPE.RAW, 65535, { tsresol: 9 })
      .block(4, Buffer.alloc(8)) // NRB (empty record list)
      .epb(0, t0 * 1_000_000n + 123_456n, d(60, 1), 80)
      .epb(1, t0 * 1_000_000_000n + 987_654_321n, d(41, 2))
      .block(5, Buffer.alloc(12)) // ISB
      .block(0x80000001, Buffer.from('local-use block payload')) // unknown type
      .pb(1, t0 * 1_000_000_000n + 5n, d(33, 3), 50)
      .shb(false) // new section: interfaces reset, big-endian
      .idb(LINKTYPE.LINUX_SLL, 64, { tsresol: 0x80 | 30 }) // 2^-30 s
      .idb(LINKTYPE.IPV4, 0, { tsresol: 3 }) // ms
      .spb(d(64, 4), 100) // cut to the interface's snaplen 64
      .epb(0, (t0 << 30n) + 123_456_789n, d(64, 5), 1000)
      .epb(1, t0 * 1000n + 999n, d(10, 6))
      .shb(true)
      .idb(LINKTYPE.LINUX_SLL2, 0, { tsresol: 6 })
      .spb(d(10, 7), 9);
    const path = join(dir, 'h.pcapng');
    writeFileSync(path, b.bytes());

    const got = await readAll(path);
    const summary = got.map((r) => [r.interfaceId, r.linkType, r.tsSec, r.tsNsec, r.capLen, r.origLen, r.data[0]]);
    const [s2a, n2a] = refTime((t0 << 30n) + 123_456_789n, 2, 30);
    assert.deepEqual(summary, [
      [0, LINKTYPE.ETHERNET, Number(t0), 123_456_000, 60, 80, 1],
      [1, LINKTYPE.RAW, Number(t0), 987_654_321, 41, 41, 2],
      [1, LINKTYPE.RAW, Number(t0), 5, 33, 50, 3],
      [0, LINKTYPE.LINUX_SLL, 0, 0, 64, 100, 4],
      [0, LINKTYPE.LINUX_SLL, s2a, n2a, 64, 1000, 5],
      [1, LINKTYPE.IPV4, Number(t0), 999_000_000, 10, 10, 6],
      [0, LINKTYPE.LINUX_SLL2, 0, 0, 9, 9, 7],
    ]);
    assert.equal(n2a, Number(((123_456_789n * 1_000_000_000n) >> 30n) % 1_000_000_000n));
    assert.ok(got.every((r) => r.data.length === r.capLen));

    const ref = tshark(path, ['frame.time_epoch', 'frame.interface_id', 'frame.len', 'frame.cap_len']);
    assert.equal(ref.length, got.length);
    ref.forEach(([t, id, len, cap], i) => {
      const g = got[i];
      // SPBs carry no timestamp and tshark prints none for them.
      if (g.tsSec !== 0) assert.equal(t, epoch(g.tsSec, g.tsNsec), `packet ${i + 1}`);
      assert.equal(Number(id), g.interfaceId, `packet ${i + 1}`);
      assert.equal(Number(len), g.origLen, `packet ${i + 1}`);
      assert.equal(Number(cap), g.capLen, `packet ${i + 1}`);
    });
  }),
);

test(
  'if_tsoffset shifts every timestamp of its interface by whole seconds',
  withTmp(async (dir) => {
    const path = join(dir, 'o.pcapng');
    writeFileSync(
      path,
      new NgBuilder()
        .shb(true)
        .idb(LINKTYPE.ETHERNET, 0, { tsoffset: 1_000_000_000n })
        .epb(0, 700_000_000_123_456n, Buffer.alloc(20))
        .bytes(),
    );
    const [r] = await readAll(path);
    assert.equal(r.tsSec, 1_700_000_000);
    assert.equal(r.tsNsec, 123_456_000);
    assert.deepEqual(tshark(path, ['frame.time_epoch']), [['1700000000.123456000']]);
  }),
);

test('64-bit timestamps convert exactly for every resolution', () => {
  const rnd = prng(77);
  const rec = { tsSec: 0, tsNsec: 0 } as PacketRecord;
  const cases: Array<[10 | 2, number]> = [];
  for (let e = 0; e <= 15; e++) cases.push([10, e]);
  for (let e = 0; e <= 40; e++) cases.push([2, e]);
  for (const [base, exp] of cases) {
    const iface = makeInterface(1, 0, base, exp);
    const highs = [0, 1, 0x3ffff, 0x17a2b3c4, 0xffffffff];
    for (let k = 0; k < 200; k++) highs.push(Math.floor(rnd() * 2 ** 32));
    for (const high of highs) {
      for (const low of [0, 0xffffffff, Math.floor(rnd() * 2 ** 32)]) {
        const ts = (BigInt(high) << 32n) | BigInt(low);
        const [sec, nsec] = refTime(ts, base, exp);
        if (sec > Number.MAX_SAFE_INTEGER) continue;
        setPcapngTimestamp(rec, high, low, iface);
        assert.deepEqual([rec.tsSec, rec.tsNsec], [sec, nsec], `${base}^-${exp} ts=${ts}`);
      }
    }
  }
});

test('PCAPNG corruption is reported with the block offset', () => {
  const good = new NgBuilder().shb(true).idb(1, 0).epb(0, 1n, Buffer.alloc(8)).epb(0, 2n, Buffer.alloc(8)).bytes();
  const parse = (buf: Buffer) => {
    const p = new PcapngParser('t.pcapng');
    const out: PacketRecord[] = [];
    p.scan(buf, 0, (r) => out.push(r));
    return out;
  };
  const recs = parse(good);
  assert.equal(recs.length, 2);
  const second = recs[1].fileOffset;

  const trailer = Buffer.from(good);
  const len = trailer.readUInt32LE(second + 4);
  trailer.writeUInt32LE(len + 4, second + len - 4);
  assert.throws(() => parse(trailer), (e: unknown) => e instanceof CaptureFormatError && e.offset === second &&
    /t\.pcapng has a corrupt PCAPNG block at offset \d+: block length \d+ does not match its trailing copy/.test(e.message));

  const odd = Buffer.from(good);
  odd.writeUInt32LE(len + 2, second + 4);
  assert.throws(() => parse(odd), new RegExp(`offset ${second}: block length ${len + 2} is not a multiple of 4`));

  const huge = Buffer.from(good);
  huge.writeUInt32LE(0xfffffff0, second + 4);
  assert.throws(() => parse(huge.subarray(0, second + 12)), /exceeds the limit/);

  const badIf = Buffer.from(good);
  badIf.writeUInt32LE(3, second + 8);
  assert.throws(() => parse(badIf), new RegExp(`offset ${second}: packet refers to interface 3 but the section describes 1`));

  const capTooBig = Buffer.from(good);
  capTooBig.writeUInt32LE(1000, second + 20);
  assert.throws(() => parse(capTooBig), new RegExp(`offset ${second}: packet length 1000 exceeds`));

  const noShb = new NgBuilder().idb(1, 0).bytes();
  assert.throws(() => parse(noShb), /offset 0: expected a Section Header Block, found block type 0x1/);

  const badOrder = Buffer.from(good);
  badOrder.writeUInt32LE(0x12345678, 8);
  assert.throws(() => parse(badOrder), /unknown byte-order magic 0x78563412/);

  const v2 = Buffer.from(good);
  v2.writeUInt16LE(2, 12);
  assert.throws(() => parse(v2), /PCAPNG version 2\.0 at offset 12/);
});
