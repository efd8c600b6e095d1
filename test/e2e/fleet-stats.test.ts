import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, isRoot, run, startDaemon } from '../support/proc';
import { waitForRecord } from '../support/log';
import { sleep } from '../support/capture';
import { playOutcomes, type Outcome } from '../support/sip-outcomes';
import { startTestCouch } from '../support/couch';
import { AGENT_TOKEN, startTestDispatcher, VIEWER } from '../support/dispatcher';
import type { StatsAnswer } from '../../shared/stats/answer';

/*
 * The fleet's statistics end to end: a real agent process captures a known
 * mix of sipp calls on lo (answered, 486, cancelled, 503) and sends its
 * windows to a real dispatcher with its heartbeats; GET /api/stats and
 * `tracefleet stats` against the dispatcher must count what tshark's
 * `-z sip,stat` counts on the agent's segments.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'bin', 'tracefleet');
const skip = isRoot() ? false : 'needs root: captures on lo';

const PLAN: Array<[Outcome, number]> = [['answered', 3], ['busy', 2], ['cancelled', 2], ['unavailable', 3]];

/** tshark's own SIP statistics of one capture file: requests by method, responses by code. */
async function tsharkSipStat(pcap: string, decode: string[]): Promise<{ methods: Record<string, number>; codes: Record<string, number> }> {
  const r = await run('tshark', ['-r', pcap, ...decode, '-q', '-z', 'sip,stat'], { timeoutMs: 60_000 });
  const methods: Record<string, number> = {};
  const codes: Record<string, number> = {};
  let section: 'codes' | 'methods' | null = null;
  for (const line of r.stdout.split('\n')) {
    if (/SIP Status Codes/.test(line)) section = 'codes';
    else if (/SIP Request methods/.test(line)) section = 'methods';
    let m;
    if (section === 'codes' && (m = /^\s+SIP (\d{3})\b.*:\s*(\d+) Packets/.exec(line))) codes[m[1]] = (codes[m[1]] ?? 0) + Number(m[2]);
    else if (section === 'methods' && (m = /^\s+([A-Z]+)\s*:\s*(\d+) Packets/.exec(line))) methods[m[1]] = (methods[m[1]] ?? 0) + Number(m[2]);
  }
  return { methods, codes };
}

const add = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  return into;
};

test('the fleet statistics at the dispatcher equal what tshark -z sip,stat counts on the agent\'s segments', { skip, timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-fleetstats-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const couch = await startTestCouch();
  t.after(() => couch.stop());
  const disp = await startTestDispatcher(couch.url);
  t.after(() => disp.stop());
  const ring = join(dir, 'ring');
  const uasPorts: number[] = [];
  for (let i = 0; i < PLAN.length; i++) uasPorts.push(await freePort());
  const uacPort = await freePort();
  const filter = `udp and (${uasPorts.map((p) => `port ${p}`).join(' or ')})`;
  const agent = await startDaemon(process.execPath, [
    CLI, 'agent', '--ring', ring, '-i', 'lo', '--filter', filter, '--stats-interval', '0', ...uasPorts.map((p) => `--stats-local=127.0.0.1:${p}`),
    '--dispatcher', disp.url, '--token', AGENT_TOKEN, '--name', 'edge-a',
  ]);
  t.after(() => agent.stop());
  await waitForRecord(agent, (r) => r.msg === 'capturing', 20_000, 'the agent capturing');

  const auth = `Basic ${Buffer.from(`${VIEWER.name}:${VIEWER.password}`).toString('base64')}`;
  const get = async (q: string): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${disp.url}/api/stats${q}`, { headers: { authorization: auth } });
    return { status: res.status, body: await res.json() };
  };
  const began = new Date(Date.now() - 1000).toISOString();
  await playOutcomes(dir, PLAN, uasPorts, uacPort);

  // Windows reach the dispatcher within the indexer's hand-over (2 s) and a heartbeat (5 s).
  const finalsOf = (a: StatsAnswer) => a.peers.reduce((acc, p) => add(acc, p.counts.finals), {} as Record<string, number>);
  let answer: StatsAnswer | null = null;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await sleep(500)) {
    const r = await get(`?from=${encodeURIComponent(began)}`);
    assert.equal(r.status, 200);
    const f = finalsOf(r.body);
    if (Object.values(f).reduce((x, y) => x + y, 0) === 10 && r.body.peers.reduce((n: number, p: { counts: { ended: number } }) => n + p.counts.ended, 0) === 3) {
      answer = r.body;
      break;
    }
  }
  assert.ok(answer, 'the dispatcher got the windows of all ten calls');
  // Anything still on its way (a last ACK) comes with the next heartbeats.
  await sleep(8000);
  answer = (await get(`?from=${encodeURIComponent(began)}`)).body as StatsAnswer;
  assert.equal((await agent.stop()).code, 0);

  const decode = uasPorts.flatMap((p) => ['-d', `udp.port==${p},sip`]);
  const methods: Record<string, number> = {};
  const codes: Record<string, number> = {};
  for (const seg of readdirSync(ring).filter((n) => n.endsWith('.pcap'))) {
    const s = await tsharkSipStat(join(ring, seg), decode);
    add(methods, s.methods);
    add(codes, s.codes);
  }
  // What the scenarios did, as tshark counts it.
  assert.equal(methods.INVITE, 10);
  assert.equal(methods.CANCEL, 2);
  assert.equal(methods.BYE, 3);
  assert.equal(codes['486'], 2);
  assert.equal(codes['503'], 3);
  assert.equal(codes['487'], 2);

  const rows = answer.windows.flatMap((w) => w.rows);
  assert.deepEqual([...new Set(rows.map((r) => r.host))], ['edge-a']);
  assert.deepEqual(rows.reduce((acc, r) => add(acc, r.counts.requests), {}), methods, 'requests by method');
  assert.deepEqual(rows.reduce((acc, r) => add(acc, r.counts.responses), {}), codes, 'responses by code');
  assert.deepEqual(finalsOf(answer), { 200: 3, 486: 2, 487: 2, 503: 3 });
  // The fleet total of each window is the sum of its rows; the figures follow RFC 6076.
  for (const w of answer.windows) assert.equal(w.total.counts.invites, w.rows.reduce((n, r) => n + r.counts.invites, 0));
  const inPeer = answer.peers.find((p) => p.dir === 'in')!;
  assert.equal(inPeer.peer, '127.0.0.1');
  assert.deepEqual(inPeer.hosts, ['edge-a']);
  assert.equal(inPeer.figures.invites, 10);
  assert.ok(Math.abs(inPeer.figures.ser! - 30) < 1e-9, `SER ${inPeer.figures.ser}`);
  assert.ok(Math.abs(inPeer.figures.isa! - 30) < 1e-9, `ISA ${inPeer.figures.isa}`);
  assert.ok(Math.abs(inPeer.figures.errorRatio! - 30) < 1e-9, `error ratio ${inPeer.figures.errorRatio}`);
  assert.equal(answer.hosts[0].host, 'edge-a');

  // Filters: another host or peer, or a window nobody has, answer empty, not an error.
  for (const q of ['?host=edge-b', '?peer=192.0.2.1', '?from=2001-01-01T00:00:00Z&to=2001-01-01T01:00:00Z']) {
    const r = await get(q + (q.includes('from') ? '' : `&from=${encodeURIComponent(began)}`));
    assert.equal(r.status, 200, q);
    assert.deepEqual({ windows: r.body.windows, peers: r.body.peers, hosts: r.body.hosts }, { windows: [], peers: [], hosts: [] }, q);
  }
  const sameHost = await get(`?host=edge-a&peer=127.0.0.1&from=${encodeURIComponent(began)}`);
  assert.equal(sameHost.body.peers.find((p: { dir: string }) => p.dir === 'in').figures.invites, 10);
  // Bad parameters are refused with the field at fault.
  for (const [q, field] of [['?from=yesterday', 'from'], ['?host=a%20b', 'host'], ['?peer=x&bogus=1', null], ['?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 'from']] as const) {
    const r = await get(q);
    assert.equal(r.status, 400, q);
    assert.equal(r.body.code, 'TF_PARAMS_INVALID', q);
    assert.equal(r.body.field, field, q);
  }

  // The CLI against the dispatcher: the same counts, per host.
  const env = { ...process.env, TRACEFLEET_URL: disp.url, TRACEFLEET_USER: VIEWER.name, TRACEFLEET_PASSWORD: VIEWER.password, XDG_CONFIG_HOME: dir, TRACEFLEET_CONFIG: undefined, TRACEFLEET_TOKEN: undefined };
  const cli = await run(process.execPath, [CLI, 'stats', '--from', began, '--json'], { env });
  const out = JSON.parse(cli.stdout) as { windows: Array<{ rows: Array<{ host: string; counts: { requests: Record<string, number> }; figures: { invites: number } }> }> };
  assert.deepEqual(out.windows.flatMap((w) => w.rows).reduce((acc, r) => add(acc, r.counts.requests), {}), methods);
  const tableOut = await run(process.execPath, [CLI, 'stats', '--from', began], { env });
  assert.match(tableOut.stdout.split('\n')[0], /^window\s+host\s+dir\s+peer\s+msgs\s+INVITE/);
  assert.match(tableOut.stdout, /\sedge-a\s+in\s+127\.0\.0\.1\s/);
});
