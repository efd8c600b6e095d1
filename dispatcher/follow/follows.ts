import type { WriteStream } from 'node:fs';
import { TracefleetError } from '../../shared/errors/catalogue';
import { pcapHeaderBytes } from '../../shared/pcap/pcap';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import { encodePcapRecord } from '../../shared/pcap/writer';
import { followChunk, followEnd, followProgress, runAck } from '../../shared/protocol/agent';
import { FOLLOW_LIMITS, FollowData, FollowEndView, FollowHostState, FollowHostStatus, FollowRequest, TraceMessage, TraceView } from '../../shared/protocol/client';
import { parseMessage } from '../../shared/protocol/common';
import { checkQuery, type MessageSummary, type TraceRequest } from '../../shared/query/query';
import type { AgentFleet } from '../fleet/server';
import type { Orchestrator } from '../trace/orchestrator';
import type { HostFinal } from '../trace/spool';
import { type Logger, componentLogger } from '../../shared/log/log';

/** The client a follow streams to (the /client socket that started it). */
export interface FollowClient {
  /** Resolves when the client acknowledged it: it has taken the bytes. */
  send(d: FollowData): Promise<void>;
  ended(e: FollowEndView): void;
  /** Ends the client's connection (it fell too far behind). */
  drop(): void;
}

export interface FollowsOptions {
  orchestrator: Orchestrator;
  fleet: AgentFleet;
  logger?: Logger;
  limits?: Partial<typeof FOLLOW_LIMITS>;
  /** How long an agent may take to accept follow:run (ms, default 10 s). */
  runAckMs?: number;
  /** Follows running on this dispatcher at once (default 64). */
  maxFollows?: number;
}

type Reason = FollowEndView['reason'];

/** Summaries kept per host for the stored result (the PCAP keeps every packet). */
const MAX_HOST_MESSAGES = 10_000;
const TICK_MS = 25;

interface HostPart {
  host: string;
  state: FollowHostState;
  socketId: string | null;
  parser: CaptureStreamParser;
  out: WriteStream | null;
  nextSeq: number;
  packets: number;
  bytes: number;
  messages: MessageSummary[];
  /** Capture time (ms, the agent's clock) through which the agent says it has sent all it matched; 0: not said. */
  through: number;
  error?: string;
  /** Why the dispatcher could not write this host's spool file (a full disk, a removed directory); its PCAP is then not stored. */
  spoolError?: string;
}

interface Held {
  sec: number;
  nsec: number;
  /** Capture time in ms, as `through` counts it. */
  ms: number;
  origLen: number;
  data: Buffer;
  linkType: number;
  arrived: number;
}

/**
 * One live follow: asks its hosts' agents to follow, writes each host's
 * stream to the spool as it comes (the stored trace's per-host PCAPs), holds
 * each packet until every host still following is through its capture time
 * (the agents say how far they are with their chunks and follow:progress),
 * or at most the reorder window, so the hosts' packets go out in capture
 * order, and streams them to its client, acknowledged, within its limits.
 */
class LiveFollow {
  readonly parts = new Map<string, HostPart>();
  private held: Held[] = [];
  private heldMessages: TraceMessage[] = [];
  /** Hosts whose state changed since the last follow:data: the next one says so. */
  private changed = new Set<HostPart>();
  private headerSent = false;
  private linkType: number | null = null;
  private otherLink = 0;
  packets = 0;
  bytes = 0;
  private unacked = 0;
  ended = false;
  private readonly deadline: NodeJS.Timeout;
  private readonly tick: NodeJS.Timeout;
  /** A release after the chunks and progress that came in the same turn (coalesced). */
  private soon: NodeJS.Immediate | null = null;
  private readonly maxPackets: number;
  private readonly maxBytes: number;

  constructor(
    readonly id: string,
    readonly user: string,
    req: FollowRequest,
    private readonly client: FollowClient,
    private readonly limits: typeof FOLLOW_LIMITS,
    private readonly done: (f: LiveFollow, reason: Reason, error?: TracefleetError) => void,
  ) {
    this.maxPackets = req.maxPackets ?? limits.defaultMaxPackets;
    this.maxBytes = req.maxBytes ?? limits.defaultMaxBytes;
    this.deadline = setTimeout(() => this.end('duration'), req.durationMs ?? limits.defaultDurationMs);
    this.tick = setInterval(() => this.release(false), TICK_MS);
  }

  /** A chunk from a host's agent: spooled, then parsed into the reorder window, then acknowledged. */
  chunk(p: HostPart, data: Buffer, messages: MessageSummary[], through: number | undefined, ack: (r: unknown) => void): void {
    let recs;
    try {
      recs = p.parser.push(data);
    } catch (e) {
      ack({ ok: false, error: `not a PCAP stream: ${(e as Error).message}` });
      return;
    }
    const now = Date.now();
    for (const r of recs) {
      // The parser's records may be views into its buffers.
      this.held.push({ sec: r.tsSec, nsec: r.tsNsec, ms: r.tsSec * 1000 + r.tsNsec / 1e6, origLen: r.origLen, data: Buffer.from(r.data), linkType: r.linkType, arrived: now });
      p.packets++;
    }
    p.bytes += data.length;
    for (const m of messages) {
      if (p.messages.length < MAX_HOST_MESSAGES) p.messages.push(m);
      this.heldMessages.push({ ...m, host: p.host });
    }
    if (!p.out) {
      const out = this.spoolOut(p);
      // A failed open or write is an 'error' event: unheard, it would end the dispatcher's process.
      out.on('error', (e) => (p.spoolError ??= e.message));
      p.out = out;
    }
    // Acknowledged once the spool has it: the agent's chunks in flight are bounded by our disk, as for a trace.
    p.out.write(data, (e) => ack(e ? { ok: false, error: `the dispatcher cannot spool it: ${e.message}` } : { ok: true }));
    if (through !== undefined) this.progress(p, through);
  }

  /** A host is through `through`: what every host following is through can go without waiting out the window. */
  progress(p: HostPart, through: number): void {
    if (through <= p.through) return;
    p.through = through;
    this.soon ??= setImmediate(() => {
      this.soon = null;
      if (!this.ended) this.release(false);
    });
  }

  /** The capture time every host still following is through (0 while one has said nothing). */
  private watermark(): number {
    let w = Infinity;
    for (const p of this.parts.values()) if (p.state === 'asking' || p.state === 'following') w = Math.min(w, p.through);
    return w;
  }

  /** A host's part changed state: the client hears it with the next follow:data (within a tick). */
  hostChanged(p: HostPart): void {
    if (!this.ended) this.changed.add(p);
  }

  spoolOut: (p: HostPart) => WriteStream = () => {
    throw new Error('spoolOut not set');
  };

  /** Sends what every host is through or what has waited the reorder window (everything when `all`), in capture order. */
  release(all: boolean): void {
    if (this.held.length === 0 && this.heldMessages.length === 0 && this.changed.size === 0) return;
    const ripe = Date.now() - this.limits.reorderMs;
    const mark = this.watermark();
    this.held.sort((a, b) => a.sec - b.sec || a.nsec - b.nsec);
    const parts: Buffer[] = [];
    let n = 0;
    let stop: Reason | null = null;
    for (; n < this.held.length; n++) {
      const h = this.held[n];
      if (!all && h.arrived > ripe && h.ms > mark) break;
      this.linkType ??= h.linkType;
      if (h.linkType !== this.linkType) {
        this.otherLink++;
        continue;
      }
      const size = 16 + h.data.length;
      if (this.bytes + size > this.maxBytes) {
        stop = 'bytes';
        break;
      }
      if (!this.headerSent) {
        parts.push(pcapHeaderBytes({ linkType: this.linkType, nanos: true }));
        this.headerSent = true;
      }
      parts.push(...encodePcapRecord({ tsSec: h.sec, tsNsec: h.nsec, origLen: h.origLen, data: h.data }, true));
      this.packets++;
      this.bytes += size;
      if (this.packets >= this.maxPackets) {
        n++;
        stop = 'packets';
        break;
      }
    }
    this.held = this.held.slice(n);
    const messages = this.heldMessages.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
    this.heldMessages = [];
    const hosts: FollowHostStatus[] = [...this.changed].map((p) => ({ host: p.host, state: p.state, ...(p.error ? { error: p.error.slice(0, 500) } : {}) }));
    this.changed.clear();
    if (parts.length || messages.length || hosts.length) this.push({ traceId: this.id, data: Buffer.concat(parts), messages, ...(hosts.length ? { hosts } : {}) });
    if (stop) this.end(stop);
  }

  /** Packets of a host whose link type differs from the first's: a PCAP stream has one (they stay in that host's stored PCAP). */
  get leftOut(): number {
    return this.otherLink;
  }

  private push(d: FollowData): void {
    const n = d.data.length;
    this.unacked += n;
    if (this.unacked > this.limits.clientLagBytes) {
      this.end('slow-client', new TracefleetError('TF_FOLLOW_SLOW_CLIENT', { bytes: this.unacked }));
      this.client.drop();
      return;
    }
    this.client.send(d).then(
      () => (this.unacked -= n),
      () => {},
    );
  }

  end(reason: Reason, error?: TracefleetError): void {
    if (this.ended) return;
    if (reason !== 'slow-client' && reason !== 'client-gone' && reason !== 'packets' && reason !== 'bytes') this.release(true);
    if (this.ended) return; // the release reached a limit and ended it
    this.ended = true;
    clearTimeout(this.deadline);
    clearInterval(this.tick);
    if (this.soon) clearImmediate(this.soon);
    this.held = [];
    this.heldMessages = [];
    const view: FollowEndView = { traceId: this.id, reason, packets: this.packets, bytes: this.bytes, ...(error ? { code: error.code, message: error.message } : {}) };
    try {
      this.client.ended(view);
    } catch {
      /* the client is gone */
    }
    this.done(this, reason, error);
  }
}

/**
 * The dispatcher's live follows (`tracefleet follow`, the page's "Follow
 * live"): each is stored as a trace (dispatcher/trace's openExternal), fed
 * by its hosts' agents as they capture, and streamed merged to the client
 * that started it. Bounded: follows at once, each follow's time, packets and
 * bytes, the client's unacknowledged bytes; agents bound their own.
 */
export class Follows {
  private readonly running = new Map<string, LiveFollow>();
  /** finish() of follows that ended: close() waits for them, so the spool is not removed under them. */
  private readonly finishing = new Set<Promise<void>>();
  private readonly log: Logger;
  private readonly limits: typeof FOLLOW_LIMITS;

  constructor(private readonly opts: FollowsOptions) {
    this.log = componentLogger('dispatcher.follow', opts.logger);
    this.limits = { ...FOLLOW_LIMITS, ...opts.limits };
    opts.fleet.onFollowEvent((agent, socketId, event, data, ack) => this.onAgentEvent(agent, socketId, event, data, ack));
    opts.fleet.onAgentGone((agent, socketId) => {
      for (const f of this.running.values()) {
        const p = f.parts.get(agent);
        if (p && p.socketId === socketId && (p.state === 'following' || p.state === 'asking')) {
          p.state = 'lost';
          p.error = 'the agent disconnected during the follow; what it sent before is kept';
          f.hostChanged(p);
          this.checkAllEnded(f);
        }
      }
    });
  }

  get active(): number {
    return this.running.size;
  }

  async start(req: FollowRequest, user: string, client: FollowClient): Promise<TraceView> {
    const { durationMs: _d, maxPackets: _p, maxBytes: _b, ...rest } = req;
    checkQuery(rest);
    if (rest.rtp) throw new TracefleetError('TF_REQUEST_INVALID', { message: 'rtp is not followed live yet: follow the call, then trace it with rtp over its window' }, 'rtp');
    if (rest.legs || rest.linkedCallId) throw new TracefleetError('TF_REQUEST_INVALID', { message: 'legs are not followed live: follow the call, then trace it with legs over its window' }, 'legs');
    if (this.running.size >= (this.opts.maxFollows ?? 64)) {
      throw new TracefleetError('TF_RATE_LIMITED', { message: `this dispatcher runs ${this.running.size} follows, its limit: wait for one to end` });
    }
    const { hosts: _h, ...query } = rest;
    // What History shows: the filters, and the time the follow started from.
    const stored: TraceRequest = { ...rest, since: new Date().toISOString(), ...(req.maxPackets ? { maxPackets: req.maxPackets } : {}), ...(req.maxBytes ? { maxBytes: req.maxBytes } : {}) };
    const { trace, hosts } = await this.opts.orchestrator.openExternal(stored, user);
    const f = new LiveFollow(trace.id, user, req, client, this.limits, (x, reason, error) => {
      const done = this.finish(x, reason, error)
        .catch((e: Error) => this.log.error({ traceId: x.id, err: e }, 'follow not stored'))
        .finally(() => this.finishing.delete(done));
      this.finishing.add(done);
    });
    const spool = this.opts.orchestrator.spoolOf;
    f.spoolOut = (p) => spool.openPcap(f.id, p.host);
    this.running.set(f.id, f);
    for (const host of hosts) {
      const p: HostPart = { host, state: 'asking', socketId: null, parser: new CaptureStreamParser(`follow ${f.id} from ${host}`), out: null, nextSeq: 0, packets: 0, bytes: 0, messages: [], through: 0 };
      f.parts.set(host, p);
      const socket = this.opts.fleet.socketOf(host);
      if (!socket) {
        p.state = 'unreachable';
        p.error = `agent ${host} is not connected to this dispatcher`;
        f.hostChanged(p);
        continue;
      }
      p.socketId = socket.id;
      socket.timeout(this.opts.runAckMs ?? 10_000).emit('follow:run', { traceId: f.id, query }, (err: Error | null, raw: unknown) => {
        if (p.state !== 'asking') return;
        const a = err ? null : parseMessage(runAck, 'follow:run ack', raw);
        if (a?.ok && a.value.accepted) p.state = 'following';
        else {
          p.state = 'refused';
          p.error = err ? `the agent did not accept the follow within ${(this.opts.runAckMs ?? 10_000) / 1000} s` : a && !a.ok ? a.error : `the agent refused the follow: ${a?.ok ? a.value.error ?? 'no reason given' : ''}`;
        }
        f.hostChanged(p);
        this.checkAllEnded(f);
      });
    }
    this.log.info({ traceId: f.id, user, hosts }, 'follow started');
    this.checkAllEnded(f);
    return trace;
  }

  /** Ends a follow (its owner's or an admin's stop); it is stored as a trace. */
  stop(id: string, may?: (owner: string) => boolean): void {
    const f = this.running.get(id);
    if (!f) throw new TracefleetError('TF_TRACE_NOT_FOUND', { message: `no follow ${id} is running on this dispatcher` });
    if (may && !may(f.user)) throw new TracefleetError('TF_FORBIDDEN', { message: `follow ${id} belongs to ${f.user}: only its owner (with the tracer role) or an admin may stop it` });
    f.end('stopped');
  }

  /** The client that started it went away (Ctrl-C, a lost connection). */
  clientGone(id: string): void {
    this.running.get(id)?.end('client-gone');
  }

  /** Ends every follow and waits until each has closed its spool files and handed its hosts to the orchestrator. */
  async close(): Promise<void> {
    for (const f of [...this.running.values()]) f.end('shutdown');
    await Promise.all([...this.finishing]);
  }

  /** Every host ended, refused or lost: nothing more can come. */
  private checkAllEnded(f: LiveFollow): void {
    if (f.ended) return;
    if ([...f.parts.values()].every((p) => p.state !== 'asking' && p.state !== 'following')) {
      const any = [...f.parts.values()].some((p) => p.state === 'ended' || p.state === 'lost');
      if (any) f.end('agents-gone');
      else {
        const why = [...f.parts.values()].map((p) => `${p.host}: ${p.error ?? p.state}`).join('; ');
        f.end('agents-gone', new TracefleetError('TF_FOLLOW_NO_AGENT', { message: `no agent took the follow (${why.slice(0, 800)})` }));
      }
    }
  }

  private onAgentEvent(agent: string, socketId: string, event: string, data: unknown, ack: (r: unknown) => void): void {
    const id = (data as { traceId?: unknown } | null)?.traceId;
    const f = typeof id === 'string' ? this.running.get(id) : undefined;
    const p = f?.parts.get(agent);
    if (!f || !p || p.socketId !== socketId || f.ended) {
      if (event === 'follow:chunk') ack({ ok: false, error: `no follow ${typeof id === 'string' ? id.slice(0, 64) : '(none)'} is running for agent ${agent} on this dispatcher` });
      return;
    }
    if (event === 'follow:end') {
      const m = parseMessage(followEnd, event, data);
      if (!m.ok) return this.log.warn({ agent, reason: m.error }, 'bad follow:end ignored');
      if (p.state === 'following' || p.state === 'asking') {
        p.state = 'ended';
        if (m.value.error) p.error = m.value.error;
        f.hostChanged(p);
        this.checkAllEnded(f);
      }
      return;
    }
    if (event === 'follow:progress') {
      const m = parseMessage(followProgress, event, data);
      if (!m.ok) return this.log.warn({ agent, reason: m.error }, 'bad follow:progress ignored');
      if (p.state === 'following') f.progress(p, m.value.through);
      return;
    }
    const m = parseMessage(followChunk, event, data);
    if (!m.ok) return ack({ ok: false, error: m.error });
    if (m.value.seq !== p.nextSeq) return ack({ ok: false, error: `chunk ${m.value.seq} came where ${p.nextSeq} was due` });
    p.nextSeq++;
    f.chunk(p, m.value.data, m.value.messages, m.value.through, ack);
  }

  private async finish(f: LiveFollow, reason: Reason, error?: TracefleetError): Promise<void> {
    this.running.delete(f.id);
    const truncated = reason === 'packets' || reason === 'bytes';
    for (const p of f.parts.values()) {
      if (p.state === 'following' || p.state === 'asking') {
        const s = p.socketId ? this.opts.fleet.agents.sockets.get(p.socketId) : undefined;
        s?.emit('follow:stop', { traceId: f.id });
      }
      if (p.out) {
        const out = p.out;
        await new Promise<void>((resolve) => out.end(() => resolve()));
      }
      if (p.spoolError) p.error = `the dispatcher could not write this host's packets to its spool (${p.spoolError}): check the free space and permissions of the dispatcher's data directory`;
      const state: HostFinal['state'] =
        p.spoolError ? 'error' : p.state === 'unreachable' ? 'unreachable' : p.state === 'lost' ? 'lost' : p.state === 'refused' || (p.state === 'ended' && p.error) ? 'error' : 'done';
      this.opts.orchestrator.externalHostFinished(f.id, p.host, {
        state,
        packets: p.packets,
        bytes: p.bytes,
        truncated,
        ...(p.error ? { error: p.error.slice(0, 4096) } : {}),
        messages: p.messages,
        hasPcap: p.bytes > 0 && !p.spoolError,
      });
    }
    this.log.info({ traceId: f.id, reason, packets: f.packets, bytes: f.bytes, ...(error ? { code: error.code } : {}) }, 'follow ended');
  }
}
