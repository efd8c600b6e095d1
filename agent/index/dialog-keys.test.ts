import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endpointKeyHash, keyHash } from './format';
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
