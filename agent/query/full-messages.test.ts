import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { sipInvite } from '../../test/support/packets';
import { FULL_CALL_ID as CID, FULL_T0 as T0, writeCallPcap } from '../../test/support/full-call';
import { tsharkSipMessages } from '../../test/support/tshark';
import { withTmp } from '../../test/support/with-tmp';
import { readFullMessages } from '../../shared/decode/full-messages';
import { FULL_MESSAGE_LIMITS, fullSipMessage, type FullMessage } from '../../shared/sip/message';
import type { CallFigures } from '../../shared/query/call-figures';
import { run } from '../../test/support/proc';
import { buildQuerySpec } from '../../shared/query/query';
import { importCaptures } from '../index/import';
import { closeResult, runQuery, writeResultPcap } from './engine';

/*
 * The full message of each message of a traced call is what tshark shows
 * for its frame: start line, each header, the body and the bytes, for a
 * plain UDP datagram, one reassembled from IP fragments and one from TCP
 * segments (two messages in one segment too).
 */

test('every message of a traced call, whole, as tshark shows it (UDP, IP fragments, TCP segments)',
withTmp(async (dir) => {
    const file = join(dir, 'call.pcap');
    writeCallPcap(file);
    const ref = await tsharkSipMessages(file);
    assert.equal(ref.length, 8, `tshark sees the 8 messages: ${ref.map((r) => r.startLine).join(' | ')}`);

    const ring = join(dir, 'ring');
    await importCaptures(ring, [file]);
    const r = runQuery(ring, buildQuerySpec({ callId: [CID] }, new Date((T0 + 10) * 1000)));
    assert.equal(r.messages.length, 8);
    // The query's own result PCAP, read as `tracefleet query --json --full` reads it.
    const pcap = new PassThrough();
    const [, got] = await Promise.all([writeResultPcap(r, pcap).finally(() => closeResult(r)), readFullMessages(pcap, r.messages)]);
    // And the capture file itself, as the dispatcher reads a merged PCAP.
    const fromFile = await readFullMessages(createReadStream(file), r.messages);
    assert.deepEqual(fromFile.messages, got.messages);

    got.messages.forEach((m, i) => {
      const t = ref[i];
      assert.ok(m, `message ${i} (${r.messages[i].method ?? r.messages[i].status}) found`);
      assert.equal(m.startLine, t.startLine, `start line of frame ${t.frame}`);
      assert.deepEqual(m.headers, t.headers, `headers of frame ${t.frame}`);
      assert.equal(Buffer.from(m.body, 'latin1').toString('hex'), t.body.toString('hex'), `body of frame ${t.frame}`);
      assert.equal(Buffer.from(m.raw, 'base64').toString('hex'), t.raw.toString('hex'), `bytes of frame ${t.frame}`);
      assert.equal(m.length, t.raw.length);
      assert.equal(m.cut, false);
    });
    assert.ok(got.messages[0]!.headers.some((h) => h.name === 'X-Evil' && h.value.includes('<script>')), 'hostile header kept as text');
    assert.ok(got.messages[3]!.body.length > 2400, 'the fragmented INVITE has its whole SDP');
  }),
);

test('the full message is bounded: bytes, headers and value lengths are cut and marked', () => {
  const many = Array.from({ length: FULL_MESSAGE_LIMITS.headers + 5 }, (_, i) => `X-H${i}: v\r\n`).join('');
  const m = fullSipMessage(sipInvite('bounded@x', many + `X-Long: ${'a'.repeat(FULL_MESSAGE_LIMITS.valueChars + 10)}\r\n`))!;
  assert.equal(m.cut, true);
  assert.equal(m.headers.length, FULL_MESSAGE_LIMITS.headers);
  const huge = sipInvite('huge@x', '', FULL_MESSAGE_LIMITS.rawBytes);
  const h = fullSipMessage(huge)!;
  assert.equal(h.cut, true);
  assert.equal(h.length, huge.length);
  assert.equal(Buffer.from(h.raw, 'base64').length, FULL_MESSAGE_LIMITS.rawBytes);
  assert.equal(h.headers.find((x) => x.name === 'Call-ID')?.value, 'huge@x');
  const long = fullSipMessage(sipInvite('long@x', `X-Long: ${'a'.repeat(FULL_MESSAGE_LIMITS.valueChars + 10)}\r\n`))!;
  assert.equal(long.cut, true);
  assert.equal(long.headers.find((x) => x.name === 'X-Long')?.value.length, FULL_MESSAGE_LIMITS.valueChars);
  assert.equal(fullSipMessage(Buffer.from('\x16\x03\x01 not SIP', 'latin1')), null);
});

test(
  'tracefleet query --json --full: the messages whole, and the PCAP written alongside is the one without --full',
  withTmp(async (dir) => {
    const file = join(dir, 'call.pcap');
    writeCallPcap(file);
    const ring = join(dir, 'ring');
    await importCaptures(ring, [file]);
    const cli = join(resolve(__dirname, '..', '..', '..'), 'bin', 'tracefleet');
    const args = ['query', '--ring', ring, '--call-id', CID, '--since', new Date((T0 - 60) * 1000).toISOString(), '--until', new Date((T0 + 60) * 1000).toISOString()];
    const full = await run(process.execPath, [cli, ...args, '--json', '--full', '-o', join(dir, 'full.pcap')]);
    await run(process.execPath, [cli, ...args, '-o', join(dir, 'plain.pcap')]);
    assert.ok(readFileSync(join(dir, 'full.pcap')).equals(readFileSync(join(dir, 'plain.pcap'))));
    const out = JSON.parse(full.stdout) as { messages: Array<{ full: FullMessage | null }>; calls: CallFigures[] };
    const ref = await tsharkSipMessages(file);
    assert.deepEqual(out.messages.map((m) => m.full?.raw), ref.map((t) => t.raw.toString('base64')));
    assert.deepEqual(out.calls.map((c) => [c.callId, c.finalStatus, c.endedBy, c.endedWith]), [[CID, 200, 'caller', 'BYE']]);
  }),
);
