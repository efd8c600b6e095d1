/*
 * `tracefleet trace` without yargs, and the entry of its own start-up
 * bundle (scripts/bundle-cli.js, cli/hot-bundle.ts): a trace's start-up was
 * most of the time to the merged PCAP on one agent (bench/ttfp), and loading
 * yargs, zod and Socket.IO's client file by file was most of that. Its own
 * bundle, apart from `query`'s: `query` needs no Socket.IO, and a script may
 * run it thousands of times.
 */

/** True when argv (after the executable) was a plain `trace` and has been run; false when yargs must read it. */
export function hotCommand(argv: string[]): boolean {
  if (argv[0] !== 'trace') return false;
  const remote = require('./commands/remote') as typeof import('./commands/remote');
  return (require('./flags') as typeof import('./flags')).runFast(remote.TRACE_OPTIONS, remote.traceCommand, argv);
}
