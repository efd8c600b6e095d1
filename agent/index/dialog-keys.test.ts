import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageRecord, NUMBER_ENTRY_LEN, NUMBER_KEY_LEN, endpointKeyHash, keyHash } from './format';
import { DialogKeys } from './dialog-keys';
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

test('numberTable: (reversed digits, dialog) pairs in key byte order, then dialog, each once, as a sort of every pair gives', () => {
  const rnd = prng(4242);
  const pick = (n: number) => Math.floor(rnd() * n);
  // Few numbers, many dialogs: numbers recur across dialogs, a dialog's users come in any order, prefixes of
  // each other ("1234" before "12345"), non-digits in users, more users than a dialog remembers.
  const pool = ['+15550100101', '15550100101', '1234', '12345', '123456789012345678901234567890', 'alice', '555-0100', '0000', '9', 'sip1234x5'];
  for (let i = 0; i < 300; i++) pool.push(String(pick(10 ** (4 + pick(10)))));
  const keys = new DialogKeys();
  const rec = (c: string, users: string[]): MessageRecord => ({
    p: [0], t: [0, 0], src: '10.0.0.1', dst: '10.0.0.2', sp: 5060, dp: 5060, pr: 17, m: 'INVITE', s: null, c, q: '1 INVITE',
    ru: users[0] ?? null, fu: users[1] ?? null, tu: users[2] ?? null, ...(users.length > 3 ? { pu: users.slice(3) } : {}), n: 100,
  });
  for (let i = 0; i < 4000; i++) {
    const users = Array.from({ length: 1 + pick(6) }, () => pool[pick(pool.length)]);
    keys.add(rec(`call-${pick(900)}`, users));
  }
  const { body, count } = keys.numberTable();
  // The reference: every (text, dialog) pair sorted with a comparator, duplicates dropped.
  const k = keys as unknown as { numTexts: string[]; numDialogs: number[] };
  const pairs = k.numTexts.map((text, i) => [text, k.numDialogs[i]] as const);
  assert.ok(pairs.length > 1000);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
  const want: Buffer[] = [];
  pairs.forEach((p, i) => {
    if (i > 0 && p[0] === pairs[i - 1][0] && p[1] === pairs[i - 1][1]) return;
    const e = Buffer.alloc(NUMBER_ENTRY_LEN);
    e.write(p[0], 0, 'latin1');
    e.writeUInt32LE(p[1], NUMBER_KEY_LEN);
    want.push(e);
  });
  assert.equal(count, want.length);
  assert.ok(body.equals(Buffer.concat(want)));
});
