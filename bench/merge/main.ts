import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { mergeCaptures } from '../../dispatcher/merge/merge';
import { ROOT } from '../common/dispatcher';
import { Figures, median, nowMs, progress } from '../common/report';
import { BulkCapture, GEN_VERSION, generateBulkCapture } from '../stream/gen';

/*
 * The dispatcher's merge against mergecap on the same files: one host's
 * capture of BENCH_MERGE_MB MiB (what a one-host trace merges), and
 * BENCH_MERGE_HOSTS captures sharing those MiB whose packets interleave
 * (bench/stream/gen.ts with a different time offset per host, no two
 * packets at the same instant). Ours is mergeCaptures() in this process,
 * files in ({ host, path }, as mergeTrace gives the spool's) and a file
 * stream out; mergecap is
 * `mergecap -F nsecpcap -w OUT FILES` as a whole process. They run in turn,
 * BENCH_MERGE_RUNS times each, and the medians are compared. Both outputs
 * must be the same bytes (nothing in these files is a duplicate), or the
 * bench fails.
 */

const MB = 1024 * 1024;
const TOTAL_MB = Number(process.env.BENCH_MERGE_MB ?? 200);
const HOSTS = Number(process.env.BENCH_MERGE_HOSTS ?? 4);
const RUNS = Number(process.env.BENCH_MERGE_RUNS ?? 3);
const OUT = join(ROOT, 'bench-output', 'merge');
/** Target: ours at least as fast as mergecap (time ratio ≤ 1). */
const TARGET_RATIO = 1;

function fail(msg: string): never {
  process.stderr.write(`bench:merge: ${msg}\n`);
  process.exit(1);
}

interface Case {
  name: string;
  files: BulkCapture[];
}

interface Meta {
  version: number;
  totalMb: number;
  hosts: number;
  cases: Case[];
}

function ensureCaptures(): Case[] {
  const metaPath = join(OUT, 'meta.json');
  if (existsSync(metaPath)) {
    try {
      const m = JSON.parse(readFileSync(metaPath, 'utf8')) as Meta;
      const whole = m.cases.every((c) => c.files.every((f) => existsSync(f.path) && statSync(f.path).size === f.bytes));
      if (m.version === GEN_VERSION && m.totalMb === TOTAL_MB && m.hosts === HOSTS && whole) return m.cases;
    } catch {
      /* made again below */
    }
  }
  progress(`generating one ${TOTAL_MB} MiB capture and ${HOSTS} of ${(TOTAL_MB / HOSTS).toFixed(0)} MiB in ${OUT}`);
  const one = generateBulkCapture(join(OUT, 'one.pcap'), TOTAL_MB * MB);
  // Offsets under the 0.1 ms between a host's own packets, different per host: the merge interleaves them all.
  const many = Array.from({ length: HOSTS }, (_, i) => generateBulkCapture(join(OUT, `host${i}.pcap`), Math.floor((TOTAL_MB * MB) / HOSTS), 25, i * 37_000));
  const cases: Case[] = [
    { name: 'one', files: [one] },
    { name: 'many', files: many },
  ];
  writeFileSync(metaPath, JSON.stringify({ version: GEN_VERSION, totalMb: TOTAL_MB, hosts: HOSTS, cases } satisfies Meta, null, 2));
  return cases;
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: MB })) h.update(c as Buffer);
  return h.digest('hex');
}

interface Run {
  wallS: number;
  cpuS: number;
}

async function runOurs(files: BulkCapture[], out: string): Promise<Run & { rssGrowthMb: number }> {
  const rss0 = process.memoryUsage.rss();
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  const cpu0 = process.cpuUsage();
  const t0 = nowMs();
  try {
    const r = await mergeCaptures(
      files.map((f, i) => ({ host: `host${i}`, path: f.path })),
      createWriteStream(out),
    );
    if (r.notes.length) fail(`the merge noted: ${r.notes.join('; ')}`);
  } finally {
    clearInterval(sampler);
  }
  const wallS = (nowMs() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { wallS, cpuS: (cpu.user + cpu.system) / 1e6, rssGrowthMb: (peak - rss0) / MB };
}

/**
 * A process that starts Node and loads the merge's module, and does
 * nothing: what a merge run as a process of its own (as mergecap is) would
 * add to ours, which runs in this process.
 */
function runNoop(): Run {
  const mod = join(__dirname, '..', '..', 'dispatcher', 'merge', 'merge.js');
  const t0 = nowMs();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', process.execPath, '-e', `require(${JSON.stringify(mod)})`], { encoding: 'utf8', timeout: 60_000 });
  const wallS = (nowMs() - t0) / 1000;
  if (r.status !== 0) fail(`loading the merge's module exited with ${r.status ?? r.signal}: ${r.stderr.slice(0, 300)}`);
  const [u, s] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wallS, cpuS: u + s };
}

function runMergecap(files: BulkCapture[], out: string): Run {
  const t0 = nowMs();
  // /usr/bin/time gives the child's own CPU; its last stderr line.
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', 'mergecap', '-F', 'nsecpcap', '-w', out, ...files.map((f) => f.path)], { encoding: 'utf8', timeout: 10 * 60_000 });
  const wallS = (nowMs() - t0) / 1000;
  if (r.status !== 0) fail(`mergecap exited with ${r.status ?? r.signal}: ${r.stderr.slice(0, 300)}`);
  const [u, s] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { wallS, cpuS: u + s };
}

async function main(): Promise<void> {
  if (!(TOTAL_MB >= 1 && TOTAL_MB <= 4096)) fail(`BENCH_MERGE_MB=${process.env.BENCH_MERGE_MB}: give a size in MiB from 1 to 4096`);
  if (!(Number.isInteger(HOSTS) && HOSTS >= 2 && HOSTS <= 64)) fail(`BENCH_MERGE_HOSTS=${process.env.BENCH_MERGE_HOSTS}: give 2 to 64 hosts`);
  if (!(Number.isInteger(RUNS) && RUNS >= 1 && RUNS <= 20)) fail(`BENCH_MERGE_RUNS=${process.env.BENCH_MERGE_RUNS}: give 1 to 20 runs`);
  if (spawnSync('mergecap', ['-v']).status !== 0) fail('mergecap is not installed (apt-get install wireshark-common): it is what this bench compares with');
  if (spawnSync('/usr/bin/time', ['true']).status !== 0) fail('/usr/bin/time is not installed (apt-get install time)');
  mkdirSync(OUT, { recursive: true });
  const cases = ensureCaptures();
  const f = new Figures(`bench:merge (the dispatcher's merge vs mergecap -F nsecpcap, ${TOTAL_MB} MiB, same files, ${RUNS} runs each, medians)`);
  let worst = 0;
  let identical = true;
  for (const c of cases) {
    const bytes = c.files.reduce((n, x) => n + x.bytes, 0);
    const packets = c.files.reduce((n, x) => n + x.packets, 0);
    const ours: Array<Run & { rssGrowthMb: number }> = [];
    const theirs: Run[] = [];
    const oursOut = join(OUT, `${c.name}.ours.pcap`);
    const theirsOut = join(OUT, `${c.name}.mergecap.pcap`);
    for (let i = 0; i < RUNS; i++) {
      // In turn, so that a machine whose speed drifts slows both alike.
      progress(`${c.name}: run ${i + 1}/${RUNS}`);
      // A fresh output file for each run: opening last run's 200 MiB file truncated it inside the timed run (about
      // 90 ms) and made its write-back part of the next one, for both tools alike but by how much the disk decided.
      rmSync(theirsOut, { force: true });
      theirs.push(runMergecap(c.files, theirsOut));
      rmSync(oursOut, { force: true });
      ours.push(await runOurs(c.files, oursOut));
    }
    const oursSha = await sha256(oursOut);
    const same = oursSha === (await sha256(theirsOut));
    identical &&= same;
    const oursS = median(ours.map((r) => r.wallS));
    const theirsS = median(theirs.map((r) => r.wallS));
    worst = Math.max(worst, oursS / theirsS);
    f.section(`${c.name === 'one' ? 'one host' : `${c.files.length} hosts`}: ${c.files.length} file(s), ${(bytes / MB).toFixed(0)} MiB, ${packets} packets`);
    f.add(`${c.name}OursS`, 'ours (in-process, files in, file out)', oursS, 's', 2);
    f.add(`${c.name}OursMbPerSec`, '  throughput', bytes / 1e6 / oursS, 'MB/s', 1);
    f.add(`${c.name}OursCpuS`, '  CPU', median(ours.map((r) => r.cpuS)), 's', 2);
    f.add(`${c.name}OursRssGrowthMb`, '  RSS growth of this process', median(ours.map((r) => r.rssGrowthMb)), 'MiB', 1);
    f.add(`${c.name}MergecapS`, 'mergecap (whole process)', theirsS, 's', 2);
    f.add(`${c.name}MergecapMbPerSec`, '  throughput', bytes / 1e6 / theirsS, 'MB/s', 1);
    f.add(`${c.name}MergecapCpuS`, '  CPU', median(theirs.map((r) => r.cpuS)), 's', 2);
    f.add(`${c.name}Ratio`, 'our time / mergecap time', oursS / theirsS, '×', 2);
    f.add(`${c.name}Identical`, 'same output bytes as mergecap', same ? 'yes' : 'NO');
    // So that a change to the merge can be held to the bytes it wrote before.
    f.add(`${c.name}Sha256`, 'SHA-256 of our output', oursSha);
    rmSync(oursOut, { force: true });
    rmSync(theirsOut, { force: true });
  }
  const noop: Run[] = [];
  for (let i = 0; i < RUNS; i++) noop.push(runNoop());
  f.section("Node's start and the merge module's load, a process that does nothing else (not in ours above, in mergecap's)");
  f.add('noopS', 'wall', median(noop.map((r) => r.wallS)), 's', 2);
  f.add('noopCpuS', 'CPU', median(noop.map((r) => r.cpuS)), 's', 2);
  f.section(`target: ours no slower than mergecap (time ratio ≤ ${TARGET_RATIO}), same bytes`);
  f.add('targetRatio', 'verdict', worst <= TARGET_RATIO && identical ? 'PASS' : 'MISS');
  f.extra('node', process.version);
  // Other work on the machine skews every figure here: say how busy it was.
  f.extra('loadavg1', loadavg()[0]);
  f.print();
  if (!identical) process.exitCode = 1;
}

main().catch((e) => fail((e as Error).stack ?? String(e)));
