import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Server, Socket as ServerSocket } from 'socket.io';
import { ETH_IPV4, ethernet, ipv4, sipInvite, sipResponse, sll, udp } from '../../test/support/packets';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { PcapFileWriterSync } from '../../shared/pcap/writer';
import { AGENT_MESSAGE_MAX_BYTES, CHUNK_BYTES, CHUNKS_IN_FLIGHT, ChunkAck, MAX_CHUNK_BYTES, RunAck, TraceDone, TraceProgress, traceChunk, traceDone, traceFailure, traceProgress, traceResult } from '../../shared/protocol/agent';
import { parseMessage, refusal, traceRef } from '../../shared/protocol/common';
import { TracefleetError } from '../../shared/errors/catalogue';
import { TraceQuery } from '../../shared/query/query';
import { connectDispatcher, DispatcherLink } from '../link/client';
import { closeResult, runQuery, writeResultPcap } from '../query/engine';
import { buildQuerySpec } from '../../shared/query/query';
import { importCaptures } from '../index/import';
import { doneMessage, serveTraces, TraceServeOptions, TraceServer } from './serve';
import { memoryLogger, type MemoryLog } from '../../test/support/log';
import { agentTraceMetrics } from '../metrics/metrics';
import type { Histogram } from 'prom-client';

const T0 = 1_795_000_000;
const P = '192.0.2.1';
const GW = '198.51.100.7';
const A = 'dialog-a@pc33';
const B = 'dialog-b@gw';
/** A dialog whose INVITE was captured on Ethernet and its answer on a Linux cooked interface. */
const M = 'dialog-mixed@edge';
const BULK = 3500;
const BULK_PAYLOAD = 1200;

type Pkt = { sec: number; nsec: number; frame: Buffer };

function udpEth(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  return ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(sport, dport, payload)));
}

function writePcap(path: string, linkType: number, pkts: Pkt[]): void {
  const fd = openSync(path, 'w');
  const w = new PcapFileWriterSync(fd, { linkType, nanos: true });
  for (const p of pkts) w.write({ tsSec: p.sec, tsNsec: p.nsec, origLen: p.frame.length, data: p.frame });
  w.flush();
  closeSync(fd);
}

let dir = '';
let ring = '';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tf-trace-'));
  ring = join(dir, 'ring');
  const eth: Pkt[] = [
    { sec: T0, nsec: 100, frame: udpEth(P, GW, 5060, 5060, sipInvite(A)) },
    { sec: T0, nsec: 200, frame: udpEth(GW, P, 5060, 5060, sipResponse(200, 'OK', A)) },
    { sec: T0 + 1, nsec: 0, frame: udpEth('198.51.100.9', GW, 5060, 5060, sipInvite(B)) },
    { sec: T0 + 1, nsec: 10, frame: udpEth('198.51.100.20', '198.51.100.21', 5060, 5060, sipInvite(M)) },
  ];
  // Several MB from P: the large result, made of packets that are not SIP.
  for (let i = 0; i < BULK; i++) {
    const payload = Buffer.alloc(BULK_PAYLOAD, i & 0xff);
    payload.writeUInt32BE(i, 0);
    eth.push({ sec: T0 + 2 + Math.floor(i / 1000), nsec: (i % 1000) * 1000, frame: udpEth(P, '203.0.113.9', 40000, 40002, payload) });
  }
  eth.push({ sec: T0 + 10, nsec: 0, frame: udpEth(P, GW, 5060, 5060, sipResponse(200, 'OK', A, '314160 BYE')) });
  const cooked: Pkt[] = [{ sec: T0 + 1, nsec: 20, frame: sll(ETH_IPV4, ipv4({ src: '198.51.100.21', dst: '198.51.100.20', proto: 17 }, udp(5060, 5060, sipResponse(200, 'OK', M)))) }];
  writePcap(join(dir, 'eth.pcap'), 1, eth);
  writePcap(join(dir, 'cooked.pcap'), 113, cooked);
  const r = await importCaptures(ring, [join(dir, 'eth.pcap'), join(dir, 'cooked.pcap')]);
  assert.equal(r.packets, eth.length + cooked.length);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function waitFor<T>(what: string, f: () => T | undefined | null | false, ms = 8000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}


/** What writeResultPcap writes for the same query, or the error it throws. */
async function expected(ringDir: string, q: TraceQuery) {
  const r = runQuery(ringDir, buildQuerySpec(q), { mayWrite: false });
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      parts.push(c);
      cb();
    },
  });
  try {
    const w = await writeResultPcap(r, sink);
    return { ok: true as const, pcap: Buffer.concat(parts), packets: w.packets, messages: r.messages, truncated: r.truncated };
  } catch (e) {
    return { ok: false as const, error: (e as Error).message };
  } finally {
    closeResult(r);
  }
}

/** What the dispatcher saw of one trace, every message checked against the wire schemas. */
interface Seen {
  events: string[];
  chunks: Buffer[];
  seqs: number[];
  progress: TraceProgress[];
  done: TraceDone | null;
  error: string | null;
}

type ChunkHandler = (traceId: string, seq: number, ack: (a: ChunkAck) => void) => void;

/** A plain Socket.IO server playing the dispatcher's `/agent` namespace. */
class TestDispatcher {
  readonly sockets: ServerSocket[] = [];
  readonly traces = new Map<string, Seen>();
  readonly violations: string[] = [];
  onChunk: ChunkHandler = (_id, _seq, ack) => ack({ ok: true });
  onResult: (traceId: string, ack: (a: ChunkAck) => void) => void = (_id, ack) => ack({ ok: true });
  url = '';
  private http = createServer();
  private io = new Server(this.http, { serveClient: false, maxHttpBufferSize: AGENT_MESSAGE_MAX_BYTES });

  async start(): Promise<this> {
    this.io.of('/agent').on('connection', (s) => this.attach(s));
    await new Promise<void>((r) => this.http.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
    return this;
  }

  /** The connected agent socket (the newest connection). */
  agent(): ServerSocket | undefined {
    const s = this.sockets[this.sockets.length - 1];
    return s?.connected ? s : undefined;
  }

  seen(id: string): Seen {
    let s = this.traces.get(id);
    if (!s) this.traces.set(id, (s = { events: [], chunks: [], seqs: [], progress: [], done: null, error: null }));
    return s;
  }

  private attach(s: ServerSocket): void {
    this.sockets.push(s);
    s.on('agent:hello', (_h: unknown, ack: unknown) => typeof ack === 'function' && ack({ ok: true }));
    s.on('trace:started', (m: unknown) => {
      const r = parseMessage(traceRef, 'trace:started', m);
      if (!r.ok) return this.violations.push(r.error);
      this.seen(r.value.traceId).events.push('started');
    });
    s.on('trace:progress', (m: unknown) => {
      const r = parseMessage(traceProgress, 'trace:progress', m);
      if (!r.ok) return this.violations.push(r.error);
      const t = this.seen(r.value.traceId);
      t.events.push('progress');
      t.progress.push(r.value);
    });
    s.on('trace:chunk', (m: unknown, ack: (a: ChunkAck) => void) => {
      const r = parseMessage(traceChunk, 'trace:chunk', m);
      if (!r.ok) return this.violations.push(r.error);
      const t = this.seen(r.value.traceId);
      t.events.push('chunk');
      t.chunks.push(r.value.data);
      t.seqs.push(r.value.seq);
      this.onChunk(r.value.traceId, r.value.seq, ack);
    });
    s.on('trace:done', (m: unknown) => {
      const r = parseMessage(traceDone, 'trace:done', m);
      if (!r.ok) return this.violations.push(r.error);
      const t = this.seen(r.value.traceId);
      t.events.push('done');
      t.done = r.value;
    });
    s.on('trace:result', (m: unknown, ack: (a: ChunkAck) => void) => {
      const r = parseMessage(traceResult, 'trace:result', m);
      if (!r.ok) return this.violations.push(r.error);
      const t = this.seen(r.value.traceId);
      const { data, ...rest } = r.value;
      t.events.push('result');
      if (data) t.chunks.push(data);
      this.onResult(r.value.traceId, (a) => {
        ack(a);
        // As the dispatcher does: the host is done once its bytes are on disk (the ack).
        if (a.ok) t.done = { ...rest, chunks: data ? 1 : 0 };
        else t.error = `refused: ${a.error ?? ''}`;
      });
    });
    s.on('trace:error', (m: unknown) => {
      const r = parseMessage(traceFailure, 'trace:error', m);
      if (!r.ok) return this.violations.push(r.error);
      const t = this.seen(r.value.traceId);
      t.events.push('error');
      t.error = r.value.message;
    });
  }

  /** `result`: say that this dispatcher takes trace:result (dispatchers before it did not); `chunkBytes`: the chunk size offered (none before it). */
  async run(traceId: string, query: TraceQuery, result = false, chunkBytes?: number): Promise<RunAck> {
    const s = await waitFor('the agent to connect', () => this.agent());
    return (await s.timeout(5000).emitWithAck('trace:run', { traceId, query, ...(result ? { result: true as const } : {}), ...(chunkBytes ? { chunkBytes } : {}) })) as RunAck;
  }

  async ended(traceId: string, ms = 15_000): Promise<Seen> {
    return waitFor(`trace ${traceId} to end`, () => {
      const t = this.traces.get(traceId);
      return t && (t.done || t.error) ? t : null;
    }, ms);
  }

  async close(): Promise<void> {
    this.io.disconnectSockets(true);
    await new Promise<void>((r) => this.io.close(() => r()));
  }
}

interface Agent {
  link: DispatcherLink;
  traces: TraceServer;
  log: MemoryLog;
}

function startAgentSide(url: string, opts: Partial<TraceServeOptions> = {}): Agent {
  const log = memoryLogger();
  const status = { ring: { oldest: null, newest: null, bytes: 0, segments: 0 }, capture: {}, indexErrors: 0 };
  const link = connectDispatcher({ url, token: 't', name: 'edge1', hello: () => ({ version: 'test', hostname: 'h', interfaces: [], ...status }), status: () => status, logger: log.logger.child({ component: 'agent.link' }) });
  const traces = serveTraces(link.socket, { ringDir: ring, logger: log.logger.child({ component: 'agent.trace' }), ...opts });
  return { link, traces, log };
}

async function withFleet(opts: Partial<TraceServeOptions>, fn: (d: TestDispatcher, a: Agent) => Promise<void>): Promise<void> {
  const d = await new TestDispatcher().start();
  const a = startAgentSide(d.url, opts);
  try {
    await fn(d, a);
    assert.deepEqual(d.violations, [], 'every message the agent sent matches the wire schema');
  } finally {
    a.traces.close();
    a.link.close();
    await d.close();
  }
}

/** Checks a finished trace against writeResultPcap's output for the same query; `chunkBytes`: the chunk size expected. */
function assertSameAsLocal(t: Seen, want: Awaited<ReturnType<typeof expected>>, chunkBytes = CHUNK_BYTES): void {
  assert.ok(want.ok, 'the local query succeeds');
  assert.equal(t.error, null);
  assert.ok(t.done);
  assert.deepEqual(t.seqs, t.seqs.map((_, i) => i), 'chunks in seq order from 0 without gaps');
  // The PCAP writer's batches go as they are: at most a chunk, and all but the last at least half of one.
  t.chunks.forEach((c, i) => assert.ok(c.length <= chunkBytes && (i === t.chunks.length - 1 || c.length * 2 >= chunkBytes), `chunk ${i} holds ${c.length} bytes`));
  assert.ok(Buffer.concat(t.chunks).equals(want.pcap), 'the chunks reassemble into the same PCAP bytes');
  assert.equal(t.done.chunks, t.chunks.length);
  assert.equal(t.done.packets, want.packets);
  assert.equal(t.done.bytes, want.pcap.length, 'bytes: what the chunks held');
  assert.equal(t.done.truncated, want.truncated);
  assert.deepEqual(t.done.messages, want.messages);
  // started, progress before any chunk, and done last.
  assert.equal(t.events[0], 'started');
  assert.equal(t.events[1], 'progress');
  assert.equal(t.events[t.events.length - 1], 'done');
  for (let i = 1; i < t.progress.length; i++) assert.ok(t.progress[i].packets >= t.progress[i - 1].packets, 'progress never goes back');
  const last = t.progress[t.progress.length - 1];
  assert.ok(last.packets <= t.done.packets && last.bytes <= t.done.bytes);
}

function packetsOf(pcap: Buffer): Array<{ sec: number; nsec: number; data: Buffer }> {
  const p = new CaptureStreamParser('reassembled');
  const out = p.push(pcap).map((r) => ({ sec: r.tsSec, nsec: r.tsNsec, data: r.data }));
  assert.equal(p.end().tornBytes, 0);
  return out;
}

test('a small trace streams as one chunk equal to the local query output, with its SIP messages', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d) => {
    const q: TraceQuery = { callId: [A] };
    assert.deepEqual(await d.run('small', q), { accepted: true });
    const t = await d.ended('small');
    assertSameAsLocal(t, await expected(ring, q));
    assert.equal(t.chunks.length, 1);
    const pkts = packetsOf(Buffer.concat(t.chunks));
    assert.deepEqual(pkts.map((p) => [p.sec - T0, p.nsec]), [[0, 100], [0, 200], [10, 0]]);
    assert.deepEqual(t.done!.messages.map((m) => m.method ?? m.status), ['INVITE', 200, 200]);
  });
});

test('a result of several MB streams in chunks of up to CHUNK_BYTES with progress, byte-identical to the local query', { timeout: 30_000 }, async () => {
  await withFleet({}, async (d) => {
    const q: TraceQuery = { ip: [P] };
    assert.deepEqual(await d.run('large', q), { accepted: true });
    const t = await d.ended('large');
    const want = await expected(ring, q);
    assertSameAsLocal(t, want);
    assert.ok(t.chunks.length > 10, `more than 10 chunks (${t.chunks.length})`);
    assert.ok(t.done!.packets === BULK + 3, `every packet from ${P} (${t.done!.packets})`);
    // The 16th chunk's ack brings a progress message with what was sent so far.
    assert.ok(t.progress.length >= 2, `progress during the stream (${t.progress.length})`);
    const sixteen = t.chunks.slice(0, 16).reduce((n, c) => n + c.length, 0);
    assert.ok(t.progress.some((p) => p.bytes === sixteen && p.packets > 0), 'progress after the 16th chunk counts its bytes and packets');
    const pkts = packetsOf(Buffer.concat(t.chunks));
    assert.equal(pkts.length, BULK + 3);
    const bulk = pkts.filter((p) => p.data.length === 14 + 20 + 8 + BULK_PAYLOAD);
    assert.deepEqual(bulk.map((p) => p.data.readUInt32BE(42)), [...Array(BULK).keys()], 'the bulk packets in capture order');
  });
});

test('trace:run offers a chunk size: the agent sends chunks of it, MAX_CHUNK_BYTES at most; no offer, CHUNK_BYTES', { timeout: 60_000 }, async () => {
  await withFleet({}, async (d) => {
    const q: TraceQuery = { ip: [P] };
    const want = await expected(ring, q);
    for (const [id, offered, size] of [
      ['offer-512k', 512 * 1024, 512 * 1024],
      ['offer-64m', 64 * 1024 * 1024, MAX_CHUNK_BYTES],
      ['offer-none', undefined, CHUNK_BYTES],
    ] as const) {
      assert.deepEqual(await d.run(id, q, false, offered), { accepted: true });
      const t = await d.ended(id);
      assertSameAsLocal(t, want, size);
      assert.ok(t.chunks.slice(0, -1).some((c) => c.length * 4 > size * 3), `${id}: chunks near ${size} bytes (${t.chunks.slice(0, 3).map((c) => c.length).join(', ')}, ...)`);
    }
  });
});

test('at most CHUNKS_IN_FLIGHT chunks are in flight: the next waits for an ack once that many are out', { timeout: 30_000 }, async () => {
  await withFleet({}, async (d) => {
    const inFlight = new Set<number>();
    let most = 0;
    let acked = 0;
    d.onChunk = (_id, seq, ack) => {
      inFlight.add(seq);
      most = Math.max(most, inFlight.size);
      if (inFlight.size > CHUNKS_IN_FLIGHT) d.violations.push(`chunk ${seq} arrived while ${[...inFlight].join(', ')} were unacknowledged`);
      setTimeout(() => {
        inFlight.delete(seq);
        acked++;
        ack({ ok: true });
      }, 40);
    };
    const q: TraceQuery = { ip: [P], maxBytes: (CHUNKS_IN_FLIGHT + 2) * CHUNK_BYTES };
    assert.deepEqual(await d.run('slow', q), { accepted: true });
    const t = await d.ended('slow');
    assertSameAsLocal(t, await expected(ring, q));
    assert.equal(acked, t.chunks.length);
    assert.equal(most, Math.min(CHUNKS_IN_FLIGHT, t.chunks.length), 'the window is used');
  });
});

test('a bad query is refused in the ack with the query validator\'s message', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d, a) => {
    const cases: TraceQuery[] = [{ port: ['70000'] }, {}, { ip: ['not-an-ip'] }, { callId: [A], since: 'yesterday' }];
    for (const [i, q] of cases.entries()) {
      let refused: TracefleetError | null = null;
      try {
        buildQuerySpec(q);
      } catch (e) {
        refused = e as TracefleetError;
      }
      assert.ok(refused instanceof TracefleetError, 'the case is a bad query');
      // The validator's own code and field travel, so the dispatcher can show the mistake at its key.
      const msg = refused.message;
      assert.deepEqual(await d.run(`bad${i}`, q), { accepted: false, code: refused.code, field: refused.field, message: msg, error: msg });
    }
    // Events are ordered on the socket: once a later trace is done, nothing more comes for the refused ones.
    assert.deepEqual(await d.run('after-bad', { callId: [B] }), { accepted: true });
    await d.ended('after-bad');
    for (let i = 0; i < cases.length; i++) assert.equal(d.traces.get(`bad${i}`), undefined);
    assert.equal(a.traces.active(), 0);
  });
});

test('a malformed trace:run gets an error ack, or a log line without an ack, and the agent keeps working', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d, a) => {
    const s = await waitFor('the agent', () => d.agent());
    const ask = async (payload: unknown) => (await s.timeout(5000).emitWithAck('trace:run', payload)) as RunAck;
    const notObject = 'bad trace:run message: body: Expected object, received number';
    assert.deepEqual(await ask(42), { accepted: false, code: 'TF_AGENT_MESSAGE_INVALID', field: null, message: notObject, error: notObject });
    const r1 = await ask({ traceId: 'bad id!', query: { callId: [A] } });
    assert.equal(r1.accepted, false);
    assert.match(r1.error!, /bad trace:run message: traceId: trace ids are 1-64 letters/);
    assert.deepEqual([r1.code, r1.field], ['TF_AGENT_MESSAGE_INVALID', 'traceId']);
    const r2 = await ask({ traceId: 'x', query: { callId: [A], bogus: 1 } });
    assert.equal(r2.accepted, false);
    assert.match(r2.error!, /bad trace:run message: query/);
    const noQuery = 'bad trace:run message: query: Required';
    assert.deepEqual(await ask({ traceId: 'x' }), { accepted: false, code: 'TF_AGENT_MESSAGE_INVALID', field: 'query', message: noQuery, error: noQuery });
    // Without an ack callback the agent cannot say yes: it refuses in its log only.
    s.emit('trace:run', { traceId: 'no-ack', query: { callId: [A] } });
    s.emit('trace:run', 'garbage');
    await waitFor('the refusals logged', () => a.log.records.some((r) => r.msg === 'refused a trace:run' && /no-ack came without an ack callback/.test(String(r.reason))) && a.log.records.some((r) => r.msg === 'refused a trace:run' && /bad trace:run message: body/.test(String(r.reason))));
    const q: TraceQuery = { callId: [A] };
    assert.deepEqual(await d.run('good', q), { accepted: true });
    assertSameAsLocal(await d.ended('good'), await expected(ring, q));
    assert.equal(d.traces.get('no-ack'), undefined);
    assert.equal(d.traces.get('x'), undefined);
  });
});

test('trace:cancel mid-stream stops the chunks and ends the trace with "cancelled by the dispatcher"', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d, a) => {
    const s = await waitFor('the agent', () => d.agent());
    d.onChunk = (id, seq, ack) => {
      // The cancel reaches the agent before this ack: chunks 0 and 1 acked, it may have sent up to CHUNKS_IN_FLIGHT from 2 on, no more.
      if (seq === 2) s.emit('trace:cancel', { traceId: id });
      ack({ ok: true });
    };
    assert.deepEqual(await d.run('cancel-me', { ip: [P] }), { accepted: true });
    const t = await d.ended('cancel-me');
    assert.equal(t.error, 'cancelled by the dispatcher');
    assert.equal(t.done, null);
    const sent = [...t.seqs];
    await sleep(300);
    assert.deepEqual(t.seqs, sent, 'nothing sent after the trace ended');
    assert.ok(sent.length >= 3 && sent.length <= 2 + CHUNKS_IN_FLIGHT, `chunks ${sent.join(', ')}`);
    assert.deepEqual(sent, sent.map((_, i) => i));
    assert.equal(t.events[t.events.length - 1], 'error');
    assert.equal(a.traces.active(), 0);
    // A cancel for a trace that is not running is only logged.
    s.emit('trace:cancel', { traceId: 'unknown' });
    s.emit('trace:cancel', { traceId: 'bad id!' });
    await waitFor('the ignored cancels logged', () => a.log.records.some((r) => r.component === 'agent.trace' && r.traceId === 'unknown' && /not running here/.test(r.msg)) && a.log.records.some((r) => /bad trace:cancel message/.test(String(r.reason))));
  });
});

test('a chunk ack {ok:false} stops the trace with trace:error giving the reason', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d, a) => {
    d.onChunk = (_id, seq, ack) => ack(seq === 1 ? { ok: false, error: 'the store is full' } : { ok: true });
    assert.deepEqual(await d.run('refused', { ip: [P] }), { accepted: true });
    const t = await d.ended('refused');
    assert.equal(t.error, 'the dispatcher refused chunk 1: the store is full');
    const sent = [...t.seqs];
    await sleep(300);
    // Those already in flight when the refusal came, and nothing after.
    assert.deepEqual(t.seqs, sent);
    assert.ok(sent.length >= 2 && sent.length <= 1 + CHUNKS_IN_FLIGHT, `chunks ${sent.join(', ')}`);
    assert.deepEqual(sent, sent.map((_, i) => i));
    assert.equal(t.done, null);
    assert.equal(a.traces.active(), 0);
  });
});

test('the metrics count and time each search and trace by outcome', { timeout: 20_000 }, async () => {
  const metrics = agentTraceMetrics([]);
  const count = async (h: Histogram<'outcome'>, outcome: string) => (await h.get()).values.find((v) => v.metricName?.endsWith('_count') && v.labels.outcome === outcome)?.value ?? 0;
  await withFleet({ metrics }, async (d) => {
    assert.deepEqual(await d.run('counted', { callId: [A] }), { accepted: true });
    assert.ok((await d.ended('counted')).done);
    d.onChunk = (_id, _seq, ack) => ack({ ok: false, error: 'the store is full' });
    assert.deepEqual(await d.run('refused', { callId: [A] }), { accepted: true });
    assert.ok((await d.ended('refused')).error);
  });
  assert.equal(await count(metrics.queryDuration, 'ok'), 2);
  assert.equal(await count(metrics.traceDuration, 'done'), 1);
  assert.equal(await count(metrics.traceDuration, 'error'), 1);
  assert.equal(await count(metrics.queryDuration, 'error'), 0, 'a search that finished is not counted again when the trace fails');
});

test('an unacknowledged chunk times out into trace:error', { timeout: 20_000 }, async () => {
  await withFleet({ chunkAckTimeoutMs: 300 }, async (d, a) => {
    const acks: Array<(x: ChunkAck) => void> = [];
    d.onChunk = (_id, _seq, ack) => acks.push(ack);
    assert.deepEqual(await d.run('silent', { ip: [P] }), { accepted: true });
    const t = await d.ended('silent');
    assert.equal(t.error, 'the dispatcher did not acknowledge chunk 0 within 300 ms');
    // A late ack changes nothing.
    acks[0]({ ok: true });
    await sleep(200);
    // The window was sent, and nothing after it.
    assert.deepEqual(t.seqs, Array.from({ length: CHUNKS_IN_FLIGHT }, (_, i) => i));
    assert.equal(a.traces.active(), 0);
  });
});

test('a dispatcher disconnect mid-stream aborts the trace quietly; the next trace after reconnection works', { timeout: 30_000 }, async () => {
  await withFleet({}, async (d, a) => {
    const first = await waitFor('the agent', () => d.agent());
    d.onChunk = (_id, seq, ack) => {
      if (seq === 1) first.disconnect(true);
      else ack({ ok: true });
    };
    assert.deepEqual(await d.run('lost', { ip: [P] }), { accepted: true });
    await waitFor('the trace stopped on the agent', () => a.log.records.some((r) => r.msg === 'trace stopped' && r.traceId === 'lost' && r.reason === 'the dispatcher link was lost'));
    assert.equal(a.traces.active(), 0);
    const second = await waitFor('the agent to reconnect', () => (d.agent() !== first ? d.agent() : undefined));
    assert.notEqual(second, first);
    d.onChunk = (_id, _seq, ack) => ack({ ok: true });
    const q: TraceQuery = { ip: [P] };
    assert.deepEqual(await d.run('after-reconnect', q), { accepted: true });
    assertSameAsLocal(await d.ended('after-reconnect'), await expected(ring, q));
    const lost = d.seen('lost');
    assert.equal(lost.done, null);
    assert.equal(lost.error, null, 'nothing about the lost trace is sent on the new connection');
    assert.deepEqual(lost.seqs, [0, 1]);
  });
});

test('beyond the concurrency limit traces wait in a bounded queue (refused only when it is full), a queued one can be cancelled, and all finish', { timeout: 30_000 }, async () => {
  await withFleet({ maxConcurrent: 2, maxQueued: 2 }, async (d, a) => {
    const held: Array<() => void> = [];
    d.onChunk = (_id, _seq, ack) => held.push(() => ack({ ok: true }));
    assert.deepEqual(await d.run('c1', { callId: [A] }), { accepted: true });
    assert.deepEqual(await d.run('c2', { callId: [B] }), { accepted: true });
    await waitFor('both traces holding a chunk', () => held.length === 2);
    assert.equal(a.traces.active(), 2);
    assert.deepEqual(await d.run('c3', { callId: [A] }), { accepted: true, queued: 1 });
    assert.deepEqual(await d.run('q-cancel', { callId: [B] }), { accepted: true, queued: 2 });
    const r5 = await d.run('c5', { callId: [A] });
    assert.equal(r5.accepted, false);
    assert.match(r5.error!, /^this agent is running 2 traces and has 2 waiting, its limits: retry c5 when some have ended$/);
    assert.equal(r5.code, 'TF_AGENT_BUSY', 'busy is told from a bad trace: the dispatcher may retry it later');
    assert.deepEqual(await d.run('c1', { callId: [A] }), { accepted: false, ...refusal('TF_TRACE_ALREADY_RUNNING', 'trace c1 is already running on this agent') });
    assert.deepEqual(await d.run('c3', { callId: [A] }), { accepted: false, ...refusal('TF_TRACE_ALREADY_RUNNING', 'trace c3 is already running on this agent') });
    assert.equal(d.traces.get('c3'), undefined, 'a queued trace sends nothing until it starts');

    d.agent()!.emit('trace:cancel', { traceId: 'q-cancel' });
    const cancelled = await d.ended('q-cancel');
    assert.deepEqual(cancelled.events, ['error']);
    assert.equal(cancelled.error, 'cancelled by the dispatcher while it waited in the queue');

    d.onChunk = (_id, _seq, ack) => ack({ ok: true });
    for (const f of held) f();
    assertSameAsLocal(await d.ended('c1'), await expected(ring, { callId: [A] }));
    assertSameAsLocal(await d.ended('c2'), await expected(ring, { callId: [B] }));
    assertSameAsLocal(await d.ended('c3'), await expected(ring, { callId: [A] }));
    await waitFor('no trace running', () => a.traces.active() === 0);
    assert.deepEqual(await d.run('c5', { callId: [A] }), { accepted: true });
    assertSameAsLocal(await d.ended('c5'), await expected(ring, { callId: [A] }));
  });
});

test('failures after the ack end in trace:error: packets of two link types as the engine sees them, a ring gone', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d) => {
    const q: TraceQuery = { callId: [M] };
    const want = await expected(ring, q);
    assert.deepEqual(await d.run('mixed', q), { accepted: true });
    const t = await d.ended('mixed');
    // Whatever the engine does with two link types, the trace carries the same outcome.
    if (want.ok) assertSameAsLocal(t, want);
    else {
      assert.equal(t.error, want.error);
      assert.deepEqual(t.events, ['started', 'progress', 'error']);
    }
  });
  await withFleet({}, async (d) => {
    // A fresh fleet whose agent serves a ring directory that does not exist.
    const a2 = startAgentSide(d.url, { ringDir: join(dir, 'no-such-ring') });
    try {
      await waitFor('both agents connected', () => d.sockets.filter((s) => s.connected).length >= 2);
      const s = d.sockets.filter((x) => x.connected).find((x) => x !== d.sockets[0])!;
      const ack = (await s.timeout(5000).emitWithAck('trace:run', { traceId: 'gone', query: { callId: [A] } })) as RunAck;
      assert.deepEqual(ack, { accepted: true });
      const t = await d.ended('gone');
      assert.match(t.error!, /ring directory .*no-such-ring does not exist/);
      assert.deepEqual(t.events, ['started', 'error']);
    } finally {
      a2.traces.close();
      a2.link.close();
    }
  });
});

test('close() ends running traces with trace:error and stops serving', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d, a) => {
    const held: Array<() => void> = [];
    d.onChunk = (_id, _seq, ack) => held.push(() => ack({ ok: true }));
    assert.deepEqual(await d.run('shut', { ip: [P] }), { accepted: true });
    await waitFor('a chunk held', () => held.length >= 1);
    a.traces.close();
    const t = await d.ended('shut');
    assert.equal(t.error, 'the agent is shutting down');
    assert.equal(a.traces.active(), 0);
    held[0]();
    const s = d.agent()!;
    await assert.rejects(s.timeout(300).emitWithAck('trace:run', { traceId: 'ignored', query: { callId: [A] } }), 'no one answers trace:run after close');
  });
});

test('trace:done lists at most what the schema and the message size limit take, with a note saying so', () => {
  const r = runQuery(ring, buildQuerySpec({ callId: [A] }), { mayWrite: false });
  try {
    const many = { ...r, messagesMatched: 120_000, messages: Array.from({ length: 120_000 }, (_, i) => ({ ...r.messages[i % r.messages.length] })) };
    const bySize = doneMessage('t', many, { packets: 3, bytes: 100 }, 1, 900_000);
    assert.ok(parseMessage(traceDone, 'trace:done', bySize).ok);
    assert.ok(Buffer.byteLength(JSON.stringify(bySize)) <= 900_000, 'fits the dispatcher\'s message size');
    assert.ok(bySize.messages.length > 100 && bySize.messages.length < 120_000);
    assert.deepEqual(bySize.messages, many.messages.slice(0, bySize.messages.length));
    assert.match(bySize.notes[bySize.notes.length - 1], new RegExp(`only the first ${bySize.messages.length} of 120000 SIP messages are listed`));
    const bySchema = doneMessage('t', many, { packets: 3, bytes: 100 }, 1, 1e9);
    assert.equal(bySchema.messages.length, 100_000);
    assert.ok(parseMessage(traceDone, 'trace:done', bySchema).ok);
    const few = doneMessage('t', r, { packets: 3, bytes: 100 }, 1, 900_000);
    assert.deepEqual(few.messages, r.messages);
    assert.deepEqual(few.notes, r.notes);
    const noisy = doneMessage('t', { ...r, notes: Array.from({ length: 1500 }, (_, i) => `note ${i}`) }, { packets: 3, bytes: 100 }, 1, 900_000);
    assert.equal(noisy.notes.length, 1000);
    assert.equal(noisy.notes[999], '501 more notes left out');
  } finally {
    closeResult(r);
  }
});

test('a dispatcher that takes trace:result gets a small result in that one message: the same bytes, packets and messages as the chunked way', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d) => {
    const q: TraceQuery = { callId: [A] };
    assert.deepEqual(await d.run('whole', q, true), { accepted: true });
    const t = await d.ended('whole');
    const want = await expected(ring, q);
    assert.ok(want.ok);
    assert.deepEqual(t.events, ['result'], 'no started, progress, chunk or done: the one message');
    assert.equal(t.error, null);
    assert.ok(Buffer.concat(t.chunks).equals(want.pcap), 'the same PCAP bytes as the local query');
    assert.equal(t.done!.bytes, want.pcap.length);
    assert.equal(t.done!.packets, want.packets);
    assert.equal(t.done!.truncated, want.truncated);
    assert.deepEqual(t.done!.messages, want.messages);
    // The same query asked the old way still comes as started, progress, chunk, done.
    assert.deepEqual(await d.run('chunked', q), { accepted: true });
    const old = await d.ended('chunked');
    assertSameAsLocal(old, want);
    assert.ok(Buffer.concat(old.chunks).equals(Buffer.concat(t.chunks)));
  });
});

test('a result bigger than one chunk goes the chunked way even to a dispatcher that takes trace:result, byte-identical', { timeout: 30_000 }, async () => {
  await withFleet({}, async (d) => {
    const q: TraceQuery = { ip: [P] };
    assert.deepEqual(await d.run('large-whole', q, true), { accepted: true });
    const t = await d.ended('large-whole');
    assertSameAsLocal(t, await expected(ring, q));
    assert.ok(!t.events.includes('result'));
    assert.ok(t.chunks.length > 10);
  });
});

test('a trace:result refused by the dispatcher ends the trace with trace:error giving the reason', { timeout: 20_000 }, async () => {
  await withFleet({}, async (d, a) => {
    d.onResult = (_id, ack) => ack({ ok: false, ...refusal('TF_SPOOL_FAILED', 'disk full') });
    assert.deepEqual(await d.run('refused-whole', { callId: [A] }, true), { accepted: true });
    const t = await waitFor('the trace:error', () => (d.traces.get('refused-whole')?.events.includes('error') ? d.traces.get('refused-whole') : null));
    assert.match(t.error!, /disk full/);
    assert.equal(a.traces.active(), 0);
  });
});
