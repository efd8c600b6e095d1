import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, startDaemon, tail, haveCommand, DaemonHandle, RunResult } from '../support/proc';

/**
 * A container engine for the container test: one that already answers, or a
 * dockerd of the test's own (Debian's docker.io), started without touching the
 * host's networking (no iptables rules, no bridge: containers use the host's
 * network) and with all its state under the test's temporary directory.
 */

export interface Engine {
  /** The docker CLI that talks to it with BuildKit (see pickCli). */
  cli: string;
  /** Environment for that CLI: DOCKER_HOST and DOCKER_BUILDKIT. */
  env: NodeJS.ProcessEnv;
  /** Our dockerd, or null when the engine was already there (then it is left running). */
  daemon: DaemonHandle | null;
  describe: string;
}

/** Not an error of the images: the reason this machine cannot run the test, printed as the skip line. */
export class NoEngine extends Error {}

const APT_PACKAGES: Record<string, string> = { dockerd: 'docker.io', debootstrap: 'debootstrap' };

/** Installs what the test needs with apt-get, as root only; a failed install is a reason to skip, not a failure. */
export async function installMissing(commands: string[]): Promise<string[]> {
  const missing = commands.filter((c) => !haveCommand(c) && !existsSync(`/usr/sbin/${c}`));
  if (missing.length === 0) return [];
  const pkgs = [...new Set(missing.map((c) => APT_PACKAGES[c] ?? c))];
  if (!haveCommand('apt-get')) throw new NoEngine(`${missing.join(', ')} missing and no apt-get to install ${pkgs.join(', ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const upd = await run('apt-get', ['update'], { env, timeoutMs: 180_000, check: false });
  const inst = await run('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], { env, timeoutMs: 300_000, check: false });
  if (inst.code !== 0) throw new NoEngine(`apt-get install ${pkgs.join(' ')} failed (${inst.code}): ${tail(inst.stderr || upd.stderr, 400)}`);
  return pkgs;
}

async function answers(cli: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const r = await run(cli, ['version', '--format', '{{.Server.Version}}'], { env, timeoutMs: 15_000, check: false }).catch(() => null);
  return r !== null && r.code === 0 && r.stdout.trim() !== '';
}

/**
 * The Dockerfiles use BuildKit (a secret mount). A CLI from before 23 has
 * BuildKit built in (DOCKER_BUILDKIT=1); a newer one needs its buildx plugin
 * and otherwise falls back to the legacy builder, which rejects the mount.
 */
async function pickCli(env: NodeJS.ProcessEnv): Promise<string> {
  const candidates = [process.env.TRACEFLEET_DOCKER, 'docker', '/usr/bin/docker'].filter((c): c is string => Boolean(c));
  const seen: string[] = [];
  for (const c of candidates) {
    const v = await run(c, ['version', '--format', '{{.Client.Version}}'], { env, timeoutMs: 15_000, check: false }).catch(() => null);
    if (!v || !v.stdout.trim()) continue;
    const major = Number(/^(\d+)/.exec(v.stdout.trim())?.[1] ?? 0);
    if (major > 0 && major < 23) return c;
    const bx = await run(c, ['buildx', 'version'], { env, timeoutMs: 15_000, check: false }).catch(() => null);
    if (bx && bx.code === 0) return c;
    seen.push(`${c} ${v.stdout.trim()} (no buildx)`);
  }
  throw new NoEngine(`no docker CLI with BuildKit: ${seen.join(', ') || 'none found'}; set TRACEFLEET_DOCKER to one`);
}

/** The engine at DOCKER_HOST or the default socket if it answers, else our own dockerd under `dir`. */
export async function openEngine(dir: string): Promise<Engine> {
  const base = { ...process.env, DOCKER_BUILDKIT: '1' };
  const cli0 = haveCommand('docker') ? 'docker' : '/usr/bin/docker';
  if (existsSync(cli0) || haveCommand(cli0)) {
    if (await answers(cli0, base)) {
      return { cli: await pickCli(base), env: base, daemon: null, describe: `the engine at ${process.env.DOCKER_HOST ?? 'the default socket'}` };
    }
  }
  await installMissing(['dockerd']);
  const root = join(dir, 'engine');
  mkdirSync(root, { recursive: true });
  const sock = join(root, 'docker.sock');
  const env = { ...base, DOCKER_HOST: `unix://${sock}` };
  const dockerd = haveCommand('dockerd') ? 'dockerd' : '/usr/sbin/dockerd';
  const daemon = await startDaemon(
    dockerd,
    [
      '--iptables=false', '--ip6tables=false', '--ip-masq=false', '--bridge=none',
      '--data-root', join(root, 'data'), '--exec-root', join(root, 'exec'), '--pidfile', join(root, 'dockerd.pid'),
      '-H', `unix://${sock}`,
    ],
    { stopGraceMs: 30_000 },
  );
  const deadline = Date.now() + 60_000;
  const cli = haveCommand('docker') ? 'docker' : '/usr/bin/docker';
  while (Date.now() < deadline) {
    if (daemon.exitStatus()) break;
    if (existsSync(sock) && (await answers(cli, env))) {
      return { cli: await pickCli(env), env, daemon, describe: `our dockerd (${sock})` };
    }
    await sleep(500);
  }
  const why = daemon.exitStatus() ? `exited ${JSON.stringify(daemon.exitStatus())}` : 'did not answer within 60 s';
  await daemon.stop();
  throw new NoEngine(`dockerd ${why}: ${tail(daemon.stderr(), 600)}`);
}

/** Stops our dockerd and unmounts what it leaves under `dir` (it keeps its network namespace's bind mount in its exec root). */
export async function stopEngine(e: Engine, dir: string): Promise<void> {
  if (!e.daemon) return;
  const st = await e.daemon.stop();
  const leftover = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => Boolean(m) && m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of leftover) await run('umount', [m], { check: false });
  if (st.code !== 0 && st.signal !== 'SIGTERM') throw new Error(`dockerd stopped with ${JSON.stringify(st)}: ${tail(e.daemon.stderr(), 600)}`);
}

/** Runs the engine's CLI; throws with the command's stderr unless check is false. */
export function docker(e: Engine, args: string[], opts: { timeoutMs?: number; input?: string; check?: boolean } = {}): Promise<RunResult> {
  return run(e.cli, args, { env: e.env, timeoutMs: opts.timeoutMs ?? 60_000, input: opts.input, check: opts.check ?? true });
}

/** Debian's mirror this machine's apt uses (deb822 or one-line sources), for debootstrap. */
export function debianMirror(): string {
  const files = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list'];
  for (const f of files) {
    if (!existsSync(f)) continue;
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(/^URIs:\s*(\S+)/gm)) if (/\/debian\/?$/.test(m[1])) return m[1];
    for (const m of text.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+/gm)) if (/\/debian\/?$/.test(m[1])) return m[1];
  }
  return 'http://deb.debian.org/debian';
}
