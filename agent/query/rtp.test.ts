import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importCaptures } from '../index/import';
import { buildQuerySpec } from '../../shared/query/query';
import { closeResult, runQuery, writeResultPcap } from './engine';
import { startCapture, parseEpochNs } from '../../test/support/tshark';
import { freePort, haveCommand, isRoot, run, startDaemon } from '../../test/support/proc';
import { uacPcapScenario as uacScenario } from '../../test/support/sipp';
import type { RtpStreamFigures } from '../../shared/rtp/figures';
import { closedWithRefs } from '../../test/support/query';

/*
 * Real calls with real RTP: sipp's uac_pcap plays sip-tester's G.711 A-law
 * capture and an RFC 2833 digit; sipp's uas echoes it (-rtp_echo) from one
 * media address and port for every call, as a media server that reuses one
 * would. Two overlapping calls go to that callee; a third, NATed call (its SDP
 * announces 192.0.2.55, its packets come from 127.0.0.1) goes to a second
 * callee at the same time. Captured on lo by dumpcap, imported into a ring,
 * and compared with tshark's own RTP dissection of the same file.
 */

const skip = !isRoot() ? 'needs root to capture on lo' : !haveCommand('sipp') || !haveCommand('tshark') ? 'needs sipp and tshark' : false;
/** tshark rounds its jitter to microseconds and computes it in doubles as we do; what is left is rounding. */
const JITTER_TOLERANCE_MS = 0.005;

interface TsharkRtp {
  t: bigint;
  src: string;
  dst: string;
}

/** Every RTP packet as tshark dissects it (decoded as RTP on the callee media ports). */
async function tsharkRtp(pcap: string, ports: number[]): Promise<TsharkRtp[]> {
  const decode = ports.flatMap((p) => ['-d', `udp.port==${p},rtp`]);
  const r = await run('tshark', ['-r', pcap, '-n', ...decode, '-Y', 'rtp', '-T', 'fields', '-E', 'separator=/t', '-e', 'frame.time_epoch', '-e', 'ip.src', '-e', 'udp.srcport', '-e', 'ip.dst', '-e', 'udp.dstport'], { timeoutMs: 60_000 });
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const [t, sa, sp, da, dp] = l.split('\t');
      return { t: parseEpochNs(t), src: `${sa}:${sp}`, dst: `${da}:${dp}` };
    });
}

/** The SDP media endpoints of each call, from tshark's SIP/SDP dissection. */
async function tsharkSdp(pcap: string, sipPorts: number[]): Promise<Map<string, Set<string>>> {
  const decode = sipPorts.flatMap((p) => ['-d', `udp.port==${p},sip`]);
  const r = await run('tshark', ['-r', pcap, '-n', ...decode, '-Y', 'sdp', '-T', 'fields', '-E', 'separator=/t', '-e', 'sip.Call-ID', '-e', 'sdp.connection_info.address', '-e', 'sdp.media.port'], { timeoutMs: 60_000 });
  const out = new Map<string, Set<string>>();
  for (const l of r.stdout.split('\n').filter((x) => x.trim())) {
    const [c, a, p] = l.split('\t');
    const s = out.get(c) ?? out.set(c, new Set()).get(c)!;
    s.add(`${a}:${p}`);
  }
  return out;
}

interface TsharkStream {
  src: string;
  dst: string;
  ssrc: string;
  packets: number;
  lost: number;
  maxDelta: number;
  meanJitter: number;
  maxJitter: number;
}

/** `tshark -q -z rtp,streams`: one line a stream. */
async function tsharkStreams(pcap: string, ports: number[]): Promise<TsharkStream[]> {
  const decode = ports.flatMap((p) => ['-d', `udp.port==${p},rtp`]);
  const r = await run('tshark', ['-r', pcap, '-n', ...decode, '-q', '-z', 'rtp,streams'], { timeoutMs: 60_000 });
  const out: TsharkStream[] = [];
  for (const l of r.stdout.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(0x[0-9A-Fa-f]+)\s+.*?\s(\d+)\s+(-?\d+) \([^)]*\)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)\s+([\d.]+)\s+([\d.]+)/.exec(l);
    if (!m) continue;
    out.push({
      src: `${m[1]}:${m[2]}`, dst: `${m[3]}:${m[4]}`, ssrc: m[5].toLowerCase(), packets: Number(m[6]), lost: Number(m[7]),
      maxDelta: Number(m[10]), meanJitter: Number(m[12]), maxJitter: Number(m[13]),
    });
  }
  return out;
}

test('real sipp calls: each call gets exactly its own RTP (shared callee media, NAT), and its stream figures agree with tshark', { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-rtp-'));
  const daemons: Array<{ stop(): Promise<unknown> }> = [];
  try {
    const plain = await uacScenario(dir, 'uac.xml', null);
    const natted = await uacScenario(dir, 'uac-nat.xml', '192.0.2.55');
    const [sipShared, sipNat, sipUac1, sipUac2, mediaShared, mediaNat, mediaUac1, mediaUac2] = await Promise.all(Array.from({ length: 8 }, () => freePort()));
    const portFilter = [sipShared, sipNat, sipUac1, sipUac2].map((p) => `port ${p}`).concat([mediaShared, mediaNat, mediaUac1, mediaUac2].map((p) => `portrange ${p}-${p + 12}`));
    const pcap = join(dir, 'calls.pcapng');
    const cap = await startCapture({ iface: 'lo', file: pcap, filter: `udp and (${portFilter.join(' or ')})`, maxSeconds: 60 });

    const uas = (sip: number, media: number, calls: number) =>
      startDaemon('sipp', ['-sn', 'uas', '-i', '127.0.0.1', '-p', String(sip), '-mi', '127.0.0.1', '-mp', String(media), '-rtp_echo', '-m', String(calls), '-nostdin'], { cwd: dir });
    daemons.push(await uas(sipShared, mediaShared, 2), await uas(sipNat, mediaNat, 1));
    await new Promise((r) => setTimeout(r, 500));
    const uac = (scenario: string, to: number, sip: number, media: number, calls: number) =>
      run('sipp', [`127.0.0.1:${to}`, '-sf', scenario, '-i', '127.0.0.1', '-p', String(sip), '-mi', '127.0.0.1', '-mp', String(media), '-m', String(calls), '-r', '5', '-rp', '1000', '-nostdin', '-timeout', '40s'], { cwd: dir, timeoutMs: 45_000, check: false });
    const [r1, r2] = await Promise.all([uac(plain, sipShared, sipUac1, mediaUac1, 2), uac(natted, sipNat, sipUac2, mediaUac2, 1)]);
    assert.equal(r1.code, 0, `sipp uac: ${r1.stderr.slice(-500)}`);
    assert.equal(r2.code, 0, `sipp uac (NAT): ${r2.stderr.slice(-500)}`);
    await cap.stop();

    const ring = join(dir, 'ring');
    await importCaptures(ring, [pcap]);
    const sdp = await tsharkSdp(pcap, [sipShared, sipNat]);
    const rtp = await tsharkRtp(pcap, [mediaShared, mediaNat]);
    assert.equal(sdp.size, 3, 'three calls with SDP');
    const callIds = [...sdp.keys()];
    const natCall = callIds.find((c) => sdp.get(c)!.has('192.0.2.55:' + mediaUac2))!;
    assert.ok(natCall, 'the NATed call announced 192.0.2.55');

    // The verdict: both ends announced in the call's SDP; for the NATed call, whatever reached its own callee's media port.
    const natEnd = `127.0.0.1:${mediaNat}`;
    const verdict = (c: string) =>
      rtp.filter((p) => (c === natCall ? p.src === natEnd || p.dst === natEnd : sdp.get(c)!.has(p.src) && sdp.get(c)!.has(p.dst)));
    const shared = callIds.filter((c) => c !== natCall);
    assert.ok(shared.every((c) => sdp.get(c)!.has(`127.0.0.1:${mediaShared}`)), 'both calls share the callee media endpoint');

    const now = new Date(Date.now() + 60_000);
    const byCall = new Map<string, RtpStreamFigures[]>();
    for (const c of callIds) {
      const r = runQuery(ring, buildQuerySpec({ callId: [c], rtp: true }, now));
      // The RTP our result holds, dissected by tshark as the capture was: packets told apart by time and both ends
      // (two calls' packets can share a capture timestamp to the nanosecond, so time alone is not an identity).
      const file = join(dir, `result-${byCall.size}.pcap`);
      try {
        await writeResultPcap(r, createWriteStream(file));
      } finally {
        closeResult(r);
      }
      const key = (p: TsharkRtp) => `${p.t} ${p.src} ${p.dst}`;
      const mine = (await tsharkRtp(file, [mediaShared, mediaNat])).map(key).sort();
      const want = verdict(c).map(key).sort();
      assert.ok(want.length > 400, `${c}: ${want.length} RTP packets by the verdict; a call plays 236 and gets them echoed`);
      // Every RTP packet of the call, and nothing of another call's audio.
      assert.deepEqual(mine, want, `${c}: exactly its own RTP`);
      byCall.set(c, r.streams);
    }

    // Stream figures against tshark's, stream by stream (SSRC and 5-tuple).
    const theirs = await tsharkStreams(pcap, [mediaShared, mediaNat]);
    const ours = [...byCall.values()].flat();
    assert.equal(ours.length, theirs.length, `streams: ours ${ours.map((s) => `${s.src}>${s.dst}`)} tshark ${theirs.map((s) => `${s.src}>${s.dst}`)}`);
    for (const t of theirs) {
      const o = ours.find((s) => s.src === t.src && s.dst === t.dst && s.ssrc === t.ssrc);
      assert.ok(o, `tshark's stream ${t.ssrc} ${t.src} -> ${t.dst} is ours too`);
      assert.equal(o.packets, t.packets, `${t.src}->${t.dst} packets`);
      // tshark counts lost as expected minus packets: duplicates (RFC 4733 end packets are sent three times) make it negative.
      assert.equal(o.lost - o.duplicated, t.lost, `${t.src}->${t.dst} lost`);
      // Both are rounded to the microsecond, each its own way: one unit of the last place apart (0.001 as a double difference is a hair over 0.001).
      assert.ok(Math.abs(o.maxGapMs - t.maxDelta) <= 0.001 + 1e-9, `${t.src}->${t.dst} max delta ${o.maxGapMs} vs ${t.maxDelta}`);
      assert.ok(Math.abs((o.jitterMaxMs ?? -1) - t.maxJitter) <= JITTER_TOLERANCE_MS, `${t.src}->${t.dst} max jitter ${o.jitterMaxMs} vs ${t.maxJitter}`);
      assert.ok(Math.abs((o.jitterMeanMs ?? -1) - t.meanJitter) <= JITTER_TOLERANCE_MS, `${t.src}->${t.dst} mean jitter ${o.jitterMeanMs} vs ${t.meanJitter}`);
    }
    const audio = ours.filter((s) => s.codec === 'PCMA/8000');
    assert.equal(audio.length, 6, 'three calls, audio both ways, named from the SDP rtpmap');
    for (const s of audio) {
      assert.equal(s.lost, 0);
      assert.ok(s.mos !== null && s.mos > 4.3, `MOS ${s.mos} of a clean loopback G.711 stream`);
    }
    const digits = ours.filter((s) => s.codec === 'telephone-event/8000');
    assert.ok(digits.length >= 3 && digits.every((s) => s.events.length === 1 && s.events[0].event === '1'), `the RFC 2833 digit 1 of each call: ${JSON.stringify(digits.map((s) => s.events))}`);

    // The figures come without the packets too (on by default for a call).
    const statsOnly = closedWithRefs(runQuery(ring, buildQuerySpec({ callId: [natCall] }, now)));
    assert.deepEqual(statsOnly.streams, byCall.get(natCall));
    assert.ok(statsOnly.refs.length < 20, 'without --rtp only the SIP packets are selected');
  } finally {
    for (const d of daemons) await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
