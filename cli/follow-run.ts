import type { Writable } from 'node:stream';
import { z } from 'zod';
import { EXIT, Exit, receivedError } from '../shared/errors/catalogue';
import { FOLLOW_LIMITS, followData, followEndView, FollowEndView, followRequest, FollowRequest, traceView, TraceView, TraceMessage } from '../shared/protocol/client';
import { parseDurationMs } from '../shared/query/query';
import type { ClientSocket } from './api-client';
import { CliError } from './errors';
import { traceRequestOf } from './filters';
import { safeText, shortTime } from './format';

export interface FollowRunOptions {
  /** Where the live PCAP goes (a file or stdout); null: lines on the terminal instead. */
  out: Writable | null;
  /** Writes one line per SIP message (when out is null). */
  line: (s: string) => void;
  /** Ctrl-C: stop the follow (it is stored) and return. */
  signal: AbortSignal;
  ackTimeoutMs?: number;
  /** How long a stopped follow may take to say it ended. */
  settleMs?: number;
  /** Called once the dispatcher took the follow, before any data. */
  onStart?: (trace: TraceView) => void;
}

export interface FollowRunResult {
  trace: TraceView;
  end: FollowEndView | null;
  /** SIP messages and PCAP bytes received. */
  messages: number;
  bytes: number;
  /** The dispatcher connection dropped before the follow ended. */
  lost: boolean;
}

const startAck = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), trace: traceView }),
  z.object({ ok: z.literal(false), error: z.string(), code: z.string(), field: z.string().nullish() }),
]);

/**
 * The follow request of `tracefleet follow`'s flags (and of the extcap
 * dialog's, which are the same): the trace filters, no window, a duration.
 */
export function followRequestOf(a: Record<string, unknown>): FollowRequest {
  if (a.rtp) throw new CliError("--rtp is not followed live yet: follow the call, then run tracefleet trace --call-id ... --rtp over its window", EXIT.BAD_INPUT);
  if (a.legs) throw new CliError('--legs is not followed live: follow the call, then run tracefleet trace --call-id ... --legs over its window', EXIT.BAD_INPUT);
  if (a.since !== undefined || a.until !== undefined) throw new CliError('a follow has no window: it starts now and runs --duration; give --duration instead of --since/--until', EXIT.BAD_INPUT);
  const durationMs = parseDurationMs(String(a.duration));
  if (durationMs === null || durationMs <= 0 || durationMs > FOLLOW_LIMITS.maxDurationMs) {
    throw new CliError(`bad --duration ${String(a.duration)}: give a duration like 90s, 10m or 2h, at most ${FOLLOW_LIMITS.maxDurationMs / 3_600_000}h`, EXIT.BAD_INPUT);
  }
  const { since: _s, until: _u, ...asked } = traceRequestOf(a);
  const parsed = followRequest.safeParse({ ...asked, durationMs });
  if (!parsed.success) throw new CliError(`bad follow request: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`, EXIT.BAD_INPUT);
  return parsed.data;
}

/** One SIP message as a terminal line: time, host, src -> dst, method or status, Call-ID; every field escaped. */
export function followLine(m: TraceMessage): string {
  const what = m.method ?? `${m.status ?? '?'}${m.reason ? ` ${m.reason}` : ''}`;
  return safeText(`${shortTime(m.time)} ${m.host} ${m.src} -> ${m.dst} ${what} ${m.callId}`);
}

/**
 * Starts a follow on the /client socket and streams it until it ends: the
 * PCAP bytes written to `out` in order, each follow:data acknowledged only
 * once `out` has taken it (a reader that stops makes the dispatcher drop
 * this client rather than buffer for it), or a line per SIP message.
 */
export async function runFollow(socket: ClientSocket, req: FollowRequest, opts: FollowRunOptions): Promise<FollowRunResult> {
  const ackMs = opts.ackTimeoutMs ?? 30_000;
  let messages = 0;
  let bytes = 0;
  let ended: (r: { end: FollowEndView | null; lost: boolean }) => void = () => {};
  const finished = new Promise<{ end: FollowEndView | null; lost: boolean }>((resolve) => (ended = resolve));
  socket.on('follow:data', (raw: unknown, ack: (a: object) => void) => {
    const d = followData.safeParse(raw);
    if (!d.success) return;
    const data = Buffer.from(d.data.data);
    // Counted first: a follow:data may carry messages (or host states) and no bytes.
    messages += d.data.messages.length;
    if (opts.out) {
      bytes += data.length;
      if (data.length === 0) return ack({});
      opts.out.write(data, () => ack({}));
    } else {
      for (const m of d.data.messages) opts.line(followLine(m));
      ack({});
    }
  });
  socket.on('follow:end', (raw: unknown) => {
    const e = followEndView.safeParse(raw);
    if (e.success) ended({ end: e.data, lost: false });
  });
  socket.on('disconnect', () => ended({ end: null, lost: true }));

  let raw: unknown;
  try {
    raw = await socket.timeout(ackMs).emitWithAck('follow:start', req);
  } catch {
    throw new CliError(`the dispatcher did not answer follow:start within ${ackMs / 1000} s`, EXIT.FAILED);
  }
  const a = startAck.safeParse(raw);
  if (!a.success) throw new CliError("the dispatcher's answer to follow:start is not what this tracefleet understands: is the dispatcher the same version?", EXIT.FAILED);
  if (!a.data.ok) throw receivedError(a.data, a.data.error);
  const trace = a.data.trace;
  opts.onStart?.(trace);
  const onAbort = () => {
    socket.timeout(ackMs).emit('follow:stop', { traceId: trace.id }, () => {});
    // A dispatcher that does not answer the stop: give up waiting.
    setTimeout(() => ended({ end: null, lost: true }), opts.settleMs ?? 10_000).unref();
  };
  if (opts.signal.aborted) onAbort();
  else opts.signal.addEventListener('abort', onAbort, { once: true });
  const r = await finished;
  opts.signal.removeEventListener('abort', onAbort);
  return { trace, ...r, messages, bytes };
}

/** The exit code of a follow that ended: its error's, 130 after Ctrl-C, else 0. */
export function exitOfFollow(r: FollowRunResult, interrupted: boolean): Exit {
  if (r.end?.code) return receivedError({ code: r.end.code }, r.end.message ?? '').exit;
  if (r.lost && !interrupted) return EXIT.FAILED;
  return interrupted ? EXIT.INTERRUPTED : EXIT.OK;
}
