import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startAgent } from '../daemon/run';
import { runQuery } from '../query/engine';
import { buildQuerySpec } from '../../shared/query/query';
import { listSegments, HEP_STREAM } from '../ring/layout';
import { isRoot, NEEDS_ROOT, sleep, tempDir, udpReceiver, udpSender, waitFor } from '../../test/support/capture';
import { sipInvite, sipResponse } from '../../test/support/packets';
import { hepOf, sendHepTcp, sendHepUdp } from '../../test/support/hep';
import { parseExposition } from '../../test/support/prometheus';
import { AgentMetrics } from '../metrics/metrics';
import { freePort } from '../../test/support/proc';

const PASSWORD = 'hep-s3cret';

function messagesOf(ring: string, callId: string) {
  const r = runQuery(ring, buildQuerySpec({ callId: [callId] }), { mayWrite: false });
  for (const s of r.segments) s.index.close();
  return r.messages;
}

test('HEP in: SIP over HEP3 (UDP and TCP listeners) is indexed with the original addresses, ports, transport and time; a sniffed copy is kept once; malformed HEP and a flood are counted and dropped', { skip: isRoot() ? false : NEEDS_ROOT, timeout: 60_000 }, async () => {
  const ring = tempDir('tf-hep-in-');
  const port = await freePort();
  const agent = await startAgent({
    ringDir: ring, interfaces: ['lo'], ringMaxBytes: 64 * 1024 * 1024, maxSegmentBytes: 1024 * 1024, minFreeBytes: 0, indexerNice: 0,
    hep: { listen: [{ transport: 'udp', host: '127.0.0.1', port }, { transport: 'tcp', host: '127.0.0.1', port }], password: PASSWORD, perSenderPerSecond: 300 },
  });
  const rx = await udpReceiver(5200, 5299);
  const tx = await udpSender();
  try {
    const tag = `${process.pid}-${Date.now()}`;
    // Call A, from HEP alone: the INVITE over UDP/IPv4, 180 and 200 over one TCP/IPv6 flow.
    const a = `hep-a-${tag}`;
    const t0 = Date.now() - 5000 + 0.123;
    await sendHepUdp(port, [hepOf({ src: '192.0.2.1', dst: '198.51.100.2', sport: 5060, dport: 5080, proto: 17, atMs: t0, payload: sipInvite(a), password: PASSWORD })]);
    await sendHepTcp(port, [
      hepOf({ src: '2001:db8::2', dst: '2001:db8::1', sport: 5080, dport: 5061, proto: 6, atMs: t0 + 10, payload: sipResponse(180, 'Ringing', a), password: PASSWORD }),
      hepOf({ src: '2001:db8::2', dst: '2001:db8::1', sport: 5080, dport: 5061, proto: 6, atMs: t0 + 20, payload: sipResponse(200, 'OK', a), password: PASSWORD }),
    ]);
    // Call B: its INVITE both on the wire (captured on lo) and through HEP; its 200 through HEP only.
    const b = `hep-b-${tag}`;
    const inviteB = sipInvite(b);
    await new Promise<void>((resolve, reject) => tx.sock.send(inviteB, rx.port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
    const sentAt = Date.now();
    await sendHepUdp(port, [
      hepOf({ src: '127.0.0.1', dst: '127.0.0.1', sport: tx.port, dport: rx.port, proto: 17, atMs: sentAt, payload: inviteB, password: PASSWORD }),
      hepOf({ src: '127.0.0.1', dst: '127.0.0.1', sport: rx.port, dport: tx.port, proto: 17, atMs: sentAt + 5, payload: sipResponse(200, 'OK', b), password: PASSWORD }),
    ]);
    // Malformed, unauthenticated and unsupported HEP.
    const good = hepOf({ src: '192.0.2.1', dst: '192.0.2.2', sport: 5060, dport: 5060, proto: 17, atMs: Date.now(), payload: sipInvite(`hep-bad-${tag}`), password: PASSWORD });
    const unknownChunk = Buffer.concat([good, Buffer.from([0, 0, 0x02, 0, 0, 7, 1])]);
    unknownChunk.writeUInt16BE(unknownChunk.length, 4);
    await sendHepUdp(port, [
      good.subarray(0, good.length - 10),
      Buffer.from('HEP9 nonsense'),
      unknownChunk,
      hepOf({ src: '192.0.2.1', dst: '192.0.2.2', sport: 5060, dport: 5060, proto: 17, atMs: Date.now(), payload: sipInvite(`hep-pw-${tag}`), password: 'wrong' }),
      hepOf({ src: '192.0.2.1', dst: '192.0.2.2', sport: 5060, dport: 5060, proto: 17, atMs: Date.now(), payload: sipInvite(`hep-nopw-${tag}`) }),
      hepOf({ src: '192.0.2.1', dst: '192.0.2.2', sport: 5060, dport: 5060, proto: 17, atMs: Date.now(), payload: Buffer.from('a log line'), password: PASSWORD, protoType: 100 }),
    ]);
    // HEP2 has no length of its own: over TCP the listener gives up on the connection.
    await sendHepTcp(port, [Buffer.from([2, 16, 2, 17, 0, 0, 0, 0])]);

    // B's sniffed INVITE comes through the capture of lo, which may index after the HEP listener: wait for it too.
    const sniffedB = () => messagesOf(ring, b).some((m) => m.method === 'INVITE' && m.hep === undefined);
    assert.ok(await waitFor(() => messagesOf(ring, a).length === 3 && messagesOf(ring, b).length === 2 && sniffedB(), 15_000), 'calls A and B indexed, B\'s INVITE sniffed as well');
    const ma = messagesOf(ring, a);
    assert.ok(ma.every((m) => m.hep === true), 'every message of call A is marked as HEP');
    const inv = ma.find((m) => m.method === 'INVITE')!;
    assert.equal(inv.src, '192.0.2.1:5060');
    assert.equal(inv.dst, '198.51.100.2:5080');
    assert.equal(inv.transport, 'udp');
    const micros = Math.round(t0 * 1000);
    assert.equal(inv.ts, `${Math.floor(micros / 1e6)}.${String((micros % 1e6) * 1000).padStart(9, '0')}`, 'the HEP time, to the microsecond');
    const ok = ma.find((m) => m.status === 200)!;
    assert.deepEqual([ok.src, ok.dst, ok.transport], ['[2001:db8::2]:5080', '[2001:db8::1]:5061', 'tcp']);
    assert.ok(ma.some((m) => m.status === 180), 'both messages of the TCP flow framed');

    const mb = messagesOf(ring, b);
    const invB = mb.filter((m) => m.method === 'INVITE');
    assert.equal(invB.length, 1, 'the INVITE sniffed and received through HEP is kept once');
    assert.equal(invB[0].hep, undefined, 'the sniffed copy is the one kept');
    assert.equal(mb.find((m) => m.status === 200)?.hep, true);
    for (const bad of ['hep-bad', 'hep-pw', 'hep-nopw']) assert.equal(messagesOf(ring, `${bad}-${tag}`).length, 0, `${bad} dropped`);

    const dropsNow = () => agent.engine.stats().interfaces[HEP_STREAM].hepDrops ?? {};
    assert.ok(await waitFor(() => (dropsNow().auth ?? 0) >= 2 && (dropsNow().bad_version ?? 0) >= 2, 5000), JSON.stringify(dropsNow()));
    const d = dropsNow();
    assert.equal(d.truncated, 1);
    assert.equal(d.unknown_chunk, 1);
    assert.equal(d.unsupported, 1);
    assert.equal(d.auth, 2);
    assert.equal(d.bad_version, 2);
    // The same counts on /metrics, in Prometheus' text format.
    const prom = parseExposition(await new AgentMetrics({ engine: agent.engine, indexer: agent.indexer, ringDir: ring }).render());
    assert.equal(prom.values.get('tracefleet_hep_dropped_packets_total{reason="auth"}'), 2);
    assert.equal(prom.values.get('tracefleet_hep_dropped_packets_total{reason="unknown_chunk"}'), 1);
    assert.ok((prom.values.get('tracefleet_hep_received_packets_total') ?? 0) >= 12);
    assert.ok((prom.values.get('tracefleet_capture_packets_total{interface="hep"}') ?? 0) >= 5);

    // A flood from one sender: bounded by --hep-rate, the rest counted and dropped.
    await sleep(1100);
    const flood = Array.from({ length: 1000 }, (_, i) => hepOf({ src: '192.0.2.9', dst: '192.0.2.2', sport: 5060, dport: 5060, proto: 17, atMs: Date.now(), payload: sipInvite(`hep-flood-${tag}-${i}`), password: PASSWORD }));
    const floodStart = Date.now();
    await sendHepUdp(port, flood);
    const floodMs = Date.now() - floodStart;
    assert.ok(await waitFor(() => (dropsNow().flood ?? 0) > 0, 5000), `no flood drop counted (${floodMs} ms to send): ${JSON.stringify(dropsNow())}`);
    // Indexing and HEP go on after it.
    await sleep(1100);
    const c = `hep-c-${tag}`;
    await sendHepUdp(port, [hepOf({ src: '192.0.2.1', dst: '192.0.2.2', sport: 5060, dport: 5060, proto: 17, atMs: Date.now(), payload: sipInvite(c), password: PASSWORD })]);
    assert.ok(await waitFor(() => messagesOf(ring, c).length === 1, 10_000), 'a message after the flood is indexed');
    const st = agent.engine.stats().interfaces;
    assert.ok(st.lo.running && st[HEP_STREAM].running, 'capture and the HEP listener still up');
    assert.ok(listSegments(ring).some((s) => s.stream === HEP_STREAM), 'HEP packets are in a stream of their own');
  } finally {
    rx.sock.close();
    tx.sock.close();
    await agent.stop();
    rmSync(ring, { recursive: true, force: true });
  }
});

test('HEP in: a listen address that is taken fails the start with TF_HEP_LISTEN', { timeout: 30_000 }, async () => {
  const ring = tempDir('tf-hep-busy-');
  const port = await freePort();
  const { createSocket } = await import('node:dgram');
  const holder = createSocket('udp4');
  await new Promise<void>((resolve) => holder.bind(port, '127.0.0.1', () => resolve()));
  try {
    await assert.rejects(
      startAgent({ ringDir: ring, interfaces: [], ringMaxBytes: 16 * 1024 * 1024, maxSegmentBytes: 1024 * 1024, minFreeBytes: 0, hep: { listen: [{ transport: 'udp', host: '127.0.0.1', port }], perSenderPerSecond: 100 } }),
      (e: Error & { code?: string }) => e.code === 'TF_HEP_LISTEN' && e.message.includes(`udp:127.0.0.1:${port}`),
    );
  } finally {
    holder.close();
    rmSync(ring, { recursive: true, force: true });
  }
});
