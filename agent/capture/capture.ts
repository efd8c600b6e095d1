import { EventEmitter } from 'node:events';
import { mkdirSync, statSync, statfsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { componentLogger } from '../../shared/log/log';
import { enforceBudget } from '../ring/budget';
import { HEP_STREAM, sanitizeStream } from '../ring/layout';
import { MIN_SEGMENT_BYTES } from '../ring/writer';
import { loadNative } from './pcap-native';
import { PCAP_DEFAULT_SNAPLEN } from '../../shared/pcap/pcap';
import type { CaptureCounters, WorkerCommand, WorkerConfig, WorkerMessage } from './worker';
import type { HepWorkerConfig } from '../hep/worker';

export interface CaptureEngineOptions {
  ringDir: string;
  interfaces: string[];
  /** BPF filter for every interface; default: defaultCaptureFilter(). */
  filter?: string;
  /** Default 262144, as dumpcap. */
  snaplen?: number;
  /** Kernel capture buffer per interface. */
  bufferBytes?: number;
  promisc?: boolean;
  maxSegmentBytes?: number;
  maxSegmentSeconds?: number;
  /** Most bytes the ring (segments and indexes) may hold. */
  ringMaxBytes: number;
  /** Free space to leave on the ring's filesystem; default 5% of it, at most 2 GiB. */
  minFreeBytes?: number;
  /** Listen for HEP (agent/hep/worker.ts): one more stream of the ring, HEP_STREAM, run like an interface. */
  hep?: Pick<HepWorkerConfig, 'listen' | 'password' | 'perSenderPerSecond'>;
}

/** The counters are totals over every worker this interface has had. */
export interface InterfaceStats extends CaptureCounters {
  stream: string;
  running: boolean;
  restarts: number;
  /** Restarts ran out; the interface is no longer captured. */
  gaveUp: boolean;
  linkType?: number;
  precision?: 'nano' | 'micro';
  warnings: string[];
  /** The HEP listener's drops by reason (HEP_DROP_REASONS), over every worker it has had. */
  hepDrops?: Record<string, number>;
}

export interface CaptureEngineStats {
  interfaces: Record<string, InterfaceStats>;
  openSegments: string[];
}

/** Error the engine reports for a worker; `stream` names the interface's stream. */
export interface CaptureError extends Error {
  stream?: string;
  code?: string;
  fatal?: boolean;
}

const ZERO: CaptureCounters = { received: 0, dropped: 0, ifDropped: 0, packets: 0, bytes: 0, lostPackets: 0 };

/** a + b, counter by counter; fields other than the counters are not copied. */
function addCounters(a: CaptureCounters, b: CaptureCounters): CaptureCounters {
  return {
    received: a.received + b.received,
    dropped: a.dropped + b.dropped,
    ifDropped: a.ifDropped + b.ifDropped,
    packets: a.packets + b.packets,
    bytes: a.bytes + b.bytes,
    lostPackets: a.lostPackets + b.lostPackets,
  };
}

interface IfaceState {
  device: string;
  /** A libpcap interface, or the HEP listener. */
  kind: 'pcap' | 'hep';
  hepBase: Record<string, number>;
  hepLast: Record<string, number>;
  stream: string;
  worker: Worker | null;
  ready: boolean;
  openSegment: string | null;
  /** Counters of the workers that came before the current one. */
  base: CaptureCounters;
  last: CaptureCounters;
  restarts: number;
  consecutiveFailures: number;
  startedAt: number;
  restartTimer: NodeJS.Timeout | null;
  gaveUp: boolean;
  linkType?: number;
  precision?: 'nano' | 'micro';
  warnings: string[];
  onReady: ((err?: CaptureError) => void) | null;
  onExit: (() => void) | null;
}

const MIB = 1024 * 1024;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const BUDGET_EVERY_MS = 5_000;
const RESTART_BASE_MS = 500;
const RESTART_MAX_MS = 30_000;
/** Restarts in a row (without a worker staying up STABLE_MS) before giving up on an interface. */
const MAX_CONSECUTIVE_RESTARTS = 10;
const STABLE_MS = 60_000;

/** The share of an open segment's size its index file may take, reserved beside it in the budget. */
const OPEN_INDEX_SHARE = 0.2;

/**
 * Captures SIP traffic on several interfaces into one ring directory, one
 * worker thread per interface, and keeps the ring within its byte budget.
 *
 * Events: every worker message under its own type ('ready', 'segment-open',
 * 'flushed', 'segment-closed', 'stats'), plus 'segment-deleted' {type, path}
 * and 'worker-exit' {type, stream, code}. Worker errors go to 'error' as
 * CaptureError objects when someone listens, else to stderr: a capture agent
 * must not crash its host process over an unhandled 'error' event.
 */
export class CaptureEngine extends EventEmitter {
  private readonly opts: Required<Omit<CaptureEngineOptions, 'filter' | 'minFreeBytes' | 'hep'>> &
    Pick<CaptureEngineOptions, 'filter' | 'minFreeBytes' | 'hep'>;
  private readonly ringDir: string;
  private readonly states: IfaceState[];
  private minFreeBytes = 0;
  private budgetTimer: NodeJS.Timeout | null = null;
  private running = false;
  /** Every interface came up once; from then on a dying worker is restarted. */
  private started = false;
  private stopping = false;
  /** Workers write and report each batch at once (a live follow runs): see WorkerConfig.eager. */
  private eager = false;

  constructor(opts: CaptureEngineOptions) {
    super();
    const o = {
      ...opts,
      // dumpcap's default: the largest IPv4 datagram on lo is a 65,549-byte frame.
      snaplen: opts.snaplen ?? PCAP_DEFAULT_SNAPLEN,
      bufferBytes: opts.bufferBytes ?? 32 * MIB,
      promisc: opts.promisc ?? false,
      maxSegmentBytes: opts.maxSegmentBytes ?? 64 * MIB,
      maxSegmentSeconds: opts.maxSegmentSeconds ?? 300,
    };
    if (!o.ringDir) throw new Error('ringDir is required');
    if (!Array.isArray(o.interfaces) || (o.interfaces.length === 0 && !o.hep)) throw new Error('give at least one interface to capture on');
    if (new Set(o.interfaces).size !== o.interfaces.length) throw new Error(`interface listed twice: ${o.interfaces.join(', ')}`);
    const streams = o.interfaces.map(sanitizeStream);
    if (o.hep && streams.includes(HEP_STREAM)) throw new Error(`an interface named '${HEP_STREAM}' cannot be captured beside the HEP listener, whose stream has that name`);
    if (o.hep) streams.push(HEP_STREAM);
    if (new Set(streams).size !== streams.length) {
      throw new Error(`interfaces ${o.interfaces.join(', ')} map to clashing stream names ${streams.join(', ')}`);
    }
    if (!(o.maxSegmentBytes >= MIN_SEGMENT_BYTES)) throw new Error(`maxSegmentBytes must be at least ${MIN_SEGMENT_BYTES}`);
    if (!(o.maxSegmentSeconds > 0)) throw new Error('maxSegmentSeconds must be positive');
    // Each open segment may grow to maxSegmentBytes past the last budget
    // check, so closed segments get what is left after that headroom.
    const headroom = streams.length * o.maxSegmentBytes;
    if (!(o.ringMaxBytes >= 2 * headroom)) {
      throw new Error(
        `ringMaxBytes (${o.ringMaxBytes}) must be at least 2 x maxSegmentBytes x interfaces (${2 * headroom}): ` +
          'the open segments need room beside the closed ones; raise ringMaxBytes or lower maxSegmentBytes',
      );
    }
    if (opts.minFreeBytes !== undefined && !(opts.minFreeBytes >= 0)) throw new Error('minFreeBytes must be >= 0');
    this.opts = o;
    this.ringDir = resolve(o.ringDir);
    const devices = o.hep ? [...o.interfaces, HEP_STREAM] : o.interfaces;
    this.states = devices.map((device, i) => ({
      device,
      kind: o.hep && i === o.interfaces.length ? 'hep' as const : 'pcap' as const,
      hepBase: {},
      hepLast: {},
      stream: streams[i],
      worker: null,
      ready: false,
      openSegment: null,
      base: { ...ZERO },
      last: { ...ZERO },
      restarts: 0,
      consecutiveFailures: 0,
      startedAt: 0,
      restartTimer: null,
      gaveUp: false,
      warnings: [],
      onReady: null,
      onExit: null,
    }));
  }

  /** Resolves once every interface is capturing; rejects with the first interface's error (the others are stopped). */
  async start(): Promise<void> {
    if (this.running || this.stopping) throw new Error('capture engine already started');
    if (this.opts.interfaces.length > 0) loadNative(); // a missing build is reported here, once, not per worker
    try {
      mkdirSync(this.ringDir, { recursive: true });
    } catch (e) {
      throw new Error(`cannot create ring directory ${this.ringDir}: ${(e as Error).message}`);
    }
    this.minFreeBytes = this.opts.minFreeBytes ?? defaultMinFree(this.ringDir);
    this.running = true;
    const results = await Promise.all(this.states.map((s) => this.spawn(s)));
    const failed = results.find((r): r is CaptureError => r !== undefined);
    if (failed) {
      await this.stop();
      throw failed;
    }
    this.started = true;
    this.runBudget();
    this.budgetTimer = setInterval(() => this.runBudget(), BUDGET_EVERY_MS);
    this.budgetTimer.unref();
  }

  /** Stops every worker after it has written what it captured and closed its segment. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.stopping = true;
    if (this.budgetTimer) clearInterval(this.budgetTimer);
    this.budgetTimer = null;
    await Promise.all(
      this.states.map((s) => {
        if (s.restartTimer) clearTimeout(s.restartTimer);
        s.restartTimer = null;
        const w = s.worker;
        if (!w) return undefined;
        return new Promise<void>((done) => {
          s.onExit = done;
          const cmd: WorkerCommand = { type: 'stop' };
          w.postMessage(cmd);
          const t = setTimeout(() => void w.terminate(), STOP_TIMEOUT_MS);
          t.unref();
        });
      }),
    );
    this.runBudget();
    this.running = false;
    this.started = false;
    this.stopping = false;
  }

  /** Eager while a live follow runs (agent/daemon/run.ts); the capture workers take it at once, restarted ones from their config. */
  setEager(on: boolean): void {
    if (this.eager === on) return;
    this.eager = on;
    const cmd: WorkerCommand = { type: 'eager', on };
    for (const s of this.states) if (s.kind !== 'hep') s.worker?.postMessage(cmd);
  }

  stats(): CaptureEngineStats {
    const interfaces: Record<string, InterfaceStats> = {};
    for (const s of this.states) {
      interfaces[s.device] = {
        stream: s.stream,
        running: s.worker !== null && s.ready,
        ...addCounters(s.base, s.last),
        restarts: s.restarts,
        gaveUp: s.gaveUp,
        linkType: s.linkType,
        precision: s.precision,
        warnings: [...s.warnings],
        ...(s.kind === 'hep' ? { hepDrops: addRecords(s.hepBase, s.hepLast) } : {}),
      };
    }
    return { interfaces, openSegments: this.openSegments() };
  }

  openSegments(): string[] {
    return this.states.map((s) => s.openSegment).filter((p): p is string => p !== null);
  }

  /** The budget for closed segments: room is kept for each open segment and its growing index file. */
  private closedBudget(): number {
    return this.opts.ringMaxBytes - this.states.length * Math.ceil(this.opts.maxSegmentBytes * (1 + OPEN_INDEX_SHARE));
  }

  /** Deletes the oldest segments until the ring is within budget; returns what it deleted. */
  enforceBudget(): string[] {
    const deleted = enforceBudget(this.ringDir, {
      maxBytes: this.closedBudget(),
      minFreeBytes: this.minFreeBytes,
      keep: new Set(this.openSegments()),
      keepNewestOf: this.states.filter((s) => s.worker !== null).map((s) => s.stream),
    });
    for (const path of deleted) this.emit('segment-deleted', { type: 'segment-deleted', path });
    return deleted;
  }

  private runBudget(): void {
    try {
      this.enforceBudget();
    } catch (e) {
      this.report(Object.assign(new Error(`ring budget: ${(e as Error).message}`), { fatal: false }));
    }
  }

  private report(err: CaptureError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else componentLogger('agent.capture').error({ err }, 'capture error');
  }

  /** Starts the interface's worker; resolves when it is capturing (undefined) or has failed to (the error). */
  private spawn(s: IfaceState): Promise<CaptureError | undefined> {
    const budget = { maxBytes: this.closedBudget(), minFreeBytes: this.minFreeBytes, streams: this.states.map((x) => x.stream) };
    const hepCfg: HepWorkerConfig | null = s.kind === 'hep' && this.opts.hep
      ? { ...this.opts.hep, ringDir: this.ringDir, stream: s.stream, maxSegmentBytes: this.opts.maxSegmentBytes, maxSegmentSeconds: this.opts.maxSegmentSeconds, budget }
      : null;
    const cfg: WorkerConfig = {
      ringDir: this.ringDir,
      device: s.device,
      stream: s.stream,
      filter: this.opts.filter,
      snaplen: this.opts.snaplen,
      bufferBytes: this.opts.bufferBytes,
      promisc: this.opts.promisc,
      maxSegmentBytes: this.opts.maxSegmentBytes,
      maxSegmentSeconds: this.opts.maxSegmentSeconds,
      budget,
      eager: this.eager,
    };
    const w = hepCfg ? new Worker(join(__dirname, '..', 'hep', 'worker.js'), { workerData: hepCfg }) : new Worker(join(__dirname, 'worker.js'), { workerData: cfg });
    s.worker = w;
    s.ready = false;
    s.startedAt = Date.now();
    s.last = { ...ZERO };
    let crash: Error | null = null;
    return new Promise((settle) => {
      const timer = setTimeout(() => {
        s.onReady?.(Object.assign(new Error(`capture on ${s.device} did not start within ${START_TIMEOUT_MS} ms`), { stream: s.stream }));
        void w.terminate();
      }, START_TIMEOUT_MS);
      s.onReady = (err) => {
        clearTimeout(timer);
        s.onReady = null;
        settle(err);
      };
      w.on('message', (m: WorkerMessage) => this.onMessage(s, m));
      w.on('error', (e) => {
        crash = e;
      });
      w.on('exit', (code) => {
        clearTimeout(timer);
        this.onWorkerExit(s, w, code, crash);
      });
    });
  }

  private onMessage(s: IfaceState, m: WorkerMessage): void {
    switch (m.type) {
      case 'ready':
        s.ready = true;
        s.linkType = m.linkType;
        s.precision = m.precision;
        s.warnings = m.warnings;
        for (const w of m.warnings) this.report(Object.assign(new Error(w), { stream: s.stream, fatal: false, code: 'WARNING' }));
        s.onReady?.();
        break;
      case 'segment-open':
        s.openSegment = m.path;
        break;
      case 'segment-deleted':
        this.emit('segment-deleted', { type: 'segment-deleted', path: m.path });
        break;
      case 'segment-closed':
        if (s.openSegment === m.path) s.openSegment = null;
        // Budget first, so a listener that looks at the ring sees it trimmed.
        this.runBudget();
        break;
      case 'stats':
        s.last = addCounters(ZERO, m);
        if (m.hepDrops) s.hepLast = m.hepDrops;
        break;
      case 'error': {
        const err: CaptureError = Object.assign(new Error(m.message), { stream: s.stream, code: m.code, fatal: m.fatal });
        if (m.fatal && s.onReady) {
          s.onReady(err);
          return;
        }
        this.report(err);
        return;
      }
      case 'stopped':
        break;
    }
    this.emit(m.type, m);
  }

  private onWorkerExit(s: IfaceState, w: Worker, code: number, crash: Error | null): void {
    if (s.worker !== w) return;
    const wasReady = s.ready;
    s.worker = null;
    s.ready = false;
    s.base = addCounters(s.base, s.last);
    s.last = { ...ZERO };
    s.hepBase = addRecords(s.hepBase, s.hepLast);
    s.hepLast = {};
    if (s.openSegment) {
      // The worker died with a segment open; it is final now, and whatever
      // made it to disk is what readers get.
      const path = s.openSegment;
      s.openSegment = null;
      let bytes = 0;
      try {
        bytes = statSync(path).size;
      } catch {
        // already deleted
      }
      this.emit('segment-closed', { type: 'segment-closed', stream: s.stream, path, bytes });
    }
    this.emit('worker-exit', { type: 'worker-exit', stream: s.stream, code });
    const why = `capture worker for ${s.device} exited (code ${code})${crash ? `: ${crash.message}` : ''}`;
    if (s.onReady) s.onReady(Object.assign(new Error(`${why} before it was ready`), { stream: s.stream }));
    if (this.started && !this.stopping) {
      // A worker that never got ready has had its error reported already.
      if (wasReady) this.report(Object.assign(new Error(why), { stream: s.stream, fatal: true }));
      this.scheduleRestart(s);
    }
    const done = s.onExit;
    s.onExit = null;
    done?.();
  }

  private scheduleRestart(s: IfaceState): void {
    if (Date.now() - s.startedAt >= STABLE_MS) s.consecutiveFailures = 0;
    if (s.consecutiveFailures >= MAX_CONSECUTIVE_RESTARTS) {
      s.gaveUp = true;
      this.report(
        Object.assign(new Error(`giving up on ${s.device} after ${MAX_CONSECUTIVE_RESTARTS} failed restarts; restart the agent once it is fixed`), {
          stream: s.stream,
          fatal: true,
        }),
      );
      return;
    }
    const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** s.consecutiveFailures);
    s.consecutiveFailures++;
    s.restartTimer = setTimeout(() => {
      s.restartTimer = null;
      if (!this.running || this.stopping) return;
      s.restarts++;
      void this.spawn(s).then((err) => {
        if (err) this.report(err); // its exit schedules the next try
      });
    }, delay);
    s.restartTimer.unref();
  }
}

function addRecords(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function defaultMinFree(dir: string): number {
  const s = statfsSync(dir);
  return Math.min(2 * 1024 * MIB, Math.floor(s.blocks * s.bsize * 0.05));
}
