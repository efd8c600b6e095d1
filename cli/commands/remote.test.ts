import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ETH_IPV4, ethernet, ipv4, sipInvite, sipResponse, udp, writePcap } from '../../test/support/packets';
import { CaptureStreamParser } from '../../shared/pcap/reader';
import type { AgentStatus } from '../../shared/protocol/agent';
import type { TraceView } from '../../shared/protocol/client';
import { importCaptures } from '../../agent/index/import';
import { connectDispatcher, DispatcherLink, readRingStatus } from '../../agent/link/client';
import { serveTraces, TraceServer } from '../../agent/trace/serve';
import { startDispatcher, RunningDispatcher } from '../../dispatcher/daemon/run';
import { Auth } from '../../dispatcher/auth/auth';
import { closedPort, startTestCouch, TestCouch, uniqueDbName } from '../../test/support/couch';
import { silentLogger } from '../../shared/log/log';

/*
 * The CLI as users run it: `node bin/tracefleet ...` child processes against
 * a real dispatcher (startDispatcher on loopback, real store, real Auth),
 * with real agents answering from a ring imported from a generated PCAP.
 */

const CLI = join(resolve(__dirname, '..', '..', '..'), 'bin', 'tracefleet');
const PW = 'alice-password-1';
const T0 = 1_795_000_000;
const A = 'cli-dialog-a@pc33';
const B = 'cli-dialog-b@gw';
const AGENT_TOKEN = 'agent-secret-for-cli-tests';

let dir = '';
let home = '';
let ring = '';
let couch: TestCouch;
let d: RunningDispatcher;
let url = '';
let aliceToken = '';
let veraToken = '';
const links: DispatcherLink[] = [];
const servers: TraceServer[] = [];

const udpEth = (src: string, dst: string, payload: Buffer) => ethernet(ETH_IPV4, ipv4({ src, dst, proto: 17 }, udp(5060, 5060, payload)));

const STATUS = (): AgentStatus => ({
  ring: readRingStatus(ring),
  capture: { eth0: { packets: 1234, dropped: 2, ifDropped: 1, running: true } },
  indexErrors: 0,
});

function agent(name: string, serve: boolean): DispatcherLink {
  const link = connectDispatcher({
    url,
    token: AGENT_TOKEN,
    name,
    hello: () => ({ version: 'test', hostname: `${name}.test`, interfaces: ['eth0'], ...STATUS() }),
    status: STATUS,
    logger: silentLogger,
  });
  links.push(link);
  if (serve) servers.push(serveTraces(link.socket, { ringDir: ring, logger: silentLogger }));
  return link;
}

async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false> | T | null | undefined | false, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tf-cli-disp-'));
  home = join(dir, 'home');
  mkdirSync(home);
  ring = join(dir, 'ring');
  const pcap = join(dir, 'calls.pcap');
  writePcap(pcap, [
    { sec: T0, nsec: 100, frame: udpEth('192.0.2.1', '198.51.100.7', sipInvite(A)) },
    { sec: T0, nsec: 200, frame: udpEth('198.51.100.7', '192.0.2.1', sipResponse(200, 'OK', A)) },
    { sec: T0 + 1, nsec: 0, frame: udpEth('198.51.100.9', '198.51.100.7', sipInvite(B)) },
    { sec: T0 + 1, nsec: 500, frame: udpEth('198.51.100.7', '198.51.100.9', sipResponse(486, 'Busy Here', B)) },
    { sec: T0 + 2, nsec: 0, frame: udpEth('203.0.113.5', '198.51.100.7', sipInvite('unrelated@x')) },
  ]);
  await importCaptures(ring, [pcap]);

  couch = await startTestCouch();
  d = await startDispatcher({
    port: 0,
    couchdbUrl: couch.url,
    db: uniqueDbName(),
    dataDir: join(dir, 'data'),
    agentTokens: [{ token: AGENT_TOKEN }],
    // The mute agent never answers trace:run: its host stays unfinished long enough for Ctrl-C and --timeout.
    timeouts: { runAckMs: 60_000 },
    logger: silentLogger,
  });
  url = d.url;
  const auth = await Auth.open(d.store.store);
  await auth.addUser('alice', PW, ['tracer']);
  await auth.addUser('vera', 'vera-password-1', ['viewer']);
  aliceToken = await auth.createToken('alice');
  veraToken = await auth.createToken('vera');

  agent('edge1', true);
  // edge2 has been connected and is gone: known, not connected.
  const gone = agent('edge2', false);
  agent('mute', false);
  await waitFor('agents to connect', async () => {
    const a = await d.orchestrator.agents();
    return a.filter((x) => x.connected).length === 3;
  });
  gone.close();
  await waitFor('edge2 to be disconnected', async () => (await d.orchestrator.agents()).some((a) => a.name === 'edge2' && !a.connected));
});

after(async () => {
  for (const s of servers) s.close();
  for (const l of links) l.close();
  await d?.close();
  await couch?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs the CLI with a clean environment: no TRACEFLEET_* of the machine, HOME in the test dir. */
function spawnTf(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** `input` null: stdin stays open for the test to write to. */
function collect(child: ChildProcess, timeoutMs: number, input?: string | null): Promise<Run> {
  return new Promise<Run>((resolve, reject) => {
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tracefleet did not finish within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: err });
    });
    if (input !== null) child.stdin!.end(input);
  });
}

function tf(args: string[], env: Record<string, string> = {}, opts: { input?: string; timeoutMs?: number } = {}): Promise<Run> {
  return collect(spawnTf(args, env), opts.timeoutMs ?? 60_000, opts.input);
}

const asAlice = () => ({ TRACEFLEET_URL: url, TRACEFLEET_TOKEN: aliceToken });

/** A REST GET with alice's token, the body whole (test data is small). */
function get(path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { headers: { authorization: `Bearer ${aliceToken}` } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function packets(pcap: Buffer): Buffer[] {
  const p = new CaptureStreamParser();
  const out: Buffer[] = [];
  for (const r of p.push(pcap)) out.push(Buffer.from(r.data));
  p.end();
  return out;
}

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function lastLine(s: string): string {
  const lines = s.trim().split('\n');
  return lines[lines.length - 1];
}

/** The trace id the CLI's summary line names. */
function traceIdIn(stderr: string): string {
  const m = /trace ([A-Za-z0-9_-]+) (?:done|partial|failed|cancelled|interrupted)/.exec(stderr);
  assert.ok(m, `no trace id in: ${stderr}`);
  return m[1];
}

test('trace -o FILE --json: the merged PCAP the dispatcher stores, the final trace as JSON, progress on stderr', async () => {
  const out = join(dir, 'a.pcap');
  const r = await tf(['trace', '--call-id', A, '--hosts', 'edge1', '-o', out, '--json'], asAlice());
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout.toString()) as TraceView;
  assert.equal(v.state, 'done');
  assert.deepEqual(v.request, { callId: [A], hosts: ['edge1'] });
  assert.deepEqual(v.hosts.map((h) => [h.host, h.state, h.packets]), [['edge1', 'done', 2]]);
  assert.equal(v.merged?.packets, 2);
  const stored = await get(`/api/traces/${v.id}/merged.pcap`);
  assert.equal(stored.status, 200);
  assert.ok(readFileSync(out).equals(stored.body), 'the file is the stored merged.pcap byte for byte');
  assert.equal(packets(stored.body).length, 2);
  // stderr is not a terminal here: one plain line per change, no escape sequences.
  assert.match(r.stderr, new RegExp(`tracefleet: trace ${v.id}: asking 1 host: edge1`));
  assert.match(r.stderr, /host edge1: done \(2 packets/);
  assert.match(lastLine(r.stderr), new RegExp(`trace ${v.id} done: 2 packets .* from 1/1 hosts written to ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.doesNotMatch(r.stderr, /\x1b\[/);
});

test('trace -o - streams the merged PCAP into a pipe; without -o the result is shown', async () => {
  const r = await tf(['trace', '--call-id', B, '--hosts', 'edge1', '-o', '-'], asAlice());
  assert.equal(r.code, 0, r.stderr);
  const id = traceIdIn(r.stderr);
  const stored = await get(`/api/traces/${id}/merged.pcap`);
  assert.ok(r.stdout.equals(stored.body), `stdout (${r.stdout.length} bytes) is merged.pcap (${stored.body.length} bytes)`);
  assert.equal(packets(r.stdout).length, 2);

  const shown = await tf(['trace', '--call-id', A, '--hosts', 'edge1'], asAlice());
  assert.equal(shown.code, 0, shown.stderr);
  const text = shown.stdout.toString();
  assert.match(text, /^state +done/m);
  assert.match(text, /^filters +--call-id cli-dialog-a@pc33 --hosts edge1$/m);
  assert.match(text, /^edge1 +done +2 /m);
  assert.match(shown.stderr, /tracefleet download \S+ -o trace\.pcap/);
});

test('on a terminal the progress is a table redrawn in place', { skip: !hasScript() && 'needs script(1) for a pseudo-terminal' }, async () => {
  // edge1 answers at once, mute never: the table is drawn while the trace runs and redrawn when --timeout ends it
  // (a trace that is done before its first frame is drawn once, and there would be nothing to redraw).
  const child = spawn('script', ['-qec', `${process.execPath} ${CLI} trace --call-id ${A} --hosts edge1,mute --timeout 3`, '/dev/null'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...asAlice(), COLUMNS: '100', LINES: '30' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const r = await collect(child, 60_000);
  const text = r.stdout.toString();
  assert.equal(r.code, 1, text + r.stderr);
  assert.match(text, /\x1b\[5F\x1b\[J/, "moves back over the 5-line table (title, header, two hosts, summary) and clears it");
  assert.match(text, /HOST +STATE +PACKETS +BYTES +ERROR\r?\nedge1 +done +2 /);
  assert.match(text, /\nmute +\w+/);
  assert.doesNotMatch(text, /host edge1: done/, 'no plain lines on a terminal');
});

test('a known host that is not connected makes the trace partial: exit 3, the packets of the others written', async () => {
  const out = join(dir, 'partial.pcap');
  const r = await tf(['trace', '--call-id', A, '--hosts', 'edge1,edge2', '-o', out], asAlice());
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /host edge2: unreachable .*agent edge2 is not connected/);
  assert.match(lastLine(r.stderr), /partial: 2 packets .* from 1\/2 hosts written/);
  assert.equal(packets(readFileSync(out)).length, 2);
  // Only the missing host: nothing done, exit 1.
  const f = await tf(['trace', '--call-id', A, '--hosts', 'edge2', '--json'], asAlice());
  assert.equal(f.code, 1, f.stderr);
  assert.equal((JSON.parse(f.stdout.toString()) as TraceView).state, 'failed');
});

test('bad input: one line and exit 2, before or from the dispatcher', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['trace', '--ip', '10.0.0.300'], /bad IP address '10\.0\.0\.300'/],
    [['trace', '--call-id', 'x', '--bogus'], /Unknown argument: bogus/],
    [['trace', '--call-id', 'x', '-o', '-', '--json'], /both write to stdout/],
    [['trace', '--hosts', 'edge1'], /no selective key.*--all/],
    [['trace', '--call-id', 'x', '--timeout', '0'], /bad --timeout 0/],
    [['trace', '--call-id', 'x', '-o', join(dir, 'no', 'such', 'dir', 'f.pcap')], /cannot write -o .*no\/such\/dir.*does not exist: create it first \(mkdir -p /],
    // The dispatcher's 400: a host it never heard of.
    [['trace', '--call-id', 'x', '--hosts', 'nosuch'], /refused the trace: unknown host nosuch.*known agents: edge1, edge2, mute/],
    [['download', 'someid'], /Missing required argument: o/],
    [['download', 'someid', '--host', 'edge1', '--tar', '-o', 'x'], /mutually exclusive/],
    [['traces', '--limit', '0'], /bad --limit 0/],
    [['agents', '--url', 'dispatcher:8060'], /bad --url 'dispatcher:8060'/],
  ];
  for (const [args, re] of cases) {
    const r = await tf(args, asAlice());
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: one line, got ${r.stderr}`);
    assert.match(lines[0], /^tracefleet: /);
    assert.match(lines[0], re, args.join(' '));
  }
});

test('unauthorized or forbidden: exit 4, saying what to do', async () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['trace', '--call-id', 'x'], { TRACEFLEET_URL: url, TRACEFLEET_TOKEN: 'tf_wrong' }, /refused the login: .*run tracefleet login/],
    [['agents'], { TRACEFLEET_URL: url, TRACEFLEET_TOKEN: 'tf_wrong' }, /refused \(401\).*credentials from environment/],
    [['agents'], { TRACEFLEET_URL: url }, /refused \(401\).*log in with tracefleet login/],
    [['trace', '--call-id', 'x', '--hosts', 'edge1'], { TRACEFLEET_URL: url, TRACEFLEET_TOKEN: veraToken }, /user vera \(viewer\) may not start or cancel traces/],
    [['agents'], { TRACEFLEET_URL: url, TRACEFLEET_USER: 'alice', TRACEFLEET_PASSWORD: 'wrong-password' }, /refused \(401\)/],
  ];
  for (const [args, env, re] of cases) {
    const r = await tf(args, env);
    assert.equal(r.code, 4, `${args.join(' ')}: exit ${r.code}, stderr ${r.stderr}`);
    assert.match(lastLine(r.stderr), re, args.join(' '));
  }
  // Right user and password through the environment (Basic on REST, {user, password} on the socket).
  const ok = await tf(['agents', '--json'], { TRACEFLEET_URL: url, TRACEFLEET_USER: 'alice', TRACEFLEET_PASSWORD: PW });
  assert.equal(ok.code, 0, ok.stderr);
  const viaSocket = await tf(['trace', '--call-id', A, '--hosts', 'edge1', '--json'], { TRACEFLEET_URL: url, TRACEFLEET_USER: 'alice', TRACEFLEET_PASSWORD: PW });
  assert.equal(viaSocket.code, 0, viaSocket.stderr);
  // A user without a password and no terminal to ask it on.
  const noPw = await tf(['agents'], { TRACEFLEET_URL: url, TRACEFLEET_USER: 'alice' });
  assert.equal(noPw.code, 2, noPw.stderr);
  assert.match(noPw.stderr, /no password for user alice and no terminal/);
});

test('an unreachable dispatcher: exit 1, saying what to check', async () => {
  const dead = `http://127.0.0.1:${await closedPort()}`;
  for (const args of [['agents'], ['trace', '--call-id', 'x'], ['download', 'x', '-o', join(dir, 'never.pcap')]]) {
    const r = await tf(args, { TRACEFLEET_URL: dead, TRACEFLEET_TOKEN: aliceToken });
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(lastLine(r.stderr), new RegExp(`cannot reach the dispatcher at ${dead}: connection refused: is the dispatcher running there\\? \\(set --url or TRACEFLEET_URL\\)`));
  }
  assert.equal(existsSync(join(dir, 'never.pcap')), false);
});

test('settings: flags over environment over the config file; its credentials only for its dispatcher', async () => {
  const cfg = join(dir, 'cfg.json');
  writeFileSync(cfg, JSON.stringify({ url, token: aliceToken }), { mode: 0o600 });
  const fromFile = await tf(['agents', '--json'], { TRACEFLEET_CONFIG: cfg });
  assert.equal(fromFile.code, 0, fromFile.stderr);
  assert.deepEqual((JSON.parse(fromFile.stdout.toString()) as { agents: Array<{ name: string }> }).agents.map((a) => a.name), ['edge1', 'edge2', 'mute']);
  // The environment beats the file.
  const envWins = await tf(['agents'], { TRACEFLEET_CONFIG: cfg, TRACEFLEET_TOKEN: 'tf_wrong' });
  assert.equal(envWins.code, 4, envWins.stderr);
  // A flag beats the environment.
  const flagWins = await tf(['agents', '--token', aliceToken], { TRACEFLEET_CONFIG: cfg, TRACEFLEET_TOKEN: 'tf_wrong' });
  assert.equal(flagWins.code, 0, flagWins.stderr);
  const flagConfig = await tf(['agents', '--config', cfg], { TRACEFLEET_CONFIG: join(dir, 'missing.json') });
  assert.equal(flagConfig.code, 0, flagConfig.stderr);
  // The default file under HOME, and under XDG_CONFIG_HOME.
  mkdirSync(join(home, '.config', 'tracefleet'), { recursive: true });
  writeFileSync(join(home, '.config', 'tracefleet', 'config.json'), JSON.stringify({ url, token: aliceToken }), { mode: 0o600 });
  const byHome = await tf(['agents'], {});
  assert.equal(byHome.code, 0, byHome.stderr);
  assert.match(byHome.stdout.toString(), /^edge1 +yes/m);
  rmSync(join(home, '.config'), { recursive: true });
  const xdg = join(dir, 'xdg');
  mkdirSync(join(xdg, 'tracefleet'), { recursive: true });
  writeFileSync(join(xdg, 'tracefleet', 'config.json'), JSON.stringify({ url, token: aliceToken }), { mode: 0o600 });
  assert.equal((await tf(['agents'], { XDG_CONFIG_HOME: xdg })).code, 0);

  // The file is for another dispatcher: its token is not sent to this one.
  const other = join(dir, 'other.json');
  writeFileSync(other, JSON.stringify({ url: 'http://198.51.100.1:8060', token: aliceToken }), { mode: 0o600 });
  const notSent = await tf(['agents'], { TRACEFLEET_CONFIG: other, TRACEFLEET_URL: url });
  assert.equal(notSent.code, 4, notSent.stderr);
  assert.match(notSent.stderr, /credentials in .*other\.json are for http:\/\/198\.51\.100\.1:8060/);
  // A broken file: exit 2 naming the file.
  writeFileSync(other, '{"url": ', { mode: 0o600 });
  const broken = await tf(['agents'], { TRACEFLEET_CONFIG: other });
  assert.equal(broken.code, 2, broken.stderr);
  assert.match(broken.stderr, /config file .*other\.json is not valid JSON/);
  // Secrets readable by others: a note, still works.
  chmodSync(cfg, 0o644);
  const loose = await tf(['agents'], { TRACEFLEET_CONFIG: cfg });
  assert.equal(loose.code, 0);
  assert.match(loose.stderr, /readable by others: chmod 600/);
});

test('login saves a session token (mode 0600) that later commands use', async () => {
  const cfg = join(dir, 'login', 'config.json');
  const r = await tf(['login', '--user', 'alice', '--password-stdin', '--config', cfg], { TRACEFLEET_URL: url }, { input: `${PW}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`logged in to ${url} as alice \\(roles: tracer\\); session saved in ${cfg}`));
  assert.equal(statSync(cfg).mode & 0o777, 0o600);
  const saved = JSON.parse(readFileSync(cfg, 'utf8')) as { url: string; token: string; user: string };
  assert.equal(saved.url, url);
  assert.equal(saved.user, 'alice');
  // The file alone now says where and who.
  const agents = await tf(['agents', '--config', cfg]);
  assert.equal(agents.code, 0, agents.stderr);
  const trace = await tf(['trace', '--call-id', A, '--hosts', 'edge1', '--json', '--config', cfg]);
  assert.equal(trace.code, 0, trace.stderr);

  const wrong = await tf(['login', '--user', 'alice', '--password-stdin', '--config', cfg], { TRACEFLEET_URL: url }, { input: 'nope-nope-nope\n' });
  assert.equal(wrong.code, 4, wrong.stderr);
  assert.match(wrong.stderr, /wrong user name or password/);
  assert.equal(JSON.parse(readFileSync(cfg, 'utf8')).token, saved.token, 'a failed login keeps the saved session');
  const noTty = await tf(['login', '--user', 'alice', '--config', join(dir, 'login', 'x.json')], { TRACEFLEET_URL: url });
  assert.equal(noTty.code, 2, noTty.stderr);
  assert.match(noTty.stderr, /no terminal to ask the password on: give --password-stdin/);
  const empty = await tf(['login', '--user', 'alice', '--password-stdin', '--config', join(dir, 'login', 'x.json')], { TRACEFLEET_URL: url }, { input: '' });
  assert.equal(empty.code, 2, empty.stderr);
});

test('login on a terminal asks the password without echoing it', { skip: !hasScript() && 'needs script(1) for a pseudo-terminal' }, async () => {
  const cfg = join(dir, 'login-tty', 'config.json');
  const child = spawn('script', ['-qec', `${process.execPath} ${CLI} login --user alice --config ${cfg}`, '/dev/null'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, TRACEFLEET_URL: url },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let seen = '';
  child.stdout!.on('data', (c: Buffer) => (seen += c.toString()));
  const done = collect(child, 60_000, null);
  // Typed only once the prompt is up: before it, the terminal is still in echo mode.
  await waitFor('the password prompt', () => seen.includes(`password for alice at ${url}: `));
  child.stdin!.write(`${PW}\r`);
  const r = await done;
  assert.equal(r.code, 0, seen);
  assert.ok(!seen.includes(PW), `the password was echoed: ${JSON.stringify(seen)}`);
  assert.match(seen, /logged in to .* as alice/);
  assert.equal(statSync(cfg).mode & 0o777, 0o600);
});

test('traces, show, download, agents', async () => {
  const env = asAlice();
  const list = await tf(['traces', '--json'], env);
  assert.equal(list.code, 0, list.stderr);
  const page = JSON.parse(list.stdout.toString()) as { traces: TraceView[] };
  assert.ok(page.traces.length >= 5, `traces so far: ${page.traces.length}`);
  const done = page.traces.find((t) => t.state === 'done' && t.request.callId?.[0] === A && t.hosts.length === 1)!;
  assert.ok(done);

  const table = await tf(['traces'], env);
  assert.equal(table.code, 0, table.stderr);
  const rows = table.stdout.toString().trim().split('\n');
  assert.match(rows[0], /^ID +CREATED +USER +STATE +HOSTS OK +PACKETS$/);
  const created = rows.slice(1).map((l) => l.split(/ {2,}/)[1]);
  assert.deepEqual(created, [...created].sort().reverse(), 'newest first');
  assert.ok(rows.some((l) => l.startsWith(done.id) && /alice +done +1\/1 +2$/.test(l)), rows.join('\n'));
  assert.ok(rows.some((l) => /partial +1\/2 +2$/.test(l)), rows.join('\n'));

  // Pages: the hint gives the next page's command.
  const first = await tf(['traces', '--limit', '2'], env);
  assert.equal(first.code, 0, first.stderr);
  const hint = /more: tracefleet traces --page (\S+) --limit 2/.exec(first.stderr);
  assert.ok(hint, first.stderr);
  const second = await tf(['traces', '--limit', '2', '--page', hint[1]], env);
  assert.equal(second.code, 0, second.stderr);
  const ids = (s: string) => s.trim().split('\n').slice(1).map((l) => l.split(' ')[0]);
  assert.equal(ids(second.stdout.toString()).length, 2);
  assert.equal(ids(first.stdout.toString()).filter((i) => ids(second.stdout.toString()).includes(i)).length, 0, 'pages do not overlap');
  const none = await tf(['traces', '--owner', 'vera'], env);
  assert.equal(none.code, 0);
  assert.match(none.stderr, /no traces yet/);

  const show = await tf(['show', done.id, '--messages'], env);
  assert.equal(show.code, 0, show.stderr);
  const text = show.stdout.toString();
  assert.match(text, new RegExp(`^trace +${done.id}$`, 'm'));
  assert.match(text, /^user +alice$/m);
  assert.match(text, /^HOST +STATE +PACKETS +BYTES +PCAP +ERROR$/m);
  assert.match(text, /^edge1 +done +2 +\d+ B +yes$/m);
  assert.match(text, /^TIME +HOST +SRC +DST +MESSAGE +CALL-ID$/m);
  assert.match(text, /edge1 +192\.0\.2\.1:5060 +→ +198\.51\.100\.7:5060 +INVITE +cli-dialog-a@pc33/);
  assert.match(text, /198\.51\.100\.7:5060 +→ +192\.0\.2\.1:5060 +200 OK \(\d+ INVITE\) +cli-dialog-a@pc33/);
  const showJson = await tf(['show', done.id, '--json', '--messages'], env);
  const sj = JSON.parse(showJson.stdout.toString()) as { trace: TraceView; messages: Array<{ callId: string; host: string }> };
  assert.equal(sj.trace.id, done.id);
  assert.deepEqual(sj.messages.map((m) => [m.host, m.callId]), [['edge1', A], ['edge1', A]]);
  const missing = await tf(['show', 'nosuchtrace'], env);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /refused \(404\): no trace nosuchtrace/);

  const merged = await get(`/api/traces/${done.id}/merged.pcap`);
  const hostPcap = await get(`/api/traces/${done.id}/hosts/edge1/packets.pcap`);
  assert.equal(hostPcap.status, 200);
  const f1 = join(dir, 'dl-merged.pcap');
  const dl = await tf(['download', done.id, '-o', f1], env);
  assert.equal(dl.code, 0, dl.stderr);
  assert.ok(readFileSync(f1).equals(merged.body));
  assert.match(dl.stderr, /merged PCAP of trace .*written to/);
  const f2 = join(dir, 'dl-host.pcap');
  assert.equal((await tf(['download', done.id, '--host', 'edge1', '-o', f2], env)).code, 0);
  assert.ok(readFileSync(f2).equals(hostPcap.body));
  const f3 = join(dir, 'dl.tar');
  assert.equal((await tf(['download', done.id, '--tar', '-o', f3], env)).code, 0);
  assert.equal(readFileSync(f3).subarray(257, 262).toString(), 'ustar');
  assert.match(execFileSync('tar', ['-tf', f3]).toString(), /merged\.pcap/);
  const toPipe = await tf(['download', done.id, '-o', '-'], env);
  assert.equal(toPipe.code, 0);
  assert.ok(toPipe.stdout.equals(merged.body));
  const f4 = join(dir, 'dl-none.pcap');
  const nohost = await tf(['download', done.id, '--host', 'edge2', '-o', f4], env);
  assert.equal(nohost.code, 1);
  assert.match(nohost.stderr, /did not ask host edge2/);
  assert.equal(existsSync(f4), false, 'no file is left when the dispatcher says no');

  const agents = await tf(['agents'], env);
  assert.equal(agents.code, 0, agents.stderr);
  const at = agents.stdout.toString();
  assert.match(at, /^NAME +CONNECTED +LAST SEEN +RING SPAN \(oldest \.\. newest\) +RING +CAPTURE \(packets\/drops\)$/m);
  assert.match(at, /^edge1 +yes +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \.\. \d{4}-.*Z +\d+(\.\d)? (B|KiB) +eth0 1234\/3$/m);
  assert.match(at, /^edge2 +no /m);
  const aj = JSON.parse((await tf(['agents', '--json'], env)).stdout.toString()) as { agents: Array<{ name: string; connected: boolean }> };
  assert.deepEqual(aj.agents.map((a) => [a.name, a.connected]), [['edge1', true], ['edge2', false], ['mute', true]]);
});

test('Ctrl-C cancels the running trace and exits 130', async () => {
  const child = spawnTf(['trace', '--call-id', A, '--hosts', 'mute'], asAlice());
  const done = collect(child, 60_000);
  let seen = '';
  child.stderr!.on('data', (c: Buffer) => (seen += c.toString()));
  await waitFor('the trace to start', () => /asking 1 host: mute/.test(seen));
  child.kill('SIGINT');
  const r = await done;
  assert.equal(r.code, 130, r.stderr);
  const m = /trace ([A-Za-z0-9_-]+): asking/.exec(r.stderr)!;
  assert.match(lastLine(r.stderr), new RegExp(`interrupted: trace ${m[1]} (cancelled|asked to cancel)`));
  const v = await waitFor('the trace to be cancelled', async () => {
    const t = JSON.parse((await get(`/api/traces/${m[1]}`)).body.toString()) as { trace: TraceView };
    return t.trace.state === 'cancelled' ? t.trace : null;
  });
  assert.deepEqual(v.hosts.map((h) => h.state), ['cancelled']);
});

test('--timeout gives up on a trace that does not end: it is cancelled, exit 1', async () => {
  const started = Date.now();
  const r = await tf(['trace', '--call-id', A, '--hosts', 'mute', '--timeout', '1', '--json'], asAlice());
  assert.equal(r.code, 1, r.stderr);
  assert.ok(Date.now() - started < 20_000);
  assert.match(r.stderr, /no result after 1 s \(--timeout\): cancelling the trace/);
  assert.match(lastLine(r.stderr), /gave up after 1 s \(--timeout\) and cancelled trace/);
  assert.equal((JSON.parse(r.stdout.toString()) as TraceView).state, 'cancelled');
});

test('HTTPS: an untrusted certificate is refused with what to do; --ca and --insecure accept it', async (t) => {
  const tlsDir = join(dir, 'tls');
  mkdirSync(tlsDir);
  const cert = join(tlsDir, 'cert.pem');
  const key = join(tlsDir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const d2 = await startDispatcher({ port: 0, couchdbUrl: couch.url, db: uniqueDbName(), dataDir: join(dir, 'data-tls'), agentTokens: [], tls: { cert, key }, logger: silentLogger });
  t.after(() => d2.close());
  assert.match(d2.url, /^https:\/\//);
  const auth = await Auth.open(d2.store.store);
  await auth.addUser('alice', PW, ['tracer']);
  const token = await auth.createToken('alice');
  const env = { TRACEFLEET_URL: d2.url, TRACEFLEET_TOKEN: token };

  const refused = await tf(['agents'], env);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /its TLS certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\): give --ca FILE .* or --insecure/);
  const refusedSocket = await tf(['trace', '--call-id', 'x'], env);
  assert.equal(refusedSocket.code, 1, refusedSocket.stderr);
  assert.match(refusedSocket.stderr, /not trusted/);

  assert.equal((await tf(['agents', '--insecure'], env)).code, 0);
  const withCa = await tf(['agents', '--ca', cert], env);
  assert.equal(withCa.code, 0, withCa.stderr);
  assert.match(withCa.stderr, /no agent has connected to this dispatcher yet/);
  // The Socket.IO connection over TLS too: it gets as far as the dispatcher's answer (no agents here).
  for (const flags of [['--ca', cert], ['--insecure']]) {
    const tr = await tf(['trace', '--call-id', 'x', ...flags], env);
    assert.equal(tr.code, 2, tr.stderr);
    assert.match(tr.stderr, /refused the trace: no agent is connected to the dispatcher/);
  }
  // login remembers the CA for later commands.
  const cfg = join(tlsDir, 'config.json');
  const login = await tf(['login', '--user', 'alice', '--password-stdin', '--ca', cert, '--config', cfg], { TRACEFLEET_URL: d2.url }, { input: PW });
  assert.equal(login.code, 0, login.stderr);
  assert.equal((await tf(['agents', '--config', cfg])).code, 0);
});
