import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { EXIT } from '../shared/errors/catalogue';
import { CliError } from './errors';

/*
 * Checked before a command does its work, so that a trace or a query is not
 * run (and its result lost) only to find that -o cannot be written.
 */

/** Throws a bad-input error saying what is wrong with `-o path` and what to do, or returns if it can be written. */
export function checkWritable(path: string): void {
  const dir = dirname(resolve(path));
  let exists = false;
  try {
    const st = statSync(path, { throwIfNoEntry: false });
    if (st?.isDirectory()) throw new CliError(`-o ${path} is a directory: give a file name in it, e.g. -o ${path.replace(/\/+$/, '')}/trace.pcap`, EXIT.BAD_INPUT);
    exists = st !== undefined;
    accessSync(exists ? path : dir, constants.W_OK);
  } catch (e) {
    if (e instanceof CliError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? `the directory ${dir} does not exist: create it first (mkdir -p ${dir}) or give another path`
      : code === 'ENOTDIR' ? `a part of ${dir} is not a directory: give a path inside a directory`
      : code === 'EACCES' || code === 'EPERM' ? `no permission to write ${exists ? 'this file' : `in ${dir}`}: give a path you can write, or -o - for stdout`
      : code === 'EROFS' ? `${exists ? path : dir} is on a read-only file system: give a path on a writable one`
      : `${(e as Error).message}: give a path you can write`;
    throw new CliError(`cannot write -o ${path}: ${why}`, EXIT.BAD_INPUT);
  }
}
