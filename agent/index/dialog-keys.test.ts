import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DialogKeys } from './dialog-keys';
import { endpointKeyHash, KEY_ENTRY_LEN, keyHash, MessageRecord, messageLegKeys, NUMBER_ENTRY_LEN, NUMBER_KEY_LEN, numberKey } from './format';
import { MIN_QUERY_DIGITS, sipDigits } from '../../shared/sip/number';
import { endpointText } from '../../shared/query/query';
import { prng } from '../../test/support/packets';

test('endpointKeyHash is keyHash of the endpoint text', () => {
  const rnd = prng(77);
  const hosts = ['10.0.0.1', '0.0.0.0', '255.255.255.255', '::1', '2001:db8::5', 'h\u00f4te', 'x\u20acy', 'example.com', '', 'a:b', '[::1]'];
  const ports = [0, 1, 9, 10, 99, 100, 999, 1000, 5060, 10000, 65535, 65536, -1, 1.5, NaN, Infinity, 123456];
  for (let i = 0; i < 2000; i++) hosts.push([0, 0, 0, 0].map(() => Math.floor(rnd() * 256)).join('.'));
  for (let i = 0; i < 200; i++) ports.push(Math.floor(rnd() * 65536));
  for (const h of hosts) for (const p of ports) assert.equal(endpointKeyHash(h, p), keyHash('m', endpointText(h, p)), `${h} ${p}`);
});

/** Users of `digits` digits (each maybe with other characters between), some with fewer than MIN_QUERY_DIGITS. */
function users(rnd: () => number, count: number, maxDigits: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = Math.floor(rnd() * (maxDigits + 1));
    let u = rnd() < 0.3 ? '+' : '';
    for (let k = 0; k < n; k++) {
      // Few distinct digits early, so that keys share prefixes and numbers repeat across dialogs.
      u += String(Math.floor(rnd() * (k < 3 ? 2 : 10)));
      if (rnd() < 0.05) u += rnd() < 0.5 ? '-' : 'x';
    }
    out.push(u);
  }
  return out;
}

/** The number table as its definition says: each (numberKey(digits), dialog) once, sorted by key bytes, then dialog. */
function referenceNumberTable(pairs: Array<[string, number]>): Buffer {
  const seen = new Map<string, [Buffer, number]>();
  for (const [u, d] of pairs) {
    const digits = sipDigits(u);
    if (digits.length < MIN_QUERY_DIGITS) continue;
    const key = numberKey(digits);
    seen.set(`${key.toString('hex')} ${d}`, [key, d]);
  }
  const entries = [...seen.values()].sort((a, b) => Buffer.compare(a[0], b[0]) || a[1] - b[1]);
  return Buffer.concat(entries.map(([k, d]) => {
    const e = Buffer.alloc(NUMBER_ENTRY_LEN);
    k.copy(e);
    e.writeUInt32LE(d, NUMBER_KEY_LEN);
    return e;
  }));
}

test('numberTable is the sorted distinct (key, dialog) pairs, short and long numbers alike', () => {
  // 15 digits at most takes the prefix ranks; up to 30 also the byte comparison.
  for (const [seed, maxDigits] of [[1, 15], [2, 30], [3, 6], [4, 24]]) {
    const rnd = prng(seed);
    const pool = users(rnd, 300, maxDigits);
    const keys = new DialogKeys();
    const added: Array<[string, number]> = [];
    for (let i = 0; i < 4000; i++) {
      const d = Math.floor(rnd() * 200);
      const pick = (): string | null => (rnd() < 0.1 ? null : pool[Math.floor(rnd() * pool.length)]);
      const m = { p: [i], t: [0, 0], src: '10.0.0.1', dst: '10.0.0.2', sp: 5060, dp: 5060, pr: 17, m: 'INVITE', s: null, c: `call-${d}`, q: null, ru: pick(), fu: pick(), tu: pick() } as MessageRecord;
      if (rnd() < 0.2) m.pu = [pool[Math.floor(rnd() * pool.length)], pool[Math.floor(rnd() * pool.length)]];
      keys.add(m);
      const dialog = keys.ids.indexOf(m.c);
      for (const u of [m.ru, m.fu, m.tu, ...(m.pu ?? [])]) if (u !== null) added.push([u, dialog]);
    }
    const want = referenceNumberTable(added);
    const got = keys.numberTable();
    assert.equal(got.count * NUMBER_ENTRY_LEN, want.length, `seed ${seed}`);
    assert.ok(got.body.equals(want), `seed ${seed}: table differs`);
    assert.ok(keys.numberTable().body.equals(want), `seed ${seed}: a second call differs`);
  }
});

test('keyTable is the sorted distinct (hash, dialog) pairs of Call-IDs and leg keys', () => {
  const rnd = prng(9);
  const keys = new DialogKeys();
  const want = new Map<string, [number, number]>();
  for (let i = 0; i < 3000; i++) {
    const d = Math.floor(rnd() * 150);
    const m = { p: [i], t: [0, 0], src: '10.0.0.1', dst: '10.0.0.2', sp: 5060, dp: 5060, pr: 17, m: 'INVITE', s: null, c: `call-${d}`, q: null, ru: null, fu: null, tu: null } as MessageRecord;
    // Correlation keys shared by a few dialogs, repeated by their messages.
    if (rnd() < 0.7) m.x = `x-${Math.floor(rnd() * 40)}`;
    keys.add(m);
    const dialog = keys.ids.indexOf(m.c);
    const pair = (hash: number) => want.set(`${hash} ${dialog}`, [hash, dialog]);
    pair(keyHash('c', m.c));
    messageLegKeys(m, (kind, value) => pair(keyHash(kind, value)), (host, port) => pair(endpointKeyHash(host, port)));
  }
  const entries = [...want.values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const body = Buffer.alloc(entries.length * KEY_ENTRY_LEN);
  entries.forEach(([h, d], k) => {
    body.writeUInt32LE(h, k * KEY_ENTRY_LEN);
    body.writeUInt32LE(d, k * KEY_ENTRY_LEN + 4);
  });
  const got = keys.keyTable();
  assert.equal(got.count, entries.length);
  assert.ok(got.body.equals(body));
});
