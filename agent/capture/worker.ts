/**
 * Capture worker: one worker_threads Worker per interface. It owns one
 * libpcap handle and the stream's current ring segment, and does nothing
 * but move packets from the kernel to the segment, so a slow main thread
 * (budget, indexing, RPC) never makes the kernel ring overflow.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { defaultCaptureFilter } from './filter';
import { PcapCapture, type OpenOptions } from './pcap-native';
import { StreamSegments } from './stream-segments';

export interface WorkerConfig {
  ringDir: string;
  /** Interface to open. */
  device: string;
  /** Stream name for segment files and messages. */
  stream: string;
  /** BPF filter; when absent the default one is used. */
  filter?: string;
  snaplen: number;
  bufferBytes: number;
  promisc: boolean;
  maxSegmentBytes: number;
  maxSegmentSeconds: number;
  /** Size of the batch buffer, 1..4 MiB. */
  readBufferBytes?: number;
  /**
   * The ring budget, enforced here at every rotation: the engine's own runs
   * come after a message round trip, and a busy main thread let the worker
   * close the next segment first, over budget. `streams`: every interface's,
   * whose newest segment (open) is never deleted.
   */
  budget?: { maxBytes: number; minFreeBytes: number; streams: string[] };
  /**
   * Write each batch as soon as the kernel has nothing more and report every
   * write (while a live follow runs: its latency starts here). Otherwise a
   * batch gathers for up to FLUSH_MS and writes are reported at most every
   * FLUSHED_EVERY_MS, fewer wakeups for the other threads.
   */
  eager?: boolean;
}

/** What a capture worker counts: libpcap's pcap_stats, then its own. */
export interface CaptureCounters {
  received: number;
  dropped: number;
  ifDropped: number;
  /** Packets and record bytes written to segments. */
  packets: number;
  bytes: number;
  /** Packets captured but lost to segment write errors. */
  lostPackets: number;
}

/** Messages a capture worker posts to its parent; 'stats' counts over this worker's life. */
export type WorkerMessage =
  | {
      type: 'ready';
      stream: string;
      device: string;
      linkType: number;
      linkTypeName: string;
      precision: 'nano' | 'micro';
      snaplen: number;
      filter: string;
      warnings: string[];
    }
  | { type: 'segment-open'; stream: string; path: string; linkType: number; nanos: boolean }
  | { type: 'flushed'; stream: string; path: string; bytes: number }
  | { type: 'segment-closed'; stream: string; path: string; bytes: number }
  | { type: 'segment-deleted'; stream: string; path: string }
  /** `hepDrops`: the HEP listener's drops by reason (agent/hep/worker.ts), which counts no kernel drops. */
  | ({ type: 'stats'; stream: string; hepDrops?: Record<string, number> } & CaptureCounters)
  | { type: 'error'; stream: string; message: string; code?: string; fatal: boolean }
  | { type: 'stopped'; stream: string };

/** Messages a parent sends to a capture worker. */
export type WorkerCommand = { type: 'stop' } | { type: 'eager'; on: boolean };

const MIB = 1024 * 1024;
/** Longest a captured packet waits in memory before it is written while reads keep bringing more. */
const FLUSH_MS = 20;
/** Least time between two 'flushed' when not eager. */
const FLUSHED_EVERY_MS = 50;
/** Longest read() blocks with nothing buffered: bounds stop latency and the idle age check. */
const IDLE_WAIT_MS = 100;
const STATS_EVERY_MS = 1000;
const ERROR_EVERY_MS = 1000;
/** Reads used to drain the kernel ring on stop; a busy link never goes quiet, so bound them. */
const MAX_DRAIN_READS = 256;
const DRAIN_WAIT_MS = 30;

function openCapture(cfg: WorkerConfig, opts: OpenOptions): { cap: PcapCapture; filter: string } {
  if (cfg.filter !== undefined) return { cap: new PcapCapture(cfg.device, cfg.filter, opts), filter: cfg.filter };
  const withVlan = defaultCaptureFilter();
  try {
    return { cap: new PcapCapture(cfg.device, withVlan, opts), filter: withVlan };
  } catch (e) {
    // libpcap has no `vlan` for some link types (Linux cooked, raw IP); the
    // default filter is still right there without the 802.1Q half.
    if ((e as NodeJS.ErrnoException).code !== 'EFILTER') throw e;
    const plain = defaultCaptureFilter({ vlan: false });
    const cap = new PcapCapture(cfg.device, plain, opts);
    cap.warnings.push(`${cfg.device}: link type ${cap.linkTypeName} has no 802.1Q matching; default filter used without it`);
    return { cap, filter: plain };
  }
}

function run(cfg: WorkerConfig): void {
  const port = parentPort!;
  const post = (m: WorkerMessage) => port.postMessage(m);
  const stream = cfg.stream;

  let cap: PcapCapture;
  let filter: string;
  try {
    ({ cap, filter } = openCapture(cfg, {
      snaplen: cfg.snaplen,
      bufferBytes: cfg.bufferBytes,
      promisc: cfg.promisc,
      nanos: true,
    }));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    post({ type: 'error', stream, message: err.message, code: err.code, fatal: true });
    process.exitCode = 1;
    return;
  }
  const nanos = cap.precision === 'nano';

  let eager = cfg.eager ?? false;
  let segments: StreamSegments;
  try {
    segments = new StreamSegments({ ...cfg, linkType: cap.linkType, nanos, snaplen: cap.snaplen }, post);
  } catch (e) {
    cap.close();
    post({ type: 'error', stream, message: (e as Error).message, fatal: true });
    process.exitCode = 1;
    return;
  }

  post({
    type: 'ready',
    stream,
    device: cfg.device,
    linkType: cap.linkType,
    linkTypeName: cap.linkTypeName,
    precision: cap.precision,
    snaplen: cap.snaplen,
    filter,
    warnings: cap.warnings,
  });

  const bufBytes = Math.min(4 * MIB, Math.max(MIB, cfg.readBufferBytes ?? 2 * MIB));
  const buf = Buffer.allocUnsafe(bufBytes);
  const maxRecord = 16 + cap.snaplen;
  let used = 0;
  let usedPackets = 0;
  let firstAt = 0;
  let packets = 0;
  let bytes = 0;
  let lostPackets = 0;
  let lastErrorAt = 0;
  let stopping = false;
  let finished = false;

  const postStats = () => {
    if (cap.closed) return;
    try {
      const s = cap.stats();
      post({ type: 'stats', stream, ...s, packets, bytes, lostPackets });
    } catch (e) {
      post({ type: 'error', stream, message: (e as Error).message, fatal: false });
    }
  };
  const statsTimer = setInterval(postStats, STATS_EVERY_MS);

  const flushBatch = () => {
    if (used === 0) return;
    try {
      segments.writer.append(buf, used, Date.now() * 1000);
      packets += usedPackets;
      bytes += used;
    } catch (e) {
      // A full or broken disk must not stop capture: the budget may free
      // space, so report (at most once a second) and go on with the next batch.
      lostPackets += usedPackets;
      const now = Date.now();
      if (now - lastErrorAt >= ERROR_EVERY_MS) {
        lastErrorAt = now;
        post({ type: 'error', stream, message: `${(e as Error).message} (${lostPackets} packets lost so far)`, fatal: false });
      }
    }
    used = 0;
    usedPackets = 0;
    segments.flushCurrent(eager ? 0 : FLUSHED_EVERY_MS);
  };

  const finish = (fatal?: Error) => {
    if (finished) return;
    finished = true;
    clearInterval(statsTimer);
    try {
      flushBatch();
      segments.writer.close();
    } catch (e) {
      post({ type: 'error', stream, message: (e as Error).message, fatal: false });
    }
    postStats();
    cap.close();
    port.off('message', onMessage);
    if (fatal) {
      post({ type: 'error', stream, message: fatal.message, code: (fatal as NodeJS.ErrnoException).code, fatal: true });
      process.exitCode = 1;
    } else {
      post({ type: 'stopped', stream });
    }
  };

  const pump = () => {
    try {
      if (stopping) {
        // Take what the kernel already holds (and any stashed record), then
        // close. The wait covers libpcap's 10 ms block timeout, after which
        // the kernel hands over a partly filled block.
        for (let i = 0; i < MAX_DRAIN_READS; i++) {
          if (buf.length - used < maxRecord) flushBatch();
          const r = cap.read(buf.subarray(used), DRAIN_WAIT_MS);
          used += r.bytes;
          usedPackets += r.packets;
          if (r.packets === 0) break;
        }
        finish();
        return;
      }
      // Eager, with packets in hand, look for more without waiting: a read
      // takes what the kernel has handed over (TPACKET_V3 blocks, full or
      // 10 ms old), so an empty one means the kernel has nothing now and the
      // batch is written (and the indexer told) at once. A packet then waits
      // for its block, not for a timer of ours: a write per block at
      // moderate rates, about 100 a second at most, none at idle; under a
      // high rate the reads keep bringing data and batches grow to the
      // buffer or FLUSH_MS. Not eager, the read waits out FLUSH_MS first.
      const now = Date.now();
      const timeout = used === 0 ? IDLE_WAIT_MS : eager ? 0 : Math.max(0, FLUSH_MS - (now - firstAt));
      const r = cap.read(buf.subarray(used), timeout);
      if (r.bytes > 0) {
        if (used === 0) firstAt = Date.now();
        used += r.bytes;
        usedPackets += r.packets;
      }
      const t = Date.now();
      if (used > 0 && (r.packets === 0 || t - firstAt >= FLUSH_MS || buf.length - used < maxRecord)) flushBatch();
      segments.writer.maybeRotate(t * 1000);
      segments.flushCurrent(FLUSHED_EVERY_MS, t);
    } catch (e) {
      finish(e as Error);
      return;
    }
    // setImmediate, not a loop: lets 'stop' and the stats timer in between batches.
    setImmediate(pump);
  };

  const onMessage = (m: WorkerCommand) => {
    if (m && m.type === 'stop') stopping = true;
    else if (m && m.type === 'eager') eager = m.on;
  };
  port.on('message', onMessage);
  setImmediate(pump);
}

if (!isMainThread && parentPort) run(workerData as WorkerConfig);
