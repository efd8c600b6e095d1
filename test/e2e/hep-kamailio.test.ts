import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../agent/daemon/run';
import { runQuery } from '../../agent/query/engine';
import { buildQuerySpec, type MessageSummary } from '../../shared/query/query';
import { freePort, haveCommand, isRoot } from '../support/proc';
import { runSippCalls } from '../support/sipp';
import { selfSignedCert, startKamailio } from '../support/kamailio';
import { startCapture, tsharkSipMessages } from '../support/tshark';
import { waitFor } from '../support/capture';
import { tlsCall } from '../support/tls-uac';

const PASSWORD = 'kamailio-hep-secret';
const NUMBER = '4930901820';

function trace(ring: string, number: string): MessageSummary[] {
  const r = runQuery(ring, buildQuerySpec({ number: [number] }), { mayWrite: false });
  for (const s of r.segments) s.index.close();
  return r.messages;
}

/** What identifies a message here: method or status, CSeq, size. Each leg's copy differs in size (Kamailio adds its Via). */
const keyOf = (what: string, cseq: string | null, bytes: number) => `${what} | ${cseq ?? '-'} | ${bytes}`;
const sorted = (xs: string[]) => [...xs].sort();

const skip = !isRoot() ? 'needs root (capture on lo for the reference)' : !haveCommand('kamailio') ? 'needs kamailio and kamailio-tls-modules (scripts/setup.sh --test installs them)' : !haveCommand('sipp') ? 'needs sipp' : false;

test('HEP in from Kamailio: a call through Kamailio (TCP to it, UDP from it) and one over TLS, traced by number from HEP alone, equal to what Kamailio handled', { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-hep-kam-'));
  const ring = join(dir, 'ring');
  const [kPort, kTls, uasPort, uacPort, hepPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const agent = await startAgent({
    ringDir: ring, interfaces: [], ringMaxBytes: 64 * 1024 * 1024, maxSegmentBytes: 1024 * 1024, minFreeBytes: 0, indexerNice: 0,
    hep: { listen: [{ transport: 'udp', host: '127.0.0.1', port: hepPort }], password: PASSWORD, perSenderPerSecond: 50_000 },
  });
  let kamailio: Awaited<ReturnType<typeof startKamailio>> | null = null;
  const ref = await startCapture({ iface: 'lo', filter: `port ${kPort} or port ${kTls} or port ${uasPort}`, file: join(dir, 'reference.pcapng'), maxSeconds: 100 });
  let refStopped = false;
  try {
    kamailio = await startKamailio({
      dir, listen: [`udp:127.0.0.1:${kPort}`, `tcp:127.0.0.1:${kPort}`, `tls:127.0.0.1:${kTls}`],
      next: { addr: '127.0.0.1', port: uasPort, transport: 'udp' }, hep: { addr: '127.0.0.1', port: hepPort }, hepPassword: PASSWORD,
      tls: await selfSignedCert(dir),
    });
    // sipp here has no TLS (Debian builds it without): the sipp call reaches Kamailio over TCP; the TLS call is made by tls-uac.
    const r = await runSippCalls({
      transport: 'tcp', uasTransport: 'udp', target: { addr: '127.0.0.1', port: kPort },
      uasHost: { addr: '127.0.0.1', port: uasPort }, uacHost: { addr: '127.0.0.1', port: uacPort }, calls: 1, number: NUMBER, fromUser: 'alice',
    });
    assert.equal(r.successful, 1, `the sipp call through Kamailio failed: ${r.errors}`);
    const tlsNumber = `${NUMBER}7`;
    const tlsCallId = await tlsCall({ proxy: { addr: '127.0.0.1', port: kTls }, uas: { addr: '127.0.0.1', port: uasPort }, number: tlsNumber });
    await ref.stop();
    refStopped = true;

    // The reference: every SIP message on Kamailio's sockets, as tshark reads the capture (the TLS leg it cannot read).
    const wire = await tsharkSipMessages(ref.file, { sipPorts: [kPort, uasPort, uacPort] });
    const header = (m: (typeof wire)[number], name: string) => m.headers.find((h) => h.name.toLowerCase() === name.toLowerCase())?.value ?? null;
    const wireKeys = (callId: string) => wire.filter((m) => header(m, 'Call-ID') === callId).map((m) => {
      const parts = m.startLine.split(' ');
      return keyOf(parts[0] === 'SIP/2.0' ? parts[1] : parts[0], header(m, 'CSeq'), m.raw.length);
    });

    const callId = r.successfulCallIds[0];
    const want = sorted(wireKeys(callId));
    assert.ok(want.length >= 14, `the reference has both legs of the call: ${want.length} messages`);
    const got = () => sorted(trace(ring, NUMBER).filter((m) => m.callId === callId).map((m) => keyOf(m.method ?? String(m.status), m.cseq, m.bytes)));
    await waitFor(() => got().length >= want.length, 15_000);
    const traced = trace(ring, NUMBER);
    assert.deepEqual(got(), want, 'tracefleet, from HEP alone, has every message Kamailio handled, once');
    assert.ok(traced.every((m) => m.hep === true), 'every message is marked as having come through HEP');
    assert.deepEqual([...new Set(traced.map((m) => m.transport))].sort(), ['tcp', 'udp'], 'the TCP leg and the UDP leg, each with its transport');

    // The TLS call: tshark sees only its UDP leg; HEP has both, the TLS leg decrypted.
    await waitFor(() => trace(ring, tlsNumber).filter((m) => m.callId === tlsCallId).length >= 10, 15_000);
    const tlsTrace = trace(ring, tlsNumber).filter((m) => m.callId === tlsCallId);
    const udpLeg = sorted(wireKeys(tlsCallId));
    assert.ok(udpLeg.length >= 5, `the UDP leg of the TLS call on the wire: ${udpLeg.length}`);
    assert.deepEqual(sorted(tlsTrace.filter((m) => m.transport === 'udp').map((m) => keyOf(m.method ?? String(m.status), m.cseq, m.bytes))), udpLeg);
    const tlsLeg = tlsTrace.filter((m) => m.src.endsWith(`:${kTls}`) || m.dst.endsWith(`:${kTls}`));
    assert.deepEqual(sorted(tlsLeg.map((m) => m.method ?? String(m.status))), sorted(['INVITE', '100', '180', '200', 'ACK', 'BYE', '200']), `the TLS leg, decrypted by Kamailio, through HEP (HEP drops: ${JSON.stringify(agent.engine.stats().interfaces.hep.hepDrops)})`);
    assert.ok(tlsLeg.every((m) => m.transport === 'tcp' && m.hep === true));
  } finally {
    if (!refStopped) await ref.stop().catch(() => undefined);
    await kamailio?.stop();
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('HEP in from Kamailio, HEP version 2: a sipp call over UDP through Kamailio, traced by number from HEP alone, equal to what Kamailio handled', { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-hep2-kam-'));
  const ring = join(dir, 'ring');
  const [kPort, uasPort, uacPort, hepPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const agent = await startAgent({
    ringDir: ring, interfaces: [], ringMaxBytes: 64 * 1024 * 1024, maxSegmentBytes: 1024 * 1024, minFreeBytes: 0, indexerNice: 0,
    hep: { listen: [{ transport: 'udp', host: '127.0.0.1', port: hepPort }], perSenderPerSecond: 50_000 },
  });
  let kamailio: Awaited<ReturnType<typeof startKamailio>> | null = null;
  const ref = await startCapture({ iface: 'lo', filter: `port ${kPort} or port ${uasPort}`, file: join(dir, 'reference.pcapng'), maxSeconds: 100 });
  let refStopped = false;
  try {
    kamailio = await startKamailio({ dir, listen: [`udp:127.0.0.1:${kPort}`], next: { addr: '127.0.0.1', port: uasPort, transport: 'udp' }, hep: { addr: '127.0.0.1', port: hepPort }, hepVersion: 2 });
    const number = `${NUMBER}2`;
    const r = await runSippCalls({ transport: 'udp', target: { addr: '127.0.0.1', port: kPort }, uasHost: { addr: '127.0.0.1', port: uasPort }, uacHost: { addr: '127.0.0.1', port: uacPort }, calls: 1, number });
    assert.equal(r.successful, 1, r.errors);
    await ref.stop();
    refStopped = true;
    const callId = r.successfulCallIds[0];
    const wire = await tsharkSipMessages(ref.file, { sipPorts: [kPort, uasPort, uacPort] });
    const header = (m: (typeof wire)[number], name: string) => m.headers.find((h) => h.name.toLowerCase() === name.toLowerCase())?.value ?? null;
    const want = sorted(wire.filter((m) => header(m, 'Call-ID') === callId).map((m) => {
      const parts = m.startLine.split(' ');
      return keyOf(parts[0] === 'SIP/2.0' ? parts[1] : parts[0], header(m, 'CSeq'), m.raw.length);
    }));
    assert.ok(want.length >= 14, `both legs on the wire: ${want.length}`);
    const got = () => sorted(trace(ring, number).filter((m) => m.callId === callId).map((m) => keyOf(m.method ?? String(m.status), m.cseq, m.bytes)));
    await waitFor(() => got().length >= want.length, 15_000);
    assert.deepEqual(got(), want);
    assert.ok(trace(ring, number).every((m) => m.hep === true));
  } finally {
    if (!refStopped) await ref.stop().catch(() => undefined);
    await kamailio?.stop();
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
