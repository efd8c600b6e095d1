import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prng, writePcap } from '../../test/support/packets';
import { M, T0, clearFlowsFlag, frame, rtp, rtpCallMix, withoutFlowRecords, type Pkt } from '../../test/support/rtp-calls';
import { SegmentIndexer } from '../index/builder';
import { openSegment } from '../index/open';
import { FOOTER_FLAG, FOOTER_LEN, NO_ADDRESS, PACKET_ENTRY_LEN, PKT_FLAG } from '../index/format';
import { FLOW_JOURNAL_PACKETS, MAX_SSRC_FLOWS } from '../index/flows';
import { indexPathFor, listSegments, segmentBaseName } from '../ring/layout';
import { buildQuerySpec } from '../../shared/query/query';
import { runQuery } from './engine';
import { closedWithRefs } from '../../test/support/query';

/*
 * The live segment (a journal, completed in memory by the query) reads its
 * RTP through the flows the live indexer journals: every call selects the
 * same packets, with the same figures, as by the scan (a journal without
 * flow records, as an agent before them wrote) and as the sealed segment
 * does after seal, with and without its flows. Hostile traffic is mixed in:
 * a 5-tuple whose every packet has another SSRC, RTP-looking datagrams that
 * are not RTP, and (second test) more flows than the cap.
 */

/** The calls' mix, and what an attacker adds to it. */
function hostileMix(seed: number): { pkts: Pkt[]; calls: string[] } {
  const { pkts, calls } = rtpCallMix(seed);
  const rnd = prng(seed + 1);
  for (let i = 0; i < 400; i++) {
    const t = 2 + i * 0.02;
    // Random SSRCs on one 5-tuple that is some call's media port.
    const junk = rtp(i, Math.floor(rnd() * 2 ** 32));
    pkts.push({ t, f: frame('198.51.100.7', M, 31000, 7000, junk) });
    // Version-2-looking bytes that are no RTP header (too short), and a fake RTCP, to the media ports.
    pkts.push({ t: t + 0.005, f: frame('198.51.100.8', M, 31002 + (i % 3), 7002, Buffer.from([0x80, 0x00, 0x01])) });
    if (i % 10 === 0) pkts.push({ t: t + 0.007, f: frame('198.51.100.9', M, 31010, 7003, Buffer.from([0x80, 200, 0, 1, 1, 2, 3, 4])) });
  }
  pkts.sort((a, b) => a.t - b.t);
  return { pkts, calls };
}

interface LiveRing {
  dir: string;
  ring: string;
  seg: string;
  idx: string;
  indexer: SegmentIndexer;
  calls: string[];
}

/**
 * A ring whose one segment is written and indexed in rounds as a capture's
 * is, its last tenth written but not indexed yet (the query indexes it).
 */
function liveRing(maxFlows?: number): LiveRing {
  const dir = mkdtempSync(join(tmpdir(), 'tf-rtp-live-'));
  const { pkts, calls } = hostileMix(20261205);
  const file = join(dir, 'calls.pcap');
  writePcap(file, pkts.map((p) => ({ sec: T0 + Math.floor(p.t + 1), nsec: Math.round(((p.t + 1) % 1) * 1e9), frame: p.f })));
  const bytes = readFileSync(file);
  const ring = join(dir, 'ring');
  mkdirSync(ring);
  const seg = join(ring, `${segmentBaseName('eth0', T0 * 1e6)}.pcap`);
  const idx = indexPathFor(seg);
  const indexer = new SegmentIndexer(seg, idx, maxFlows ? { maxFlows } : {});
  const fd = openSync(seg, 'w');
  try {
    const rounds = 23;
    const indexed = Math.floor(bytes.length * 0.9);
    for (let r = 1; r <= rounds; r++) {
      const from = Math.floor(((r - 1) * indexed) / rounds);
      const to = Math.floor((r * indexed) / rounds);
      writeSync(fd, bytes, from, to - from, from);
      indexer.catchUp();
    }
    writeSync(fd, bytes, indexed, bytes.length - indexed, indexed);
  } finally {
    closeSync(fd);
  }
  return { dir, ring, seg, idx, indexer, calls };
}

/** Each call alone and all of them at once: packets and figures. */
function answers(ring: string, calls: string[]): Array<{ ids: string[]; packets: string[]; streams: string }> {
  const now = new Date((T0 + 100) * 1000);
  return [...calls.map((id) => [id]), calls].map((ids) => {
    const r = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: ids, rtp: true, rtpStats: true }, now), { mayWrite: false }));
    return { ids, packets: r.refs.toArray().map((x) => `${x.sec}.${x.nsec}/${x.ord}`), streams: JSON.stringify(r.streams) };
  });
}

/** The live segment as a query opens it: flows (or none), each holding exactly the packets the scan would test. */
function liveFlows(ring: string): { flows: number; packets: number } | null {
  const o = openSegment(listSegments(ring)[0], false)!;
  try {
    const ix = o.index;
    assert.equal(ix.sealed, false);
    const flows = ix.flowTable();
    if (!flows) return null;
    const t = ix.packetTable();
    const seen = new Uint8Array(ix.packetCount);
    let packets = 0;
    for (let f = 0; f < flows.length; f++) {
      const ords = ix.flowPackets(f);
      assert.equal(ords.length, flows.packets(f));
      for (const ord of ords) {
        const e = ord * PACKET_ENTRY_LEN;
        assert.equal(seen[ord], 0, `packet ${ord} in one flow only`);
        seen[ord] = 1;
        packets++;
        assert.deepEqual([t.readUInt32LE(e + 12), t.readUInt32LE(e + 16), t.readUInt16LE(e + 20), t.readUInt16LE(e + 22)], [flows.src(f), flows.dst(f), flows.sport(f), flows.dport(f)]);
        const ts = t.readUInt32LE(e + 4) * 1e9 + t.readUInt32LE(e + 8);
        assert.ok(ts >= flows.first(f)[0] * 1e9 + flows.first(f)[1] && ts <= flows.last(f)[0] * 1e9 + flows.last(f)[1], `packet ${ord} within its flow's times`);
      }
    }
    for (let ord = 0; ord < ix.packetCount; ord++) {
      const e = ord * PACKET_ENTRY_LEN;
      const media = t[e + 24] === 17 && !(t[e + 25] & PKT_FLAG.SIP) && t.readUInt32LE(e + 12) !== NO_ADDRESS && t.readUInt32LE(e + 16) !== NO_ADDRESS;
      assert.equal(seen[ord], media ? 1 : 0, `packet ${ord}: in a flow exactly when the scan would test it`);
    }
    return { flows: flows.length, packets };
  } finally {
    o.index.close();
  }
}

test('the live segment reads its RTP through journaled flows: the same packets and figures as the scan, and as the sealed segment', () => {
  const r = liveRing();
  try {
    const flows = r.indexer.state.flows!;
    assert.ok(flows.packets > 2 * FLOW_JOURNAL_PACKETS, `several flow records were journaled (${flows.packets} flow packets)`);
    assert.equal(flows.folded, 400 - MAX_SSRC_FLOWS, 'the random SSRCs past the cap went into one flow');
    const live = liveFlows(r.ring);
    assert.ok(live && live.flows > 0, 'the live segment has flows');

    const withFlows = answers(r.ring, r.calls);
    assert.ok(withFlows.filter((a) => a.packets.length > 8).length >= 12, 'most calls get media');
    assert.ok(withFlows.some((a) => JSON.parse(a.streams).length > 2), 'an SSRC change makes another stream');

    const journal = readFileSync(r.idx);
    writeFileSync(r.idx, withoutFlowRecords(journal));
    assert.equal(liveFlows(r.ring), null, 'a journal without flow records is scanned');
    assert.deepEqual(answers(r.ring, r.calls), withFlows, 'scan of the live segment');
    writeFileSync(r.idx, journal);

    r.indexer.seal();
    assert.deepEqual(answers(r.ring, r.calls), withFlows, 'sealed, through its flows');
    clearFlowsFlag(r.idx);
    assert.deepEqual(answers(r.ring, r.calls), withFlows, 'sealed, scanned');
  } finally {
    r.indexer.close();
    rmSync(r.dir, { recursive: true, force: true });
  }
});

test('past the flow cap a segment keeps no flows, says so in its journal, counts what it dropped, and is scanned: same answers', () => {
  const r = liveRing(40);
  try {
    const flows = r.indexer.state.flows!;
    assert.ok(flows.abandoned, 'the cap was reached');
    assert.equal(flows.flowCount, 0, 'its flows were let go');
    assert.ok(flows.dropped > 0);
    assert.equal(liveFlows(r.ring), null, 'the live segment is scanned');
    const live = answers(r.ring, r.calls);
    assert.ok(live.filter((a) => a.packets.length > 8).length >= 12, 'most calls get media');
    r.indexer.seal();
    assert.deepEqual(answers(r.ring, r.calls), live, 'sealed without flows, scanned');
    const idx = readFileSync(r.idx);
    assert.equal(idx.readUInt32LE(idx.length - FOOTER_LEN + 100) & FOOTER_FLAG.FLOWS, 0, 'no flow table sealed');
  } finally {
    r.indexer.close();
    rmSync(r.dir, { recursive: true, force: true });
  }
});

test(`a 5-tuple keeps at most ${MAX_SSRC_FLOWS} flows by SSRC`, () => {
  const r = liveRing();
  try {
    r.indexer.seal();
    const o = openSegment(listSegments(r.ring)[0], false)!;
    try {
      const t = o.index.flowTable()!;
      const perTuple = new Map<string, number>();
      for (let f = 0; f < t.length; f++) {
        const k = `${t.src(f)}:${t.sport(f)}>${t.dst(f)}:${t.dport(f)}`;
        perTuple.set(k, (perTuple.get(k) ?? 0) + 1);
      }
      assert.ok(Math.max(...perTuple.values()) <= MAX_SSRC_FLOWS + 1, 'the SSRCs past the cap share one flow');
    } finally {
      o.index.close();
    }
  } finally {
    r.indexer.close();
    rmSync(r.dir, { recursive: true, force: true });
  }
});
