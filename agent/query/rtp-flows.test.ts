import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePcap } from '../../test/support/packets';
import { T0, clearFlowsFlag, rtpCallMix } from '../../test/support/rtp-calls';
import { importCaptures } from '../index/import';
import { SealedIndex } from '../index/reader';
import { NO_ADDRESS, PACKET_ENTRY_LEN, PKT_FLAG } from '../index/format';
import { FLOW_KIND } from '../index/flows';
import { buildQuerySpec } from '../../shared/query/query';
import { runQuery } from './engine';
import { closedWithRefs } from '../../test/support/query';

/*
 * The flows of a sealed index only narrow what `--rtp` and `--rtp-stats` read:
 * over a seeded mix of calls (shared media server ports, NATed senders,
 * RTCP, media before the INVITE and after the BYE, SSRC changes, UDP that is
 * not RTP) cut into small segments, every call selects the same packets and
 * gets the same figures with its flows as by the scan of an index without
 * them (an index sealed before flows existed: its footer flag cleared).
 */

test('--rtp and --rtp-stats read through the flows select what the scan of an index without flows does', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-rtp-flows-'));
  try {
    const { pkts, calls } = rtpCallMix(20261204);
    const file = join(dir, 'calls.pcap');
    writePcap(file, pkts.map((p) => ({ sec: T0 + Math.floor(p.t + 1), nsec: Math.round(((p.t + 1) % 1) * 1e9), frame: p.f })));
    const ring = join(dir, 'ring');
    await importCaptures(ring, [file], { maxSegmentBytes: 512 * 1024 });
    const idxs = readdirSync(ring).filter((n) => n.endsWith('.idx')).map((n) => join(ring, n));
    assert.ok(idxs.length >= 4, `the calls span several segments (${idxs.length})`);

    // Each flow holds exactly the packets the scan tests for media, each once, with its 5-tuple and within its times.
    let rtcpFlows = 0;
    for (const p of idxs) {
      const ix = SealedIndex.open(p)!;
      try {
        const flows = ix.flowTable();
        assert.ok(flows, `${p} has flows`);
        const t = ix.packetTable();
        const seen = new Uint8Array(ix.packetCount);
        for (let f = 0; f < flows.length; f++) {
          const ords = ix.flowPackets(f);
          assert.equal(ords.length, flows.packets(f));
          if (flows.kind(f) === FLOW_KIND.RTCP) rtcpFlows++;
          for (const ord of ords) {
            const e = ord * PACKET_ENTRY_LEN;
            assert.equal(seen[ord], 0, `packet ${ord} in one flow only`);
            seen[ord] = 1;
            assert.deepEqual([t.readUInt32LE(e + 12), t.readUInt32LE(e + 16), t.readUInt16LE(e + 20), t.readUInt16LE(e + 22)], [flows.src(f), flows.dst(f), flows.sport(f), flows.dport(f)]);
            const ts = t.readUInt32LE(e + 4) * 1e9 + t.readUInt32LE(e + 8);
            assert.ok(ts >= flows.first(f)[0] * 1e9 + flows.first(f)[1] && ts <= flows.last(f)[0] * 1e9 + flows.last(f)[1]);
          }
        }
        for (let ord = 0; ord < ix.packetCount; ord++) {
          const e = ord * PACKET_ENTRY_LEN;
          const media = t[e + 24] === 17 && !(t[e + 25] & PKT_FLAG.SIP) && t.readUInt32LE(e + 12) !== NO_ADDRESS && t.readUInt32LE(e + 16) !== NO_ADDRESS;
          assert.equal(seen[ord], media ? 1 : 0, `packet ${ord} of ${p}: in a flow exactly when the scan would test it`);
        }
      } finally {
        ix.close();
      }
    }
    assert.ok(rtcpFlows > 0, 'RTCP is told apart');

    const now = new Date((T0 + 100) * 1000);
    // Each call alone, and all of them at once (many dialogs on the same media server ports).
    const answers = () =>
      [...calls.map((id) => [id]), calls].map((ids) => {
        const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: ids, rtp: true, rtpStats: true }, now)));
        return { ids, packets: r.refs.toArray().map((x) => `${x.seg}/${x.ord}`), streams: JSON.stringify(r.streams) };
      });
    const withFlows = answers();
    assert.ok(withFlows.filter((a) => a.packets.length > 8).length >= 12, 'most calls get media');
    assert.ok(withFlows.some((a) => JSON.parse(a.streams).length > 2), 'an SSRC change makes another stream');
    for (const p of idxs) clearFlowsFlag(p);
    for (const p of idxs) {
      const ix = SealedIndex.open(p)!;
      assert.equal(ix.flowTable(), null, 'an index without the flag is read without flows');
      ix.close();
    }
    assert.deepEqual(answers(), withFlows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
