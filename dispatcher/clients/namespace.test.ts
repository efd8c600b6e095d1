import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket as ClientSocket } from 'socket.io-client';
import { PROTOCOL_VERSION, TraceUpdate } from '../../shared/protocol/wire';
import { Auth } from '../auth/auth';
import { AGENT_TOKEN, ask, connectClient, connectSocket, refusal, startTestDispatcher, TestDispatcher, TraceAck, TRACER, UpdateLog, VIEWER } from '../daemon/testing';
import { MERGED_ATTACHMENT } from '../store/layout';
import { startTestCouch, TestCouch } from '../store/testing';
import { CALL, makeTestRings, PROXY, startTestAgent, TestAgent, TestHost, until } from '../trace/testing';

const X_TOKEN = 'token-for-agent-x-only-0123456789';
/** Proxy packets on host a beside its SIP: a few chunks' worth. */
const BULK_A = 600;
const REFUSED = 'unauthorized: unknown user, wrong password, or unknown/expired token';

let dir = '';
let couch: TestCouch;
let rings: Record<TestHost, string>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tf-clients-'));
  couch = await startTestCouch();
  rings = await makeTestRings(dir, { bulk: { a: BULK_A } });
});

after(async () => {
  await couch?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A dispatcher, the agents named (each on its own ring), and everything to close afterwards. */
async function rig(hosts: TestHost[] = [], opts: Parameters<typeof startTestDispatcher>[1] = {}) {
  const d = await startTestDispatcher(couch.url, opts);
  const agents: TestAgent[] = [];
  const sockets: ClientSocket[] = [];
  for (const h of hosts) agents.push(startTestAgent({ url: d.url, token: AGENT_TOKEN, name: h, ringDir: rings[h] }));
  await until(async () => (await d.orchestrator.agents()).filter((a) => a.connected && a.hostname !== null).length === hosts.length, `agents ${hosts.join(', ')} connected`);
  return {
    d,
    agents,
    async client(auth: object): Promise<ClientSocket> {
      const s = await connectClient(d.url, auth);
      sockets.push(s);
      return s;
    },
    async close() {
      for (const s of sockets) s.close();
      for (const a of agents) a.close();
      await d.stop();
    },
  };
}

const asTracer = { user: TRACER.name, password: TRACER.password };
const asViewer = { user: VIEWER.name, password: VIEWER.password };

test('agents: an unknown token is refused, a NAME=TOKEN token only for its own name, and the dispatcher logs each refusal', async () => {
  const r = await rig([], { agentTokens: [{ token: AGENT_TOKEN }, { agent: 'x', token: X_TOKEN }] });
  try {
    const url = r.d.url;
    assert.equal(await refusal(url, '/agent', { token: 'not-the-agent-token-0123456789', name: 'a' }), 'unauthorized: unknown token');
    assert.equal(await refusal(url, '/agent', { token: X_TOKEN, name: 'y' }), 'unauthorized: unknown token', "x's own token is no good for y");
    assert.equal(await refusal(url, '/agent', {}), 'unauthorized: unknown token');
    assert.equal(await refusal(url, '/agent', { token: 'x'.repeat(100_000), name: 'a' }), 'unauthorized: unknown token');
    assert.match(await refusal(url, '/agent', { token: AGENT_TOKEN }), /^unauthorized: bad auth message: name: /);
    assert.match(await refusal(url, '/agent', { token: AGENT_TOKEN, name: '../etc/passwd' }), /^unauthorized: bad auth message: name: agent names are 1-64 letters/);

    r.agents.push(startTestAgent({ url, token: X_TOKEN, name: 'x', ringDir: rings.c }));
    r.agents.push(startTestAgent({ url, token: AGENT_TOKEN, name: 'b', ringDir: rings.b }));
    await until(async () => (await r.d.orchestrator.agents()).filter((a) => a.connected).length === 2, 'x and b connected');
    assert.deepEqual((await r.d.orchestrator.agents()).map((a) => [a.name, a.connected]), [['b', true], ['x', true]], 'nobody refused was registered');

    const refused = r.d.log.records.filter((x) => x.msg === 'refused agent' && x.component === 'dispatcher.fleet');
    const shown = JSON.stringify(refused);
    assert.ok(refused.some((x) => x.agent === '"a"' && /127\.0\.0\.1/.test(String(x.addr)) && x.reason === 'unknown token'), shown);
    assert.ok(refused.some((x) => x.agent === '"y"' && /127\.0\.0\.1/.test(String(x.addr)) && x.reason === 'unknown token'), shown);
    assert.ok(refused.some((x) => x.agent === '"../etc/passwd"' && /agent names are/.test(String(x.reason))), shown);
    assert.ok(refused.every((x) => JSON.stringify(x).length < 600), 'a huge token is not logged');
  } finally {
    await r.close();
  }
});

test('clients: a wrong password, an unknown user, and a made-up, forged, expired or revoked token are refused at connection', async () => {
  const r = await rig();
  try {
    const url = r.d.url;
    // Each way in works when right.
    const session = await r.d.auth.login(TRACER.name, TRACER.password);
    const apiToken = await r.d.auth.createToken(VIEWER.name);
    for (const auth of [asTracer, { token: session!.token }, { token: apiToken }]) {
      const s = await r.client(auth);
      const a = await ask(s, 'agents:list');
      assert.equal(a.ok, true, JSON.stringify(auth).slice(0, 40));
    }

    const short = await Auth.open(r.d.store.store, { sessionTtlMs: 1 });
    const expired = (await short.login(TRACER.name, TRACER.password))!.token;
    await sleep(10);
    const revoked = await r.d.auth.createToken(TRACER.name);
    await r.d.auth.revokeToken(TRACER.name, (await r.d.auth.listTokens(TRACER.name))[0].id);
    const forged = `${session!.token.slice(0, session!.token.lastIndexOf('.'))}.${Buffer.alloc(32).toString('base64url')}`;

    const wrong: Array<[object, string]> = [
      [{ user: TRACER.name, password: 'not-the-password' }, 'a wrong password'],
      [{ user: 'nobody', password: TRACER.password }, 'an unknown user'],
      [{ token: 'made-up-token' }, 'a made-up token'],
      [{ token: forged }, 'a session with a forged signature'],
      [{ token: expired }, 'an expired session'],
      [{ token: revoked }, 'a revoked API token'],
    ];
    for (const [auth, what] of wrong) assert.equal(await refusal(url, '/client', auth), REFUSED, what);
    for (const auth of [{}, { user: TRACER.name }, { token: '' }, { token: 5 }, { ...asTracer, extra: 1 }, { token: 'x'.repeat(10_000) }]) {
      assert.equal(await refusal(url, '/client', auth), 'unauthorized: give a token, or a user and password', JSON.stringify(auth).slice(0, 60));
    }
    const refused = r.d.log.records.filter((x) => x.msg === 'refused client' && x.reason === 'bad credentials' && /127\.0\.0\.1/.test(String(x.addr)));
    assert.ok(refused.some((x) => x.user === 'tom'), r.d.log.lines.join(''));
    assert.ok(refused.some((x) => x.user === 'nobody'));
    assert.ok(refused.some((x) => x.with === 'token'));
  } finally {
    await r.close();
  }
});

test('a viewer lists agents and watches a trace, but starting or cancelling one is forbidden with a clear message', async () => {
  const r = await rig(['a', 'b']);
  try {
    const viewer = await r.client(asViewer);
    const tracer = await r.client(asTracer);
    const list = await ask<{ agents: Array<{ name: string; connected: boolean }> }>(viewer, 'agents:list');
    assert.ok(list.ok);
    assert.deepEqual(list.agents.map((a) => [a.name, a.connected]), [['a', true], ['b', true]]);

    const forbidden = /^user vera \(viewer\) may not start or cancel traces: that needs the tracer or admin role$/;
    const start = await ask(viewer, 'trace:start', { callId: [CALL] });
    assert.deepEqual({ ...start, error: undefined }, { ok: false, code: 'forbidden', error: undefined });
    assert.match((start as { error: string }).error, forbidden);
    assert.equal((await r.d.store.store.listTraces()).traces.length, 0, 'nothing started');

    const started = (await ask(tracer, 'trace:start', { callId: [CALL] })) as TraceAck;
    assert.ok(started.ok, JSON.stringify(started));
    const id = started.trace.id;
    const seen = new UpdateLog(viewer);
    const watched = (await ask(viewer, 'trace:watch', { traceId: id })) as TraceAck;
    assert.ok(watched.ok);
    assert.equal(watched.trace.id, id);
    assert.deepEqual(watched.trace.hosts.map((h) => h.host), ['a', 'b']);

    const cancel = await ask(viewer, 'trace:cancel', { traceId: id });
    assert.equal(cancel.ok, false);
    assert.equal((cancel as { code: string }).code, 'forbidden');
    assert.match((cancel as { error: string }).error, forbidden);

    await until(() => seen.final(id) !== undefined, 'the viewer to see the trace finish');
    assert.equal(seen.final(id)!.state, 'done', 'the viewer could not cancel it');
  } finally {
    await r.close();
  }
});

/** queued < started < final: a host's updates never go back. */
const rank = (s: string) => (s === 'queued' ? 0 : s === 'started' ? 1 : 2);

test('a tracer starts a trace and receives every host\'s updates in order, then the final update with the merged counts', async () => {
  const r = await rig(['a', 'b', 'c']);
  try {
    const tracer = await r.client({ token: (await r.d.auth.createToken(TRACER.name)) });
    const log = new UpdateLog(tracer);
    const a = (await ask(tracer, 'trace:start', { ip: [PROXY] })) as TraceAck;
    assert.ok(a.ok, JSON.stringify(a));
    const id = a.trace.id;
    assert.equal(a.trace.user, TRACER.name);
    assert.deepEqual(a.trace.hosts.map((h) => h.host), ['a', 'b', 'c'], 'every connected agent when no host is named');
    await until(() => log.final(id) !== undefined, 'the final update');

    const final = log.final(id)!;
    assert.equal(final.state, 'done');
    // Host a: both calls and the bulk; b: the crossing call; c: nothing from the proxy.
    assert.deepEqual(final.merged, { packets: 3 + BULK_A + 2, bytes: final.bytes, duplicates: 0 });
    const finalAt = log.updates.indexOf(final);
    assert.deepEqual(log.updates.slice(finalAt + 1).filter((u) => u.traceId === id), [], 'nothing after the final update');
    for (const host of ['a', 'b', 'c']) {
      const us: TraceUpdate[] = log.of(id, host);
      assert.ok(us.length > 0, `updates of ${host}`);
      const ranks = us.map((u) => rank(u.state));
      assert.deepEqual(ranks, [...ranks].sort(), `${host}'s updates in order: ${us.map((u) => u.state).join(' ')}`);
      assert.equal(us.filter((u) => rank(u.state) === 2).length, 1, `one final update for ${host}`);
      assert.equal(us[us.length - 1].state, 'done');
      for (let i = 1; i < us.length; i++) assert.ok(us[i].bytes >= us[i - 1].bytes, `${host}'s byte counts grow`);
      assert.ok(log.updates.indexOf(us[us.length - 1]) < finalAt, `${host} is final before the trace`);
    }
    assert.ok(log.of(id, 'a').some((u) => u.state === 'started'), 'host a streamed for a while');
    const trace = await r.d.store.store.getTrace(id);
    assert.equal(trace?.state, 'done');
    assert.ok(trace?._attachments?.[MERGED_ATTACHMENT]);
  } finally {
    await r.close();
  }
});

test('trace:watch of an unknown trace is not_found; unwatch stops the updates', async () => {
  const r = await rig(['b']);
  try {
    const s = await r.client(asViewer);
    assert.deepEqual(await ask(s, 'trace:watch', { traceId: 'nosuch-trace' }), { ok: false, error: 'no trace nosuch-trace', code: 'not_found' });
    const tracer = await r.client(asTracer);
    const tracerLog = new UpdateLog(tracer);
    const log = new UpdateLog(s);
    const started = (await ask(tracer, 'trace:start', { callId: [CALL] })) as TraceAck;
    assert.ok(started.ok);
    const id = started.trace.id;
    assert.equal((await ask(s, 'trace:watch', { traceId: id })).ok, true);
    assert.deepEqual(await ask(s, 'trace:unwatch', { traceId: id }), { ok: true });
    // One connection keeps order: whatever came before the unwatch ack is all this socket gets.
    const before = log.updates.length;
    await until(() => tracerLog.final(id) !== undefined, 'the trace to finish');
    await sleep(200);
    assert.equal(log.updates.length, before, 'no update after unwatch');
  } finally {
    await r.close();
  }
});

test('malformed /client messages are refused with a clear error, and the dispatcher keeps serving', async () => {
  const r = await rig(['a', 'b']);
  try {
    const s = await r.client(asTracer);
    const huge = 'x'.repeat(200_000);
    const expect = async (event: string, payload: unknown, error: RegExp, code = 'bad_request') => {
      const a = await ask(s, event, payload);
      const shown = `${event} ${JSON.stringify(payload)?.slice(0, 80)}`;
      assert.equal(a.ok, false, shown);
      const f = a as { error: string; code: string };
      assert.equal(f.code, code, `${shown}: ${f.error}`);
      assert.match(f.error, error, shown);
      assert.ok(f.error.length <= 1024, `${shown}: the error is short (${f.error.length} chars)`);
    };
    for (const event of ['trace:start', 'trace:watch', 'trace:unwatch', 'trace:cancel']) {
      const bad = new RegExp(`^bad ${event} message: `);
      for (const p of [42, 'a string', null, [], true]) await expect(event, p, new RegExp(`${bad.source}body: Expected object, received`));
      await expect(event, { traceId: 'abc', callId: [CALL], [huge]: 1 }, new RegExp(`${bad.source}body: Unrecognized key`));
    }
    for (const event of ['trace:watch', 'trace:unwatch', 'trace:cancel']) {
      const bad = `^bad ${event} message: `;
      await expect(event, {}, new RegExp(`${bad}traceId: Required`));
      await expect(event, { traceId: 5 }, new RegExp(`${bad}traceId: Expected string, received number`));
      await expect(event, { traceId: huge }, new RegExp(`${bad}traceId: trace ids are 1-128 letters`));
      await expect(event, { traceId: '../_users' }, new RegExp(`${bad}traceId: trace ids are`));
      await expect(event, { traceId: 'abc', extra: 1 }, new RegExp(`${bad}body: Unrecognized key\\(s\\) in object: 'extra'`));
    }
    const start = '^bad trace:start message: ';
    await expect('trace:start', { ip: PROXY }, new RegExp(`${start}ip: Expected array, received string`));
    await expect('trace:start', { callId: [CALL], bogus: 1 }, new RegExp(`${start}body: Unrecognized key\\(s\\) in object: 'bogus'`));
    await expect('trace:start', { callId: [huge] }, new RegExp(`${start}callId.0: String must contain at most 1024`));
    await expect('trace:start', { callId: Array(1000).fill(CALL) }, new RegExp(`${start}callId: Array must contain at most 64`));
    await expect('trace:start', { callId: [CALL], hosts: 'a' }, new RegExp(`${start}hosts: Expected array`));
    await expect('trace:start', { callId: [CALL], hosts: ['../x'] }, new RegExp(`${start}hosts.0: host names are agent names`));
    await expect('trace:start', { callId: [CALL], hosts: [] }, new RegExp(`${start}hosts: Array must contain at least 1`));
    await expect('trace:start', { callId: [CALL], maxPackets: -1 }, new RegExp(`${start}maxPackets: Number must be greater than 0`));
    await expect('trace:start', { callId: [CALL], maxPackets: 1.5 }, new RegExp(`${start}maxPackets: Expected integer`));
    // Well-formed, but not a trace the agents could run.
    await expect('trace:start', { rtp: true }, /no selective key/);
    await expect('trace:start', { number: ['12'] }, /digit/);
    await expect('trace:start', { callId: [CALL], hosts: ['nosuch'] }, /^unknown host nosuch: no agent of that name has connected; known agents: a, b$/);
    await expect('trace:cancel', { traceId: 'nosuch' }, /^no trace nosuch$/, 'not_found');
    for (const p of [42, 'x', null, { extra: 1 }]) await expect('agents:list', p, /^bad agents:list message: body: /);
    assert.equal((await ask(s, 'agents:list', {})).ok, true, 'agents:list takes {}');

    // Without an ack callback nobody could hear the answer: refused, and said once in the log.
    s.emit('trace:start', { ip: [PROXY] });
    s.emit('trace:start', { ip: [PROXY] });
    s.emit('trace:cancel', { traceId: 'nosuch' });
    s.emit('trace:watch', 42);
    const noAck = (event: string) => r.d.log.records.filter((x) => x.client === 'tom' && x.event === event && /without an acknowledgement callback refused; emit it with a callback/.test(x.msg));
    await until(() => noAck('trace:cancel').length > 0, 'the refusals logged');
    assert.equal(noAck('trace:start').length, 1, r.d.log.lines.join(''));
    assert.equal((await r.d.store.store.listTraces()).traces.length, 0, 'nothing was started');

    // A message over Socket.IO's size limit ends that connection only.
    const big = await r.client(asTracer);
    const gone = new Promise<string>((res) => big.once('disconnect', (why) => res(why)));
    big.emit('trace:watch', { traceId: 'x'.repeat(3 * 1024 * 1024) }, () => {});
    assert.match(await gone, /close/);

    // Still serving, on the same connection.
    const log = new UpdateLog(s);
    const ok = (await ask(s, 'trace:start', { ip: [PROXY] })) as TraceAck;
    assert.ok(ok.ok, JSON.stringify(ok));
    await until(() => log.final(ok.trace.id) !== undefined, 'a correct trace to finish');
    assert.equal(log.final(ok.trace.id)!.state, 'done');
    assert.deepEqual(r.d.log.records.filter((x) => x.level >= 50), [], 'no handler failed');
  } finally {
    await r.close();
  }
});

const STATUS = { ring: { oldest: null, newest: null, bytes: 0, segments: 0 }, capture: {}, indexErrors: 0 };
const HELLO = { protocol: PROTOCOL_VERSION, version: 'raw', hostname: 'raw', interfaces: ['eth0'], ...STATUS };

test('malformed /agent messages are refused with a clear error, a trace broken by one agent ends for that host only, and the dispatcher keeps serving', async () => {
  const r = await rig(['a']);
  let raw: ClientSocket | null = null;
  try {
    raw = await connectSocket(r.d.url, '/agent', { token: AGENT_TOKEN, name: 'raw' });
    const emitAck = (event: string, ...args: unknown[]) => raw!.timeout(5000).emitWithAck(event, ...args) as Promise<{ ok: boolean; error?: string }>;
    for (const p of [42, 'hello', null, []]) {
      const a = await emitAck('agent:hello', p);
      assert.equal(a.ok, false);
      assert.match(a.error ?? '', /^bad agent:hello message: body: Expected object, received/);
    }
    assert.match((await emitAck('agent:hello', { ...HELLO, protocol: 99 })).error ?? '', /^bad agent:hello message: protocol: Invalid literal value, expected 1/);
    assert.match((await emitAck('agent:hello', { ...HELLO, hostname: 'h'.repeat(100_000) })).error ?? '', /^bad agent:hello message: hostname: String must contain at most 255/);
    assert.match((await emitAck('agent:hello', { ...HELLO, interfaces: 'eth0' })).error ?? '', /^bad agent:hello message: interfaces: Expected array/);
    raw.emit('agent:heartbeat', 'not a status');
    raw.emit('agent:heartbeat', { ...STATUS, indexErrors: -1 });
    raw.emit('agent:hello', 42); // no ack callback: logged, nothing else
    const noTrace = /^no trace \(none\) is running for agent raw on this dispatcher$/;
    for (const p of [42, null, 'x', {}, { traceId: 7 }]) assert.match((await emitAck('trace:chunk', p)).error ?? '', noTrace);
    assert.match((await emitAck('trace:chunk', { traceId: 'nosuch', seq: 0, data: Buffer.from('x') })).error ?? '', /^no trace nosuch is running for agent raw/);
    for (const e of ['trace:started', 'trace:progress', 'trace:done', 'trace:error']) {
      raw.emit(e, 42);
      raw.emit(e, { traceId: 'nosuch' });
    }
    raw.emit('trace:chunk', { traceId: 'nosuch', seq: 0, data: Buffer.from('x') }); // no ack callback
    const bad = (reason: RegExp) => r.d.log.records.some((x) => x.agent === 'raw' && x.msg === 'bad message from agent' && reason.test(String(x.reason)));
    await until(() => bad(/^bad agent:heartbeat message: indexErrors: Number must be greater than or equal to 0/), 'the bad heartbeat logged');
    assert.ok(bad(/^bad agent:heartbeat message: body: Expected object, received string/));
    assert.equal((await emitAck('agent:hello', HELLO)).ok, true, 'a good hello after all that');

    // In a trace, raw accepts and then sends a chunk that is not bytes: raw's part is an error, a's is done.
    let chunkAck: { ok: boolean; error?: string } | null = null;
    raw.on('trace:run', (run: { traceId: string }, ack: (r: unknown) => void) => {
      ack({ accepted: true });
      raw!.emit('trace:started', { traceId: run.traceId });
      raw!.emit('trace:chunk', { traceId: run.traceId, seq: 0, data: 'not bytes' }, (r: { ok: boolean; error?: string }) => (chunkAck = r));
    });
    const tracer = await r.client(asTracer);
    const log = new UpdateLog(tracer);
    const started = (await ask(tracer, 'trace:start', { ip: [PROXY], hosts: ['a', 'raw'] })) as TraceAck;
    assert.ok(started.ok, JSON.stringify(started));
    const id = started.trace.id;
    await until(() => log.final(id) !== undefined, 'the trace to finish');
    assert.equal(log.final(id)!.state, 'partial');
    assert.match(chunkAck!.error ?? '', /^bad trace:chunk message: data: Input not instance of Buffer/);
    const res = Object.fromEntries((await r.d.store.store.listResults(id)).map((x) => [x.host, x]));
    assert.equal(res.a.state, 'done');
    assert.equal(res.raw.state, 'error');
    assert.match(res.raw.error ?? '', /^agent raw broke the protocol: bad trace:chunk message: data: /);

    // A message over the size limit ends that agent's connection only; a trace right after works.
    const gone = new Promise<string>((res) => raw!.once('disconnect', (why) => res(why)));
    raw.emit('agent:heartbeat', { ...STATUS, pad: 'x'.repeat(3 * 1024 * 1024) });
    assert.match(await gone, /close/);
    const again = (await ask(tracer, 'trace:start', { ip: [PROXY], hosts: ['a'] })) as TraceAck;
    assert.ok(again.ok);
    await until(() => log.final(again.trace.id) !== undefined, 'the next trace to finish');
    assert.equal(log.final(again.trace.id)!.state, 'done');
    assert.ok(r.d.log.lines.every((l) => l.length < 2000), 'no unbounded log line');
  } finally {
    raw?.close();
    await r.close();
  }
});
