import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, createReadStream, createWriteStream, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ethernet, ETH_IPV4, ipv4, prng, sll, udp } from '../../test/support/packets';
import { pcapHeaderBytes } from '../../shared/pcap/pcap';
import { PcapngWriter } from '../../shared/pcap/pcapng-writer';
import { readCaptureFile } from '../../shared/pcap/reader';
import { LINKTYPE, type PacketRecord } from '../../shared/pcap/types';
import { encodePcapRecord, PcapFileWriterSync } from '../../shared/pcap/writer';
import { networkBytes } from './dedup';
import { CaptureStreamReader } from '../../shared/pcap/stream-reader';
import { mergeCaptures, mergeGeneral, REORDER_PACKETS, type MergeInput, type MergeResult } from './merge';

const T0 = 1_790_000_000;

interface Pkt {
  sec: number;
  nsec: number;
  data: Buffer;
  linkType?: number;
}

/** A UDP packet from host h (source 10.0.h.1) whose payload names (h, i), so every packet differs. */
function ipPacket(h: number, i: number, payloadLen = 60): Buffer {
  const payload = Buffer.alloc(payloadLen, i & 0xff);
  payload.writeUInt32BE(i, 0);
  payload[4] = h;
  return ipv4({ src: `10.0.${h}.1`, dst: '192.0.2.1', proto: 17, id: i & 0xffff }, udp(40000 + h, 5060, payload));
}

/** A classic PCAP file, in either byte order. */
function pcapFile(pkts: Pkt[], linkType: number, nanos: boolean, bigEndian = false): Buffer {
  const parts: Buffer[] = [pcapHeaderBytes({ linkType, nanos })];
  for (const p of pkts) parts.push(...encodePcapRecord({ tsSec: p.sec, tsNsec: p.nsec, origLen: p.data.length, data: p.data }, nanos));
  const b = Buffer.concat(parts);
  if (!bigEndian) return b;
  // Swap every 32-bit header field (and the two u16 version fields) to big-endian.
  const swap32 = (o: number) => b.writeUInt32BE(b.readUInt32LE(o), o);
  swap32(0);
  b.writeUInt16BE(b.readUInt16LE(4), 4);
  b.writeUInt16BE(b.readUInt16LE(6), 6);
  for (const o of [8, 12, 16, 20]) swap32(o);
  let off = 24;
  while (off < b.length) {
    const cap = b.readUInt32LE(off + 8);
    for (const k of [0, 4, 8, 12]) swap32(off + k);
    off += 16 + cap;
  }
  return b;
}

async function pcapngFile(pkts: Array<Pkt & { linkType: number; nanos: boolean }>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const w = new PcapngWriter(new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }));
  for (const p of pkts) w.write({ tsSec: p.sec, tsNsec: p.nsec, origLen: p.data.length, data: p.data, linkType: p.linkType }, p.nanos);
  await w.end();
  return Buffer.concat(chunks);
}

/** Feeds bytes in random-sized chunks, so records straddle chunk boundaries. */
function chunked(buf: Buffer, seed: number): Readable {
  const rnd = prng(seed);
  const parts: Buffer[] = [];
  for (let o = 0; o < buf.length; ) {
    const n = 1 + Math.floor(rnd() * 3000);
    parts.push(buf.subarray(o, o + n));
    o += n;
  }
  return Readable.from(parts, { objectMode: false });
}

async function readAll(path: string): Promise<PacketRecord[]> {
  const out: PacketRecord[] = [];
  for await (const r of readCaptureFile(path)) out.push({ ...r, data: Buffer.from(r.data) });
  return out;
}

function tsharkCount(path: string): number {
  const out = execFileSync('tshark', ['-r', path, '-T', 'fields', '-e', 'frame.number'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter((l) => l.length > 0).length;
}

function tsharkTimes(path: string): string[] {
  const out = execFileSync('tshark', ['-r', path, '-T', 'fields', '-e', 'frame.time_epoch', '-e', 'frame.len'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return out.split('\n').filter((l) => l.length > 0);
}

/** Which host a merged packet came from: the third octet of its IPv4 source. */
function hostOf(r: { linkType: number; data: Buffer }): number {
  return networkBytes(r.linkType, r.data)[14];
}

const key = (sec: number, nsec: number, net: Buffer) => `${sec}.${String(nsec).padStart(9, '0')}|${net.toString('hex')}`;

function assertTimeOrdered(got: PacketRecord[]): void {
  for (let i = 1; i < got.length; i++) {
    const a = got[i - 1];
    const b = got[i];
    assert.ok(a.tsSec < b.tsSec || (a.tsSec === b.tsSec && a.tsNsec <= b.tsNsec), `packet ${i} goes back in time`);
  }
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-merge-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Increasing timestamps from a random walk, microsecond multiples when `micros`. */
function times(n: number, seed: number, micros: boolean): Array<[number, number]> {
  const rnd = prng(seed);
  let ns = 0;
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) {
    ns += Math.floor(rnd() * 2_000_000);
    if (micros) ns -= ns % 1000;
    out.push([T0 + Math.floor(ns / 1e9), ns % 1e9]);
  }
  return out;
}

test('three hosts: one time-ordered PCAP, ties by host order, exactly the union of their packets; tshark agrees', async () => {
  await withDir(async (dir) => {
    const per: Pkt[][] = [0, 1, 2].map((h) =>
      times(1500, 10 + h, true).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(h, i, 20 + ((i * 37) % 1200))) })),
    );
    // The same instants on every host, to check how ties are ordered.
    for (let i = 100; i < 1500; i += 100) for (const h of [1, 2]) Object.assign(per[h][i], { sec: per[0][i].sec, nsec: per[0][i].nsec });
    for (const h of [1, 2]) per[h].sort((a, b) => a.sec - b.sec || a.nsec - b.nsec);
    const inputs: MergeInput[] = [
      { host: 'h0', stream: chunked(pcapFile(per[0], LINKTYPE.ETHERNET, false), 1) },
      { host: 'h1', stream: chunked(pcapFile(per[1], LINKTYPE.ETHERNET, false, true), 2) },
      { host: 'h2', stream: chunked(pcapFile(per[2], LINKTYPE.ETHERNET, false), 3) },
    ];
    const out = join(dir, 'merged.pcap');
    const r = await mergeCaptures(inputs, createWriteStream(out));
    assert.deepEqual(r.notes, []);
    assert.equal(r.format, 'pcap');
    assert.equal(r.packets, 4500);
    assert.equal(r.duplicates, 0);
    assert.equal(r.bytes, per.flat().reduce((n, p) => n + p.data.length, 0));
    assert.equal(readFileSync(out).readUInt32LE(0), 0xa1b2c3d4, 'microsecond PCAP: every input is');

    const got = await readAll(out);
    assertTimeOrdered(got);
    let ties = 0;
    for (let i = 1; i < got.length; i++) {
      if (got[i].tsSec === got[i - 1].tsSec && got[i].tsNsec === got[i - 1].tsNsec) {
        ties++;
        assert.ok(hostOf(got[i - 1]) <= hostOf(got[i]), `tie at packet ${i} not in host order`);
      }
    }
    assert.ok(ties >= 14 * 2, `${ties} ties`);
    for (const h of [0, 1, 2]) {
      const want = per[h].map((p) => key(p.sec, p.nsec, p.data)).sort();
      const have = got.filter((g) => hostOf(g) === h).map((g) => key(g.tsSec, g.tsNsec, g.data)).sort();
      assert.deepEqual(have, want, `host ${h}`);
    }
    assert.equal(tsharkCount(out), 4500);
  });
});

test('a packet seen on eth0 and on any of one host is kept once (the first); other hosts\' copies and copies > 1 ms apart stay', async () => {
  await withDir(async (dir) => {
    const a: Array<Pkt & { linkType: number; nanos: boolean }> = [];
    const b: Pkt[] = [];
    const firstSeen: string[] = [];
    const N = 400;
    for (let i = 0; i < N; i++) {
      const ip = ipPacket(0, i, i % 3 === 0 ? 5 : 200); // every third one is short: the Ethernet copy gets padded
      const sec = T0 + Math.floor(i / 100);
      const nsec = (i % 100) * 5_000_000;
      const eth = ethernet(ETH_IPV4, ip, i % 2 ? { vlans: [{ vid: 100 }], padTo: 60 } : { padTo: 60 });
      const cooked = sll(ETH_IPV4, ip);
      // eth0 first for odd i, any first for even i; the copies are 3 µs apart.
      const [first, second] = i % 2 ? [eth, cooked] : [cooked, eth];
      const lt = (f: Buffer) => (f === eth ? LINKTYPE.ETHERNET : LINKTYPE.LINUX_SLL);
      a.push({ sec, nsec, data: first, linkType: lt(first), nanos: true });
      a.push({ sec, nsec: nsec + 3000, data: second, linkType: lt(second), nanos: true });
      firstSeen.push(key(sec, nsec, first));
      // Host b captured the very same packet at the very same time: a capture of its own.
      b.push({ sec, nsec, data: eth });
    }
    // Same bytes 2 ms apart on one host: a second packet, not a second capture.
    const again = ethernet(ETH_IPV4, ipPacket(0, 9999));
    a.push({ sec: T0 + 10, nsec: 0, data: again, linkType: LINKTYPE.ETHERNET, nanos: true });
    a.push({ sec: T0 + 10, nsec: 2_000_000, data: again, linkType: LINKTYPE.ETHERNET, nanos: true });

    const out = join(dir, 'merged.pcapng');
    const r = await mergeCaptures(
      [
        { host: 'a', stream: chunked(await pcapngFile(a), 5) },
        { host: 'b', stream: chunked(pcapFile(b, LINKTYPE.ETHERNET, true), 6) },
      ],
      createWriteStream(out),
    );
    assert.equal(r.duplicates, N);
    assert.equal(r.packets, N + 2 + N);
    assert.equal(r.format, 'pcapng', 'kept packets are Ethernet and cooked');
    assert.ok(r.notes.some((n) => n === `a: ${N} packets captured twice within 1000000 ns (two interfaces) were kept once`), r.notes.join('; '));
    assert.equal(r.notes.length, 1);

    const got = await readAll(out);
    assertTimeOrdered(got);
    // Host a's first copies and every one of host b's (same packets, same times) are there, nothing else.
    const kept = got.filter((g) => g.tsSec < T0 + 10).map((g) => key(g.tsSec, g.tsNsec, g.data));
    assert.deepEqual(kept.sort(), [...firstSeen, ...b.map((p) => key(p.sec, p.nsec, p.data))].sort());
    assert.equal(got.filter((g) => g.linkType === LINKTYPE.LINUX_SLL).length, N / 2);
    assert.equal(got.filter((g) => g.tsSec === T0 + 10).length, 2);
    assert.equal(tsharkCount(out), r.packets);
    // tshark sees the same times and lengths as our reader.
    assert.deepEqual(
      tsharkTimes(out),
      got.map((g) => `${g.tsSec}.${String(g.tsNsec).padStart(9, '0')}\t${g.origLen}`),
    );
  });
});

test('µs and ns inputs of one link type (PCAP and single-interface PCAPNG) give a nanosecond PCAP with exact times', async () => {
  await withDir(async (dir) => {
    const us: Pkt[] = times(300, 21, true).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(0, i)) }));
    const ns = times(300, 22, false).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(1, i)), linkType: LINKTYPE.ETHERNET, nanos: true }));
    const out = join(dir, 'merged.pcap');
    const r = await mergeCaptures(
      [
        { host: 'us', stream: chunked(pcapFile(us, LINKTYPE.ETHERNET, false), 7) },
        { host: 'ns', stream: chunked(await pcapngFile(ns), 8) },
      ],
      createWriteStream(out),
    );
    assert.equal(r.format, 'pcap');
    assert.deepEqual(r.notes, []);
    assert.equal(r.packets, 600);
    assert.equal(readFileSync(out).readUInt32LE(0), 0xa1b23c4d, 'nanosecond magic');
    const got = await readAll(out);
    assertTimeOrdered(got);
    const want = [...us, ...ns].map((p) => key(p.sec, p.nsec, p.data)).sort();
    assert.deepEqual(got.map((g) => key(g.tsSec, g.tsNsec, g.data)).sort(), want);
    assert.equal(tsharkCount(out), 600);
  });
});

test('empty inputs and torn tails are tolerated and noted; complete packets all kept', async () => {
  await withDir(async (dir) => {
    const p1: Pkt[] = times(50, 31, true).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(1, i)) }));
    const p2 = times(50, 32, false).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(2, i)), linkType: LINKTYPE.ETHERNET, nanos: true }));
    const torn = pcapFile(p1, LINKTYPE.ETHERNET, false);
    const tornNg = await pcapngFile(p2);
    const out = join(dir, 'merged.pcap');
    const r = await mergeCaptures(
      [
        { host: 'gone', stream: Readable.from([], { objectMode: false }) },
        { host: 'lost', stream: chunked(torn.subarray(0, torn.length - 30), 9) },
        { host: 'lostng', stream: chunked(tornNg.subarray(0, tornNg.length - 10), 10) },
      ],
      createWriteStream(out),
    );
    assert.equal(r.packets, 49 + 49);
    assert.ok(r.notes.includes('gone: the capture is empty (0 bytes)'), r.notes.join('; '));
    assert.ok(r.notes.some((n) => /^lost: the capture ends in a torn record \(\d+ bytes/.test(n)), r.notes.join('; '));
    assert.ok(r.notes.some((n) => /^lostng: the capture ends in a torn record \(\d+ bytes/.test(n)), r.notes.join('; '));
    assert.equal(r.notes.length, 3);
    const got = await readAll(out);
    assertTimeOrdered(got);
    assert.deepEqual(
      got.map((g) => key(g.tsSec, g.tsNsec, g.data)).sort(),
      [...p1.slice(0, 49), ...p2.slice(0, 49)].map((p) => key(p.sec, p.nsec, p.data)).sort(),
    );
    assert.equal(tsharkCount(out), 98);
  });
});

test('an empty merge is a valid empty PCAP of the first input header\'s link type, or Ethernet', async () => {
  await withDir(async (dir) => {
    const cases: Array<{ inputs: MergeInput[]; linkType: number }> = [
      { inputs: [], linkType: LINKTYPE.ETHERNET },
      { inputs: [{ host: 'a', stream: Readable.from([], { objectMode: false }) }], linkType: LINKTYPE.ETHERNET },
      {
        inputs: [
          { host: 'a', stream: Readable.from([], { objectMode: false }) },
          { host: 'b', stream: Readable.from([pcapHeaderBytes({ linkType: LINKTYPE.LINUX_SLL, nanos: true })], { objectMode: false }) },
          { host: 'c', stream: Readable.from([pcapHeaderBytes({ linkType: LINKTYPE.RAW, nanos: false })], { objectMode: false }) },
        ],
        linkType: LINKTYPE.LINUX_SLL,
      },
    ];
    for (const [i, c] of cases.entries()) {
      const out = join(dir, `empty${i}.pcap`);
      const r = await mergeCaptures(c.inputs, createWriteStream(out));
      assert.equal(r.packets, 0);
      assert.equal(r.format, 'pcap');
      const bytes = readFileSync(out);
      assert.equal(bytes.length, 24, 'header only');
      assert.equal(bytes.readUInt32LE(20), c.linkType);
      assert.deepEqual(await readAll(out), []);
      assert.equal(tsharkCount(out), 0);
    }
  });
});

test('an input that goes back in time: small disorder is sorted, a reversed capture still gives every packet, noted', async () => {
  await withDir(async (dir) => {
    const n = 3 * REORDER_PACKETS;
    const rev: Pkt[] = times(n, 41, false).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(0, i)) })).reverse();
    // Shuffled within blocks of 50: well inside the read-ahead.
    const jitter: Pkt[] = times(2000, 42, false).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(1, i)) }));
    const rnd = prng(43);
    for (let s = 0; s < jitter.length; s += 50) {
      for (let i = Math.min(s + 49, jitter.length - 1); i > s; i--) {
        const j = s + Math.floor(rnd() * (i - s + 1));
        [jitter[i], jitter[j]] = [jitter[j], jitter[i]];
      }
    }
    const out = join(dir, 'merged.pcap');
    const r = await mergeCaptures(
      [
        { host: 'backwards', stream: chunked(pcapFile(rev, LINKTYPE.ETHERNET, true), 11) },
        { host: 'jittery', stream: chunked(pcapFile(jitter, LINKTYPE.ETHERNET, true), 12) },
      ],
      createWriteStream(out),
    );
    assert.equal(r.packets, n + 2000);
    assert.equal(r.notes.length, 1, r.notes.join('; '));
    assert.match(r.notes[0], /^backwards: 2048 packets came later in the capture than the read-ahead \(1024 packets\) can sort; written where they were read, out of time order$/);
    const got = await readAll(out);
    for (const h of [0, 1]) {
      const mine = got.filter((g) => hostOf(g) === h);
      const src = h === 0 ? rev : jitter;
      assert.deepEqual(mine.map((g) => key(g.tsSec, g.tsNsec, g.data)).sort(), src.map((p) => key(p.sec, p.nsec, p.data)).sort());
      if (h === 1) assertTimeOrdered(mine);
    }
    // Each packet read from the reversed capture is its earliest yet, so out at once; the read-ahead's last ones come sorted.
    const back = got.filter((g) => hostOf(g) === 0);
    assertTimeOrdered(back.slice(-(REORDER_PACKETS - 1)));
  });
});

test('bytes that stop being a capture keep the packets before and are noted; a failing stream rejects the merge', async () => {
  await withDir(async (dir) => {
    const good: Pkt[] = times(2000, 51, true).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(0, i, 200)) }));
    const file = pcapFile(good, LINKTYPE.ETHERNET, false);
    const bad = Buffer.alloc(16);
    bad.writeUInt32LE(T0 + 100, 0);
    bad.writeUInt32LE(10_000_000, 8); // caplen far past any snaplen
    bad.writeUInt32LE(10_000_000, 12);
    const out = join(dir, 'merged.pcap');
    const r = await mergeCaptures(
      [
        { host: 'corrupt', stream: chunked(Buffer.concat([file, bad, Buffer.alloc(100)]), 13) },
        { host: 'text', stream: Readable.from([Buffer.from('hello, this is not a capture')], { objectMode: false }) },
      ],
      createWriteStream(out),
    );
    assert.ok(r.packets > 0 && r.packets <= 2000);
    assert.equal(r.notes.length, 2, r.notes.join('; '));
    assert.match(r.notes[0], /^corrupt: corrupt has a corrupt PCAP record header at offset \d+: caplen 10000000 exceeds the limit 262144.*packets from byte \d+ on are left out$/);
    assert.match(r.notes[1], /^text: text is not a PCAP or PCAPNG file/);
    assert.equal(tsharkCount(out), r.packets);

    let sent = false;
    const failing = new Readable({
      read() {
        if (!sent) {
          sent = true;
          this.push(file.subarray(0, 5000));
        } else this.destroy(new Error('connection reset'));
      },
    });
    const other = chunked(file, 14);
    const sink = createWriteStream(join(dir, 'failed.pcap'));
    await assert.rejects(
      mergeCaptures([{ host: 'ok', stream: other }, { host: 'flaky', stream: failing }], sink),
      /reading the capture of flaky failed: connection reset; nothing was merged, try again/,
    );
    assert.ok(other.destroyed, 'the other inputs are released');
    // The merge may reject before the file is even open: let it open and close before the directory goes.
    const closed = once(sink, 'close');
    sink.destroy();
    await closed;
  });
});

test('a link type a PCAPNG input declares only after the read-ahead, when the output is already a PCAP, is left out with a note', async () => {
  await withDir(async (dir) => {
    const pkts = times(REORDER_PACKETS + 500, 71, false).map(([sec, nsec], i) => {
      const late = i >= REORDER_PACKETS + 100;
      const ip = ipPacket(0, i);
      return { sec, nsec, data: late ? sll(ETH_IPV4, ip) : ethernet(ETH_IPV4, ip), linkType: late ? LINKTYPE.LINUX_SLL : LINKTYPE.ETHERNET, nanos: true };
    });
    const out = join(dir, 'merged.pcap');
    const r = await mergeCaptures([{ host: 'a', stream: chunked(await pcapngFile(pkts), 15) }], createWriteStream(out));
    assert.equal(r.format, 'pcap');
    assert.equal(r.packets, REORDER_PACKETS + 100);
    assert.deepEqual(r.notes, [
      '400 packets of link type 113 left out: that link type was first declared after the merged capture had started as a one-link-type PCAP',
    ]);
    assert.equal(tsharkCount(out), r.packets);
  });
});

test('options and inputs are checked', async () => {
  const sink = () => new Writable({ write: (_c, _e, cb) => cb() });
  await assert.rejects(mergeCaptures([], sink(), { dedupWindowNs: -1 }), /dedupWindowNs -1 must be a non-negative/);
  await assert.rejects(mergeCaptures([], sink(), { dedupWindowNs: NaN }), RangeError);
  await assert.rejects(mergeCaptures([{ host: 'x', stream: 'nope' as unknown as Readable }], sink()), /input 0 must be/);
});

test('network bytes: an Ethernet frame (padded, VLAN-tagged) and a cooked one of the same IP packet compare equal', () => {
  const ip = ipPacket(3, 1, 5);
  const a = networkBytes(LINKTYPE.ETHERNET, ethernet(ETH_IPV4, ip, { vlans: [{ vid: 7 }], padTo: 60 }));
  const b = networkBytes(LINKTYPE.LINUX_SLL, sll(ETH_IPV4, ip));
  assert.ok(a.equals(ip) && b.equals(ip));
  const junk = Buffer.from([1, 2, 3]);
  assert.ok(networkBytes(LINKTYPE.ETHERNET, junk).equals(junk), 'undecodable: the whole frame');
  assert.ok(networkBytes(999, junk).equals(junk));
});

test('a 50 MB capture merges with bounded memory', { timeout: 120_000 }, async () => {
  await withDir(async (dir) => {
    const files: string[] = [];
    const counts: number[] = [];
    for (const [h, target] of [[0, 50 << 20], [1, 8 << 20], [2, 8 << 20]] as const) {
      const path = join(dir, `h${h}.pcap`);
      const fd = openSync(path, 'w');
      const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos: true });
      const rnd = prng(60 + h);
      let ns = 0;
      let i = 0;
      while (w.position < target) {
        ns += Math.floor(rnd() * 200_000);
        const data = ethernet(ETH_IPV4, ipPacket(h, i, 100 + Math.floor(rnd() * 1300)));
        w.write({ tsSec: T0 + Math.floor(ns / 1e9), tsNsec: ns % 1e9, origLen: data.length, data });
        i++;
      }
      w.flush();
      closeSync(fd);
      files.push(path);
      counts.push(i);
    }
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    const out = join(dir, 'merged.pcap');
    let r;
    try {
      r = await mergeCaptures(files.map((f, h) => ({ host: `h${h}`, stream: createReadStream(f) })), createWriteStream(out));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    const growth = peak - before;
    assert.ok(growth < 64 << 20, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);
    assert.equal(r.packets, counts[0] + counts[1] + counts[2]);
    assert.deepEqual(r.notes, []);
    assert.equal(statSync(out).size, files.reduce((n, f) => n + statSync(f).size - 24, 24));
    let n = 0;
    let last = [0, 0];
    for await (const rec of readCaptureFile(out)) {
      assert.ok(rec.tsSec > last[0] || (rec.tsSec === last[0] && rec.tsNsec >= last[1]));
      last = [rec.tsSec, rec.tsNsec];
      n++;
    }
    assert.equal(n, r.packets);
  });
});

test('a fleet of 1000 tiny captures: the exact union in time order, with small memory (per input, what it holds)', { timeout: 120_000 }, async () => {
  await withDir(async (dir) => {
    const N = 1000;
    // Host i sends from 10.<i/256>.<i%256>.1, so each merged packet names its input.
    const pkt = (h: number, k: number) =>
      ethernet(ETH_IPV4, ipv4({ src: `10.${h >> 8}.${h & 255}.1`, dst: '192.0.2.1', proto: 17, id: k }, udp(5060, 5060, Buffer.alloc(40 + ((h * 7 + k) % 60), k))));
    const indexOf = (r: { linkType: number; data: Buffer }) => {
      const net = networkBytes(r.linkType, r.data);
      return net[13] * 256 + net[14];
    };
    const rnd = prng(1000);
    const per: Pkt[][] = [];
    const inputs: MergeInput[] = [];
    for (let h = 0; h < N; h++) {
      const pkts: Pkt[] = [0, 1, 2].map((k) => ({ sec: T0 + k, nsec: Math.floor(rnd() * 1e6) * 1000, data: pkt(h, k) }));
      // Every 10th host ties with host 0, instant for instant: ties go by input order.
      if (h % 10 === 0) pkts.forEach((p, k) => Object.assign(p, { sec: per[0]?.[k].sec ?? p.sec, nsec: per[0]?.[k].nsec ?? p.nsec }));
      per.push(pkts);
      // Mostly µs PCAP as our agents write; every 7th a ns PCAPNG; every 3rd arrives in small pieces.
      const bytes = h % 7 === 3 ? await pcapngFile(pkts.map((p) => ({ ...p, linkType: LINKTYPE.ETHERNET, nanos: true }))) : pcapFile(pkts, LINKTYPE.ETHERNET, false);
      inputs.push({ host: `agent-${h}`, stream: h % 3 === 1 ? chunked(bytes, h).pipe(new PassThrough()) : Readable.from([bytes], { objectMode: false }) });
    }

    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    let gcMs = 0;
    let gcs = 0;
    const obs = new PerformanceObserver((l) => {
      for (const e of l.getEntries()) {
        gcMs += e.duration;
        gcs++;
      }
    });
    gc();
    const used = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const before = used();
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, used());
    }, 1);
    obs.observe({ entryTypes: ['gc'] });
    const out = join(dir, 'merged.pcap');
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let r;
    try {
      r = await mergeCaptures(inputs, createWriteStream(out));
    } finally {
      clearInterval(sampler);
    }
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    peak = Math.max(peak, used());
    obs.disconnect();
    const growth = peak - before;
    console.log(
      `# 1000-input merge: ${wallMs.toFixed(0)} ms wall, ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms CPU, ` +
        `peak heap+arrayBuffers growth ${(growth / 2 ** 20).toFixed(1)} MiB, ${gcs} GCs ${gcMs.toFixed(0)} ms`,
    );
    assert.ok(growth < 64 << 20, `heap + array buffers grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);

    assert.equal(r.packets, 3 * N);
    assert.equal(r.duplicates, 0);
    assert.deepEqual(r.notes, []);
    assert.equal(r.format, 'pcap');
    assert.equal(readFileSync(out).readUInt32LE(0), 0xa1b23c4d, 'nanosecond PCAP: some inputs are');
    const got = await readAll(out);
    assertTimeOrdered(got);
    for (let i = 1; i < got.length; i++) {
      if (got[i].tsSec === got[i - 1].tsSec && got[i].tsNsec === got[i - 1].tsNsec) {
        assert.ok(indexOf(got[i - 1]) < indexOf(got[i]), `tie at packet ${i} not in input order`);
      }
    }
    const want = per.flatMap((ps) => ps.map((p) => key(p.sec, p.nsec, p.data))).sort();
    assert.deepEqual(got.map((g) => key(g.tsSec, g.tsNsec, g.data)).sort(), want);
    assert.equal(new Set(got.map(indexOf)).size, N);
    assert.equal(tsharkCount(out), 3 * N);
  });
});

// Where two hosts have a packet at the same instant, ours puts the earlier input's first (see the
// three-host test), mergecap 4.0 the later input's: those files differ by that order alone.
test('the same bytes as mergecap where nothing is a duplicate and no two hosts share an instant: µs and ns PCAPs, several writer batches', async () => {
  await withDir(async (dir) => {
    for (const nanos of [false, true]) {
      const per: Pkt[][] = [0, 1, 2, 3].map((h) =>
        times(3000 + 700 * h, 60 + h, !nanos).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(h, i, 20 + ((i * 53) % 1400))) })),
      );
      // No instant on two hosts (see above): apart by host number in the last digits.
      for (const p of per) for (const x of p) x.nsec -= x.nsec % (nanos ? 10 : 10_000);
      per.forEach((p, h) => p.forEach((x) => (x.nsec += nanos ? h : h * 1000)));
      const files = per.map((p, h) => {
        const f = join(dir, `h${h}-${nanos}.pcap`);
        const fd = openSync(f, 'w');
        const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos });
        for (const x of p) w.write({ tsSec: x.sec, tsNsec: x.nsec, origLen: x.data.length, data: x.data });
        w.flush();
        closeSync(fd);
        return f;
      });
      const ours = join(dir, `ours-${nanos}.pcap`);
      const theirs = join(dir, `mergecap-${nanos}.pcap`);
      const r = await mergeCaptures(files.map((f, h) => ({ host: `h${h}`, stream: createReadStream(f) })), createWriteStream(ours));
      assert.deepEqual(r.notes, []);
      assert.equal(r.duplicates, 0);
      execFileSync('mergecap', ['-F', nanos ? 'nsecpcap' : 'pcap', '-w', theirs, ...files], { stdio: 'ignore' });
      const a = readFileSync(ours);
      const b = readFileSync(theirs);
      assert.ok(a.length > 4 * 1024 * 1024, 'more than a few writer batches (1 MiB each to a file)');
      assert.equal(a.length, b.length, `${nanos ? 'ns' : 'µs'}: length`);
      assert.ok(a.equals(b), `${nanos ? 'ns' : 'µs'}: our merge and mergecap's differ`);
    }
  });
});

/**
 * Merges the inputs by the PCAP fast path (streams in chunks, then files)
 * and by the general path, and checks that they agree: result, notes,
 * bytes and what the observer saw. Returns the fast path's result.
 */
async function fastMatchesGeneral(files: Buffer[], hosts: string[], seed: number, corrupt = false): Promise<MergeResult> {
  const collect = () => {
    const chunks: Buffer[] = [];
    return { chunks, out: new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(Buffer.from(c)), cb()) }) };
  };
  const seen = (into: string[]) => (host: string, _lt: number, data: Buffer, sec: number, nsec: number) => into.push(`${host} ${sec}.${nsec} ${data.toString('hex')}`);
  const seenFast: string[] = [];
  const seenGeneral: string[] = [];
  const a = collect();
  const fast = await mergeCaptures(
    files.map((f, i) => ({ host: hosts[i], stream: chunked(f, seed * 31 + i) })),
    a.out,
    { observe: seen(seenFast) },
  );
  const b = collect();
  const inputs = files.map((f, i) => ({ host: hosts[i], stream: chunked(f, seed * 17 + i) }));
  const readers = inputs.map((x) => new CaptureStreamReader(x.stream, x.host));
  const general = await mergeGeneral(inputs, readers, b.out, { observe: seen(seenGeneral) }, 1_000_000);
  const fastNotes = fast.notes.map((n) => n.replace(/from byte \d+/, 'from byte N'));
  const generalNotes = general.notes.map((n) => n.replace(/from byte \d+/, 'from byte N'));
  if (corrupt) {
    // The general path leaves out the rest of the 64 KiB slice holding a corrupt header; the fast path keeps every record before it.
    assert.ok(fast.packets > general.packets, `seed ${seed}`);
    assert.deepEqual(fastNotes, generalNotes, `seed ${seed}`);
    return fast;
  }
  assert.deepEqual({ ...fast, notes: fastNotes }, { ...general, notes: generalNotes }, `seed ${seed}`);
  assert.ok(Buffer.concat(a.chunks).equals(Buffer.concat(b.chunks)), `seed ${seed}: the merged bytes differ`);
  assert.ok(seenFast.length === fast.packets && seenFast.every((x, i) => x === seenGeneral[i]), `seed ${seed}: the observer saw other packets`);
  // The same inputs as files the merge reads itself (as the dispatcher's spool gives them): the same result and bytes.
  await withDir(async (dir) => {
    const paths = files.map((f, i) => {
      const path = join(dir, `in${i}.pcap`);
      writeFileSync(path, f);
      return path;
    });
    const c = collect();
    const seenFile: string[] = [];
    const fromFiles = await mergeCaptures(
      paths.map((path, i) => ({ host: hosts[i], path })),
      c.out,
      { observe: seen(seenFile) },
    );
    assert.deepEqual(fromFiles, fast, `seed ${seed}: files`);
    assert.ok(Buffer.concat(c.chunks).equals(Buffer.concat(a.chunks)), `seed ${seed}: the merged bytes of files differ`);
    assert.deepEqual(seenFile, seenFast, `seed ${seed}: files: the observer saw other packets`);
    // Files in and a file out: the inputs' buffers and the output's batches then share one memory, and records are
    // copied within it (mergeSpace() in merge.ts), the batches reused as the file stream gives them back.
    const outPath = join(dir, 'out.pcap');
    const seenToFile: string[] = [];
    const toFile = await mergeCaptures(
      paths.map((path, i) => ({ host: hosts[i], path })),
      createWriteStream(outPath),
      { observe: seen(seenToFile) },
    );
    assert.deepEqual(toFile, fast, `seed ${seed}: files to a file`);
    assert.ok(readFileSync(outPath).equals(Buffer.concat(a.chunks)), `seed ${seed}: the merged bytes of files written to a file differ`);
    assert.deepEqual(seenToFile, seenFast, `seed ${seed}: files to a file: the observer saw other packets`);
  });
  return fast;
}

test('the PCAP fast path writes what the general path writes: disorder within and past the read-ahead, duplicates, mixed resolutions and byte orders, torn and corrupt ends', async () => {
  for (let seed = 1; seed <= 6; seed++) {
    const rnd = prng(seed * 7919);
    const files: Buffer[] = [];
    const hosts: string[] = [];
    const nInputs = 1 + (seed % 4);
    for (let h = 0; h < nInputs; h++) {
      const pkts: Pkt[] = [];
      let ns = Math.floor(rnd() * 50_000);
      const nanos = (seed + h) % 3 === 0;
      const n = 2500 + Math.floor(rnd() * 1500);
      for (let i = 0; i < n; i++) {
        ns += Math.floor(rnd() * 40_000);
        let t = ns;
        const r = rnd();
        // Back in time by a little (sorted by the read-ahead) or by a lot (written late, with a note).
        if (r < 0.01) t = Math.max(0, ns - Math.floor(rnd() * 2_000_000));
        else if (r < 0.012) t = Math.max(0, ns - 500_000_000);
        const nsec = nanos ? t % 1e9 : Math.floor((t % 1e9) / 1000) * 1000;
        const p = { sec: T0 + Math.floor(t / 1e9), nsec, data: ethernet(ETH_IPV4, ipPacket(h, i, 20 + Math.floor(rnd() * 900))) };
        pkts.push(p);
        // The same packet again, as a second interface of the host saw it.
        if (rnd() < 0.02) pkts.push({ ...p, nsec: Math.min(p.nsec + (nanos ? 300 : 1000), 999_999_000) });
      }
      let b = pcapFile(pkts, LINKTYPE.ETHERNET, nanos, h === 2);
      if (seed === 3 && h === 0) b = b.subarray(0, b.length - 37);
      if (seed === 4 && h === nInputs - 1) {
        b = Buffer.from(b);
        // A caplen no reader accepts, some way into the file.
        let off = 24;
        for (let k = 0; k < 1700; k++) off += 16 + b.readUInt32LE(off + 8);
        b.writeUInt32LE(10_000_000, off + 8);
      }
      files.push(b);
      // Two inputs of one host share its duplicate memory.
      hosts.push(seed === 5 && h === 1 ? 'h0' : `h${h}`);
    }
    const fast = await fastMatchesGeneral(files, hosts, seed, seed === 4);
    if (seed !== 4) assert.ok(fast.duplicates > 0 && fast.notes.some((n) => /out of time order/.test(n)), `seed ${seed}: ${fast.notes.join('; ')}`);
  }
});

test('one host, file in and file out: long runs go to the file as views of the input buffer while it moves and reads on; the general path\'s bytes, duplicates at random spacing, µs and ns, both byte orders', { timeout: 120_000 }, async () => {
  await withDir(async (dir) => {
    for (const [seed, nanos, bigEndian] of [[1, true, false], [2, false, false], [3, true, true]] as const) {
      const rnd = prng(seed * 104_729);
      const pkts: Pkt[] = [];
      const recent: Pkt[] = [];
      let ns = 0;
      // About 12 MiB: the input's buffer moves a dozen times with views of it still being written.
      for (let i = 0, bytes = 0; bytes < 12 << 20; i++) {
        ns += Math.floor(rnd() * 30_000);
        const nsec = nanos ? ns % 1e9 : Math.floor((ns % 1e9) / 1000) * 1000;
        const again = recent.length > 0 && rnd() < 0.03 ? recent[Math.floor(rnd() * recent.length)] : null;
        // A second capture of a recent packet: within the 1 ms window or past it, as the spacing falls.
        const p = { sec: T0 + Math.floor(ns / 1e9), nsec, data: again ? again.data : ethernet(ETH_IPV4, ipPacket(0, i, 20 + Math.floor(rnd() * 1400))) };
        pkts.push(p);
        recent.push(p);
        if (recent.length > 200) recent.shift();
        bytes += 16 + p.data.length;
      }
      const path = join(dir, `one-${seed}.pcap`);
      writeFileSync(path, pcapFile(pkts, LINKTYPE.ETHERNET, nanos, bigEndian));
      const chunks: Buffer[] = [];
      const general = await mergeGeneral(
        [{ host: 'a', path }],
        [new CaptureStreamReader(createReadStream(path), 'a')],
        new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(Buffer.from(c)), cb()) }),
        {},
        1_000_000,
      );
      const outPath = join(dir, `out-${seed}.pcap`);
      const r = await mergeCaptures([{ host: 'a', path }], createWriteStream(outPath));
      assert.deepEqual(r, general, `seed ${seed}`);
      assert.ok(r.duplicates > 100 && r.duplicates < pkts.length / 30, `seed ${seed}: ${r.duplicates} duplicates`);
      assert.ok(readFileSync(outPath).equals(Buffer.concat(chunks)), `seed ${seed}: the merged bytes differ`);
    }
  });
});

test('hosts interleaved packet by packet (runs of one): the fast path writes what the general path writes, duplicates on Ethernet, VLAN and cooked frames, disorder, µs and ns, byte orders, a torn end', async () => {
  for (const linkType of [LINKTYPE.ETHERNET, LINKTYPE.LINUX_SLL]) {
    for (let seed = 1; seed <= 3; seed++) {
      const rnd = prng(seed * 104_729 + linkType);
      const frame = (ip: Buffer, tagged: boolean) =>
        linkType === LINKTYPE.ETHERNET ? ethernet(ETH_IPV4, ip, tagged ? { vlans: [{ vid: 100 }], padTo: 60 } : { padTo: 60 }) : sll(ETH_IPV4, ip);
      // h0 on two interfaces (the second sees some of the first's packets again, VLAN-tagged on Ethernet), h1 in µs, h2 going back in time, h3 torn.
      const hosts = ['h0', 'h0', 'h1', 'h2', 'h3'];
      const nanos = [true, true, false, true, true];
      const pkts: Pkt[][] = hosts.map(() => []);
      const at = (t: number, k: number): Pkt => {
        const nsec = nanos[k] ? t % 1e9 : Math.floor((t % 1e9) / 1000) * 1000;
        return { sec: T0 + Math.floor(t / 1e9), nsec, data: Buffer.alloc(0) };
      };
      let ns = 999_000_000;
      for (let i = 0; i < 6000; i++) {
        ns += 1 + Math.floor(rnd() * 30_000);
        // Mostly runs of one packet: the next host is drawn for each.
        const k = [0, 2, 3, 4][Math.floor(rnd() * 4)];
        let t = ns;
        // h2 goes back a little (sorted by its read-ahead), and once by more than its read-ahead holds.
        if (k === 3 && rnd() < 0.03) t = ns - Math.floor(rnd() * 200_000);
        if (k === 3 && i >= 4500 && i < 4510) t = ns - 80_000_000;
        const ip = ipPacket(k, i, 5 + Math.floor(rnd() * 600));
        pkts[k].push({ ...at(t, k), data: frame(ip, false) });
        // A second capture of it: on h0's other interface, or again on h3's own.
        if (k === 0 && rnd() < 0.3) pkts[1].push({ ...at(t + 300, 1), data: frame(ip, true) });
        if (k === 4 && rnd() < 0.03) pkts[4].push({ ...at(t + 500, 4), data: frame(ip, false) });
        // The same bytes at the same instant on another host: a capture of its own, not a duplicate.
        if (k === 0 && rnd() < 0.05) pkts[2].push({ ...at(t, 2), data: frame(ip, false) });
      }
      const files = pkts.map((p, k) => pcapFile(p, linkType, nanos[k], seed === 2 && k === 1));
      files[4] = files[4].subarray(0, files[4].length - 37);
      const fast = await fastMatchesGeneral(files, hosts, 100 * linkType + seed);
      assert.ok(fast.duplicates > pkts[1].length / 2, `seed ${seed}: ${fast.duplicates} duplicates`);
      for (const note of [/^h2: \d+ packets came later/, /^h3: the capture ends in a torn record/, /^h0: \d+ packets captured twice/, /^h3: \d+ packets captured twice/]) {
        assert.ok(fast.notes.some((n) => note.test(n)), `seed ${seed}: no note "${note}": ${fast.notes.join('; ')}`);
      }
    }
  }
});

test('inputs of several MiB interleaved: files read ahead while the merge runs (and the file output waited for batch by batch) give what the general path gives', { timeout: 120_000 }, async () => {
  const rnd = prng(77_003);
  // h0 on two interfaces, h2 going back in time within its read-ahead and once past it; each input several FILE_READs long.
  const hosts = ['h0', 'h0', 'h1', 'h2'];
  const pkts: Pkt[][] = hosts.map(() => []);
  let ns = 0;
  for (let i = 0; i < 24_000; i++) {
    ns += 1 + Math.floor(rnd() * 20_000);
    const k = [0, 2, 3][Math.floor(rnd() * 3)];
    let t = ns;
    if (k === 3 && rnd() < 0.02) t = ns - Math.floor(rnd() * 100_000);
    if (k === 3 && i >= 20_000 && i < 20_005) t = ns - 90_000_000;
    const ip = ipPacket(k, i, 200 + Math.floor(rnd() * 1200));
    const at = (dt: number) => ({ sec: T0 + Math.floor((t + dt) / 1e9), nsec: (t + dt) % 1e9 });
    pkts[k].push({ ...at(0), data: ethernet(ETH_IPV4, ip) });
    if (k === 0 && rnd() < 0.3) pkts[1].push({ ...at(400), data: ethernet(ETH_IPV4, ip, { vlans: [{ vid: 7 }] }) });
  }
  const files = pkts.map((p) => pcapFile(p, LINKTYPE.ETHERNET, true));
  assert.ok(files.every((f, k) => k === 1 || f.length > 4 << 20), `inputs of ${files.map((f) => f.length).join(', ')} bytes`);
  const fast = await fastMatchesGeneral(files, hosts, 91);
  assert.ok(fast.duplicates > pkts[1].length / 2, `${fast.duplicates} duplicates`);
  assert.ok(fast.notes.some((n) => /^h2: \d+ packets came later/.test(n)), fast.notes.join('; '));
});

test('runs of one packet at instants several hosts share: ties go by input order, and a copy on the same host is the duplicate whichever input has it first', async () => {
  for (let seed = 1; seed <= 3; seed++) {
    const rnd = prng(seed * 7_777);
    // h0 on two inputs (two interfaces of one host), then h1 and h2.
    const hosts = ['h0', 'h0', 'h1', 'h2'];
    const pkts: Pkt[][] = hosts.map(() => []);
    const nanos = seed !== 2;
    const at = (t: number) => ({ sec: T0 + Math.floor(t / 1e9), nsec: nanos ? t % 1e9 : Math.floor((t % 1e9) / 1000) * 1000 });
    let t = 999_990_000;
    for (let i = 0; i < 4000; i++) {
      // Whole microseconds, so that µs inputs keep the ties too.
      t += 1000 * (1 + Math.floor(rnd() * 20));
      const ip = ipPacket(i % 3, i, 5 + Math.floor(rnd() * 300));
      const frame = ethernet(ETH_IPV4, ip, { padTo: 60 });
      const r = rnd();
      // Who has a packet at this instant: one input, or several at once (a tie across hosts, and across h0's inputs).
      const who = r < 0.3 ? [0, 1, 2, 3] : r < 0.5 ? [1, 2] : r < 0.7 ? [0, 3] : [Math.floor(rnd() * 4)];
      for (const k of who) pkts[k].push({ ...at(t), data: frame });
      // h0's second input sees the packet again a little later, or a little earlier (then the first input's is the duplicate).
      if (who.length === 1 && who[0] === 0 && rnd() < 0.5) {
        const back = rnd() < 0.5;
        pkts[1].push({ ...at(back ? t - 1000 : t + 1000), data: ethernet(ETH_IPV4, ip, { vlans: [{ vid: 7 }], padTo: 60 }) });
      }
      // Two packets at one instant within one input: its own order stays.
      if (rnd() < 0.05) pkts[2].push({ ...at(t), data: ethernet(ETH_IPV4, ipPacket(2, 100_000 + i, 40), { padTo: 60 }) });
    }
    // An input's packets in its own time order (a copy placed earlier goes before the packet it follows).
    for (const p of pkts) p.sort((a, b) => a.sec - b.sec || a.nsec - b.nsec);
    const files = pkts.map((p) => pcapFile(p, LINKTYPE.ETHERNET, nanos));
    const fast = await fastMatchesGeneral(files, hosts, 500 + seed);
    assert.ok(fast.duplicates > 1000, `seed ${seed}: ${fast.duplicates} duplicates`);
    assert.ok(!fast.notes.some((n) => /out of time order/.test(n)), `seed ${seed}: ${fast.notes.join('; ')}`);
  }
});

test('file inputs: a PCAPNG or empty file beside a PCAP goes the general path from its start; a missing file rejects the merge', async () => {
  await withDir(async (dir) => {
    const pkts = times(3000, 91, false).map(([sec, nsec], i) => ({ sec, nsec, data: ethernet(ETH_IPV4, ipPacket(i % 2, i, 100)), linkType: LINKTYPE.ETHERNET, nanos: true }));
    const a = pcapFile(pkts.filter((_, i) => i % 2 === 0), LINKTYPE.ETHERNET, true);
    const b = await pcapngFile(pkts.filter((_, i) => i % 2 === 1));
    writeFileSync(join(dir, 'a.pcap'), a);
    writeFileSync(join(dir, 'b.pcapng'), b);
    writeFileSync(join(dir, 'empty.pcap'), Buffer.alloc(0));
    const run = async (inputs: MergeInput[]) => {
      const chunks: Buffer[] = [];
      const r = await mergeCaptures(inputs, new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(Buffer.from(c)), cb()) }));
      return { r, bytes: Buffer.concat(chunks) };
    };
    const files = await run([
      { host: 'a', path: join(dir, 'a.pcap') },
      { host: 'b', path: join(dir, 'b.pcapng') },
      { host: 'e', path: join(dir, 'empty.pcap') },
    ]);
    const streams = await run([
      { host: 'a', stream: chunked(a, 1) },
      { host: 'b', stream: chunked(b, 2) },
      { host: 'e', stream: Readable.from([], { objectMode: false }) },
    ]);
    assert.equal(files.r.packets, 3000);
    assert.deepEqual(files.r.notes, ['e: the capture is empty (0 bytes)']);
    assert.deepEqual(files.r, streams.r);
    assert.ok(files.bytes.equals(streams.bytes), 'the merged bytes of files and of streams differ');
    await assert.rejects(
      mergeCaptures([{ host: 'a', path: join(dir, 'a.pcap') }, { host: 'gone', path: join(dir, 'gone.pcap') }], new Writable({ write: (_c, _e, cb) => cb() })),
      /reading the capture of gone failed: ENOENT.*; nothing was merged, try again/,
    );
    await assert.rejects(mergeCaptures([{ host: 'x', path: join(dir, 'a.pcap'), stream: chunked(a, 3) } as unknown as MergeInput], new Writable({ write: (_c, _e, cb) => cb() })), /input 0 must be/);
  });
});
