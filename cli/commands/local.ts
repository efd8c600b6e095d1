/*
 * What the commands that work on this machine (query, ring, agent,
 * dispatcher, demo) share: the one way they fail (exit codes from
 * shared/errors: 0 done, 1 failed while running, 2 bad input), and the flag
 * parsers more than one of them takes.
 */

import { exitOf, jsonOfError, UsageError } from '../errors';

export { UsageError };

export type Args = Record<string, unknown>;

/** The version the agent reports to the dispatcher (from package.json beside dist/). */
export function agentVersion(): string {
  try {
    return String((require('../../../package.json') as { version: string }).version).slice(0, 64);
  } catch {
    return 'unknown';
  }
}

/** One stderr line and the error's exit code; with --json also `{code, field, message}` on stdout. */
export function fail(e: unknown, json = false): never {
  const err = e as Error;
  if (json) process.stdout.write(`${jsonOfError(err)}\n`);
  process.stderr.write(`tracefleet: ${err.message}\n`);
  if (process.env.TRACEFLEET_DEBUG) process.stderr.write(`${err.stack}\n`);
  process.exit(exitOf(err));
}

const SIZE_RE = /^(\d+(?:\.\d+)?)([kmgt]?)i?b?$/i;
/** Sizes like 512M, 20G, 1.5T (powers of 1024). */
export function parseSize(s: string, what: string): number {
  const m = SIZE_RE.exec(String(s).trim());
  if (!m) throw new UsageError(`bad ${what} '${s}': give bytes or a size like 512M, 20G`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`bad --listen '${s}': give HOST:PORT, e.g. 127.0.0.1:8060 or [::1]:8060 or 0.0.0.0:8060`);
  return { host: m[1] ?? m[2], port };
}

/** Resolves on the first SIGINT or SIGTERM: how the daemons wait for their end. */
export function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}
