/**
 * HEP listener worker: the ring's "hep" stream. It takes HEP2/HEP3 over UDP
 * and TCP, checks each packet with the bounded parser, and writes each SIP
 * or RTCP payload as the packet it was on the wire (agent/hep/frame.ts) into
 * segments of its own stream, posting the capture worker's messages
 * (agent/capture/worker.ts) so the engine, the budget and the live indexer
 * treat it as one more interface. A thread of its own: a flood of HEP
 * costs this thread, never the capture's, and never the main loop's.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { StreamSegments } from '../capture/stream-segments';
import { HEP_DROP_REASONS, type HepDropReason, hep3Length, isHep3 } from '../../shared/hep/hep';
import { LINKTYPE_ETHERNET } from './frame';
import { HepIngest } from './ingest';
import type { WorkerCommand, WorkerMessage } from '../capture/worker';

export interface HepListen {
  transport: 'udp' | 'tcp';
  host: string;
  port: number;
}

export interface HepWorkerConfig {
  ringDir: string;
  stream: string;
  listen: HepListen[];
  /** The auth-key chunk must equal it; absent: not checked. */
  password?: string;
  /** HEP packets one sender (source address) may send per second; more are dropped as a flood. */
  perSenderPerSecond: number;
  maxSegmentBytes: number;
  maxSegmentSeconds: number;
  budget?: { maxBytes: number; minFreeBytes: number; streams: string[] };
}

export type HepDropCounts = Record<HepDropReason, number>;

export function emptyHepDrops(): HepDropCounts {
  return Object.fromEntries(HEP_DROP_REASONS.map((r) => [r, 0])) as HepDropCounts;
}

/** HEP packets over UDP: a datagram is one packet. The kernel's buffer is the only queue. */
const UDP_RECV_BUFFER = 4 * 1024 * 1024;
const FLUSH_MS = 20;
const FLUSHED_EVERY_MS = 50;
const STATS_EVERY_MS = 1000;
const ERROR_EVERY_MS = 1000;
const MAX_TCP_CONNECTIONS = 256;
/** A TCP connection holds at most one HEP3 packet's bytes (its length field is 16 bits). */
const TCP_BUFFER = 0x10000;
const TCP_IDLE_MS = 5 * 60_000;

export function listenText(l: HepListen): string {
  return `${l.transport}:${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
}

function run(cfg: HepWorkerConfig): void {
  const port = parentPort!;
  const post = (m: WorkerMessage) => port.postMessage(m);
  const stream = cfg.stream;
  const drops = emptyHepDrops();
  let received = 0;
  let packets = 0;
  let bytes = 0;
  let lostPackets = 0;
  let lastErrorAt = 0;

  const segments = new StreamSegments({ ...cfg, linkType: LINKTYPE_ETHERNET, nanos: true, snaplen: 0xffff + 64 }, post);
  const writer = segments.writer;

  const ingest = new HepIngest({ password: cfg.password, perSenderPerSecond: cfg.perSenderPerSecond }, drops);
  let flushTimer: NodeJS.Timeout | null = null;

  const flush = () => {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = null;
    if (ingest.used > 0) {
      const { used, usedPackets } = ingest;
      try {
        writer.append(ingest.batch, used, Date.now() * 1000);
        packets += usedPackets;
        bytes += used;
      } catch (e) {
        lostPackets += usedPackets;
        drops.write += usedPackets;
        const now = Date.now();
        if (now - lastErrorAt >= ERROR_EVERY_MS) {
          lastErrorAt = now;
          post({ type: 'error', stream, message: `${(e as Error).message} (${lostPackets} HEP packets lost so far)`, fatal: false });
        }
      }
      ingest.clear();
    }
    // A size not told now (at most one 'flushed' per FLUSHED_EVERY_MS) is told by a flush then.
    if (!segments.flushCurrent(FLUSHED_EVERY_MS) && !flushTimer) flushTimer = setTimeout(flush, FLUSHED_EVERY_MS);
  };

  const take = (dgram: Buffer, sender: string) => {
    received++;
    const r = ingest.take(dgram, sender);
    if (r === 'full') {
      flush();
      ingest.take(dgram, sender, true);
    }
    if (ingest.used > 0) flushTimer ??= setTimeout(flush, FLUSH_MS);
  };

  const udps: UdpSocket[] = [];
  const servers: Server[] = [];
  const conns = new Set<Socket>();

  const onTcp = (sock: Socket) => {
    const sender = sock.remoteAddress ?? '?';
    if (conns.size >= MAX_TCP_CONNECTIONS) {
      drops.flood++;
      sock.destroy();
      return;
    }
    conns.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('close', () => conns.delete(sock));
    sock.on('error', () => sock.destroy());
    const buf = Buffer.allocUnsafe(TCP_BUFFER);
    let have = 0;
    sock.on('data', (chunk: Buffer) => {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(chunk.length - off, TCP_BUFFER - have);
        chunk.copy(buf, have, off, off + n);
        have += n;
        off += n;
        // Whole HEP3 packets out of what is buffered.
        let at = 0;
        for (;;) {
          if (have - at < 6) break;
          const view = buf.subarray(at, have);
          if (!isHep3(view)) {
            // HEP2 has no length of its own: over a stream its end cannot be found.
            received++;
            drops.bad_version++;
            sock.destroy();
            return;
          }
          const len = hep3Length(view)!;
          if (len < 6) {
            received++;
            drops.bad_length++;
            sock.destroy();
            return;
          }
          if (have - at < len) break;
          take(view.subarray(0, len), sender);
          at += len;
        }
        if (at > 0) {
          buf.copy(buf, 0, at, have);
          have -= at;
        }
      }
    });
  };

  const bindAll = async () => {
    for (const l of cfg.listen) {
      await new Promise<void>((resolve, reject) => {
        const fail = (e: Error) => reject(Object.assign(new Error(`cannot listen for HEP on ${listenText(l)}: ${e.message}`), { code: 'TF_HEP_LISTEN' }));
        if (l.transport === 'udp') {
          const s = createSocket({ type: l.host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: UDP_RECV_BUFFER });
          s.once('error', fail);
          s.on('message', (m: Buffer, ri: RemoteInfo) => take(m, ri.address));
          s.bind(l.port, l.host, () => {
            s.off('error', fail);
            s.on('error', (e) => post({ type: 'error', stream, message: `HEP ${listenText(l)}: ${e.message}`, fatal: false }));
            udps.push(s);
            resolve();
          });
        } else {
          const srv = createServer(onTcp);
          srv.maxConnections = MAX_TCP_CONNECTIONS;
          srv.once('error', fail);
          srv.listen(l.port, l.host, () => {
            srv.off('error', fail);
            servers.push(srv);
            resolve();
          });
        }
      });
    }
  };

  const postStats = () =>
    post({ type: 'stats', stream, received, dropped: 0, ifDropped: 0, packets, bytes, lostPackets, hepDrops: { ...drops } });
  const statsTimer = setInterval(postStats, STATS_EVERY_MS);
  const rotateTimer = setInterval(() => {
    try {
      writer.maybeRotate(Date.now() * 1000);
    } catch (e) {
      post({ type: 'error', stream, message: (e as Error).message, fatal: false });
    }
  }, 1000);

  let finished = false;
  const finish = (fatal?: Error & { code?: string }) => {
    if (finished) return;
    finished = true;
    clearInterval(statsTimer);
    clearInterval(rotateTimer);
    for (const s of udps) s.close();
    for (const s of servers) s.close();
    for (const c of conns) c.destroy();
    try {
      flush();
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      writer.close();
    } catch (e) {
      post({ type: 'error', stream, message: (e as Error).message, fatal: false });
    }
    postStats();
    port.off('message', onMessage);
    if (fatal) {
      post({ type: 'error', stream, message: fatal.message, code: fatal.code, fatal: true });
      process.exitCode = 1;
    } else {
      post({ type: 'stopped', stream });
    }
    port.close();
  };
  const onMessage = (m: WorkerCommand) => {
    if (m && m.type === 'stop') finish();
  };
  port.on('message', onMessage);

  bindAll().then(
    () => post({ type: 'ready', stream, device: stream, linkType: LINKTYPE_ETHERNET, linkTypeName: 'EN10MB', precision: 'nano', snaplen: 0xffff + 64, filter: cfg.listen.map(listenText).join(' '), warnings: [] }),
    (e: Error & { code?: string }) => finish(e),
  );
}

if (!isMainThread && parentPort) run(workerData as HepWorkerConfig);
