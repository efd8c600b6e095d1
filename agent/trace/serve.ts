import { AgentToDispatcherEvents, CHUNK_BYTES, CHUNKS_IN_FLIGHT, chunkBytesFor, LegsAnswer, MAX_LEG_CALL_IDS, RunAck, TraceDone, TraceResult, chunkAck, legsAsk, traceDone, traceRun } from '../../shared/protocol/agent';
import { parseMessage, refusal, refusedError, traceRef } from '../../shared/protocol/common';
import { errorBody, TracefleetError } from '../../shared/errors/catalogue';
import { QuerySpec, buildQuerySpec } from '../../shared/query/query';
import { MAX_STREAMS } from '../../shared/rtp/figures';
import { CALL_IDS_KEPT, QueryResult, closeResult, runQueryYielding, writeResultPcap } from '../query/engine';
import type { DispatcherSocket } from '../link/client';
import type { LegCallIdRule } from '../query/legs';
import { ChunkWriter } from './chunks';
import { RecordCounter } from './record-count';
import { type Logger, componentLogger } from '../../shared/log/log';
import type { AgentTraceMetrics } from '../metrics/metrics';

export interface TraceServeOptions {
  /** The ring the agent captures into; only read (the live agent owns its indexes). */
  ringDir: string;
  logger?: Logger;
  /** Traces running at once; more wait in the queue (default 2). */
  maxConcurrent?: number;
  /** Traces waiting for one of those at most; more are refused (default 100). */
  maxQueued?: number;
  /** How long the dispatcher may take to acknowledge a chunk (default 30 s). */
  chunkAckTimeoutMs?: number;
  correlationHeader?: string;
  /** The operator's Call-ID rules for traces that ask for legs (`--leg-callid-rule`). */
  legCallIdRules?: readonly LegCallIdRule[];
  /**
   * Most bytes of JSON the message list of a trace:done may take (default
   * 900 000). The dispatcher's Socket.IO server drops a connection that sends
   * a message over its maxHttpBufferSize (AGENT_MESSAGE_MAX_BYTES, 2 MiB; 1e6 before it),
   * which would lose the trace; the PCAP is chunked, the list is not.
   */
  maxDoneBytes?: number;
  /** Where searches and traces are counted and timed (the agent's /metrics). */
  metrics?: AgentTraceMetrics;
  /** The most PCAP bytes this agent puts in one trace:chunk, whatever trace:run offers (default MAX_CHUNK_BYTES). */
  maxChunkBytes?: number;
}

export interface TraceServer {
  /** Stops serving: running traces end with trace:error "the agent is shutting down". */
  close(): void;
  /** Traces running now. */
  active(): number;
}

const PROGRESS_MS = 500;
/** How long a search may run before a dispatcher that takes trace:result hears trace:started. */
const STARTED_GRACE_MS = 200;
/** trace:done lists about 3,000 summaries within its size limit; keeping more would only cost the call server memory. */
export const SUMMARIES_KEPT = 10_000;
const PROGRESS_EVERY_CHUNKS = 16;
const MAX_ERROR_CHARS = 4096;
// The schema's own limits, so that a trace:done is never refused by the dispatcher's parseMessage.
const MAX_MESSAGES = traceDone.shape.messages._def.maxLength?.value ?? 100_000;
const MAX_NOTES = traceDone.shape.notes._def.maxLength?.value ?? 1000;

interface RunningTrace {
  id: string;
  /** The dispatcher takes trace:result (its trace:run said so). */
  whole: boolean;
  /** PCAP bytes per trace:chunk: what trace:run offered, up to MAX_CHUNK_BYTES (CHUNK_BYTES when it offered nothing). */
  chunkBytes: number;
  /** Why the trace was stopped from outside (cancel, link lost, shutdown); null while it may go on. */
  stopped: string | null;
  /** Whether the dispatcher is told about that stop with trace:error. */
  notify: boolean;
  /** Fail the chunks waiting for their acks, so a stop does not wait for the ack timeout. */
  abortAcks: Set<(e: Error) => void>;
  /** Rejects once the trace is stopped. */
  aborted: Promise<never>;
  abort: (e: Error) => void;
}

/**
 * The agent's side of a fleet trace, on the dispatcher link's socket.
 *
 * trace:run is validated and its query checked before the ack; beyond
 * maxConcurrent an accepted trace waits in a bounded queue (the ack says
 * `queued`), refused only when that is full. A running trace sends trace:started, trace:progress (before the first chunk,
 * then every 500 ms or 16 chunks), the result's PCAP as trace:chunk messages
 * of up to what trace:run offered (CHUNK_BYTES when it offered nothing; MAX_CHUNK_BYTES at most), up to CHUNKS_IN_FLIGHT of them ahead of their acks, and trace:done.
 * Every accepted trace ends with exactly one trace:done or trace:error while
 * the link is up: a failure, a refused or unacknowledged chunk, a
 * trace:cancel ("cancelled by the dispatcher") and close() each send
 * trace:error. A lost link stops every trace silently (the dispatcher marks
 * them lost). Nothing here throws into the socket or the capture.
 */
export function serveTraces(socket: DispatcherSocket, opts: TraceServeOptions): TraceServer {
  const log = componentLogger('agent.trace', opts.logger);
  const maxConcurrent = opts.maxConcurrent ?? 2;
  const maxQueued = opts.maxQueued ?? 100;
  /**
   * Accepted traces waiting for a running one to end, oldest first. The queue
   * is here, not on the dispatcher: the agent alone knows when a slot is free
   * (a cancelled or timed-out trace ends here later than the dispatcher
   * stops waiting for it), and its limit is its own setting.
   */
  const waiting: Array<{ t: RunningTrace; spec: QuerySpec }> = [];
  const ackTimeoutMs = opts.chunkAckTimeoutMs ?? 30_000;
  const maxDoneBytes = opts.maxDoneBytes ?? 900_000;
  const running = new Map<string, RunningTrace>();

  const emit = <E extends 'trace:started' | 'trace:progress' | 'trace:done' | 'trace:error'>(event: E, payload: Parameters<AgentToDispatcherEvents[E]>[0]): void => {
    // Socket.IO would buffer it for the next connection, where it means nothing.
    if (socket.connected) (socket.emit as (e: E, p: typeof payload) => void)(event, payload);
  };

  const stop = (t: RunningTrace, reason: string, notify: boolean): void => {
    if (t.stopped) return;
    t.stopped = reason;
    t.notify = notify;
    const e = new Error(reason);
    for (const a of [...t.abortAcks]) a(e);
    t.abort(e);
  };

  const sendChunk = (t: RunningTrace, seq: number, data: Buffer): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (t.stopped) return reject(new Error(t.stopped));
      if (!socket.connected) return reject(new Error('the dispatcher link was lost'));
      let settled = false;
      const settle = (e: Error | null) => {
        if (settled) return;
        settled = true;
        t.abortAcks.delete(settle);
        if (e) reject(e);
        else resolve();
      };
      t.abortAcks.add(settle);
      socket.timeout(ackTimeoutMs).emit('trace:chunk', { traceId: t.id, seq, data }, (err: Error | null, ack: unknown) => {
        if (err) return settle(new Error(`the dispatcher did not acknowledge chunk ${seq} within ${ackTimeoutMs} ms`));
        const a = parseMessage(chunkAck, 'trace:chunk ack', ack);
        if (!a.ok) settle(new Error(a.error));
        else if (!a.value.ok) settle(refusedError(a.value, `the dispatcher refused chunk ${seq}`));
        else settle(null);
      });
    });

  /** trace:result, resolved once the dispatcher has it on its disk (its ack), rejected as a refused chunk is. */
  const sendResult = (t: RunningTrace, r: TraceResult): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (!socket.connected) return reject(new Error('the dispatcher link was lost'));
      socket.timeout(ackTimeoutMs).emit('trace:result', r, (err: Error | null, ack: unknown) => {
        if (err) return reject(new Error(`the dispatcher did not acknowledge the result within ${ackTimeoutMs} ms`));
        const a = parseMessage(chunkAck, 'trace:result ack', ack);
        if (!a.ok) reject(new Error(a.error));
        else if (!a.value.ok) reject(refusedError(a.value, 'the dispatcher refused the result'));
        else resolve();
      });
    });

  const runTrace = async (t: RunningTrace, spec: QuerySpec): Promise<void> => {
    let result: QueryResult | null = null;
    let startedTimer: NodeJS.Timeout | null = null;
    const endTrace = opts.metrics?.traceDuration.startTimer();
    let endQuery = opts.metrics?.queryDuration.startTimer();
    const queryEnded = (outcome: string) => {
      endQuery?.({ outcome });
      endQuery = undefined;
    };
    try {
      // With 'trace done' below, the agent's part of a trace's time (bench/ttfp reads both).
      log.debug({ traceId: t.id }, 'trace begun');
      // A dispatcher that takes trace:result hears of a quick small result once, whole; trace:started goes
      // out only when the search takes longer than STARTED_GRACE_MS or the result needs chunks.
      let started = false;
      const sendStarted = () => {
        if (started) return;
        started = true;
        emit('trace:started', { traceId: t.id });
      };
      if (t.whole) {
        startedTimer = setTimeout(sendStarted, STARTED_GRACE_MS);
        startedTimer.unref();
      } else sendStarted();
      // A search of a big ring can take seconds: it yields between segments, so heartbeats, cancels and
      // other traces go on, and an empty progress now and then tells the dispatcher this host is not silent.
      let searchBeat = Date.now();
      result = await runQueryYielding(opts.ringDir, spec, {
        mayWrite: false,
        correlationHeader: opts.correlationHeader,
        legCallIdRules: opts.legCallIdRules,
        maxMessages: SUMMARIES_KEPT,
        maxCallIds: CALL_IDS_KEPT,
        stopped: () => t.stopped,
        onStep: () => {
          if (Date.now() - searchBeat < PROGRESS_MS) return;
          searchBeat = Date.now();
          sendStarted();
          emit('trace:progress', { traceId: t.id, packets: 0, bytes: 0 });
        },
      });
      queryEnded(t.stopped ? 'stopped' : 'ok');
      if (t.stopped) throw new Error(t.stopped);

      // Progress: the PCAP bytes acknowledged so far, and the packets in them, counted from the stream's framing.
      const counter = new RecordCounter(`trace ${t.id} result`);
      let bytes = 0;
      let lastProgress = 0;
      const progress = () => {
        lastProgress = Date.now();
        emit('trace:progress', { traceId: t.id, packets: counter.count, bytes });
      };
      // With trace:result the first progress waits for a first chunk sent (none when the result goes whole).
      if (!t.whole) progress();
      const out = new ChunkWriter(
        async (seq, data) => {
          if (seq === 0 && t.whole) {
            sendStarted();
            progress();
          }
          await sendChunk(t, seq, data);
          bytes += data.length;
          counter.push(data, out.recordsIn(data));
          if ((seq + 1) % PROGRESS_EVERY_CHUNKS === 0 || Date.now() - lastProgress >= PROGRESS_MS) progress();
        },
        t.chunkBytes,
        CHUNKS_IN_FLIGHT,
        t.whole,
      );
      const writing = writeResultPcap(result, out);
      writing.catch(() => {}); // its failure is handled below; a stop may win the race first
      const written = await Promise.race([writing, t.aborted]);
      if (t.stopped) throw new Error(t.stopped);
      const whole = t.whole ? out.whole() : null;
      const one = whole && !started ? resultMessage(t.id, result, written.packets, whole, maxDoneBytes) : null;
      if (one) {
        if (startedTimer) clearTimeout(startedTimer);
        const acked = sendResult(t, one);
        acked.catch(() => {}); // raced below
        // Logged as sent, as trace:done is (bench/ttfp times the agents' part up to it); the ack may still refuse it.
        log.info({ traceId: t.id, packets: written.packets, chunks: 0, whole: true, truncated: result.truncated }, 'trace done');
        await Promise.race([acked, t.aborted]);
        if (t.stopped) throw new Error(t.stopped);
      } else {
        if (whole) {
          // Too much beside the PCAP for one message, or trace:started already out: the chunked way.
          sendStarted();
          // Chunk 0's send says progress itself (see above).
          if (whole.length === 0) progress();
          await Promise.race([out.release(), t.aborted]);
          if (t.stopped) throw new Error(t.stopped);
        }
        emit('trace:done', doneMessage(t.id, result, { packets: written.packets, bytes: out.bytes }, out.chunks, maxDoneBytes));
        log.info({ traceId: t.id, packets: written.packets, chunks: out.chunks, truncated: result.truncated }, 'trace done');
      }
      endTrace?.({ outcome: 'done' });
    } catch (e) {
      queryEnded(t.stopped ? 'stopped' : 'error');
      endTrace?.({ outcome: t.stopped ? 'stopped' : 'error' });
      const message = t.stopped ?? (e as Error).message ?? String(e);
      if (!t.stopped || t.notify) emit('trace:error', { traceId: t.id, message: message.slice(0, MAX_ERROR_CHARS) });
      log.warn({ traceId: t.id, reason: message }, t.stopped ? 'trace stopped' : 'trace failed');
    } finally {
      if (startedTimer) clearTimeout(startedTimer);
      if (result) closeResult(result);
      running.delete(t.id);
      const next = waiting.shift();
      if (next) begin(next.t, next.spec);
    }
  };

  const begin = (t: RunningTrace, spec: QuerySpec): void => {
    running.set(t.id, t);
    void runTrace(t, spec);
  };

  const onRun = (...args: unknown[]): void => {
    const last = args[args.length - 1];
    const ack = typeof last === 'function' ? (last as (a: RunAck) => void) : null;
    const reply = (a: RunAck) => {
      if (!a.accepted) log.warn({ code: a.code, reason: a.message }, 'refused a trace:run');
      if (!ack) return;
      try {
        ack(a);
      } catch (e) {
        log.error({ err: e }, 'trace:run ack failed');
      }
    };
    try {
      const m = parseMessage(traceRun, 'trace:run', args[0]);
      if (!m.ok) return reply({ accepted: false, ...refusal('TF_AGENT_MESSAGE_INVALID', m.error, m.field) });
      const { traceId, query, result: takesResult, chunkBytes } = m.value;
      if (!ack) return reply({ accepted: false, ...refusal('TF_AGENT_MESSAGE_INVALID', `trace:run for ${traceId} came without an ack callback; the dispatcher must ask for a RunAck`) });
      if (running.has(traceId) || waiting.some((w) => w.t.id === traceId)) return reply({ accepted: false, ...refusal('TF_TRACE_ALREADY_RUNNING', `trace ${traceId} is already running on this agent`) });
      const full = running.size >= maxConcurrent;
      if (full && waiting.length >= maxQueued) {
        return reply({ accepted: false, ...refusal('TF_AGENT_BUSY', `this agent is running ${running.size} traces and has ${waiting.length} waiting, its limits: retry ${traceId} when some have ended`) });
      }
      let spec: QuerySpec;
      try {
        spec = buildQuerySpec(query);
      } catch (e) {
        return reply({ accepted: false, ...(e instanceof TracefleetError ? errorBody(e) : refusal('TF_AGENT_MESSAGE_INVALID', (e as Error).message)) });
      }
      let abort: (e: Error) => void = () => {};
      const aborted = new Promise<never>((_, reject) => (abort = reject));
      aborted.catch(() => {}); // rejects on every stop, raced only while the PCAP is written
      const t: RunningTrace = { id: traceId, whole: takesResult === true, chunkBytes: Math.min(chunkBytesFor(chunkBytes), opts.maxChunkBytes ?? Number.MAX_SAFE_INTEGER), stopped: null, notify: false, abortAcks: new Set(), aborted, abort };
      if (full) {
        waiting.push({ t, spec });
        reply({ accepted: true, queued: waiting.length });
      } else {
        reply({ accepted: true });
        begin(t, spec);
      }
    } catch (e) {
      log.error({ err: e }, 'trace:run handler failed');
      reply({ accepted: false, ...refusal('TF_AGENT_FAILED', `the agent failed to start the trace: ${(e as Error).message}`) });
    }
  };

  /** Searches for legs running now: each reads indexes like a trace, so they are bounded like traces. */
  let searching = 0;
  const onLegs = (...args: unknown[]): void => {
    const last = args[args.length - 1];
    if (typeof last !== 'function') return log.warn('trace:legs without an ack callback ignored');
    const reply = (a: LegsAnswer) => {
      try {
        (last as (a: LegsAnswer) => void)(a);
      } catch (e) {
        log.error({ err: e }, 'trace:legs ack failed');
      }
    };
    const m = parseMessage(legsAsk, 'trace:legs', args[0]);
    if (!m.ok) return reply({ ok: false, ...refusal('TF_AGENT_MESSAGE_INVALID', m.error, m.field) });
    if (searching >= maxConcurrent) return reply({ ok: false, ...refusal('TF_AGENT_BUSY', `this agent is searching ${searching} traces for legs already`) });
    let spec: QuerySpec;
    try {
      spec = buildQuerySpec(m.value.query);
    } catch (e) {
      return reply({ ok: false, ...(e instanceof TracefleetError ? errorBody(e) : refusal('TF_AGENT_MESSAGE_INVALID', (e as Error).message)) });
    }
    searching++;
    runQueryYielding(opts.ringDir, spec, { mayWrite: false, correlationHeader: opts.correlationHeader, legCallIdRules: opts.legCallIdRules, selectOnly: true })
      .then((r) => {
        closeResult(r);
        if (r.callIds.length > MAX_LEG_CALL_IDS) log.info({ traceId: m.value.traceId, found: r.callIds.length }, `more dialogs than a trace:legs answer holds; the first ${MAX_LEG_CALL_IDS} are sent`);
        reply({ ok: true, callIds: r.callIds.slice(0, MAX_LEG_CALL_IDS) });
      })
      .catch((e: Error) => reply({ ok: false, ...refusal('TF_AGENT_FAILED', `the search for legs failed: ${e.message}`) }))
      .finally(() => searching--);
  };

  const onCancel = (data: unknown): void => {
    const m = parseMessage(traceRef, 'trace:cancel', data);
    if (!m.ok) return log.warn({ reason: m.error }, 'bad trace:cancel ignored');
    const w = waiting.findIndex((x) => x.t.id === m.value.traceId);
    if (w >= 0) {
      waiting.splice(w, 1);
      emit('trace:error', { traceId: m.value.traceId, message: 'cancelled by the dispatcher while it waited in the queue' });
      return;
    }
    const t = running.get(m.value.traceId);
    if (!t) return log.info({ traceId: m.value.traceId }, 'trace:cancel for a trace not running here ignored');
    stop(t, 'cancelled by the dispatcher', true);
  };

  const onDisconnect = (): void => {
    // The dispatcher marks them lost; a new connection's dispatcher knows nothing of them.
    waiting.length = 0;
    for (const t of running.values()) stop(t, 'the dispatcher link was lost', false);
  };

  socket.on('trace:run', onRun);
  socket.on('trace:cancel', onCancel);
  socket.on('trace:legs', onLegs);
  socket.on('disconnect', onDisconnect);

  return {
    close() {
      socket.off('trace:run', onRun);
      socket.off('trace:cancel', onCancel);
      socket.off('trace:legs', onLegs);
      socket.off('disconnect', onDisconnect);
      for (const { t } of waiting.splice(0)) emit('trace:error', { traceId: t.id, message: 'the agent is shutting down' });
      for (const t of running.values()) stop(t, 'the agent is shutting down', true);
    },
    active: () => running.size,
  };
}

/**
 * The final message, its lists cut to what the schema and the dispatcher's
 * message size take, with a note saying so. `bytes` is what the chunks held
 * (the PCAP's size): the dispatcher checks it against what it received.
 */
export function doneMessage(
  traceId: string,
  r: QueryResult,
  written: { packets: number; bytes: number },
  chunks: number,
  maxDoneBytes: number,
): TraceDone {
  let notes = [...r.notes];
  let messages = r.messages.slice(0, MAX_MESSAGES);
  // Streams first, within a third of the message: a call's few streams are worth more than its thousandth message.
  let streamBytes = 0;
  let s = 0;
  const allStreams = r.streams.slice(0, MAX_STREAMS);
  for (; s < allStreams.length; s++) {
    streamBytes += Buffer.byteLength(JSON.stringify(allStreams[s])) + 1;
    if (streamBytes > maxDoneBytes / 3) break;
  }
  const streams = allStreams.slice(0, s);
  if (streams.length < r.streams.length) notes.push(`only the first ${streams.length} of ${r.streams.length} RTP streams have figures here (the trace:done size limit)`);
  const budget = maxDoneBytes - Buffer.byteLength(JSON.stringify(notes)) - Buffer.byteLength(JSON.stringify(streams)) - 1024;
  let size = 0;
  let n = 0;
  for (; n < messages.length; n++) {
    size += Buffer.byteLength(JSON.stringify(messages[n])) + 1;
    if (size > budget) break;
  }
  messages = messages.slice(0, n);
  if (messages.length < r.messagesMatched) {
    notes.push(`only the first ${messages.length} of ${r.messagesMatched} SIP messages are listed (the trace:done size limit); the PCAP holds every packet of them`);
  }
  if (notes.length > MAX_NOTES) notes = [...notes.slice(0, MAX_NOTES - 1), `${notes.length - MAX_NOTES + 1} more notes left out`];
  return { traceId, packets: written.packets, bytes: written.bytes, chunks, truncated: r.truncated, messages, notes, streams };
}

/**
 * The whole result as one trace:result, or null when it does not fit one: the PCAP and the done
 * message's lists together within maxDoneBytes (under the dispatcher's message limit; the chunked way
 * keeps them apart, the lists cut to that size).
 */
export function resultMessage(traceId: string, r: QueryResult, packets: number, pcap: Buffer, maxDoneBytes: number): TraceResult | null {
  if (pcap.length > CHUNK_BYTES) return null;
  const { chunks: _c, ...done } = doneMessage(traceId, r, { packets, bytes: pcap.length }, pcap.length > 0 ? 1 : 0, maxDoneBytes);
  // Whatever doneMessage() left out to fit would be missing here but not on the chunked way.
  if (done.messages.length < Math.min(r.messages.length, MAX_MESSAGES) || done.notes.length !== r.notes.length) return null;
  if (pcap.length + Buffer.byteLength(JSON.stringify(done)) > maxDoneBytes) return null;
  return pcap.length > 0 ? { ...done, data: pcap } : done;
}
