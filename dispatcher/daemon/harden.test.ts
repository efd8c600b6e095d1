/*
 * The dispatcher under attack (issue 14), loopback only: a login flood, a
 * proxy's clients locking each other out, a forged session, the default
 * Socket.IO namespace, what /healthz tells.
 */

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { SessionKeys } from '../auth/session';
import { startTestCouch, TestCouch } from '../../test/support/couch';
import { CALL, makeTestRings, startTestAgent, TestAgent, TestHost, until } from '../../test/support/trace';
import { ADMIN, AGENT_TOKEN, startTestDispatcher, TestDispatcher, TRACER } from '../../test/support/dispatcher';
import { LOGIN_MAX_DELAY_MS } from '../auth/ratelimit';

let dir = '';
let couch: TestCouch;
let rings: Record<TestHost, string>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tf-harden-'));
  couch = await startTestCouch();
  rings = await makeTestRings(dir, { bulk: { a: 4000, b: 4000 } });
});

after(async () => {
  await couch?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function withAgents(d: TestDispatcher, hosts: TestHost[]): Promise<TestAgent[]> {
  const agents = hosts.map((h) => startTestAgent({ url: d.url, token: AGENT_TOKEN, name: h, ringDir: rings[h] }));
  await until(async () => (await d.orchestrator.agents()).filter((a) => a.connected && a.hostname !== null).length === hosts.length, `agents ${hosts.join(', ')} connected`);
  return agents;
}

async function login(url: string, user: string, password: string, xff?: string): Promise<{ status: number; body: { token?: string; error?: string } }> {
  const res = await fetch(`${url}/api/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(xff ? { 'x-forwarded-for': xff } : {}) },
    body: JSON.stringify({ user, password }),
  });
  return { status: res.status, body: (await res.json()) as { token?: string; error?: string } };
}

/** Milliseconds from POST /api/traces to the trace's done state. */
async function timedTrace(d: TestDispatcher, session: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${d.url}/api/traces`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${session}` },
    body: JSON.stringify({ all: true, hosts: ['a', 'b'] }),
  });
  const body = (await res.json()) as { trace?: { id: string }; error?: string };
  assert.equal(res.status, 201, body.error);
  await until(async () => (await d.store.store.getTrace(body.trace!.id))?.state === 'done', 'the trace to finish', 120_000);
  return performance.now() - t0;
}

test('a login flood with made-up names leaves a concurrent trace within 2x its unloaded time; refusals are 429 and clear', { timeout: 300_000 }, async () => {
  const d = await startTestDispatcher(couch.url);
  const agents = await withAgents(d, ['a', 'b']);
  try {
    const session = (await login(d.url, TRACER.name, TRACER.password)).body.token!;
    await timedTrace(d, session); // warm-up: first-use costs out of the measure
    const unloaded = Math.min(await timedTrace(d, session), await timedTrace(d, session));

    // 120 logins, 16 at a time, each a different made-up name; bounded in count and time.
    const statuses: number[] = [];
    const errors = new Set<string>();
    let sent = 0;
    const deadline = Date.now() + 120_000;
    const flooder = async () => {
      while (sent < 120 && Date.now() < deadline) {
        const n = sent++;
        const r = await login(d.url, `nobody${n}`, `wrong-password-${n}`);
        statuses.push(r.status);
        if (r.status === 429) errors.add(r.body.error ?? '');
      }
    };
    const flood = Promise.all(Array.from({ length: 16 }, flooder));
    await new Promise((r) => setTimeout(r, 100));
    const loaded = await timedTrace(d, session);
    await flood;
    process.stderr.write(`# login flood: trace unloaded ${unloaded.toFixed(0)} ms, under flood ${loaded.toFixed(0)} ms; flood answers ${JSON.stringify(countOf(statuses))}\n`);
    assert.equal(statuses.length, 120);
    assert.ok(statuses.every((s) => s === 401 || s === 429), JSON.stringify(countOf(statuses)));
    assert.ok(statuses.includes(429), 'the flood is refused past its limits');
    for (const e of errors) assert.match(e, /too many failed logins from|checking \d+ passwords already/);
    assert.ok(loaded <= 2 * unloaded, `the trace took ${loaded.toFixed(0)} ms under the flood, ${unloaded.toFixed(0)} ms without: more than 2x`);
    // The right password from another client still works (the per-address limit is that address's).
    assert.equal((await login(d.url, TRACER.name, TRACER.password)).status, 429, 'the flooding address itself is held off');
  } finally {
    for (const a of agents) a.close();
    await d.stop();
  }
});

function countOf(xs: number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

test('--trust-proxy: one client behind the proxy failing does not lock out another; failures and lockouts are logged', async () => {
  const d = await startTestDispatcher(couch.url, { trustProxy: ['loopback'] });
  try {
    for (let i = 0; i < 10; i++) assert.equal((await login(d.url, TRACER.name, 'not-the-password', '198.51.100.1')).status, 401);
    const locked = await login(d.url, TRACER.name, TRACER.password, '198.51.100.1');
    assert.equal(locked.status, 429);
    assert.match(locked.body.error ?? '', /too many failed logins for "tom" from 198\.51\.100\.1/);
    assert.equal((await login(d.url, TRACER.name, TRACER.password, '198.51.100.2')).status, 200, 'another client behind the proxy logs in');
    const refusals = d.log.records.filter((r) => r.msg === 'refused REST client' && r.component === 'dispatcher.api' && r.user === 'tom' && r.addr === '198.51.100.1');
    assert.ok(refusals.some((r) => r.reason === 'bad credentials'), JSON.stringify(d.log.records));
    assert.ok(refusals.some((r) => r.code === 'TF_LOGIN_RATE_LIMITED' && /too many failed logins/.test(String(r.reason))), JSON.stringify(d.log.records));
  } finally {
    await d.stop();
  }
  // Without --trust-proxy a client's X-Forwarded-For is not believed: it cannot dodge its own lockout.
  const plain = await startTestDispatcher(couch.url);
  try {
    for (let i = 0; i < 10; i++) await login(plain.url, TRACER.name, 'not-the-password', `198.51.100.${i + 10}`);
    assert.equal((await login(plain.url, TRACER.name, TRACER.password, '198.51.100.99')).status, 429);
  } finally {
    await plain.stop();
  }
});

test('wrong passwords for one user from many addresses slow further guesses at that user from any address; the right one still logs in within the short maximum', { timeout: 120_000 }, async () => {
  const d = await startTestDispatcher(couch.url, { trustProxy: ['loopback'] });
  const timed = async (user: string, password: string, xff: string) => {
    const t0 = performance.now();
    const r = await login(d.url, user, password, xff);
    return { status: r.status, ms: performance.now() - t0 };
  };
  try {
    // What a login costs here without any delay (scrypt on a loaded machine), from fresh addresses.
    const plain = Math.max((await timed(ADMIN.name, ADMIN.password, '203.0.113.1')).ms, (await timed(ADMIN.name, 'not-the-password', '203.0.113.2')).ms);
    // Eight wrong passwords for tom, two from each of four addresses: far below each address's own limits.
    for (let i = 0; i < 8; i++) assert.equal((await timed(TRACER.name, `guess-${i}`, `198.51.100.${20 + (i % 4)}`)).status, 401);
    // A ninth guess from an address never seen waits: tom's failures from anywhere count.
    const guess = await timed(TRACER.name, 'guess-9', '198.51.100.30');
    assert.equal(guess.status, 401);
    assert.ok(guess.ms >= 1900, `a further guess at tom took ${guess.ms.toFixed(0)} ms (a plain login ${plain.toFixed(0)} ms): not slowed`);
    // The right password from a fresh address: a short delay, never a lockout.
    const right = await timed(TRACER.name, TRACER.password, '198.51.100.31');
    assert.equal(right.status, 200);
    assert.ok(right.ms <= LOGIN_MAX_DELAY_MS + plain + 1000, `tom's right password took ${right.ms.toFixed(0)} ms: more than the ${LOGIN_MAX_DELAY_MS} ms most plus a login`);
    // Another user is not slowed by tom's failures.
    const other = await timed(ADMIN.name, ADMIN.password, '198.51.100.32');
    assert.equal(other.status, 200);
    assert.ok(other.ms + 1000 < right.ms, `ada's login took ${other.ms.toFixed(0)} ms, tom's ${right.ms.toFixed(0)} ms: ada was slowed by tom's failures`);
    process.stderr.write(`# per-user delay: plain login ${plain.toFixed(0)} ms, 9th guess ${guess.ms.toFixed(0)} ms, right password ${right.ms.toFixed(0)} ms, other user ${other.ms.toFixed(0)} ms\n`);
  } finally {
    await d.stop();
  }
});

test('a session forged with a far-future expiry is refused, even well signed', async () => {
  const d = await startTestDispatcher(couch.url);
  try {
    const keys = await SessionKeys.load(d.store.store);
    const user = (await d.store.store.getUser(TRACER.name))!;
    const claims = { u: user.name, v: keys.passwordStamp(user.passwordHash) };
    const me = (token: string) => fetch(`${d.url}/api/me`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await me(keys.sign({ ...claims, exp: Date.now() + 3600_000 }))).status, 200, 'a session within the lifetime is good');
    assert.equal((await me(keys.sign({ ...claims, exp: Date.now() + 10 * 365 * 86400_000 }))).status, 401);
    assert.equal((await me(keys.sign({ ...claims, exp: Date.now() + d.auth.sessionTtlMs + 3600_000 }))).status, 401);
  } finally {
    await d.stop();
  }
});

test('the default Socket.IO namespace refuses every connection', async () => {
  const d = await startTestDispatcher(couch.url);
  try {
    const s = io(`${d.url}/`, { forceNew: true, reconnection: false, timeout: 5000, transports: ['websocket'] });
    const outcome = await new Promise<string>((resolve) => {
      s.once('connect', () => resolve('connected'));
      s.once('connect_error', (e: Error) => resolve(`refused: ${e.message}`));
    });
    s.close();
    assert.match(outcome, /^refused: nothing is served on the default namespace/);
  } finally {
    await d.stop();
  }
});

test('/healthz tells nothing of the store\'s address, and turns unhealthy after the event loop stalls', async () => {
  const d = await startTestDispatcher(couch.url);
  try {
    const storeHost = new URL(couch.url);
    const text = await (await fetch(`${d.url}/healthz`)).text();
    assert.ok(!text.includes(storeHost.host) && !text.includes(`:${storeHost.port}`) && !/couch|store"\s*:\s*\{/i.test(text), text);
    const ok = JSON.parse(text) as { ok: boolean };
    assert.equal(ok.ok, true);
    // A stall of 1.5 s on this (the dispatcher's) event loop.
    const end = Date.now() + 1500;
    while (Date.now() < end) {
      /* holding the loop, as a CPU-bound handler would */
    }
    const res = await fetch(`${d.url}/healthz`);
    const body = (await res.json()) as { ok: boolean; problems?: string[] };
    assert.equal(res.status, 503);
    assert.equal(body.ok, false);
    assert.match((body.problems ?? []).join('\n'), /event loop was held up for \d+ ms/);
  } finally {
    await d.stop();
  }
});
