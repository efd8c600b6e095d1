import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MessageRecord } from './format';
import { binaryRecord, binaryRecordCallId, readBinaryRecord } from './message-binary';

function record(over: Partial<MessageRecord>): MessageRecord {
  const base: MessageRecord = {
    p: [7], t: [1_795_000_000, 123_456_789], src: '192.0.2.1', dst: '2001:db8::1', sp: 5060, dp: 5061, pr: 17,
    m: 'INVITE', s: null, c: 'a84b4c76e66710@pc33.example.com', q: '314159 INVITE', ru: '15551234567', fu: 'alice', tu: null, n: 912,
  };
  const m = { ...base, ...over } as MessageRecord;
  for (const k of Object.keys(m) as Array<keyof MessageRecord>) if (m[k] === undefined) delete m[k];
  return m;
}

// What the SIP parser can give: any byte string decoded as latin1 or UTF-8 (never a lone surrogate).
const hostile = [
  '', 'plain', 'quote"d', 'back\\slash', 'nul\0byte', 'tab\there', 'line\r\nend', '\x1f\x7f\x80\xff', 'é ü 中文',
  '\u2028\u2029', 'pair \ud83d\ude00', '\ufffd', 'x'.repeat(127), 'y'.repeat(128), 'é'.repeat(200), 'z'.repeat(70_000), '中'.repeat(30_000),
];

test('a binary record decodes to the record it was written from', () => {
  const cases: MessageRecord[] = [
    record({}),
    record({ p: [1, 2, 3, 0xffffffff], t: [0xffffffff, 999_999_999], m: null, s: 486, r: 'Busy Here', q: null, ru: null, fu: null, tr: 1, h: 1, n: 0xffffffff }),
    record({ s: 0, m: null }),
    record({ p: [], pu: [], sdp: [], rc: [], pm: [] }),
    record({ pu: ['15550001', 'bob'], x: 'corr-1', si: 'ab'.repeat(16), sr: 'cd'.repeat(16), ic: 'icid-9', sp: 65535, dp: 0, pr: 6,
      sdp: [['198.51.100.7', 40000], ['2001:db8::9', 65535]], rc: [['198.51.100.8', 40101]], pm: [[0, 'PCMU/8000'], [127, 'telephone-event/8000']] }),
  ];
  for (const h of hostile) {
    cases.push(record({ c: h, src: h, dst: h, m: h, q: h, ru: h, fu: h, tu: h, r: h, pu: [h, h], x: h, si: h, sr: h, ic: h, sdp: [[h, 1]], rc: [[h, 2]], pm: [[8, h]] }));
  }
  for (const m of cases) {
    const b = binaryRecord(m);
    assert.deepEqual(readBinaryRecord(b, 0, b.length), m);
    assert.equal(binaryRecordCallId(b, 0, b.length), m.c);
    // Inside a bigger buffer, at an offset.
    const big = Buffer.concat([Buffer.from('junk'), b, Buffer.from('more')]);
    assert.deepEqual(readBinaryRecord(big, 4, 4 + b.length), m);
  }
});

test('a cut, padded or corrupted binary record is refused, never read past its end', () => {
  const m = record({ pu: ['1555'], sdp: [['198.51.100.7', 40000]], pm: [[0, 'PCMU/8000']], r: 'OK', s: 200 });
  const b = binaryRecord(m);
  for (let n = 0; n < b.length; n++) assert.throws(() => readBinaryRecord(Buffer.from(b.subarray(0, n)), 0, n), RangeError, `cut at ${n}`);
  assert.throws(() => readBinaryRecord(Buffer.concat([b, Buffer.from([0])]), 0, b.length + 1), RangeError);
  assert.throws(() => readBinaryRecord(b, 0, b.length + 1), RangeError);
  // Every byte flipped: a RangeError or a record, nothing else (no other exception, no read outside [0, len)).
  for (let i = 0; i < b.length; i++) {
    for (const v of [0x00, 0x7f, 0x80, 0xff]) {
      const c = Buffer.from(b);
      c[i] = v;
      try {
        readBinaryRecord(c, 0, c.length);
      } catch (e) {
        assert.ok(e instanceof RangeError, `byte ${i} = ${v}: ${String(e)}`);
      }
    }
  }
  // A packet count that the record cannot hold.
  const huge = Buffer.from(b);
  huge.set([0xff, 0xff, 0xff, 0xff, 0x0f], 22);
  assert.throws(() => readBinaryRecord(huge, 0, huge.length), RangeError);
});
