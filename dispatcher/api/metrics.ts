/*
 * The dispatcher's /metrics: Prometheus text exposition format 0.0.4, written
 * by hand (a dozen series do not need prom-client). Values are read when
 * scraped: from the orchestrator's counters, the agent registry and a store
 * ping, plus whatever was counted here with inc().
 */

export type Labels = Record<string, string>;

interface Sample {
  labels: Labels;
  value: number;
}

/** The orchestrator's counters (dispatcher/trace/orchestrator.ts TraceStats), typed by shape. */
export interface TraceStatsLike {
  tracesStarted: number;
  tracesFinished: Record<string, number>;
  hostsFinished: Record<string, number>;
  chunks: number;
  bytesReceived?: number;
  bytesStored: number;
  errors: Record<string, number>;
  pendingStores?: number;
}

/** Where the values come from; each is optional so that a test or a tool can expose a part. */
export interface MetricsSources {
  orchestrator?: { stats: TraceStatsLike };
  /** dispatcher/fleet/registry.ts AgentRegistry: this dispatcher's own agents. */
  registry?: { list(): Array<{ connected: boolean }> };
  /** Pinged at each scrape for tracefleet_store_up. */
  store?: { ping(): Promise<unknown>; stats?: { conflictRetries: number } };
  /** How long a scrape waits for the store's answer before calling it down (ms, default 2000). */
  storeTimeoutMs?: number;
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function labelKey(labels: Labels): string {
  return JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
}

/** A monotonically increasing count, one per label set. */
export class Counter {
  private readonly values = new Map<string, Sample>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {
    if (!NAME.test(name)) throw new Error(`metric name ${name} is not valid in Prometheus`);
  }

  inc(labels: Labels = {}, by = 1): void {
    if (!(by >= 0) || !Number.isFinite(by)) throw new Error(`${this.name}: counters only go up (got ${by})`);
    for (const k of Object.keys(labels)) if (!LABEL.test(k)) throw new Error(`${this.name}: label name ${k} is not valid in Prometheus`);
    const key = labelKey(labels);
    const s = this.values.get(key);
    if (s) s.value += by;
    else this.values.set(key, { labels: { ...labels }, value: by });
  }

  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels))?.value ?? 0;
  }

  samples(): Sample[] {
    return [...this.values.values()].map((s) => ({ labels: { ...s.labels }, value: s.value }));
  }
}

/** Adds pulled samples to counted ones with the same labels. */
function sum(...lists: Sample[][]): Sample[] {
  const out = new Map<string, Sample>();
  for (const list of lists) {
    for (const s of list) {
      const key = labelKey(s.labels);
      const prev = out.get(key);
      if (prev) prev.value += s.value;
      else out.set(key, { labels: { ...s.labels }, value: s.value });
    }
  }
  return [...out.values()];
}

function byLabel(label: string, rec: Record<string, number> | undefined): Sample[] {
  return Object.entries(rec ?? {}).map(([v, value]) => ({ labels: { [label]: v }, value }));
}

function one(value: number | undefined): Sample[] {
  return value === undefined ? [] : [{ labels: {}, value }];
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: Sample[];
}

export class Metrics {
  readonly tracesStarted = new Counter('tracefleet_traces_started_total', 'Traces started on this dispatcher.');
  readonly tracesFinished = new Counter('tracefleet_traces_finished_total', 'Traces finished on this dispatcher, by final state.');
  readonly traceHosts = new Counter('tracefleet_trace_hosts_total', "Hosts' trace results that reached a final state, by state.");
  readonly bytesStored = new Counter('tracefleet_bytes_stored_total', 'PCAP bytes stored as host attachments.');
  readonly chunksReceived = new Counter('tracefleet_chunks_received_total', 'trace:chunk messages received from agents.');
  readonly errors = new Counter('tracefleet_errors_total', 'Errors by kind (api: a REST request that failed inside the dispatcher).');
  readonly httpRequests = new Counter('tracefleet_http_requests_total', 'REST and page requests answered, by status code.');

  private agentsConnected: (() => number | Promise<number>) | null;
  private readonly sources: MetricsSources;

  constructor(sources: MetricsSources = {}) {
    this.sources = sources;
    const registry = sources.registry;
    this.agentsConnected = registry ? () => registry.list().filter((a) => a.connected).length : null;
  }

  /** Where tracefleet_agents_connected comes from (replaces the registry's count). */
  onAgentsConnected(fn: () => number | Promise<number>): void {
    this.agentsConnected = fn;
  }

  private async families(): Promise<Family[]> {
    const stats = this.sources.orchestrator?.stats;
    const fams: Family[] = [];
    const counter = (c: Counter, pulled: Sample[]) => fams.push({ name: c.name, help: c.help, type: 'counter', samples: sum(c.samples(), pulled) });
    const gauge = (name: string, help: string, samples: Sample[]) => fams.push({ name, help, type: 'gauge', samples });

    if (this.agentsConnected) {
      let n: number;
      try {
        n = await this.agentsConnected();
      } catch {
        n = NaN;
      }
      gauge('tracefleet_agents_connected', 'Agents connected to this dispatcher.', one(n));
    }
    counter(this.tracesStarted, one(stats?.tracesStarted));
    counter(this.tracesFinished, byLabel('state', stats?.tracesFinished));
    counter(this.traceHosts, byLabel('state', stats?.hostsFinished));
    counter(this.bytesStored, one(stats?.bytesStored));
    counter(this.chunksReceived, one(stats?.chunks));
    counter(this.errors, byLabel('kind', stats?.errors));
    counter(this.httpRequests, []);
    if (stats?.bytesReceived !== undefined) {
      fams.push({ name: 'tracefleet_bytes_received_total', help: 'PCAP bytes received from agents.', type: 'counter', samples: one(stats.bytesReceived) });
    }
    if (stats?.pendingStores !== undefined) {
      gauge('tracefleet_pending_stores', 'Results and merges waiting for the store to come back.', one(stats.pendingStores));
    }
    const store = this.sources.store;
    if (store) {
      let up = 1;
      try {
        await withTimeout(store.ping(), this.sources.storeTimeoutMs ?? 2000);
      } catch {
        up = 0;
      }
      gauge('tracefleet_store_up', '1 when the store answered a ping during this scrape, else 0.', one(up));
      if (store.stats) {
        fams.push({ name: 'tracefleet_store_conflict_retries_total', help: 'Store writes repeated after a 409 conflict.', type: 'counter', samples: one(store.stats.conflictRetries) });
      }
    }
    const mem = process.memoryUsage();
    gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', one(mem.rss));
    gauge('process_heap_used_bytes', 'V8 heap in use in bytes.', one(mem.heapUsed));
    gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch in seconds.', one(Math.round(Date.now() / 1000 - process.uptime())));
    return fams;
  }

  /** The exposition text: HELP, TYPE, then `name{label="value"} value` lines. */
  async render(): Promise<string> {
    const lines: string[] = [];
    for (const f of await this.families()) {
      lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`);
      lines.push(`# TYPE ${f.name} ${f.type}`);
      // A counter nothing has counted yet still shows 0, so rate() has a start.
      const samples = f.samples.length === 0 && f.type === 'counter' && !hasLabelsByDesign(f.name) ? [{ labels: {}, value: 0 }] : f.samples;
      for (const s of samples) {
        const keys = Object.keys(s.labels).sort();
        const labels = keys.length ? `{${keys.map((k) => `${k}="${escapeLabel(s.labels[k])}"`).join(',')}}` : '';
        lines.push(`${f.name}${labels} ${formatValue(s.value)}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }
}

/** Families whose every sample has labels: an unlabelled 0 would be a series of its own. */
function hasLabelsByDesign(name: string): boolean {
  return (
    name === 'tracefleet_traces_finished_total' ||
    name === 'tracefleet_trace_hosts_total' ||
    name === 'tracefleet_errors_total' ||
    name === 'tracefleet_http_requests_total'
  );
}
