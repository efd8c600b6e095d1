import { test, after, type TestContext } from 'node:test';
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

/**
 * Runs `calls` calls with a 1500-byte X-Pad between two namespaces on a bridge
 * with a small MTU, so every INVITE travels in pieces (IP fragments or TCP
 * segments, which tshark lists in `piecesField` of frames matching
 * `piecesFilter`), and checks that every piece is selected with its call.
 */
async function paddedCallsOverSmallMtu(
  t: TestContext,
  o: {
    name: string;
    mtu: number;
    transport: 'udp' | 'tcp';
    ipv6?: boolean;
    calls: number;
    /** What a piece is called in assertion messages, and how many there must be at least. */
    pieces: { what: string; filter: string; field: string; min: number };
    minFramesPerCall: number;
  },
): Promise<{ file: string; selected: Set<number> }> {
  const net = await TestNet.create({ hosts: ['uac', 'uas'], mtu: o.mtu });
  t.after(() => net.destroy());
  const addr = (host: string) => (o.ipv6 ? net.addr6(host) : net.addr(host));
  const { file, result } = await callsCaptured(
    o.name,
    { ns: net.bridgeNs, iface: net.bridgeIf },
    {
      uacNs: net.ns('uac'),
      uasNs: net.ns('uas'),
      transport: o.transport,
      uasHost: { addr: addr('uas'), port: 5060 },
      uacHost: { addr: addr('uac'), port: 5060 },
      calls: o.calls,
      padBytes: 1500,
    },
  );
  assert.equal(result.successful, o.calls, result.errors);
  const pieces = await fieldList(file, o.pieces.filter, o.pieces.field);
  assert.ok(pieces.length >= o.pieces.min, `only ${pieces.length} ${o.pieces.what} frames`);
  const perCall = await assertPerCallSelection(file, result, [], o.minFramesPerCall);
  const selected = new Set(perCall.flat());
  for (const f of pieces) assert.ok(selected.has(f), `${o.pieces.what} frame ${f} not selected`);
  return { file, selected };
}

test('sipp over UDP with MTU 576: the padded INVITE is IP-fragmented and its fragments are selected with the call', { skip, timeout: 90_000 }, async (t) => {
  // ~2 KB of INVITE in 552-byte pieces: at least four fragments per call.
  const { file, selected } = await paddedCallsOverSmallMtu(t, {
    name: 'frag-udp',
    mtu: 576,
    transport: 'udp',
    calls: 3,
    pieces: { what: 'fragment', filter: 'ip.fragments', field: 'ip.fragment', min: 12 },
    minFramesPerCall: 7 + 3,
  });
  const nonFirst = await fieldList(file, 'ip.frag_offset > 0', 'frame.number');
  assert.ok(nonFirst.length >= 9);
  for (const f of nonFirst) assert.ok(selected.has(f), `fragment frame ${f} (no UDP header) not selected`);
});

test('sipp over TCP with MTU 576: the padded INVITE spans several segments, all selected', { skip, timeout: 90_000 }, async (t) => {
  await paddedCallsOverSmallMtu(t, {
    name: 'seg-tcp',
    mtu: 576,
    transport: 'tcp',
    calls: 3,
    pieces: { what: 'segment', filter: 'tcp.segments', field: 'tcp.segment', min: 12 },
    minFramesPerCall: 7 + 3,
  });
});

test('sipp over UDP/IPv6 with MTU 1280: IPv6 fragments are selected with the call', { skip, timeout: 90_000 }, async (t) => {
  await paddedCallsOverSmallMtu(t, {
    name: 'frag-udp6',
    mtu: 1280,
    transport: 'udp',
    ipv6: true,
    calls: 2,
    pieces: { what: 'IPv6 fragment', filter: 'ipv6.fragments', field: 'ipv6.fragment', min: 4 },
    minFramesPerCall: 7 + 1,
  });
});

test('runSippCalls rejects option values that would corrupt the scenario', async () => {
  const base: SippCallsOptions = { transport: 'udp', uasHost: { addr: '127.0.0.1', port: 1 }, uacHost: { addr: '127.0.0.1', port: 2 }, calls: 1 };
  await assert.rejects(runSippCalls({ ...base, fromUser: 'a b' }), /not a plain SIP user part/);
  await assert.rejects(runSippCalls({ ...base, extraHeaders: { 'X-A': 'x\r\nVia: evil' } }), /CR, LF/);
  await assert.rejects(runSippCalls({ ...base, extraHeaders: { 'X-A': ']]>' } }), /"\]\]>"/);
  await assert.rejects(runSippCalls({ ...base, calls: 0 }), /positive integer/);
});
