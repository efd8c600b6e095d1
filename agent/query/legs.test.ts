import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { B2B, LEGS_T0, Leg, Z, writeLegsRing } from '../../test/support/legcalls';
import { buildQuerySpec, TraceQuery } from '../../shared/query/query';
import { closeResult, runQuery, QueryOptions } from './engine';
import { MAX_DIALOGS_PER_KEY, parseLegCallIdRule } from './legs';

/*
 * Linked legs on hand-made calls: each key alone links an A leg (found by
 * its caller's number) to its B leg (whose From the B2BUA rewrote), and
 * nothing links calls that merely share a media server's port, a null
 * Session-ID, or a key carried by too many dialogs.
 */

const U2 = 'ab30317f1a784dc48ff824d0d3715d86';
const U2B = '47755a9de7794ba387653f2099600ef2';
const U7 = '0123456789abcdef0123456789abcdef';
const NULL_UUID = '00000000000000000000000000000000';

const LEGS: Leg[] = [
  // 1: correlation header, B leg a second later.
  { callId: 'a1', from: '4930000001', start: 0, headers: ['X-CID: k1'] },
  { callId: 'b1', from: 'b2bua', start: 1, headers: ['X-CID: k1'], src: B2B, dst: Z },
  // 2: Session-ID passed through; the answers carry the callee's UUID first.
  { callId: 'a2', from: '4930000002', start: 0, headers: [`Session-ID: ${U2};remote=${NULL_UUID}`], answerHeaders: [`Session-ID: ${U2B};remote=${U2}`] },
  { callId: 'b2', from: 'b2bua', start: 1, headers: [`Session-ID: ${U2};remote=${NULL_UUID}`], answerHeaders: [`Session-ID: ${U2B};remote=${U2}`], src: B2B, dst: Z },
  // 3: P-Charging-Vector icid.
  { callId: 'a3', from: '4930000003', start: 0, headers: ['P-Charging-Vector: icid-value=i3;orig-ioi=x'] },
  { callId: 'b3', from: 'b2bua', start: 1, headers: ['P-Charging-Vector: icid-value="i3"'], src: B2B, dst: Z },
  // 4: an operator's Call-ID rule (prefix b2b-).
  { callId: 'call4@x', from: '4930000004', start: 0 },
  { callId: 'b2b-call4@x', from: 'b2bua', start: 1, src: B2B, dst: Z },
  // 5: SDP relayed unchanged: both legs announce both ends, at the same time.
  { callId: 'a5', from: '4930000005', start: 0, offer: ['10.1.5.1', 4000], answer: ['10.1.5.2', 6000] },
  { callId: 'b5', from: 'b2bua', start: 1, offer: ['10.1.5.1', 4000], answer: ['10.1.5.2', 6000], src: B2B, dst: Z },
  // ...and the same two ends much later: another call reusing the ports, not a leg.
  { callId: 'late5', from: 'b2bua', start: 500, offer: ['10.1.5.1', 4000], answer: ['10.1.5.2', 6000], src: B2B, dst: Z },
  // 6: two unrelated calls at once to one media server port.
  { callId: 'c6', from: '4930000006', start: 0, offer: ['10.1.6.1', 4000], answer: ['10.9.9.9', 6000] },
  { callId: 'd6', from: '4930000099', start: 1, offer: ['10.1.6.9', 4000], answer: ['10.9.9.9', 6000] },
  // 7: a chain: a7 -correlation-> b7 -Session-ID-> c7.
  { callId: 'a7', from: '4930000007', start: 0, headers: ['X-CID: k7'] },
  { callId: 'b7', from: 'b2bua', start: 1, headers: ['X-CID: k7', `Session-ID: ${U7}`], src: B2B, dst: Z },
  { callId: 'c7', from: 'sbc', start: 2, headers: [`Session-ID: ${U7}`], src: Z, dst: '10.0.0.10' },
  // 8: the null Session-ID links nothing.
  { callId: 'a8', from: '4930000008', start: 0, headers: [`Session-ID: ${NULL_UUID}`] },
  { callId: 'z8', from: 'b2bua', start: 1, headers: [`Session-ID: ${NULL_UUID}`], src: B2B, dst: Z },
  // 9: the B leg's correlation header holds the A leg's Call-ID (HOMER's X-CID).
  { callId: 'a9@host', from: '4930000009', start: 0 },
  { callId: 'b9', from: 'b2bua', start: 1, headers: ['X-CID: a9@host'], src: B2B, dst: Z },
];
// 10: a "correlation" header one system puts on every call names no call.
for (let i = 0; i <= MAX_DIALOGS_PER_KEY; i++) LEGS.push({ callId: `same${i}`, from: `49300001${String(i).padStart(2, '0')}`, start: i, headers: ['X-CID: constant'] });

async function withRing(fn: (query: (q: TraceQuery, o?: QueryOptions) => { callIds: string[]; groups: Map<string, string>; vias: Map<string, string | undefined>; notes: string[] }) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'tf-legs-'));
  try {
    const ring = join(dir, 'ring');
    // Small segments, so a call's legs are looked up across several.
    await writeLegsRing(join(dir, 'calls.pcap'), ring, LEGS, { maxSegmentBytes: 16 * 1024 });
    fn((q, o) => {
      const r = runQuery(ring, buildQuerySpec(q, new Date((LEGS_T0 + 1000) * 1000)), o);
      closeResult(r);
      const groups = new Map<string, string>();
      const vias = new Map<string, string | undefined>();
      for (const m of r.messages) {
        if (m.legGroup !== undefined) groups.set(m.callId, m.legGroup);
        vias.set(m.callId, m.legVia);
      }
      return { callIds: [...r.callIds].sort(), groups, vias, notes: r.notes };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('legs: each key links its B leg alone, with the call named by its earliest leg', () =>
  withRing((query) => {
    const cases: Array<[string, string[], string]> = [
      ['4930000001', ['a1', 'b1'], 'correlation'],
      ['4930000002', ['a2', 'b2'], 'session-id'],
      ['4930000003', ['a3', 'b3'], 'icid'],
      ['4930000005', ['a5', 'b5'], 'media'],
    ];
    for (const [number, want, via] of cases) {
      assert.deepEqual(query({ number: [number] }).callIds, [want[0]], `${number} without legs`);
      const r = query({ number: [number], legs: true });
      assert.deepEqual(r.callIds, want, `${number} with legs`);
      assert.equal(r.groups.get(want[0]), want[0]);
      assert.equal(r.groups.get(want[1]), want[0], `${want[1]} is a leg of ${want[0]}`);
      assert.equal(r.vias.get(want[0]), undefined);
      assert.equal(r.vias.get(want[1]), via);
    }
    // Without the messages' legs asked for, they carry no group.
    assert.equal(query({ number: ['4930000001'] }).groups.size, 0);
  }));

test('legs: Call-ID rules, media servers, null Session-IDs, chains and over-common keys', () =>
  withRing((query) => {
    const rule = [parseLegCallIdRule('prefix:b2b-')];
    assert.deepEqual(query({ number: ['4930000004'], legs: true }).callIds, ['call4@x']);
    const r4 = query({ number: ['4930000004'], legs: true }, { legCallIdRules: rule });
    assert.deepEqual(r4.callIds, ['b2b-call4@x', 'call4@x']);
    assert.equal(r4.vias.get('b2b-call4@x'), 'call-id-rule');
    // The rule runs backwards too: from the B leg to the A leg.
    assert.deepEqual(query({ callId: ['b2b-call4@x'], legs: true }, { legCallIdRules: rule }).callIds, ['b2b-call4@x', 'call4@x']);
    assert.equal(query({ callId: ['b2b-call4@x'], legs: true }, { legCallIdRules: rule }).groups.get('b2b-call4@x'), 'call4@x');

    // One shared endpoint (the media server's) is not a leg; nor are the same ends long after.
    assert.deepEqual(query({ number: ['4930000006'], legs: true }).callIds, ['c6']);
    assert.ok(!query({ number: ['4930000005'], legs: true }).callIds.includes('late5'));

    const r7 = query({ number: ['4930000007'], legs: true });
    assert.deepEqual(r7.callIds, ['a7', 'b7', 'c7']);
    assert.equal(r7.vias.get('c7'), 'session-id');
    assert.deepEqual(new Set(r7.groups.values()), new Set(['a7']));

    assert.deepEqual(query({ number: ['4930000008'], legs: true }).callIds, ['a8']);

    const r9 = query({ number: ['4930000009'], legs: true });
    assert.deepEqual(r9.callIds, ['a9@host', 'b9']);
    assert.equal(r9.vias.get('b9'), 'correlation');
    assert.deepEqual(query({ callId: ['b9'], legs: true }).callIds, ['a9@host', 'b9']);

    const common = query({ number: ['4930000105'], legs: true });
    assert.deepEqual(common.callIds, ['same5']);
    assert.ok(common.notes.some((n) => n.includes('"constant"') && n.includes(`${MAX_DIALOGS_PER_KEY + 1} dialogs`)), common.notes.join('\n'));

    // Two calls selected at once keep their own groups.
    const two = query({ number: ['4930000001', '4930000003'], legs: true });
    assert.deepEqual(two.callIds, ['a1', 'a3', 'b1', 'b3']);
    assert.equal(two.groups.get('b3'), 'a3');
    assert.equal(two.groups.get('b1'), 'a1');
  }));

test('legs: a Call-ID rule is prefix:TEXT or suffix:TEXT', () => {
  assert.deepEqual(parseLegCallIdRule('suffix:-leg2'), { suffix: '-leg2' });
  assert.throws(() => parseLegCallIdRule('infix:x'), /prefix:TEXT or suffix:TEXT/);
  assert.throws(() => parseLegCallIdRule('prefix:'), /prefix:TEXT/);
  assert.throws(() => parseLegCallIdRule('prefix:a b'), /prefix:TEXT/);
});
