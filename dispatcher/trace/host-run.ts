import type { ZodType } from 'zod';
import type { Logger } from '../../shared/log/log';
import { ChunkAck, MAX_CHUNK_BYTES, runAck, traceChunk, traceDone, traceFailure, traceProgress, traceResult } from '../../shared/protocol/agent';
import { TraceUpdate } from '../../shared/protocol/client';
import { parseMessage, refusal, refusedError, traceRef } from '../../shared/protocol/common';
import { TraceQuery } from '../../shared/query/query';
import type { AgentSocket } from '../fleet/server';
import type { HostFinal, Spool } from './spool';
import { SpoolFeed } from './spool-feed';
import type { DeadlineSweep } from './watchdog';

export interface HostRunTimeouts {
  /** How long an agent may take to accept a trace:run (ms). */
  runAckMs: number;
  /** How long an agent that accepted may stay silent (ms): it sends progress while it works. */
  idleMs: number;
  /** How long a trace may wait in a busy agent's queue before it is given up (ms). */
  queuedMs: number;
}

export interface HostRunContext {
  traceId: string;
  host: string;
  query: TraceQuery;
  socket: AgentSocket;
  spool: Spool;
  timeouts: HostRunTimeouts;
  /** The trace's one timer: the run's timeouts are deadlines it looks at. */
  sweep: DeadlineSweep;
  /** Live state for clients (not stored). */
  update(u: TraceUpdate): void;
  /** The host is finished: its final state is to be spooled and stored. Called once. */
  finished(final: HostFinal): void;
  /** Counters for /metrics. */
  count(what: 'chunk' | 'protocol_error', bytes?: number): void;
  /** After each chunk is on disk: `bytes` received in all, in the spool file `feed` follows. */
  grew?(bytes: number, feed: SpoolFeed): void;
  /** The trace machinery's logger: the run binds its trace and host to it when it first logs. */
  log: Logger;
}

type Phase = 'asking' | 'queued' | 'accepted' | 'started' | 'final';

/**
 * One host's part of a trace, on the dispatcher the host's agent is
 * connected to: asks the agent, writes each chunk to the spool before
 * acknowledging it (so the agent's next chunk waits for the disk: neither
 * side holds a result in memory), and ends in exactly one final state.
 */
export class HostRun {
  private phase: Phase = 'asking';
  /** The spool file for readers that follow it while it is written; ended or aborted when the run is final. */
  private feed: SpoolFeed | null = null;
  private nextSeq = 0;
  private received = 0;
  private packets = 0;
  /** When the armed timeout fires (performance.now() ms), 0 when none is: read by the trace's sweep. */
  deadline = 0;
  private onDeadline: (() => void) | null = null;
  /** Chunks received and not yet written (acked): the idle timer waits for them. */
  private chunksWriting = 0;
  /** Writes in flight to the spool: the final state waits for them. */
  private writing: Promise<void> = Promise.resolve();
  private bound: Logger | null = null;

  constructor(private readonly c: HostRunContext) {}

  /** Made when first used: a pino child per host was about 60 ms of a 2,000-host trace's start, and most hosts log nothing. */
  private get log(): Logger {
    return (this.bound ??= this.c.log.child({ traceId: this.c.traceId, host: this.c.host }));
  }

  /** Debug records mark the steps bench/ttfp times; checked first so that no host's logger is made for nothing. */
  private debug(msg: string): void {
    if (this.c.log.isLevelEnabled('debug')) this.log.debug(msg);
  }

  get isFinal(): boolean {
    return this.phase === 'final';
  }

  get socketId(): string {
    return this.c.socket.id;
  }

  start(): void {
    const { traceId, query, host } = this.c;
    // No "queued" update: the trace's view (trace:start's answer) lists every host queued already, and at
    // 10,000 hosts those updates were 10,000 objects and ten 1,000-update messages in the start.
    this.arm(this.c.timeouts.runAckMs, () => this.fail('unreachable', `agent ${host} did not answer the trace request within ${this.c.timeouts.runAckMs / 1000} s`));
    // The trace's sweep, not socket.timeout(): Socket.IO keeps that one running after a disconnect or cancel.
    this.c.sweep.watch(this);
    // Debug records mark the steps bench/ttfp times (each host's trace:run sent, its trace:done received).
    this.debug('trace:run sent');
    this.c.socket.emit('trace:run', { traceId, query, result: true, chunkBytes: MAX_CHUNK_BYTES }, (ack: unknown) => {
      if (this.phase !== 'asking') return;
      const a = parseMessage(runAck, 'trace:run ack', ack);
      if (!a.ok) return this.protocolError(a.error);
      if (!a.value.accepted) return this.fail('error', refusedError(a.value, `agent ${host} refused the trace`).message);
      if (a.value.queued !== undefined) {
        // The agent is busy: the host stays `queued` (silently: its link's heartbeats say it is alive) until trace:started.
        this.phase = 'queued';
        const s = this.c.timeouts.queuedMs / 1000;
        this.arm(this.c.timeouts.queuedMs, () => {
          this.c.socket.emit('trace:cancel', { traceId });
          this.fail('error', `the trace waited ${s} s in agent ${host}'s queue (its other traces took that long); retry it later`);
        });
        return;
      }
      this.phase = 'accepted';
      this.arm(this.c.timeouts.idleMs, () => this.silent());
    });
  }

  /** A trace:* message from this host's agent about this trace. */
  handle(event: string, data: unknown, ack: (r: unknown) => void): void {
    if (this.phase === 'final') {
      if (event === 'trace:chunk') ack({ ok: false, ...refusal('TF_TRACE_OVER', `trace ${this.c.traceId} is over on the dispatcher`) } satisfies ChunkAck);
      return;
    }
    if (this.phase === 'asking' || this.phase === 'queued') this.phase = 'accepted'; // the ack may arrive after the first message
    // A host whose chunk waits for our disk is not silent: it cannot send on before that chunk's ack, and a
    // fleet trace's 10,000 first chunks queued behind the spool past the idle timeout (all lost, at load 18).
    // Its silence counts from the ack on.
    if (event === 'trace:chunk' || event === 'trace:result' || this.chunksWriting > 0) this.disarm();
    else this.arm(this.c.timeouts.idleMs, () => this.silent());
    switch (event) {
      case 'trace:started': {
        const m = parseMessage(traceRef, event, data);
        if (!m.ok) return this.protocolError(m.error);
        this.markStarted();
        return;
      }
      case 'trace:progress': {
        const m = parseMessage(traceProgress, event, data);
        if (!m.ok) return this.protocolError(m.error);
        this.markStarted();
        this.packets = m.value.packets;
        this.emitUpdate('started', { packets: m.value.packets, bytes: m.value.bytes });
        return;
      }
      case 'trace:chunk': {
        const c = this.parseAcked(traceChunk, event, data, ack);
        if (!c) return;
        if (c.seq !== this.nextSeq) {
          const msg = `chunk ${c.seq} arrived where chunk ${this.nextSeq} was expected`;
          ack({ ok: false, ...refusal('TF_CHUNK_OUT_OF_ORDER', msg) } satisfies ChunkAck);
          return this.protocolError(msg);
        }
        this.markStarted();
        this.spoolChunk(c.data, ack);
        return;
      }
      case 'trace:result': {
        // started, progress, the one chunk and done in one message (a small result; trace:run said we take it).
        const r = this.parseAcked(traceResult, event, data, ack);
        if (!r) return;
        const size = r.data?.length ?? 0;
        const wrong = this.nextSeq > 0 ? `a trace:result came after ${this.nextSeq} chunks` : r.bytes !== size ? `the agent says its result is ${r.bytes} bytes, ${size} arrived` : null;
        if (wrong) {
          ack({ ok: false, ...refusal('TF_AGENT_MESSAGE_INVALID', wrong) } satisfies ChunkAck);
          return this.protocolError(wrong);
        }
        // No "started" update of its own: the host's final one follows as soon as the bytes are on disk.
        this.phase = 'started';
        if (r.data && size > 0) this.spoolChunk(r.data, ack);
        else void this.writing.then(() => ack({ ok: true } satisfies ChunkAck));
        const chunks = this.nextSeq;
        void this.writing.then(() => {
          if (this.phase === 'final') return;
          // Anything after it (a chunk) broke the protocol, as a chunk after trace:done does.
          if (this.nextSeq !== chunks || this.received !== r.bytes) return this.protocolError(`the agent sent more after its trace:result`);
          this.finish({ state: 'done', packets: r.packets, bytes: r.bytes, truncated: r.truncated, messages: r.messages, streams: r.streams ?? [], hasPcap: this.received > 0 }, r.notes);
        });
        return;
      }
      case 'trace:done': {
        const m = parseMessage(traceDone, event, data);
        if (!m.ok) return this.protocolError(m.error);
        const d = m.value;
        this.debug('trace:done received');
        void this.writing.then(() => {
          if (this.phase === 'final') return;
          if (d.chunks !== this.nextSeq) return this.protocolError(`the agent says it sent ${d.chunks} chunks, ${this.nextSeq} arrived`);
          if (d.bytes !== this.received) return this.protocolError(`the agent says it sent ${d.bytes} bytes, ${this.received} arrived`);
          this.finish({ state: 'done', packets: d.packets, bytes: d.bytes, truncated: d.truncated, messages: d.messages, streams: d.streams ?? [], hasPcap: this.received > 0 }, d.notes);
        });
        return;
      }
      case 'trace:error': {
        const m = parseMessage(traceFailure, event, data);
        if (!m.ok) return this.protocolError(m.error);
        void this.writing.then(() => this.fail('error', `agent ${this.c.host}: ${m.value.message}`));
        return;
      }
    }
  }

  /** The agent's connection ended. */
  gone(): void {
    if (this.phase === 'final') return;
    if (this.phase === 'asking') this.fail('unreachable', `agent ${this.c.host} disconnected before answering the trace request`);
    else if (this.phase === 'queued') this.fail('unreachable', `agent ${this.c.host} disconnected while the trace waited in its queue`);
    else void this.writing.then(() => this.fail('lost', `agent ${this.c.host} disconnected mid-trace; what it sent before is kept`));
  }

  cancel(): void {
    if (this.phase === 'final') return;
    this.c.socket.emit('trace:cancel', { traceId: this.c.traceId });
    void this.writing.then(() => this.fail('cancelled', 'cancelled; what the host sent before is kept'));
  }

  /** The dispatcher is shutting down: what arrived stays in the spool, recovered on restart. */
  abandon(): void {
    this.disarm();
    this.c.sweep.unwatch(this);
    this.phase = 'final';
    this.feed?.abort(new Error('the dispatcher is stopping; the host is finished from its spool file on the next start'));
  }

  /** A message that has an ack (chunk, result), validated; a malformed one is refused in its ack and breaks the protocol. */
  private parseAcked<T>(schema: ZodType<T>, event: string, data: unknown, ack: (r: unknown) => void): T | null {
    const m = parseMessage(schema, event, data);
    if (m.ok) return m.value;
    ack({ ok: false, ...refusal('TF_AGENT_MESSAGE_INVALID', m.error, m.field) } satisfies ChunkAck);
    this.protocolError(m.error);
    return null;
  }

  /** Writes a chunk to the spool, then acks it (the agent's next chunk waits for our disk); the next seq is taken now. */
  private spoolChunk(bytes: Buffer, ack: (r: unknown) => void): void {
    const first = this.nextSeq === 0;
    this.nextSeq++;
    this.feed ??= new SpoolFeed(this.c.spool.pcapPath(this.c.traceId, this.c.host));
    const feed = this.feed;
    this.chunksWriting++;
    const written = () => {
      if (--this.chunksWriting === 0 && this.phase !== 'final') this.arm(this.c.timeouts.idleMs, () => this.silent());
    };
    this.writing = this.writing.then(() =>
      this.c.spool.appendPcap(this.c.traceId, this.c.host, bytes, first).then(
        async () => {
          this.received += bytes.length;
          this.c.count('chunk', bytes.length);
          feed.grew(this.received, bytes);
          this.c.grew?.(this.received, feed);
          // The ack waits for the file's followers (the live upload) to be near its end, so that they take the bytes
          // from the feed's window, not back from the disk; the next chunk's write waits with it.
          await feed.caughtUp();
          written();
          ack({ ok: true } satisfies ChunkAck);
        },
        (err: Error) => {
          written();
          ack({ ok: false, ...refusal('TF_SPOOL_FAILED', 'the dispatcher could not write the chunk to its disk') } satisfies ChunkAck);
          this.fail('error', `the dispatcher could not spool ${this.c.host}'s result: ${err.message} (check the dispatcher's --data-dir disk)`);
        },
      ),
    );
  }

  private markStarted(): void {
    if (this.phase === 'started') return;
    this.phase = 'started';
    this.emitUpdate('started');
  }

  private silent(): void {
    const s = this.c.timeouts.idleMs / 1000;
    if (this.phase === 'started') void this.writing.then(() => this.fail('lost', `agent ${this.c.host} went silent for ${s} s mid-trace; what it sent before is kept`));
    else this.fail('unreachable', `agent ${this.c.host} accepted the trace but did not start it within ${s} s`);
  }

  private protocolError(msg: string): void {
    this.c.count('protocol_error');
    this.log.warn({ reason: msg }, 'agent broke the protocol');
    void this.writing.then(() => this.fail('error', `agent ${this.c.host} broke the protocol: ${msg}`));
  }

  private fail(state: 'error' | 'unreachable' | 'lost' | 'cancelled', error: string): void {
    if (this.phase === 'final') return;
    this.finish({ state, packets: this.packets, bytes: this.received, truncated: false, error, messages: [], hasPcap: this.received > 0 }, []);
  }

  private finish(f: HostFinal, notes: string[]): void {
    if (this.phase === 'final') return;
    this.phase = 'final';
    this.disarm();
    this.c.sweep.unwatch(this);
    const done = async () => {
      let final = f;
      if (f.state !== 'done' && f.hasPcap) {
        // A run cut short may end mid-record: keep the whole records.
        try {
          const t = await this.c.spool.trimPcap(this.c.traceId, this.c.host);
          final = { ...f, packets: t.packets, bytes: t.bytes, hasPcap: t.bytes > 0 };
        } catch (e) {
          notes.push(`could not cut its spooled PCAP back to whole records (${(e as Error).message}); it is stored as received`);
        }
      }
      // The followers' bytes are the stored file's only when nothing was cut from what they followed.
      if (final.hasPcap) this.feed?.end(final.bytes);
      else this.feed?.abort(new Error('the host ended with no whole record'));
      for (const n of notes) this.log.info(n);
      this.emitUpdate(final.state, { packets: final.packets, bytes: final.bytes, truncated: final.truncated, error: final.error });
      this.c.finished(final);
    };
    // A timeout may end the run while a chunk is still being written: its bytes count.
    void this.writing.then(done);
  }

  private emitUpdate(state: string, extra: Partial<TraceUpdate> = {}): void {
    this.c.update({
      traceId: this.c.traceId,
      host: this.c.host,
      state,
      packets: this.packets,
      bytes: this.received,
      at: new Date().toISOString(),
      ...extra,
    });
  }

  /** The sweep found the deadline passed. */
  expire(): void {
    const f = this.onDeadline;
    this.disarm();
    f?.();
  }

  private arm(ms: number, f: () => void): void {
    this.deadline = performance.now() + ms;
    this.onDeadline = f;
  }

  private disarm(): void {
    this.deadline = 0;
    this.onDeadline = null;
  }
}
