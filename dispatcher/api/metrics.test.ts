import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Counter, Metrics } from './metrics';

describe('Metrics', () => {
  test('counters add up per label set, refuse to go down, and escape label values', async () => {
    const m = new Metrics();
    m.errors.inc({ kind: 'store' });
    m.errors.inc({ kind: 'store' }, 2);
    m.errors.inc({ kind: 'a "quoted"\\back\nslash' });
    assert.equal(m.errors.get({ kind: 'store' }), 3);
    assert.throws(() => m.errors.inc({ kind: 'store' }, -1), /only go up/);
    assert.throws(() => m.errors.inc({ 'bad-name': 'x' }), /label name bad-name/);
    assert.throws(() => new Counter('bad name', 'x'), /not valid/);
    const text = await m.render();
    assert.match(text, /^tracefleet_errors_total\{kind="store"\} 3$/m);
    assert.match(text, /^tracefleet_errors_total\{kind="a \\"quoted\\"\\\\back\\nslash"\} 1$/m);
    // Unlabelled counters start at 0; labelled ones show nothing until counted.
    assert.match(text, /^tracefleet_traces_started_total 0$/m);
    assert.doesNotMatch(text, /^tracefleet_traces_finished_total /m);
    // Without sources: no agent or store gauges rather than made-up values.
    assert.doesNotMatch(text, /tracefleet_agents_connected|tracefleet_store_up/);
    assert.ok(text.endsWith('\n'));
  });

  test('pulled values from the orchestrator and registry add to counted ones; a failing callback shows NaN', async () => {
    const stats = { tracesStarted: 5, tracesFinished: { done: 1, cancelled: 2 }, hostsFinished: {}, chunks: 0, bytesStored: 10, errors: { merge: 1 } };
    const agents = [{ connected: true }, { connected: false }, { connected: true }];
    const m = new Metrics({ orchestrator: { stats }, registry: { list: () => agents } });
    m.tracesFinished.inc({ state: 'done' });
    stats.tracesStarted = 6;
    let text = await m.render();
    assert.match(text, /^tracefleet_traces_started_total 6$/m);
    assert.match(text, /^tracefleet_traces_finished_total\{state="done"\} 2$/m);
    assert.match(text, /^tracefleet_traces_finished_total\{state="cancelled"\} 2$/m);
    assert.match(text, /^tracefleet_errors_total\{kind="merge"\} 1$/m);
    assert.match(text, /^tracefleet_agents_connected 2$/m);
    m.onAgentsConnected(() => {
      throw new Error('gone');
    });
    text = await m.render();
    assert.match(text, /^tracefleet_agents_connected NaN$/m);
  });
});
