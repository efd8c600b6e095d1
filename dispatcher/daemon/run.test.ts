import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket as ClientSocket } from 'socket.io-client';
import type { TraceView } from '../../shared/protocol/client';
import { MERGED_ATTACHMENT } from '../store/layout';
import { closedPort, startTestCouch, TestCouch } from '../../test/support/couch';
import { CALL, makeTestRings, PROXY, startTestAgent, TestAgent, TestHost, until } from '../../test/support/trace';
import { startDispatcher } from './run';
import { AGENT_TOKEN, ask, connectClient, refusal, startTestDispatcher, TestDispatcher, TraceAck, TRACER, TestUser, UpdateLog, VIEWER } from '../../test/support/dispatcher';
import { silentLogger } from '../../shared/log/log';

const BULK_A = 600;

let dir = '';
let couch: TestCouch;
let rings: Record<TestHost, string>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tf-daemon-'));
  couch = await startTestCouch();
  rings = await makeTestRings(dir, { bulk: { a: BULK_A } });
});

after(async () => {
  await couch?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function withAgents(d: TestDispatcher, hosts: TestHost[], ca?: string): Promise<TestAgent[]> {
  const agents = hosts.map((h) => startTestAgent({ url: d.url, token: AGENT_TOKEN, name: h, ringDir: rings[h], ca }));
  await until(async () => (await d.orchestrator.agents()).filter((a) => a.connected && a.hostname !== null).length === hosts.length, `agents ${hosts.join(', ')} connected`);
  return agents;
}

const basic = (u: Pick<TestUser, 'name' | 'password'>) => `Basic ${Buffer.from(`${u.name}:${u.password}`).toString('base64')}`;

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: { error?: string; trace?: TraceView }; headers: Headers }> {
  const res = await fetch(`${url}/api/traces`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic(TRACER), ...headers }, body });
  return { status: res.status, body: (await res.json()) as { error?: string; trace?: TraceView }, headers: res.headers };
}

test('REST: malformed or wrong-shape trace requests are 400 with a clear error, a viewer gets 403, a bad password 401; /healthz answers', async () => {
  const d = await startTestDispatcher(couch.url);
  const agents = await withAgents(d, ['a', 'b']);
  try {
    const bad: Array<[string, RegExp]> = [
      ['{"ip": [', /^the request body is not valid JSON \(.+\): send a JSON object with Content-Type: application\/json$/],
      ['"a string"', /^the request body is not valid JSON/],
      ['[]', /^bad trace request: body: Expected object, received array/],
      ['{"ip": "192.0.2.1"}', /^bad trace request: ip: Expected array, received string/],
      [`{"callId": ["${CALL}"], "bogus": 1}`, /^bad trace request: body: Unrecognized key\(s\) in object: 'bogus'/],
      [`{"callId": ["${CALL}"], "hosts": "a"}`, /^bad trace request: hosts: Expected array/],
      [`{"callId": ["${CALL}"], "maxPackets": -5}`, /^bad trace request: maxPackets: Number must be greater than 0/],
      [`{"callId": ["${'x'.repeat(5000)}"]}`, /^bad trace request: callId.0: String must contain at most 1024/],
      ['{"rtp": true}', /no selective key/],
      [`{"callId": ["${CALL}"], "hosts": ["nosuch"]}`, /^unknown host nosuch: no agent of that name has connected; known agents: a, b$/],
    ];
    for (const [body, error] of bad) {
      const r = await post(d.url, body);
      assert.equal(r.status, 400, `${body.slice(0, 60)}: ${r.body.error}`);
      assert.match(r.body.error ?? '', error, body.slice(0, 60));
    }
    const plain = await post(d.url, `{"callId": ["${CALL}"]}`, { 'content-type': 'text/plain' });
    assert.equal(plain.status, 400);
    assert.match(plain.body.error ?? '', /send the request body as JSON with the header Content-Type: application\/json/);
    const big = await post(d.url, JSON.stringify({ callId: [CALL], pad: 'x'.repeat(100 * 1024) }));
    assert.equal(big.status, 413);
    assert.match(big.body.error ?? '', /larger than the 64 KiB allowed/);

    const viewer = await post(d.url, `{"callId": ["${CALL}"]}`, { authorization: basic(VIEWER) });
    assert.equal(viewer.status, 403);
    assert.match(viewer.body.error ?? '', /^user vera \(roles: viewer\) may not start traces: that needs the tracer or admin role; ask an admin$/);
    const wrong = await post(d.url, `{"callId": ["${CALL}"]}`, { authorization: basic({ name: TRACER.name, password: 'not-the-password' }) });
    assert.equal(wrong.status, 401);
    assert.match(wrong.body.error ?? '', /^unknown user, wrong password, or unknown\/expired token/);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /^Basic realm="tracefleet"/);
    const none = await fetch(`${d.url}/api/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(none.status, 401);
    assert.match(((await none.json()) as { error: string }).error, /^log in first/);
    assert.equal((await d.store.store.listTraces()).traces.length, 0, 'nothing refused was started');

    const ok = await post(d.url, JSON.stringify({ ip: [PROXY] }));
    assert.equal(ok.status, 201, ok.body.error);
    const id = ok.body.trace!.id;
    assert.equal(ok.headers.get('location'), `/api/traces/${id}`);
    await until(async () => (await d.store.store.getTrace(id))?.state === 'done', 'the REST trace to finish');
    const view = (await (await fetch(`${d.url}/api/traces/${id}`, { headers: { authorization: basic(VIEWER) } })).json()) as { trace: TraceView };
    assert.deepEqual(view.trace.merged, { packets: 3 + BULK_A + 2, bytes: view.trace.merged!.bytes, duplicates: 0 });

    const health = await fetch(`${d.url}/healthz`);
    assert.equal(health.status, 200);
    const h = (await health.json()) as { ok: boolean; store: string; agents: { connected: number; known: number } };
    assert.equal(h.ok, true);
    assert.equal(h.store, 'ok');
    assert.deepEqual(h.agents, { connected: 2, known: 2 });
  } finally {
    for (const a of agents) a.close();
    await d.stop();
  }
});

test('startDispatcher refuses a port in use and unreadable TLS files with a clear error, leaving nothing open', async () => {
  const d = await startTestDispatcher(couch.url);
  try {
    const port = Number(new URL(d.url).port);
    const dataDir = mkdtempSync(join(dir, 'second-'));
    await assert.rejects(startDispatcher({ host: '127.0.0.1', port, dataDir, couchdbUrl: couch.url, db: d.db, agentTokens: [{ token: AGENT_TOKEN }], logger: silentLogger }), /EADDRINUSE/);
    await assert.rejects(
      startDispatcher({ host: '127.0.0.1', port: await closedPort(), dataDir, couchdbUrl: couch.url, db: d.db, agentTokens: [{ token: AGENT_TOKEN }], tls: { cert: join(dir, 'none.pem'), key: join(dir, 'none.key') }, logger: silentLogger }),
      /none\.pem/,
    );
    assert.equal((await fetch(`${d.url}/healthz`)).status, 200, 'the first dispatcher is unharmed');
  } finally {
    await d.stop();
  }
});

/** A self-signed certificate for 127.0.0.1 (openssl), and its key, in a temp dir. */
function selfSigned(): { cert: string; key: string; pem: string } {
  const tls = mkdtempSync(join(dir, 'tls-'));
  const cert = join(tls, 'cert.pem');
  const key = join(tls, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '2', '-keyout', key, '-out', cert], { stdio: 'pipe' });
  return { cert, key, pem: readFileSync(cert, 'utf8') };
}

function httpsGet(url: string, ca: string | undefined, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, headers, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 10 s`)));
    req.end();
  });
}

test('HTTPS: agents and clients that trust the CA connect over WSS and a trace works; REST over https; without the CA nobody connects', async () => {
  const tls = selfSigned();
  const d = await startTestDispatcher(couch.url, { tls: { cert: tls.cert, key: tls.key } });
  let agents: TestAgent[] = [];
  let client: ClientSocket | null = null;
  try {
    assert.match(d.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    // Not trusting the certificate: refused by the agent's own TLS check, before any token is sent.
    assert.match(await refusal(d.url, '/agent', { token: AGENT_TOKEN, name: 'a' }, { transports: ['websocket'] }), /self[- ]signed certificate|websocket error/);
    await assert.rejects(fetch(`${d.url}/healthz`), 'fetch without the CA fails');

    agents = await withAgents(d, ['a', 'b'], tls.pem);
    // Agents start on polling and upgrade once the probe succeeds, which can come after the connect.
    for (const a of agents) await until(() => a.link.socket.io.engine.transport.name === 'websocket', `agent ${a.name} to upgrade to WSS`, 10_000);
    const health = await httpsGet(`${d.url}/healthz`, tls.pem);
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.body).agents, { connected: 2, known: 2 });
    const me = await httpsGet(`${d.url}/api/me`, tls.pem, { authorization: basic(TRACER) });
    assert.deepEqual(JSON.parse(me.body), { user: TRACER.name, roles: ['tracer'] });

    client = await connectClient(d.url, { user: TRACER.name, password: TRACER.password }, { ca: tls.pem, transports: ['websocket'] });
    const log = new UpdateLog(client);
    const started = (await ask(client, 'trace:start', { ip: [PROXY] })) as TraceAck;
    assert.ok(started.ok, JSON.stringify(started));
    await until(() => log.final(started.trace.id) !== undefined, 'the trace over WSS to finish');
    const final = log.final(started.trace.id)!;
    assert.equal(final.state, 'done');
    assert.equal(final.merged?.packets, 3 + BULK_A + 2);
    assert.ok((await d.store.store.getTrace(started.trace.id))?._attachments?.[MERGED_ATTACHMENT]);
  } finally {
    client?.close();
    for (const a of agents) a.close();
    await d.stop();
  }
});
