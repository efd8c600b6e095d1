/*
 * The dispatcher's /metrics, with prom-client: one Registry per dispatcher
 * (tests run several in one process, so nothing goes to prom-client's global
 * registry), Node's default process metrics, the counters of the parts that
 * count (trace/metrics.ts for the orchestrator, the store's conflict
 * retries, the REST API's requests here), and values read at each scrape:
 * connected agents, a store ping, the alert webhook's deliveries.
 */

import type { AgentRegistry } from '../fleet/registry';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { TraceMetrics } from '../trace/metrics';
import type { AlertWebhook } from '../alerts/webhook';

/** Where the values come from; each is optional so that a test or a tool can expose a part. */
export interface MetricsSources {
  orchestrator?: { metrics: TraceMetrics };
  /** dispatcher/fleet/registry.ts AgentRegistry: this dispatcher's own agents. */
  registry?: Pick<AgentRegistry, 'connectedCount'>;
  /** Pinged at each scrape for tracefleet_store_up. */
  store?: { ping(): Promise<unknown>; metrics?: { conflictRetries: Counter } };
  /** dispatcher/alerts/webhook.ts AlertWebhook: what became of the alerts sent to it (when one is configured). */
  webhook?: Pick<AlertWebhook, 'counts'>;
  /** How long a scrape waits for the store's answer before calling it down (ms, default 2000). */
  storeTimeoutMs?: number;
}

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({ name: 'tracefleet_http_requests_total', help: 'REST and page requests answered, by status code.', labelNames: ['code'], registers: [this.registry] });
  /** The orchestrator's (or, without one, this dispatcher's own) trace counters. */
  readonly trace: TraceMetrics;
  /** Shared with the orchestrator: kind="api" is counted by the REST API. */
  readonly errors: TraceMetrics['errors'];
  readonly tracesStarted: TraceMetrics['tracesStarted'];
  readonly tracesFinished: TraceMetrics['tracesFinished'];

  private agentsConnected: (() => number | Promise<number>) | null = null;
  private agentsGauge: Gauge | null = null;

  constructor(sources: MetricsSources = {}) {
    collectDefaultMetrics({ register: this.registry });
    this.trace = sources.orchestrator?.metrics ?? new TraceMetrics();
    for (const m of this.trace.all()) this.registry.registerMetric(m);
    this.errors = this.trace.errors;
    this.tracesStarted = this.trace.tracesStarted;
    this.tracesFinished = this.trace.tracesFinished;

    const registry = sources.registry;
    if (registry) this.onAgentsConnected(() => registry.connectedCount());

    const store = sources.store;
    if (store) {
      const timeoutMs = sources.storeTimeoutMs ?? 2000;
      new Gauge({
        name: 'tracefleet_store_up',
        help: '1 when the store answered a ping during this scrape, else 0.',
        registers: [this.registry],
        async collect() {
          this.set(
            await withTimeout(store.ping(), timeoutMs).then(
              () => 1,
              () => 0,
            ),
          );
        },
      });
      if (store.metrics) this.registry.registerMetric(store.metrics.conflictRetries);
    }

    const webhook = sources.webhook;
    if (webhook) {
      new Counter({
        name: 'tracefleet_alert_webhook_notifications_total',
        help: 'Alert events for the webhook, by outcome: sent (accepted), failed (given up after the retries), dropped (the queue was full).',
        labelNames: ['outcome'],
        registers: [this.registry],
        // The webhook keeps its own totals; the counter shows them as they are at the scrape.
        collect() {
          this.reset();
          for (const [outcome, n] of Object.entries(webhook.counts)) this.inc({ outcome }, n);
        },
      });
    }
  }

  /** Where tracefleet_agents_connected comes from (replaces the registry's count). */
  onAgentsConnected(fn: () => number | Promise<number>): void {
    this.agentsConnected = fn;
    if (this.agentsGauge) return;
    const self = this;
    this.agentsGauge = new Gauge({
      name: 'tracefleet_agents_connected',
      help: 'Agents connected to this dispatcher.',
      registers: [this.registry],
      async collect() {
        let n: number;
        try {
          n = await self.agentsConnected!();
        } catch {
          // A failed count is shown as unknown rather than as a made-up 0.
          n = NaN;
        }
        this.set(n);
      },
    });
  }

  /** The exposition text (Prometheus 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
