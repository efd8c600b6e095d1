import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressBytes, encodeHep3, HEP_DROP_REASONS, parseHep, type Hep3Fields } from './hep';
import { prng, sipInvite } from '../../test/support/packets';

const fields = (over: Partial<Hep3Fields> = {}): Hep3Fields => ({
  family: 4, proto: 17, src: addressBytes('192.0.2.1')!, dst: addressBytes('198.51.100.2')!, sport: 5060, dport: 5070,
  tsSec: 1_764_842_400, tsUsec: 123_456, protoType: 1, captureId: 2001, authKey: Buffer.from('s3cret'), nodeName: Buffer.from('kam1'),
  payload: sipInvite('hep-unit-1'), ...over,
});

/** A HEP3 packet built chunk by chunk, for the shapes encodeHep3 never makes. */
function rawHep3(chunks: Array<[number, number, Buffer]>, lengthDelta = 0): Buffer {
  const parts = chunks.map(([vendor, type, data]) => {
    const h = Buffer.alloc(6);
    h.writeUInt16BE(vendor, 0);
    h.writeUInt16BE(type, 2);
    h.writeUInt16BE(6 + data.length, 4);
    return Buffer.concat([h, data]);
  });
  const body = Buffer.concat(parts);
  const head = Buffer.from('HEP3\0\0', 'latin1');
  head.writeUInt16BE(6 + body.length + lengthDelta, 4);
  return Buffer.concat([head, body]);
}

const u8 = (v: number) => Buffer.from([v]);
const u16 = (v: number) => { const b = Buffer.alloc(2); b.writeUInt16BE(v); return b; };
const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); return b; };
const minimal = (): Array<[number, number, Buffer]> => [
  [0, 1, u8(2)], [0, 2, u8(17)], [0, 3, addressBytes('192.0.2.1')!], [0, 4, addressBytes('192.0.2.2')!],
  [0, 7, u16(5060)], [0, 8, u16(5060)], [0, 9, u32(1_764_842_400)], [0, 10, u32(5)], [0, 11, u8(1)], [0, 12, u32(7)],
  [0, 15, Buffer.from('OPTIONS sip:a SIP/2.0\r\n\r\n')],
];

test('HEP3 round trip: every field encodeHep3 writes is what parseHep reads', () => {
  for (const f of [fields(), fields({ family: 6, proto: 6, src: addressBytes('2001:db8::1')!, dst: addressBytes('2001:db8::a:2')!, authKey: null, nodeName: null })]) {
    const r = parseHep(encodeHep3(f)!);
    assert.ok(r.ok, JSON.stringify(r));
    const h = r.hep;
    assert.deepEqual([h.version, h.family, h.proto, h.sport, h.dport, h.tsSec, h.tsUsec, h.protoType, h.captureId], [3, f.family, f.proto, f.sport, f.dport, f.tsSec, f.tsUsec, 1, 2001]);
    assert.deepEqual(h.src, f.src);
    assert.deepEqual(h.dst, f.dst);
    assert.deepEqual(h.payload, f.payload);
    assert.deepEqual(h.authKey, f.authKey ?? null);
    assert.deepEqual(h.nodeName, f.nodeName ?? null);
  }
});

test('HEP3: vendor chunks are skipped, faults are named', () => {
  assert.ok(parseHep(rawHep3([...minimal(), [0x1234, 0x99, Buffer.from('vendor')]])).ok, 'a vendor chunk is an extension, not a fault');
  const cases: Array<[string, Buffer]> = [
    ['truncated', Buffer.from('HEP')],
    ['truncated', rawHep3(minimal()).subarray(0, 40)],
    ['bad_length', rawHep3(minimal(), -1)],
    ['bad_length', Buffer.concat([rawHep3(minimal()), Buffer.from('x')])],
    ['bad_version', Buffer.from('HEP4\0\x06')],
    ['bad_version', Buffer.from([9, 0, 0, 0, 0, 0, 0, 0, 0])],
    ['unknown_chunk', rawHep3([...minimal(), [0, 0x0200, u8(1)]])],
    ['bad_chunk', rawHep3([...minimal(), [0, 7, u16(1)]])],
    ['bad_chunk', rawHep3(minimal().map(([v, t, d]) => [v, t, t === 3 ? Buffer.alloc(16) : d]))],
    ['bad_chunk', rawHep3(minimal().map(([v, t, d]) => [v, t, t === 10 ? u32(1_000_000) : d]))],
    ['missing_chunk', rawHep3(minimal().filter(([, t]) => t !== 15))],
    ['missing_chunk', rawHep3(minimal().filter(([, t]) => t !== 9))],
    ['unsupported', rawHep3([...minimal(), [0, 0x10, Buffer.from('zz')]])],
  ];
  for (const [reason, b] of cases) {
    const r = parseHep(b);
    assert.equal(r.ok, false, `${reason}: ${b.toString('hex').slice(0, 40)}`);
    if (!r.ok) assert.equal(r.reason, reason, b.toString('hex').slice(0, 60));
  }
  // A chunk whose length runs past the packet.
  const b = rawHep3(minimal());
  b.writeUInt16BE(0xfff0, 6 + 4);
  assert.deepEqual(parseHep(b), { ok: false, reason: 'truncated' });
  // A chunk length below its own header.
  b.writeUInt16BE(3, 6 + 4);
  assert.deepEqual(parseHep(b), { ok: false, reason: 'bad_length' });
});

test('HEP2: header, addresses, little-endian time, payload', () => {
  const payload = Buffer.from('SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n');
  const b = Buffer.alloc(8 + 8 + 12 + payload.length);
  b[0] = 2; b[1] = 16; b[2] = 2; b[3] = 17;
  b.writeUInt16BE(5062, 4); b.writeUInt16BE(5064, 6);
  addressBytes('10.0.0.1')!.copy(b, 8); addressBytes('10.0.0.2')!.copy(b, 12);
  b.writeUInt32LE(1_764_842_401, 16); b.writeUInt32LE(999_999, 20); b.writeUInt16LE(42, 24);
  payload.copy(b, 28);
  const r = parseHep(b);
  assert.ok(r.ok);
  assert.deepEqual([r.hep.version, r.hep.sport, r.hep.dport, r.hep.tsSec, r.hep.tsUsec, r.hep.captureId], [2, 5062, 5064, 1_764_842_401, 999_999, 42]);
  assert.equal(r.hep.payload.toString(), payload.toString());
  b[2] = 99;
  assert.deepEqual(parseHep(b), { ok: false, reason: 'bad_chunk' });
  b[2] = 2;
  assert.deepEqual(parseHep(b.subarray(0, 20)), { ok: false, reason: 'truncated' });
});

test('addressBytes: IPv4, IPv6 with ::, an IPv4 tail', () => {
  assert.equal(addressBytes('192.0.2.10')!.toString('hex'), 'c000020a');
  assert.equal(addressBytes('2001:db8::1')!.toString('hex'), '20010db8000000000000000000000001');
  assert.equal(addressBytes('::')!.toString('hex'), '0'.repeat(32));
  assert.equal(addressBytes('fe80::1:2:3:4:5')!.toString('hex'), 'fe800000000000010002000300040005');
  assert.equal(addressBytes('::ffff:192.0.2.1')!.toString('hex'), '00000000000000000000ffffc0000201');
  assert.equal(addressBytes('not-an-ip'), null);
});

test('fuzz: mutated and random HEP never throws, and each fault is a known reason (bounded: 20000 inputs, 10 s)', () => {
  const rnd = prng(0x4e50);
  const base = [encodeHep3(fields())!, encodeHep3(fields({ family: 6, src: addressBytes('2001:db8::1')!, dst: addressBytes('2001:db8::2')! }))!, rawHep3(minimal())];
  const deadline = Date.now() + 10_000;
  const seen = new Set<string>();
  let n = 0;
  for (; n < 20_000 && Date.now() < deadline; n++) {
    let b: Buffer;
    const kind = n % 4;
    if (kind === 3) {
      b = Buffer.alloc(Math.floor(rnd() * 200));
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(rnd() * 256);
      if (rnd() < 0.5 && b.length >= 6) b.write('HEP3', 0, 'latin1');
    } else {
      b = Buffer.from(base[kind]);
      const flips = 1 + Math.floor(rnd() * 4);
      for (let i = 0; i < flips; i++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      if (rnd() < 0.3) b = b.subarray(0, Math.floor(rnd() * b.length));
    }
    const r = parseHep(b);
    if (!r.ok) {
      assert.ok((HEP_DROP_REASONS as readonly string[]).includes(r.reason), r.reason);
      seen.add(r.reason);
    } else {
      // What is taken is within the packet.
      assert.ok(r.hep.payload.length > 0 && r.hep.payload.length <= b.length);
      assert.ok(r.hep.src.length === 4 || r.hep.src.length === 16);
    }
  }
  assert.ok(n >= 1000, `only ${n} inputs in the time bound`);
  for (const r of ['truncated', 'bad_length', 'bad_chunk', 'bad_version']) assert.ok(seen.has(r), `fuzzing never hit ${r}: ${[...seen].join(', ')}`);
});
