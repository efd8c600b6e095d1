import type { CommandModule } from 'yargs';
import type { Args } from './local';

/**
 * Listed in `tracefleet --help` only: bin/main.ts hands every `tracefleet
 * extcap ...` to cli/extcap.ts before yargs loads, since Wireshark runs it
 * at each start and its arguments are Wireshark's, not ours.
 */
export const extcapCommand: CommandModule<object, Args> = {
  command: 'extcap',
  describe: "Wireshark's extcap: `tracefleet extcap install [--global]` puts it in Wireshark's extcap folder; then Wireshark (or tshark -i tracefleet-follow) captures from the fleet",
  handler: () => {
    (require('../extcap') as typeof import('../extcap')).extcapMain(process.argv.slice(3));
  },
};
