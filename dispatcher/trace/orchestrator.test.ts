import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io as connectIo, Socket as ClientSocket } from 'socket.io-client';
import { PassThrough, Readable } from 'node:stream';
import { mergeCaptures } from '../merge/merge';
import type { TraceUpdate } from '../../shared/protocol/client';
import { Fleet, startFleet } from '../fleet/server';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, resultDocId, traceDocId } from '../store/layout';
import { mergedPcap } from '../store/parts';
import { TraceStore } from '../store/store';
import { openTestStore, startRelay, startTestCouch, TestCouch } from '../../test/support/couch';
import { metricValue } from './metrics';
import { Orchestrator } from './orchestrator';
import { Spool } from './spool';
import { BULK, bytesOf, CALL, expectedPcap, makeTestRings, PROXY, records, sortedRecords, startTestAgent, TestAgent, TestHost, until } from '../../test/support/trace';
import { TracefleetError } from '../../shared/errors/catalogue';
import { silentLogger } from '../../shared/log/log';
import { B2B, Leg, Z, writeLegsRing } from '../../test/support/legcalls';
import { MAX_CHUNK_BYTES } from '../../shared/protocol/agent';

const TOKEN = 'orchestrator-test-token-0123456789';

let dir = '';
let couch: TestCouch;
let rings: Record<TestHost, string>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tf-orch-'));
  couch = await startTestCouch();
  rings = await makeTestRings(dir);
});

after(async () => {
  await couch?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Rig {
  fleet: Fleet;
  store: TraceStore;
  orch: Orchestrator;
  spool: Spool;
  agents: TestAgent[];
  updates: TraceUpdate[];
  close(): Promise<void>;
}

async function rig(opts: { storeUrl?: string; spoolDir?: string; spool?: Spool; db?: string; timeouts?: { runAckMs: number; idleMs: number } } = {}): Promise<Rig & { drop(): Promise<void> }> {
  const { store, drop } = await openTestStore(opts.storeUrl ?? couch.url, opts.db);
  const fleet = await startFleet({ tokens: [{ token: TOKEN }], logger: silentLogger });
  const spool = opts.spool ?? new Spool(opts.spoolDir ?? mkdtempSync(join(dir, 'spool-')));
  const orch = new Orchestrator({ store, fleet, spool, retryMs: 200, timeouts: opts.timeouts ?? { runAckMs: 3000, idleMs: 5000 }, logger: silentLogger });
  await orch.recover();
  const updates: TraceUpdate[] = [];
  orch.onUpdate((u) => updates.push(u));
  const r: Rig & { drop(): Promise<void> } = {
    fleet,
    store,
    orch,
    spool,
    agents: [],
    updates,
    async close() {
      for (const a of r.agents) a.close();
      orch.close();
      await fleet.close();
    },
    drop,
  };
  return r;
}

async function addAgent(r: Rig, name: TestHost, opts: { stallAfterChunks?: number; beforeTraceResult?: boolean; tornStall?: boolean } = {}): Promise<TestAgent> {
  const agent = startTestAgent({ url: r.fleet.url, token: TOKEN, name, ringDir: rings[name], ...opts });
  r.agents.push(agent);
  await until(() => r.fleet.registry.get(name)?.connected === true && r.fleet.registry.get(name)?.hostname === name, `agent ${name} connected`);
  return agent;
}

function finalOf(r: Rig, id: string): TraceUpdate | undefined {
  return r.updates.find((u) => u.traceId === id && u.host === null && u.state !== 'running');
}

test('a fleet trace: every host streams into the store, the merged PCAP is the time-ordered union', async () => {
  const r = await rig();
  try {
    for (const n of ['a', 'b', 'c'] as const) await addAgent(r, n);
    const q = { ip: [PROXY] };
    const view = await r.orch.start(q, 'alice');
    assert.deepEqual(view.hosts.map((h) => h.host), ['a', 'b', 'c']);
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to finish');
    const final = finalOf(r, view.id)!;
    assert.equal(final.state, 'done');

    const trace = await r.store.getTrace(view.id);
    assert.equal(trace?.state, 'done');
    assert.equal(trace?.user, 'alice');
    const perHost: Buffer[] = [];
    for (const h of ['a', 'b', 'c'] as const) {
      const res = await r.store.getResult(view.id, h);
      assert.equal(res?.state, 'done', `host ${h}`);
      const stored = await bytesOf(r.store.getAttachmentStream(resultDocId(view.id, h), HOST_ATTACHMENT));
      assert.deepEqual(stored, await expectedPcap(rings[h], q), `host ${h}'s packets.pcap is what its agent's query writes`);
      assert.equal(res?.bytes, stored.length);
      perHost.push(stored);
    }
    assert.equal(records(perHost[0]).length, 3 + BULK, "host a: both calls and the proxy's bulk");
    assert.equal(records(perHost[1]).length, 2);
    assert.equal(records(perHost[2]).length, 0);
    assert.ok((await r.store.getResult(view.id, 'a'))!.messages.length >= 2, 'SIP summaries stored');

    const merged = records(await bytesOf(r.store.getAttachmentStream(traceDocId(view.id), MERGED_ATTACHMENT)));
    const union = perHost.flatMap(records).sort((x, y) => (x.ts < y.ts ? -1 : x.ts > y.ts ? 1 : 0));
    assert.equal(merged.length, union.length);
    assert.deepEqual(merged.map((m) => m.ts), union.map((u) => u.ts), 'time-ordered');
    assert.deepEqual(sortedRecords(merged), sortedRecords(union), 'exactly the union');
    assert.deepEqual(trace?.merged, { packets: union.length, bytes: final.merged!.bytes, duplicates: 0 });
    // Emptied after the final update, off the event loop.
    await until(() => readdirSync(r.spool.dir).length === 0, 'the spool to be emptied once the store has everything');

    const v = await r.orch.view(view.id);
    assert.deepEqual(v?.hosts.map((h) => [h.host, h.state, h.stored]), [['a', 'done', true], ['b', 'done', true], ['c', 'done', false]].map(([h, s]) => [h, s, h !== 'c' || perHost[2].length > 0]));
  } finally {
    await r.close();
    await r.drop();
  }
});

test('agents before trace:result and after it in one fleet: each host stored as its query writes it, the small results sent whole', async () => {
  const r = await rig();
  try {
    await addAgent(r, 'a');
    await addAgent(r, 'b', { beforeTraceResult: true });
    await addAgent(r, 'c');
    const q = { ip: [PROXY] };
    const stored = async (id: string) => {
      await until(() => finalOf(r, id) !== undefined, 'the trace to finish');
      assert.equal((await r.store.getTrace(id))?.state, 'done');
      const out: Record<string, Buffer> = {};
      for (const h of ['a', 'b', 'c'] as const) {
        const res = await r.store.getResult(id, h);
        assert.equal(res?.state, 'done', `host ${h}: ${res?.error ?? ''}`);
        out[h] = res?._attachments?.[HOST_ATTACHMENT] ? await bytesOf(r.store.getAttachmentStream(resultDocId(id, h), HOST_ATTACHMENT)) : Buffer.alloc(0);
        assert.deepEqual(out[h], res!.bytes ? await expectedPcap(rings[h], q) : Buffer.alloc(0), `host ${h}'s packets.pcap is what its agent's query writes`);
        assert.ok(res!.messages.length > 0 || h === 'c', `host ${h}: SIP summaries stored`);
      }
      return out;
    };
    const first = await r.orch.start(q, 'alice');
    const old = await stored(first.id);
    const updatesOf = (id: string, host: string) => r.updates.filter((u) => u.traceId === id && u.host === host).map((u) => u.state);
    assert.ok(updatesOf(first.id, 'b').includes('started'), 'the old agent said started');
    assert.ok(!updatesOf(first.id, 'c').includes('started'), 'the new agent with a small result sent it whole');
    // The same host, now a new agent: the same bytes stored.
    r.agents.find((x) => x.name === 'b')!.close();
    await until(() => r.fleet.registry.get('b')?.connected === false, 'agent b gone');
    await addAgent(r, 'b');
    const second = await r.orch.start(q, 'alice');
    const now = await stored(second.id);
    assert.deepEqual(now.b, old.b);
    assert.ok(!updatesOf(second.id, 'b').includes('started'));
    assert.ok(updatesOf(second.id, 'a').includes('started'), 'a result bigger than a chunk still goes the chunked way');
  } finally {
    await r.close();
    await r.drop();
  }
});

test('a trace:result that does not add up, or comes after chunks, ends its host in error; the others are done', async () => {
  const r = await rig({ timeouts: { runAckMs: 3000, idleMs: 3000 } });
  const raw: ClientSocket[] = [];
  try {
    await addAgent(r, 'a');
    const liar = (name: string, answer: (s: ClientSocket, traceId: string) => void) => {
      const s = connectIo(`${r.fleet.url}/agent`, { auth: { token: TOKEN, name }, forceNew: true });
      raw.push(s);
      s.on('trace:run', (m: { traceId: string }, ack: (a: unknown) => void) => {
        ack({ accepted: true });
        answer(s, m.traceId);
      });
      return until(() => r.fleet.registry.get(name)?.connected === true, `agent ${name}`);
    };
    const result = (traceId: string, bytes: number, data?: Buffer) => ({ traceId, packets: 1, bytes, truncated: false, messages: [], notes: [], ...(data ? { data } : {}) });
    await liar('short', (s, id) => s.emit('trace:result', result(id, 100, Buffer.alloc(40)), () => {}));
    await liar('late', (s, id) => s.emit('trace:chunk', { traceId: id, seq: 0, data: Buffer.alloc(24) }, () => s.emit('trace:result', result(id, 24, Buffer.alloc(24)), () => {})));
    await liar('huge', (s, id) => s.emit('trace:result', result(id, 300_000, Buffer.alloc(300_000)), () => {}));
    const view = await r.orch.start({ callId: [CALL], hosts: ['a', 'short', 'late', 'huge'] }, 'bob');
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to finish');
    const res = Object.fromEntries((await r.store.listResults(view.id)).map((x) => [x.host, x]));
    assert.equal(res.a.state, 'done');
    assert.equal(res.short.state, 'error');
    assert.match(res.short.error ?? '', /broke the protocol: the agent says its result is 100 bytes, 40 arrived/);
    assert.equal(res.late.state, 'error');
    assert.match(res.late.error ?? '', /broke the protocol: a trace:result came after 1 chunks/);
    assert.equal(res.huge.state, 'error');
    assert.match(res.huge.error ?? '', /broke the protocol: .*data/);
  } finally {
    for (const s of raw) s.disconnect();
    await r.close();
    await r.drop();
  }
});

/** What the merge of the host's finished file alone writes. */
async function mergedAlone(host: string, pcap: Buffer): Promise<Buffer> {
  const out = new PassThrough();
  const [, bytes] = await Promise.all([mergeCaptures([{ host, stream: Readable.from([pcap]) }], out), bytesOf(out)]);
  return bytes;
}

test('one host: packets.pcap and merged.pcap are stored while it is received, the bytes of its finished file and of their merge', async () => {
  const r = await rig();
  try {
    await addAgent(r, 'a');
    const q = { ip: [PROXY] };
    const view = await r.orch.start(q, 'alice');
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to finish');
    assert.equal(finalOf(r, view.id)!.state, 'done');
    const stored = await bytesOf(r.store.getAttachmentStream(resultDocId(view.id, 'a'), HOST_ATTACHMENT));
    assert.deepEqual(stored, await expectedPcap(rings.a, q));
    assert.ok(stored.length > 4 * 256 * 1024, `bigger than a few chunks (${stored.length} bytes), so it is followed while it arrives`);
    const trace = await r.store.getTrace(view.id);
    // Where the REST download reads it: the trace's merged.pcap, or the attachment it names.
    const where = mergedPcap(trace!);
    assert.ok(where, 'the trace has a merged PCAP');
    const merged = await bytesOf(r.store.getAttachmentStream(where.docId, where.name));
    assert.deepEqual(merged, await mergedAlone('a', stored), 'merged.pcap is the merge of the stored file, byte for byte');
    assert.equal(where.stub.length, merged.length);
    // On every store such a merge is not uploaded again (nor copied): the trace names packets.pcap instead, and only then.
    assert.equal(trace?.mergedAttachment !== undefined, merged.equals(stored), `merged.pcap ${merged.equals(stored) ? 'is' : 'is not'} packets.pcap: named ${trace?.mergedAttachment !== undefined}`);
    if (trace?.mergedAttachment) {
      assert.deepEqual([where.docId, where.name], [resultDocId(view.id, 'a'), HOST_ATTACHMENT]);
      assert.equal(await r.store.getAttachmentInfo(traceDocId(view.id), MERGED_ATTACHMENT), null, 'no second copy of the bytes');
    }
    assert.deepEqual(trace?.merged, { packets: 3 + BULK, bytes: finalOf(r, view.id)!.merged!.bytes, duplicates: 0 });
    // Both went to the store as the host arrived, and were what was kept.
    const m = r.orch.metrics.storedWhileReceived;
    assert.equal(await metricValue(m, { attachment: HOST_ATTACHMENT, outcome: 'used' }), 1);
    assert.equal(await metricValue(m, { attachment: MERGED_ATTACHMENT, outcome: 'used' }), 1);
    assert.equal(await metricValue(m, { attachment: HOST_ATTACHMENT, outcome: 'redone' }) + (await metricValue(m, { attachment: MERGED_ATTACHMENT, outcome: 'redone' })), 0);
    await until(() => readdirSync(r.spool.dir).length === 0, 'the spool to be emptied');
  } finally {
    await r.close();
    await r.drop();
  }
});

test('one host cut short mid-record: what is stored and merged is its trimmed file, not what was followed', async () => {
  const r = await rig({ timeouts: { runAckMs: 3000, idleMs: 60_000 } });
  try {
    await addAgent(r, 'a', { stallAfterChunks: 3, tornStall: true });
    const view = await r.orch.start({ ip: [PROXY] }, 'alice');
    await until(async () => (await metricValue(r.orch.metrics.chunksReceived)) >= 3, 'three chunks of a');
    await r.orch.cancel(view.id);
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to close');
    assert.equal(finalOf(r, view.id)!.state, 'cancelled');
    const res = await r.store.getResult(view.id, 'a');
    const stored = await bytesOf(r.store.getAttachmentStream(resultDocId(view.id, 'a'), HOST_ATTACHMENT));
    // Three chunks of what trace:run offers (MAX_CHUNK_BYTES), the last record of the third torn.
    assert.ok(stored.length < 3 * MAX_CHUNK_BYTES && stored.length > 2 * MAX_CHUNK_BYTES, `trimmed to whole records (${stored.length} bytes)`);
    assert.equal(res?.bytes, stored.length);
    assert.equal(res?.packets, records(stored).length);
    const merged = await bytesOf(r.store.getAttachmentStream(traceDocId(view.id), MERGED_ATTACHMENT));
    assert.deepEqual(merged, await mergedAlone('a', stored));
    assert.equal((await r.store.getTrace(view.id))?.merged?.packets, records(stored).length);
    const m = r.orch.metrics.storedWhileReceived;
    assert.equal(await metricValue(m, { attachment: HOST_ATTACHMENT, outcome: 'redone' }), 1, 'what was followed had a torn record: stored again from the trimmed file');
    assert.equal(await metricValue(m, { attachment: MERGED_ATTACHMENT, outcome: 'redone' }), 1);
  } finally {
    await r.close();
    await r.drop();
  }
});

test('bad requests are refused before anything is stored or sent', async () => {
  const r = await rig();
  try {
    await assert.rejects(r.orch.start({ callId: [CALL] }, 'alice'), (e) => e instanceof TracefleetError && e.code === 'TF_TRACE_NO_AGENTS' && /no agent is connected/.test(e.message));
    await addAgent(r, 'a');
    await assert.rejects(r.orch.start({ rtp: true }, 'alice'), (e) => e instanceof TracefleetError && e.code === 'TF_QUERY_NOT_SELECTIVE' && /no selective key/.test(e.message));
    await assert.rejects(r.orch.start({ number: ['12'] }, 'alice'), (e) => e instanceof TracefleetError && e.code === 'TF_QUERY_BAD_NUMBER' && e.field === 'number' && /digit/.test(e.message));
    await assert.rejects(r.orch.start({ callId: [CALL], hosts: ['nosuch'] }, 'alice'), (e) => e instanceof TracefleetError && e.field === 'hosts' && /unknown host nosuch.*known agents: a/.test(e.message));
    assert.equal((await r.store.listTraces()).traces.length, 0);
    await assert.rejects(r.orch.cancel('nosuch'), (e) => e instanceof TracefleetError && e.code === 'TF_TRACE_NOT_FOUND');
  } finally {
    await r.close();
    await r.drop();
  }
});

test('a host that never answers is unreachable after the timeout and holds nobody up; a known but disconnected host is unreachable at once', async () => {
  const r = await rig({ timeouts: { runAckMs: 800, idleMs: 2000 } });
  let mute: ClientSocket | null = null;
  try {
    await addAgent(r, 'a');
    await addAgent(r, 'c');
    // A real connection that takes trace:run and never answers: a hung agent.
    mute = connectIo(`${r.fleet.url}/agent`, { auth: { token: TOKEN, name: 'mute' }, forceNew: true });
    await until(() => r.fleet.registry.get('mute')?.connected === true, 'mute agent');
    r.agents.find((x) => x.name === 'c')!.close();
    await until(() => r.fleet.registry.get('c')?.connected === false, 'agent c gone');

    const started = Date.now();
    const view = await r.orch.start({ callId: [CALL], hosts: ['a', 'mute', 'c'] }, 'bob');
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to finish');
    assert.ok(Date.now() - started < 10_000);
    const trace = await r.store.getTrace(view.id);
    assert.equal(trace?.state, 'partial');
    const res = Object.fromEntries((await r.store.listResults(view.id)).map((x) => [x.host, x]));
    assert.equal(res.a.state, 'done');
    assert.equal(res.mute.state, 'unreachable');
    assert.match(res.mute.error ?? '', /did not answer the trace request within 0.8 s/);
    assert.equal(res.c.state, 'unreachable');
    assert.match(res.c.error ?? '', /not connected/);
    assert.ok(trace?._attachments?.[MERGED_ATTACHMENT], 'merged.pcap holds what the reachable host sent');
  } finally {
    mute?.disconnect();
    await r.close();
    await r.drop();
  }
});

/** A spool whose disk is slow: each chunk's write takes `delayMs` more. */
class SlowSpool extends Spool {
  constructor(
    d: string,
    private readonly delayMs: number,
  ) {
    super(d);
  }

  override async appendPcap(traceId: string, host: string, bytes: Uint8Array, first: boolean): Promise<void> {
    await new Promise((r) => setTimeout(r, this.delayMs));
    return super.appendPcap(traceId, host, bytes, first);
  }
}

test("a host whose chunks wait for the dispatcher's disk longer than the idle timeout is not silent: it ends done", async () => {
  const r = await rig({ spool: new SlowSpool(mkdtempSync(join(dir, 'spool-')), 1500), timeouts: { runAckMs: 3000, idleMs: 700 } });
  try {
    await addAgent(r, 'a');
    const q = { callId: [CALL] };
    const view = await r.orch.start({ ...q, hosts: ['a'] }, 'alice');
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to finish');
    const res = await r.store.getResult(view.id, 'a');
    assert.equal(res?.state, 'done', `host a: ${res?.error ?? ''}`);
    assert.deepEqual(await bytesOf(r.store.getAttachmentStream(resultDocId(view.id, 'a'), HOST_ATTACHMENT)), await expectedPcap(rings.a, q));
  } finally {
    await r.close();
    await r.drop();
  }
});

test('CouchDB away during a trace: the result waits in the spool and is stored when the store is back', async () => {
  const relay0 = await startRelay(couch.url);
  const port = Number(new URL(relay0.url).port);
  let relay: { url: string; stop(): Promise<void> } | null = relay0;
  const r = await rig({ storeUrl: relay0.url });
  try {
    await addAgent(r, 'a');
    await addAgent(r, 'b');
    let cut = false;
    r.orch.onUpdate((u) => {
      if (!cut && u.host === 'a' && u.state === 'started') {
        cut = true;
        void relay!.stop();
        relay = null;
      }
    });
    const q = { ip: [PROXY] };
    const view = await r.orch.start(q, 'alice');
    await until(async () => cut && (await metricValue(r.orch.metrics.pendingStores)) > 0 && (await metricValue(r.orch.metrics.errors, { kind: 'store' })) > 0, 'a store failure while CouchDB is away');
    await until(() => readdirSync(r.spool.dir).length > 0, 'the result kept in the spool');
    assert.equal(finalOf(r, view.id), undefined, 'the trace cannot finish while the store is away');
    relay = await startRelay(couch.url, port);
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to finish once the store is back');
    assert.equal(finalOf(r, view.id)!.state, 'done');
    const stored = await bytesOf(r.store.getAttachmentStream(resultDocId(view.id, 'a'), HOST_ATTACHMENT));
    assert.deepEqual(stored, await expectedPcap(rings.a, q), 'nothing lost');
    await until(() => readdirSync(r.spool.dir).length === 0, 'the spool to be emptied');
  } finally {
    await r.close();
    await (relay as { stop(): Promise<void> } | null)?.stop();
    await r.drop();
  }
});

test('a dispatcher restarted mid-trace: the trace is marked interrupted with what arrived kept', async () => {
  const spoolDir = mkdtempSync(join(dir, 'spool-restart-'));
  const first = await rig({ spoolDir, timeouts: { runAckMs: 3000, idleMs: 60_000 } });
  const db = first.store.dbName;
  let view;
  try {
    // Agent a's link is held up after its first chunk so the restart lands mid-stream.
    await addAgent(first, 'a', { stallAfterChunks: 1 });
    await addAgent(first, 'b');
    view = await first.orch.start({ ip: [PROXY] }, 'alice');
    await until(async () => (await metricValue(first.orch.metrics.chunksReceived)) >= 1 && first.updates.some((u) => u.host === 'b' && u.state === 'done'), 'a mid-stream, b done');
    // b's update goes out before its final state is durable; the restart must find it in the spool or the store.
    await until(
      async () => existsSync(join(spoolDir, view!.id, 'b.final.json')) || (await first.store.listResults(view!.id)).some((x) => x.host === 'b' && x.state === 'done'),
      "b's final state kept",
    );
  } finally {
    await first.close();
  }
  assert.ok(readdirSync(join(spoolDir, view.id)).some((n) => n === 'a.pcap'), 'what arrived from a is in the spool');

  const second = await rig({ spoolDir, db });
  try {
    await until(() => second.updates.some((u) => u.traceId === view!.id && u.host === null), 'the interrupted trace to be closed');
    const trace = await second.store.getTrace(view.id);
    assert.equal(trace?.state, 'interrupted');
    const res = Object.fromEntries((await second.store.listResults(view.id)).map((x) => [x.host, x]));
    assert.equal(res.b.state, 'done');
    assert.equal(res.a.state, 'lost');
    assert.match(res.a.error ?? '', /restarted/);
    const partial = records(await bytesOf(second.store.getAttachmentStream(resultDocId(view.id, 'a'), HOST_ATTACHMENT)));
    assert.ok(partial.length > 0 && partial.length < 3 + BULK, `a's first chunk is kept, whole records only (${partial.length})`);
    assert.ok(trace?._attachments?.[MERGED_ATTACHMENT]);
    await until(() => readdirSync(spoolDir).length === 0, 'the spool to be emptied');
  } finally {
    await second.close();
    await second.drop();
  }
});

test('a dispatcher restarted before its hosts had result docs: each host without one is stored lost, and the trace is interrupted', async () => {
  const spoolDir = mkdtempSync(join(dir, 'spool-nodocs-'));
  const first = await rig({ spoolDir });
  const db = first.store.dbName;
  // What start() leaves when the dispatcher stops right after the trace doc (the result docs come after every host is asked).
  const trace = await first.store.createTrace({ request: { callId: [CALL] } as unknown as { [k: string]: never }, user: 'alice', hosts: ['a', 'b'] });
  first.spool.markOwned({ traceId: trace.id, hosts: ['a', 'b'], createdAt: trace.createdAt });
  await first.close();

  const second = await rig({ spoolDir, db });
  try {
    await until(() => second.updates.some((u) => u.traceId === trace.id && u.host === null), 'the interrupted trace to be closed');
    assert.equal((await second.store.getTrace(trace.id))?.state, 'interrupted');
    const res = Object.fromEntries((await second.store.listResults(trace.id)).map((x) => [x.host, x]));
    assert.deepEqual(Object.keys(res).sort(), ['a', 'b']);
    for (const h of ['a', 'b']) {
      assert.equal(res[h].state, 'lost', `host ${h}`);
      assert.match(res[h].error ?? '', /restarted/);
    }
    assert.deepEqual((await second.orch.view(trace.id))?.hosts.map((h) => h.state), ['lost', 'lost']);
  } finally {
    await second.close();
    await second.drop();
  }
});

test('cancel stops the hosts still running and keeps what they sent', async () => {
  const r = await rig({ timeouts: { runAckMs: 3000, idleMs: 60_000 } });
  try {
    await addAgent(r, 'a', { stallAfterChunks: 2 });
    await addAgent(r, 'b');
    const view = await r.orch.start({ ip: [PROXY] }, 'alice');
    await until(async () => (await metricValue(r.orch.metrics.chunksReceived)) >= 2 && r.updates.some((u) => u.host === 'b' && u.state === 'done'), 'a mid-stream');
    const v = await r.orch.cancel(view.id);
    assert.equal(v.id, view.id);
    await until(() => finalOf(r, view.id) !== undefined, 'the trace to close');
    assert.equal(finalOf(r, view.id)!.state, 'cancelled');
    const res = Object.fromEntries((await r.store.listResults(view.id)).map((x) => [x.host, x]));
    assert.equal(res.a.state, 'cancelled');
    assert.equal(res.b.state, 'done');
    assert.ok(res.a.bytes > 0 && res.a._attachments?.[HOST_ATTACHMENT]);
    await assert.rejects(r.orch.cancel(view.id), (e) => e instanceof TracefleetError && e.code === 'TF_TRACE_NOT_RUNNING');
  } finally {
    await r.close();
    await r.drop();
  }
});

test('legs across hosts: a leg one host links is looked for on every host, and each host sends its dialogs once', async () => {
  const U = 'ab30317f1a784dc48ff824d0d3715d86';
  // Host x, at the B2BUA: the A leg (the caller's number) and the B leg, tied by Session-ID; the B leg also carries a charging vector.
  // Host y, further on: the B leg again, and a C leg an SBC tied to it by the icid only. Nothing on y has the caller's number.
  const a: Leg = { callId: 'leg-a', from: '4930000001', start: 0, headers: [`Session-ID: ${U}`] };
  const b: Leg = { callId: 'leg-b', from: 'b2bua', start: 1, headers: [`Session-ID: ${U}`, 'P-Charging-Vector: icid-value=ic-77'], src: B2B, dst: Z };
  const c: Leg = { callId: 'leg-c', from: 'sbc', start: 2, headers: ['P-Charging-Vector: icid-value=ic-77'], src: Z, dst: '10.0.0.10' };
  const unrelated: Leg = { callId: 'leg-other', from: '4930000002', start: 1, headers: ['P-Charging-Vector: icid-value=ic-78'], src: B2B, dst: Z };
  const ringX = join(dir, 'ring-legs-x');
  const ringY = join(dir, 'ring-legs-y');
  await writeLegsRing(join(dir, 'legs-x.pcap'), ringX, [a, b, unrelated]);
  await writeLegsRing(join(dir, 'legs-y.pcap'), ringY, [b, c, unrelated]);
  const r = await rig();
  try {
    for (const [name, ringDir] of [['x', ringX], ['y', ringY]] as const) {
      r.agents.push(startTestAgent({ url: r.fleet.url, token: TOKEN, name, ringDir }));
      await until(() => r.fleet.registry.get(name)?.connected === true, `agent ${name} connected`);
    }
    // Per host, how each dialog was linked (null: selected, or found on another host only).
    let vias: Record<string, Record<string, string | null>> = {};
    const dialogsOf = async (q: Parameters<Orchestrator['start']>[0]) => {
      vias = {};
      const view = await r.orch.start(q, 'alice');
      await until(() => finalOf(r, view.id) !== undefined, 'the trace to finish');
      const out: Record<string, string[]> = {};
      for (const h of ['x', 'y']) {
        const res = (await r.store.getResult(view.id, h))!;
        assert.equal(res.state, 'done', `host ${h}`);
        out[h] = [...new Set(res.messages.map((m) => m.callId))].sort();
        // Each message once: a dialog found in both rounds is not sent twice.
        assert.equal(res.messages.length, out[h].length * 4, `host ${h}: four messages a dialog`);
        assert.equal(res.packets, res.messages.length, `host ${h}: one packet a message`);
        if (q.legs) for (const m of res.messages) assert.ok(m.legGroup === 'leg-a' || m.legGroup === 'leg-b', `host ${h}: ${m.callId} in group ${m.legGroup}`);
        vias[h] = Object.fromEntries(res.messages.map((m) => [m.callId, m.legVia ?? null]));
      }
      const trace = await r.store.getTrace(view.id);
      assert.deepEqual(trace?.request, q, 'the trace keeps the request as asked');
      return out;
    };
    assert.deepEqual(await dialogsOf({ number: ['4930000001'], hosts: ['x', 'y'] }), { x: ['leg-a'], y: [] });
    assert.deepEqual(await dialogsOf({ number: ['4930000001'], legs: true, hosts: ['x', 'y'] }), { x: ['leg-a', 'leg-b'], y: ['leg-b', 'leg-c'] });
    // Each host says how it linked a leg itself, though the last round hands it every Call-ID found: x linked the B leg, y the C leg from the B leg.
    assert.deepEqual(vias, { x: { 'leg-a': null, 'leg-b': 'session-id' }, y: { 'leg-b': null, 'leg-c': 'icid' } });
  } finally {
    await r.close();
    await r.drop();
  }
});
