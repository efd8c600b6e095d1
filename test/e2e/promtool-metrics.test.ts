import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, haveCommand, isRoot, startDaemon } from '../support/proc';
import { waitForRecord } from '../support/log';
import { playOutcomes, type Outcome } from '../support/sip-outcomes';
import { startTestCouch } from '../support/couch';
import { ADMIN, AGENT_TOKEN, startTestDispatcher, TRACER, type TestUser } from '../support/dispatcher';
import { until } from '../support/trace';
import { startWebhookReceiver } from '../support/webhook-receiver';
import { parseExposition, promtoolCheck, type PromtoolVerdict } from '../support/prometheus';

/*
 * Prometheus' own parser and linter (promtool check metrics) as the judge of
 * both /metrics endpoints, scraped once everything that makes their series
 * has happened for real: an agent process capturing sipp calls on lo (with
 * --metrics), its statistics raising an alert at a real dispatcher whose
 * webhook delivers it to an HTTP receiver, and the trace the alert names,
 * run on the agent and stored. A parse error fails; so does any lint finding
 * on a tracefleet_ metric. Findings on the library's default process metrics
 * (not ours to name) are reported as diagnostics.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'bin', 'tracefleet');
const skip = !isRoot() ? 'needs root: captures on lo' : !haveCommand('sipp') ? 'needs sipp' : !haveCommand('promtool') ? 'needs promtool (Debian package prometheus; scripts/setup.sh --test installs it)' : false;

const PLAN: Array<[Outcome, number]> = [['answered', 1], ['unavailable', 6]];

async function scrape(url: string): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

function judge(t: { diagnostic(m: string): void }, what: string, v: PromtoolVerdict): void {
  assert.equal(v.error, null, `${what}: promtool could not parse it`);
  const ours = v.problems.filter((p) => p.metric.startsWith('tracefleet_'));
  assert.deepEqual(ours, [], `${what}: lint findings on our metrics`);
  for (const p of v.problems) t.diagnostic(`${what}: promtool lint (not ours): ${p.metric} ${p.problem}`);
}

test('promtool check metrics passes on the agent and the dispatcher after real calls, an alert and a trace', { skip, timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-promtool-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const receiver = await startWebhookReceiver();
  const hooks = receiver.got;
  t.after(() => receiver.close());
  const couch = await startTestCouch();
  t.after(() => couch.stop());
  const disp = await startTestDispatcher(couch.url, { alertWebhook: receiver.url });
  t.after(() => disp.stop());

  const uasPorts = [await freePort(), await freePort()];
  const uacPort = await freePort();
  const metricsPort = await freePort();
  const agentMetrics = `http://127.0.0.1:${metricsPort}/metrics`;
  const agent = await startDaemon(process.execPath, [
    CLI, 'agent', '--ring', join(dir, 'ring'), '-i', 'lo', '--filter', `udp and (${uasPorts.map((p) => `port ${p}`).join(' or ')})`, '--stats-interval', '0',
    ...uasPorts.map((p) => `--stats-local=127.0.0.1:${p}`), '--dispatcher', disp.url, '--token', AGENT_TOKEN, '--name', 'edge-m', '--metrics', `127.0.0.1:${metricsPort}`,
  ]);
  t.after(() => agent.stop());
  await waitForRecord(agent, (r) => r.msg === 'capturing', 20_000, 'the agent capturing');

  const rest = async (method: string, path: string, user: TestUser, body?: unknown) => {
    const res = await fetch(`${disp.url}${path}`, {
      method,
      headers: { authorization: `Basic ${Buffer.from(`${user.name}:${user.password}`).toString('base64')}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const rule = { name: 'peer-isa', figure: 'isa', op: 'above', threshold: 50, minInvites: 4, scope: 'peer', severity: 'critical' };
  assert.equal((await rest('POST', '/api/alert-rules', ADMIN, rule)).status, 201);

  await playOutcomes(dir, PLAN, uasPorts, uacPort, 10);
  await until(() => hooks.some((m) => m.status === 'firing'), 'the webhook called with the firing alert', 30_000);
  const request = JSON.parse(hooks.find((m) => m.status === 'firing')!.alerts[0].annotations.trace_request);
  const started = await rest('POST', '/api/traces', TRACER, request);
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const id = started.body.trace.id as string;
  await until(async () => (await rest('GET', `/api/traces/${id}`, TRACER)).body.trace.state === 'done', 'the trace done', 60_000);

  // The series the traffic, the alert and the trace made are there before the judge sees them.
  const agentText = await scrape(agentMetrics);
  const a = parseExposition(agentText).values;
  assert.equal(a.get('tracefleet_sip_requests_total{method="INVITE"}'), 7);
  assert.equal(a.get('tracefleet_sip_responses_total{class="5xx"}'), 6);
  assert.ok((a.get('tracefleet_agent_trace_duration_seconds_count{outcome="done"}') ?? 0) >= 1, 'the agent counted the trace');
  const dispText = await scrape(`${disp.url}/metrics`);
  const d = parseExposition(dispText).values;
  assert.equal(d.get('tracefleet_traces_finished_total{state="done"}'), 1);
  assert.equal(d.get('tracefleet_agents_connected'), 1);
  assert.equal(d.get('tracefleet_alert_webhook_notifications_total{outcome="sent"}'), hooks.length);
  assert.equal(d.get('tracefleet_alert_webhook_notifications_total{outcome="failed"}'), 0);

  judge(t, 'agent /metrics', await promtoolCheck(agentText));
  judge(t, 'dispatcher /metrics', await promtoolCheck(dispText));

  // The judge is not blind: a family named against the rules is a finding, a torn line an error.
  const bad = await promtoolCheck(`${agentText}# HELP tracefleet_bad_milliseconds_total A gauge in milliseconds, named as a counter.\n# TYPE tracefleet_bad_milliseconds_total gauge\ntracefleet_bad_milliseconds_total 1\n`);
  assert.deepEqual(bad.problems.filter((p) => p.metric.startsWith('tracefleet_')).map((p) => p.problem).sort(), ['non-counter metrics should not have "_total" suffix', 'use base unit "seconds" instead of "milliseconds"']);
  assert.notEqual((await promtoolCheck(`${dispText}tracefleet_torn{a="b" 1\n`)).error, null);

  assert.equal((await agent.stop()).code, 0);
});
