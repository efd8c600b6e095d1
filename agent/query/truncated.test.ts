import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { LINKTYPE } from '../../shared/pcap/types';
import { ethernet, fragmentIpv4, fragmentIpv6, ipv4, tcp, udp, ETH_IPV4, ETH_IPV6, sipInvite } from '../../test/support/packets';
import { importCaptures } from '../index/import';
import { buildQuerySpec, TraceQuery } from '../../shared/query/query';
import { closeResult, runQuery } from './engine';
import { closedWithRefs } from '../../test/support/query';

/*
 * A packet the snap length cut (record caplen < origlen) is indexed by what
 * the capture kept of it, and said to be cut; a packet whose headers claim
 * more bytes than it has, and that the capture did not cut, is still refused.
 */

const T0 = 1_795_100_000;
type Rec = { sec: number; frame: Buffer; origLen?: number };

function writePcap(path: string, recs: Rec[]): void {
  const fd = openSync(path, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: LINKTYPE.ETHERNET, nanos: true });
  for (const r of recs) w.write({ tsSec: r.sec, tsNsec: 0, origLen: r.origLen ?? r.frame.length, data: r.frame });
  w.flush();
  closeSync(fd);
}

function sipFrame(payload: Buffer, src = '192.0.2.1'): Buffer {
  return ethernet(ETH_IPV4, ipv4({ src, dst: '198.51.100.7', proto: 17 }, udp(5060, 5060, payload)));
}

/** The frame cut just before `marker` (plus `more` bytes of it) in its SIP payload. */
function cutAt(frame: Buffer, marker: string, more: number): Buffer {
  const at = frame.indexOf(marker, 0, 'latin1');
  assert.ok(at > 0, marker);
  return frame.subarray(0, at + more);
}

async function withImport(recs: Rec[], fn: (ring: string) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tf-cut-'));
  try {
    const file = join(dir, 'cut.pcap');
    writePcap(file, recs);
    const ring = join(dir, 'ring');
    const r = await importCaptures(ring, [file]);
    assert.equal(r.packets, recs.length);
    fn(ring);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function query(ring: string, raw: TraceQuery) {
  const r = closedWithRefs(runQuery(ring, buildQuerySpec(raw, new Date((T0 + 10) * 1000))));
  return r;
}

test('a SIP datagram cut by the snap length is found by its Call-ID and marked truncated, cut in its SDP or in its headers', async () => {
  const inSdp = sipFrame(sipInvite('cut-in-sdp@pc33'));
  const inHeaders = sipFrame(sipInvite('cut-in-headers@pc33'));
  const whole = sipFrame(sipInvite('whole@pc33'));
  await withImport(
    [
      // In the middle of the m= line: its port is not all there.
      { sec: T0, frame: cutAt(inSdp, 'm=audio 49170', 10), origLen: inSdp.length },
      // In the middle of CSeq, the header after Call-ID.
      { sec: T0 + 1, frame: cutAt(inHeaders, 'CSeq: 314159 INVITE', 14), origLen: inHeaders.length },
      { sec: T0 + 2, frame: whole },
    ],
    (ring) => {
      const a = query(ring, { callId: ['cut-in-sdp@pc33'] });
      assert.equal(a.refs.length, 1);
      assert.equal(a.messages.length, 1);
      assert.equal(a.messages[0].truncated, true);
      assert.equal(a.messages[0].method, 'INVITE');
      assert.equal(a.messages[0].cseq, '314159 INVITE');
      // The SDP's cut m= line names no media, so --rtp adds nothing for it.
      assert.equal(query(ring, { callId: ['cut-in-sdp@pc33'], rtp: true }).refs.length, 1);

      const b = query(ring, { callId: ['cut-in-headers@pc33'] });
      assert.equal(b.refs.length, 1);
      assert.equal(b.messages[0].truncated, true);
      assert.equal(b.messages[0].callId, 'cut-in-headers@pc33');
      assert.equal(b.messages[0].from, 'alice');
      // "CSeq: 314159 INV" lost its end: it is left out, not read as another method.
      assert.equal(b.messages[0].cseq, null);

      const c = query(ring, { callId: ['whole@pc33'] });
      assert.equal(c.messages.length, 1);
      assert.equal(c.messages[0].truncated, undefined);
    },
  );
});

test('an IP total length past the packet is refused when the capture did not cut it, and read as a cut when it did', async () => {
  // IP and UDP lengths both 200 bytes past what the frame holds.
  const claimingMore = (callId: string, src: string) => {
    const invite = sipInvite(callId);
    const udpLen = 8 + invite.length + 200;
    return ethernet(ETH_IPV4, ipv4({ src, dst: '198.51.100.7', proto: 17, totalLength: 20 + udpLen }, udp(5060, 5060, invite, udpLen)));
  };
  const lying = claimingMore('lying-length@pc33', '192.0.2.1');
  const cut = claimingMore('said-cut@pc33', '192.0.2.2');
  await withImport(
    [
      { sec: T0, frame: lying },
      { sec: T0 + 1, frame: cut, origLen: cut.length + 200 },
    ],
    (ring) => {
      assert.equal(query(ring, { callId: ['lying-length@pc33'] }).refs.length, 0);
      assert.equal(query(ring, { ip: ['192.0.2.1'] }).refs.length, 0, 'not decoded, so not found by address either');
      const found = query(ring, { callId: ['said-cut@pc33'] });
      assert.equal(found.messages.length, 1);
      assert.equal(found.messages[0].truncated, true);
    },
  );
});

test('--max-bytes counts a packet over 65,535 bytes at its real length', async () => {
  // Segmentation offload: a 100,000-byte TCP frame whose IPv4 total length is 0.
  const frame = ethernet(ETH_IPV4, ipv4({ src: '203.0.113.9', dst: '198.51.100.7', proto: 6, totalLength: 0 }, tcp({ sport: 40000, dport: 5061, seq: 1 }, Buffer.alloc(100_000 - 54, 0x41))));
  assert.equal(frame.length, 100_000);
  await withImport([{ sec: T0, frame }, { sec: T0 + 1, frame: sipFrame(sipInvite('after@pc33'), '203.0.113.9') }], (ring) => {
    const all = query(ring, { ip: ['203.0.113.9'] });
    assert.equal(all.refs.length, 2);
    assert.equal(all.refs.at(0).capLen, 100_000);
    const second = 16 + all.refs.at(1).capLen;
    assert.equal(all.bytes, 16 + 100_000 + second);

    const short = query(ring, { ip: ['203.0.113.9'], maxBytes: 16 + 100_000 - 1 });
    assert.equal(short.refs.length, 0, 'one byte short of the big packet: nothing fits');
    assert.equal(short.truncated, true);
    assert.equal(short.bytes, 0);

    const one = query(ring, { ip: ['203.0.113.9'], maxBytes: 16 + 100_000 + second - 1 });
    assert.equal(one.refs.length, 1);
    assert.equal(one.bytes, 16 + 100_000);
    assert.equal(one.truncated, true);
  });
});

test('a fragmented SIP datagram whose fragments the snap length cut is found by its Call-ID and marked truncated', async () => {
  /** What a capture with this snap length keeps of each frame. */
  const snap = (frames: Buffer[], snaplen: number): Rec[] =>
    frames.map((f, i) => ({ sec: T0 + i, frame: f.subarray(0, Math.min(f.length, snaplen)), origLen: f.length }));
  // 2,000-byte INVITEs sent as four fragments each.
  const v4 = sipInvite('cut-frags-v4@pc33', '', 1500);
  const v4frames = fragmentIpv4({ src: '192.0.2.21', dst: '198.51.100.7', proto: 17, id: 77 }, udp(5060, 5060, v4), [600, 600, 600, v4.length + 8 - 1800]).map((f) => ethernet(ETH_IPV4, f));
  const mid = sipInvite('cut-middle-v4@pc33', '', 1500);
  const midFrames = fragmentIpv4({ src: '192.0.2.22', dst: '198.51.100.7', proto: 17, id: 78 }, udp(5060, 5060, mid), [600, 600, 600, mid.length + 8 - 1800]).map((f) => ethernet(ETH_IPV4, f));
  const v6 = sipInvite('cut-frags-v6@pc33', '', 1500);
  const v6frames = fragmentIpv6({ src: '2001:db8::21', dst: '2001:db8::7' }, 17, 0x600d, udp(5060, 5060, v6), [600, 600, 600, v6.length + 8 - 1800]).map((f) => ethernet(ETH_IPV6, f));
  const recs = [
    // --snaplen 300: every fragment cut; the first still holds the Call-ID.
    ...snap(v4frames, 300),
    // Only the second fragment cut (as by a shorter --max-bytes copy, or a capture of mixed snap lengths).
    ...midFrames.map((f, i) => ({ sec: T0 + 10 + i, frame: i === 1 ? f.subarray(0, 200) : f, origLen: f.length })),
    ...snap(v6frames, 320).map((r) => ({ ...r, sec: r.sec + 20 })),
  ];
  await withImport(recs, (ring) => {
    for (const [callId, ip, prefix] of [
      ['cut-frags-v4@pc33', '192.0.2.21', v4.subarray(0, 300 - 14 - 20 - 8)],
      ['cut-middle-v4@pc33', '192.0.2.22', mid.subarray(0, 600 - 8 + 200 - 14 - 20)],
      ['cut-frags-v6@pc33', '2001:db8::21', v6.subarray(0, 320 - 14 - 40 - 8 - 8)],
    ] as const) {
      const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [callId] }, new Date((T0 + 40) * 1000))));
      assert.equal(r.messages.length, 1, `${callId}: one message`);
      assert.equal(r.messages[0].truncated, true, callId);
      assert.equal(r.messages[0].method, 'INVITE');
      assert.equal(r.messages[0].callId, callId);
      assert.equal(r.refs.length, 4, `${callId}: every fragment of the datagram`);
      assert.equal(r.messages[0].bytes, prefix.length, `${callId}: what the capture kept up to the first gap`);
      assert.equal(r.messages[0].packets, 4);
      assert.equal(runQuery(ring, buildQuerySpec({ ip: [ip] }, new Date((T0 + 40) * 1000))).packets, 4);
    }
  });
});
