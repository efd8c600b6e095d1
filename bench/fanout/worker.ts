import { monitorEventLoopDelay } from 'node:perf_hooks';
import { AgentHello, chunkAck, PROTOCOL_VERSION, traceRun } from '../../shared/protocol/agent';
import { parseMessage } from '../../shared/protocol/common';
import { wallNow } from '../common/dispatcher';
import { agentResult } from './result';
import { AgentRecord, FromWorker, ToWorker, toWorker } from './messages';
import { clientFrame, RawSocket, textFrame } from './raw-socket';

/*
 * One process of simulated agents (forked by bench/fanout/main.ts): opens a
 * connection to /agent per name, says hello, and answers every trace:run as
 * a real agent does (agent/trace/serve.ts) but with a small prepared result:
 * ack accepted, then trace:result (the result whole) when trace:run says the
 * dispatcher takes it, else (and with --old-agents) trace:started, one
 * trace:chunk waiting for its ack, trace:done. Each step's wall-clock time
 * is recorded per agent and sent to the parent when it asks.
 *
 * The connections are raw-socket.ts's frames written by hand, and each
 * agent's answers are bytes made before the run (its result's frames, all
 * but the trace's id and the ack id): the agents share the dispatcher's
 * cores, and what they spend there is the dispatcher's loss.
 */

const CONNECT_CONCURRENCY = 25;
// Generous: on a starved machine a simulator's event loop, not the dispatcher, can hold a hello ack back for tens of seconds.
const CONNECT_TIMEOUT_MS = 60_000;

const send = (m: FromWorker): void => {
  process.send?.(m);
};

/** An agent's result for the coming run as bytes: the JSON after the trace's id, and the PCAP's own frame. */
interface PreparedAnswer {
  /** `,"packets":…,"data":{"_placeholder":true,"num":0}}]`: trace:result's packet after its traceId. */
  resultTail: Buffer;
  /** `,"seq":0,"data":{…placeholder}}]`: the old way's trace:chunk after its traceId. */
  chunkTail: Buffer;
  /** `,"chunks":1,"packets":…}]`: the old way's trace:done after its traceId. */
  doneTail: Buffer;
  /** The binary frame carrying the PCAP (the attachment of trace:result or trace:chunk). */
  pcapFrame: Buffer;
}

interface Agent {
  name: string;
  index: number;
  socket: RawSocket;
}

const agents: Agent[] = [];
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

/** Each agent's answer for the coming run (by agent index), made on 'arm', before the trace is asked. */
let prepared = new Map<number, PreparedAnswer>();
let preparedFor = '';
/** Traces whose trace:run this worker checked whole once; its other agents check the id and the offer. */
const checked = new Set<string>();
const runHead = traceRun.pick({ traceId: true, result: true });
const PLACEHOLDER = { _placeholder: true, num: 0 };

/** The JSON of an object without its opening brace: what follows `{"traceId":"…"` in a packet. */
const tail = (o: object, extra = ''): Buffer => Buffer.from(`${extra}${JSON.stringify(o).slice(1)}]`);

function prepare(a: { name: string; index: number }, tag: string): PreparedAnswer {
  const r = agentResult(a.name, tag, a.index, Date.now());
  return {
    resultTail: tail({ ...r.done, data: PLACEHOLDER }, ','),
    chunkTail: tail({ seq: 0, data: PLACEHOLDER }, ','),
    doneTail: tail({ chunks: 1, ...r.done }, ','),
    pcapFrame: clientFrame(r.pcap, true),
  };
}

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

function answer(a: Agent, data: unknown, ackId: number | null): void {
  const runAt = wallNow();
  const m = parseRun(data);
  if (ackId === null) return;
  const s = a.socket;
  if (!m.ok) return s.write(textFrame(s.ackHead(ackId), JSON.stringify([{ accepted: false, error: m.error }])));
  const { traceId } = m.value;
  let byAgent = records.get(traceId);
  if (!byAgent) records.set(traceId, (byAgent = new Map()));
  const rec: AgentRecord = { i: a.index, runAt, startedAt: 0, chunkAckAt: 0, doneAt: 0 };
  byAgent.set(a.index, rec);
  const whole = m.value.result === true && !oldAgents;
  const id = JSON.stringify(traceId);
  const ack = textFrame(s.ackHead(ackId), '[{"accepted":true}]');
  // A real agent with a quick small result says nothing more until its trace:result (agent/trace/serve.ts).
  s.write(whole ? ack : [...ack, ...textFrame(s.eventHead(false), `["trace:started",{"traceId":${id}}]`)]);
  rec.startedAt = wallNow();
  // The result a turn later, as a real agent's query yields: a worker simulates thousands of agents, and
  // sending each one's result before reading the next trace:run made the later agents' receipt wait for
  // the simulator, not the dispatcher.
  setImmediate(() => sendResult(a, traceId, id, rec, whole));
}

function sendResult(a: Agent, traceId: string, idJson: string, rec: AgentRecord, whole: boolean): void {
  const s = a.socket;
  const p = prepared.get(a.index) ?? prepare(a, preparedFor || traceId);
  const acked = (what: string, then: () => void) => (args: unknown[]) => {
    rec.chunkAckAt = wallNow();
    const ok = parseMessage(chunkAck, `${what} ack`, args[0]);
    if (!ok.ok || !ok.value.ok) {
      rec.error = ok.ok ? ok.value.error ?? `${what} refused` : ok.error;
      if (!whole) s.emit('trace:error', { traceId, message: `bench agent: ${rec.error}` });
    } else then();
    rec.doneAt = wallNow();
  };
  const event = (name: string, ack: (args: unknown[]) => void) => `${s.eventHead(true)}${s.takeAckId(ack)}["${name}",{"traceId":${idJson}`;
  if (whole) {
    s.write([...textFrame(event('trace:result', acked('trace:result', () => {})), p.resultTail), p.pcapFrame]);
    return;
  }
  const done = () => s.write(textFrame(s.eventHead(false), `["trace:done",{"traceId":${idJson}`, p.doneTail));
  s.write([...textFrame(event('trace:chunk', acked('trace:chunk', done)), p.chunkTail), p.pcapFrame]);
}

async function connectOne(url: string, token: string, name: string, index: number): Promise<void> {
  let a: Agent | null = null;
  const socket = await RawSocket.connect(
    url,
    '/agent',
    { token, name },
    {
      event: (ev, args, ackId) => {
        if (ev === 'trace:run' && a) answer(a, args[0], ackId);
      },
      closed: (reason) => {
        // Whatever this agent was doing for a trace ends here, said so in its record.
        for (const byAgent of records.values()) {
          const r = byAgent.get(index);
          if (r && !r.doneAt) {
            r.error = `connection lost: ${reason}`;
            r.doneAt = wallNow();
          }
        }
      },
    },
    CONNECT_TIMEOUT_MS,
  );
  a = { name, index, socket };
  agents.push(a);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`agent ${name}: no hello ack within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    socket.emit('agent:hello', hello(name), (args) => {
      clearTimeout(t);
      const h = args[0] as { ok?: boolean; error?: string } | undefined;
      if (h?.ok) resolve();
      else reject(new Error(`agent ${name}: hello refused: ${h?.error ?? 'no reason'}`));
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

/**
 * Waits (bounded) until every agent of this worker finished `traceId`, then reports what it has; an agent
 * still waiting for an ack then is reported failed (one deadline here, not a timer per agent).
 */
async function collect(traceId: string, expect: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const finished = () => [...(records.get(traceId)?.values() ?? [])].filter((r) => r.doneAt > 0).length;
  while (finished() < expect && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const recs = [...(records.get(traceId)?.values() ?? [])];
  for (const r of recs) if (!r.doneAt && !r.error) r.error = `no ack to its result within ${timeoutMs / 1000} s of being asked for the records`;
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
      prepared = new Map(agents.map((a) => [a.index, prepare(a, tag)]));
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
      for (const a of agents) a.socket.close();
      setTimeout(() => process.exit(0), 200).unref();
      return;
  }
});

// The parent gone: nothing left to simulate for.
process.on('disconnect', () => process.exit(0));
