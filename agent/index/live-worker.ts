import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { LiveIndexer } from './live';
import { SipCounts, countSipMessage, emptySipCounts } from './sip-counts';
import { PeerResolver, type PeerConfig } from '../stats/peers';
import { WindowStats, type StatsOptions, type StatsWindow } from '../stats/windows';
import { loadStats, saveStats } from '../stats/store';
import type { FollowBatch } from './follow-match';
import type { FlowOverflow } from './flows';
import { buildQuerySpec, type TraceQuery } from '../../shared/query/query';
import { HepSender, type HepOutConfig, type HepOutCounters } from '../hep/out';

/**
 * The live indexer's thread. On Linux a nice value belongs to a thread, so
 * raising this one's leaves the capture threads ahead of it when CPU is
 * short: indexing may lag, capture must not drop.
 */
export type IndexerCommand =
  | { type: 'opened' | 'flushed' | 'closed' | 'deleted'; path: string }
  | { type: 'follow'; id: string; query: TraceQuery }
  | { type: 'unfollow'; id: string }
  | { type: 'stop' };

/**
 * 'status' after each round of indexing: errors, the bytes indexed per
 * segment (open ones, and ones sealed since the last report) and the SIP
 * message totals, which the agent's /metrics and index lag are made of.
 */
export type IndexerReport =
  | { type: 'status'; errors: number; lastError: string | null; indexed: Array<[string, number]>; sip: SipCounts; hepOut: HepOutCounters | null; flows: FlowOverflow }
  | { type: 'stopped' }
  /** The statistics windows counted in since the last such report (whole windows: each replaces the one before). */
  | { type: 'windows'; windows: StatsWindow[] }
  | PostedFollowBatch;

/**
 * A FollowBatch as posted: its summaries as JSON text, which costs a third
 * of what the structured clone of as many small objects does (thousands a
 * second while a follow matches much).
 */
export type PostedFollowBatch = Omit<FollowBatch, 'messages'> & { messagesJson: string };

export interface IndexerWorkerData {
  ringDir: string;
  correlationHeader?: string;
  nice: number;
  /**
   * Nice value while a live follow runs (back to `nice` after the last):
   * at +10 a CPU taken by other work starves this thread for seconds, and a
   * follow's packets wait for it. Lowering it needs CAP_SYS_NICE (root);
   * without, the thread stays at `nice`.
   */
  followNice: number;
  /** SIP statistics per window (agent/stats), kept in this thread and saved beside the ring. */
  stats?: { peers: PeerConfig; options: StatsOptions };
  /** Mirror what is captured as HEP3 (agent/hep/out.ts); the messages that came through HEP are not sent back out. */
  hepOut?: HepOutConfig;
}

/** How often the statistics are saved beside the ring (and at stop). */
const SAVE_STATS_MS = 60_000;
/** How often the windows counted in are handed to the main thread (which sends them with its heartbeats). */
const POST_WINDOWS_MS = 2_000;
/** Least time between two status reports: rounds of indexing follow the capture's writes, up to about a hundred a second. */
const STATUS_MS = 50;

if (parentPort) {
  const port = parentPort;
  const cfg = workerData as IndexerWorkerData;
  const renice = (n: number) => {
    try {
      setPriority(0, n);
    } catch {
      // Not permitted or not supported: index at the priority it has.
    }
  };
  renice(cfg.nice);
  let following = false;
  /** At followNice while follows run, at nice otherwise. */
  const followPriority = () => {
    if (following === ix.follows.size > 0) return;
    following = !following;
    renice(following ? cfg.followNice : cfg.nice);
  };
  const sip = emptySipCounts();
  let stats: WindowStats | null = null;
  let statsTimer: NodeJS.Timeout | null = null;
  let postTimer: NodeJS.Timeout | null = null;
  const postWindows = () => {
    const windows = stats?.takeChanged() ?? [];
    if (windows.length > 0) port.postMessage({ type: 'windows', windows } satisfies IndexerReport);
  };
  const save = () => {
    try {
      if (stats) saveStats(cfg.ringDir, stats);
    } catch (e) {
      ix.errors++;
      ix.lastError = `statistics not saved: ${(e as Error).message}`;
    }
  };
  if (cfg.stats) {
    stats = new WindowStats(new PeerResolver(cfg.stats.peers), cfg.stats.options);
    try {
      const saved = loadStats(cfg.ringDir);
      if (saved) stats.restore(saved);
    } catch {
      // A file that is not ours, or torn: start afresh; the next save replaces it.
    }
    statsTimer = setInterval(save, SAVE_STATS_MS);
    postTimer = setInterval(postWindows, POST_WINDOWS_MS);
  }
  const hepOut = cfg.hepOut ? new HepSender(cfg.hepOut) : null;
  let statusAt = 0;
  let statusTimer: NodeJS.Timeout | null = null;
  const postStatus = () => {
    statusTimer = null;
    statusAt = Date.now();
    port.postMessage(status());
  };
  const status = (): IndexerReport => ({ type: 'status', errors: ix.errors, lastError: ix.lastError, indexed: ix.progress(), sip, hepOut: hepOut ? { ...hepOut.counters } : null, flows: ix.flowOverflow() });
  const ix: LiveIndexer = new LiveIndexer(cfg.ringDir, {
    correlationHeader: cfg.correlationHeader,
    onMessage: (m, _ix, bytes) => {
      countSipMessage(sip, m);
      stats?.add(m);
      if (hepOut && !m.h) hepOut.sip(m.src, m.dst, m.sp, m.dp, m.pr, m.t[0], m.t[1], bytes);
    },
    onRtcp: hepOut && cfg.hepOut?.rtcp ? (d, sec, nsec) => hepOut.rtcp(d.src, d.dst, d.sport, d.dport, sec, nsec, d.payload) : undefined,
    onIndexed: () => {
      if (statusTimer) return;
      const wait = statusAt + STATUS_MS - Date.now();
      if (wait <= 0) return postStatus();
      statusTimer = setTimeout(postStatus, wait);
    },
    onFollow: (b) => {
      const { messages, ...rest } = b;
      port.postMessage({ ...rest, messagesJson: JSON.stringify(messages) } satisfies IndexerReport);
      // A follow that reached its limit is gone from the matcher.
      if (b.full) followPriority();
    },
  });
  // HEP out's sends finish after the round that made them: report its counters on their own too.
  const hepOutTimer = hepOut ? setInterval(() => port.postMessage(status()), 1000) : null;
  port.on('message', (m: IndexerCommand) => {
    switch (m.type) {
      case 'opened': ix.segmentOpened(m.path); break;
      case 'flushed': ix.flushed(m.path); break;
      case 'closed': ix.segmentClosed(m.path); break;
      case 'deleted': ix.segmentDeleted(m.path); break;
      // The query was checked by the agent's main thread before it came here.
      case 'follow': ix.follows.add(m.id, buildQuerySpec(m.query)); followPriority(); break;
      case 'unfollow': ix.follows.remove(m.id); followPriority(); break;
      case 'stop':
        ix.stop();
        if (statusTimer) clearTimeout(statusTimer);
        if (statsTimer) clearInterval(statsTimer);
        if (postTimer) clearInterval(postTimer);
        save();
        postWindows();
        if (hepOutTimer) clearInterval(hepOutTimer);
        hepOut?.close();
        port.postMessage(status());
        port.postMessage({ type: 'stopped' } satisfies IndexerReport);
        port.close();
        return;
    }
  });
}
