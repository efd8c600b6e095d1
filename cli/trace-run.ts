import { z } from 'zod';
import { traceUpdate, TraceUpdate, traceView, TraceView } from '../shared/protocol/client';
import type { TraceRequest } from '../shared/query/query';
import type { ClientToDispatcherEvents } from '../shared/protocol/client';
import { ClientSocket, DispatcherClient } from './api-client';
import { EXIT, receivedError, TracefleetError } from '../shared/errors/catalogue';
import { CliError } from './errors';
import type { ProgressSink } from './progress';
import { NO_TIMING, type TimingSink } from './timing';
import { isFinalTrace, StateChange, TraceTracker } from './trace-state';

export interface FollowOptions {
  progress: ProgressSink;
  /** Give up waiting (and cancel the trace) after this long. */
  timeoutMs: number;
  /** REST polls while waiting: the fallback for updates lost between dispatchers or during a reconnection. */
  pollMs?: number;
  /** How long the dispatcher may be out of reach (socket down and polls failing) before giving up. */
  lostMs?: number;
  /** How long trace:start/watch/cancel acks may take. */
  ackTimeoutMs?: number;
  /** How long a cancelled trace may take to become final after --timeout. */
  settleMs?: number;
  /** Ctrl-C: cancel the trace and return at once. */
  signal?: AbortSignal;
  /** --timing: marks start_sent, start_ack, final and final_view. */
  timing?: TimingSink;
  /**
   * Called once, as soon as the trace is known final with a merged PCAP:
   * its download need not wait for the final view read after (one round
   * trip less before the first packet).
   */
  onMerged?: (traceId: string) => void;
}

export interface FollowResult {
  trace: TraceView;
  /** final: the trace ended by itself; timeout: --timeout cancelled it; interrupted: Ctrl-C cancelled it. */
  outcome: 'final' | 'timeout' | 'interrupted';
}

const MAX_BUFFERED = 10_000;

const startAck = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), trace: traceView }),
  z.object({ ok: z.literal(false), error: z.string(), code: z.string(), field: z.string().nullish() }),
]);

class Interrupted extends Error {}

/** Emits with an ack and a time limit; the ack validated. */
async function ask<E extends 'trace:start' | 'trace:watch' | 'trace:cancel'>(socket: ClientSocket, event: E, data: Parameters<ClientToDispatcherEvents[E]>[0], ms: number): Promise<z.infer<typeof startAck>> {
  let raw: unknown;
  try {
    // One event at a time for the compiler: the three share their ack's shape.
    raw = await (socket.timeout(ms) as ClientSocket).emitWithAck(event as 'trace:start', data as TraceRequest);
  } catch {
    throw new CliError(`the dispatcher did not answer ${event} within ${ms / 1000} s`, EXIT.FAILED);
  }
  const r = startAck.safeParse(raw);
  if (!r.success) throw new CliError(`the dispatcher's answer to ${event} is not what this tracefleet understands: is the dispatcher the same version?`, EXIT.FAILED);
  return r.data;
}

/**
 * Starts a trace on the /client socket and follows it to its end.
 *
 * The dispatcher publishes some updates before the start ack (a host
 * known but not connected is unreachable at once) and the socket only joins
 * the trace's room with the ack, so: updates are kept from the start, the
 * ack's view is the base, a trace:watch right after brings the state so far,
 * a REST poll every pollMs covers what the socket misses (reconnections,
 * another dispatcher), and a final state from any of them ends the wait.
 */
export async function followTrace(client: DispatcherClient, socket: ClientSocket, req: TraceRequest, opts: FollowOptions): Promise<FollowResult> {
  const pollMs = opts.pollMs ?? 2000;
  const lostMs = opts.lostMs ?? 60_000;
  const ackMs = opts.ackTimeoutMs ?? 30_000;
  const settleMs = opts.settleMs ?? 30_000;
  const progress = opts.progress;
  const timing = opts.timing ?? NO_TIMING;

  const buffered: TraceUpdate[] = [];
  let tracker: TraceTracker | null = null;
  let lastContact = Date.now();
  let badUpdates = 0;
  const notes = new Set<string>();
  const noteOnce = (s: string) => {
    if (notes.has(s)) return;
    notes.add(s);
    progress.note(s);
  };

  let reachFinal: () => void = () => {};
  const finalReached = new Promise<void>((r) => (reachFinal = r));
  let mergedTold = false;
  const onFinal = () => {
    timing.mark('final');
    const v = tracker?.view();
    if (v?.merged && !mergedTold) {
      mergedTold = true;
      opts.onMerged?.(v.id);
    }
    reachFinal();
  };
  let fail: (e: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => (fail = reject));
  failed.catch(() => {});
  const applied = (changes: StateChange[]) => {
    progress.update(tracker!.view(), changes);
    if (tracker!.final) onFinal();
  };

  /** One update checked and applied (or buffered until the start's ack); the changes it made. */
  const take = (data: unknown): StateChange[] => {
    const u = traceUpdate.safeParse(data);
    if (!u.success) {
      if (++badUpdates === 1) noteOnce('ignoring trace updates this tracefleet does not understand: is the dispatcher the same version?');
      return [];
    }
    if (!tracker) {
      if (buffered.length < MAX_BUFFERED) buffered.push(u.data);
      return [];
    }
    return tracker.applyUpdate(u.data);
  };
  const onUpdate = (data: unknown) => {
    const changes = take(data);
    if (tracker) applied(changes);
  };
  // Several hosts' updates in one message: shown once, after all are applied.
  const onUpdates = (data: unknown) => {
    if (!Array.isArray(data)) return void take(data);
    const changes = data.flatMap(take);
    if (tracker) applied(changes);
  };
  const watch = async () => {
    if (!tracker) return;
    try {
      const a = await ask(socket, 'trace:watch', { traceId: tracker.id }, ackMs);
      if (a.ok) applied(tracker.applyView(a.trace));
      else noteOnce(`watching the trace failed (${a.error}); polling instead`);
    } catch (e) {
      noteOnce(`${(e as Error).message}; polling instead`);
    }
  };
  const onConnect = () => {
    lastContact = Date.now();
    // A new connection is in no room: watch again, which also brings what was missed.
    void watch();
  };
  const onDisconnect = (reason: string) => {
    if (reason !== 'io client disconnect') progress.note(`lost the connection to the dispatcher (${reason}); reconnecting, polling meanwhile`);
  };
  const interrupted = new Promise<never>((_, reject) => {
    if (opts.signal?.aborted) reject(new Interrupted());
    opts.signal?.addEventListener('abort', () => reject(new Interrupted()), { once: true });
  });
  interrupted.catch(() => {});

  socket.on('trace:update', onUpdate);
  socket.on('trace:updates', onUpdates);
  socket.on('connect', onConnect);
  socket.on('disconnect', onDisconnect);
  let poll: NodeJS.Timeout | null = null;
  let timeout: NodeJS.Timeout | null = null;
  try {
    // The start ack is awaited even after Ctrl-C: the trace may be running, and only its id lets us cancel it.
    timing.mark('start_sent');
    const a = await ask(socket, 'trace:start', req, ackMs).catch((e: CliError) => {
      throw new CliError(`${e.message}; the trace may have started anyway: see tracefleet traces`, EXIT.FAILED);
    });
    if (!a.ok) throw receivedError(a, `the dispatcher refused the trace: ${a.error}`);
    timing.mark('start_ack');
    const t = new TraceTracker(a.trace);
    tracker = t;
    const early = t.view();
    let changes: StateChange[] = [];
    for (const u of buffered.splice(0)) changes = changes.concat(t.applyUpdate(u));
    // Hosts already past queued in the ack (unreachable ones) are changes worth a line too.
    const known = early.hosts.filter((h) => h.state !== 'queued' && !changes.some((c) => c.host === h.host));
    progress.update(t.view(), [...known.map((h) => ({ host: h.host, from: null, to: h.state, progress: h })), ...changes]);
    if (t.final) onFinal();
    void watch();

    let polling = false;
    poll = setInterval(() => {
      if (socket.connected) lastContact = Date.now();
      else if (Date.now() - lastContact > lostMs) {
        fail(new CliError(`lost the dispatcher at ${client.conn.url} for ${Math.round(lostMs / 1000)} s; trace ${t.id} may still finish: see tracefleet show ${t.id}`, EXIT.FAILED));
      }
      if (polling) return;
      polling = true;
      client.trace(t.id).then(
        (v) => {
          polling = false;
          lastContact = Date.now();
          applied(t.applyView(v));
        },
        (e: Error) => {
          polling = false;
          if (e instanceof TracefleetError && e.exit === EXIT.UNAUTHORIZED) fail(e);
          else noteOnce(`polling the trace failed: ${e.message}`);
        },
      );
    }, pollMs);
    poll.unref();

    let timedOut = false;
    const timeoutReached = new Promise<void>((resolve) => {
      timeout = setTimeout(() => {
        timedOut = true;
        resolve();
      }, opts.timeoutMs);
      timeout.unref();
    });

    try {
      await Promise.race([finalReached, timeoutReached, interrupted, failed]);
    } catch (e) {
      if (!(e instanceof Interrupted)) throw e;
      const v = await cancel(client, socket, t, ackMs, progress);
      return { trace: v ?? (await finalView(client, t, 1)), outcome: 'interrupted' };
    }
    if (timedOut && !t.final) {
      progress.note(`no result after ${Math.round(opts.timeoutMs / 1000)} s (--timeout): cancelling the trace`);
      await cancel(client, socket, t, ackMs, progress);
      const settle = new Promise<void>((r) => setTimeout(r, settleMs).unref());
      await Promise.race([finalReached, settle, interrupted.catch(() => {}), failed]);
      return { trace: await finalView(client, t, 3), outcome: 'timeout' };
    }
    const v = await finalView(client, t, 5);
    timing.mark('final_view');
    return { trace: v, outcome: 'final' };
  } finally {
    if (poll) clearInterval(poll);
    if (timeout) clearTimeout(timeout);
    socket.off('trace:update', onUpdate);
    socket.off('trace:updates', onUpdates);
    socket.off('connect', onConnect);
    socket.off('disconnect', onDisconnect);
  }
}

/** Cancels over the socket, or over REST when the socket is down; the trace's view after, or null. */
async function cancel(client: DispatcherClient, socket: ClientSocket, t: TraceTracker, ackMs: number, progress: ProgressSink): Promise<TraceView | null> {
  if (socket.connected) {
    try {
      const a = await ask(socket, 'trace:cancel', { traceId: t.id }, Math.min(ackMs, 10_000));
      if (a.ok) {
        progress.update(t.view(), t.applyView(a.trace));
        return a.trace;
      }
      progress.note(`cancelling trace ${t.id} failed: ${a.error}`);
      return null;
    } catch {
      /* try REST below */
    }
  }
  try {
    const v = await client.cancel(t.id);
    progress.update(t.view(), t.applyView(v));
    return v;
  } catch (e) {
    progress.note(`cancelling trace ${t.id} failed: ${(e as Error).message}`);
    return null;
  }
}

/**
 * The trace as the REST API has it once final. A final update can come
 * from a dispatcher a moment before another one's store shows it, so a
 * few tries; then what is there.
 */
async function finalView(client: DispatcherClient, t: TraceTracker, tries: number): Promise<TraceView> {
  let v: TraceView | null = null;
  for (let i = 0; i < tries; i++) {
    v = await client.trace(t.id);
    if (isFinalTrace(v.state) || !t.final) return v;
    await new Promise((r) => setTimeout(r, 500));
  }
  return v!;
}
