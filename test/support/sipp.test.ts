import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSippCalls, SippCallsOptions, SippCallsResult } from './sipp';
import { startCapture, tsharkSelect, tsharkPackets, SelectedFrame } from './tshark';
import { TestNet } from './netns';
import { run, freePort, isRoot } from './proc';

const skip = isRoot() ? false : 'capturing packets and network namespaces need root';
const dir = mkdtempSync(join(tmpdir(), 'tf-sipp-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function twoPorts(): Promise<[number, number]> {
  const a = await freePort();
  let b = await freePort();
  while (b === a) b = await freePort();
  return [a, b];
}

async function callsCaptured(
  name: string,
  capture: { iface: string; ns?: string; filter?: string },
  sipp: SippCallsOptions,
): Promise<{ file: string; result: SippCallsResult }> {
  const file = join(dir, `${name}.pcapng`);
  const cap = await startCapture({ ...capture, file, maxSeconds: 60 });
  let result: SippCallsResult;
  try {
    result = await runSippCalls(sipp);
  } finally {
    await cap.stop();
  }
  return { file, result };
}

async function fieldList(file: string, filter: string, field: string): Promise<number[]> {
  const r = await run('tshark', ['-r', file, '-n', '-Y', filter, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-e', field]);
  return r.stdout
    .split(/[\n,]/)
    .filter((s) => s.trim() !== '')
    .map(Number);
}

const frames = (sel: SelectedFrame[]) => sel.map((s) => s.frame);

/** Each call's selection has all its messages, no two calls share a frame, and together they are every SIP frame. */
async function assertPerCallSelection(file: string, result: SippCallsResult, sipPorts: number[], minFramesPerCall: number): Promise<number[][]> {
  const perCall: number[][] = [];
  for (const cid of result.callIds) {
    const sel = await tsharkSelect([file], `sip.Call-ID == "${cid}"`, { sipPorts });
    assert.ok(sel.every((s) => s.file === file));
    assert.ok(sel.length >= minFramesPerCall, `call ${cid}: ${sel.length} frames, expected ≥ ${minFramesPerCall}`);
    perCall.push(frames(sel));
  }
  const all = perCall.flat();
  assert.equal(new Set(all).size, all.length, 'two calls share a frame');
  const sip = frames(await tsharkSelect([file], 'sip', { sipPorts }));
  assert.deepEqual([...all].sort((a, b) => a - b), sip);
  return perCall;
}

for (const transport of ['udp', 'tcp'] as const) {
  test(`sipp: 5 calls over ${transport} on loopback, every call found by Call-ID`, { skip, timeout: 90_000 }, async () => {
    const [uasPort, uacPort] = await twoPorts();
    const { file, result } = await callsCaptured(
      `lo-${transport}`,
      { iface: 'lo', filter: `${transport} port ${uasPort} or ${transport} port ${uacPort}` },
      {
        transport,
        uasHost: { addr: '127.0.0.1', port: uasPort },
        uacHost: { addr: '127.0.0.1', port: uacPort },
        calls: 5,
        rate: 20,
        number: '15551234567',
        fromUser: 'alice',
        extraHeaders: { 'X-CID': 'leg-[call_number]' },
      },
    );
    assert.equal(result.successful, 5, result.errors);
    assert.equal(result.failed, 0);
    assert.equal(new Set(result.callIds).size, 5);
    const perCall = await assertPerCallSelection(file, result, [uasPort, uacPort], 7);
    // Over UDP every message is one datagram: exactly INVITE 100 180 200 ACK BYE 200.
    if (transport === 'udp') assert.deepEqual(perCall.map((f) => f.length), [7, 7, 7, 7, 7]);
    const invites = await tsharkSelect(
      [file],
      `sip.Method == "INVITE" && sip.from.user == "alice" && sip.r-uri.user == "15551234567" && sip.msg_hdr contains "X-CID: leg-"`,
      { sipPorts: [uasPort, uacPort] },
    );
    assert.equal(invites.length, 5);
    // dumpcap's pcapng read by the test reader must agree with tshark frame by frame (it throws otherwise).
    const pkts = await tsharkPackets(file, { bytes: true });
    assert.ok(pkts.length >= 35 && pkts.every((p) => p.bytesHex!.length === 2 * p.capLen));
  });
}

test('sipp over UDP with MTU 576: the padded INVITE is IP-fragmented and its fragments are selected with the call', { skip, timeout: 90_000 }, async (t) => {
  const net = await TestNet.create({ hosts: ['uac', 'uas'], mtu: 576 });
  t.after(() => net.destroy());
  const { file, result } = await callsCaptured(
    'frag-udp',
    { ns: net.bridgeNs, iface: net.bridgeIf },
    {
      uacNs: net.ns('uac'),
      uasNs: net.ns('uas'),
      transport: 'udp',
      uasHost: { addr: net.addr('uas'), port: 5060 },
      uacHost: { addr: net.addr('uac'), port: 5060 },
      calls: 3,
      padBytes: 1500,
    },
  );
  assert.equal(result.successful, 3, result.errors);
  const fragments = await fieldList(file, 'ip.fragments', 'ip.fragment');
  // ~2 KB of INVITE in 552-byte pieces: at least four fragments per call.
  assert.ok(fragments.length >= 12, `only ${fragments.length} fragment frames`);
  const perCall = await assertPerCallSelection(file, result, [], 7 + 3);
  const selected = new Set(perCall.flat());
  for (const f of fragments) assert.ok(selected.has(f), `fragment frame ${f} not selected`);
  const nonFirst = await fieldList(file, 'ip.frag_offset > 0', 'frame.number');
  assert.ok(nonFirst.length >= 9);
  for (const f of nonFirst) assert.ok(selected.has(f), `fragment frame ${f} (no UDP header) not selected`);
});

test('sipp over TCP with MTU 576: the padded INVITE spans several segments, all selected', { skip, timeout: 90_000 }, async (t) => {
  const net = await TestNet.create({ hosts: ['uac', 'uas'], mtu: 576 });
  t.after(() => net.destroy());
  const { file, result } = await callsCaptured(
    'seg-tcp',
    { ns: net.bridgeNs, iface: net.bridgeIf },
    {
      uacNs: net.ns('uac'),
      uasNs: net.ns('uas'),
      transport: 'tcp',
      uasHost: { addr: net.addr('uas'), port: 5060 },
      uacHost: { addr: net.addr('uac'), port: 5060 },
      calls: 3,
      padBytes: 1500,
    },
  );
  assert.equal(result.successful, 3, result.errors);
  const segments = await fieldList(file, 'tcp.segments', 'tcp.segment');
  assert.ok(segments.length >= 12, `only ${segments.length} segment frames`);
  const perCall = await assertPerCallSelection(file, result, [], 7 + 3);
  const selected = new Set(perCall.flat());
  for (const f of segments) assert.ok(selected.has(f), `segment frame ${f} not selected`);
});

test('sipp over UDP/IPv6 with MTU 1280: IPv6 fragments are selected with the call', { skip, timeout: 90_000 }, async (t) => {
  const net = await TestNet.create({ hosts: ['uac', 'uas'], mtu: 1280 });
  t.after(() => net.destroy());
  const { file, result } = await callsCaptured(
    'frag-udp6',
    { ns: net.bridgeNs, iface: net.bridgeIf },
    {
      uacNs: net.ns('uac'),
      uasNs: net.ns('uas'),
      transport: 'udp',
      uasHost: { addr: net.addr6('uas'), port: 5060 },
      uacHost: { addr: net.addr6('uac'), port: 5060 },
      calls: 2,
      padBytes: 1500,
    },
  );
  assert.equal(result.successful, 2, result.errors);
  const fragments = await fieldList(file, 'ipv6.fragments', 'ipv6.fragment');
  assert.ok(fragments.length >= 4, `only ${fragments.length} IPv6 fragment frames`);
  const perCall = await assertPerCallSelection(file, result, [], 7 + 1);
  const selected = new Set(perCall.flat());
  for (const f of fragments) assert.ok(selected.has(f), `IPv6 fragment frame ${f} not selected`);
});

test('runSippCalls rejects option values that would corrupt the scenario', async () => {
  const base: SippCallsOptions = { transport: 'udp', uasHost: { addr: '127.0.0.1', port: 1 }, uacHost: { addr: '127.0.0.1', port: 2 }, calls: 1 };
  await assert.rejects(runSippCalls({ ...base, fromUser: 'a b' }), /not a plain SIP user part/);
  await assert.rejects(runSippCalls({ ...base, extraHeaders: { 'X-A': 'x\r\nVia: evil' } }), /CR, LF/);
  await assert.rejects(runSippCalls({ ...base, extraHeaders: { 'X-A': ']]>' } }), /"\]\]>"/);
  await assert.rejects(runSippCalls({ ...base, calls: 0 }), /positive integer/);
});
