import { randomBytes } from 'node:crypto';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { AgentView, HostView, TraceUpdate, TraceView } from '../../shared/protocol/client';
import { parseMessage } from '../../shared/protocol/common';
import { TracefleetError } from '../../shared/errors/catalogue';
import { checkQuery, TraceQuery, TraceRequest } from '../../shared/query/query';
import { legsAnswer, MAX_LEG_CALL_IDS } from '../../shared/protocol/agent';

/** Rounds of trace:legs before a trace with legs runs on several hosts. */
const LEG_ROUNDS = 2;
/**
 * How long asking a trace's hosts may hold the event loop before it lets other work in (ms). Every turn
 * of the loop reads all the answers that came meanwhile, so with the loop let go every 200 hosts the
 * last trace:run of a 10,000-host trace waited for nearly every earlier host's answer to be read (about
 * as much CPU as the asking): bench:fanout's started p99 was the asking and the reading together. Held
 * this long (about 10,000 hosts on a quiet machine), the answers are read after the last host is asked.
 * The loop stalls as long: what a 10,000-host trace's start cost other clients before, in small pieces.
 */
const START_BLOCK_MS = 1_000;
/** Hosts asked between looks at the clock. */
const START_CLOCK_EVERY = 64;
import type { AgentFleet } from '../fleet/server';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, resultDocId } from '../store/layout';
import { NewResult, TraceStore } from '../store/store';
import { HostRun, HostRunTimeouts } from './host-run';
import { StartHold } from './start-hold';
import { liveMergeFigures, mergeOneLive, mergeTrace, type TraceMerge } from './merge-trace';
import type { MergeResult } from '../merge/merge';
import type { SpoolFeed } from './spool-feed';
import { TraceMetrics } from './metrics';
import { PeerLink } from './peers';
import { INLINE_MAX, ResultBatch } from './result-batch';
import { HostFinal, Spool } from './spool';
import { RetryLater, StoreJobs } from './store-jobs';
import { Owned, Traces } from './types';
import { isFinalResult, traceOutcome, traceView } from './view';
import { checkRemoteHosts, DeadlineSweep } from './watchdog';
import { type Logger, componentLogger } from '../../shared/log/log';

export interface OrchestratorTimeouts extends HostRunTimeouts {
  /** How long an agent may take to answer trace:legs (ms); a host that does not is left out of the search for legs. */
  legsMs: number;
}

export interface OrchestratorOptions {
  store: TraceStore;
  fleet: AgentFleet;
  spool: Spool;
  timeouts?: Partial<OrchestratorTimeouts>;
  /** How often work the store could not take is tried again (ms). */
  retryMs?: number;
  /** Peers share agents through the Socket.IO adapter (Redis): hosts on a peer are run there. */
  clustered?: boolean;
  logger?: Logger;
}

/**
 * Turns a trace request into a fleet-wide trace: stores it, asks every
 * chosen agent (on this dispatcher, or through a peer with Redis), keeps
 * each host's result in the spool until the store has it, and once every
 * host is final builds the merged PCAP. Nothing here waits on a slow or
 * dead host: each host ends by itself (done, error, unreachable, lost,
 * cancelled).
 */
export class Orchestrator implements Traces {
  /** Registered by the dispatcher's /metrics. */
  readonly metrics = new TraceMetrics();
  /** Identifies this dispatcher among peers. */
  readonly id = randomBytes(6).toString('hex');
  private readonly store: TraceStore;
  private readonly fleet: AgentFleet;
  private readonly spool: Spool;
  private readonly timeouts: OrchestratorTimeouts;
  private readonly log: Logger;
  /** Set when clustered: peers share agents through the Socket.IO adapter (Redis). */
  private readonly peers: PeerLink | null = null;
  /** Runs on this dispatcher's agents, by trace then host. */
  private readonly runs = new Map<string, Map<string, HostRun>>();
  /** Each trace's one timer for its runs here (made and dropped with its entry in `runs`). */
  private readonly sweeps = new Map<string, DeadlineSweep>();
  private readonly live = new Map<string, Map<string, HostView>>();
  private readonly owned = new Map<string, Owned>();
  /** Who owns a trace whose hosts run here for a peer. */
  private readonly ownerOf = new Map<string, string>();
  private readonly listeners = new Set<(u: TraceUpdate) => void>();
  private readonly jobs: StoreJobs;
  private readonly batch: ResultBatch;
  /** Traces started here: their result documents are written (a live upload needs its document). */
  private readonly resultsWritten = new Map<string, Promise<void>>();
  /**
   * The revisions of the result documents this dispatcher created queued, by trace then document id, until
   * each host's final write (a batch) takes its own: the store need not be asked for them (see writeResults).
   */
  private readonly createdRevs = new Map<string, Map<string, string>>();
  /** One-host traces started here without alignClocks: their merge is made while the host is received. */
  private readonly mergeWhileReceiving = new Set<string>();
  /**
   * packets.pcap uploads that follow a host's spool file while it is received, by `traceId host`:
   * the bytes stored, or null when the upload did not complete (the store job then uploads from the spool as before).
   */
  private readonly liveUploads = new Map<string, Promise<number | null>>();
  /** mergeOneLive() of one-host traces, by trace: null when it did not complete (finalize() merges as before). */
  private readonly liveMerges = new Map<string, { feed: SpoolFeed; merge: Promise<MergeResult | null> }>();
  private watchdog: NodeJS.Timeout | null = null;
  /** Traces whose hosts are being asked (askHosts), and whether they were cancelled meanwhile. */
  private readonly starting = new Map<string, boolean>();
  /** The agents' answers about a trace whose hosts are still being asked: handled once all are. */
  private readonly hold = new StartHold((e) => this.onAgentEvent(e.agent, e.socketId, e.event, e.data, e.ack));

  constructor(opts: OrchestratorOptions) {
    this.store = opts.store;
    this.fleet = opts.fleet;
    this.spool = opts.spool;
    this.timeouts = { runAckMs: 10_000, idleMs: 30_000, queuedMs: 10 * 60_000, legsMs: 15_000, ...opts.timeouts };
    this.log = componentLogger('dispatcher.trace', opts.logger);
    this.jobs = new StoreJobs({ retryMs: opts.retryMs ?? 5_000, log: this.log, errors: this.metrics.errors, pending: this.metrics.pendingStores });
    this.batch = new ResultBatch(this.store);

    this.fleet.onTraceEvent((agent, socketId, event, data, ack) => {
      const traceId = (data as { traceId?: unknown } | null)?.traceId;
      if (typeof traceId !== 'string' || !this.hold.offer(traceId, { agent, socketId, event, data, ack })) this.onAgentEvent(agent, socketId, event, data, ack);
    });
    this.fleet.onAgentGone((agent, socketId) => {
      this.hold.flushAgent(agent, socketId);
      for (const hosts of this.runs.values()) {
        const run = hosts.get(agent);
        if (run && run.socketId === socketId) run.gone();
      }
    });
    if (opts.clustered) {
      this.peers = new PeerLink(opts.fleet.agents, {
        runHost: (m) => {
          const socket = this.fleet.socketOf(m.host);
          if (socket) this.runLocal(m.traceId, m.host, m.query, socket, m.owner);
        },
        hostFinal: (m) => {
          if (m.owner === this.id) this.hostStored(m.traceId, m.host);
        },
        cancel: (traceId) => this.cancelLocal(traceId),
        log: this.log,
      });
      this.watchdog = setInterval(() => void this.checkRemoteHosts(), 5_000);
      this.watchdog.unref();
    }
  }

  /** Picks up what an earlier run of this dispatcher left in the spool. */
  async recover(): Promise<void> {
    for (const t of this.spool.scan()) {
      for (const host of t.unfinished) {
        const cut = await this.spool.trimPcap(t.traceId, host);
        const final: HostFinal = {
          state: 'lost',
          packets: cut.packets,
          bytes: cut.bytes,
          truncated: false,
          error: 'the dispatcher restarted mid-trace; what the host sent before is kept',
          messages: [],
          hasPcap: cut.bytes > 0,
        };
        t.finals.push({ host, final });
      }
      if (t.owned) {
        // All hosts were stored and only the merge was left: finish normally. Otherwise the trace was cut off.
        const interrupted = !t.mergePending;
        this.owned.set(t.traceId, { id: t.traceId, hosts: t.owned.hosts, stored: new Set(), remote: new Map(), missing: new Map(), finalizing: true, interrupted });
        if (interrupted) this.log.warn({ traceId: t.traceId }, 'trace was running when the dispatcher stopped; marking it interrupted');
      }
      // A peer's trace run here before the restart: the peer finds the result in the store.
      for (const f of t.finals) this.storeFinal(t.traceId, f.host, f.final, t.owned ? this.id : null);
      if (t.owned) {
        const interrupted = this.owned.get(t.traceId)!.interrupted;
        this.jobs.enqueue(`merge:${t.traceId}`, interrupted ? () => this.closeInterrupted(t.traceId) : () => this.finalize(t.traceId, null));
      }
    }
  }

  // ---- Traces --------------------------------------------------------------

  async start(req: TraceRequest, user: string, created?: (id: string) => void | Promise<void>): Promise<TraceView> {
    // The shape was validated where the request came in (namespace, REST); the values are checked here, where every path meets.
    // alignClocks is the merge's business; the agents are asked the filters only.
    const { hosts: asked, alignClocks: _align, ...query } = req;
    checkQuery(query);
    const { hosts, connected, sockets } = await this.chooseHosts(asked);
    const trace = await this.store.createTrace({ request: req as { [k: string]: never }, user, hosts });
    const id = trace.id;
    this.metrics.tracesStarted.inc();
    const o: Owned = { id, hosts, stored: new Set(), remote: new Map(), missing: new Map(), finalizing: false, interrupted: false };
    this.owned.set(id, o);
    this.spool.markOwned({ traceId: id, hosts, createdAt: trace.createdAt });
    await created?.(id);
    // The legs of the calls, looked for on every host, before any host is asked for packets: each is asked once, for all of them.
    const runQuery = query.legs && hosts.length > 1 ? await this.legsAcrossHosts(id, hosts, query) : query;
    // Result docs are made in the background, once every host is asked (a live upload waits for them):
    // 10,000 of them took the store 10 s, which the start's ack and the agents' trace:run used to wait for.
    // A host's final write creates its doc if it gets there first (the bulk create then leaves it alone);
    // a restart before they exist loses nothing (the trace's hosts are in the spool's trace.json, and a
    // host without a doc is lost to finalize()).
    let resultsQueued!: () => void;
    const hostsAsked = new Promise<void>((r) => (resultsQueued = r));
    const queued = hostsAsked.then(() =>
      this.store.createResults(hosts.map((host) => ({ traceId: id, host }))).then(
        (revs) => {
          if (this.owned.has(id)) this.createdRevs.set(id, revs);
        },
        (e: Error) => {
          this.log.warn({ traceId: id, err: e }, "the queued results were not written; each host's result is written when it finishes");
        },
      ),
    );
    this.resultsWritten.set(id, queued);
    // One host's merge is its file as received (no clock to align, no other host to order against): made while it arrives.
    if (hosts.length === 1 && req.alignClocks !== true) this.mergeWhileReceiving.add(id);
    const live = new Map<string, HostView>();
    this.live.set(id, live);
    this.publish({ traceId: id, host: null, state: 'running', packets: 0, bytes: 0, at: trace.createdAt });
    const view = traceView(trace, [], live);
    // Asked in slices, the loop let go in between: the agents asked first answer meanwhile, and the loop
    // never blocks for the whole fleet (10,000 hosts at once held it for seconds).
    void this.askHosts(id, hosts, runQuery, connected, sockets, o).finally(resultsQueued);
    return view;
  }

  /** Sends the trace to each host, letting the loop go every START_BLOCK_MS; a cancel meanwhile stops it. */
  private async askHosts(id: string, hosts: string[], runQuery: TraceQuery, connected: ReadonlySet<string>, sockets: Map<string, string>, o: Owned): Promise<void> {
    this.starting.set(id, false);
    this.hold.hold(id, hosts.length);
    try {
      // trace:start's ack first: the asking below holds the loop up to START_BLOCK_MS.
      await yieldLoop();
      const t0 = performance.now();
      let slice = t0;
      for (let i = 0; i < hosts.length; i++) {
        if (i % START_CLOCK_EVERY === 0 && i > 0 && performance.now() - slice >= START_BLOCK_MS) {
          await yieldLoop();
          slice = performance.now();
        }
        if (this.starting.get(id)) this.cancelUnasked(id, hosts[i]);
        else this.askHost(id, hosts[i], runQuery, connected, sockets, o);
      }
      // bench:fanout reads it: when the last trace:run left, apart from when the agents got it.
      this.log.info({ traceId: id, hosts: hosts.length, askMs: Math.round(performance.now() - t0) }, 'every host asked');
    } finally {
      this.starting.delete(id);
      this.hold.release(id).catch((e: Error) => this.log.error({ traceId: id, err: e }, "the agents' answers held while the hosts were asked could not all be handled"));
    }
  }

  private askHost(id: string, host: string, runQuery: TraceQuery, connected: ReadonlySet<string>, sockets: Map<string, string>, o: Owned): void {
    const socket = this.fleet.socketOf(host);
    if (socket) this.runLocal(id, host, runQuery, socket, this.id);
    else if (connected.has(host) && this.peers) {
      o.remote.set(host, sockets.get(host) ?? '');
      this.peers.runHost({ traceId: id, host, query: runQuery, owner: this.id });
    } else {
      const final: HostFinal = { state: 'unreachable', packets: 0, bytes: 0, truncated: false, error: `agent ${host} is not connected to any dispatcher`, messages: [], hasPcap: false };
      this.publish({ traceId: id, host, state: 'unreachable', packets: 0, bytes: 0, error: final.error, at: new Date().toISOString() });
      this.storeFinal(id, host, final, this.id);
    }
  }

  /** A host the trace was cancelled before it was asked: final at once, as cancelled. */
  private cancelUnasked(id: string, host: string): void {
    const final: HostFinal = { state: 'cancelled', packets: 0, bytes: 0, truncated: false, error: 'cancelled before the host was asked', messages: [], hasPcap: false };
    this.publish({ traceId: id, host, state: 'cancelled', packets: 0, bytes: 0, error: final.error, at: new Date().toISOString() });
    this.storeFinal(id, host, final, this.id);
  }

  /**
   * A B2BUA's legs are often seen by different hosts, and a host may see
   * a leg that nothing in the query matches there (the B leg has other
   * numbers). So each host is asked which dialogs, legs included, the query
   * selects on it (trace:legs), and then again with every Call-ID found
   * anywhere (a host finds their legs), LEG_ROUNDS rounds at most and
   * MAX_LEG_CALL_IDS Call-IDs in all. The trace then runs once per host
   * with those Call-IDs as linkedCallId, so no packet comes twice. Hosts on
   * peer dispatchers are not asked (they get the Call-IDs found here).
   */
  private async legsAcrossHosts(traceId: string, hosts: string[], query: TraceQuery): Promise<TraceQuery> {
    const known = new Set<string>();
    // A host that did not answer (an agent from before trace:legs, or a slow one) is not waited for twice.
    let asking = hosts;
    let cut = 0;
    for (let round = 0; round < LEG_ROUNDS; round++) {
      const ask: TraceQuery = known.size ? { ...query, linkedCallId: [...known] } : query;
      const answers = await Promise.all(asking.map((host) => this.askLegs(traceId, host, ask)));
      asking = asking.filter((_h, i) => answers[i] !== null);
      let added = 0;
      for (const ids of answers) {
        for (const c of ids ?? []) {
          if (known.has(c)) continue;
          if (known.size >= MAX_LEG_CALL_IDS) cut++;
          else {
            known.add(c);
            added++;
          }
        }
      }
      if (added === 0) break;
    }
    if (cut > 0) this.log.warn({ traceId, kept: known.size, left: cut }, `the calls have more dialogs than a trace carries across hosts (${MAX_LEG_CALL_IDS}); each host still adds the legs it links itself`);
    this.log.info({ traceId, dialogs: known.size }, 'legs looked for across hosts');
    return known.size ? { ...query, linkedCallId: [...known] } : query;
  }

  /** One host's dialogs for the query, legs included; null when it is not connected here, refuses or is slow (its own trace still runs). */
  private askLegs(traceId: string, host: string, query: TraceQuery): Promise<string[] | null> {
    const socket = this.fleet.socketOf(host);
    if (!socket) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ traceId, host }, `agent did not answer trace:legs within ${this.timeouts.legsMs / 1000} s; its legs are what its own trace finds`);
        resolve(null);
      }, this.timeouts.legsMs);
      timer.unref();
      socket.emit('trace:legs', { traceId, query }, (ack: unknown) => {
        clearTimeout(timer);
        const a = parseMessage(legsAnswer, 'trace:legs ack', ack);
        if (!a.ok || !a.value.ok) {
          this.log.warn({ traceId, host, reason: a.ok ? a.value.message : a.error }, 'trace:legs refused or malformed');
          return resolve(null);
        }
        resolve(a.value.callIds ?? []);
      });
    });
  }

  /** The hosts a request names (all connected agents when it names none), checked against the agents known. */
  private async chooseHosts(asked: string[] | undefined): Promise<{ hosts: string[]; connected: Set<string>; sockets: Map<string, string> }> {
    // Names only: the views fleetView() copies (a structuredClone and a locale sort of every agent) took
    // a 10,000-agent trace's start tens of ms; with peers, their agents come from them.
    const { agents, sockets } = this.peers ? await this.fleetView() : { agents: this.fleet.registry.names(), sockets: new Map<string, string>() };
    const connected = new Set(agents.filter((a) => a.connected).map((a) => a.name));
    let hosts: string[];
    if (asked) {
      const known = new Set(agents.map((a) => a.name));
      const unknown = [...new Set(asked)].filter((h) => !known.has(h));
      if (unknown.length) {
        throw new TracefleetError('TF_TRACE_UNKNOWN_HOSTS', { unknown, known: [...known].sort((x, y) => x.localeCompare(y)) });
      }
      hosts = [...new Set(asked)];
    } else {
      hosts = [...connected].sort();
      if (hosts.length === 0) throw new TracefleetError('TF_TRACE_NO_AGENTS', {});
    }
    return { hosts, connected, sockets };
  }

  /**
   * A trace whose hosts' results come from elsewhere (a live follow,
   * dispatcher/follow): stored as running now, each host finished later with
   * followHostFinished(), merged like any trace once all are. `req` is what
   * the trace's view shows as its request.
   */
  async openExternal(req: TraceRequest, user: string): Promise<{ trace: TraceView; hosts: string[] }> {
    const { hosts } = await this.chooseHosts(req.hosts);
    const trace = await this.store.createTrace({ request: req as { [k: string]: never }, user, hosts });
    const id = trace.id;
    this.metrics.tracesStarted.inc();
    this.owned.set(id, { id, hosts, stored: new Set(), remote: new Map(), missing: new Map(), finalizing: false, interrupted: false });
    this.spool.markOwned({ traceId: id, hosts, createdAt: trace.createdAt });
    this.live.set(id, new Map());
    await this.store.createResults(hosts.map((host) => ({ traceId: id, host }))).catch((e: Error) => {
      this.log.warn({ traceId: id, err: e }, "the queued results were not written; each host's result is written when it finishes");
    });
    this.publish({ traceId: id, host: null, state: 'running', packets: 0, bytes: 0, at: trace.createdAt });
    return { trace: traceView(trace, [], this.live.get(id)), hosts };
  }

  /** A host of an openExternal() trace is finished: its PCAP (if any) is in the spool. */
  externalHostFinished(traceId: string, host: string, final: HostFinal): void {
    this.publish({ traceId, host, state: final.state, packets: final.packets, bytes: final.bytes, truncated: final.truncated, ...(final.error ? { error: final.error } : {}), at: new Date().toISOString() });
    this.storeFinal(traceId, host, final, this.id);
  }

  /** Where an openExternal() trace's hosts write their PCAPs. */
  get spoolOf(): Spool {
    return this.spool;
  }

  async cancel(id: string, may?: (owner: string) => boolean): Promise<TraceView> {
    const trace = await this.store.getTrace(id);
    if (!trace) throw new TracefleetError('TF_TRACE_NOT_FOUND', { message: `no trace ${id}` });
    if (may && !may(trace.user)) throw new TracefleetError('TF_FORBIDDEN', { message: `trace ${id} belongs to ${trace.user}: only its owner (with the tracer role) or an admin may cancel it` });
    if (trace.state !== 'running') throw new TracefleetError('TF_TRACE_NOT_RUNNING', { id, state: trace.state });
    this.cancelLocal(id);
    this.peers?.cancel(id);
    const v = await this.view(id);
    return v as TraceView;
  }

  async view(id: string): Promise<TraceView | null> {
    const trace = await this.store.getTrace(id);
    if (!trace) return null;
    // By id (see resultsOf()): a 10,000-host trace read back through the view cost the embedded store seconds.
    const results = await this.store.resultsOf(id, trace.hosts);
    return traceView(trace, results, this.live.get(id));
  }

  async agents(): Promise<AgentView[]> {
    return (await this.fleetView()).agents;
  }

  /** The agents here and on peers, and (clustered) the id of each connected agent's socket, wherever it is. */
  private async fleetView(): Promise<{ agents: AgentView[]; sockets: Map<string, string> }> {
    const local = this.fleet.registry.list();
    const ids = new Map<string, string>();
    if (!this.peers) return { agents: local, sockets: ids };
    const byName = new Map<string, AgentView>(local.map((a) => [a.name, a]));
    try {
      for (const { view: v, name, socketId } of await this.peers.agents()) {
        if (v && (!byName.get(v.name)?.connected || !byName.has(v.name))) byName.set(v.name, { ...v, connected: true });
        if (name) ids.set(name, socketId);
      }
    } catch (e) {
      this.log.warn({ err: e }, 'cannot list the agents of peer dispatchers');
    }
    return { agents: [...byName.values()].sort((a, b) => a.name.localeCompare(b.name)), sockets: ids };
  }

  onUpdate(listener: (u: TraceUpdate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops timers; running host runs keep their spool files for the next start. */
  close(): void {
    this.jobs.close();
    if (this.watchdog) clearInterval(this.watchdog);
    for (const hosts of this.runs.values()) for (const r of hosts.values()) r.abandon();
    this.runs.clear();
    for (const s of this.sweeps.values()) s.stop();
    this.sweeps.clear();
  }

  /** Traces owned here that are not finished; for tests and /metrics. */
  get running(): number {
    return this.owned.size;
  }

  // ---- host runs -----------------------------------------------------------

  private runLocal(traceId: string, host: string, query: TraceQuery, socket: import('socket.io').Socket, owner: string): void {
    let hosts = this.runs.get(traceId);
    if (!hosts) this.runs.set(traceId, (hosts = new Map()));
    if (hosts.get(host) && !hosts.get(host)!.isFinal) return;
    let sweep = this.sweeps.get(traceId);
    if (!sweep) this.sweeps.set(traceId, (sweep = new DeadlineSweep(Math.min(this.timeouts.runAckMs, this.timeouts.idleMs, this.timeouts.queuedMs))));
    if (owner !== this.id) this.ownerOf.set(traceId, owner);
    const run = new HostRun({
      traceId,
      host,
      query,
      socket,
      spool: this.spool,
      timeouts: this.timeouts,
      sweep,
      update: (u) => this.publish(u),
      finished: (final) => {
        hosts!.delete(host);
        if (hosts!.size === 0) {
          this.runs.delete(traceId);
          this.sweeps.delete(traceId);
        }
        this.storeFinal(traceId, host, final, owner);
      },
      grew: (bytes, feed) => this.followHost(traceId, host, owner, bytes, feed),
      count: (what, bytes) => {
        if (what === 'chunk') {
          this.metrics.chunksReceived.inc();
          this.metrics.bytesReceived.inc(bytes ?? 0);
        } else this.metrics.errors.inc({ kind: 'protocol' });
      },
      log: this.log,
    });
    hosts.set(host, run);
    run.start();
  }

  private onAgentEvent(agent: string, socketId: string, event: string, data: unknown, ack: (r: unknown) => void): void {
    const traceId = (data as { traceId?: unknown } | null)?.traceId;
    const run = typeof traceId === 'string' ? this.runs.get(traceId)?.get(agent) : undefined;
    if (!run || run.socketId !== socketId) {
      if (event === 'trace:chunk') ack({ ok: false, error: `no trace ${typeof traceId === 'string' ? traceId.slice(0, 64) : '(none)'} is running for agent ${agent} on this dispatcher` });
      return;
    }
    run.handle(event, data, ack);
  }

  private cancelLocal(traceId: string): void {
    if (this.starting.has(traceId)) this.starting.set(traceId, true);
    const hosts = this.runs.get(traceId);
    if (hosts) for (const r of [...hosts.values()]) r.cancel();
  }

  private checkRemoteHosts(): Promise<void> {
    return checkRemoteHosts({
      owned: this.owned.values(),
      store: this.store,
      peers: this.peers!,
      pendingHere: (traceId, host) => this.jobs.has(`host:${traceId}:${host}`),
      hostStored: (traceId, host) => this.hostStored(traceId, host),
      hostLost: (traceId, host, error) => {
        const lost: HostFinal = { state: 'lost', packets: 0, bytes: 0, truncated: false, error, messages: [], hasPcap: false };
        this.publish({ traceId, host, state: 'lost', packets: 0, bytes: 0, error, at: new Date().toISOString() });
        this.storeFinal(traceId, host, lost, this.id);
      },
      log: this.log,
    });
  }

  // ---- storing -------------------------------------------------------------

  /**
   * Once a host's result is bigger than what is written inline, its
   * packets.pcap upload starts, following the spool file as it is received
   * (SpoolFeed), and so does a one-host trace's merge: the store gets the
   * bytes while the agent still sends them. Each is an attempt: if it does
   * not complete (the store away, the host cut short and its file trimmed),
   * nothing of it is stored and the store job and finalize() do their work
   * from the spool file as before.
   */
  private followHost(traceId: string, host: string, owner: string, bytes: number, feed: SpoolFeed): void {
    const key = `${traceId} ${host}`;
    if (bytes <= INLINE_MAX || this.liveUploads.has(key)) return;
    const log = this.log.child({ traceId, host });
    const written = this.resultsWritten.get(traceId) ?? Promise.resolve();
    const upload = written
      .then(() => this.store.putAttachmentStream(resultDocId(traceId, host), HOST_ATTACHMENT, PCAP_CONTENT_TYPE, feed.reader()))
      .then(
        (r) => r.bytes,
        (e: Error) => {
          log.info({ err: e }, "packets.pcap was not stored as it arrived; it is stored from the spool once the host is finished");
          return null;
        },
      );
    this.liveUploads.set(key, upload);
    if (owner === this.id && this.mergeWhileReceiving.delete(traceId)) {
      this.liveMerges.set(traceId, {
        feed,
        merge: mergeOneLive(this.store, traceId, host, feed.reader(), { hostStored: upload, feed }).catch((e: Error) => {
          log.info({ err: e }, 'the merge made while the host arrived did not complete; the trace is merged once the host is stored');
          return null;
        }),
      });
    }
  }

  /** Stores a host's final state and PCAP from the spool, now or when the store is back. */
  private storeFinal(traceId: string, host: string, final: HostFinal, owner: string | null): void {
    this.metrics.hostsFinished.inc({ state: final.state });
    const live = this.live.get(traceId);
    live?.set(host, {
      host,
      state: final.state,
      packets: final.packets,
      bytes: final.bytes,
      truncated: final.truncated,
      ...(final.error ? { error: final.error } : {}),
      stored: false,
      updatedAt: new Date().toISOString(),
    });
    const result: NewResult = {
      traceId,
      host,
      state: final.state,
      packets: final.packets,
      bytes: final.bytes,
      truncated: final.truncated,
      ...(final.error !== undefined ? { error: final.error } : {}),
      messages: final.messages,
      ...(final.streams?.length ? { streams: final.streams } : {}),
    };
    let spooled = false;
    const liveKey = `${traceId} ${host}`;
    this.jobs.enqueue(`host:${traceId}:${host}`, async () => {
      if (!spooled) {
        // On disk before the store is asked, so a restart can still store it; a full disk must not stop the store from getting it.
        await this.spool.writeFinal(traceId, host, final).catch((e: Error) => this.log.error({ traceId, host, err: e }, "cannot spool a host's final state"));
        spooled = true;
      }
      const size = final.hasPcap ? this.spool.pcapSize(traceId, host) : 0;
      if (size <= INLINE_MAX) {
        // Trimmed down to the inline size (or nothing): whatever was followed is not this file.
        if (this.liveUploads.delete(liveKey)) this.metrics.storedWhileReceived.inc({ attachment: HOST_ATTACHMENT, outcome: 'redone' });
        // Taken once: after this write (or a failed one) the store's revision is another.
        const revs = this.createdRevs.get(traceId);
        const rev = revs?.get(resultDocId(traceId, host));
        revs?.delete(resultDocId(traceId, host));
        await this.batch.write(result, final.hasPcap ? () => this.spool.readPcap(traceId, host) : null, rev);
        this.metrics.bytesStored.inc(size);
      } else if ((await this.liveUploads.get(liveKey)) === size) {
        // Stored as it arrived (the upload ends with the host's run, so it is over by now): only the result is left.
        await this.store.putResult(result);
        this.metrics.bytesStored.inc(size);
        if (this.liveUploads.delete(liveKey)) this.metrics.storedWhileReceived.inc({ attachment: HOST_ATTACHMENT, outcome: 'used' });
      } else {
        if (this.liveUploads.delete(liveKey)) this.metrics.storedWhileReceived.inc({ attachment: HOST_ATTACHMENT, outcome: 'redone' });
        await this.store.putResult(result);
        const r = await this.store.putAttachmentStream(resultDocId(traceId, host), HOST_ATTACHMENT, PCAP_CONTENT_TYPE, this.spool.pcapStream(traceId, host));
        this.metrics.bytesStored.inc(r.bytes);
      }
      await this.spool.markStored(traceId, host, owner === this.id);
    }, () => {
      // After the job has left `pending`: the merge it may start waits for no stored host.
      this.log.debug({ traceId, host }, 'host result stored');
      if (owner === null || owner === this.id) this.hostStored(traceId, host);
      else this.peers?.hostFinal({ traceId, host, owner });
    });
  }

  private hostStored(traceId: string, host: string): void {
    const o = this.owned.get(traceId);
    if (!o) return;
    o.stored.add(host);
    // The size first: the full check per stored host made a 10,000-host trace quadratic.
    if (!o.interrupted && !o.finalizing && o.stored.size >= o.hosts.length && o.hosts.every((h) => o.stored.has(h))) {
      o.finalizing = true;
      this.spool.markMergePending(traceId);
      this.jobs.enqueue(`merge:${traceId}`, () => this.finalize(traceId, null));
    }
  }

  /** After a restart: hosts not finished are lost, and the trace is interrupted (with what arrived merged). */
  private async closeInterrupted(traceId: string): Promise<void> {
    const o = this.owned.get(traceId);
    if (!o) return;
    const trace = await this.store.getTrace(traceId);
    if (!trace) {
      this.owned.delete(traceId);
      this.removeSpooled(traceId);
      return;
    }
    const error = 'the dispatcher restarted before this host finished';
    const listed = await this.store.listResults(traceId);
    for (const r of listed) {
      if (isFinalResult(r.state) || this.jobs.has(`host:${traceId}:${r.host}`)) continue;
      await this.store.updateResult(traceId, r.host, (d) => {
        if (isFinalResult(d.state)) return null;
        d.state = 'lost';
        d.error = error;
      });
    }
    // Result docs are made in the background after the hosts are asked: a restart may come before some exist.
    const have = new Set(listed.map((r) => r.host));
    const missing = trace.hosts.filter((h) => !have.has(h) && !this.jobs.has(`host:${traceId}:${h}`));
    if (missing.length) await this.store.createResults(missing.map((host) => ({ traceId, host, state: 'lost' as const, error })));
    this.spool.markMergePending(traceId);
    await this.finalize(traceId, 'interrupted');
  }

  /** Every host is final and stored: merge their PCAPs into merged.pcap and close the trace. */
  private async finalize(traceId: string, forced: 'interrupted' | null): Promise<void> {
    // Host results still waiting for the store must land first.
    if (this.jobs.hasPrefix(`host:${traceId}:`)) throw new RetryLater();
    // Both reads at once: one store round trip less before the merge (bench/ttfp). The results by id, not
    // through a view: see resultsOf().
    const hosts = this.owned.get(traceId)?.hosts;
    const [trace, listed] = await Promise.all([this.store.getTrace(traceId), hosts ? this.store.resultsOf(traceId, hosts) : this.store.listResults(traceId)]);
    if (!trace) {
      this.forget(traceId);
      this.owned.delete(traceId);
      this.live.delete(traceId);
      this.removeSpooled(traceId);
      return;
    }
    // Read so that no host's packets.pcap is missed on a CouchDB cluster whose view lags behind its writes.
    const results = await this.store.settledResults(traceId, trace.hosts, listed);
    const early = forced ? undefined : this.liveMerges.get(traceId);
    const live = early ? await early.merge : null;
    // The merge made while the one host arrived is that of its stored file when the file is what it followed, whole.
    const used = live !== null && early!.feed.ended && results.length === 1 && results[0]._attachments?.[HOST_ATTACHMENT] !== undefined;
    if (early && this.liveMerges.delete(traceId)) this.metrics.storedWhileReceived.inc({ attachment: MERGED_ATTACHMENT, outcome: used ? 'used' : 'redone' });
    const m: TraceMerge = used ? liveMergeFigures(live!, results) : await mergeTrace(this.store, this.spool, traceId, results, trace.request.alignClocks === true);
    for (const n of m.notes) this.log.info({ traceId }, n);
    const stateOf = new Map(results.map((r) => [r.host, r.state]));
    const state = forced ?? traceOutcome(trace.hosts.map((h) => stateOf.get(h) ?? 'lost'));
    const finishedAt = new Date().toISOString();
    await this.store.updateTrace(traceId, (d) => {
      d.state = state;
      d.finishedAt = finishedAt;
      d.merged = { packets: m.packets, bytes: m.bytes, duplicates: m.duplicates };
      if (m.clocks) d.clocks = m.clocks;
      else delete d.clocks;
      d.hops = m.hops;
    });
    this.metrics.tracesFinished.inc({ state });
    this.forget(traceId);
    this.owned.delete(traceId);
    this.live.delete(traceId);
    // Told before the spool is cleared: a fleet trace's spool is two files a host (a restart meanwhile finds
    // merged.pending and merges again, as it would have before the trace doc's final write).
    this.publish({ traceId, host: null, state, packets: m.packets, bytes: m.bytes, merged: { packets: m.packets, bytes: m.bytes, duplicates: m.duplicates }, at: finishedAt });
    this.removeSpooled(traceId);
  }

  /** The trace's spool goes in the background (its files are many at fleet scale); a failure leaves them for the next start's scan. */
  private removeSpooled(traceId: string): void {
    this.spool.removeTrace(traceId).catch((e: Error) => this.log.warn({ traceId, err: e }, "the trace's spool files could not all be removed"));
  }

  /** What the trace's live uploads and merge left here. */
  private forget(traceId: string): void {
    this.resultsWritten.delete(traceId);
    this.createdRevs.delete(traceId);
    this.mergeWhileReceiving.delete(traceId);
    this.liveMerges.delete(traceId);
  }

  // ---- updates -------------------------------------------------------------

  private publish(u: TraceUpdate): void {
    if (u.host) {
      const live = this.live.get(u.traceId);
      const prev = live?.get(u.host);
      if (live && !(prev && isFinalResult(prev.state) && !isFinalResult(u.state))) {
        live.set(u.host, {
          host: u.host,
          state: u.state as HostView['state'],
          packets: u.packets,
          bytes: u.bytes,
          truncated: u.truncated ?? false,
          ...(u.error ? { error: u.error } : {}),
          stored: false,
          updatedAt: u.at,
        });
      }
    }
    for (const l of this.listeners) {
      try {
        l(u);
      } catch (e) {
        this.log.error({ err: e }, 'an update listener failed');
      }
    }
  }
}
