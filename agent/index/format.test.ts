import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageRecord, messageRecordJson } from './format';

function record(over: Partial<MessageRecord>): MessageRecord {
  // Keys in the order the indexer sets them (builder.ts indexMessage).
  const base: MessageRecord = {
    p: [7], t: [1_795_000_000, 123_456_789], src: '192.0.2.1', dst: '2001:db8::1', sp: 5060, dp: 5061, pr: 17,
    m: 'INVITE', s: null, c: 'a84b4c76e66710@pc33.example.com', q: '314159 INVITE', ru: '15551234567', fu: 'alice', tu: null, n: 912,
  };
  const m = { ...base, ...over } as MessageRecord;
  const out = {} as Record<string, unknown>;
  for (const k of ['p', 't', 'src', 'dst', 'sp', 'dp', 'pr', 'm', 's', 'c', 'q', 'ru', 'fu', 'tu', 'n', 'r', 'tr', 'h', 'pu', 'x', 'si', 'sr', 'ic', 'sdp', 'rc', 'pm']) {
    const v = (m as unknown as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  return out as unknown as MessageRecord;
}

const hostile = [
  '', 'plain', 'quote"d', 'back\\slash', 'nul\0byte', 'tab\there', 'line\r\nend', '\x1f\x7f', 'é ü 中文',
  '\u2028\u2029', 'pair \ud83d\ude00', 'lone high \ud83d', 'lone low \ude00 end', '\udfff\ud800', '</script>',
];

test('messageRecordJson is JSON.stringify, byte for byte, for the records the indexer makes', () => {
  const cases: MessageRecord[] = [
    record({}),
    record({ p: [1, 2, 3], m: null, s: 486, r: 'Busy Here', q: null, ru: null, fu: null, tr: 1, h: 1 }),
    record({ pu: [], sdp: [], rc: [], pm: [] }),
    record({ pu: ['15550001', 'bob'], x: 'corr-1', si: 'ab'.repeat(16), sr: 'cd'.repeat(16), ic: 'icid-9',
      sdp: [['198.51.100.7', 40000], ['2001:db8::9', 40002]], rc: [['198.51.100.8', 40101]], pm: [[0, 'PCMU/8000'], [101, 'telephone-event/8000']] }),
  ];
  for (const h of hostile) {
    cases.push(record({ c: h, src: h, m: h, q: h, ru: h, fu: h, tu: h, r: h, pu: [h, h], x: h, si: h, sr: h, ic: h, sdp: [[h, 1]], rc: [[h, 2]], pm: [[8, h]] }));
  }
  for (const m of cases) assert.equal(messageRecordJson(m), JSON.stringify(m));
});
