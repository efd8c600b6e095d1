import type { Argv, CommandModule } from 'yargs';
import type { Args } from '../cli/commands/local';
import type { FlagTable } from '../cli/flags';

/*
 * The `tracefleet` executable: only the wiring of the commands in
 * cli/commands/. Each loads what it needs when it runs, so that `--version`
 * or `query` never load the dispatcher, the store or Socket.IO; and yargs
 * itself is loaded only when a command needs it (see hotCommand).
 */

const commands = () => ({
  query: (require('../cli/commands/query') as typeof import('../cli/commands/query')).queryCommand,
  agent: (require('../cli/commands/agent') as typeof import('../cli/commands/agent')).agentCommand,
  dispatcher: (require('../cli/commands/dispatcher') as typeof import('../cli/commands/dispatcher')).dispatcherCommand,
  demo: (require('../cli/commands/demo') as typeof import('../cli/commands/demo')).demoCommand,
  user: (require('../cli/commands/user') as typeof import('../cli/commands/user')).userCommand,
  remote: (require('../cli/commands/remote') as typeof import('../cli/commands/remote')).dispatcherCommands,
  ring: (require('../cli/commands/ring') as typeof import('../cli/commands/ring')).ringCommand,
  stats: (require('../cli/commands/stats') as typeof import('../cli/commands/stats')).statsCommand,
  alert: (require('../cli/commands/alert') as typeof import('../cli/commands/alert')).alertCommand,
});

const local = () => require('../cli/commands/local') as typeof import('../cli/commands/local');

export function cli(argv: string[]): Argv {
  const yargs = require('yargs') as typeof import('yargs');
  const { EXIT } = require('../shared/errors/catalogue') as typeof import('../shared/errors/catalogue');
  const c = commands();
  return yargs(argv)
    .scriptName('tracefleet')
    .usage('$0 <command> [options]')
    .command(c.query)
    .command(c.agent)
    .command(c.dispatcher)
    .command(c.demo)
    .command(c.user)
    .command(c.remote)
    .command(c.ring)
    .command(c.stats)
    .command(c.alert)
    .demandCommand(1, 'give a command; see --help')
    .strict()
    .fail((msg, err) => {
      if (err) local().fail(err);
      process.stderr.write(`tracefleet: ${msg} (see tracefleet --help)\n`);
      process.exit(EXIT.BAD_INPUT);
    })
    .help()
    .version(local().agentVersion());
}

/**
 * The commands a script runs many times, with their flags read by hand when
 * the plain forms are used: yargs costs more to load than all the rest of a
 * `query` on a small ring (docs/ARCHITECTURE.md, "The CLI").
 */
const HOT: Record<string, () => { flags: FlagTable; command: CommandModule<object, Args> }> = {
  query: () => {
    const q = require('../cli/commands/query') as typeof import('../cli/commands/query');
    return { flags: q.QUERY_OPTIONS, command: q.queryCommand };
  },
};

/** True when argv was handled without yargs. */
function hotCommand(argv: string[]): boolean {
  if (argv.length === 1 && argv[0] === '--version') {
    process.stdout.write(`${local().agentVersion()}\n`);
    return true;
  }
  if (!Object.hasOwn(HOT, argv[0] ?? '')) return false;
  const hot = HOT[argv[0]]();
  const { parseFlagsFast } = require('../cli/flags') as typeof import('../cli/flags');
  const a = parseFlagsFast(hot.flags, argv.slice(1));
  if (!a) return false;
  void hot.command.handler({ ...a, _: [argv[0]], $0: 'tracefleet' });
  return true;
}

export function main(): void {
  // As yargs' hideBin for a plain `node script` (the only way bin/tracefleet runs).
  const argv = process.argv.slice(2);
  if (!hotCommand(argv)) void cli(argv).parseAsync();
}

if (require.main === module) main();
