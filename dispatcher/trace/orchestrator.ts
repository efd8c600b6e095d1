import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { PassThrough } from 'node:stream';
import type { Namespace } from 'socket.io';
import { z } from 'zod';
import { AgentView, HostView, TraceUpdate, TraceView } from '../../shared/protocol/client';
import { parseMessage } from '../../shared/protocol/common';
import { checkQuery, QueryError, traceQuery, TraceQuery, TraceRequest } from '../../shared/query/query';
import type { AgentFleet } from '../fleet/server';
import { mergeCaptures } from '../merge/merge';
import { HOST_ATTACHMENT, MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, resultDocId, traceDocId } from '../store/layout';
import { NewResult, StoreError, StoreUnreachableError, TraceStore } from '../store/store';
import { HostRun, HostRunTimeouts } from './host-run';
import { HostFinal, Spool } from './spool';
import { TraceRequestError, Traces } from './types';
import { isFinalResult, traceOutcome, traceView } from './view';

export interface OrchestratorOptions {
  store: TraceStore;
  fleet: AgentFleet;
  spool: Spool;
  timeouts?: Partial<HostRunTimeouts>;
  /** How often work the store could not take is tried again (ms). */
  retryMs?: number;
  /** Peers share agents through the Socket.IO adapter (Redis): hosts on a peer are run there. */
  clustered?: boolean;
  log?: (line: string) => void;
}

/** Counters for /metrics. */
export interface TraceStats {
  tracesStarted: number;
  tracesFinished: Record<string, number>;
  hostsFinished: Record<string, number>;
  chunks: number;
  bytesReceived: number;
  bytesStored: number;
  errors: Record<string, number>;
  pendingStores: number;
}

/** What a dispatcher owning a trace keeps until it is finished. */
interface Owned {
  id: string;
  hosts: string[];
  /** Hosts whose final result is in the store. */
  stored: Set<string>;
  /** Hosts run by a peer dispatcher, with the id of the agent's connection that was asked. */
  remote: Map<string, string>;
  /** Remote hosts the watchdog found without that connection (or final without their PCAP), and since when. */
  missing: Map<string, number>;
  finalizing: boolean;
  interrupted: boolean;
}

const peerRunHost = z.object({ traceId: z.string(), host: z.string(), query: traceQuery, owner: z.string() });
const peerHostFinal = z.object({ traceId: z.string(), host: z.string(), owner: z.string() });
const peerCancel = z.object({ traceId: z.string() });
/** How long a peer's final result may wait for its PCAP once the agent's connection to that peer is gone. */
const PEER_PCAP_GRACE_MS = 60_000;

/**
 * Turns a trace request into a fleet-wide trace: stores it, asks every
 * chosen agent (on this dispatcher, or through a peer with Redis), keeps
 * each host's result in the spool until the store has it, and once every
 * host is final builds the merged PCAP. Nothing here waits on a slow or
 * dead host: each host ends by itself (done, error, unreachable, lost,
 * cancelled).
 */
export class Orchestrator implements Traces {
  readonly stats: TraceStats = { tracesStarted: 0, tracesFinished: {}, hostsFinished: {}, chunks: 0, bytesReceived: 0, bytesStored: 0, errors: {}, pendingStores: 0 };
  /** Identifies this dispatcher among peers. */
  readonly id = randomBytes(6).toString('hex');
  private readonly store: TraceStore;
  private readonly fleet: AgentFleet;
  private readonly spool: Spool;
  private readonly timeouts: HostRunTimeouts;
  private readonly log: (line: string) => void;
  private readonly nsp: Namespace;
  private readonly clustered: boolean;
  private readonly retryMs: number;
  /** Runs on this dispatcher's agents, by trace then host. */
  private readonly runs = new Map<string, Map<string, HostRun>>();
  private readonly live = new Map<string, Map<string, HostView>>();
  private readonly owned = new Map<string, Owned>();
  /** Who owns a trace whose hosts run here for a peer. */
  private readonly ownerOf = new Map<string, string>();
  private readonly listeners = new Set<(u: TraceUpdate) => void>();
  /** Work the store refused for being away, by key; retried every retryMs. */
  private readonly pending = new Map<string, Job>();
  /** Jobs being tried now: the retry loop leaves them be. */
  private readonly inFlight = new Set<Job>();
  private readonly batch: ResultBatch;
  private retryTimer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(opts: OrchestratorOptions) {
    this.store = opts.store;
    this.fleet = opts.fleet;
    this.spool = opts.spool;
    this.timeouts = { runAckMs: 10_000, idleMs: 30_000, ...opts.timeouts };
    this.log = opts.log ?? ((l) => process.stderr.write(`${l}\n`));
    this.nsp = opts.fleet.agents;
    this.clustered = opts.clustered ?? false;
    this.retryMs = opts.retryMs ?? 5_000;
    this.batch = new ResultBatch(this.store);

    this.fleet.onTraceEvent((agent, socketId, event, data, ack) => this.onAgentEvent(agent, socketId, event, data, ack));
    this.fleet.onAgentGone((agent, socketId) => {
      for (const hosts of this.runs.values()) {
        const run = hosts.get(agent);
        if (run && run.socketId === socketId) run.gone();
      }
    });
    if (this.clustered) {
      this.nsp.on('tf:run-host', (data: unknown) => this.onPeerRunHost(data));
      this.nsp.on('tf:host-final', (data: unknown) => this.onPeerHostFinal(data));
      this.nsp.on('tf:cancel', (data: unknown) => {
        const m = parseMessage(peerCancel, 'tf:cancel', data);
        if (m.ok) this.cancelLocal(m.value.traceId);
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
        if (interrupted) this.log(`tracefleet dispatcher: trace ${t.traceId} was running when the dispatcher stopped; marking it interrupted`);
      }
      // A peer's trace run here before the restart: the peer finds the result in the store.
      for (const f of t.finals) this.storeFinal(t.traceId, f.host, f.final, t.owned ? this.id : null);
      if (t.owned) {
        const interrupted = this.owned.get(t.traceId)!.interrupted;
        this.enqueue(`merge:${t.traceId}`, interrupted ? () => this.closeInterrupted(t.traceId) : () => this.finalize(t.traceId, null));
      }
    }
  }

  // ---- Traces --------------------------------------------------------------

  async start(req: TraceRequest, user: string, created?: (id: string) => void | Promise<void>): Promise<TraceView> {
    // The shape was validated where the request came in (namespace, REST); the values are checked here, where every path meets.
    const { hosts: asked, ...query } = req;
    try {
      checkQuery(query);
    } catch (e) {
      if (e instanceof QueryError) throw new TraceRequestError(e.message);
      throw e;
    }
    const { agents, sockets } = await this.fleetView();
    const connected = new Map(agents.filter((a) => a.connected).map((a) => [a.name, a]));
    let hosts: string[];
    if (asked) {
      const known = new Set(agents.map((a) => a.name));
      const unknown = [...new Set(asked)].filter((h) => !known.has(h));
      if (unknown.length) {
        throw new TraceRequestError(
          `unknown host${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}: no agent of that name has connected; known agents: ${[...known].sort().slice(0, 20).join(', ') || 'none'}`,
        );
      }
      hosts = [...new Set(asked)];
    } else {
      hosts = [...connected.keys()].sort();
      if (hosts.length === 0) throw new TraceRequestError('no agent is connected to the dispatcher, so there is nobody to trace: start agents with --dispatcher', 'conflict');
    }
    const trace = await this.store.createTrace({ request: req as { [k: string]: never }, user, hosts });
    const id = trace.id;
    this.stats.tracesStarted++;
    const o: Owned = { id, hosts, stored: new Set(), remote: new Map(), missing: new Map(), finalizing: false, interrupted: false };
    this.owned.set(id, o);
    this.spool.markOwned({ traceId: id, hosts, createdAt: trace.createdAt });
    await created?.(id);
    // Written while the agents are already asked: a thousand result docs take the store a while, and a
    // host's final write creates its doc if it gets there first (the bulk create then leaves it alone).
    const queued = this.store.createResults(hosts.map((host) => ({ traceId: id, host }))).catch((e: Error) => {
      this.log(`tracefleet dispatcher: trace ${id}: the queued results were not written (${e.message}); each host's result is written when it finishes`);
    });
    const live = new Map<string, HostView>();
    this.live.set(id, live);
    for (const host of hosts) {
      const socket = this.fleet.socketOf(host);
      if (socket) this.runLocal(id, host, query, socket, this.id);
      else if (connected.has(host) && this.clustered) {
        o.remote.set(host, sockets.get(host) ?? '');
        this.nsp.serverSideEmit('tf:run-host', { traceId: id, host, query, owner: this.id });
      } else {
        const final: HostFinal = { state: 'unreachable', packets: 0, bytes: 0, truncated: false, error: `agent ${host} is not connected to any dispatcher`, messages: [], hasPcap: false };
        this.publish({ traceId: id, host, state: 'unreachable', packets: 0, bytes: 0, error: final.error, at: new Date().toISOString() });
        this.storeFinal(id, host, final, this.id);
      }
    }
    this.publish({ traceId: id, host: null, state: 'running', packets: 0, bytes: 0, at: trace.createdAt });
    await queued;
    return traceView(trace, [], live);
  }

  async cancel(id: string): Promise<TraceView> {
    const trace = await this.store.getTrace(id);
    if (!trace) throw new TraceRequestError(`no trace ${id}`, 'not_found');
    if (trace.state !== 'running') throw new TraceRequestError(`trace ${id} is already ${trace.state}`, 'conflict');
    this.cancelLocal(id);
    if (this.clustered) this.nsp.serverSideEmit('tf:cancel', { traceId: id });
    const v = await this.view(id);
    return v as TraceView;
  }

  async view(id: string): Promise<TraceView | null> {
    const trace = await this.store.getTrace(id);
    if (!trace) return null;
    const results = await this.store.listResults(id);
    return traceView(trace, results, this.live.get(id));
  }

  async agents(): Promise<AgentView[]> {
    return (await this.fleetView()).agents;
  }

  /** The agents here and on peers, and (clustered) the id of each connected agent's socket, wherever it is. */
  private async fleetView(): Promise<{ agents: AgentView[]; sockets: Map<string, string> }> {
    const local = this.fleet.registry.list();
    const ids = new Map<string, string>();
    if (!this.clustered) return { agents: local, sockets: ids };
    const byName = new Map<string, AgentView>(local.map((a) => [a.name, a]));
    try {
      const sockets = await this.nsp.fetchSockets();
      for (const s of sockets) {
        const v = (s.data as { view?: AgentView }).view;
        if (v && (!byName.get(v.name)?.connected || !byName.has(v.name))) byName.set(v.name, { ...v, connected: true });
        const name = (s.data as { name?: string }).name;
        if (name) ids.set(name, s.id);
      }
    } catch (e) {
      this.log(`tracefleet dispatcher: cannot list the agents of peer dispatchers: ${(e as Error).message}`);
    }
    return { agents: [...byName.values()].sort((a, b) => a.name.localeCompare(b.name)), sockets: ids };
  }

  onUpdate(listener: (u: TraceUpdate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops timers; running host runs keep their spool files for the next start. */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.watchdog) clearInterval(this.watchdog);
    for (const hosts of this.runs.values()) for (const r of hosts.values()) r.abandon();
    this.runs.clear();
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
    if (owner !== this.id) this.ownerOf.set(traceId, owner);
    const run = new HostRun({
      traceId,
      host,
      query,
      socket,
      spool: this.spool,
      timeouts: this.timeouts,
      update: (u) => this.publish(u),
      finished: (final) => {
        hosts!.delete(host);
        if (hosts!.size === 0) this.runs.delete(traceId);
        this.storeFinal(traceId, host, final, owner);
      },
      count: (what, bytes) => {
        if (what === 'chunk') {
          this.stats.chunks++;
          this.stats.bytesReceived += bytes ?? 0;
        } else this.countError('protocol');
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
    const hosts = this.runs.get(traceId);
    if (hosts) for (const r of [...hosts.values()]) r.cancel();
  }

  private onPeerRunHost(data: unknown): void {
    const m = parseMessage(peerRunHost, 'tf:run-host', data);
    if (!m.ok) return this.log(`tracefleet dispatcher: from a peer: ${m.error}`);
    const socket = this.fleet.socketOf(m.value.host);
    if (socket) this.runLocal(m.value.traceId, m.value.host, m.value.query, socket, m.value.owner);
  }

  private onPeerHostFinal(data: unknown): void {
    const m = parseMessage(peerHostFinal, 'tf:host-final', data);
    if (!m.ok || m.value.owner !== this.id) return;
    this.hostStored(m.value.traceId, m.value.host);
  }

  /**
   * Peers that died take their hosts' runs with them. A remote host's run
   * is over when the agent's connection that took it is gone: closed, or
   * replaced by a new one here or on any peer (an agent aborts its traces
   * when it reconnects). Seen so on two passes, a watchdog period apart (a
   * live peer has stored its own final state by then), the host is lost.
   */
  private async checkRemoteHosts(): Promise<void> {
    const withRemote = [...this.owned.values()].filter((o) => o.remote.size > 0 && !o.finalizing);
    if (withRemote.length === 0) return;
    let connected: Map<string, string>;
    try {
      connected = new Map((await this.nsp.fetchSockets()).map((s) => [(s.data as { name?: string }).name ?? '', s.id]));
    } catch {
      return;
    }
    for (const o of withRemote) {
      let results;
      try {
        results = await this.store.listResults(o.id);
      } catch {
        return;
      }
      for (const r of results) {
        const socketId = o.remote.get(r.host);
        if (socketId === undefined || o.stored.has(r.host) || this.pending.has(`host:${o.id}:${r.host}`)) continue;
        const final = isFinalResult(r.state);
        // The peer stores the result, then its PCAP, then says so (tf:host-final): a final state without its PCAP is still being stored.
        if (final && (r.bytes === 0 || r._attachments?.[HOST_ATTACHMENT])) {
          this.hostStored(o.id, r.host);
          continue;
        }
        if (connected.get(r.host) === socketId) {
          o.missing.delete(r.host);
          continue;
        }
        const since = o.missing.get(r.host);
        if (since === undefined) {
          o.missing.set(r.host, Date.now());
          continue;
        }
        if (final) {
          // The peer died between storing the result and its PCAP; its spool keeps the PCAP until it runs again.
          if (Date.now() - since < PEER_PCAP_GRACE_MS) continue;
          this.log(`tracefleet dispatcher: trace ${o.id}: host ${r.host}'s PCAP never reached the store (its dispatcher is gone); merging without it`);
          this.hostStored(o.id, r.host);
          continue;
        }
        const error = `agent ${r.host} (on a peer dispatcher) disconnected mid-trace, or its dispatcher stopped`;
        const lost: HostFinal = { state: 'lost', packets: 0, bytes: 0, truncated: false, error, messages: [], hasPcap: false };
        this.publish({ traceId: o.id, host: r.host, state: 'lost', packets: 0, bytes: 0, error, at: new Date().toISOString() });
        this.storeFinal(o.id, r.host, lost, this.id);
      }
    }
  }

  // ---- storing -------------------------------------------------------------

  /** Stores a host's final state and PCAP from the spool, now or when the store is back. */
  private storeFinal(traceId: string, host: string, final: HostFinal, owner: string | null): void {
    this.stats.hostsFinished[final.state] = (this.stats.hostsFinished[final.state] ?? 0) + 1;
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
    };
    let spooled = false;
    this.enqueue(`host:${traceId}:${host}`, async () => {
      if (!spooled) {
        // On disk before the store is asked, so a restart can still store it; a full disk must not stop the store from getting it.
        await this.spool.writeFinal(traceId, host, final).catch((e: Error) => this.log(`tracefleet dispatcher: cannot spool ${host}'s final state: ${e.message}`));
        spooled = true;
      }
      const size = final.hasPcap ? this.spool.pcapSize(traceId, host) : 0;
      if (size <= INLINE_MAX) {
        await this.batch.write(result, final.hasPcap ? () => this.spool.readPcap(traceId, host) : null);
        this.stats.bytesStored += size;
      } else {
        await this.store.putResult(result);
        const r = await this.store.putAttachmentStream(resultDocId(traceId, host), HOST_ATTACHMENT, PCAP_CONTENT_TYPE, this.spool.pcapStream(traceId, host));
        this.stats.bytesStored += r.bytes;
      }
      await this.spool.markStored(traceId, host, owner === this.id);
    }, () => {
      // After the job has left `pending`: the merge it may start waits for no stored host.
      if (owner === null || owner === this.id) this.hostStored(traceId, host);
      else if (this.clustered) this.nsp.serverSideEmit('tf:host-final', { traceId, host, owner });
    });
  }

  private hostStored(traceId: string, host: string): void {
    const o = this.owned.get(traceId);
    if (!o) return;
    o.stored.add(host);
    if (!o.interrupted && !o.finalizing && o.hosts.every((h) => o.stored.has(h))) {
      o.finalizing = true;
      this.spool.markMergePending(traceId);
      this.enqueue(`merge:${traceId}`, () => this.finalize(traceId, null));
    }
  }

  /** After a restart: hosts not finished are lost, and the trace is interrupted (with what arrived merged). */
  private async closeInterrupted(traceId: string): Promise<void> {
    const o = this.owned.get(traceId);
    if (!o) return;
    const trace = await this.store.getTrace(traceId);
    if (!trace) {
      this.owned.delete(traceId);
      this.spool.removeTrace(traceId);
      return;
    }
    for (const r of await this.store.listResults(traceId)) {
      if (isFinalResult(r.state) || this.pending.has(`host:${traceId}:${r.host}`)) continue;
      await this.store.updateResult(traceId, r.host, (d) => {
        if (isFinalResult(d.state)) return null;
        d.state = 'lost';
        d.error = 'the dispatcher restarted before this host finished';
      });
    }
    this.spool.markMergePending(traceId);
    await this.finalize(traceId, 'interrupted');
  }

  /** Every host is final and stored: merge their PCAPs into merged.pcap and close the trace. */
  private async finalize(traceId: string, forced: 'interrupted' | null): Promise<void> {
    // Host results still waiting for the store must land first.
    for (const k of this.pending.keys()) if (k.startsWith(`host:${traceId}:`)) throw new RetryLater();
    const trace = await this.store.getTrace(traceId);
    if (!trace) {
      this.owned.delete(traceId);
      this.live.delete(traceId);
      this.spool.removeTrace(traceId);
      return;
    }
    const results = await this.store.listResults(traceId);
    // The hosts this dispatcher ran are read from its spool; only peers' hosts come back from the store.
    let storeFailed: Error | null = null;
    const inputs = results
      .filter((r) => r._attachments?.[HOST_ATTACHMENT])
      .map((r) => {
        const local = this.spool.storedPcap(traceId, r.host);
        const stream = local ? createReadStream(local) : this.store.getAttachmentStream(resultDocId(traceId, r.host), HOST_ATTACHMENT);
        stream.once('error', (e: Error) => {
          if (e instanceof StoreError) storeFailed ??= e;
        });
        return { host: r.host, stream };
      });
    const merged = new PassThrough();
    const merging = mergeCaptures(inputs, merged).catch((e: Error) => {
      merged.destroy(e);
      throw e;
    });
    let m: Awaited<typeof merging>;
    try {
      [m] = await Promise.all([merging, this.store.putAttachmentStream(traceDocId(traceId), MERGED_ATTACHMENT, PCAP_CONTENT_TYPE, merged)]);
    } catch (e) {
      // An input read back from a store that went away is the store's failure: try the merge again later.
      if (storeFailed) throw storeFailed;
      throw e;
    }
    for (const n of m.notes) this.log(`tracefleet dispatcher: trace ${traceId}: ${n}`);
    const state = forced ?? traceOutcome(trace.hosts.map((h) => results.find((r) => r.host === h)?.state ?? 'lost'));
    const finishedAt = new Date().toISOString();
    await this.store.updateTrace(traceId, (d) => {
      d.state = state;
      d.finishedAt = finishedAt;
      d.merged = { packets: m.packets, bytes: m.bytes, duplicates: m.duplicates };
    });
    this.stats.tracesFinished[state] = (this.stats.tracesFinished[state] ?? 0) + 1;
    this.owned.delete(traceId);
    this.live.delete(traceId);
    this.spool.removeTrace(traceId);
    this.publish({ traceId, host: null, state, packets: m.packets, bytes: m.bytes, merged: { packets: m.packets, bytes: m.bytes, duplicates: m.duplicates }, at: finishedAt });
  }

  // ---- retries -------------------------------------------------------------

  /** Runs a store job now; if the store is away it stays pending and is tried again every retryMs. */
  private enqueue(key: string, run: () => Promise<void>, after?: () => void): void {
    const job: Job = { run, after };
    this.pending.set(key, job);
    this.stats.pendingStores = this.pending.size;
    void this.runJob(key, job);
  }

  private async runJob(key: string, job: Job): Promise<void> {
    if (this.inFlight.has(job)) return;
    this.inFlight.add(job);
    try {
      await job.run();
      if (this.pending.get(key) === job) this.pending.delete(key);
      this.stats.pendingStores = this.pending.size;
      job.after?.();
    } catch (e) {
      if (e instanceof RetryLater || e instanceof StoreUnreachableError || (e instanceof StoreError && e.statusCode !== undefined && (e.statusCode >= 500 || e.statusCode === 409))) {
        if (!(e instanceof RetryLater)) {
          this.countError('store');
          this.log(`tracefleet dispatcher: ${(e as Error).message}; kept in the spool, trying again every ${this.retryMs / 1000} s`);
        }
        this.scheduleRetry();
      } else {
        this.countError('store');
        this.log(`tracefleet dispatcher: giving up on ${key}: ${(e as Error).message}`);
        if (this.pending.get(key) === job) this.pending.delete(key);
      }
    } finally {
      this.inFlight.delete(job);
    }
    this.stats.pendingStores = this.pending.size;
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      // Host results before merges: a merge waits for its hosts.
      const jobs = [...this.pending.entries()].sort(([a], [b]) => Number(a.startsWith('merge:')) - Number(b.startsWith('merge:')));
      void (async () => {
        for (const [k, j] of jobs) if (this.pending.get(k) === j) await this.runJob(k, j);
      })();
    }, this.retryMs);
    this.retryTimer.unref();
  }

  private countError(kind: string): void {
    this.stats.errors[kind] = (this.stats.errors[kind] ?? 0) + 1;
  }

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
        this.log(`tracefleet dispatcher: an update listener failed: ${(e as Error).message}`);
      }
    }
  }
}

/** Host PCAPs up to this size go to the store inline, in a batch (bounded: at most BATCH_BYTES in memory). */
const INLINE_MAX = 256 * 1024;
const BATCH_ITEMS = 200;
const BATCH_BYTES = 8 * 1024 * 1024;
const BATCH_WAIT_MS = 20;

/**
 * Final results of many hosts gathered for BATCH_WAIT_MS and written in two
 * requests (store.writeResults): a fleet-wide trace finishes a thousand
 * hosts within a second, and a request or four per host swamps the store.
 */
class ResultBatch {
  private queue: Array<{ result: NewResult; read: (() => Promise<Buffer>) | null; resolve: () => void; reject: (e: Error) => void; conflicts?: number }> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly store: TraceStore) {}

  write(result: NewResult, read: (() => Promise<Buffer>) | null): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ result, read, resolve, reject });
      this.timer ??= setTimeout(() => void this.flush(), BATCH_WAIT_MS);
    });
  }

  private async flush(): Promise<void> {
    this.timer = null;
    const items: typeof this.queue = [];
    const pcaps: Array<Buffer | undefined> = [];
    let bytes = 0;
    while (this.queue.length && items.length < BATCH_ITEMS && bytes < BATCH_BYTES) {
      const it = this.queue.shift()!;
      try {
        const pcap = it.read ? await it.read() : undefined;
        bytes += pcap?.length ?? 0;
        items.push(it);
        pcaps.push(pcap);
      } catch (e) {
        it.reject(e as Error);
      }
    }
    if (this.queue.length) this.timer ??= setTimeout(() => void this.flush(), 0);
    if (!items.length) return;
    try {
      const errors = await this.store.writeResults(items.map((it, n) => ({ result: it.result, pcap: pcaps[n] })));
      errors.forEach((err, n) => {
        const it = items[n];
        // A conflict is the doc's creation racing this write (or a peer's update): read its revision again, soon.
        if (err?.statusCode === 409 && (it.conflicts = (it.conflicts ?? 0) + 1) <= 5) {
          this.queue.push(it);
          this.timer ??= setTimeout(() => void this.flush(), BATCH_WAIT_MS);
        } else if (err) it.reject(err);
        else it.resolve();
      });
    } catch (e) {
      for (const it of items) it.reject(e as Error);
    }
  }
}

/** Store work; `after` runs once it succeeded and left the pending list. */
interface Job {
  run: () => Promise<void>;
  after?: () => void;
}

/** A job that must wait for another (a merge for its hosts' results). */
class RetryLater extends Error {}
