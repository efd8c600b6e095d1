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
  return Object.hasOwn(HOT, argv[0] ?? '');
}

/** True when argv (after the executable) was handled without yargs; false when yargs must read it. */
export function hotCommand(argv: string[]): boolean {
  if (argv.length === 1 && argv[0] === '--version') {
    process.stdout.write(`${local().agentVersion()}\n`);
    return true;
  }
  if (!isHotCommand(argv)) return false;
  const hot = HOT[argv[0]]();
  const { parseFlagsFast } = require('./flags') as typeof import('./flags');
  const a = parseFlagsFast(hot.flags, argv.slice(1));
  if (!a) return false;
  void hot.command.handler({ ...a, _: [argv[0]], $0: 'tracefleet' });
  return true;
}
