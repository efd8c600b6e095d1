/*
 * The agent's /metrics, with prom-client as the dispatcher's
 * (dispatcher/api/metrics.ts): its own Registry, Node's default process
 * metrics, and values read at each scrape from what the agent already keeps
 * (the capture engine's per-interface counters, which its workers send in
 * their 'stats' messages; the indexer thread's 'status' reports; the ring's
 * directory). Only the trace histograms are counted where the work happens
 * (agent/trace/serve.ts). HEP in is the engine's "hep" stream (its drops by
 * reason come with its stats); HEP out's counters come with the indexer's.
 */

import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CaptureEngineStats } from '../capture/capture';
import type { IndexerHandle } from '../daemon/run';
import { readRingStatus } from '../link/client';

export interface AgentMetricsSources {
  engine: { stats(): CaptureEngineStats };
  indexer: IndexerHandle;
  ringDir: string;
}

/** Counted by serveTraces: the search of the ring, and the whole trace (search, chunks, done). */
export interface AgentTraceMetrics {
  queryDuration: Histogram<'outcome'>;
  traceDuration: Histogram<'outcome'>;
}

const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export function agentTraceMetrics(registers: Registry[]): AgentTraceMetrics {
  return {
    queryDuration: new Histogram({ name: 'tracefleet_agent_query_duration_seconds', help: 'Searches of the ring for fleet traces, by outcome (ok, error, stopped).', labelNames: ['outcome'], buckets: DURATION_BUCKETS, registers }),
    traceDuration: new Histogram({ name: 'tracefleet_agent_trace_duration_seconds', help: 'Fleet traces served, from start to trace:done or trace:error, by outcome (done, error, stopped).', labelNames: ['outcome'], buckets: DURATION_BUCKETS, registers }),
  };
}

const RING_STATUS_MS = 1000;

/** A counter whose totals are kept elsewhere: set from them at each scrape. */
function mirroredCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[], read: () => Array<[Partial<Record<L, string>>, number]>): Counter<L> {
  return new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.inc(labels, v);
    },
  });
}

function gauge<L extends string>(registry: Registry, name: string, help: string, labelNames: L[], read: () => Array<[Partial<Record<L, string>>, number]>): Gauge<L> {
  return new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.set(labels, v);
    },
  });
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly trace: AgentTraceMetrics;
  private ring: { at: number; status: ReturnType<typeof readRingStatus> } | null = null;

  constructor(src: AgentMetricsSources) {
    const r = this.registry;
    collectDefaultMetrics({ register: r });
    const perIface = <T>(f: (s: CaptureEngineStats['interfaces'][string]) => T) => Object.entries(src.engine.stats().interfaces).map(([n, s]) => [n, f(s)] as const);

    mirroredCounter(r, 'tracefleet_capture_received_packets_total', 'Packets the capture socket received, as libpcap counts them (ps_recv; on lo each packet twice), per interface.', ['interface'], () =>
      perIface((s) => s.received).map(([n, v]) => [{ interface: n }, v]));
    mirroredCounter(r, 'tracefleet_capture_packets_total', 'Packets written to the ring, per interface.', ['interface'], () =>
      perIface((s) => s.packets).map(([n, v]) => [{ interface: n }, v]));
    mirroredCounter(r, 'tracefleet_capture_bytes_total', 'Record bytes written to the ring, per interface.', ['interface'], () =>
      perIface((s) => s.bytes).map(([n, v]) => [{ interface: n }, v]));
    mirroredCounter(r, 'tracefleet_capture_dropped_packets_total', 'Packets lost, per interface: kernel (capture buffer full), interface (dropped by the NIC or driver), write (captured but not written to the ring).', ['interface', 'reason'], () =>
      perIface((s) => s).flatMap(([n, s]) => [
        [{ interface: n, reason: 'kernel' }, s.dropped],
        [{ interface: n, reason: 'interface' }, s.ifDropped],
        [{ interface: n, reason: 'write' }, s.lostPackets],
      ]));
    mirroredCounter(r, 'tracefleet_capture_restarts_total', 'Capture worker restarts, per interface.', ['interface'], () =>
      perIface((s) => s.restarts).map(([n, v]) => [{ interface: n }, v]));
    gauge(r, 'tracefleet_capture_up', '1 while the interface is captured, else 0.', ['interface'], () =>
      perIface((s) => (s.running ? 1 : 0)).map(([n, v]) => [{ interface: n }, v]));

    const hep = () => perIface((s) => s).filter(([, s]) => s.hepDrops !== undefined);
    mirroredCounter(r, 'tracefleet_hep_received_packets_total', 'HEP packets received by the HEP listener (--hep-listen), before any check.', [], () =>
      hep().map(([, s]) => [{}, s.received]));
    mirroredCounter(r, 'tracefleet_hep_dropped_packets_total', 'HEP packets dropped, by reason (truncated, bad_length, bad_version, bad_chunk, unknown_chunk, missing_chunk, unsupported, auth, flood, too_big, write).', ['reason'], () =>
      hep().flatMap(([, s]) => Object.entries(s.hepDrops ?? {}).map(([reason, v]) => [{ reason }, v] as [Partial<Record<'reason', string>>, number])));
    mirroredCounter(r, 'tracefleet_hep_out_messages_total', 'Messages mirrored as HEP (--hep-out), by outcome: sent, dropped (too many in flight), failed (refused by the socket).', ['outcome'], () => {
      const c = src.indexer.hepOut;
      return c ? [[{ outcome: 'sent' }, c.sent], [{ outcome: 'dropped' }, c.dropped], [{ outcome: 'failed' }, c.failed]] : [];
    });

    gauge(r, 'tracefleet_index_lag_bytes', 'Bytes written to the ring that the live indexer has not indexed yet.', [], () => [[{}, src.indexer.lag.bytes()]]);
    gauge(r, 'tracefleet_index_lag_seconds', 'Age of the oldest written bytes not indexed yet (0 when the indexer is caught up).', [], () => [[{}, src.indexer.lag.seconds()]]);
    mirroredCounter(r, 'tracefleet_index_rtp_flow_abandoned_segments_total', 'Segments past the live index\'s RTP flow cap: they keep no flows, so their RTP is scanned at query time.', [], () => [[{}, src.indexer.flows.abandoned]]);
    mirroredCounter(r, 'tracefleet_index_rtp_flow_overflow_packets_total', 'RTP packets not kept in a flow of their own, by reason: flow_cap (their segment passed the flow cap: in no flow), ssrc_cap (their 5-tuple passed its SSRC cap: folded into its catch-all flow).', ['reason'], () => {
      const f = src.indexer.flows;
      return [[{ reason: 'flow_cap' }, f.dropped], [{ reason: 'ssrc_cap' }, f.folded]];
    });
    mirroredCounter(r, 'tracefleet_index_errors_total', 'Segments whose index could not be written live (rebuilt later).', [], () => [[{}, src.indexer.errors]]);
    mirroredCounter(r, 'tracefleet_sip_requests_total', 'SIP requests indexed, by method (unregistered methods as "other").', ['method'], () =>
      Object.entries(src.indexer.sip.requests).map(([m, v]) => [{ method: m }, v]));
    mirroredCounter(r, 'tracefleet_sip_responses_total', 'SIP responses indexed, by status class.', ['class'], () =>
      Object.entries(src.indexer.sip.responses).map(([c, v]) => [{ class: c }, v]));

    // One directory listing serves the four ring gauges of a scrape (render() forgets it).
    const ringNow = () => {
      if (!this.ring || Date.now() - this.ring.at > RING_STATUS_MS) this.ring = { at: Date.now(), status: readRingStatus(src.ringDir) };
      return this.ring.status;
    };
    gauge(r, 'tracefleet_ring_bytes', 'Bytes of the ring\'s segments.', [], () => [[{}, ringNow().bytes]]);
    gauge(r, 'tracefleet_ring_segments', 'Segments in the ring.', [], () => [[{}, ringNow().segments]]);
    gauge(r, 'tracefleet_ring_span_seconds', 'Time the ring covers, from its oldest segment\'s start to its newest write.', [], () => {
      const s = ringNow();
      return [[{}, s.oldest && s.newest ? Math.max(0, (Date.parse(s.newest) - Date.parse(s.oldest)) / 1000) : 0]];
    });
    gauge(r, 'tracefleet_ring_oldest_timestamp_seconds', 'Start of the ring\'s oldest segment (Unix time; absent when the ring is empty).', [], () => {
      const s = ringNow();
      return s.oldest ? [[{}, Date.parse(s.oldest) / 1000]] : [];
    });

    this.trace = agentTraceMetrics([r]);
  }

  render(): Promise<string> {
    this.ring = null;
    return this.registry.metrics();
  }
}

/** HOST:PORT as given to --metrics; an IPv6 host in brackets. */
export function parseListen(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) return null;
  return { host: m[1] ?? m[2], port };
}

/**
 * Serves GET /metrics (and nothing else) on a plain node:http server: the
 * agent has no other HTTP to share a framework with. Resolves once listening.
 */
export function serveMetrics(metrics: AgentMetrics, host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found; the agent serves /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('use GET\n');
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics failed: ${e.message}\n`),
    );
  });
  // A scraper that holds a connection open must not keep the agent from stopping.
  server.keepAliveTimeout = 5000;
  server.requestTimeout = 10_000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
