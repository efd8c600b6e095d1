import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonHandle, freePort, haveCommand, isRoot, run, startDaemon, tail } from '../support/proc';
import { ROOT, groupMembers } from '../support/fleet';
import { recordsOf, waitForRecord } from '../support/log';

/*
 * `npm start` as a newcomer meets it: `node dist/bin/main.js demo` (what the
 * start script runs after setup), here with --listen, --data-dir and
 * --sip-port so that it never meets a real demo on 8060/5090. The test reads
 * what the demo prints, runs its two CLI examples exactly as printed (from the
 * directory the demo was started in), checks the PCAP with tshark, logs in to
 * the page's API with the printed password, and stops it with SIGINT: nothing
 * it started may be left. A second run on the same data dir gives the same
 * admin credentials back and stops on a Ctrl-C sent to its whole process
 * group, as a terminal does.
 */

function skipReason(): string | false {
  if (!isRoot()) return 'needs root: the demo captures on lo';
  for (const c of ['sipp', 'tshark', 'bash']) if (!haveCommand(c)) return `needs ${c} (installed by npm run setup)`;
  return false;
}
const skip = skipReason();

/** Time from the command to a traced demo call that the issue allows. */
const NEWCOMER_BUDGET_MS = 30_000;

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(TRACEFLEET_|COUCHDB_URL$|REDIS_URL$|npm_)/.test(k)) env[k] = v;
  return env;
}

/** Two consecutive UDP ports free on 127.0.0.1 (the demo callee and caller). */
async function freeUdpPair(): Promise<number> {
  const bindable = (p: number) =>
    new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
  for (let i = 0; i < 20; i++) {
    const p = await freePort();
    if (p < 65535 && (await bindable(p + 1))) return p;
  }
  throw new Error('no two consecutive free UDP ports on 127.0.0.1');
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Children of a process, from /proc, with their command lines. */
function childrenOf(pid: number): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(d), cmd: readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    return state !== undefined && state !== 'Z';
  } catch {
    return false;
  }
}

interface Banner {
  url: string;
  user: string;
  password: string;
  origin: string;
  fileExample: string;
  pipeExample: string;
  token: string;
}

async function readBanner(demo: DaemonHandle): Promise<Banner> {
  await demo.waitForOutput(/Ctrl-C stops everything/, 90_000);
  const out = demo.stdout();
  const url = /Web page:\s+(http:\/\/\S+)\//.exec(out);
  const login = /Log in as:\s+user (\S+), password (\S+) \(([^)]*)\)/.exec(out);
  const fileEx = /^\s+(TRACEFLEET_URL=\S+ TRACEFLEET_TOKEN=(\S+) \S+ trace --number \S+ --since \S+ -o demo-call\.pcap)$/m.exec(out);
  const pipeEx = /^\s+(TRACEFLEET_URL=\S+ TRACEFLEET_TOKEN=\S+ \S+ trace .* -o - \| tshark -r - .*)$/m.exec(out);
  assert.ok(url && login && fileEx && pipeEx, `the demo's banner lacks the URL, the admin or the examples:\n${out}`);
  return { url: url[1], user: login[1], password: login[2], origin: login[3], fileExample: fileEx[1], token: fileEx[2], pipeExample: pipeEx[1] };
}

async function assertAllStopped(what: string, demo: DaemonHandle, children: Array<{ pid: number; cmd: string }>, port: number, sipPort: number): Promise<void> {
  for (const c of children) assert.ok(!alive(c.pid), `${what}: ${c.cmd} (pid ${c.pid}) is still running`);
  assert.deepEqual(groupMembers(demo.pid), [], `${what}: processes left in the demo's process group`);
  assert.equal(await tcpOpen(port), false, `${what}: something still listens on ${port}`);
  const udpFree = await new Promise<boolean>((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(sipPort, '127.0.0.1', () => s.close(() => resolve(true)));
  });
  assert.ok(udpFree, `${what}: udp ${sipPort} still bound (sipp left running?)`);
}

test('allinone: the demo npm start runs: page, admin, a demo call traced by number with the printed CLI examples within 30 s, Ctrl-C stops it all', { skip, timeout: 240_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-allinone-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const sipPort = await freeUdpPair();
  const args = [join(ROOT, 'dist', 'bin', 'main.js'), 'demo', '--listen', `127.0.0.1:${port}`, '--data-dir', 'data', '--sip-port', String(sipPort)];
  const started = Date.now();
  const at = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  const demo = await startDaemon('node', args, { cwd: dir, env: cleanEnv(), stopGraceMs: 20_000 });
  t.after(() => demo.stop().then(() => undefined));
  const logs = () => `\ndemo stderr: ${tail(demo.stderr(), 3000)}`;

  const b = await readBanner(demo);
  t.diagnostic(`${at()}: banner printed`);
  assert.equal(b.url, `http://127.0.0.1:${port}`);
  assert.equal(b.user, 'admin');
  assert.equal(b.origin, 'new');
  assert.match(b.password, /^[A-Za-z0-9]{16,}$/, 'a generated password');
  const adminFile = join(dir, 'data', 'admin.txt');
  assert.equal(statSync(adminFile).mode & 0o777, 0o600, 'admin.txt is readable by its owner only');
  assert.match(readFileSync(adminFile, 'utf8'), new RegExp(`^password: ${b.password}$`, 'm'));
  await waitForRecord(demo, (r) => r.component === 'demo' && /^DEMO TRAFFIC: sipp started/.test(r.msg) && /^127\.0\.0\.1:\d+$/.test(String(r.callee)), 10_000, 'the demo traffic started');

  const first = await waitForRecord(demo, (r) => /first demo call finished/.test(r.msg), 60_000, 'the first demo call');
  const [from, to, callId] = [String(first.from), String(first.to), String(first.callId)];
  t.diagnostic(`${at()}: first demo call ${from} -> ${to} (${callId})`);
  const number = /--number (\S+)/.exec(b.fileExample)![1];
  assert.ok([from, to].includes(number), `the first call (${from} -> ${to}) is one the example's number ${number} traces`);

  // Example 1, exactly as printed, from where the demo was started.
  const ex1 = await run('bash', ['-c', b.fileExample], { cwd: dir, env: cleanEnv(), check: false, timeoutMs: 60_000 });
  assert.equal(ex1.code, 0, `${b.fileExample}\nexit ${ex1.code}: ${tail(ex1.stderr)}${logs()}`);
  const tracedIn = Date.now() - started;
  t.diagnostic(`${at()}: first example done`);
  assert.ok(tracedIn <= NEWCOMER_BUDGET_MS, `a demo call was traced ${tracedIn} ms after the command; the newcomer's budget is ${NEWCOMER_BUDGET_MS} ms`);
  const pcap = join(dir, 'demo-call.pcap');
  assert.ok(existsSync(pcap), 'the example wrote demo-call.pcap where it was run');
  const decode = ['-d', `udp.port==${sipPort},sip`, '-d', `udp.port==${sipPort + 1},sip`];
  const fields = await run('tshark', ['-n', '-r', pcap, ...decode, '-Y', 'sip', '-T', 'fields', '-E', 'separator=|', '-e', 'sip.Call-ID', '-e', 'sip.Method', '-e', 'sip.Status-Code', '-e', 'sip.from.user', '-e', 'sip.to.user'], { timeoutMs: 60_000 });
  const rows = fields.stdout.trim().split('\n').map((l) => l.split('|'));
  const ladder = rows.filter((r) => r[0] === callId).map((r) => r[1] || r[2]);
  assert.deepEqual(ladder, ['INVITE', '100', '180', '200', 'ACK', 'BYE', '200'], `the first demo call's messages in the PCAP, as tshark reads them:\n${fields.stdout}`);
  const invites = rows.filter((r) => r[1] === 'INVITE');
  assert.ok(invites.length >= 1);
  for (const r of invites) assert.ok(r[3] === number || r[4] === number, `every INVITE traced involves ${number}: ${r.join(' ')}`);

  // Example 2, exactly as printed (bash with pipefail: a failing trace fails the pipe).
  const ex2 = await run('bash', ['-o', 'pipefail', '-c', b.pipeExample], { cwd: dir, env: cleanEnv(), check: false, timeoutMs: 60_000 });
  assert.equal(ex2.code, 0, `${b.pipeExample}\nexit ${ex2.code}: ${tail(ex2.stderr)}`);
  assert.match(ex2.stdout, /INVITE sip:\S*5550100/, `tshark's summary lines of the piped PCAP:\n${tail(ex2.stdout)}`);

  // The page and its API with the printed credentials; the agent is there under the demo's name.
  const page = await fetch(`${b.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /text\/html/);
  const login = await fetch(`${b.url}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: b.user, password: b.password }) });
  assert.equal(login.status, 200, await login.clone().text());
  const session = ((await login.json()) as { token: string }).token;
  const agents = (await (await fetch(`${b.url}/api/agents`, { headers: { authorization: `Bearer ${session}` } })).json()) as { agents: Array<{ name: string; connected: boolean }> };
  assert.ok(agents.agents.some((a) => a.name === 'demo-agent' && a.connected), `demo-agent connected: ${JSON.stringify(agents)}`);

  // A second demo on the same port says so and leaves nothing behind.
  const other = await run('node', [join(ROOT, 'dist', 'bin', 'main.js'), 'demo', '--listen', `127.0.0.1:${port}`, '--data-dir', 'data2', '--sip-port', String(sipPort)], { cwd: dir, env: cleanEnv(), check: false, timeoutMs: 90_000 });
  assert.equal(other.code, 1, `second demo on the same port: exit ${other.code}; ${tail(other.stderr)}`);
  assert.match(other.stderr, new RegExp(`127\\.0\\.0\\.1:${port} is already in use.*--listen`));

  // Ctrl-C (SIGINT to the demo alone): sipp, the agent, the dispatcher and its store all stop.
  const children = childrenOf(demo.pid);
  assert.ok(children.filter((c) => /sipp/.test(c.cmd)).length === 2, `two sipp processes: ${JSON.stringify(children)}`);
  assert.ok(children.some((c) => /embedded-server/.test(c.cmd)), `the embedded store: ${JSON.stringify(children)}`);
  process.kill(demo.pid, 'SIGINT');
  const st = await demo.waitForExit(30_000);
  assert.equal(st.code, 0, `demo exit ${JSON.stringify(st)}${logs()}`);
  assert.ok(recordsOf(demo.stderr()).some((r) => r.component === 'demo' && r.msg === 'stopped'), tail(demo.stderr()));
  await assertAllStopped('after SIGINT', demo, children, port, sipPort);

  // Again on the same data dir: the same admin and token; Ctrl-C as a terminal sends it, to the whole group.
  const again = await startDaemon('node', args, { cwd: dir, env: cleanEnv(), stopGraceMs: 20_000 });
  t.after(() => again.stop().then(() => undefined));
  const b2 = await readBanner(again);
  assert.equal(b2.password, b.password);
  assert.equal(b2.origin, 'from an earlier run');
  assert.equal(b2.token, b.token, 'the saved API token is reused');
  await waitForRecord(again, (r) => r.msg === 'connected to dispatcher', 30_000, 'the demo agent connected');
  const children2 = childrenOf(again.pid);
  process.kill(-again.pid, 'SIGINT');
  const st2 = await again.waitForExit(30_000);
  assert.equal(st2.code, 0, `second demo exit ${JSON.stringify(st2)}; ${tail(again.stderr())}`);
  assert.deepEqual(recordsOf(again.stderr()).filter((r) => /DEMO TRAFFIC stopped/.test(r.msg)), [], 'sipp ending with the Ctrl-C is not reported as a failure');
  await assertAllStopped('after Ctrl-C to the group', again, children2, port, sipPort);
});
