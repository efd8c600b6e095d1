import type { Argv, CommandModule } from 'yargs';
import type { FlagTable } from '../flags';
import { Args, fail } from './local';

/* `tracefleet ring import|check`: indexed segments from capture files, and a ring's indexes verified and repaired. */

/** import's flags, read by yargs and by hand (importFast) alike. */
export const IMPORT_OPTIONS = {
  ring: { type: 'string', demandOption: true, describe: 'ring directory (created if missing)' },
  'segment-size': { type: 'number', default: 64, describe: 'segment size in MiB' },
  'correlation-header': { type: 'string', default: 'X-CID', describe: 'header carrying a correlation key' },
  json: { type: 'boolean', default: false, describe: 'print the result (or the error) as JSON' },
} as const satisfies FlagTable;

const importCommand: CommandModule<object, Args> = {
  command: 'import <files..>',
  describe: 'build ring segments and indexes from PCAP/PCAPNG files',
  builder: (y) => y.positional('files', { type: 'string', array: true, demandOption: true }).options(IMPORT_OPTIONS) as unknown as Argv<Args>,
  handler: (a) =>
    import('../../agent/index/import')
      .then(({ importCaptures }) =>
        importCaptures(a.ring as string, a.files as string[], { maxSegmentBytes: (a.segmentSize as number) * 1024 * 1024, correlationHeader: a.correlationHeader as string }),
      )
      .then((r) => {
        if (a.json) process.stdout.write(JSON.stringify(r) + '\n');
        else process.stderr.write(`tracefleet: imported ${r.packets} packets from ${r.files} file(s) into ${r.segments.length} segment(s)${r.tornBytes ? `; ${r.tornBytes} bytes of a torn last record skipped` : ''}\n`);
      })
      .catch((e) => fail(e, a.json === true)),
};

const checkCommand: CommandModule<object, Args> = {
  command: 'check',
  describe: 'verify every segment has a sound index; rebuild missing or corrupt ones',
  builder: (y) =>
    y.option('ring', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }).option('correlation-header', { type: 'string', default: 'X-CID' }) as unknown as Argv<Args>,
  handler: (a) => {
    try {
      const { checkRing } = require('../../agent/index/check') as typeof import('../../agent/index/check');
      const r = checkRing(a.ring as string, { correlationHeader: a.correlationHeader as string });
      if (a.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      else {
        process.stdout.write(`${r.segments} segments, ${r.packets} packets, ${r.bytes} bytes, ${r.messages} SIP messages; span ${r.oldest ?? '-'} .. ${r.newest ?? '-'}\n`);
        for (const n of r.notes) process.stdout.write(`${n}\n`);
      }
    } catch (e) {
      fail(e, a.json === true);
    }
  },
};

/**
 * `ring import` with its plain flags (argv after `ring import`), run without loading yargs or the other
 * commands (a tenth of a second of CPU, docs/ARCHITECTURE.md "The CLI"); false, with nothing run, when
 * yargs must read argv (help, errors, its own forms: cli/flags.ts).
 */
export function importFast(argv: string[]): boolean {
  const a = (require('../flags') as typeof import('../flags')).parseFlagsFast(IMPORT_OPTIONS, argv, 'files');
  if (!a) return false;
  void importCommand.handler({ ...a, _: ['ring', 'import'], $0: 'tracefleet' });
  return true;
}

export const ringCommand: CommandModule<object, object> = {
  command: 'ring',
  describe: 'manage a ring directory',
  builder: (y) => y.command(importCommand).command(checkCommand).demandCommand(1, 'give a ring sub-command: import or check'),
  handler: () => {},
};
