import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort, isRoot, run, startDaemon } from '../support/proc';
import { waitForRecord } from '../support/log';
import { LOOPBACK, sendBurst, sipPayload, sleep, udpSender } from '../support/capture';
import { parseExposition, type Exposition } from '../support/prometheus';

/*
 * A real agent (the CLI, capturing on lo) with --metrics, scraped over HTTP
 * while SIP datagrams go to 127.0.0.1: the capture, index and SIP counters
 * move by exactly what was sent (the capture filter is this test's own port,
 * so other traffic on lo does not count), and every family follows
 * Prometheus' naming rules.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'bin', 'tracefleet');
const skip = isRoot() ? false : 'needs root: captures on lo';

function response(tag: string, seq: number): Buffer {
  return Buffer.from(
    `SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP ${LOOPBACK};branch=z9hG4bK-${tag}-${seq}\r\n` +
      `Call-ID: ${tag}-${seq}\r\nCSeq: ${seq + 1} OPTIONS\r\nContent-Length: 0\r\n\r\n`,
  );
}

async function scrape(url: string): Promise<{ text: string; exp: Exposition }> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  return { text, exp: parseExposition(text) };
}

const v = (e: Exposition, series: string) => e.values.get(series);

/** Prometheus' naming rules as they apply to ours: prefix, snake case, _total on counters only, base units, no per-call labels. */
function checkNames(e: Exposition, text: string): void {
  const ours = [...e.types.keys()].filter((n) => n.startsWith('tracefleet_'));
  assert.ok(ours.length >= 15, `tracefleet families: ${ours.join(', ')}`);
  for (const name of ours) {
    assert.match(name, /^tracefleet_[a-z0-9]+(_[a-z0-9]+)*$/, name);
    const type = e.types.get(name)!;
    assert.equal(name.endsWith('_total'), type === 'counter', `${name} is a ${type}`);
    assert.doesNotMatch(name, /_(milliseconds|ms|kilobytes|megabytes|minutes|hours)(_|$)/, `${name}: base units only`);
    assert.ok(e.help.has(name), `${name} has HELP`);
  }
  for (const m of text.matchAll(/^tracefleet_\w+\{([^}]*)\}/gm)) {
    for (const [, label] of m[1].matchAll(/(\w+)="/g)) assert.ok(['interface', 'reason', 'method', 'class', 'outcome', 'le'].includes(label), `label ${label}`);
  }
  // The default process metrics come with them.
  assert.ok(e.types.has('process_cpu_user_seconds_total') && e.types.has('nodejs_heap_size_used_bytes'));
}

test('tracefleet agent --metrics: counters move with the traffic on lo, names follow the rules', { skip, timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-agent-metrics-'));
  t.after(() => process.env.KEEP ? console.log(dir) : rmSync(dir, { recursive: true, force: true }));
  const sipPort = await freePort();
  const metricsPort = await freePort();
  const url = `http://127.0.0.1:${metricsPort}/metrics`;
  const agent = await startDaemon(process.execPath, [
    CLI, 'agent', '--ring', join(dir, 'ring'), '-i', 'lo', '--filter', `udp port ${sipPort}`, '--stats-interval', '0', '--metrics', `127.0.0.1:${metricsPort}`,
  ]);
  t.after(() => agent.stop());
  await waitForRecord(agent, (r) => r.msg === 'serving metrics', 20_000, 'the agent serving metrics');

  const before = await scrape(url);
  checkNames(before.exp, before.text);
  assert.equal(v(before.exp, 'tracefleet_capture_packets_total{interface="lo"}'), 0);
  assert.equal(v(before.exp, 'tracefleet_capture_dropped_packets_total{interface="lo",reason="kernel"}'), 0);
  assert.equal(v(before.exp, 'tracefleet_capture_up{interface="lo"}'), 1);
  assert.equal(v(before.exp, 'tracefleet_sip_requests_total{method="OPTIONS"}'), undefined);
  assert.equal(v(before.exp, 'tracefleet_agent_trace_duration_seconds_count{outcome="done"}'), undefined);

  const { sock } = await udpSender();
  t.after(() => sock.close());
  const requests = 300;
  const responses = 120;
  await sendBurst(sock, sipPort, requests, (i) => sipPayload('metrics', i));
  await sendBurst(sock, sipPort, responses, (i) => response('metrics', i));
  // The odd method is hostile input: counted, under "other".
  await sendBurst(sock, sipPort, 1, () => Buffer.from(sipPayload('metrics', 999).toString('latin1').replace(/^OPTIONS/, 'XYZZY').replace(/CSeq: (\d+) OPTIONS/, 'CSeq: $1 XYZZY')));

  const total = requests + responses + 1;
  const deadline = Date.now() + 30_000;
  let after = await scrape(url);
  const settled = (e: Exposition) => v(e, 'tracefleet_capture_packets_total{interface="lo"}') === total && v(e, 'tracefleet_index_lag_bytes') === 0 && (v(e, 'tracefleet_sip_requests_total{method="other"}') ?? 0) > 0;
  while (Date.now() < deadline && !settled(after.exp)) {
    await sleep(200);
    after = await scrape(url);
  }
  checkNames(after.exp, after.text);
  assert.equal(v(after.exp, 'tracefleet_capture_packets_total{interface="lo"}'), total);
  // libpcap's own count: on lo the kernel hands it each packet twice (out and in) and it keeps one.
  assert.ok(v(after.exp, 'tracefleet_capture_received_packets_total{interface="lo"}')! >= total);
  assert.ok(v(after.exp, 'tracefleet_capture_bytes_total{interface="lo"}')! > total * 100);
  assert.equal(v(after.exp, 'tracefleet_sip_requests_total{method="OPTIONS"}'), requests);
  assert.equal(v(after.exp, 'tracefleet_sip_requests_total{method="other"}'), 1);
  assert.equal(v(after.exp, 'tracefleet_sip_responses_total{class="2xx"}'), responses);
  assert.equal(v(after.exp, 'tracefleet_index_lag_bytes'), 0, 'the indexer has caught up');
  assert.equal(v(after.exp, 'tracefleet_index_lag_seconds'), 0);
  assert.ok(v(after.exp, 'tracefleet_ring_bytes')! > total * 100);
  assert.ok(v(after.exp, 'tracefleet_ring_segments')! >= 1);
  assert.ok(v(after.exp, 'tracefleet_ring_span_seconds')! >= 0);
  assert.ok(Math.abs(v(after.exp, 'tracefleet_ring_oldest_timestamp_seconds')! - Date.now() / 1000) < 120);

  const other = await fetch(`http://127.0.0.1:${metricsPort}/`);
  assert.equal(other.status, 404);
  await other.text();

  assert.equal((await agent.stop()).code, 0);
});

test('tracefleet agent --metrics refuses an address it cannot use, before capturing', { skip, timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-agent-metrics-'));
  try {
    const r = await run(process.execPath, [CLI, 'agent', '--ring', join(dir, 'ring'), '-i', 'lo', '--metrics', 'localhost'], { timeoutMs: 20_000, check: false });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bad --metrics 'localhost': give HOST:PORT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
