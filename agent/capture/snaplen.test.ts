import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { listSegments } from '../ring/layout';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery } from '../query/engine';
import { CaptureEngine } from './capture';
import { isRoot, LOOPBACK, NEEDS_ROOT, tempDir, udpReceiver, udpSender } from '../../test/support/capture';
import { closedWithRefs } from '../../test/support/query';

/*
 * The largest UDP datagram over IPv4 (65,507 bytes of payload) is a
 * 65,549-byte frame on lo, whose MTU lets it through unfragmented: a snap
 * length of 65,535 cut it and its Call-ID's trace came back empty.
 */

const PAYLOAD = 65_507;

function bigSip(callId: string): Buffer {
  const head =
    `MESSAGE sip:big@${LOOPBACK} SIP/2.0\r\nVia: SIP/2.0/UDP ${LOOPBACK};branch=z9hG4bK-big\r\nCall-ID: ${callId}\r\n` +
    `CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\n`;
  const withoutBody = head.length + 'Content-Length: 00000\r\n\r\n'.length;
  const bodyLen = PAYLOAD - withoutBody;
  const msg = Buffer.from(`${head}Content-Length: ${String(bodyLen).padStart(5, '0')}\r\n\r\n${'b'.repeat(bodyLen)}`, 'latin1');
  assert.equal(msg.length, PAYLOAD);
  return msg;
}

test('a 65,507-byte SIP datagram captured on lo is traced whole by its Call-ID', async (t) => {
  if (!isRoot()) return t.skip(NEEDS_ROOT);
  const ring = tempDir('tf-snap-');
  const rx = await udpReceiver(5100, 5299);
  const tx = await udpSender();
  const engine = new CaptureEngine({ ringDir: ring, interfaces: ['lo'], ringMaxBytes: 1 << 30, minFreeBytes: 0 });
  const callId = `big-${process.pid}-${Date.now()}`;
  try {
    await engine.start();
    await new Promise<void>((resolve, reject) => tx.sock.send(bigSip(callId), rx.port, LOOPBACK, (e) => (e ? reject(e) : resolve())));
    await new Promise((r) => setTimeout(r, 500));
    await engine.stop();
    assert.ok(listSegments(ring).length >= 1);

    const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [callId] }, new Date(Date.now() + 1000))));
    assert.equal(r.refs.length, 1, 'the datagram is in its trace');
    assert.equal(r.messages.length, 1);
    assert.equal(r.messages[0].bytes, PAYLOAD, 'the whole message, not a cut one');
    assert.notEqual(r.messages[0].truncated, true);
  } finally {
    await engine.stop();
    rx.sock.close();
    tx.sock.close();
    rmSync(ring, { recursive: true, force: true });
  }
});
