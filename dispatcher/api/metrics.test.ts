import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseExposition } from '../../test/support/prometheus';
import { TraceMetrics } from '../trace/metrics';
import { AgentRegistry } from '../fleet/registry';
import { Metrics } from './metrics';

describe('Metrics', () => {
  test('counters add up per label set, refuse to go down, and escape label values; the output parses', async () => {
    const m = new Metrics();
    m.errors.inc({ kind: 'store' });
    m.errors.inc({ kind: 'store' }, 2);
    m.errors.inc({ kind: 'a "quoted"\\back\nslash' });
    assert.throws(() => m.errors.inc({ kind: 'store' }, -1), /decrease/);
    const { values, types } = parseExposition(await m.render());
    assert.equal(values.get('tracefleet_errors_total{kind="store"}'), 3);
    assert.equal(values.get('tracefleet_errors_total{kind="a \\"quoted\\"\\\\back\\nslash"}'), 1);
    // Unlabelled counters start at 0; labelled ones show nothing until counted.
    assert.equal(values.get('tracefleet_traces_started_total'), 0);
    assert.ok(![...values.keys()].some((k) => k.startsWith('tracefleet_traces_finished_total')));
    assert.equal(types.get('tracefleet_traces_finished_total'), 'counter');
    assert.equal(types.get('tracefleet_pending_stores'), 'gauge');
    // Without sources: no agent or store gauges rather than made-up values.
    assert.ok(![...types.keys()].some((k) => k === 'tracefleet_agents_connected' || k === 'tracefleet_store_up'));
    // prom-client's default process metrics.
    assert.ok((values.get('process_resident_memory_bytes') ?? 0) > 1e6);
    assert.ok((values.get('nodejs_heap_size_used_bytes') ?? 0) > 0);
    assert.ok((values.get('process_start_time_seconds') ?? 0) > 1.6e9);
  });

  test("the orchestrator's counters are shown and shared; the agent count is read at each scrape, NaN when it fails", async () => {
    const trace = new TraceMetrics();
    trace.tracesStarted.inc(5);
    trace.tracesFinished.inc({ state: 'done' });
    trace.tracesFinished.inc({ state: 'cancelled' }, 2);
    trace.errors.inc({ kind: 'merge' });
    const agents = new AgentRegistry();
    agents.connected('a', 'sa');
    agents.connected('b', 'sb');
    agents.disconnected('b', 'sb');
    agents.connected('c', 'sc');
    const m = new Metrics({ orchestrator: { metrics: trace }, registry: agents });
    m.tracesFinished.inc({ state: 'done' });
    trace.tracesStarted.inc();
    let { values, types } = parseExposition(await m.render());
    assert.equal(values.get('tracefleet_traces_started_total'), 6);
    assert.equal(values.get('tracefleet_traces_finished_total{state="done"}'), 2);
    assert.equal(values.get('tracefleet_traces_finished_total{state="cancelled"}'), 2);
    assert.equal(values.get('tracefleet_errors_total{kind="merge"}'), 1);
    assert.equal(values.get('tracefleet_agents_connected'), 2);
    assert.equal(types.get('tracefleet_agents_connected'), 'gauge');
    agents.connected('d', 'sd');
    ({ values } = parseExposition(await m.render()));
    assert.equal(values.get('tracefleet_agents_connected'), 3);
    m.onAgentsConnected(() => {
      throw new Error('gone');
    });
    ({ values } = parseExposition(await m.render()));
    assert.ok(Number.isNaN(values.get('tracefleet_agents_connected')));
  });

  test("the alert webhook's deliveries by outcome, read at each scrape; none without a webhook", async () => {
    const webhook = { counts: { sent: 0, failed: 0, dropped: 0 } };
    const m = new Metrics({ webhook });
    let { values, types } = parseExposition(await m.render());
    assert.equal(types.get('tracefleet_alert_webhook_notifications_total'), 'counter');
    assert.equal(values.get('tracefleet_alert_webhook_notifications_total{outcome="sent"}'), 0);
    webhook.counts.sent = 3;
    webhook.counts.dropped = 1;
    ({ values } = parseExposition(await m.render()));
    assert.equal(values.get('tracefleet_alert_webhook_notifications_total{outcome="sent"}'), 3);
    assert.equal(values.get('tracefleet_alert_webhook_notifications_total{outcome="failed"}'), 0);
    assert.equal(values.get('tracefleet_alert_webhook_notifications_total{outcome="dropped"}'), 1);
    assert.ok(!parseExposition(await new Metrics().render()).types.has('tracefleet_alert_webhook_notifications_total'));
  });

  test('two dispatchers in one process keep their own registries', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.tracesStarted.inc();
    assert.equal(parseExposition(await a.render()).values.get('tracefleet_traces_started_total'), 1);
    assert.equal(parseExposition(await b.render()).values.get('tracefleet_traces_started_total'), 0);
  });

  test('store_up follows a ping at each scrape, within the timeout', async () => {
    let answer: () => Promise<unknown> = async () => ({});
    const m = new Metrics({ store: { ping: () => answer() }, storeTimeoutMs: 100 });
    assert.equal(parseExposition(await m.render()).values.get('tracefleet_store_up'), 1);
    answer = () => new Promise(() => {});
    assert.equal(parseExposition(await m.render()).values.get('tracefleet_store_up'), 0);
    answer = async () => {
      throw new Error('refused');
    };
    assert.equal(parseExposition(await m.render()).values.get('tracefleet_store_up'), 0);
  });
});
