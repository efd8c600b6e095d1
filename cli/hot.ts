import type { CommandModule } from 'yargs';
import type { Args } from './commands/local';
import type { FlagTable } from './flags';

/*
 * The commands a script runs many times, with their flags read by hand when
 * the plain forms are used: yargs costs more to load than all the rest of a
 * `query` on a small ring (docs/ARCHITECTURE.md, "The CLI"). This module
 * is also the entry of the start-up bundle (scripts/bundle-cli.js), so it
 * must reach nothing beyond what these commands run.
 */

const HOT: Record<string, () => { flags: FlagTable; command: CommandModule<object, Args> }> = {
  query: () => {
    const q = require('./commands/query') as typeof import('./commands/query');
    return { flags: q.QUERY_OPTIONS, command: q.queryCommand };
  },
};

const local = () => require('./commands/local') as typeof import('./commands/local');

/**
 * Whether argv (after the executable) names a hot command: what is worth
 * loading the start-up bundle for. Not `--version`: it loads three small
 * modules, less than checking and reading the bundle.
 */
export function isHotCommand(argv: string[]): boolean {
  // `trace` is run by cli/hot-trace.ts, its own bundle's entry: naming it here would put it in this bundle.
  return Object.hasOwn(HOT, argv[0] ?? '') || argv[0] === 'trace';
}

/** True when argv (after the executable) was handled without yargs; false when yargs must read it. */
export function hotCommand(argv: string[]): boolean {
  if (argv.length === 1 && argv[0] === '--version') {
    process.stdout.write(`${local().agentVersion()}\n`);
    return true;
  }
  if (!Object.hasOwn(HOT, argv[0] ?? '')) return false;
  const hot = HOT[argv[0]]();
  return (require('./flags') as typeof import('./flags')).runFast(hot.flags, hot.command, argv);
}
