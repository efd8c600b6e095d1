import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { DaemonHandle, freePort, haveCommand, isRoot, run, startDaemon, tail } from '../support/proc';
import { ROOT, waitFor } from '../support/fleet';
import { recordsOf, waitForRecord } from '../support/log';

/*
 * The agent as the deployment files run it: a non-root user holding only
 * CAP_NET_RAW and CAP_NET_ADMIN, configured by environment through
 * deploy/agent-entrypoint.sh. Two ways to hold the capabilities, each taken
 * from its file:
 *   - the container image (Dockerfile.agent): file capabilities on the node
 *     binary (its `setcap` line), the runtime stage's files laid out as its
 *     COPY lines say, and a bounding set of the two (docker --cap-drop ALL
 *     --cap-add NET_RAW --cap-add NET_ADMIN);
 *   - the systemd unit (deploy/tracefleet-agent.service): ambient
 *     capabilities (its AmbientCapabilities line), with the dispatcher's
 *     entrypoint also as a non-root user, and a fleet trace through both.
 * Packets are a few UDP datagrams to a SIP port on 127.0.0.1, found again by
 * `tracefleet query` and `tracefleet trace`. No Docker engine runs here: the
 * user, capabilities and entrypoints are set up with setpriv.
 */

const USER = 'nobody';
const GROUP = 'nogroup';
const CLI = join(ROOT, 'bin', 'tracefleet');

function skipReason(): string | false {
  if (!isRoot()) return 'needs root: drops to user nobody with only the capture capabilities (setpriv)';
  for (const c of ['setpriv', 'setcap', 'tshark']) if (!haveCommand(c)) return `needs ${c}`;
  return false;
}
const skip = skipReason();

/** Environment for our processes: nothing of the caller's tracefleet, CouchDB or Redis settings. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(TRACEFLEET_|COUCHDB_URL$|REDIS_URL$|npm_)/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** `cap_net_raw,cap_net_admin` style names → setpriv's `+net_raw,+net_admin`. */
function setprivCaps(caps: string[]): string {
  return ['-all', ...caps.map((c) => `+${c.toLowerCase().replace(/^cap_/, '')}`)].join(',');
}

function asUser(caps: { inheritable?: string[]; ambient?: string[]; bounding: string[] }): string[] {
  return [
    `--reuid=${USER}`, `--regid=${GROUP}`, '--clear-groups',
    `--inh-caps=${setprivCaps(caps.inheritable ?? [])}`,
    ...(caps.ambient ? [`--ambient-caps=${setprivCaps(caps.ambient)}`] : []),
    `--bounding-set=${setprivCaps(caps.bounding)}`,
    '--',
  ];
}

/** A directory the unprivileged user owns, inside a temp dir it can reach. */
function userDir(base: string, name: string): string {
  const d = join(base, name);
  mkdirSync(d, { recursive: true });
  chownSync(d, uidOf(USER), gidOf(GROUP));
  return d;
}

function uidOf(user: string): number {
  return Number(spawnSync('id', ['-u', user], { encoding: 'utf8' }).stdout.trim());
}

function gidOf(group: string): number {
  const line = spawnSync('getent', ['group', group], { encoding: 'utf8' }).stdout.trim();
  return Number(line.split(':')[2]);
}

/** Instructions of the last stage of a Dockerfile, continuation lines joined. */
function finalStage(dockerfile: string): string[] {
  const lines = readFileSync(dockerfile, 'utf8').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const from = lines.map((l, i) => (/^FROM\s/i.test(l) ? i : -1)).filter((i) => i >= 0).pop() ?? 0;
  return lines.slice(from);
}

/**
 * The runtime stage's /app as its COPY lines build it, from this checkout
 * (built: the build stage's /src is the checkout after `npm run build`).
 * Hard links: fast, and module resolution stays inside the tree, so a file
 * the image lacks is missing here too.
 */
function layOutImage(dockerfile: string, appDir: string): void {
  const stage = finalStage(dockerfile);
  const workdir = stage.find((l) => /^WORKDIR\s/i.test(l))?.split(/\s+/)[1] ?? '/app';
  let copies = 0;
  for (const line of stage) {
    if (!/^COPY\s/i.test(line)) continue;
    const words = line.split(/\s+/).slice(1);
    const fromBuild = words[0].startsWith('--from=');
    const args = words.filter((w) => !w.startsWith('--'));
    const dest = args.pop()!;
    for (const src of args) {
      const rel = fromBuild ? src.replace(/^\/src\/?/, '') : src;
      const from = join(ROOT, rel === '' ? '.' : rel);
      assert.ok(existsSync(from), `${dockerfile}: COPY source ${src} is not in the checkout (${from}); build first`);
      const destAbs = dest.startsWith('/') ? dest : join(workdir, dest);
      assert.ok(destAbs.startsWith(`${workdir}/`) || destAbs === `${workdir}/` || destAbs === './', `${dockerfile}: COPY to ${dest} outside ${workdir} is not laid out by this test`);
      const into = join(appDir, destAbs.slice(workdir.length));
      const target = dest.endsWith('/') ? join(into, rel.split('/').pop()!) : into;
      mkdirSync(dirname(target), { recursive: true });
      const r = spawnSync('cp', ['-al', from, target], { encoding: 'utf8' });
      assert.equal(r.status, 0, `cp -al ${from} ${target}: ${r.stderr}`);
      copies++;
    }
  }
  assert.ok(copies >= 3, `${dockerfile}: found only ${copies} COPY sources in its last stage`);
}

/** A UDP port in the default capture filter's SIP range (5060-5299) that nothing here listens on. */
async function freeSipPort(): Promise<number> {
  for (let p = 5299; p >= 5200; p--) {
    const free = await new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return p;
  }
  throw new Error('no free UDP port in 5200-5299 on 127.0.0.1');
}

/** `count` SIP OPTIONS datagrams of one Call-ID to 127.0.0.1:port. */
async function sendSip(port: number, callId: string, count: number): Promise<void> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const local = s.address().port;
  for (let i = 1; i <= count; i++) {
    const msg = [
      `OPTIONS sip:caps@127.0.0.1:${port} SIP/2.0`,
      `Via: SIP/2.0/UDP 127.0.0.1:${local};branch=z9hG4bK-caps-${i}`,
      'From: <sip:captest@127.0.0.1>;tag=caps',
      `To: <sip:caps@127.0.0.1:${port}>`,
      `Call-ID: ${callId}`,
      `CSeq: ${i} OPTIONS`,
      'Max-Forwards: 70',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n');
    await new Promise<void>((resolve, reject) => s.send(msg, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  }
  await new Promise<void>((resolve) => s.close(() => resolve()));
}

/** Packets of the Call-ID in the ring, by a local query (read-only while the agent owns the ring). */
async function queryPackets(ring: string, callId: string): Promise<number> {
  const r = await run('node', [CLI, 'query', '--ring', ring, '--call-id', callId, '--since', '10m', '--json'], { env: cleanEnv({}), timeoutMs: 60_000 });
  return (JSON.parse(r.stdout) as { packets: number }).packets;
}

/** What /proc says about a process: user and capability sets. */
function procStatus(pid: number): { uid: number; capEff: bigint; capPrm: bigint; capBnd: bigint } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => (new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(s)?.[1] ?? '').trim();
  return { uid: Number(field('Uid').split(/\s+/)[1]), capEff: BigInt(`0x${field('CapEff')}`), capPrm: BigInt(`0x${field('CapPrm')}`), capBnd: BigInt(`0x${field('CapBnd')}`) };
}

/** CAP_NET_ADMIN (12) and CAP_NET_RAW (13). */
const TWO_CAPS = (1n << 12n) | (1n << 13n);

function unitValue(unit: string, key: string): string {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(readFileSync(unit, 'utf8'));
  assert.ok(m, `${unit} has no ${key}=`);
  return m[1].trim();
}

async function stopAgent(agent: DaemonHandle): Promise<void> {
  const st = await agent.stop(15_000);
  assert.equal(st.code, 0, `agent exit ${JSON.stringify(st)}; stderr: ${tail(agent.stderr())}`);
  assert.ok(recordsOf(agent.stderr()).some((r) => r.msg === 'stopped; ring indexes sealed'), tail(agent.stderr()));
}

test('caps: the agent image way: non-root user, file capabilities on node, bounding set of the two; captures on lo', { skip, timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-caps-image-'));
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const dockerfile = join(ROOT, 'Dockerfile.agent');
  const stage = finalStage(dockerfile);

  // The image's capabilities: its setcap line, applied to a copy of this machine's node.
  const setcap = /setcap\s+(\S+)\s+\/usr\/local\/bin\/node/.exec(stage.join('\n'));
  assert.ok(setcap, 'Dockerfile.agent sets no file capabilities on /usr/local/bin/node');
  const caps = setcap[1].split('=')[0].split(',');
  assert.deepEqual([...caps].sort(), ['cap_net_admin', 'cap_net_raw'], `Dockerfile.agent grants ${setcap[1]}`);
  assert.ok(stage.some((l) => /^USER\s+node$/.test(l)), 'the runtime stage runs as the non-root user node');
  const binDir = join(dir, 'bin');
  mkdirSync(binDir);
  const node = join(binDir, 'node');
  copyFileSync(process.execPath, node);
  chmodSync(node, 0o755);
  const sc = spawnSync('setcap', [setcap[1], node], { encoding: 'utf8' });
  if (sc.status !== 0) return t.skip(`setcap on ${node} failed (file system without extended attributes?): ${sc.stderr.trim()}`);

  const app = join(dir, 'app');
  layOutImage(dockerfile, app);
  const env = Object.fromEntries(stage.filter((l) => /^ENV\s/.test(l)).flatMap((l) => [...l.slice(4).matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]])));
  assert.equal(env.TRACEFLEET_HOME, '/app');
  const ring = join(userDir(dir, 'lib'), 'ring');
  const port = await freeSipPort();
  const agent = await startDaemon('setpriv', [...asUser({ bounding: caps }), join(app, 'deploy', 'agent-entrypoint.sh')], {
    env: cleanEnv({ ...env, TRACEFLEET_HOME: app, TRACEFLEET_RING: ring, TRACEFLEET_INTERFACES: 'lo', TRACEFLEET_STATS_INTERVAL: '0', PATH: `${binDir}:${process.env.PATH}` }),
    stopGraceMs: 15_000,
  });
  t.after(() => agent.stop().then(() => undefined));
  await waitForRecord(agent, (r) => r.msg === 'capturing' && JSON.stringify(r.interfaces) === '["lo"]', 30_000, 'the agent capturing on lo');

  const st = procStatus(agent.pid);
  assert.equal(st.uid, uidOf(USER), 'the agent runs as nobody');
  assert.equal(st.capEff, TWO_CAPS, `effective capabilities ${st.capEff.toString(16)}: only NET_RAW and NET_ADMIN`);
  assert.equal(st.capBnd, TWO_CAPS);

  const callId = `caps-image-${randomBytes(6).toString('hex')}@127.0.0.1`;
  await sendSip(port, callId, 5);
  const n = await waitFor('the 5 datagrams in the ring', 20_000, async () => {
    const k = await queryPackets(ring, callId);
    return k >= 5 ? k : undefined;
  }, 500);
  assert.equal(n, 5);

  const health = join(app, 'deploy', 'healthcheck-agent.sh');
  const hEnv = cleanEnv({ TRACEFLEET_RING: ring });
  const healthy = await run('setpriv', [...asUser({ bounding: [] }), health], { env: hEnv, check: false });
  assert.equal(healthy.code, 0, `healthcheck while running: ${healthy.stderr}`);
  await stopAgent(agent);
  const gone = await run('setpriv', [...asUser({ bounding: [] }), health], { env: hEnv, check: false });
  assert.equal(gone.code, 1, 'healthcheck after the agent stopped');
  assert.match(gone.stderr, /not running|is gone/);
});

test('caps: the systemd unit way: ambient capabilities for the agent, the dispatcher with none; a fleet trace finds the packets', { skip, timeout: 180_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-caps-unit-'));
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const unit = join(ROOT, 'deploy', 'tracefleet-agent.service');
  const ambient = unitValue(unit, 'AmbientCapabilities').split(/\s+/);
  const bounding = unitValue(unit, 'CapabilityBoundingSet').split(/\s+/);
  assert.deepEqual([...ambient].sort(), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
  assert.deepEqual([...bounding].sort(), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
  assert.equal(unitValue(unit, 'NoNewPrivileges'), 'yes');
  const dUnit = join(ROOT, 'deploy', 'tracefleet-dispatcher.service');
  assert.equal(unitValue(dUnit, 'CapabilityBoundingSet'), '', 'the dispatcher holds no capabilities');

  // The dispatcher, configured by environment, as nobody with no capabilities.
  const listenPort = await freePort();
  const listen = `127.0.0.1:${listenPort}`;
  const dataDir = userDir(dir, 'dispatcher');
  const agentToken = randomBytes(24).toString('hex');
  const dispatcher = await startDaemon('setpriv', [...asUser({ bounding: [] }), join(ROOT, 'deploy', 'dispatcher-entrypoint.sh')], {
    env: cleanEnv({ TRACEFLEET_LISTEN: listen, TRACEFLEET_DATA_DIR: dataDir, TRACEFLEET_AGENT_TOKENS: `caps-agent=${agentToken}`, TRACEFLEET_RETENTION_DAYS: '7', HOME: dataDir }),
    stopGraceMs: 15_000,
  });
  t.after(() => dispatcher.stop().then(() => undefined));
  await waitForRecord(dispatcher, (r) => r.msg === 'listening' && /^http:\/\/127\.0\.0\.1/.test(String(r.url)), 60_000, 'the dispatcher listening');
  assert.equal(procStatus(dispatcher.pid).capEff, 0n, 'the dispatcher has no effective capabilities');
  const healthScript = join(ROOT, 'deploy', 'healthcheck-dispatcher.js');
  const h = await run('setpriv', [...asUser({ bounding: [] }), 'node', healthScript], { env: cleanEnv({ TRACEFLEET_LISTEN: `0.0.0.0:${listenPort}` }), check: false });
  assert.equal(h.code, 0, `dispatcher healthcheck: ${h.stderr}`);
  const closed = await freePort();
  const hBad = await run('node', [healthScript], { env: cleanEnv({ TRACEFLEET_LISTEN: `127.0.0.1:${closed}` }), check: false });
  assert.equal(hBad.code, 1, 'healthcheck of a port nobody listens on fails');
  assert.match(hBad.stderr, /ECONNREFUSED/);

  // The agent as the unit runs it: the checkout's entrypoint, ambient capabilities, environment only.
  const ring = join(userDir(dir, 'lib'), 'ring');
  const port = await freeSipPort();
  const agent = await startDaemon('setpriv', [...asUser({ inheritable: ambient, ambient, bounding }), join(ROOT, 'deploy', 'agent-entrypoint.sh')], {
    env: cleanEnv({
      TRACEFLEET_RING: ring,
      TRACEFLEET_INTERFACES: 'lo',
      TRACEFLEET_RING_SIZE: '256M',
      TRACEFLEET_SEGMENT_SIZE: '16M',
      TRACEFLEET_STATS_INTERVAL: '0',
      TRACEFLEET_DISPATCHER: `http://${listen}`,
      TRACEFLEET_TOKEN: agentToken,
      TRACEFLEET_NAME: 'caps-agent',
    }),
    stopGraceMs: 15_000,
  });
  t.after(() => agent.stop().then(() => undefined));
  await waitForRecord(agent, (r) => r.msg === 'capturing' && JSON.stringify(r.interfaces) === '["lo"]', 30_000, 'the agent capturing on lo');
  await waitForRecord(agent, (r) => r.msg === 'connected to dispatcher' && r.name === 'caps-agent', 30_000, 'the agent connected');
  const st = procStatus(agent.pid);
  assert.equal(st.uid, uidOf(USER));
  assert.equal(st.capEff, TWO_CAPS, `effective capabilities ${st.capEff.toString(16)}`);
  assert.equal(st.capPrm, TWO_CAPS);

  const callId = `caps-unit-${randomBytes(6).toString('hex')}@127.0.0.1`;
  await sendSip(port, callId, 5);
  await waitFor('the 5 datagrams in the ring', 20_000, async () => ((await queryPackets(ring, callId)) >= 5 ? true : undefined), 500);

  // A user and an API token, made in the running dispatcher's store; then a fleet trace from the CLI.
  const userEnv = cleanEnv({ TRACEFLEET_NEW_PASSWORD: randomBytes(12).toString('hex') });
  await run('node', [CLI, 'user', 'add', 'tracer', '--role', 'tracer', '--data-dir', dataDir], { env: userEnv, timeoutMs: 60_000 });
  const token = (await run('node', [CLI, 'user', 'token', 'tracer', '--data-dir', dataDir], { env: userEnv, timeoutMs: 60_000 })).stdout.trim();
  assert.match(token, /^tf_/);
  const out = join(dir, 'trace.pcap');
  const tr = await run('node', [CLI, 'trace', '--call-id', callId, '--since', '10m', '-o', out], {
    env: cleanEnv({ TRACEFLEET_URL: `http://${listen}`, TRACEFLEET_TOKEN: token }),
    timeoutMs: 90_000,
    check: false,
  });
  assert.equal(tr.code, 0, `trace exit ${tr.code}: ${tail(tr.stderr)}; dispatcher: ${tail(dispatcher.stderr())}`);
  const frames = await run('tshark', ['-n', '-r', out, '-d', `udp.port==${port},sip`, '-Y', `sip.Call-ID == "${callId}"`, '-T', 'fields', '-e', 'sip.CSeq.seq'], { timeoutMs: 60_000 });
  assert.deepEqual(frames.stdout.trim().split('\n'), ['1', '2', '3', '4', '5'], 'the merged PCAP holds the 5 datagrams, as tshark reads them');

  await stopAgent(agent);
  const ds = await dispatcher.stop(15_000);
  assert.equal(ds.code, 0, `dispatcher exit ${JSON.stringify(ds)}; ${tail(dispatcher.stderr())}`);
  // Everything the dispatcher wrote is in its data dir, owned by the user.
  assert.equal(statSync(join(dataDir, 'store')).uid, uidOf(USER));
});

test('caps: without the capabilities the agent stops at once with a clear error', { skip, timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tf-caps-none-'));
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const ring = join(userDir(dir, 'lib'), 'ring');
  const r = await run('setpriv', [...asUser({ bounding: [] }), join(ROOT, 'deploy', 'agent-entrypoint.sh')], {
    env: cleanEnv({ TRACEFLEET_RING: ring, TRACEFLEET_INTERFACES: 'lo', TRACEFLEET_STATS_INTERVAL: '0' }),
    check: false,
    timeoutMs: 30_000,
  });
  assert.equal(r.code, 1, `exit ${r.code}; stderr: ${r.stderr}`);
  assert.match(r.stderr, /permission denied capturing on lo .*run as root or give CAP_NET_RAW and CAP_NET_ADMIN/);
  assert.ok(!existsSync(join(ring, 'agent.pid')), 'the ring is not left locked');
});

test('caps: the systemd units pass systemd-analyze verify', { skip: skip || (!haveCommand('systemd-analyze') && 'needs systemd-analyze'), timeout: 60_000 }, async (t) => {
  // Installed paths (/opt/tracefleet, /etc/tracefleet) pointed at this checkout and example env files, so verify can check them.
  const dir = mkdtempSync(join(tmpdir(), 'tf-units-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const units: string[] = [];
  for (const u of ['agent', 'dispatcher']) {
    const text = readFileSync(join(ROOT, 'deploy', `tracefleet-${u}.service`), 'utf8');
    assert.match(text, new RegExp(`^EnvironmentFile=/etc/tracefleet/${u}\\.env$`, 'm'));
    assert.match(text, /^ProtectSystem=strict$/m);
    assert.match(text, /^User=tracefleet$/m);
    copyFileSync(join(ROOT, 'deploy', `${u}.env.example`), join(dir, `${u}.env`));
    const f = join(dir, `tracefleet-${u}.service`);
    writeFileSync(f, text.replace(/\/opt\/tracefleet/g, ROOT).replace(`/etc/tracefleet/${u}.env`, join(dir, `${u}.env`)));
    units.push(f);
  }
  const r = await run('systemd-analyze', ['verify', '--man=no', ...units], { check: false, timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  // Unknown keys, bad values and missing executables are warnings on stderr.
  const warnings = r.stderr.split('\n').filter((l) => l.includes('tracefleet-'));
  assert.deepEqual(warnings, []);
});
