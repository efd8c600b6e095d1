import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { HepSender } from './out';
import { parseHep } from '../../shared/hep/hep';
import { freePort } from '../../test/support/proc';
import { sipInvite } from '../../test/support/packets';
import { sleep, waitFor } from '../../test/support/capture';

test('HEP out: SIP and RTCP as HEP3 with the capture\'s addresses, time, capture id, node name and key; a collector away is counted, never waited for', { timeout: 30_000 }, async () => {
  const collector = createSocket('udp4');
  const got: Buffer[] = [];
  collector.on('message', (m) => got.push(m));
  await new Promise<void>((resolve) => collector.bind(0, '127.0.0.1', () => resolve()));
  const port = (collector.address() as { port: number }).port;
  const out = new HepSender({ host: '127.0.0.1', port, captureId: 4242, nodeName: 'edge-7', password: 'k3y', rtcp: true });
  try {
    await sleep(50); // connect() resolves on the next tick; sends before it are counted as dropped
    const invite = sipInvite('hep-out-1');
    out.sip('2001:db8::1', '2001:db8::2', 5060, 5061, 6, 1_764_842_400, 123_456_789, invite);
    const rtcp = Buffer.from('81c8000600000001000000000000000000000000000000000000000000000000', 'hex').subarray(0, 28);
    out.rtcp('192.0.2.1', '192.0.2.2', 40001, 40003, 1_764_842_401, 5_000, rtcp);
    assert.ok(await waitFor(() => got.length === 2, 5000), `received ${got.length}`);
    const [a, b] = got.map((g) => parseHep(g));
    assert.ok(a.ok && b.ok);
    assert.deepEqual([a.hep.family, a.hep.proto, a.hep.sport, a.hep.dport, a.hep.tsSec, a.hep.tsUsec, a.hep.protoType, a.hep.captureId], [6, 6, 5060, 5061, 1_764_842_400, 123_456, 1, 4242]);
    assert.equal(a.hep.src.toString('hex'), '20010db8000000000000000000000001');
    assert.deepEqual(a.hep.payload, invite);
    assert.equal(a.hep.nodeName?.toString(), 'edge-7');
    assert.equal(a.hep.authKey?.toString(), 'k3y');
    assert.deepEqual([b.hep.family, b.hep.proto, b.hep.protoType, b.hep.tsUsec], [4, 17, 5, 5]);
    assert.deepEqual(b.hep.payload, rtcp);
    await waitFor(() => out.counters.sent === 2, 2000);
    assert.deepEqual(out.counters, { sent: 2, dropped: 0, failed: 0 });
  } finally {
    out.close();
    collector.close();
  }

  // Nobody at the port: loopback answers ICMP port unreachable, which the connected socket reports on later sends.
  const away = new HepSender({ host: '127.0.0.1', port: await freePort(), captureId: 1, rtcp: false });
  try {
    await sleep(50);
    const t0 = Date.now();
    for (let i = 0; i < 2000; i++) away.sip('192.0.2.1', '192.0.2.2', 5060, 5060, 17, 1_764_842_400, 0, sipInvite(`away-${i}`));
    assert.ok(Date.now() - t0 < 2000, 'sending never waits');
    await waitFor(() => away.counters.sent + away.counters.dropped + away.counters.failed >= 2000, 5000);
    const c = away.counters;
    assert.ok(c.dropped > 0, `more than the in-flight bound are dropped: ${JSON.stringify(c)}`);
    assert.ok(c.failed > 0, `the refusals are counted: ${JSON.stringify(c)}`);
    assert.equal(c.sent + c.dropped + c.failed, 2000);
  } finally {
    away.close();
  }
});
