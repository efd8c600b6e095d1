import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { io as ioClient, Socket } from 'socket.io-client';
import { connectDispatcher, DispatcherLink } from '../../agent/link/client';
import type { AgentStatus } from '../../shared/protocol/agent';
import { startFleet } from './server';
import { silentLogger } from '../../shared/log/log';
import { memoryLogger, type MemoryLog } from '../../test/support/log';

const TOKENS = [{ token: 'shared-secret' }, { token: 'edge1-secret', agent: 'edge1' }];

async function waitFor<T>(what: string, f: () => T | undefined | null | false, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function status(packets = 0): AgentStatus {
  return {
    ring: { oldest: '2026-01-01T00:00:00.000Z', newest: '2026-01-01T01:00:00.000Z', bytes: 1000 + packets, segments: 2 },
    capture: { lo: { packets, dropped: 0, ifDropped: 0, running: true } },
    indexErrors: 0,
  };
}

function link(url: string, name: string, token: string, log: MemoryLog = memoryLogger(), packets = () => 0): DispatcherLink {
  return connectDispatcher({
    url,
    token,
    name,
    hello: () => ({ version: '0.1.0', hostname: `host-${name}`, interfaces: ['lo'], ...status(packets()) }),
    status: () => status(packets()),
    logger: log.logger,
  });
}

function rawClient(url: string, auth: unknown): Socket {
  return ioClient(`${url}/agent`, { auth: auth as object, forceNew: true, reconnection: false, transports: ['websocket'] });
}

test('an agent with a good token is listed with its hello data; heartbeats update it', { timeout: 15_000 }, async () => {
  const logs = memoryLogger();
  const fleet = await startFleet({ tokens: TOKENS, logger: logs.logger });
  let n = 7;
  const a = link(fleet.url, 'edge1', 'edge1-secret', undefined, () => n);
  try {
    const e = await waitFor('hello', () => fleet.registry.list().find((x) => x.name === 'edge1' && x.hostname));
    assert.equal(e.connected, true);
    assert.equal(e.hostname, 'host-edge1');
    assert.equal(e.version, '0.1.0');
    assert.deepEqual(e.interfaces, ['lo']);
    assert.deepEqual(e.capture, { lo: { packets: 7, dropped: 0, ifDropped: 0, running: true } });
    assert.equal(e.ring?.segments, 2);
    n = 42;
    const seen = e.lastSeen;
    const h = await waitFor('a heartbeat', () => {
      const x = fleet.registry.get('edge1');
      return x && x.lastSeen > seen && x.capture.lo?.packets === 42 ? x : null;
    }, 9000);
    assert.equal(h.ring?.bytes, 1042);
    assert.ok(logs.records.some((r) => r.msg === 'agent connected' && r.agent === 'edge1' && /127\.0\.0\.1/.test(String(r.addr))));
  } finally {
    a.close();
    await fleet.close();
  }
});

test('an unknown token is refused, logged without the token, and leaves the registry unchanged', { timeout: 10_000 }, async () => {
  const logs = memoryLogger();
  const fleet = await startFleet({ tokens: TOKENS, logger: logs.logger });
  try {
    for (const auth of [
      { token: 'wrong-secret', name: 'edge9' },
      { token: 'edge1-secret', name: 'edge2' }, // a per-agent token under another name
      { token: '', name: 'edge3' },
      { name: 'edge4' }, // no token at all
    ]) {
      const c = rawClient(fleet.url, auth);
      const err = await new Promise<Error>((resolve, reject) => {
        c.once('connect_error', resolve);
        c.once('connect', () => reject(new Error('connected with a bad token')));
      });
      c.close();
      assert.match(err.message, /^unauthorized: unknown token/);
    }
    assert.deepEqual(fleet.registry.list(), []);
    assert.ok(logs.records.some((r) => r.msg === 'refused agent' && r.agent === '"edge9"' && /127\.0\.0\.1/.test(String(r.addr)) && r.reason === 'unknown token'), logs.lines.join(''));
    assert.ok(!logs.lines.some((l) => l.includes('wrong-secret') || l.includes('edge1-secret')));

    // The agent's link logs a refusal once and keeps retrying.
    const agentLogs = memoryLogger();
    const a = link(fleet.url, 'edge9', 'wrong-secret', agentLogs);
    await waitFor('retries', () => logs.records.filter((r) => r.msg === 'refused agent' && r.agent === '"edge9"').length >= 3, 6000);
    a.close();
    assert.equal(agentLogs.records.filter((r) => /refused this agent/.test(r.msg) && r.reason === 'unauthorized: unknown token' && r.level === 50).length, 1, agentLogs.lines.join(''));
    assert.ok(logs.records.filter((r) => r.msg === 'refused agent' && r.agent === '"edge9"').length >= 3, 'the link retried');
    assert.deepEqual(fleet.registry.list(), []);
  } finally {
    await fleet.close();
  }
});

test('malformed messages are answered or ignored; the server keeps serving', { timeout: 10_000 }, async () => {
  const logs = memoryLogger();
  const fleet = await startFleet({ tokens: TOKENS, logger: logs.logger });
  const bad = rawClient(fleet.url, { token: 'shared-secret', name: 'rogue' });
  let good: DispatcherLink | null = null;
  try {
    await new Promise<void>((resolve, reject) => {
      bad.once('connect', resolve);
      bad.once('connect_error', reject);
    });
    const ask = (data: unknown) => bad.timeout(3000).emitWithAck('agent:hello', data) as Promise<{ ok: boolean; error?: string }>;
    const r1 = await ask({ protocol: 1, version: '1', hostname: 'h' });
    assert.equal(r1.ok, false);
    assert.match(r1.error ?? '', /bad agent:hello/);
    const r2 = await ask(42);
    assert.equal(r2.ok, false);
    assert.match(r2.error ?? '', /bad agent:hello/);
    const r3 = (await ask({ ...status(), protocol: 99, version: '1', hostname: 'h', interfaces: [] })) as Record<string, unknown>;
    assert.match(String(r3.error), /bad agent:hello message: protocol/);
    // The catalogue's code and the key at fault, so an agent tells a version mismatch from a bug of its own.
    assert.deepEqual([r3.code, r3.field, r3.message], ['TF_AGENT_MESSAGE_INVALID', 'protocol', r3.error]);
    // This fleet runs no traces (a peer's link only): a chunk is refused with a code saying so.
    const chunk = (await bad.timeout(3000).emitWithAck('trace:chunk', { traceId: 't1', seq: 0, data: Buffer.from('x') })) as Record<string, unknown>;
    assert.deepEqual([chunk.ok, chunk.code, chunk.field, chunk.message], [false, 'TF_DISPATCHER_NO_TRACES', null, 'this dispatcher runs no traces']);
    // No ack callback, nonsense payloads, unknown events: none may crash anything.
    bad.emit('agent:hello');
    bad.emit('agent:hello', { protocol: 1 });
    bad.emit('agent:heartbeat', 'nonsense');
    bad.emit('agent:heartbeat', null, () => {});
    bad.emit('no:such:event', { a: 1 });
    const rogue = fleet.registry.get('rogue');
    assert.equal(rogue?.connected, true);
    assert.equal(rogue?.hostname, null, 'no bad hello was recorded');

    good = link(fleet.url, 'edge2', 'shared-secret');
    const e = await waitFor('a good agent after bad messages', () => fleet.registry.get('edge2')?.hostname);
    assert.equal(e, 'host-edge2');
    assert.equal(bad.connected, true, 'a bad message does not cost the connection');
    assert.ok(logs.records.some((r) => r.agent === 'rogue' && /^bad agent:heartbeat message/.test(String(r.reason))));
  } finally {
    bad.close();
    good?.close();
    await fleet.close();
  }
});

test('a second connection under the same name replaces the first; a disconnected agent stays listed', { timeout: 10_000 }, async () => {
  const logs = memoryLogger();
  const fleet = await startFleet({ tokens: TOKENS, logger: logs.logger });
  const first = rawClient(fleet.url, { token: 'shared-secret', name: 'twin' });
  try {
    await new Promise<void>((r) => first.once('connect', () => r()));
    const gone = new Promise<string>((r) => first.once('disconnect', r));
    const second = rawClient(fleet.url, { token: 'shared-secret', name: 'twin' });
    await new Promise<void>((r) => second.once('connect', () => r()));
    assert.equal(await gone, 'io server disconnect');
    assert.ok(logs.records.some((r) => r.agent === 'twin' && /connected again; replacing/.test(r.msg)));
    assert.equal(fleet.registry.get('twin')?.connected, true, 'the replaced socket does not mark the agent gone');
    second.close();
    const e = await waitFor('disconnected', () => fleet.registry.list().find((x) => x.name === 'twin' && !x.connected));
    assert.ok(e.lastSeen >= e.connectedAt);
  } finally {
    first.close();
    await fleet.close();
  }
});

test('after the dispatcher restarts on the same port the agent reconnects and re-announces', { timeout: 25_000 }, async () => {
  const fleet1 = await startFleet({ tokens: TOKENS });
  const port = Number(new URL(fleet1.url).port);
  const logs = memoryLogger();
  const a = link(fleet1.url, 'edge1', 'edge1-secret', logs);
  let fleet2: Awaited<ReturnType<typeof startFleet>> | null = null;
  try {
    await waitFor('first hello', () => fleet1.registry.get('edge1')?.hostname);
    await fleet1.close();
    await waitFor('the agent to notice', () => !a.socket.connected && logs.records.some((r) => /disconnected from dispatcher/.test(r.msg)));
    await new Promise((r) => setTimeout(r, 1000)); // a refused reconnection attempt or two
    fleet2 = await startFleet({ tokens: TOKENS, port });
    const f2 = fleet2;
    const e = await waitFor('re-announce', () => (f2.registry.get('edge1')?.hostname ? f2.registry.get('edge1') : null), 15_000);
    assert.equal(e.connected, true);
    assert.deepEqual(e.interfaces, ['lo']);
    assert.equal(logs.records.filter((r) => r.msg === 'connected to dispatcher').length, 2);
  } finally {
    a.close();
    await fleet2?.close();
  }
});

test('close() leaves no open handles: a process using the fleet and a link exits by itself', { timeout: 20_000 }, () => {
  const dist = join(__dirname, '..', '..');
  const script = `
    const { startFleet } = require(${JSON.stringify(join(dist, 'dispatcher/fleet/server.js'))});
    const { connectDispatcher } = require(${JSON.stringify(join(dist, 'agent/link/client.js'))});
    (async () => {
      // The default logger (the process's root, writing to fd 2): it must keep nothing open either.
      const fleet = await startFleet({ tokens: [{ token: 't' }] });
      const st = { ring: { oldest: null, newest: null, bytes: 0, segments: 0 }, capture: {}, indexErrors: 0 };
      const link = connectDispatcher({ url: fleet.url, token: 't', name: 'a', hello: () => ({ version: 'x', hostname: 'h', interfaces: [], ...st }), status: () => st });
      const until = Date.now() + 5000;
      while (!fleet.registry.get('a')?.hostname) { if (Date.now() > until) process.exit(3); await new Promise((r) => setTimeout(r, 20)); }
      link.close();
      await fleet.close();
      console.log('closed');
    })();
  `;
  const r = spawnSync(process.execPath, ['-e', script], { timeout: 15_000, encoding: 'utf8' });
  assert.equal(r.signal, null, 'the process had to be killed: something kept it alive');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /closed/);
  assert.ok(r.stderr.split('\n').some((l) => l.startsWith('{') && JSON.parse(l).msg === 'agent connected'), r.stderr);
});
