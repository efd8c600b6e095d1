import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ethernet, ipv4, udp, tcp, ETH_IPV4, TCP_FLAG, sipInvite, writePcap } from '../../test/support/packets';
import { importCaptures } from '../index/import';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery } from './engine';
import { run } from '../../test/support/proc';
import { closedWithRefs } from '../../test/support/query';

/*
 * Messages that RFC 3261 allows and tshark calls SIP must be in their
 * dialog's trace: a sender who could pick what the support engineer does not
 * see (a control byte in a reason phrase, a method with a '-' or a digit)
 * defeats the tool's purpose.
 */

const T0 = 1_795_100_000;
const CID = 'hidden-dialog@198.51.100.7';
const A = '192.0.2.1';
const B = '198.51.100.7';

function msg(text: string): Buffer {
  return Buffer.from(text.replace(/\n/g, '\r\n'), 'latin1');
}

function headers(cseq: string): string {
  return `Via: SIP/2.0/UDP ${A};branch=z9hG4bKh1\nFrom: <sip:alice@example.com>;tag=f1\nTo: <sip:bob@example.com>;tag=t1\nCall-ID: ${CID}\nCSeq: ${cseq}\nContent-Length: 0\n\n`;
}

/** The 180 hides a BEL (0x07) and an ESC in its reason phrase; the request's method is a token with a digit, '-' and '.'. */
const RINGING = msg(`SIP/2.0 180 Ring\x07ing \x1b[8mhidden\n${headers('1 INVITE')}`);
const TOKEN_METHOD = msg(`X-NOTIFY2.v1 sip:bob@example.com SIP/2.0\n${headers('2 X-NOTIFY2.v1')}`);
const TOKEN_METHOD_TCP = msg(`PING_1! sip:bob@example.com SIP/2.0\n${headers('3 PING_1!')}`);


test('a reason phrase with control bytes and token methods (over UDP and TCP) stay in their dialog, as tshark sees them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-hidden-'));
  try {
    const u = (src: string, dst: string, p: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, p)));
    const t = tcp({ sport: 40000, dport: 5060, seq: 1000, ack: 1, flags: TCP_FLAG.ACK | TCP_FLAG.PSH }, TOKEN_METHOD_TCP);
    const frames = [
      u(A, B, sipInvite(CID)),
      u(B, A, RINGING),
      u(A, B, TOKEN_METHOD),
      ethernet(ETH_IPV4, ipv4({ src: A, dst: B, proto: 6 }, t)),
    ];
    const file = join(dir, 'hidden.pcap');
    writePcap(file, frames.map((frame, i) => ({ sec: T0, nsec: i * 1000, frame })));

    // The reference: tshark gives each frame this Call-ID.
    const ts = await run('tshark', ['-r', file, '-n', '-T', 'fields', '-e', 'frame.number', '-e', 'sip.Call-ID']);
    const tsharkFrames = ts.stdout.split('\n').filter((l) => l.endsWith(`\t${CID}`)).map((l) => Number(l.split('\t')[0]));
    assert.deepEqual(tsharkFrames, [1, 2, 3, 4], `tshark's view: ${ts.stdout}`);

    const ring = join(dir, 'ring');
    await importCaptures(ring, [file]);
    const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [CID] }, new Date((T0 + 10) * 1000))));
    assert.equal(r.refs.length, 4, 'every frame of the dialog is in the trace');
    assert.deepEqual(
      r.messages.map((m) => m.method ?? `${m.status} ${m.reason}`),
      ['INVITE', '180 Ring\x07ing \x1b[8mhidden', 'X-NOTIFY2.V1', 'PING_1!'],
    );

    // --method takes token methods too, and selects the dialogs that have one.
    const now = new Date((T0 + 10) * 1000);
    for (const [method, frames] of [['x-notify2.v1', 4], ['PING_1!', 4], ['X-NOTIFY3', 0]] as const) {
      const byMethod = closedWithRefs(runQuery(ring, buildQuerySpec({ all: true, method: [method] }, now)));
      assert.equal(byMethod.refs.length, frames, method);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
