import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { haveCommand, isRoot, run } from '../support/proc';
import { runSippCalls } from '../support/sipp';
import { startCapture } from '../support/tshark';
import { LegTie, startB2bua } from '../support/b2bua';
import { startTestCouch } from '../support/couch';
import { AGENT_TOKEN, startTestDispatcher } from '../support/dispatcher';
import { startTestAgent, until } from '../support/trace';
import { parseLegCallIdRule } from '../../agent/query/legs';

/*
 * Real calls through a B2BUA: five sipp callers at once, each through the
 * test's B2BUA (test/support/b2bua.ts) to its own sipp callee, each call's two
 * legs tied by one key only (X-CID holding the A leg's Call-ID, Session-ID,
 * P-Charging-Vector icid, a Call-ID prefix, relayed SDP). Captured on lo by
 * dumpcap, imported into a ring; `tracefleet query --number <caller> --legs`
 * must return exactly that call's two dialogs, every SIP frame of them that
 * tshark finds in the capture, and none of the four calls beside it. Then
 * the same capture as two hosts' rings (the edge host saw everything, the
 * core host only the B2BUA's side towards the callees, where nothing has the
 * caller's number): a fleet trace with legs returns the B leg from both.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'bin', 'tracefleet');
const skip = !isRoot() ? 'needs root: captures on lo' : !haveCommand('sipp') || !haveCommand('dumpcap') || !haveCommand('tshark') ? 'needs sipp, dumpcap and tshark' : false;

const TIES: Array<{ tie: LegTie; via: string }> = [
  { tie: 'correlation', via: 'correlation' },
  { tie: 'session-id', via: 'session-id' },
  { tie: 'icid', via: 'icid' },
  { tie: 'call-id-prefix', via: 'call-id-rule' },
  { tie: 'media', via: 'media' },
];

interface QueryJson {
  callIds: string[];
  messages: Array<{ callId: string; legGroup?: string; legVia?: string }>;
  notes: string[];
}

async function tsharkCallIds(pcap: string, filter = 'sip'): Promise<string[]> {
  const r = await run('tshark', ['-r', pcap, '-n', '-Y', filter, '-T', 'fields', '-e', 'sip.Call-ID'], { timeoutMs: 60_000 });
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
}

test('legs: a query by the caller number returns the B2BUA\'s B leg too, and no concurrent call', { skip, timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-legs-e2e-'));
  const b2bAt = { addr: '127.0.1.5', port: 5060 };
  const callee = (i: number) => ({ addr: `127.0.1.${20 + i}`, port: 5060 });
  const caller = (i: number) => ({ addr: `127.0.1.${10 + i}`, port: 5060 });
  const number = (i: number) => `4930200000${i}`;
  const capture = await startCapture({ iface: 'lo', file: join(dir, 'lo.pcapng'), filter: 'net 127.0.1.0/24', maxSeconds: 120 });
  const b2b = await startB2bua({ at: b2bAt, routes: Object.fromEntries(TIES.map(({ tie }, i) => [`70${i}`, { target: callee(i), tie }])), callIdPrefix: 'b2b-' });
  try {
    // At once, and long enough to overlap: the calls are concurrent.
    const results = await Promise.all(
      TIES.map((_t, i) =>
        runSippCalls({ transport: 'udp', uasHost: callee(i), uacHost: caller(i), target: b2bAt, calls: 1, number: `70${i}`, fromUser: number(i), callLengthMs: 1500, timeoutMs: 60_000 }),
      ),
    );
    await capture.stop();
    assert.deepEqual(b2b.errors, []);
    for (const [i, r] of results.entries()) assert.equal(r.successful, 1, `${TIES[i].tie}: ${r.errors}`);
    assert.equal(b2b.calls.length, TIES.length);

    const ring = join(dir, 'ring');
    await run(process.execPath, [CLI, 'ring', 'import', '--ring', ring, capture.file], { timeoutMs: 60_000 });
    const query = async (args: string[]): Promise<QueryJson> => {
      const r = await run(process.execPath, [CLI, 'query', '--ring', ring, '--json', ...args], { timeoutMs: 60_000 });
      return JSON.parse(r.stdout) as QueryJson;
    };

    for (const [i, { tie, via }] of TIES.entries()) {
      const a = results[i].callIds[0];
      const call = b2b.calls.find((c) => c.aCallId === a);
      assert.ok(call, `${tie}: the B2BUA saw ${a}`);
      const b = call.bCallId;
      assert.deepEqual((await query(['--number', number(i)])).callIds, [a], `${tie}: without --legs, the A leg only`);
      const out = join(dir, `legs-${i}.pcap`);
      const r = await query(['--number', number(i), '--legs', '--leg-callid-rule', 'prefix:b2b-', '-o', out]);
      assert.deepEqual([...r.callIds].sort(), [a, b].sort(), `${tie}: the A and B legs, nothing else`);
      for (const m of r.messages) assert.equal(m.legGroup, a, `${tie}: every message is of the call named by its A leg`);
      assert.ok(r.messages.some((m) => m.callId === b && m.legVia === via), `${tie}: the B leg linked by ${via}`);
      assert.ok(r.messages.filter((m) => m.callId === a).every((m) => m.legVia === undefined));

      // tshark over the whole capture: the same SIP frames, those of the two Call-IDs.
      const ours = await tsharkCallIds(out);
      const reference = await tsharkCallIds(capture.file, `sip.Call-ID == "${a}" || sip.Call-ID == "${b}"`);
      assert.deepEqual(new Set(ours), new Set([a, b]), `${tie}: Call-IDs tshark reads in our result`);
      assert.equal(ours.length, reference.length, `${tie}: SIP frames of the two legs: ours ${ours.length}, tshark's ${reference.length}`);
    }
    // Without the operator's rule the prefixed leg is not linked.
    const prefixed = TIES.findIndex((t) => t.tie === 'call-id-prefix');
    assert.deepEqual((await query(['--number', number(prefixed), '--legs'])).callIds, [results[prefixed].callIds[0]]);

    // Two hosts: the core one saw the B legs only.
    const coreFile = join(dir, 'core.pcapng');
    await run('tshark', ['-r', capture.file, '-Y', 'ip.addr == 127.0.1.5 && ip.addr >= 127.0.1.20 && ip.addr <= 127.0.1.29', '-w', coreFile], { timeoutMs: 60_000 });
    const coreRing = join(dir, 'ring-core');
    await run(process.execPath, [CLI, 'ring', 'import', '--ring', coreRing, coreFile], { timeoutMs: 60_000 });
    const couch = await startTestCouch();
    const d = await startTestDispatcher(couch.url);
    const rules = [parseLegCallIdRule('prefix:b2b-')];
    const agents = [startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'edge', ringDir: ring, legCallIdRules: rules }), startTestAgent({ url: d.url, token: AGENT_TOKEN, name: 'core', ringDir: coreRing, legCallIdRules: rules })];
    try {
      await until(async () => (await d.orchestrator.agents()).filter((x) => x.connected).length === 2, 'both agents connected');
      for (const [i, { tie }] of TIES.entries()) {
        const a = results[i].callIds[0];
        const b = b2b.calls.find((c) => c.aCallId === a)!.bCallId;
        const view = await d.orchestrator.start({ number: [number(i)], legs: true, hosts: ['core', 'edge'] }, 'tom');
        await until(async () => (await d.orchestrator.view(view.id))?.state !== 'running', `trace ${tie} to finish`, 30_000);
        const dialogs = async (host: string) => [...new Set((await d.store.store.getResult(view.id, host))!.messages.map((m) => m.callId))].sort();
        assert.deepEqual(await dialogs('edge'), [a, b].sort(), `${tie}: the edge host's legs`);
        assert.deepEqual(await dialogs('core'), [b], `${tie}: the core host's B leg, though nothing there has the caller's number`);
      }
    } finally {
      for (const a of agents) a.close();
      await d.stop();
      await couch.stop();
    }
  } finally {
    await capture.stop().catch(() => undefined);
    await b2b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
