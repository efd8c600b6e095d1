import type { Argv, CommandModule } from 'yargs';
import { Args, fail } from './local';

/* `tracefleet ring import|check`: indexed segments from capture files, and a ring's indexes verified and repaired. */

const importCommand: CommandModule<object, Args> = {
  command: 'import <files..>',
  describe: 'build ring segments and indexes from PCAP/PCAPNG files',
  builder: (y) =>
    y
      .positional('files', { type: 'string', array: true, demandOption: true })
      .option('ring', { type: 'string', demandOption: true, describe: 'ring directory (created if missing)' })
      .option('segment-size', { type: 'number', default: 64, describe: 'segment size in MiB' })
      .option('correlation-header', { type: 'string', default: 'X-CID' })
      .option('json', { type: 'boolean', default: false }) as unknown as Argv<Args>,
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

export const ringCommand: CommandModule<object, object> = {
  command: 'ring',
  describe: 'manage a ring directory',
  builder: (y) => y.command(importCommand).command(checkCommand).demandCommand(1, 'give a ring sub-command: import or check'),
  handler: () => {},
};
