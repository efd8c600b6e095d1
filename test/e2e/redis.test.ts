import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import nano from 'nano';
import type { Socket as ClientSocket } from 'socket.io-client';
import type { AgentView } from '../../shared/protocol/client';
import { CHUNK_BYTES } from '../../shared/protocol/agent';
import { Auth } from '../../dispatcher/auth/auth';
import { AGENT_TOKEN, ask, connectClient, TraceAck, TRACER, UpdateLog } from '../support/dispatcher';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, resultDocId, traceDocId } from '../../dispatcher/store/layout';
import { TraceStore } from '../../dispatcher/store/store';
import { startTestCouch, TestCouch, uniqueDbName } from '../support/couch';
import { bytesOf, expectedPcap, makeTestRings, PROXY, records, sortedRecords, startTestAgent, TestAgent, TestHost, until } from '../support/trace';
import { DaemonHandle, freePort, haveCommand, startDaemon } from '../support/proc';
import { waitForRecord } from '../support/log';

/*
 * Two dispatchers, each its own process, sharing agents and clients through
 * a real redis-server and one store: a client on D1 traces an agent that is
 * connected to D2, and D1 finishes the trace when D2 dies mid-trace.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'bin', 'tracefleet');
const skip = haveCommand('redis-server') ? false : 'redis-server is not installed (scripts/setup.sh installs it): cannot test dispatchers sharing agents through Redis';

/** Proxy packets beside the SIP on a and b: a few 256 KiB chunks each. */
const BULK = { a: 600, b: 600 };
const CHILD_START_MS = 30_000;

let dir = '';
let couch: TestCouch;
let db = '';
let store: TraceStore;
let rings: Record<TestHost, string>;
let redis: DaemonHandle | null = null;
let redisUrl = '';
const dispatchers: DaemonHandle[] = [];
const agents: TestAgent[] = [];
const clients: ClientSocket[] = [];

async function startRedis(): Promise<void> {
  const port = await freePort();
  redis = await startDaemon('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await redis.waitForOutput(/Ready to accept connections/, 15_000);
  redisUrl = `redis://127.0.0.1:${port}`;
}

/** `tracefleet dispatcher` as its own process on the shared store and Redis; resolves with its URL. */
async function startDispatcherProcess(name: string): Promise<{ proc: DaemonHandle; url: string }> {
  const port = await freePort();
  const proc = await startDaemon(process.execPath, [
    CLI,
    'dispatcher',
    '--listen', `127.0.0.1:${port}`,
    '--couchdb', couch.url,
    '--db', db,
    '--data-dir', mkdtempSync(join(dir, `${name}-`)),
    '--agent-token', AGENT_TOKEN,
    '--redis', redisUrl,
    '--run-timeout', '5',
    // Long enough that only the peer's death ends a stalled host in the test below.
    '--idle-timeout', '120',
  ]);
  dispatchers.push(proc);
  const m = await waitForRecord(proc, (r) => r.msg === 'listening' && /^http:\/\/127\.0\.0\.1:\d+$/.test(String(r.url)) && typeof r.redis === 'string', CHILD_START_MS, 'the dispatcher listening with Redis');
  return { proc, url: String(m.url) };
}

let d1: { proc: DaemonHandle; url: string };
let d2: { proc: DaemonHandle; url: string };

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'tf-redis-'));
  couch = await startTestCouch();
  db = uniqueDbName();
  store = await TraceStore.open({ url: couch.url, db });
  await (await Auth.open(store)).addUser(TRACER.name, TRACER.password, TRACER.roles);
  rings = await makeTestRings(dir, { bulk: BULK });
  await startRedis();
  // Both at once: each takes a few seconds to load.
  [d1, d2] = await Promise.all([startDispatcherProcess('d1'), startDispatcherProcess('d2')]);
});

after(async () => {
  for (const c of clients) c.close();
  for (const a of agents) a.close();
  for (const d of dispatchers) await d.stop();
  await redis?.stop();
  if (couch) {
    await nano(couch.url).db.destroy(db).catch(() => {});
    await couch.stop();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function dispatcherLogs(): string {
  return dispatchers.map((d, i) => `--- D${i + 1} stderr:\n${d.stderr().slice(-3000)}`).join('\n');
}

async function listAgents(c: ClientSocket): Promise<AgentView[]> {
  const a = await ask<{ agents: AgentView[] }>(c, 'agents:list');
  assert.ok(a.ok, JSON.stringify(a));
  return a.agents;
}

test('a client on D1 traces agent a on D1 and agent b on D2: b\'s updates come through Redis, both PCAPs are stored and merged', { skip, timeout: 120_000 }, async () => {
  agents.push(startTestAgent({ url: d1.url, token: AGENT_TOKEN, name: 'a', ringDir: rings.a }));
  agents.push(startTestAgent({ url: d2.url, token: AGENT_TOKEN, name: 'b', ringDir: rings.b }));
  const client = await connectClient(d1.url, { user: TRACER.name, password: TRACER.password });
  clients.push(client);
  await until(async () => (await listAgents(client)).filter((a) => a.connected && a.hostname !== null).length === 2, 'D1 to list both agents', 20_000);
  assert.deepEqual((await listAgents(client)).map((a) => [a.name, a.connected, a.hostname]), [['a', true, 'a'], ['b', true, 'b']]);

  const log = new UpdateLog(client);
  const q = { ip: [PROXY] };
  const started = (await ask(client, 'trace:start', q)) as TraceAck;
  assert.ok(started.ok, JSON.stringify(started));
  const id = started.trace.id;
  assert.deepEqual(started.trace.hosts.map((h) => h.host), ['a', 'b']);
  await until(() => log.final(id) !== undefined, `the trace to finish\n${dispatcherLogs()}`, 60_000);
  const final = log.final(id)!;
  assert.equal(final.state, 'done', dispatcherLogs());

  const bUpdates = log.of(id, 'b');
  assert.ok(bUpdates.some((u) => u.state === 'started'), `D2's progress for b reached the client on D1: ${bUpdates.map((u) => u.state).join(' ')}`);
  assert.equal(bUpdates[bUpdates.length - 1].state, 'done');
  assert.ok(log.updates.indexOf(bUpdates[bUpdates.length - 1]) < log.updates.indexOf(final));

  const perHost: Buffer[] = [];
  for (const h of ['a', 'b'] as const) {
    const res = await store.getResult(id, h);
    assert.equal(res?.state, 'done', `host ${h}`);
    const pcap = await bytesOf(store.getAttachmentStream(resultDocId(id, h), HOST_ATTACHMENT));
    assert.deepEqual(pcap, await expectedPcap(rings[h], q), `host ${h}'s packets.pcap is its agent's query result`);
    perHost.push(pcap);
  }
  assert.equal(records(perHost[0]).length, 3 + BULK.a);
  assert.equal(records(perHost[1]).length, 2 + BULK.b);
  const merged = records(await bytesOf(store.getAttachmentStream(traceDocId(id), MERGED_ATTACHMENT)));
  const union = perHost.flatMap(records);
  assert.deepEqual(sortedRecords(merged), sortedRecords(union), 'merged.pcap holds both hosts\' packets');
  assert.deepEqual(final.merged, { packets: union.length, bytes: final.bytes, duplicates: 0 });
  assert.equal((await store.getTrace(id))?.state, 'done');

  // A download link opens one download on whichever dispatcher: its spending is shared through Redis.
  const session = (await (await fetch(`${d1.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: TRACER.name, password: TRACER.password }) })).json()) as { token: string };
  const link = async () => {
    const r = await fetch(`${d1.url}/api/download-token`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${session.token}` }, body: JSON.stringify({ path: `/api/traces/${id}/merged.pcap` }) });
    assert.equal(r.status, 200);
    return ((await r.json()) as { url: string }).url;
  };
  for (const [first, second] of [[d2, d1], [d1, d2]]) {
    const url = await link();
    const ok = await fetch(`${first.url}${url}`);
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const again = await fetch(`${second.url}${url}`);
    assert.equal(again.status, 410, 'the link, spent on the other dispatcher, is refused here too');
    assert.equal(((await again.json()) as { code: string }).code, 'TF_DOWNLOAD_LINK_USED');
  }
});

test('D2 dies mid-trace of its agent b: D1 marks b lost within seconds and finishes the trace with a\'s packets', { skip, timeout: 120_000 }, async () => {
  // b again, on D2, holding its stream back after the first chunk (of CHUNK_BYTES: its result is more) so D2 dies with b mid-stream.
  agents.find((a) => a.name === 'b')?.close();
  const b = startTestAgent({ url: d2.url, token: AGENT_TOKEN, name: 'b', ringDir: rings.b, stallAfterChunks: 1, maxChunkBytes: CHUNK_BYTES });
  agents.push(b);
  const client = clients[0];
  await until(async () => (await listAgents(client)).filter((a) => a.connected && a.hostname !== null).length === 2, 'b back on D2', 20_000);

  const log = new UpdateLog(client);
  const started = (await ask(client, 'trace:start', { ip: [PROXY] })) as TraceAck;
  assert.ok(started.ok, JSON.stringify(started));
  const id = started.trace.id;
  await until(() => log.of(id, 'b').some((u) => u.state === 'started') && log.of(id, 'a').some((u) => u.state === 'done'), `b mid-stream on D2, a done\n${dispatcherLogs()}`, 30_000);

  const killed = Date.now();
  // SIGKILL: D2 is gone without a goodbye, its Redis connections dropped by the kernel.
  process.kill(d2.proc.pid, 'SIGKILL');
  await d2.proc.waitForExit(5_000);
  await until(() => log.final(id) !== undefined, `D1 to finish the trace without D2\n${dispatcherLogs()}`, 20_000);
  const took = Date.now() - killed;
  assert.ok(took < 15_000, `finished ${took} ms after D2 died`);

  const final = log.final(id)!;
  assert.equal(final.state, 'partial');
  const bFinal = log.of(id, 'b').filter((u) => u.state === 'lost');
  assert.equal(bFinal.length, 1, `the client heard that b was lost: ${log.of(id, 'b').map((u) => u.state).join(' ')}`);
  assert.match(bFinal[0].error ?? '', /peer dispatcher/);
  const res = Object.fromEntries((await store.listResults(id)).map((r) => [r.host, r]));
  assert.equal(res.a.state, 'done');
  assert.equal(res.b.state, 'lost');
  assert.match(res.b.error ?? '', /agent b \(on a peer dispatcher\) disconnected mid-trace/);
  const merged = records(await bytesOf(store.getAttachmentStream(traceDocId(id), MERGED_ATTACHMENT)));
  assert.equal(merged.length, 3 + BULK.a, "merged.pcap holds a's packets");
});

test('D3 dies mid-trace of b and b reconnects to D1 at once: the run died with D3, so D1 still marks b lost and finishes', { skip, timeout: 120_000 }, async () => {
  const d3 = await startDispatcherProcess('d3');
  agents.find((a) => a.name === 'b')?.close();
  const b = startTestAgent({ url: d3.url, token: AGENT_TOKEN, name: 'b', ringDir: rings.b, stallAfterChunks: 1, maxChunkBytes: CHUNK_BYTES });
  agents.push(b);
  const client = clients[0];
  await until(async () => (await listAgents(client)).filter((a) => a.connected && a.hostname !== null).length === 2, 'b on D3', 20_000);

  const log = new UpdateLog(client);
  const started = (await ask(client, 'trace:start', { ip: [PROXY] })) as TraceAck;
  assert.ok(started.ok, JSON.stringify(started));
  const id = started.trace.id;
  await until(() => log.of(id, 'b').some((u) => u.state === 'started'), `b mid-stream on D3\n${dispatcherLogs()}`, 30_000);

  const killed = Date.now();
  process.kill(d3.proc.pid, 'SIGKILL');
  await d3.proc.waitForExit(5_000);
  // As behind a load balancer: the agent's next connection lands on a live dispatcher.
  b.close();
  agents.push(startTestAgent({ url: d1.url, token: AGENT_TOKEN, name: 'b', ringDir: rings.b }));
  await until(() => log.final(id) !== undefined, `D1 to finish the trace without D3\n${dispatcherLogs()}`, 25_000);
  const took = Date.now() - killed;
  assert.ok(took < 15_000, `finished ${took} ms after D3 died`);
  assert.equal(log.final(id)!.state, 'partial');
  const res = Object.fromEntries((await store.listResults(id)).map((r) => [r.host, r]));
  assert.equal(res.a.state, 'done');
  assert.equal(res.b.state, 'lost');
  assert.ok((await listAgents(client)).find((a) => a.name === 'b')?.connected, 'b is connected to D1 all along');
});
