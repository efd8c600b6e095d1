import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { CaptureEngine, CaptureEngineOptions } from '../capture/capture';
import { repairRing } from '../index/live';
import type { IndexerCommand, IndexerReport, IndexerWorkerData } from '../index/live-worker';
import type { FollowBatch } from '../index/follow-match';
import type { FlowOverflow } from '../index/flows';
import type { TraceQuery } from '../../shared/query/query';
import { lockRing } from '../ring/lock';
import { emptySipCounts, type SipCounts } from '../index/sip-counts';
import { IndexLag } from './lag';
import { StatsOutbox } from '../stats/outbox';
import type { HepOutCounters } from '../hep/out';
import { type Logger, processLogger } from '../../shared/log/log';

export interface AgentOptions extends CaptureEngineOptions {
  correlationHeader?: string;
  /** Nice value of the indexing thread (default 10): under CPU pressure indexing lags, capture does not drop. */
  indexerNice?: number;
  /** Its nice value while a live follow runs (default 0, as capture's; see IndexerWorkerData.followNice). */
  indexerFollowNice?: number;
  /** SIP statistics per window, kept by the indexer thread and saved beside the ring (absent: none). */
  stats?: IndexerWorkerData['stats'];
  /** Mirror what is captured as HEP3 to a collector (sent from the indexer's thread). */
  hepOut?: IndexerWorkerData['hepOut'];
  /** The process's root logger, of which the agent makes its components' children (default: processLogger()). */
  logger?: Logger;
}

export interface IndexerHandle {
  errors: number;
  lastError: string | null;
  /** SIP messages indexed since start (the indexer thread's totals). */
  sip: SipCounts;
  lag: IndexLag;
  /** HEP out's counters, when --hep-out is on. */
  hepOut: HepOutCounters | null;
  /** What the live RTP flows could not keep (agent/index/flows.ts). */
  flows: FlowOverflow;
}

/** The live follows, matched in the indexer's thread as it reads packets (agent/index/follow-match.ts). */
export interface LiveFollows {
  /** Starts matching; `query` must have passed buildQuerySpec. Batches come until remove() (or one marked full). */
  add(id: string, query: TraceQuery, onBatch: (b: FollowBatch) => void): void;
  remove(id: string): void;
}

export interface RunningAgent {
  engine: CaptureEngine;
  indexer: IndexerHandle;
  follows: LiveFollows;
  /** The statistics windows waiting for the dispatcher link (null without statistics). */
  stats: StatsOutbox | null;
  stop(): Promise<void>;
}

/**
 * Starts capture into a ring with live indexing: the agent's core, without a
 * dispatcher. Owns the ring (agent.pid) until stopped.
 */
export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const log = (opts.logger ?? processLogger()).child({ component: 'agent.daemon' });
  mkdirSync(opts.ringDir, { recursive: true });
  const release = lockRing(opts.ringDir);
  try {
    // Segments a previous run left without a sound index, before capture adds more.
    for (const note of repairRing(opts.ringDir, { correlationHeader: opts.correlationHeader })) log.info({ ring: opts.ringDir }, note);
  } catch (e) {
    release();
    throw e;
  }
  const indexer: IndexerHandle = { errors: 0, lastError: null, sip: emptySipCounts(), lag: new IndexLag(), hepOut: null, flows: { abandoned: 0, dropped: 0, folded: 0 } };
  const data: IndexerWorkerData = { ringDir: opts.ringDir, correlationHeader: opts.correlationHeader, nice: opts.indexerNice ?? 10, followNice: opts.indexerFollowNice ?? 0, stats: opts.stats, hepOut: opts.hepOut };
  const worker = new Worker(join(__dirname, '..', 'index', 'live-worker.js'), { workerData: data });
  const followers = new Map<string, (b: FollowBatch) => void>();
  const windowSeconds = opts.stats?.options.windowSeconds ?? 360;
  const stats = opts.stats ? new StatsOutbox(opts.stats.options.retentionSeconds ?? 86_400 + windowSeconds) : null;
  const stoppedIndexer = new Promise<void>((resolve) => {
    worker.on('message', (m: IndexerReport) => {
      if (m.type === 'follow') {
        const f = followers.get(m.id);
        if (m.full) {
          followers.delete(m.id);
          engine.setEager(followers.size > 0);
        }
        if (f) {
          const { messagesJson, ...rest } = m;
          // Structured clone turns the Buffer into a Uint8Array.
          f({ ...rest, records: Buffer.from(m.records.buffer, m.records.byteOffset, m.records.byteLength), messages: JSON.parse(messagesJson) as FollowBatch['messages'] });
        }
      } else if (m.type === 'status') {
        if (m.errors > indexer.errors && m.lastError) log.warn({ reason: m.lastError, indexErrors: m.errors }, 'index error (rebuilt later from the segment)');
        indexer.errors = m.errors;
        indexer.lastError = m.lastError;
        indexer.sip = m.sip;
        indexer.hepOut = m.hepOut;
        if (m.flows.abandoned > indexer.flows.abandoned) log.warn({ segments: m.flows.abandoned }, 'too many RTP flows in a segment (a flood?): its RTP is scanned at query time');
        indexer.flows = m.flows;
        indexer.lag.indexed(m.indexed);
      } else if (m.type === 'windows') stats?.update(m.windows);
      else if (m.type === 'stopped') resolve();
    });
    worker.on('error', (e) => {
      log.error({ err: e }, 'indexer thread failed; segments will be indexed when next opened');
      resolve();
    });
    worker.on('exit', () => resolve());
  });
  const send = (c: IndexerCommand) => worker.postMessage(c);
  const engine = new CaptureEngine(opts);
  engine.on('segment-open', (m: { path: string }) => send({ type: 'opened', path: m.path }));
  engine.on('flushed', (m: { path: string; bytes: number }) => {
    indexer.lag.flushed(m.path, m.bytes);
    send({ type: 'flushed', path: m.path });
  });
  engine.on('segment-closed', (m: { path: string }) => {
    indexer.lag.closed(m.path);
    send({ type: 'closed', path: m.path });
  });
  engine.on('segment-deleted', (m: { path: string }) => {
    indexer.lag.deleted(m.path);
    send({ type: 'deleted', path: m.path });
  });
  engine.on('error', (e: Error) => log.error({ err: e }, 'capture error'));
  try {
    await engine.start();
  } catch (e) {
    send({ type: 'stop' });
    await stoppedIndexer;
    release();
    throw e;
  }
  let stopped = false;
  const follows: LiveFollows = {
    add(id, query, onBatch) {
      followers.set(id, onBatch);
      send({ type: 'follow', id, query });
      engine.setEager(true);
    },
    remove(id) {
      if (followers.delete(id)) send({ type: 'unfollow', id });
      engine.setEager(followers.size > 0);
    },
  };
  return {
    engine,
    indexer,
    follows,
    stats,
    async stop() {
      if (stopped) return;
      stopped = true;
      await engine.stop();
      // The indexer finishes what capture wrote and seals every open segment.
      send({ type: 'stop' });
      await stoppedIndexer;
      release();
    },
  };
}
