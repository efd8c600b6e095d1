import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { agentCommand } from '../cli/commands/agent';
import { demoCommand } from '../cli/commands/demo';
import { dispatcherCommand } from '../cli/commands/dispatcher';
import { EXIT } from '../shared/errors/catalogue';
import { fail } from '../cli/commands/local';
import { queryCommand } from '../cli/commands/query';
import { dispatcherCommands } from '../cli/commands/remote';
import { ringCommand } from '../cli/commands/ring';
import { statsCommand } from '../cli/commands/stats';
import { userCommand } from '../cli/commands/user';

/*
 * The `tracefleet` executable: only the wiring of the commands in
 * cli/commands/. Each loads what it needs when it runs, so that `--version`
 * or `query` never load the dispatcher, the store or Socket.IO.
 */

export function cli(argv: string[]) {
  return yargs(argv)
    .scriptName('tracefleet')
    .usage('$0 <command> [options]')
    .command(queryCommand)
    .command(agentCommand)
    .command(dispatcherCommand)
    .command(demoCommand)
    .command(userCommand)
    .command(dispatcherCommands)
    .command(ringCommand)
    .command(statsCommand)
    .demandCommand(1, 'give a command; see --help')
    .strict()
    .fail((msg, err) => {
      if (err) fail(err);
      process.stderr.write(`tracefleet: ${msg} (see tracefleet --help)\n`);
      process.exit(EXIT.BAD_INPUT);
    })
    .help()
    .version();
}

export function main(): void {
  void cli(hideBin(process.argv)).parseAsync();
}

if (require.main === module) main();
