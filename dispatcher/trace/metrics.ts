import { Counter, Gauge, Metric } from 'prom-client';

/**
 * The trace machinery's counters, counted where the work happens
 * (orchestrator, host runs, store jobs) and registered by the dispatcher's
 * /metrics (api/metrics.ts). Each orchestrator has its own (registers: []),
 * so several dispatchers can live in one process, as they do in tests.
 */
export class TraceMetrics {
  readonly tracesStarted = new Counter({ name: 'tracefleet_traces_started_total', help: 'Traces started on this dispatcher.', registers: [] });
  readonly tracesFinished = new Counter({ name: 'tracefleet_traces_finished_total', help: 'Traces finished on this dispatcher, by final state.', labelNames: ['state'], registers: [] });
  readonly hostsFinished = new Counter({ name: 'tracefleet_trace_hosts_total', help: "Hosts' trace results that reached a final state, by state.", labelNames: ['state'], registers: [] });
  readonly bytesStored = new Counter({ name: 'tracefleet_bytes_stored_total', help: 'PCAP bytes stored as host attachments.', registers: [] });
  readonly storedWhileReceived = new Counter({
    name: 'tracefleet_stored_while_received_total',
    help: "Attachments streamed to the store while their host was still received (packets.pcap; merged.pcap of one-host traces), by attachment and outcome: used, or redone from the spool once the host finished (the store away, the host's file trimmed).",
    labelNames: ['attachment', 'outcome'],
    registers: [],
  });
  readonly chunksReceived = new Counter({ name: 'tracefleet_chunks_received_total', help: 'trace:chunk messages received from agents.', registers: [] });
  readonly bytesReceived = new Counter({ name: 'tracefleet_bytes_received_total', help: 'PCAP bytes received from agents.', registers: [] });
  /** Shared with the REST API (kind="api"), so that one family has every kind. */
  readonly errors = new Counter({ name: 'tracefleet_errors_total', help: 'Errors by kind (api: a REST request that failed inside the dispatcher).', labelNames: ['kind'], registers: [] });
  readonly pendingStores = new Gauge({ name: 'tracefleet_pending_stores', help: 'Results and merges waiting for the store to come back.', registers: [] });

  all(): Metric[] {
    return [this.tracesStarted, this.tracesFinished, this.hostsFinished, this.bytesStored, this.storedWhileReceived, this.chunksReceived, this.bytesReceived, this.errors, this.pendingStores];
  }
}

/** One series' current value (0 when nothing was counted yet). */
export async function metricValue(metric: Counter | Gauge, labels: Record<string, string> = {}): Promise<number> {
  const keys = Object.keys(labels);
  const s = (await metric.get()).values.find((v) => keys.length === Object.keys(v.labels).length && keys.every((k) => v.labels[k] === labels[k]));
  return s?.value ?? 0;
}
