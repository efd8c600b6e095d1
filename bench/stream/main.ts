import { setTimeout as sleep } from 'node:timers/promises';
import { ChildProcess, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { TraceView } from '../../shared/protocol/client';
import {
  benchCouchdbUrl,
  forkBenchAgents,
  getJson,
  makeTracerToken,
  readCpuSeconds,
  ROOT,
  RssSampler,
  startDispatcherProcess,
  StoreChanges,
  TraceClient,
  wallNow,
} from '../common/dispatcher';
import { Figures, median, progress } from '../common/report';
import { BulkCapture, CALL_ID, GEN_VERSION, generateBulkCapture, MEDIA_IP } from './gen';

/*
 * One large host result, agent → dispatcher → store: a ring of
 * BENCH_STREAM_MB MiB (bench/stream/gen.ts, imported with `tracefleet ring
 * import`) whose every packet involves MEDIA_IP, served by the agent's real
 * trace code (bench/common/agents.ts: agent/link/client.ts +
 * agent/trace/serve.ts, no capture engine) in its own process, traced with
 * --ip MEDIA_IP. Timed from trace:start to the trace's final update (the
 * host's packets.pcap and merged.pcap stored); the dispatcher's VmRSS is
 * sampled every 50 ms (its embedded store is a child process, sampled and
 * reported apart). The stored packets.pcap is downloaded and must be as long
 * as the generated capture.
 *
 * References, run after the trace so as not to disturb it: the query alone
 * (`tracefleet query --ip ... -o /dev/null`), and the same bytes put into
 * the same store directly with `curl -T` as an attachment.
 *
 * Knobs: BENCH_STREAM_MB (200), BENCH_STREAM_REFERENCE=0 skips the curl
 * reference, BENCH_STREAM_CURL_FIRST=1 runs it before the trace instead,
 * BENCH_STREAM_WARM_STORE=0 leaves out the unmeasured curl -T of the same
 * bytes that otherwise warms the store before both (a store's first big
 * upload costs it more than the next: without it, the measured one that
 * comes first pays for the other's warm store), BENCH_STREAM_PROF=DIR (a --cpu-prof of each process; DIR, or
 * bench-output/stream without it, gets trace-span.json: the trace's span on the monotonic clock, µs) or
 * BENCH_STREAM_PERF=1 (--perf-basic-prof, for perf record),
 * BENCH_STREAM_NODE_ARGS="--trace-gc ..." (more node flags for the
 * dispatcher and the agent, not the store), BENCH_COUCHDB=http://user:password@host:port (or its older
 * name BENCH_STREAM_COUCHDB; a cluster's node too) runs the
 * dispatcher on that Apache CouchDB instead of the embedded store (in a
 * database of its own, deleted at the end; the reference goes to the same
 * server).
 */

const OUT = join(ROOT, 'bench-output', 'stream');
const BIN = join(ROOT, 'bin', 'tracefleet');
const STREAM_MB = Number(process.env.BENCH_STREAM_MB ?? 200);
const REFERENCE = process.env.BENCH_STREAM_REFERENCE !== '0';
/** curl -T before the trace rather than after it (knob BENCH_STREAM_CURL_FIRST=1). */
const CURL_FIRST = process.env.BENCH_STREAM_CURL_FIRST === '1';
/** An unmeasured big upload first, so that neither measured one is the store's first (knob BENCH_STREAM_WARM_STORE=0). */
const WARM_STORE = process.env.BENCH_STREAM_WARM_STORE !== '0';
const COUCHDB = benchCouchdbUrl();
/** The whole path against curl -T of the same file into the same store: at least half its throughput. */
const TARGET_CURL_RATIO = 0.5;
const TARGET_GROWTH_MB = 64;
/** The embedded store's own growth for one attachment of any size (issue 13). */
const TARGET_STORE_GROWTH_MB = 256;
const TRACE_TIMEOUT_MS = 15 * 60_000;
const MB = 1024 * 1024;
const AGENT = 'big';

function fail(msg: string): never {
  process.stderr.write(`bench:stream: ${msg}\n`);
  process.exit(1);
}

interface RingMeta {
  version: number;
  mib: number;
  capture: BulkCapture;
  importS: number;
}

/** The generated capture and its ring, reused when made with the same parameters and still whole. */
function ensureRing(ringDir: string): { meta: RingMeta; cached: boolean } {
  const metaPath = join(OUT, 'ring-meta.json');
  if (existsSync(metaPath) && existsSync(ringDir)) {
    try {
      const m = JSON.parse(readFileSync(metaPath, 'utf8')) as RingMeta;
      if (m.version === GEN_VERSION && m.mib === STREAM_MB && existsSync(m.capture.path) && statSync(m.capture.path).size === m.capture.bytes) return { meta: m, cached: true };
    } catch {
      /* remade below */
    }
  }
  rmSync(ringDir, { recursive: true, force: true });
  const path = join(OUT, 'bulk.pcap');
  progress(`generating ${STREAM_MB} MiB of RTP-like packets for ${MEDIA_IP} into ${path}`);
  const capture = generateBulkCapture(path, STREAM_MB * MB);
  progress(`importing into ${ringDir} with tracefleet ring import`);
  const t = wallNow();
  const r = spawnSync(process.execPath, [BIN, 'ring', 'import', path, '--ring', ringDir, '--json'], { cwd: ROOT, encoding: 'utf8', timeout: 20 * 60_000 });
  if (r.status !== 0) fail(`tracefleet ring import exited with ${r.status ?? r.signal}: ${r.stderr}`);
  const imp = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { packets?: number };
  if (imp.packets !== capture.packets) fail(`ring import took ${imp.packets} packets, the capture has ${capture.packets}`);
  const meta: RingMeta = { version: GEN_VERSION, mib: STREAM_MB, capture, importS: (wallNow() - t) / 1000 };
  writeFileSync(metaPath, JSON.stringify(meta, null, 2));
  return { meta, cached: false };
}


/** sha256 of a download through the REST API, with its status and length. */
async function hashDownload(url: string, token: string, timeoutMs: number): Promise<{ status: number; bytes: number; sha256: string }> {
  const r = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
  const h = createHash('sha256');
  let bytes = 0;
  if (r.body)
    for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) {
      h.update(c);
      bytes += c.length;
    }
  return { status: r.status, bytes, sha256: h.digest('hex') };
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
  return h.digest('hex');
}

async function waitAgent(url: string, apiToken: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const list = await getJson<{ agents: Array<{ name: string; connected: boolean; ring: { bytes: number } | null }> }>(`${url}/api/agents`, apiToken);
    if (list.agents.some((a) => a.name === AGENT && a.connected && a.ring)) return;
    await sleep(200);
  }
  throw new Error(`agent ${AGENT} did not connect within ${timeoutMs / 1000} s`);
}

async function main(): Promise<void> {
  if (!Number.isFinite(STREAM_MB) || STREAM_MB < 1 || STREAM_MB > 4096) fail(`BENCH_STREAM_MB=${process.env.BENCH_STREAM_MB}: give a size in MiB from 1 to 4096`);
  mkdirSync(OUT, { recursive: true });
  // trace-span.json goes there before the profiled processes exit (node makes --cpu-prof-dir only then).
  if (process.env.BENCH_STREAM_PROF) mkdirSync(process.env.BENCH_STREAM_PROF, { recursive: true });
  const ringDir = join(OUT, 'ring');
  const { meta, cached } = ensureRing(ringDir);
  const cap = meta.capture;
  progress(`capture: ${(cap.bytes / MB).toFixed(1)} MiB, ${cap.packets} packets (${cap.rtpPackets} RTP-like in ${cap.streams} streams, ${cap.sipPackets} SIP)${cached ? ' (cached)' : ''}`);

  const dataDir = join(OUT, 'data');
  rmSync(dataDir, { recursive: true, force: true });
  const logFile = join(OUT, 'dispatcher.log');
  const agentLog = join(OUT, 'agent.log');
  rmSync(logFile, { force: true });
  rmSync(agentLog, { force: true });
  progress('starting the dispatcher');
  const db = COUCHDB ? `bench-stream-${randomBytes(4).toString('hex')}` : 'tracefleet';
  const storeArgs = COUCHDB ? ['--couchdb', COUCHDB, '--db', db] : [];
  // A CPU profile of each process of the path: the dispatcher's store child takes the flags from it.
  // BENCH_STREAM_PERF=1: --perf-basic-prof instead, so that `perf record -p PID` (on-CPU samples, which a loaded
  // machine does not skew as it does --cpu-prof's wall-clock ones) names the JavaScript frames.
  const profArgs = [
    ...(process.env.BENCH_STREAM_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_STREAM_PROF}`] : process.env.BENCH_STREAM_PERF === '1' ? ['--perf-basic-prof'] : []),
    // BENCH_STREAM_NODE_ARGS: more flags for the dispatcher and the agent (--trace-gc, say: their logs get its lines).
    ...(process.env.BENCH_STREAM_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
  ];
  const d = await startDispatcherProcess({ nodeArgs: profArgs, dataDir, logFile, extraArgs: storeArgs });
  const storeUrl = COUCHDB ?? readFileSync(join(dataDir, 'store.url'), 'utf8').trim();
  const rss = new RssSampler(d.pid, 50);
  const storeRss = d.storePid ? new RssSampler(d.storePid, 100) : null;
  /** curl -T of the capture into a database of its own in the same store: its time, and the embedded store's CPU for it. */
  const curlReference = (refProblems: string[], what = 'reference'): { curlS: number | null; curlStoreCpuS: number | null } => {
    let curlS: number | null = null;
    // The embedded store's CPU for curl's upload alone: what the whole path costs it beyond that is its own.
    let curlStoreCpuS: number | null = null;
    progress(`${what}: curl -T of the same bytes into the store as an attachment`);
    const refDb = `${storeUrl}/bench-stream-${what}`;
    spawnSync('curl', ['-sS', '-o', '/dev/null', '-X', 'DELETE', refDb], { timeout: 60_000 });
    const mk = spawnSync('curl', ['-sS', '-f', '-o', '/dev/null', '-X', 'PUT', refDb], { encoding: 'utf8', timeout: 60_000 });
    if (mk.status === 0) {
      const c0 = wallNow();
      const curlStoreCpu0 = d.storePid ? readCpuSeconds(d.storePid) ?? 0 : 0;
      const put = spawnSync('curl', ['-sS', '-f', '-o', '/dev/null', '-H', 'Content-Type: application/vnd.tcpdump.pcap', '-T', cap.path, `${refDb}/ref/packets.pcap`], { encoding: 'utf8', timeout: 15 * 60_000 });
      if (put.status === 0) curlS = (wallNow() - c0) / 1000;
      else refProblems.push(`reference curl -T failed (${put.status ?? put.signal}): ${put.stderr.slice(0, 300)}`);
      if (d.storePid) curlStoreCpuS = (readCpuSeconds(d.storePid) ?? 0) - curlStoreCpu0;
    } else refProblems.push(`reference: cannot create a database in the store (${mk.status}): ${mk.stderr.slice(0, 300)}`);
    spawnSync('curl', ['-sS', '-o', '/dev/null', '-X', 'DELETE', refDb], { timeout: 60_000 });
    return { curlS, curlStoreCpuS };
  };
  let agent: ChildProcess | null = null;
  let client: TraceClient | null = null;
  let changes: StoreChanges | null = null;
  try {
    // The store's own record of when packets.pcap and merged.pcap were written.
    changes = await StoreChanges.open(storeUrl, db);
    const apiToken = makeTracerToken(d.dataDir, 'bench', storeArgs);
    agent = forkBenchAgents(d.url, d.agentToken, [{ name: AGENT, ringDir }], agentLog, 'info', profArgs);
    await waitAgent(d.url, apiToken, 30_000);
    client = await TraceClient.connect(d.url, apiToken);
    progress(`dispatcher pid ${d.pid}, store pid ${d.storePid ?? '?'}, agent pid ${agent.pid} connected as ${AGENT}`);

    // Warm-up: a small trace through every code path (the dialog's 5 SIP packets), then a quiet second.
    const warm = await client.start({ callId: [CALL_ID], hosts: [AGENT] });
    const warmFinal = await client.waitFinal(warm.trace.id, 60_000);
    if (!warmFinal) throw new Error('the warm-up trace did not finish within 60 s');
    await sleep(2000);
    const before = wallNow();
    const rssBefore = median(rss.samples.filter((s) => s.at >= before - 1000 && s.at <= before).map((s) => s.rss));
    const storeBefore = storeRss ? storeRss.at(before) : 0;
    progress(`warm-up trace done in ${(warmFinal.at - warm.sentAt).toFixed(0)} ms; dispatcher RSS ${(rssBefore / MB).toFixed(1)} MiB`);

    const refProblems: string[] = [];
    let curlS: number | null = null;
    let curlStoreCpuS: number | null = null;
    // The store's first big upload costs it more than the next (JIT, its heap and LevelDB growing): whichever measured
    // upload came first would pay for the other's warm store. One unmeasured upload of the same bytes warms it for both;
    // the store's growth is still counted from before it.
    let warmStoreS: number | null = null;
    if (WARM_STORE) {
      const warmProblems: string[] = [];
      warmStoreS = curlReference(warmProblems, 'warm-store').curlS;
      if (warmProblems.length > 0) throw new Error(`the store's warm-up upload failed: ${warmProblems.join('; ')}`);
      await sleep(2000);
    }
    if (REFERENCE && CURL_FIRST) {
      ({ curlS, curlStoreCpuS } = curlReference(refProblems));
      await sleep(2000);
    }
    const cpu0 = readCpuSeconds(d.pid) ?? 0;
    const scpu0 = d.storePid ? readCpuSeconds(d.storePid) ?? 0 : 0;
    const acpu0 = readCpuSeconds(agent.pid!) ?? 0;
    progress(`tracing --ip ${MEDIA_IP} on ${AGENT}: ${(cap.bytes / MB).toFixed(0)} MiB expected`);
    const { trace, sentAt } = await client.start({ ip: [MEDIA_IP], maxBytes: 2 * cap.bytes, hosts: [AGENT] });
    const final = await client.waitFinal(trace.id, TRACE_TIMEOUT_MS);
    if (!final) throw new Error(`the trace did not finish within ${TRACE_TIMEOUT_MS / 1000} s`);
    const endAt = final.at;
    // The trace's span on the monotonic clock (µs) that --cpu-prof's timestamps use, and `perf record -k CLOCK_MONOTONIC`'s:
    // a profile read for this span alone leaves out start-up, the warm-up and the downloads that check the result.
    const monoNowUs = Number(process.hrtime.bigint() / 1000n);
    const wallToMono = (at: number): number => Math.round(monoNowUs - (wallNow() - at) * 1000);
    writeFileSync(join(process.env.BENCH_STREAM_PROF ?? OUT, 'trace-span.json'), JSON.stringify({ startUs: wallToMono(sentAt), endUs: wallToMono(endAt) }) + '\n');
    const cpu1 = readCpuSeconds(d.pid) ?? 0;
    const scpu1 = d.storePid ? readCpuSeconds(d.storePid) ?? 0 : 0;
    const acpu1 = readCpuSeconds(agent.pid!) ?? 0;
    const ups = client.updates.get(trace.id) ?? [];
    const doneAt = ups.find((x) => x.u.host === AGENT && x.u.state === 'done')?.at ?? NaN;
    const startedAt = ups.find((x) => x.u.host === AGENT && x.u.state === 'started')?.at ?? NaN;
    // Result doc generations: 1 created, 2 final state, 3 packets.pcap attached; the trace doc's 2 is merged.pcap.
    const storedAt = changes.firstAt(`trace:${trace.id}:${AGENT}`, 3) ?? NaN;
    const mergedAt = changes.firstAt(`trace:${trace.id}`, 2) ?? NaN;
    const rssPeak = rss.peak(sentAt, endAt + 500);
    const peakAt = rss.peakAt(sentAt, endAt + 500);
    const peakPhase = peakAt <= doneAt ? 'receiving from the agent' : peakAt <= storedAt ? 'storing packets.pcap' : 'merging';
    const storePeak = storeRss ? storeRss.peak(sentAt, endAt + 500) : 0;

    // Check what was stored, as a client downloads it.
    const problems: string[] = [];
    const view = (await getJson<{ trace: TraceView }>(`${d.url}/api/traces/${trace.id}`, apiToken)).trace;
    const host = view.hosts[0];
    if (view.state !== 'done' || host?.state !== 'done') problems.push(`the trace ended ${view.state}, host ${host?.state}${host?.error ? `: ${host.error}` : ''}`);
    if (host?.packets !== cap.packets) problems.push(`the host reports ${host?.packets} packets, the capture has ${cap.packets}`);
    if (host?.truncated) problems.push('the result was truncated');
    // One host's nanosecond PCAP in order, no duplicate: packets.pcap and merged.pcap are the capture, byte for byte.
    progress('downloading packets.pcap and merged.pcap to hash them against the capture');
    const capSha = await hashFile(cap.path);
    const dl = await hashDownload(`${d.url}/api/traces/${trace.id}/hosts/${AGENT}/packets.pcap`, apiToken, 10 * 60_000);
    if (dl.status !== 200) problems.push(`GET packets.pcap answered ${dl.status}`);
    if (dl.bytes !== cap.bytes) problems.push(`packets.pcap holds ${dl.bytes} bytes, the capture ${cap.bytes}`);
    if (dl.sha256 !== capSha) problems.push(`packets.pcap's sha256 ${dl.sha256} is not the capture's ${capSha}`);
    const mdl = await hashDownload(`${d.url}/api/traces/${trace.id}/merged.pcap`, apiToken, 10 * 60_000);
    if (mdl.status !== 200) problems.push(`GET merged.pcap answered ${mdl.status}`);
    if (mdl.sha256 !== capSha) problems.push(`merged.pcap's sha256 ${mdl.sha256} (${mdl.bytes} bytes) is not the capture's ${capSha}`);
    // Whether the one-host merge was proved from the file's framing and named packets.pcap (mergedAttachment), or was run and uploaded.
    const traceDoc = spawnSync('curl', ['-sS', '-f', `${storeUrl.replace(/\/+$/, '')}/${db}/${encodeURIComponent(`trace:${trace.id}`)}`], { encoding: 'utf8', timeout: 60_000 });
    let mergedNamed: boolean | null = null;
    try {
      mergedNamed = (JSON.parse(traceDoc.stdout) as { mergedAttachment?: unknown }).mergedAttachment !== undefined;
    } catch {
      /* reported as unknown */
    }

    // References, after the trace (curl's before it with BENCH_STREAM_CURL_FIRST=1); their failures say nothing about what was stored.
    progress('reference: the query alone, to /dev/null');
    const q0 = wallNow();
    const q = spawnSync(process.execPath, [BIN, 'query', '--ring', ringDir, '--ip', MEDIA_IP, '-o', '/dev/null'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 10 * 60_000 });
    const queryS = (wallNow() - q0) / 1000;
    if (q.status !== 0) refProblems.push(`tracefleet query exited with ${q.status ?? q.signal}: ${q.stderr.trim().split("\n").filter((l) => /error/i.test(l))[0]?.slice(0, 300) ?? q.stderr.slice(0, 300)}`);
    if (REFERENCE && !CURL_FIRST) ({ curlS, curlStoreCpuS } = curlReference(refProblems));

    const seconds = (endAt - sentAt) / 1000;
    const f = new Figures(`bench:stream (one ${(cap.bytes / MB).toFixed(0)} MiB host result, agent → dispatcher → ${COUCHDB ? 'Apache CouchDB' : 'embedded store'})`);
    f.extra('store', COUCHDB ? 'couchdb' : 'embedded');
    f.section('result');
    f.add('bytes', 'bytes stored (packets.pcap, downloaded and counted)', dl.bytes, 'B', 0);
    f.add('packets', 'packets', host?.packets ?? 0, '', 0);
    f.add('seconds', 'trace:start → final update (host and merged.pcap stored)', seconds, 's', 2);
    f.add('mbPerSec', 'end-to-end throughput', cap.bytes / 1e6 / seconds, 'MB/s', 1);
    f.add('startedS', '  "started" seen', (startedAt - sentAt) / 1000, 's', 2);
    f.add('receivedS', '  all bytes spooled at the dispatcher ("done" seen)', (doneAt - sentAt) / 1000, 's', 2);
    f.add('receivedMbPerSec', '  agent → dispatcher throughput', cap.bytes / 1e6 / ((doneAt - sentAt) / 1000), 'MB/s', 1);
    f.add('hostStoredS', '  packets.pcap in the store (its _changes feed)', (storedAt - sentAt) / 1000, 's', 2);
    f.add('mergeS', '  merged.pcap in the store after that', (mergedAt - storedAt) / 1000, 's', 2);
    f.add('mergedNamed', '  merged.pcap is packets.pcap, named (the merge proved from the framing, not run)', mergedNamed === null ? 'unknown' : mergedNamed ? 'yes' : 'no');
    f.section('dispatcher memory (VmRSS of its process alone, every 50 ms)');
    f.add('rssBeforeMb', 'before (after a warm-up trace)', rssBefore / MB, 'MiB', 1);
    f.add('rssPeakMb', 'peak during the trace', rssPeak / MB, 'MiB', 1);
    f.add('rssGrowthMb', 'growth', (rssPeak - rssBefore) / MB, 'MiB', 1);
    f.add('rssPeakAtS', `peak reached at (while ${peakPhase})`, (peakAt - sentAt) / 1000, 's', 2);
    f.extra('rssPeakPhase', peakPhase);
    // The dispatcher's RSS through the trace, one point a second: [s since trace:start, MiB].
    const timeline: Array<[number, number]> = [];
    for (let t = sentAt; t <= endAt + 500; t += 1000) timeline.push([Math.round((t - sentAt) / 100) / 10, Math.round(rss.peak(t, t + 1000) / MB)]);
    f.extra('rssTimeline', timeline);
    if (storeRss) f.add('storeRssGrowthMb', 'embedded store (separate process) growth', (storePeak - storeBefore) / MB, 'MiB', 1);
    f.add('dispatcherCpuS', 'CPU: dispatcher', cpu1 - cpu0, 's', 2);
    if (d.storePid) f.add('storeCpuS', '  embedded store', scpu1 - scpu0, 's', 2);
    f.add('agentCpuS', '  agent', acpu1 - acpu0, 's', 2);
    f.section(CURL_FIRST ? 'references (the query after the trace, curl -T before it)' : 'references (run after the trace)');
    f.extra('curlFirst', CURL_FIRST);
    if (warmStoreS !== null) f.add('warmStoreS', 'unmeasured: curl -T that warmed the store before both (BENCH_STREAM_WARM_STORE=0: none)', warmStoreS, 's', 2);
    else f.extra('warmStore', false);
    if (q.status === 0) {
      f.add('queryOnlyS', '`tracefleet query --ip` to /dev/null', queryS, 's', 2);
      f.add('queryOnlyMbPerSec', '  throughput', cap.bytes / 1e6 / queryS, 'MB/s', 1);
    }
    refProblems.forEach((p, i) => f.add(`referenceProblem${i}`, '  reference failed', p));
    if (curlS !== null) {
      f.add('curlS', 'curl -T of the same file into the store', curlS, 's', 2);
      f.add('curlMbPerSec', '  throughput', cap.bytes / 1e6 / curlS, 'MB/s', 1);
      if (curlStoreCpuS !== null) f.add('curlStoreCpuS', '  CPU of the embedded store for it', curlStoreCpuS, 's', 2);
      f.add('peerRatio', 'end-to-end time / curl time', seconds / curlS, '×', 2);
      f.add('curlRatio', 'end-to-end throughput / curl -T throughput', curlS / seconds, '×', 2);
    }
    f.section(`target: dispatcher RSS growth < ${TARGET_GROWTH_MB} MiB`);
    f.add('targetGrowth', 'verdict', (rssPeak - rssBefore) / MB < TARGET_GROWTH_MB ? 'PASS' : 'MISS');
    if (curlS !== null) {
      f.section(`target: end-to-end throughput ≥ ${TARGET_CURL_RATIO}× curl -T into the same store`);
      f.add('targetCurl', 'verdict', curlS / seconds >= TARGET_CURL_RATIO ? 'PASS' : 'MISS');
    }
    if (!COUCHDB) {
      f.section(`target: embedded store RSS growth ≤ ${TARGET_STORE_GROWTH_MB} MiB`);
      f.add('targetStoreGrowth', 'verdict', (storePeak - storeBefore) / MB <= TARGET_STORE_GROWTH_MB ? 'PASS' : 'MISS');
    }
    f.add('verified', `packets.pcap and merged.pcap are the capture (${cap.bytes} bytes, sha256 ${capSha.slice(0, 16)}…), ${cap.packets} packets, not truncated`, problems.length === 0 ? 'yes' : 'NO');
    f.extra('sha256', { capture: capSha, packets: dl.sha256, merged: mdl.sha256 });
    problems.forEach((p, i) => f.add(`problem${i}`, '  problem', p));
    f.extra('captureCached', cached);
    f.extra('rssNote', 'MiB of VmRSS of the dispatcher process alone; the embedded store is its child process, reported apart; MB/s are 10^6 bytes per second');
    f.extra('node', process.version);
    // Other work on the machine skews every figure here: say how busy it was.
    f.extra('loadavg1', loadavg()[0]);
    f.print();
    if (problems.length || refProblems.length) process.exitCode = 1;
  } finally {
    client?.close();
    changes?.close();
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      agent.kill('SIGTERM');
      await Promise.race([new Promise((r) => agent!.once('exit', r)), sleep(5000)]);
      if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    }
    rss.stop();
    storeRss?.stop();
    await d.stop();
    if (COUCHDB) spawnSync('curl', ['-sS', '-o', '/dev/null', '-X', 'DELETE', `${COUCHDB.replace(/\/+$/, '')}/${db}`], { timeout: 60_000 });
  }
}

main().catch((e) => {
  const cause = (e as { cause?: unknown }).cause;
  process.stderr.write(`bench:stream: ${(e as Error).stack ?? e}${cause ? `\n  cause: ${String((cause as Error).stack ?? cause)}` : ''}\n`);
  process.exit(1);
});
