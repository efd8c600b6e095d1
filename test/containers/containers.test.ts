import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSocket } from 'node:dgram';
import { run, freePort, isRoot, tail } from '../support/proc';
import { runSippCalls } from '../support/sipp';
import { Engine, NoEngine, docker, openEngine, stopEngine } from './engine';
import { assembleBase, baseTagOf } from './base-image';

/*
 * The images for real (opt-in: `npm run test:containers`; `npm test` leaves
 * this folder out). Both Dockerfiles are built on a base assembled here, the
 * dispatcher and the agent run as documented (host network; the agent as uid
 * 1000 with exactly NET_RAW and NET_ADMIN, the dispatcher with no capability),
 * a sipp call on loopback is traced through the dispatcher container with the
 * CLI of this checkout, both health checks must pass, and SIGTERM must leave
 * the agent's ring sealed. Everything made is removed again.
 */

const ROOT = resolve(__dirname, '..', '..', '..');
const CLI = join(ROOT, 'bin', 'tracefleet');
const TOTAL_MS = 20 * 60_000;
/** CAP_NET_ADMIN (12) and CAP_NET_RAW (13). */
const TWO_CAPS = (1n << 12n) | (1n << 13n);
const SIP_MESSAGES = ['INVITE', '100', '180', '200', 'ACK', 'BYE', '200'];

const skip = isRoot() ? false : 'needs root: installs docker.io and debootstrap, starts dockerd, assembles a root file system';

/** uid and capability sets of a process, from /proc (a container's process is one of the host's). */
function procStatus(pid: number): { uid: number; capEff: bigint; capBnd: bigint } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => (new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(s)?.[1] ?? '').trim();
  return { uid: Number(field('Uid').split(/\s+/)[1]), capEff: BigInt(`0x${field('CapEff')}`), capBnd: BigInt(`0x${field('CapBnd')}`) };
}

/** The CLI of this checkout, with nothing of the caller's tracefleet settings or config file. */
function cliEnv(dir: string, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(TRACEFLEET_|COUCHDB_URL$|REDIS_URL$)/.test(k)) env[k] = v;
  return { ...env, XDG_CONFIG_HOME: join(dir, 'xdg'), ...extra };
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createSocket('udp4');
    s.once('error', () => done(false));
    s.bind(port, '127.0.0.1', () => s.close(() => done(true)));
  });
}

/** Two free UDP ports side by side where the agent's default filter captures SIP (5060-5299), away from 5060 itself. */
async function sipPorts(): Promise<[number, number]> {
  for (let i = 0; i < 50; i++) {
    const p = 5100 + 2 * Math.floor(Math.random() * 95);
    if ((await udpFree(p)) && (await udpFree(p + 1))) return [p, p + 1];
  }
  throw new Error('no two free UDP ports in 5100-5299 on loopback');
}

test('containers: both images built on the pinned base, a sipp call traced through them, health checks, SIGTERM seals the ring', { skip, timeout: TOTAL_MS }, async (t) => {
  const started = Date.now();
  const phase = (name: string) => t.diagnostic(`${((Date.now() - started) / 1000).toFixed(0)} s: ${name}`);
  const dir = mkdtempSync(join(tmpdir(), 'tf-containers-'));
  const cleanups: Array<[string, () => Promise<unknown>]> = [];
  t.after(async () => {
    const errors: string[] = [];
    for (const [what, f] of cleanups.reverse()) {
      try {
        await f();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
    if (errors.length) throw new Error(`containers teardown: ${errors.join('; ')}`);
  });

  let engine: Engine;
  try {
    engine = await openEngine(dir);
  } catch (e) {
    if (e instanceof NoEngine) {
      t.skip(`no container engine can start here: ${e.message}`);
      return;
    }
    throw e;
  }
  cleanups.push(['engine', () => stopEngine(engine, dir)]);
  phase(`engine: ${engine.describe} (${engine.cli})`);

  const run1 = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const agentDockerfile = join(ROOT, 'Dockerfile.agent');
  const dispDockerfile = join(ROOT, 'Dockerfile.dispatcher');
  const baseTag = baseTagOf(agentDockerfile, readFileSync(agentDockerfile, 'utf8'));
  assert.equal(baseTagOf(dispDockerfile, readFileSync(dispDockerfile, 'utf8')), baseTag, 'the two Dockerfiles build on different bases');
  const nodeVersion = process.versions.node;
  assert.match(baseTag, new RegExp(`^node:${nodeVersion.replace(/\./g, '\\.')}-`), `the images' base ${baseTag} is not the Node.js the suite runs on (v${nodeVersion}): change ARG NODE_IMAGE in both Dockerfiles`);

  // A base already in the engine is used as it is (and left there); one we assemble is removed at the end.
  const had = await docker(engine, ['image', 'inspect', baseTag], { check: false });
  if (had.code !== 0) {
    const npmVersion = (await run('npm', ['--version'])).stdout.trim();
    await assembleBase(engine, join(dir, 'base'), baseTag, nodeVersion, npmVersion);
    cleanups.push(['base image', () => docker(engine, ['rmi', baseTag])]);
    phase(`base ${baseTag} assembled (node ${nodeVersion}, npm ${npmVersion})`);
  } else {
    phase(`base ${baseTag} already in the engine`);
  }

  // A CA bundle for a TLS-inspecting proxy, as the build documents it: a secret, never a switch that turns checks off.
  const npmCafile = (await run('npm', ['config', 'get', 'cafile'], { check: false })).stdout.trim();
  const caFile = process.env.NODE_EXTRA_CA_CERTS || (npmCafile && npmCafile !== 'null' && npmCafile !== 'undefined' ? npmCafile : '');
  const images = { agent: `tracefleet-agent:ctest-${run1}`, dispatcher: `tracefleet-dispatcher:ctest-${run1}` };
  for (const [which, file] of [['dispatcher', dispDockerfile], ['agent', agentDockerfile]] as const) {
    const args = ['build', '--network', 'host', '--progress', 'plain', '-f', file, '-t', images[which]];
    if (caFile) args.push('--secret', `id=npm_ca,src=${caFile}`);
    cleanups.push([`image ${images[which]}`, () => docker(engine, ['rmi', '-f', images[which]], { check: false })]);
    const b = await docker(engine, [...args, ROOT], { timeoutMs: 12 * 60_000, check: false });
    assert.equal(b.code, 0, `docker build of ${file} failed (${b.code}):\n${tail(b.stderr, 4000)}`);
    phase(`${which} image built`);
  }
  cleanups.push(['build cache', () => docker(engine, ['builder', 'prune', '-f'], { check: false, timeoutMs: 120_000 })]);

  // Volumes are folders of ours, owned by the images' user, so the ring can be checked from here afterwards.
  const dispData = join(dir, 'dispatcher-data');
  const agentData = join(dir, 'agent-data');
  for (const d of [dispData, agentData]) {
    mkdirSync(d);
    chownSync(d, 1000, 1000);
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const agentToken = randomBytes(24).toString('hex');
  const names = { dispatcher: `tf-ctest-dispatcher-${run1}`, agent: `tf-ctest-agent-${run1}` };
  const agentName = `ctest-${run1}`;
  const logsOf = async (name: string) => {
    const l = await docker(engine, ['logs', '--tail', '60', name], { check: false });
    return `${name}: ${tail(l.stdout + l.stderr, 3000)}`;
  };

  // The health checks' own commands from the images, probed every 2 s instead of 30 so the test need not wait.
  cleanups.push(['dispatcher container', () => docker(engine, ['rm', '-f', '-v', names.dispatcher], { check: false })]);
  await docker(engine, [
    'run', '-d', '--name', names.dispatcher, '--network', 'host',
    '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
    '--health-interval', '2s',
    '-e', `TRACEFLEET_LISTEN=127.0.0.1:${port}`, '-e', `TRACEFLEET_AGENT_TOKENS=${agentToken}`,
    '-v', `${dispData}:/var/lib/tracefleet`,
    images.dispatcher,
  ]);
  const dispPid = Number((await docker(engine, ['inspect', '-f', '{{.State.Pid}}', names.dispatcher])).stdout.trim());
  const dp = procStatus(dispPid);
  assert.equal(dp.uid, 1000, 'the dispatcher does not run as uid 1000 (node)');
  assert.equal(dp.capEff, 0n, `the dispatcher holds capabilities ${dp.capEff.toString(16)}`);
  assert.equal(dp.capBnd, 0n, `the dispatcher's bounding set is ${dp.capBnd.toString(16)}, not empty`);

  const waitHttp = async (what: string, ms: number, f: () => Promise<boolean>) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await f().catch(() => false)) return;
      await sleep(500);
    }
    assert.fail(`${what} within ${ms / 1000} s\n${await logsOf(names.dispatcher)}\n${await logsOf(names.agent)}`);
  };
  await waitHttp('the dispatcher container answered /healthz', 90_000, async () => (await fetch(`${url}/healthz`)).ok);
  phase('dispatcher container up');

  // A tracer, made inside the container as the docs say (its store is the container's own).
  const add = await docker(engine, ['exec', '-i', names.dispatcher, 'node', '/app/bin/tracefleet', 'user', 'add', 'ctest', '--role', 'tracer', '--password-stdin'], { input: 'containers-test-password-1\n', check: false });
  assert.equal(add.code, 0, `user add in the dispatcher container: ${add.stderr}`);
  const tok = await docker(engine, ['exec', names.dispatcher, 'node', '/app/bin/tracefleet', 'user', 'token', 'ctest'], { check: false });
  assert.equal(tok.code, 0, `user token in the dispatcher container: ${tok.stderr}`);
  const apiToken = tok.stdout.trim();
  assert.ok(apiToken, 'user token printed nothing');

  cleanups.push(['agent container', () => docker(engine, ['rm', '-f', '-v', names.agent], { check: false })]);
  await docker(engine, [
    'run', '-d', '--name', names.agent, '--network', 'host', '--user', '1000:1000',
    '--cap-drop', 'ALL', '--cap-add', 'NET_RAW', '--cap-add', 'NET_ADMIN',
    '--health-interval', '2s',
    '-e', 'TRACEFLEET_INTERFACES=lo', '-e', 'TRACEFLEET_RING_SIZE=256M', '-e', 'TRACEFLEET_SEGMENT_SIZE=16M', '-e', 'TRACEFLEET_STATS_INTERVAL=0',
    '-e', `TRACEFLEET_DISPATCHER=${url}`, '-e', `TRACEFLEET_TOKEN=${agentToken}`, '-e', `TRACEFLEET_NAME=${agentName}`,
    '-v', `${agentData}:/var/lib/tracefleet`,
    images.agent,
  ]);
  const agentPid = Number((await docker(engine, ['inspect', '-f', '{{.State.Pid}}', names.agent])).stdout.trim());
  const ap = procStatus(agentPid);
  assert.equal(ap.uid, 1000, 'the agent does not run as uid 1000');
  assert.equal(ap.capBnd, TWO_CAPS, `the agent's bounding set is ${ap.capBnd.toString(16)}, not exactly NET_RAW and NET_ADMIN`);
  assert.equal(ap.capEff, TWO_CAPS, `the agent's effective capabilities are ${ap.capEff.toString(16)}, not NET_RAW and NET_ADMIN (file capabilities of node lost?)`);

  const auth = { authorization: `Bearer ${apiToken}` };
  await waitHttp(`agent ${agentName} connected to the dispatcher`, 60_000, async () => {
    const r = await fetch(`${url}/api/agents`, { headers: auth });
    const j = (await r.json()) as { agents: Array<{ name: string; connected: boolean }> };
    return j.agents.some((a) => a.name === agentName && a.connected);
  });
  phase('agent container capturing and connected');

  const [uasPort, uacPort] = await sipPorts();
  const number = `+1555${String(Date.now()).slice(-7)}`;
  const call = await runSippCalls({ transport: 'udp', uasHost: { addr: '127.0.0.1', port: uasPort }, uacHost: { addr: '127.0.0.1', port: uacPort }, calls: 1, number, timeoutMs: 60_000 });
  assert.equal(call.successful, 1, `the sipp call on lo failed: ${call.errors}`);
  const callId = call.successfulCallIds[0];

  const out = join(dir, 'trace.pcap');
  const tr = await run(process.execPath, [CLI, 'trace', '--call-id', callId, '--since', '10m', '-o', out], {
    env: cliEnv(dir, { TRACEFLEET_URL: url, TRACEFLEET_TOKEN: apiToken }), timeoutMs: 120_000, check: false,
  });
  assert.equal(tr.code, 0, `tracefleet trace --call-id ${callId} exited ${tr.code}: ${tr.stderr}\n${await logsOf(names.dispatcher)}\n${await logsOf(names.agent)}`);
  const sip = await run('tshark', ['-r', out, '-n', '-d', `udp.port==${uasPort},sip`, '-d', `udp.port==${uacPort},sip`, '-T', 'fields', '-E', 'separator=/t', '-e', 'sip.Call-ID', '-e', 'sip.Method', '-e', 'sip.Status-Code'], { timeoutMs: 60_000 });
  const rows = sip.stdout.split('\n').filter((l) => l.trim() !== '').map((l) => l.split('\t'));
  assert.deepEqual(rows.map((r) => r[0]), SIP_MESSAGES.map(() => callId), `the trace holds other frames than the call's seven: ${sip.stdout.slice(0, 800)}`);
  assert.deepEqual(rows.map((r) => r[1] || r[2]), SIP_MESSAGES, 'the traced messages are not the call, in order');
  phase('call traced through the dispatcher container with the checkout CLI');

  // Both health checks, as the engine ran them (the images' HEALTHCHECK commands).
  for (const name of [names.dispatcher, names.agent]) {
    const end = Date.now() + 60_000;
    let status = '';
    while (Date.now() < end) {
      status = (await docker(engine, ['inspect', '-f', '{{.State.Health.Status}}', name])).stdout.trim();
      if (status === 'healthy' || status === 'unhealthy') break;
      await sleep(1000);
    }
    const log = (await docker(engine, ['inspect', '-f', '{{json .State.Health.Log}}', name])).stdout.trim();
    assert.equal(status, 'healthy', `${name}'s health check: ${status}; ${log.slice(-1000)}`);
  }
  phase('both health checks healthy');

  // SIGTERM, as `docker stop` sends it: the agent seals its indexes and exits 0.
  await docker(engine, ['kill', '--signal', 'TERM', names.agent]);
  const waited = await docker(engine, ['wait', names.agent], { timeoutMs: 30_000, check: false });
  assert.equal(waited.stdout.trim(), '0', `the agent exited ${waited.stdout.trim()} ${waited.stderr} after SIGTERM\n${await logsOf(names.agent)}`);
  const agentLog = await docker(engine, ['logs', names.agent]);
  assert.match(agentLog.stdout + agentLog.stderr, /ring indexes sealed/, `no "ring indexes sealed" in the agent's log\n${await logsOf(names.agent)}`);
  const chk = await run(process.execPath, [CLI, 'ring', 'check', '--ring', join(agentData, 'ring'), '--json'], { env: cliEnv(dir, {}), timeoutMs: 60_000, check: false });
  assert.equal(chk.code, 0, `ring check: ${chk.stderr}`);
  assert.equal(JSON.parse(chk.stdout).rebuilt, 0, `ring check had to rebuild an index the agent left unsealed: ${chk.stdout.slice(0, 500)}`);
  phase('SIGTERM sealed the ring');
});
