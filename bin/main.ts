import type { Argv } from 'yargs';

/*
 * The `tracefleet` executable: only the wiring of the commands in
 * cli/commands/. Each loads what it needs when it runs, so that `--version`
 * or `query` never load the dispatcher, the store or Socket.IO; and yargs
 * itself is loaded only when a command needs it (cli/hot.ts). The hot
 * commands run from one prebuilt file when it is there and up to date
 * (cli/hot-bundle.ts).
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
  extcap: (require('../cli/commands/extcap') as typeof import('../cli/commands/extcap')).extcapCommand,
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
    .command(c.extcap)
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
 * argv as yargs' hideBin gives it for a plain `node script` (the only way
 * bin/tracefleet runs). `bundle: false` runs from dist/ only, as when the
 * start-up bundle is missing or stale (tests of what each command loads).
 */
export function main(argv = process.argv.slice(2), { bundle = true } = {}): void {
  // Wireshark runs `extcap --extcap-interfaces` at each start: its own parser, nothing else loaded
  // (and not in the start-up bundle, which holds only what `query` runs).
  if (argv[0] === 'extcap' && argv[1] !== '--help') {
    (require('../cli/extcap') as typeof import('../cli/extcap')).extcapMain(argv.slice(1));
    return;
  }
  if (argv[0] === 'ring' && argv[1] === 'import' && (require('../cli/commands/ring') as typeof import('../cli/commands/ring')).importFast(argv.slice(2))) return;
  const hot = require('../cli/hot') as typeof import('../cli/hot');
  if (bundle && hot.isHotCommand(argv) && (require('../cli/hot-bundle') as typeof import('../cli/hot-bundle')).runHotBundle(argv)) return;
  const handled = argv[0] === 'trace' ? (require('../cli/hot-trace') as typeof import('../cli/hot-trace')).hotCommand(argv) : hot.hotCommand(argv);
  if (!handled) void cli(argv).parseAsync();
}

if (require.main === module) main();
