import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHUNK_BYTES, MAX_CHUNK_BYTES, PROTOCOL_VERSION, agentHello, chunkBytesFor, followChunk, traceChunk, traceDone, traceResult, traceRun } from './agent';
import { parseMessage } from './common';
import type { MessageSummary } from '../query/query';

test('valid messages pass; malformed ones name the field', () => {
  const hello = {
    protocol: PROTOCOL_VERSION, version: '0.1.0', hostname: 'sbc1', interfaces: ['any'],
    ring: { oldest: null, newest: null, bytes: 0, segments: 0 }, capture: { any: { packets: 1, dropped: 0, ifDropped: 0, running: true } }, indexErrors: 0,
  };
  assert.equal(parseMessage(agentHello, 'agent:hello', hello).ok, true);
  const bad = parseMessage(agentHello, 'agent:hello', { ...hello, ring: { ...hello.ring, bytes: -1 } });
  assert.equal(bad.ok, false);
  assert.match((bad as { error: string }).error, /bad agent:hello message: ring\.bytes/);
  assert.match((parseMessage(traceRun, 'trace:run', { traceId: '../etc', query: {} }) as { error: string }).error, /traceId/);
  assert.equal(parseMessage(traceRun, 'trace:run', { traceId: 't1', query: { number: ['5551234'], evil: 1 } }).ok, false);
  assert.equal(parseMessage(traceChunk, 'trace:chunk', { traceId: 't1', seq: 0, data: Buffer.alloc(MAX_CHUNK_BYTES + 1) }).ok, false);
  assert.equal(parseMessage(traceChunk, 'trace:chunk', { traceId: 't1', seq: 0, data: 'text' }).ok, false);
  assert.equal(parseMessage(traceChunk, 'trace:chunk', { traceId: 't1', seq: 3, data: Buffer.alloc(10) }).ok, true);
});

test('trace:done carries the engine\'s message summaries and refuses a malformed one', () => {
  const s: MessageSummary = {
    ts: '1.000000001', time: 'x', src: 'a:1', dst: 'b:2', transport: 'udp', method: 'INVITE', status: null, reason: null,
    callId: 'c', cseq: '1 INVITE', from: null, to: null, ruri: null, correlation: null, bytes: 10, packets: 1,
  };
  const done = { traceId: 't', packets: 1, bytes: 10, chunks: 1, truncated: false, messages: [s], notes: [] };
  assert.equal(parseMessage(traceDone, 'trace:done', done).ok, true);
  const bad = parseMessage(traceDone, 'trace:done', { ...done, messages: [{ ...s, transport: 'sctp' }] });
  assert.match((bad as { error: string }).error, /messages\.0\.transport/);
});

test('trace:result: a small result whole; trace:run says whether the dispatcher takes it, and an agent before it ignores that', () => {
  const r = { traceId: 't', packets: 1, bytes: 10, truncated: false, messages: [], notes: [], data: Buffer.alloc(10) };
  assert.equal(parseMessage(traceResult, 'trace:result', r).ok, true);
  assert.equal(parseMessage(traceResult, 'trace:result', { ...r, data: undefined, bytes: 0, packets: 0 }).ok, true);
  assert.match((parseMessage(traceResult, 'trace:result', { ...r, data: Buffer.alloc(CHUNK_BYTES + 1) }) as { error: string }).error, /data/);
  assert.match((parseMessage(traceResult, 'trace:result', { ...r, data: 'text' }) as { error: string }).error, /data/);
  assert.equal(parseMessage(traceResult, 'trace:result', { ...r, packets: -1 }).ok, false);
  const run = { traceId: 't1', query: { callId: ['a'] }, result: true };
  const m = parseMessage(traceRun, 'trace:run', run);
  assert.equal(m.ok && m.value.result, true);
  assert.equal(parseMessage(traceRun, 'trace:run', { ...run, result: 'yes' }).ok, false);
  // An agent's schema from before the key (the same object without it) takes the message and drops the key.
  const old = parseMessage(traceRun.omit({ result: true }), 'trace:run', run);
  assert.equal(old.ok, true);
  assert.equal(old.ok && 'result' in old.value, false);
});

test('trace:run offers a chunk size: taken from 4 KiB up, sent at MAX_CHUNK_BYTES at most; an agent before it drops the key', () => {
  const run = { traceId: 't1', query: { callId: ['a'] }, result: true, chunkBytes: MAX_CHUNK_BYTES };
  const m = parseMessage(traceRun, 'trace:run', run);
  assert.equal(m.ok && m.value.chunkBytes, MAX_CHUNK_BYTES);
  // A later dispatcher may offer more: taken, and this agent sends its own most.
  const more = parseMessage(traceRun, 'trace:run', { ...run, chunkBytes: 64 * MAX_CHUNK_BYTES });
  assert.equal(more.ok && chunkBytesFor(more.value.chunkBytes), MAX_CHUNK_BYTES);
  assert.equal(parseMessage(traceRun, 'trace:run', { ...run, chunkBytes: 100 }).ok, false);
  assert.equal(parseMessage(traceRun, 'trace:run', { ...run, chunkBytes: 1.5 * CHUNK_BYTES + 0.5 }).ok, false);
  assert.equal(chunkBytesFor(undefined), CHUNK_BYTES, 'a dispatcher before the offer takes CHUNK_BYTES');
  assert.equal(chunkBytesFor(512 * 1024), 512 * 1024);
  const old = parseMessage(traceRun.omit({ chunkBytes: true }), 'trace:run', run);
  assert.equal(old.ok && 'chunkBytes' in old.value, false);
  // trace:chunk takes up to MAX_CHUNK_BYTES; a follow's chunk and a trace:result stay within CHUNK_BYTES.
  assert.equal(parseMessage(traceChunk, 'trace:chunk', { traceId: 't1', seq: 0, data: Buffer.alloc(MAX_CHUNK_BYTES) }).ok, true);
  assert.equal(parseMessage(traceChunk, 'trace:chunk', { traceId: 't1', seq: 0, data: Buffer.alloc(0) }).ok, false);
  const follow = { traceId: 't1', seq: 0, messages: [], data: Buffer.alloc(CHUNK_BYTES) };
  assert.equal(parseMessage(followChunk, 'follow:chunk', follow).ok, true);
  assert.equal(parseMessage(followChunk, 'follow:chunk', { ...follow, data: Buffer.alloc(CHUNK_BYTES + 1) }).ok, false);
});
