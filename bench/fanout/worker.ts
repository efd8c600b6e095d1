import { monitorEventLoopDelay } from 'node:perf_hooks';
import { io, Socket } from 'socket.io-client';
import { AgentHello, chunkAck, PROTOCOL_VERSION, traceRun } from '../../shared/protocol/agent';
import { parseMessage } from '../../shared/protocol/common';
import { wallNow } from '../common/dispatcher';
import { AgentResult, agentResult } from './result';
import { AgentRecord, FromWorker, ToWorker, toWorker } from './messages';

/*
 * One process of simulated agents (forked by bench/fanout/main.ts): opens a
 * Socket.IO connection to /agent per name, says hello, and answers every
 * trace:run as a real agent does (agent/trace/serve.ts) but with a small
 * prepared result: ack accepted, then trace:result (the result whole) when
 * trace:run says the dispatcher takes it, else (and with --old-agents)
 * trace:started, one trace:chunk waiting for its ack, trace:done. Each
 * step's wall-clock time is recorded per agent
 * and sent to the parent when it asks.
 */

const CONNECT_CONCURRENCY = 25;
// Generous: on a starved machine a simulator's event loop, not the dispatcher, can hold a hello ack back for tens of seconds.
const CONNECT_TIMEOUT_MS = 60_000;
const CHUNK_ACK_TIMEOUT_MS = 60_000;

const send = (m: FromWorker): void => {
  process.send?.(m);
};

const sockets: Socket[] = [];
const agents: Array<{ name: string; index: number }> = [];
/** Per trace, per agent index. */
const records = new Map<string, Map<number, AgentRecord>>();
const lag = monitorEventLoopDelay({ resolution: 10 });

const hello = (name: string): AgentHello => ({
  protocol: PROTOCOL_VERSION,
  version: 'bench-fanout',
  hostname: name,
  interfaces: ['eth0'],
  ring: { oldest: null, newest: null, bytes: 0, segments: 0 },
  capture: { eth0: { packets: 0, dropped: 0, ifDropped: 0, running: true } },
  indexErrors: 0,
});

/** Answer as agents before trace:result did (started, chunk, done), even to a dispatcher that takes it. */
let oldAgents = false;

/** Each agent's result for the coming run (by agent index), made on 'arm', before the trace is asked. */
let prepared = new Map<number, AgentResult>();
let preparedFor = '';
/** Traces whose trace:run this worker checked whole once; its other agents check the id and the offer. */
const checked = new Set<string>();
const runHead = traceRun.pick({ traceId: true, result: true });

/**
 * The trace's own query is checked whole once per worker (a real agent checks every trace:run, on its
 * own CPU; here thousands of agents share the dispatcher's two cores, and each check took about 100 µs).
 */
function parseRun(data: unknown): ReturnType<typeof parseMessage<{ traceId: string; result?: true }>> {
  const id = (data as { traceId?: unknown } | null)?.traceId;
  if (typeof id === 'string' && checked.has(id)) return parseMessage(runHead, 'trace:run', data);
  const m = parseMessage(traceRun, 'trace:run', data);
  // Bounded: cleared when the trace's records are collected.
  if (m.ok) checked.add(m.value.traceId);
  return m;
}

function answer(socket: Socket, name: string, index: number, data: unknown, ack: unknown): void {
  const runAt = wallNow();
  const m = parseRun(data);
  if (typeof ack !== 'function') return;
  if (!m.ok) return (ack as (a: unknown) => void)({ accepted: false, error: m.error });
  const { traceId } = m.value;
  let byAgent = records.get(traceId);
  if (!byAgent) records.set(traceId, (byAgent = new Map()));
  const rec: AgentRecord = { i: index, runAt, startedAt: 0, chunkAckAt: 0, doneAt: 0 };
  byAgent.set(index, rec);
  (ack as (a: unknown) => void)({ accepted: true });
  const whole = m.value.result === true && !oldAgents;
  // A real agent with a quick small result says nothing more until its trace:result (agent/trace/serve.ts).
  if (!whole) socket.emit('trace:started', { traceId });
  rec.startedAt = wallNow();
  // The result a turn later, as a real agent's query yields: a worker simulates thousands of agents, and
  // building and sending each one's result before reading the next trace:run made the later agents'
  // receipt wait for the simulator, not the dispatcher.
  setImmediate(() => sendResult(socket, name, index, traceId, rec, whole));
}

function sendResult(socket: Socket, name: string, index: number, traceId: string, rec: AgentRecord, whole: boolean): void {
  const r = prepared.get(index) ?? agentResult(name, preparedFor || traceId, index, Date.now());
  const acked = (what: string, then: () => void) => (err: Error | null, a: unknown) => {
    rec.chunkAckAt = wallNow();
    const ok = parseMessage(chunkAck, `${what} ack`, a);
    if (err || !ok.ok || !ok.value.ok) {
      rec.error = err ? err.message : ok.ok ? ok.value.error ?? `${what} refused` : ok.error;
      if (!whole) socket.emit('trace:error', { traceId, message: `bench agent: ${rec.error}` });
    } else then();
    rec.doneAt = wallNow();
  };
  if (whole) {
    socket.timeout(CHUNK_ACK_TIMEOUT_MS).emit('trace:result', { traceId, ...r.done, data: r.pcap }, acked('trace:result', () => {}));
    return;
  }
  socket.timeout(CHUNK_ACK_TIMEOUT_MS).emit('trace:chunk', { traceId, seq: 0, data: r.pcap }, acked('trace:chunk', () => socket.emit('trace:done', { traceId, chunks: 1, ...r.done })));
}

function connectOne(url: string, token: string, name: string, index: number): Promise<void> {
  // Websocket only: one TCP connection per agent from the start (a real agent
  // upgrades from long-polling, which costs the connect, not the traces).
  const socket = io(`${url}/agent`, { auth: { token, name }, forceNew: true, transports: ['websocket'], reconnection: false, timeout: CONNECT_TIMEOUT_MS });
  sockets.push(socket);
  agents.push({ name, index });
  socket.on('trace:run', (data: unknown, ack: unknown) => answer(socket, name, index, data, ack));
  return new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent ${name}: no hello ack within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    socket.once('connect_error', (e: Error) => {
      clearTimeout(t);
      reject(new Error(`agent ${name}: ${e.message}`));
    });
    socket.once('connect', () => {
      socket.emit('agent:hello', hello(name), (a: { ok?: boolean; error?: string }) => {
        clearTimeout(t);
        if (a?.ok) resolve();
        else reject(new Error(`agent ${name}: hello refused: ${a?.error ?? 'no reason'}`));
      });
    });
  });
}

async function start(url: string, token: string, names: string[], firstIndex: number): Promise<void> {
  const t0 = wallNow();
  let next = 0;
  const lane = async () => {
    while (next < names.length) {
      const i = next++;
      await connectOne(url, token, names[i], firstIndex + i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, names.length) }, lane));
  send({ type: 'ready', agents: names.length, ms: wallNow() - t0 });
}

/** Waits (bounded) until every agent of this worker finished `traceId`, then reports what it has. */
async function collect(traceId: string, expect: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const finished = () => [...(records.get(traceId)?.values() ?? [])].filter((r) => r.doneAt > 0).length;
  while (finished() < expect && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const recs = [...(records.get(traceId)?.values() ?? [])];
  records.delete(traceId);
  checked.delete(traceId);
  prepared = new Map();
  lag.disable();
  send({ type: 'records', traceId, records: recs, lagMaxMs: lag.max / 1e6, lagP99Ms: lag.percentile(99) / 1e6 });
}

process.on('message', (raw: unknown) => {
  const m = toWorker.safeParse(raw);
  if (!m.success) return send({ type: 'error', message: `bad message from the bench: ${m.error.issues[0].message}` });
  const msg: ToWorker = m.data;
  switch (msg.type) {
    case 'start':
      oldAgents = msg.oldAgents;
      start(msg.url, msg.token, msg.names, msg.firstIndex).catch((e: Error) => send({ type: 'error', message: e.message }));
      return;
    case 'arm': {
      // The results of real agents are their own CPU's work: made here before the trace, not in its start.
      const tag = `bench-fanout-${msg.run}`;
      prepared = new Map(agents.map((a) => [a.index, agentResult(a.name, tag, a.index, Date.now())]));
      preparedFor = tag;
      lag.reset();
      lag.enable();
      send({ type: 'armed', run: msg.run });
      return;
    }
    case 'collect':
      void collect(msg.traceId, msg.expect, msg.timeoutMs);
      return;
    case 'stop':
      for (const s of sockets) s.close();
      setTimeout(() => process.exit(0), 200).unref();
      return;
  }
});

// The parent gone: nothing left to simulate for.
process.on('disconnect', () => process.exit(0));
