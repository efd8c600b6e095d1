import assert from 'node:assert/strict';
import { RtpStreamStats } from '../../shared/rtp/stats';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Server as IoServer } from 'socket.io';
import { io as ioClient, Socket as ClientSocket } from 'socket.io-client';
import * as tar from 'tar-stream';
import type { MessageSummary } from '../../agent/query/engine';
import type { AgentView, TraceView } from '../../shared/protocol/client';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, resultDocId, traceDocId } from '../store/layout';
import { TraceStore } from '../store/store';
import { openTestStore, startRelay, startTestCouch, TestCouch } from '../../test/support/couch';
import { attachFleet, AgentFleet } from '../fleet/server';
import { Orchestrator } from '../trace/orchestrator';
import { Spool } from '../trace/spool';
import type { Traces } from '../trace/types';
import { connectDispatcher, DispatcherLink } from '../../agent/link/client';
import { importCaptures } from '../../agent/index/import';
import { serveTraces, TraceServer } from '../../agent/trace/serve';
import { ETH_IPV4, ethernet, ipv4, sipInvite, sipResponse, udp } from '../../test/support/packets';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { Auth } from '../auth/auth';
import { hashPassword } from '../auth/password';
import { createApi } from './api';
import { Metrics } from './metrics';
import { metricValue } from '../trace/metrics';
import { parseExposition } from '../../test/support/prometheus';
import { silentLogger } from '../../shared/log/log';
import { memoryLogger } from '../../test/support/log';

/*
 * The API as the dispatcher mounts it: one http server on loopback with
 * Socket.IO attached (the /agent namespace of dispatcher/fleet), the real
 * Orchestrator, Auth and store, and real agents on that server: two serving
 * traces from rings imported from a capture, one that takes trace:run and
 * never answers (its traces stay running), one known but gone.
 */

function msg(ts: string, method: string): MessageSummary {
  return {
    ts,
    time: new Date(Number(ts.split('.')[0]) * 1000).toISOString(),
    src: '127.0.0.1:5060',
    dst: '127.0.0.2:5060',
    transport: 'udp',
    method,
    status: null,
    reason: null,
    callId: 'call-1@test',
    cseq: `1 ${method}`,
    from: null,
    to: null,
    ruri: null,
    correlation: null,
    bytes: 400,
    packets: 1,
  };
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

async function listen(server: HttpServer): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function close(server: HttpServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Every entry of a tar archive, read back with tar-stream's extractor. */
async function untar(bytes: Buffer): Promise<Map<string, { size: number; data: Buffer }>> {
  const out = new Map<string, { size: number; data: Buffer }>();
  const extract = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const parts: Buffer[] = [];
      stream.on('data', (c: unknown) => void parts.push(c as Buffer));
      stream.on('end', () => {
        out.set(header.name, { size: header.size, data: Buffer.concat(parts) });
        next();
      });
      stream.resume();
    });
    extract.on('finish', () => resolve());
    extract.on('error', reject);
  });
  extract.end(bytes);
  await done;
  return out;
}

const AGENT_TOKEN = 'api-test-agent-token-0123456789';
const CALL = 'api-call@tracefleet.test';
const T0 = 1_795_100_000;

const udpEth = (src: string, dst: string, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, payload)));

/** A ring holding one call's INVITE and 200, at `offsetNs` past T0, imported from a capture written here. */
async function ringWithCall(dir: string, name: string, offsetNs: number): Promise<string> {
  const file = join(dir, `${name}.pcap`);
  const fd = openSync(file, 'w');
  const w = new PcapFileWriterSync(fd, { linkType: 1, nanos: true });
  const frames = [udpEth('192.0.2.1', '198.51.100.7', sipInvite(CALL)), udpEth('198.51.100.7', '192.0.2.1', sipResponse(200, 'OK', CALL))];
  frames.forEach((frame, i) => w.write({ tsSec: T0, tsNsec: offsetNs + i * 10_000, origLen: frame.length, data: frame }));
  w.flush();
  closeSync(fd);
  const ring = join(dir, `ring-${name}`);
  await importCaptures(ring, [file]);
  return ring;
}

/** Polls `cond` every 20 ms for at most `ms`. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

describe('REST API over a real http server and store', { timeout: 180_000 }, () => {
  let couch: TestCouch;
  let store: TraceStore;
  let drop: () => Promise<void>;
  let server: HttpServer;
  let base: string;
  let traces: Orchestrator;
  let fleet: AgentFleet;
  let io: IoServer;
  let auth: Auth;
  let dir: string;
  const agents: Array<{ link: DispatcherLink; server: TraceServer }> = [];
  let mute: ClientSocket | null = null;
  const logged = memoryLogger();
  let metrics: Metrics;
  const tokens: Record<string, string> = {};

  const call = (path: string, init: RequestInit & { as?: string } = {}) => {
    const headers = new Headers(init.headers);
    if (init.as) headers.set('authorization', `Bearer ${tokens[init.as]}`);
    return fetch(`${base}${path}`, { ...init, headers });
  };
  const json = async (res: Response) => (await res.json()) as Record<string, any>;
  const post = (path: string, body: unknown, as: string) =>
    call(path, { method: 'POST', as, headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });

  before(async () => {
    couch = await startTestCouch();
    ({ store, drop } = await openTestStore(couch.url));
    auth = await Auth.open(store);
    await auth.addUser('root', 'root-pass', ['admin']);
    await auth.addUser('alice', 'alice-pass', ['tracer']);
    await auth.addUser('bob', 'bob-pass', ['tracer']);
    await auth.addUser('vic', 'vic-pass', ['viewer']);
    // A role this dispatcher does not know (a newer one's?) grants nothing.
    await store.putUser({ name: 'nobody', roles: ['auditor'], passwordHash: await hashPassword('nobody-pass') });
    dir = mkdtempSync(join(tmpdir(), 'tracefleet-api-'));
    // Composed as dispatcher/daemon/run.ts does: Socket.IO first, the API as the server's request handler.
    server = createServer();
    io = new IoServer(server, { serveClient: false, maxHttpBufferSize: 1e6 });
    fleet = attachFleet(io, { tokens: [{ token: AGENT_TOKEN }], logger: silentLogger });
    traces = new Orchestrator({ store, fleet, spool: new Spool(join(dir, 'spool')), timeouts: { runAckMs: 8_000, idleMs: 30_000 }, retryMs: 200, logger: logged.logger });
    metrics = new Metrics({ orchestrator: traces, registry: fleet.registry, store });
    server.on('request', createApi({ store, traces, auth, metrics, logger: logged.logger }));
    base = await listen(server);
    const status = { ring: { oldest: null, newest: null, bytes: 0, segments: 0 }, capture: {}, indexErrors: 0 };
    for (const [name, offset] of [['edge-1', 1000], ['edge-2', 5000], ['core-1', 0]] as const) {
      const ring = await ringWithCall(dir, name, offset);
      const link = connectDispatcher({ url: base, token: AGENT_TOKEN, name, hello: () => ({ version: 'test', hostname: name, interfaces: ['eth0'], ...status }), status: () => status, logger: silentLogger });
      agents.push({ link, server: serveTraces(link.socket, { ringDir: ring, logger: silentLogger }) });
      await until(() => fleet.registry.get(name)?.hostname === name, `agent ${name}`);
    }
    // core-1 was here and left: known, not connected.
    agents[2].link.close();
    await until(() => fleet.registry.get('core-1')?.connected === false, 'core-1 gone');
    // A hung agent: a real connection that takes trace:run and never answers.
    mute = ioClient(`${base}/agent`, { auth: { token: AGENT_TOKEN, name: 'mute-1' }, forceNew: true, reconnection: false });
    await until(() => fleet.registry.get('mute-1')?.connected === true, 'mute-1');
    for (const u of ['root', 'alice', 'bob', 'vic', 'nobody']) {
      const res = await fetch(`${base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: u, password: `${u}-pass` }) });
      assert.equal(res.status, 200);
      tokens[u] = (await json(res)).token;
    }
  });
  after(async () => {
    mute?.disconnect();
    for (const a of agents) {
      a.server.close();
      a.link.close();
    }
    traces?.close();
    if (io) await new Promise<void>((resolve) => io.close(() => resolve()));
    if (server) await close(server);
    await drop?.();
    await couch?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('login: a session for the right password, 401 for a wrong one, 400 for a malformed body', async () => {
    const ok = await call('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice', password: 'alice-pass' }) });
    assert.equal(ok.status, 200);
    const s = await json(ok);
    assert.equal(s.user, 'alice');
    assert.deepEqual(s.roles, ['tracer']);
    assert.ok(typeof s.token === 'string' && s.token.length > 10);
    assert.ok(!Number.isNaN(Date.parse(s.expiresAt)));
    const me = await call('/api/me', { headers: { authorization: `Bearer ${s.token}` } });
    assert.deepEqual(await json(me), { user: 'alice', roles: ['tracer'] });

    const bad = await call('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice', password: 'nope' }) });
    assert.equal(bad.status, 401);
    const badBody = await json(bad);
    assert.match(badBody.error, /wrong user name or password/);
    assert.equal(badBody.code, 'TF_BAD_CREDENTIALS', 'a wrong password is told from not being logged in');
    assert.ok(bad.headers.get('www-authenticate'));

    const missing = await call('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice' }) });
    assert.equal(missing.status, 400);
    const missingBody = await json(missing);
    assert.match(missingBody.error, /password/);
    assert.deepEqual([missingBody.code, missingBody.field], ['TF_PARAMS_INVALID', 'password']);
    const notJson = await call('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"user": "alice",' });
    assert.equal(notJson.status, 400);
    const notJsonBody = await json(notJson);
    assert.match(notJsonBody.error, /not valid JSON/);
    assert.equal(notJsonBody.code, 'TF_BODY_NOT_JSON');
    const form = await call('/api/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'user=alice&password=alice-pass' });
    assert.equal(form.status, 400);
    const formBody = await json(form);
    assert.match(formBody.error, /Content-Type: application\/json/);
    assert.equal(formBody.code, 'TF_BODY_NOT_JSON');
  });

  test('401 without or with bad credentials, with a challenge; Basic works', async () => {
    const none = await call('/api/traces');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer realm="tracefleet"/);
    const noneBody = await json(none);
    assert.match(noneBody.error, /log in first/);
    assert.equal(noneBody.code, 'TF_UNAUTHENTICATED');

    const unknown = await call('/api/me', { headers: { authorization: 'Bearer not-a-session' } });
    assert.equal(unknown.status, 401);
    assert.match(unknown.headers.get('www-authenticate') ?? '', /invalid_token/);
    assert.equal((await json(unknown)).code, 'TF_BAD_CREDENTIALS');

    const garbage = await call('/api/me', { headers: { authorization: 'Digest whatever' } });
    assert.equal(garbage.status, 401);
    const garbageBody = await json(garbage);
    assert.match(garbageBody.error, /Bearer <token>/);
    assert.equal(garbageBody.code, 'TF_AUTH_HEADER_INVALID');

    const good = await call('/api/me', { headers: { authorization: basic('vic', 'vic-pass') } });
    assert.equal(good.status, 200);
    assert.deepEqual(await json(good), { user: 'vic', roles: ['viewer'] });
    const wrong = await call('/api/me', { headers: { authorization: basic('vic', 'bad') } });
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /^Basic realm="tracefleet"/);
  });

  test('API tokens authenticate; too many failed logins answer 429 with Retry-After', async () => {
    const token = await auth.createToken('alice');
    const me = await call('/api/me', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(me.status, 200);
    assert.deepEqual(await json(me), { user: 'alice', roles: ['tracer'] });

    const strict = await Auth.open(store, { rateLimit: { maxFailures: 2 } });
    const s2 = createServer(createApi({ store, traces, auth: strict, metrics: new Metrics(), logger: silentLogger }));
    const url = await listen(s2);
    const login = (password: string) =>
      fetch(`${url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'bob', password }) });
    try {
      for (let i = 0; i < 2; i++) assert.equal((await login('wrong-pass')).status, 401);
      const limited = await login('bob-pass');
      assert.equal(limited.status, 429);
      assert.ok(Number(limited.headers.get('retry-after')) > 0);
      assert.match((await json(limited)).error, /too many failed logins/);
      const viaBasic = await fetch(`${url}/api/me`, { headers: { authorization: basic('bob', 'bob-pass') } });
      assert.equal(viaBasic.status, 429);
      // A session is not a password guess: it still works.
      assert.equal((await fetch(`${url}/api/me`, { headers: { authorization: `Bearer ${tokens.bob}` } })).status, 200);
    } finally {
      await close(s2);
    }
  });

  test('403 by role: viewers read but may not trace; no role may not read', async () => {
    const start = await post('/api/traces', { callId: ['x@y'] }, 'vic');
    assert.equal(start.status, 403);
    assert.match((await json(start)).error, /vic.*may not start traces.*tracer or admin/);
    assert.equal((await call('/api/traces', { as: 'vic' })).status, 200);
    assert.equal((await call('/api/agents', { as: 'vic' })).status, 200);
    const none = await call('/api/traces', { as: 'nobody' });
    assert.equal(none.status, 403);
    assert.match((await json(none)).error, /viewer, tracer or admin/);
    // Authentication still works for them: /api/me needs no role.
    assert.equal((await call('/api/me', { as: 'nobody' })).status, 200);
  });

  test('POST /api/traces: 201 with the trace; malformed JSON, oversized and invalid bodies refused', async () => {
    const res = await post('/api/traces', { callId: ['abc@host'], hosts: ['edge-1', 'edge-2'] }, 'alice');
    assert.equal(res.status, 201);
    const { trace } = await json(res);
    assert.equal(trace.user, 'alice');
    assert.equal(trace.state, 'running');
    assert.deepEqual(trace.request, { callId: ['abc@host'], hosts: ['edge-1', 'edge-2'] });
    assert.deepEqual(
      trace.hosts.map((h: { host: string }) => h.host),
      ['edge-1', 'edge-2'],
    );
    assert.equal(res.headers.get('location'), `/api/traces/${trace.id}`);
    assert.ok(await store.getTrace(trace.id), 'stored');

    const broken = await post('/api/traces', '{"callId": [', 'alice');
    assert.equal(broken.status, 400);
    assert.match((await json(broken)).error, /not valid JSON/);

    const big = await post('/api/traces', { callId: ['x'.repeat(70 * 1024)] }, 'alice');
    assert.equal(big.status, 413);
    assert.match((await json(big)).error, /64 KiB/);

    const unknownField = await post('/api/traces', { callId: ['a'], colour: 'red' }, 'alice');
    assert.equal(unknownField.status, 400);
    assert.match((await json(unknownField)).error, /bad trace request: .*colour/);
    const wrongType = await post('/api/traces', { callId: 'not-a-list' }, 'alice');
    assert.equal(wrongType.status, 400);
    assert.match((await json(wrongType)).error, /callId: Expected array/);
    const badHost = await post('/api/traces', { callId: ['a'], hosts: ['bad host!'] }, 'alice');
    assert.equal(badHost.status, 400);
    assert.match((await json(badHost)).error, /hosts\.0: host names are agent names/);
    const array = await post('/api/traces', [1, 2], 'alice');
    assert.equal(array.status, 400);
    const noType = await call('/api/traces', { method: 'POST', as: 'alice', body: '{"callId":["a"]}', headers: { 'content-type': 'text/plain' } });
    assert.equal(noType.status, 400);
    assert.match((await json(noType)).error, /Content-Type: application\/json/);
    // The trace machinery's own refusal (a catalogue code of its own) keeps its code.
    const unknownHost = await post('/api/traces', { callId: ['a'], hosts: ['nowhere'] }, 'alice');
    assert.equal(unknownHost.status, 400);
    assert.match((await json(unknownHost)).error, /unknown host nowhere/);
  });

  test('a trace through the API end to end: started on two agents, done, messages in order, downloads match the store', async () => {
    const res = await post('/api/traces', { callId: [CALL], hosts: ['edge-1', 'edge-2'] }, 'alice');
    assert.equal(res.status, 201);
    const id = (await json(res)).trace.id as string;
    let view: TraceView | undefined;
    try {
      // Generous: other suites may share the machine's two cores.
      await until(async () => {
        view = (await json(await call(`/api/traces/${id}`, { as: 'vic' }))).trace;
        return view!.state !== 'running' && view!.merged !== undefined;
      }, 'the trace to finish', 60_000);
    } catch (e) {
      throw new Error(`${(e as Error).message}; last view: ${JSON.stringify(view)}; dispatcher log: ${logged.lines.join('')}`);
    }
    assert.equal(view!.state, 'done');
    assert.deepEqual(view!.hosts.map((h) => [h.host, h.state, h.packets, h.stored]), [
      ['edge-1', 'done', 2, true],
      ['edge-2', 'done', 2, true],
    ]);
    assert.equal(view!.merged!.packets, 4);

    const { messages } = await json(await call(`/api/traces/${id}/messages`, { as: 'vic' }));
    assert.deepEqual(
      messages.map((m: { host: string; method: string | null; status: number | null; callId: string }) => `${m.host} ${m.method ?? m.status} ${m.callId}`),
      [`edge-1 INVITE ${CALL}`, `edge-2 INVITE ${CALL}`, `edge-1 200 ${CALL}`, `edge-2 200 ${CALL}`],
    );

    const stored = async (docId: string, name: string) => {
      const parts: Buffer[] = [];
      for await (const c of store.getAttachmentStream(docId, name)) parts.push(c as Buffer);
      return Buffer.concat(parts);
    };
    const merged = await stored(traceDocId(id), MERGED_ATTACHMENT);
    const m = await call(`/api/traces/${id}/merged.pcap`, { as: 'vic' });
    assert.equal(m.status, 200);
    assert.equal(m.headers.get('content-length'), String(merged.length));
    assert.ok(Buffer.from(await m.arrayBuffer()).equals(merged));
    const e1 = await stored(resultDocId(id, 'edge-1'), HOST_ATTACHMENT);
    assert.ok(Buffer.from(await (await call(`/api/traces/${id}/hosts/edge-1/packets.pcap`, { as: 'vic' })).arrayBuffer()).equals(e1));

    const entries = await untar(Buffer.from(await (await call(`/api/traces/${id}/trace.tar`, { as: 'vic' })).arrayBuffer()));
    const dirName = `trace-${id}`;
    assert.deepEqual([...entries.keys()], [`${dirName}/summary.json`, `${dirName}/merged.pcap`, `${dirName}/hosts/edge-1.pcap`, `${dirName}/hosts/edge-2.pcap`]);
    assert.ok(entries.get(`${dirName}/merged.pcap`)!.data.equals(merged));
    assert.ok(entries.get(`${dirName}/hosts/edge-1.pcap`)!.data.equals(e1));
    const summary = JSON.parse(entries.get(`${dirName}/summary.json`)!.data.toString());
    assert.equal(summary.trace.state, 'done');
    assert.equal(summary.messages.length, 4);
    // Each host saw the INVITE answered by a 200 and nothing that ended the call yet.
    assert.deepEqual(
      summary.calls.map((c: { callId: string; host: string; finalStatus: number; endedBy: string | null; durationMs: number | null }) => [c.callId, c.host, c.finalStatus, c.endedBy, c.durationMs]),
      [[CALL, 'edge-1', 200, null, null], [CALL, 'edge-2', 200, null, null]],
    );
  });

  test("GET /api/traces/:id/streams: every host's RTP figures by first packet time, as the agents computed them; 404", async () => {
    const t = await store.createTrace({ id: 'streams', request: { callId: ['call-1@test'] }, user: 'alice', hosts: ['edge-1', 'edge-2'], state: 'done' });
    const stats = new RtpStreamStats();
    // One stream per host of the same call: edge-2 saw it first, and lost a packet.
    const pkt = (seq: number) => Buffer.concat([Buffer.from([0x80, 8, seq >> 8, seq & 0xff, 0, 0, (seq * 160) >> 8, (seq * 160) & 0xff, 0, 0, 0, 9]), Buffer.alloc(160)]);
    for (const seq of [1, 2, 3, 5]) stats.push(1718188953, seq * 20_000_000, '192.0.2.1:4000', '192.0.2.2:6000', pkt(seq));
    const [late] = stats.figures();
    const early = { ...late, first: '1718188952.000000000' };
    await store.putResult({ traceId: t.id, host: 'edge-1', state: 'done', streams: [late] });
    await store.putResult({ traceId: t.id, host: 'edge-2', state: 'done', streams: [early] });
    const res = await call('/api/traces/streams/streams', { as: 'vic' });
    assert.equal(res.status, 200);
    const { streams } = await json(res);
    assert.deepEqual(streams, [{ ...early, host: 'edge-2' }, { ...late, host: 'edge-1' }]);
    assert.deepEqual([streams[1].expected, streams[1].lost, streams[1].codec], [5, 1, 'PCMA/8000']);
    assert.equal((await call('/api/traces/nope/streams', { as: 'vic' })).status, 404);
  });

  test('GET /api/traces pages newest first with bookmarks; ?user filters; bad limits refused', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const t = await store.createTrace({ id: `page-${i}`, request: { callId: [`p${i}`] }, user: i % 2 ? 'bob' : 'carol', hosts: ['edge-1'], createdAt: `2030-01-01T00:00:0${i}.000Z`, state: 'done' });
      await store.putResult({ traceId: t.id, host: 'edge-1', state: 'done', packets: i, bytes: i * 100 });
      ids.push(t.id);
    }
    const seen: string[] = [];
    let bookmark: string | undefined;
    for (let pages = 0; pages < 10; pages++) {
      const q = new URLSearchParams({ limit: '2', ...(bookmark ? { bookmark } : {}) });
      const res = await call(`/api/traces?${q}`, { as: 'vic' });
      assert.equal(res.status, 200);
      const body = await json(res);
      assert.ok(body.traces.length <= 2);
      seen.push(...body.traces.map((t: TraceView) => t.id));
      bookmark = body.bookmark;
      if (!bookmark) break;
    }
    // Newest first: the five 2030 traces lead, then the ones the other tests made.
    assert.deepEqual(seen.slice(0, 5), [...ids].reverse());
    assert.equal(new Set(seen).size, seen.length, 'no trace twice');
    const first = (await json(await call('/api/traces?limit=1', { as: 'vic' }))).traces[0] as TraceView;
    assert.equal(first.id, 'page-4');
    assert.deepEqual(first.hosts.map((h) => [h.host, h.state, h.packets]), [['edge-1', 'done', 4]]);

    const bobs = await json(await call('/api/traces?user=bob', { as: 'vic' }));
    assert.deepEqual(
      bobs.traces.map((t: TraceView) => t.id),
      ['page-3', 'page-1'],
    );
    assert.equal(bobs.bookmark, undefined);

    for (const bad of ['limit=0', 'limit=1001', 'limit=abc', 'limit=1&limit=2']) {
      const res = await call(`/api/traces?${bad}`, { as: 'vic' });
      assert.equal(res.status, 400, bad);
      const body = await json(res);
      assert.match(body.error, /limit/, bad);
      assert.deepEqual([body.code, body.field], ['TF_PARAMS_INVALID', 'limit'], bad);
    }
    const badMark = await call('/api/traces?bookmark=xyz', { as: 'vic' });
    assert.equal(badMark.status, 400);
    assert.match((await json(badMark)).error, /bookmark/);
  });

  test('GET /api/traces/:id and /messages: every host, messages in exact time order; 404 and 400', async () => {
    const t = await store.createTrace({ id: 'msgs', request: { callId: ['call-1@test'] }, user: 'alice', hosts: ['edge-1', 'edge-2'], state: 'done' });
    // One nanosecond apart: as doubles these seconds are equal.
    await store.putResult({ traceId: t.id, host: 'edge-1', state: 'done', messages: [msg('1718188953.000000002', 'ACK'), msg('1718188953.100000000', 'BYE')] });
    await store.putResult({ traceId: t.id, host: 'edge-2', state: 'done', messages: [msg('1718188953.000000001', 'INVITE'), msg('999999999.5', 'OPTIONS')] });
    assert.equal(Number('1718188953.000000002'), Number('1718188953.000000001'));
    const view = await json(await call('/api/traces/msgs', { as: 'vic' }));
    assert.equal(view.trace.id, 'msgs');
    assert.deepEqual(view.trace.hosts.map((h: { host: string }) => h.host), ['edge-1', 'edge-2']);

    const res = await call('/api/traces/msgs/messages', { as: 'vic' });
    assert.equal(res.status, 200);
    const { messages } = await json(res);
    assert.deepEqual(
      messages.map((m: { host: string; method: string }) => `${m.host} ${m.method}`),
      ['edge-2 OPTIONS', 'edge-2 INVITE', 'edge-1 ACK', 'edge-1 BYE'],
    );
    assert.equal(messages[1].ts, '1718188953.000000001');

    assert.equal((await call('/api/traces/nope', { as: 'vic' })).status, 404);
    const missing = await call('/api/traces/nope/messages', { as: 'vic' });
    assert.equal(missing.status, 404);
    assert.match((await json(missing)).error, /no trace nope/);
    const badId = await call('/api/traces/a.b', { as: 'vic' });
    assert.equal(badId.status, 400);
    const badIdBody = await json(badId);
    assert.match(badIdBody.error, /not a trace id/);
    assert.equal(badIdBody.code, 'TF_BAD_TRACE_ID');
  });

  test('downloads: merged and host PCAPs byte-identical with Content-Length; tar holds summary and every PCAP', async () => {
    const merged = randomBytes(700_000);
    const h1 = randomBytes(300_001);
    const h2 = randomBytes(1);
    const t = await store.createTrace({ id: 'dl', request: { callId: ['c'] }, user: 'alice', hosts: ['edge-1', 'edge-2', 'core-1'], state: 'done', createdAt: '2024-06-12T10:42:33Z' });
    await store.putResult({ traceId: t.id, host: 'edge-1', state: 'done', packets: 3, bytes: h1.length, messages: [msg('1718188953.5', 'INVITE')] });
    await store.putResult({ traceId: t.id, host: 'edge-2', state: 'done', packets: 1, bytes: 1 });
    await store.putResult({ traceId: t.id, host: 'core-1', state: 'error', error: 'ring empty' });
    await store.putAttachmentStream(resultDocId('dl', 'edge-1'), HOST_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([h1.subarray(0, 1000), h1.subarray(1000)]));
    await store.putAttachmentStream(resultDocId('dl', 'edge-2'), HOST_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([h2]));
    await store.putAttachmentStream(traceDocId('dl'), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([merged]));

    const m = await call('/api/traces/dl/merged.pcap', { as: 'vic' });
    assert.equal(m.status, 200);
    assert.equal(m.headers.get('content-type'), 'application/vnd.tcpdump.pcap');
    assert.equal(m.headers.get('content-length'), String(merged.length));
    assert.equal(m.headers.get('content-disposition'), 'attachment; filename="trace-dl-callid-c-20240612T1042.pcap"');
    assert.ok(Buffer.from(await m.arrayBuffer()).equals(merged));

    const p = await call('/api/traces/dl/hosts/edge-1/packets.pcap', { as: 'vic' });
    assert.equal(p.status, 200);
    assert.equal(p.headers.get('content-length'), String(h1.length));
    assert.equal(p.headers.get('content-disposition'), 'attachment; filename="trace-dl-callid-c-20240612T1042-edge-1.pcap"');
    assert.ok(Buffer.from(await p.arrayBuffer()).equals(h1));

    // A browser link carries a download token for its one path, never the session.
    assert.equal((await fetch(`${base}/api/traces/dl/hosts/edge-2/packets.pcap?access_token=${encodeURIComponent(tokens.vic)}`)).status, 401, 'the session in a URL is refused');
    const dl = await post('/api/download-token', { path: '/api/traces/dl/hosts/edge-2/packets.pcap' }, 'vic');
    assert.equal(dl.status, 200);
    const linkUrl = (await json(dl)).url as string;
    assert.match(linkUrl, /^\/api\/traces\/dl\/hosts\/edge-2\/packets\.pcap\?dl=td1\./);
    assert.ok(!linkUrl.includes(tokens.vic));
    // A HEAD (a download manager's probe) does not spend the link.
    assert.equal((await fetch(`${base}${linkUrl}`, { method: 'HEAD' })).status, 200);
    const link = await fetch(`${base}${linkUrl}`);
    assert.equal(link.status, 200);
    assert.ok(Buffer.from(await link.arrayBuffer()).equals(h2));
    // One link, one download: the same link again (history, a proxy log, a shared URL) is refused.
    for (const method of ['GET', 'HEAD']) {
      const again = await fetch(`${base}${linkUrl}`, { method });
      assert.equal(again.status, 410, method);
      if (method === 'GET') {
        const body = await json(again);
        assert.equal(body.code, 'TF_DOWNLOAD_LINK_USED');
        assert.match(body.error, /used already.*download again from the page for a new link/);
      }
    }
    // A new link for the same file works once more.
    const fresh = (await json(await post('/api/download-token', { path: '/api/traces/dl/hosts/edge-2/packets.pcap' }, 'vic'))).url as string;
    assert.notEqual(fresh, linkUrl);
    assert.equal((await fetch(`${base}${fresh}`)).status, 200);
    const dlToken = new URL(linkUrl, base).searchParams.get('dl')!;
    assert.equal((await fetch(`${base}/api/traces/dl/merged.pcap?dl=${encodeURIComponent(dlToken)}`)).status, 401, 'a download token opens its own path only');
    assert.equal((await fetch(`${base}/api/traces/dl?dl=${encodeURIComponent(dlToken)}`)).status, 401, 'only downloads take a query token');
    assert.equal((await fetch(`${base}/api/me`, { headers: { authorization: `Bearer ${dlToken}` } })).status, 401, 'a download token is no session');
    const other = await post('/api/download-token', { path: '/api/me' }, 'vic');
    assert.equal(other.status, 400);

    const head = await call('/api/traces/dl/merged.pcap', { as: 'vic', method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(merged.length));

    const errored = await call('/api/traces/dl/hosts/core-1/packets.pcap', { as: 'vic' });
    assert.equal(errored.status, 404);
    assert.match((await json(errored)).error, /stored no packets.*error: ring empty/);
    const notAsked = await call('/api/traces/dl/hosts/edge-9/packets.pcap', { as: 'vic' });
    assert.equal(notAsked.status, 404);
    const notAskedBody = await json(notAsked);
    assert.match(notAskedBody.error, /did not ask host edge-9/);
    assert.equal(notAskedBody.code, 'TF_TRACE_HOST_UNKNOWN');

    const tr = await call('/api/traces/dl/trace.tar', { as: 'vic' });
    assert.equal(tr.status, 200);
    assert.equal(tr.headers.get('content-type'), 'application/x-tar');
    assert.equal(tr.headers.get('content-disposition'), 'attachment; filename="trace-dl-callid-c-20240612T1042.tar"');
    const bytes = Buffer.from(await tr.arrayBuffer());
    const entries = await untar(bytes);
    // core-1 failed and stored nothing, so it has no entry.
    assert.deepEqual([...entries.keys()], ['trace-dl/summary.json', 'trace-dl/merged.pcap', 'trace-dl/hosts/edge-1.pcap', 'trace-dl/hosts/edge-2.pcap']);
    assert.ok(entries.get('trace-dl/merged.pcap')!.data.equals(merged));
    assert.ok(entries.get('trace-dl/hosts/edge-1.pcap')!.data.equals(h1));
    assert.ok(entries.get('trace-dl/hosts/edge-2.pcap')!.data.equals(h2));
    const summary = JSON.parse(entries.get('trace-dl/summary.json')!.data.toString());
    assert.equal(summary.trace.id, 'dl');
    assert.equal(summary.trace.hosts.length, 3);
    assert.deepEqual(summary.messages.map((x: { host: string; method: string }) => `${x.host} ${x.method}`), ['edge-1 INVITE']);

    // And GNU tar reads it the same way.
    const dir = mkdtempSync(join(tmpdir(), 'tracefleet-api-'));
    try {
      writeFileSync(join(dir, 't.tar'), bytes);
      const listing = execFileSync('tar', ['-tvf', join(dir, 't.tar')], { encoding: 'utf8' });
      assert.match(listing, new RegExp(`\\s${merged.length}\\s.*trace-dl/merged\\.pcap`));
      assert.match(listing, new RegExp(`\\s${h1.length}\\s.*trace-dl/hosts/edge-1\\.pcap`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('downloads of a running trace: 404 saying it is not ready yet; unknown traces 404', async () => {
    const t = await store.createTrace({ id: 'busy', request: { callId: ['c'] }, user: 'alice', hosts: ['edge-1'] });
    await store.putResult({ traceId: t.id, host: 'edge-1', state: 'started' });
    const m = await call('/api/traces/busy/merged.pcap', { as: 'vic' });
    assert.equal(m.status, 404);
    const mBody = await json(m);
    assert.match(mBody.error, /not ready yet/);
    assert.equal(mBody.code, 'TF_PACKETS_NOT_READY', 'not ready is told from no packets: a client waits for one, gives up on the other');
    const h = await call('/api/traces/busy/hosts/edge-1/packets.pcap', { as: 'vic' });
    assert.equal(h.status, 404);
    const hBody = await json(h);
    assert.match(hBody.error, /not ready yet \(started\)/);
    assert.equal(hBody.code, 'TF_PACKETS_NOT_READY');
    const done = await store.createTrace({ id: 'empty', request: { callId: ['c'] }, user: 'alice', hosts: ['edge-1'], state: 'failed' });
    const e = await call(`/api/traces/${done.id}/merged.pcap`, { as: 'vic' });
    assert.equal(e.status, 404);
    const eBody = await json(e);
    assert.match(eBody.error, /has no merged\.pcap/);
    assert.equal(eBody.code, 'TF_NO_PACKETS');
    for (const path of ['/api/traces/ghost/merged.pcap', '/api/traces/ghost/hosts/edge-1/packets.pcap', '/api/traces/ghost/trace.tar']) {
      const r = await call(path, { as: 'vic' });
      assert.equal(r.status, 404, path);
      assert.match((await json(r)).error, /no trace ghost/, path);
    }
    // A tar of a running trace holds what is there so far: its summary.
    const tr = await call('/api/traces/busy/trace.tar', { as: 'vic' });
    assert.equal(tr.status, 200);
    const entries = await untar(Buffer.from(await tr.arrayBuffer()));
    assert.deepEqual([...entries.keys()], ['trace-busy/summary.json']);
    assert.equal(JSON.parse(entries.get('trace-busy/summary.json')!.data.toString()).trace.state, 'running');
  });

  test('cancel and delete: by role and owner; running traces cannot be deleted', async () => {
    // mute-1 never answers, so the trace stays running until cancelled (or runAckMs, 8 s, passes).
    const started = await post('/api/traces', { callId: ['c@x'], hosts: ['mute-1'] }, 'alice');
    assert.equal(started.status, 201);
    const { trace } = await json(started);
    assert.equal((await call(`/api/traces/${trace.id}/cancel`, { method: 'POST', as: 'vic' })).status, 403);
    const running = await call(`/api/traces/${trace.id}`, { method: 'DELETE', as: 'alice' });
    assert.equal(running.status, 409);
    const runningBody = await json(running);
    assert.match(runningBody.error, /cancel it first/);
    assert.equal(runningBody.code, 'TF_TRACE_RUNNING');

    // Another tracer may not cancel alice's trace, as they may not delete it.
    const byOtherTracer = await call(`/api/traces/${trace.id}/cancel`, { method: 'POST', as: 'bob' });
    assert.equal(byOtherTracer.status, 403);
    assert.match((await json(byOtherTracer)).error, /belongs to alice: only its owner \(with the tracer role\) or an admin may cancel it/);
    const c = await call(`/api/traces/${trace.id}/cancel`, { method: 'POST', as: 'alice' });
    assert.equal(c.status, 200);
    assert.equal((await json(c)).trace.id, trace.id);
    await until(async () => (await json(await call(`/api/traces/${trace.id}`, { as: 'vic' }))).trace.state === 'cancelled', 'the trace to end cancelled');
    const again = await call(`/api/traces/${trace.id}/cancel`, { method: 'POST', as: 'root' });
    assert.equal(again.status, 409);
    assert.match((await json(again)).error, /already cancelled/);
    assert.equal((await call('/api/traces/ghost/cancel', { method: 'POST', as: 'alice' })).status, 404);

    const byViewer = await call(`/api/traces/${trace.id}`, { method: 'DELETE', as: 'vic' });
    assert.equal(byViewer.status, 403);
    const byOther = await call(`/api/traces/${trace.id}`, { method: 'DELETE', as: 'bob' });
    assert.equal(byOther.status, 403);
    assert.match((await json(byOther)).error, /only its owner/);
    const byOwner = await call(`/api/traces/${trace.id}`, { method: 'DELETE', as: 'alice' });
    assert.equal(byOwner.status, 204);
    assert.equal(await byOwner.text(), '');
    assert.equal((await call(`/api/traces/${trace.id}`, { as: 'alice' })).status, 404);
    assert.equal(await store.getTrace(trace.id), null);
    assert.deepEqual(await store.listResults(trace.id), []);

    const other = await store.createTrace({ id: 'bobs', request: {}, user: 'bob', hosts: [], state: 'done' });
    assert.equal((await call(`/api/traces/${other.id}`, { method: 'DELETE', as: 'root' })).status, 204);
    assert.equal((await call(`/api/traces/${other.id}`, { method: 'DELETE', as: 'root' })).status, 404);
  });

  test('agents, unknown routes, and an internal failure answered in JSON without harming the server', async () => {
    const a = await json(await call('/api/agents', { as: 'vic' }));
    assert.deepEqual(
      a.agents.map((x: AgentView) => [x.name, x.connected]),
      [
        ['core-1', false],
        ['edge-1', true],
        ['edge-2', true],
        ['mute-1', true],
      ],
    );
    const nothing = await call('/api/nothing-here', { as: 'vic' });
    assert.equal(nothing.status, 404);
    const nothingBody = await json(nothing);
    assert.match(nothingBody.error, /no route GET \/api\/nothing-here/);
    assert.equal(nothingBody.code, 'TF_NO_ROUTE');
    const wrongMethod = await call('/api/agents', { method: 'PUT', as: 'vic' });
    assert.equal(wrongMethod.status, 404);
    assert.ok((await json(wrongMethod)).error);
    const page = await call('/index.html');
    assert.equal(page.status, 404);
    assert.ok((await json(page)).error);

    // A trace machinery that fails inside: the failure is the dispatcher's (500), logged, and the next request is served.
    const log = memoryLogger();
    const m2 = new Metrics();
    const broken: Traces = {
      start: (r, u) => traces.start(r, u),
      cancel: (id) => traces.cancel(id),
      view: (id) => traces.view(id),
      agents: async () => {
        throw new Error('registry exploded');
      },
      onUpdate: (l) => traces.onUpdate(l),
    };
    const s2 = createServer(createApi({ store, traces: broken, auth, metrics: m2, logger: log.logger }));
    const url = await listen(s2);
    try {
      const boom = await fetch(`${url}/api/agents`, { headers: { authorization: `Bearer ${tokens.vic}` } });
      assert.equal(boom.status, 500);
      assert.match((await json(boom)).error, /the dispatcher failed: registry exploded/);
      assert.ok(log.records.some((r) => r.msg === 'request failed' && r.method === 'GET' && r.path === '/api/agents' && (r.err as { message?: string })?.message === 'registry exploded'), log.lines.join(''));
      assert.equal((await fetch(`${url}/api/me`, { headers: { authorization: `Bearer ${tokens.vic}` } })).status, 200, 'still serving');
      assert.match(await m2.render(), /^tracefleet_errors_total\{kind="api"\} 1$/m);
    } finally {
      await close(s2);
    }
  });

  test('/healthz: the store and agents, no credentials', async () => {
    const res = await call('/healthz');
    assert.equal(res.status, 200);
    const body = await json(res);
    assert.equal(body.ok, true);
    assert.equal(body.store, 'ok');
    assert.deepEqual(body.agents, { connected: 3, known: 4 });
  });

  test('/metrics: Prometheus text with the dispatcher counters, every line parses', async () => {
    metrics.tracesStarted.inc();
    const res = await call('/metrics');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const { values, types } = parseExposition(await res.text());
    const st = traces.metrics;
    const started = await metricValue(st.tracesStarted);
    const bytesStored = await metricValue(st.bytesStored);
    const chunks = await metricValue(st.chunksReceived);
    assert.equal(values.get('tracefleet_agents_connected'), 3);
    assert.equal(values.get('tracefleet_traces_started_total'), started, "one counter: the orchestrator's, +1 counted here");
    assert.ok(started >= 3);
    assert.ok((values.get('tracefleet_traces_finished_total{state="done"}') ?? 0) >= 1);
    assert.ok((values.get('tracefleet_trace_hosts_total{state="done"}') ?? 0) >= 2);
    assert.equal(values.get('tracefleet_bytes_stored_total'), bytesStored);
    assert.ok(bytesStored > 0);
    assert.equal(values.get('tracefleet_chunks_received_total'), chunks);
    assert.ok(chunks > 0);
    assert.equal(values.get('tracefleet_store_conflict_retries_total'), await metricValue(store.metrics.conflictRetries));
    assert.equal(values.get('tracefleet_store_up'), 1);
    assert.ok((values.get('process_resident_memory_bytes') ?? 0) > 1e6);
    assert.ok((values.get('tracefleet_http_requests_total{code="200"}') ?? 0) > 0);
    assert.equal(types.get('tracefleet_agents_connected'), 'gauge');
    assert.equal(types.get('tracefleet_traces_started_total'), 'counter');
  });

  test('with the store unreachable: /healthz 503, the API 503 with the reason, store_up 0; back when it returns', async () => {
    const relay = await startRelay(couch.url);
    const far = await TraceStore.open({ url: relay.url, db: store.dbName });
    const m2 = new Metrics({ store: far, storeTimeoutMs: 1000 });
    const s2 = createServer(createApi({ store: far, traces, auth, metrics: m2, logger: silentLogger }));
    const url = await listen(s2);
    try {
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      await relay.stop();
      const h = await fetch(`${url}/healthz`);
      assert.equal(h.status, 503);
      const body = await json(h);
      assert.equal(body.ok, false);
      assert.match(body.error, /^the store does not answer/);
      assert.equal(body.code, 'TF_STORE_UNREACHABLE');
      assert.ok(!JSON.stringify(body).includes(new URL(relay.url).port), 'nothing of the store\'s address');
      const list = await fetch(`${url}/api/traces`, { headers: { authorization: `Bearer ${tokens.vic}` } });
      assert.equal(list.status, 503);
      assert.match((await json(list)).error, /the CouchDB store at .* is unreachable/);
      assert.match(await (await fetch(`${url}/metrics`)).text(), /^tracefleet_store_up 0$/m);
    } finally {
      await close(s2);
      await relay.stop();
    }
  });

  test('a download cut off by the store going away ends short, and the server goes on', async () => {
    const big = randomBytes(24 * 1024 * 1024);
    const t = await store.createTrace({ id: 'cut', request: {}, user: 'alice', hosts: [], state: 'done' });
    await store.putAttachmentStream(traceDocId(t.id), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, Readable.from([big]));
    for (const path of ['/api/traces/cut/merged.pcap', '/api/traces/cut/trace.tar']) {
      const relay = await startRelay(couch.url);
      const far = await TraceStore.open({ url: relay.url, db: store.dbName });
      const log = memoryLogger();
      const s2 = createServer(createApi({ store: far, traces, auth, metrics: new Metrics(), logger: log.logger }));
      const url = await listen(s2);
      try {
        const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${tokens.vic}` } });
        assert.equal(res.status, 200, path);
        const reader = res.body!.getReader();
        const first = await reader.read();
        assert.ok(first.value && first.value.length > 0);
        await relay.stop();
        let got = first.value.length;
        let failed = false;
        try {
          for (let i = 0; i < 100_000; i++) {
            const r = await reader.read();
            if (r.done) break;
            got += r.value.length;
          }
        } catch {
          failed = true;
        }
        assert.ok(failed && got < big.length, `${path}: the client must see a broken download (got ${got} of ${big.length}, failed: ${failed})`);
        assert.ok(log.records.some((r) => /broke off/.test(r.msg) && r.level === 40), `${path}: logged: ${log.lines.join('')}`);
        const again = await fetch(`${url}/api/me`, { headers: { authorization: `Bearer ${tokens.vic}` } });
        assert.equal(again.status, 200, 'the server still answers');
      } finally {
        await close(s2);
        await relay.stop();
      }
    }
  });

  test('staticDir: the web page at /, the API still JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tracefleet-web-'));
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>tracefleet</title>');
    const s2 = createServer(createApi({ store, traces, auth, metrics: new Metrics(), staticDir: dir, logger: silentLogger }));
    const url = await listen(s2);
    try {
      const page = await fetch(`${url}/`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /text\/html/);
      assert.equal(await page.text(), '<!doctype html><title>tracefleet</title>');
      const missing = await fetch(`${url}/app.js`);
      assert.equal(missing.status, 404);
      assert.match((await json(missing)).error, /nothing at GET \/app\.js/);
      assert.equal((await fetch(`${url}/api/me`)).status, 401);
    } finally {
      await close(s2);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
