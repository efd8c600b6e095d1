import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { closeResult, runQuery, writeResultPcap } from '../../agent/query/engine';
import { buildQuerySpec, TraceQuery } from '../../shared/query/query';
import { importCaptures } from '../../agent/index/import';
import { listSegments } from '../../agent/ring/layout';
import { hotBundleState } from '../../cli/hot-bundle';
import { comparePackets, readPackets } from '../common/pcapcompare';
import { Figures, median, nowMs, progress } from '../common/report';
import { GENERATOR_VERSION, generateSipCapture, SipGenResult } from '../common/sipgen';

/*
 * Query latency against tshark on the same segment files: one Call-ID, and
 * one phone number present in a handful of dialogs, over a ring of
 * BENCH_RING_MB MiB of synthetic SIP. Both tools must select the same
 * packets, or the bench fails: a fast wrong answer is worth nothing.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const RING_MB = Number(process.env.BENCH_RING_MB ?? 1024);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT_CALLS ?? 100);
const RUNS_IN_PROCESS = 15;
const RUNS_CLI = 5;
const SEGMENT_BYTES = 64 * 1024 * 1024;
const SEED = 20261123;
const TARGET_NUMBER = '+15550100999';
const TARGET_MS = 100;
const TARGET_RATIO = 100;
/** `tracefleet query` on a small ring as a whole process, against bare `node -e 0`. */
const STARTUP_RUNS = Number(process.env.BENCH_STARTUP_RUNS ?? 15);
const STARTUP_RING_MB = 2;
const TARGET_STARTUP_RATIO = 1.5;
/** BENCH_QUERY_ONLY=startup: only the start-up case (no tshark, no 1 GiB ring). */
const ONLY_STARTUP = process.env.BENCH_QUERY_ONLY === 'startup';

const OUT = join(ROOT, 'bench-output', 'query');
const CAPTURE_DIR = join(OUT, 'capture');
const RING_DIR = join(OUT, 'ring');
const RESULT_DIR = join(OUT, 'results');

interface CaptureMeta {
  version: number;
  ringMB: number;
  concurrent: number;
  seed: number;
  sizes: number[];
  gen: SipGenResult;
}

function fail(msg: string): never {
  process.stderr.write(`bench:query: ${msg}\n`);
  process.exit(1);
}

/** The cached capture when it was made with the same parameters and is intact; otherwise a new one. */
function ensureCapture(): { meta: CaptureMeta; cached: boolean } {
  const metaPath = join(CAPTURE_DIR, 'meta.json');
  if (existsSync(metaPath)) {
    try {
      const m = JSON.parse(readFileSync(metaPath, 'utf8')) as CaptureMeta;
      const intact = m.gen.files.every((f, i) => existsSync(f) && statSync(f).size === m.sizes[i]);
      if (m.version === GENERATOR_VERSION && m.ringMB === RING_MB && m.concurrent === CONCURRENT && m.seed === SEED && intact) {
        return { meta: m, cached: true };
      }
      progress('cached capture is stale or incomplete; regenerating');
    } catch {
      progress('cached capture metadata unreadable; regenerating');
    }
  }
  rmSync(CAPTURE_DIR, { recursive: true, force: true });
  mkdirSync(CAPTURE_DIR, { recursive: true });
  progress(`generating ${RING_MB} MiB of SIP traffic into ${CAPTURE_DIR}`);
  const gen = generateSipCapture({
    outDir: CAPTURE_DIR,
    totalBytes: RING_MB * 1024 * 1024,
    fileBytes: SEGMENT_BYTES,
    concurrentCalls: CONCURRENT,
    seed: SEED,
    targetNumber: TARGET_NUMBER,
    targetNumberDialogs: 3,
    onProgress: (done, total) => progress(`  generated ${(done / 2 ** 20).toFixed(0)} / ${(total / 2 ** 20).toFixed(0)} MiB`),
  });
  const meta: CaptureMeta = { version: GENERATOR_VERSION, ringMB: RING_MB, concurrent: CONCURRENT, seed: SEED, sizes: gen.files.map((f) => statSync(f).size), gen };
  writeFileSync(metaPath, JSON.stringify(meta, null, 2));
  return { meta, cached: false };
}

async function queryInProcess(raw: TraceQuery, out: string): Promise<{ ms: number; packets: number; dialogs: number }> {
  const start = nowMs();
  const r = runQuery(RING_DIR, buildQuerySpec(raw));
  let packets: number;
  try {
    ({ packets } = await writeResultPcap(r, createWriteStream(out)));
  } finally {
    closeResult(r);
  }
  return { ms: nowMs() - start, packets, dialogs: r.callIds.length };
}

const BIN = join(ROOT, 'bin', 'tracefleet');
const BIN_FALLBACK = join(ROOT, 'dist', 'bin', 'main.js');
/** Which script the CLI runs were made with, and why, when it is not bin/tracefleet. */
let cliEntry = BIN;
let cliNote = '';

function runCli(entry: string, args: string[], out: string): { ms: number; wrote: boolean } {
  rmSync(out, { force: true });
  const start = nowMs();
  const p = spawnSync(process.execPath, [entry, 'query', '--ring', RING_DIR, ...args, '-o', out], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  const ms = nowMs() - start;
  if (p.status !== 0) fail(`${entry} query ${args.join(' ')} exited with ${p.status ?? p.signal}: ${p.stderr}`);
  return { ms, wrote: existsSync(out) };
}

function queryCli(args: string[], out: string): number {
  const r = runCli(cliEntry, args, out);
  if (r.wrote) return r.ms;
  if (cliEntry === BIN) {
    // Seen while the CLI was being finished: bin/tracefleet require()s dist/bin/main.js, whose
    // require.main guard then skips the CLI, so it exits 0 having done nothing. Timing that would
    // flatter us; time the compiled CLI directly instead (the same code and start-up) and say so.
    cliEntry = BIN_FALLBACK;
    cliNote = 'bin/tracefleet exited 0 without writing its output; CLI timed as `node dist/bin/main.js`';
    progress(`WARNING: ${cliNote}`);
    return queryCli(args, out);
  }
  fail(`${cliEntry} query ${args.join(' ')} exited 0 but wrote no ${out}`);
}

/**
 * tshark reads one file per run, so it runs once per segment (as an operator
 * would over a ring) and mergecap joins the parts; both are timed.
 */
function queryTshark(segments: string[], filter: string, out: string, label: string): number {
  const partsDir = join(RESULT_DIR, `tshark-parts-${label}`);
  rmSync(partsDir, { recursive: true, force: true });
  mkdirSync(partsDir, { recursive: true });
  const start = nowMs();
  const parts: string[] = [];
  segments.forEach((seg, i) => {
    const part = join(partsDir, `${String(i).padStart(4, '0')}.pcap`);
    // -n: no name resolution (no network traffic, and what a scripted run would use).
    const p = spawnSync('tshark', ['-n', '-r', seg, '-Y', filter, '-F', 'nsecpcap', '-w', part], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (p.status !== 0) fail(`tshark on ${seg} exited with ${p.status ?? p.signal}: ${p.stderr}`);
    parts.push(part);
    if ((i + 1) % 4 === 0 || i === segments.length - 1) progress(`  tshark ${label}: ${i + 1}/${segments.length} segments`);
  });
  const m = spawnSync('mergecap', ['-F', 'nsecpcap', '-w', out, ...parts], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (m.status !== 0) fail(`mergecap exited with ${m.status ?? m.signal}: ${m.stderr}`);
  const ms = nowMs() - start;
  rmSync(partsDir, { recursive: true, force: true });
  return ms;
}

interface QueryFigures {
  coldMs: number;
  medianMs: number;
  runsMs: number[];
  cliMedianMs: number;
  cliRunsMs: number[];
  tsharkMs: number;
  packets: number;
  dialogs: number;
  expectedPackets: number;
  tsharkPackets: number;
  match: boolean;
  details: string[];
}

async function measure(label: string, raw: TraceQuery, cliArgs: string[], tsharkFilter: string, expectedPackets: number, segments: string[]): Promise<QueryFigures> {
  const ours = join(RESULT_DIR, `${label}-ours.pcap`);
  const cliOut = join(RESULT_DIR, `${label}-cli.pcap`);
  const theirs = join(RESULT_DIR, `${label}-tshark.pcap`);

  progress(`${label}: engine in-process, ${RUNS_IN_PROCESS} runs`);
  const runs: number[] = [];
  let packets = 0;
  let dialogs = 0;
  for (let i = 0; i < RUNS_IN_PROCESS; i++) {
    const r = await queryInProcess(raw, ours);
    runs.push(r.ms);
    packets = r.packets;
    dialogs = r.dialogs;
  }
  progress(`${label}: cold ${runs[0].toFixed(1)} ms, median ${median(runs).toFixed(1)} ms; ${packets} packets of ${dialogs} dialogs`);

  progress(`${label}: CLI, ${RUNS_CLI} runs`);
  const cliRuns: number[] = [];
  for (let i = 0; i < RUNS_CLI; i++) cliRuns.push(queryCli(cliArgs, cliOut));
  progress(`${label}: CLI median ${median(cliRuns).toFixed(1)} ms`);

  progress(`${label}: tshark -Y '${tsharkFilter}' over ${segments.length} segments`);
  const tsharkMs = queryTshark(segments, tsharkFilter, theirs, label);
  progress(`${label}: tshark ${(tsharkMs / 1000).toFixed(1)} s`);

  const [a, c, b] = await Promise.all([readPackets(ours), readPackets(cliOut), readPackets(theirs)]);
  const cmp = comparePackets(a, b, 'ours', 'tshark');
  const cliCmp = comparePackets(c, a, 'cli', 'in-process');
  const details = [...cmp.details, ...cliCmp.details];
  if (a.length !== expectedPackets) details.push(`the generator put ${expectedPackets} packets in the target dialogs; ours has ${a.length}`);
  return {
    coldMs: runs[0], medianMs: median(runs), runsMs: runs, cliMedianMs: median(cliRuns), cliRunsMs: cliRuns, tsharkMs,
    packets: a.length, dialogs, expectedPackets, tsharkPackets: b.length, match: details.length === 0, details,
  };
}

interface StartupFigures {
  nodeMs: number[];
  queryMs: number[];
  ratio: number;
  /** `tracefleet --version`, timed in the same turns. */
  versionMs: number[];
  versionRatio: number;
  packets: number;
  /** Whether `query` ran from the start-up bundle (cli/hot-bundle.ts), and why not. */
  bundle: string;
}

function wallMs(args: string[], what: string): number {
  const start = nowMs();
  const p = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const ms = nowMs() - start;
  if (p.status !== 0) fail(`${what} exited with ${p.status ?? p.signal}: ${p.stderr}`);
  return ms;
}

/**
 * What a script pays per `tracefleet query` on a ring of a few MiB: the
 * whole process, start-up included, against bare `node -e 0` timed in turn
 * with it (interleaved, so that a busy machine weighs on both alike).
 */
async function measureStartup(): Promise<StartupFigures> {
  const dir = join(OUT, 'startup');
  const capDir = join(dir, 'capture');
  const ring = join(dir, 'ring');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(capDir, { recursive: true });
  const gen = generateSipCapture({ outDir: capDir, totalBytes: STARTUP_RING_MB * 1024 * 1024, fileBytes: SEGMENT_BYTES, concurrentCalls: 20, seed: SEED, targetNumber: TARGET_NUMBER, targetNumberDialogs: 1 });
  await importCaptures(ring, gen.files, { maxSegmentBytes: SEGMENT_BYTES });
  const out = join(dir, 'result.pcap');
  const args = [cliEntry, 'query', '--ring', ring, '--call-id', gen.targetCallId, '-o', out];
  const version = [cliEntry, '--version'];
  progress(`start-up: ${STARTUP_RUNS} runs each of node -e 0, tracefleet query on a ${STARTUP_RING_MB} MiB ring and tracefleet --version`);
  const nodeMs: number[] = [];
  const queryMs: number[] = [];
  const versionMs: number[] = [];
  // One unmeasured run each: the first pays for reading the files from disk.
  wallMs(['-e', '0'], 'node -e 0');
  wallMs(args, 'tracefleet query');
  wallMs(version, 'tracefleet --version');
  for (let i = 0; i < STARTUP_RUNS; i++) {
    nodeMs.push(wallMs(['-e', '0'], 'node -e 0'));
    queryMs.push(wallMs(args, 'tracefleet query'));
    versionMs.push(wallMs(version, 'tracefleet --version'));
  }
  const packets = (await readPackets(out)).length;
  if (packets !== gen.targetCallIdPackets) fail(`start-up query wrote ${packets} packets, the generator put ${gen.targetCallIdPackets} in the dialog`);
  const ratio = median(queryMs) / median(nodeMs);
  const versionRatio = median(versionMs) / median(nodeMs);
  const b = hotBundleState();
  const bundle = b.state === 'fresh' ? 'fresh: query ran from it' : `${b.state} (${b.why}): query ran from dist/`;
  progress(`start-up: bundle ${bundle}`);
  progress(`start-up: node -e 0 median ${median(nodeMs).toFixed(1)} ms, tracefleet query median ${median(queryMs).toFixed(1)} ms (${ratio.toFixed(2)}×), --version ${median(versionMs).toFixed(1)} ms (${versionRatio.toFixed(2)}×)`);
  return { nodeMs, queryMs, ratio, versionMs, versionRatio, packets, bundle };
}

function addStartup(f: Figures, s: StartupFigures): void {
  f.section(`start-up: tracefleet query on a ${STARTUP_RING_MB} MiB ring, whole process (target ≤ ${TARGET_STARTUP_RATIO}× node -e 0)`);
  f.add('startup_node_ms', `node -e 0, median of ${STARTUP_RUNS}`, median(s.nodeMs), 'ms', 1);
  f.add('startup_query_ms', `tracefleet query, median of ${STARTUP_RUNS}`, median(s.queryMs), 'ms', 1);
  f.add('startup_packets', 'packets written', s.packets);
  f.add('startup_ratio', 'query / node -e 0', s.ratio, '×', 2);
  f.add('startup_ok', `≤ ${TARGET_STARTUP_RATIO}×`, s.ratio <= TARGET_STARTUP_RATIO);
  f.add('startup_bundle', 'start-up bundle', s.bundle);
  f.add('startup_version_ms', `tracefleet --version, median of ${STARTUP_RUNS}`, median(s.versionMs), 'ms', 1);
  f.add('startup_version_ratio', '--version / node -e 0', s.versionRatio, '×', 2);
  f.extra('startup_node_runs_ms', s.nodeMs.map((x) => Math.round(x * 10) / 10));
  f.extra('startup_query_runs_ms', s.queryMs.map((x) => Math.round(x * 10) / 10));
  f.extra('startup_version_runs_ms', s.versionMs.map((x) => Math.round(x * 10) / 10));
}

function sizeOf(paths: string[]): number {
  return paths.reduce((n, p) => n + statSync(p).size, 0);
}

async function main(): Promise<void> {
  if (!Number.isFinite(RING_MB) || RING_MB < 8) fail(`BENCH_RING_MB=${process.env.BENCH_RING_MB}: give a size in MiB, at least 8`);
  if (!Number.isInteger(STARTUP_RUNS) || STARTUP_RUNS < 1 || STARTUP_RUNS > 200) fail(`BENCH_STARTUP_RUNS=${process.env.BENCH_STARTUP_RUNS}: give 1 to 200`);
  mkdirSync(OUT, { recursive: true });
  const startup = await measureStartup();
  if (ONLY_STARTUP) {
    const f = new Figures('bench:query (start-up only, BENCH_QUERY_ONLY=startup)');
    addStartup(f, startup);
    f.extra('node', process.version);
    f.print();
    return;
  }
  for (const tool of ['tshark', 'mergecap']) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0) fail(`${tool} is not installed (run scripts/setup.sh as root)`);
  }
  mkdirSync(OUT, { recursive: true });
  const { meta, cached } = ensureCapture();
  const gen = meta.gen;
  progress(`capture: ${gen.files.length} files, ${(gen.bytes / 2 ** 20).toFixed(1)} MiB, ${gen.packets} packets, ${gen.dialogs} dialogs${cached ? ' (cached)' : ''}`);

  progress(`importing into ${RING_DIR}`);
  rmSync(RING_DIR, { recursive: true, force: true });
  const importStart = nowMs();
  const imp = await importCaptures(RING_DIR, gen.files, { maxSegmentBytes: SEGMENT_BYTES });
  const importMs = nowMs() - importStart;
  const importMBps = gen.bytes / 1e6 / (importMs / 1000);
  progress(`imported ${imp.packets} packets into ${imp.segments.length} segments in ${(importMs / 1000).toFixed(1)} s (${importMBps.toFixed(1)} MB/s)`);
  if (imp.packets !== gen.packets) fail(`import wrote ${imp.packets} packets, the capture has ${gen.packets}`);

  const segs = listSegments(RING_DIR);
  const segPaths = segs.map((s) => s.path);
  const ringBytes = sizeOf(segPaths);
  const indexBytes = sizeOf(segs.map((s) => s.indexPath).filter((p) => existsSync(p)));

  rmSync(RESULT_DIR, { recursive: true, force: true });
  mkdirSync(RESULT_DIR, { recursive: true });

  const cid = gen.targetCallId;
  const callIdFig = await measure('callid', { callId: [cid] }, ['--call-id', cid], `sip.Call-ID == "${cid}"`, gen.targetCallIdPackets, segPaths);

  // Our --number matches R-URI/From/To/PAI users whose digits end with the query's; every user in this capture is +digits, so a regex anchored at the end is the same test.
  const digits = TARGET_NUMBER.replace(/\D/g, '');
  const numFilter = ['sip.r-uri.user', 'sip.from.user', 'sip.to.user', 'sip.pai.user'].map((f) => `${f} matches "${digits}$"`).join(' || ');
  const numberFig = await measure('number', { number: [TARGET_NUMBER] }, ['--number', TARGET_NUMBER], numFilter, gen.targetNumberPackets, segPaths);
  if (numberFig.dialogs !== gen.targetNumberCallIds.length) {
    numberFig.details.push(`the generator put the number in ${gen.targetNumberCallIds.length} dialogs; ours selected ${numberFig.dialogs}`);
    numberFig.match = false;
  }

  const f = new Figures(`bench:query (tracefleet ring query vs tshark, BENCH_RING_MB=${RING_MB})`);
  f.section('capture');
  f.add('ring_mib', 'ring size (segments)', ringBytes / 2 ** 20, 'MiB', 1);
  f.add('index_mib', 'index size', indexBytes / 2 ** 20, 'MiB', 1);
  f.add('segments', 'segments', segs.length);
  f.add('packets', 'packets', gen.packets);
  f.add('dialogs', 'dialogs (Call-IDs)', gen.dialogs);
  f.add('answered_calls', '  answered calls', gen.answeredCalls);
  f.add('busy_calls', '  busy calls (486)', gen.busyCalls);
  f.add('options_pings', '  OPTIONS pings', gen.optionsPings);
  f.add('peak_concurrent_calls', 'peak concurrent calls', gen.peakConcurrentCalls);
  f.add('span_hours', 'time span', (Number(gen.lastTs) - Number(gen.firstTs)) / 3600, 'h', 1);
  f.add('generation_s', cached ? 'generation (cached, earlier run)' : 'generation', gen.generationMs / 1000, 's', 1);
  f.add('generation_s_per_gib', 'generation rate', gen.generationMs / 1000 / (gen.bytes / 2 ** 30), 's/GiB', 1);
  f.add('import_s', 'import + index', importMs / 1000, 's', 1);
  f.add('import_mb_s', 'import throughput', importMBps, 'MB/s', 1);

  const row = (p: string, title: string, q: QueryFigures) => {
    f.section(title);
    f.add(`${p}_packets`, 'packets selected', q.packets);
    f.add(`${p}_tshark_packets`, '  by tshark', q.tsharkPackets);
    f.add(`${p}_expected_packets`, '  by construction', q.expectedPackets);
    f.add(`${p}_dialogs`, 'dialogs selected', q.dialogs);
    f.add(`${p}_median_ms`, `engine median of ${RUNS_IN_PROCESS}`, q.medianMs, 'ms', 2);
    f.add(`${p}_cold_ms`, 'engine first run (cold JIT, warm page cache)', q.coldMs, 'ms', 2);
    f.add(`${p}_cli_ms`, `CLI median of ${RUNS_CLI} (with Node start-up)`, q.cliMedianMs, 'ms', 1);
    f.add(`${p}_tshark_s`, 'tshark over all segments + mergecap', q.tsharkMs / 1000, 's', 2);
    f.add(`${p}_tshark_mb_s`, 'tshark throughput', ringBytes / 1e6 / (q.tsharkMs / 1000), 'MB/s', 1);
    f.add(`${p}_ratio`, 'tshark / engine median', q.tsharkMs / q.medianMs, '×', 0);
    f.add(`${p}_ratio_cli`, 'tshark / CLI median', q.tsharkMs / q.cliMedianMs, '×', 0);
    f.add(`${p}_selection`, 'same packets as tshark', q.match ? 'MATCH' : 'MISMATCH');
    q.details.forEach((d, i) => f.add(`${p}_mismatch_${i}`, '  mismatch', d));
    f.extra(`${p}_runs_ms`, q.runsMs.map((x) => Math.round(x * 100) / 100));
    f.extra(`${p}_cli_runs_ms`, q.cliRunsMs.map((x) => Math.round(x * 10) / 10));
  };
  row('callid', `Call-ID ${cid}`, callIdFig);
  row('number', `number ${TARGET_NUMBER} (digits end with ${digits})`, numberFig);

  // The ratio is judged against the CLI too: tshark's time includes its start-up, so that is the like-for-like comparison.
  const msOk = callIdFig.medianMs <= TARGET_MS;
  const ratioOk = callIdFig.tsharkMs / callIdFig.medianMs >= TARGET_RATIO && callIdFig.tsharkMs / callIdFig.cliMedianMs >= TARGET_RATIO;
  const verdict = msOk && ratioOk ? 'PASS' : 'MISS';
  f.section('target (Call-ID: ≤ 100 ms, ≥ 100× tshark, in-process and CLI)');
  f.add('target_ms_ok', `engine median ≤ ${TARGET_MS} ms`, msOk);
  f.add('target_ratio_ok', `≥ ${TARGET_RATIO}× tshark (engine and CLI)`, ratioOk);
  f.add('target_verdict', 'verdict', verdict + (RING_MB < 1024 ? ' (the target is set for a 1 GiB ring)' : ''));
  const allMatch = callIdFig.match && numberFig.match;
  f.add('selection', 'selection vs tshark', allMatch ? 'MATCH' : 'MISMATCH');
  addStartup(f, startup);
  f.add('cli_entry', 'CLI timed as', `node ${cliEntry.slice(ROOT.length + 1)}`);
  if (cliNote) f.add('cli_note', '  note', cliNote);
  f.extra('target_call_id', cid);
  f.extra('target_number', TARGET_NUMBER);
  f.extra('target_number_call_ids', gen.targetNumberCallIds);
  f.extra('bench_ring_mb', RING_MB);
  f.extra('node', process.version);
  f.extra('tshark', (spawnSync('tshark', ['--version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0]);
  f.print();
  if (!allMatch) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`bench:query: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
