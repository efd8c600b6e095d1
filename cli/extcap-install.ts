import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { EXIT } from '../shared/errors/catalogue';
import { CliError } from './errors';

/*
 * `tracefleet extcap install [--global] [--dir DIR]`: writes the launcher
 * Wireshark runs into its extcap folder. Where that is depends on the
 * Wireshark version, and `tshark -G folders` says it: 4.2 and later list a
 * "Personal Extcap path" (~/.local/lib/wireshark/extcap on Linux) and a
 * "Global Extcap path"; 4.0 and earlier list one "Extcap path" (the global
 * one) and read the personal ones from the "extcap" folder of the personal
 * configuration (~/.config/wireshark/extcap).
 */

export const LAUNCHER_NAME = 'tracefleet';

/** The lines of `tshark -G folders` as name -> path (a name may repeat; the first wins). */
export function parseFolders(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    const path = line.slice(i + 1).trim();
    if (path && !m.has(name)) m.set(name, path);
  }
  return m;
}

/** The extcap folder Wireshark reads, from its `-G folders` list; null when the list does not say. */
export function extcapFolderOf(folders: Map<string, string>, global: boolean): string | null {
  if (global) return folders.get('global extcap path') ?? folders.get('extcap path') ?? null;
  const personal = folders.get('personal extcap path');
  if (personal) return personal;
  const conf = folders.get('personal configuration');
  return conf ? join(conf, 'extcap') : null;
}

function tsharkFolders(): Map<string, string> | null {
  const r = spawnSync('tshark', ['-G', 'folders'], { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] });
  if (r.error || r.status !== 0) return null;
  return parseFolders(r.stdout);
}

/** The launcher: a shell script that runs this tracefleet's extcap with this node. */
export function launcherText(node: string, main: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh\n# Wireshark's extcap for tracefleet, written by \`tracefleet extcap install\`.\nexec ${q(node)} ${q(main)} extcap "$@"\n`;
}

export function installLauncher(dir: string): string {
  const path = join(dir, LAUNCHER_NAME);
  const main = resolve(__dirname, '..', 'bin', 'main.js');
  try {
    mkdirSync(dir, { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, launcherText(process.execPath, main), { mode: 0o755 });
    chmodSync(tmp, 0o755);
    renameSync(tmp, path);
  } catch (e) {
    throw new CliError(`cannot write the launcher ${path}: ${(e as Error).message}${dir.startsWith(homedir()) ? '' : ' (the global folder needs root; or install the personal one without --global)'}`, EXIT.FAILED);
  }
  return path;
}

export function installMain(argv: string[]): void {
  try {
    const global = argv.includes('--global');
    const di = argv.indexOf('--dir');
    const unknown = argv.filter((a, i) => a !== '--global' && a !== '--dir' && !(di >= 0 && i === di + 1));
    if (unknown.length || (di >= 0 && !argv[di + 1])) throw new CliError(`usage: tracefleet extcap install [--global | --dir DIR] (not ${unknown.join(' ') || '--dir without a folder'})`, EXIT.BAD_INPUT);
    let dir: string;
    let how: string;
    if (di >= 0) {
      dir = resolve(argv[di + 1]);
      how = 'the folder given';
    } else {
      const folders = tsharkFolders();
      const found = folders && extcapFolderOf(folders, global);
      if (found) {
        dir = found;
        how = `Wireshark's ${global ? 'global' : 'personal'} extcap folder, as tshark -G folders says`;
      } else if (global) {
        throw new CliError("cannot find Wireshark's global extcap folder: tshark -G folders did not answer (is Wireshark/tshark installed?); give --dir DIR", EXIT.FAILED);
      } else {
        dir = join(process.env.HOME || homedir(), '.local', 'lib', 'wireshark', 'extcap');
        how = "Wireshark's personal extcap folder on Linux (4.2 and later; tshark was not found to ask)";
      }
    }
    const path = installLauncher(dir);
    process.stdout.write(`installed the tracefleet extcap at ${path} (${how})\nrestart Wireshark and pick "tracefleet follow" or "tracefleet fleet trace" in the capture dialog; tshark -D lists them\n`);
  } catch (e) {
    process.stderr.write(`tracefleet: ${(e as Error).message}\n`);
    process.exitCode = (e as CliError).exit ?? 1;
  }
}
