import { join, relative } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { LOG_CLI_OPTIONS } from '../../shared/log/options';
import { Args, UsageError, agentVersion, fail, parseListen, untilSignal } from './local';

/* `tracefleet demo` (what `npm start` runs): the app in demo/, loaded only when it runs. */

async function demoCmd(a: Args): Promise<void> {
  const { host, port } = parseListen(a.listen as string);
  const sipPort = a.sipPort as number;
  if (!Number.isInteger(sipPort) || sipPort < 1024 || sipPort > 65534) throw new UsageError(`bad --sip-port ${String(a.sipPort)}: give a UDP port from 1024 to 65534 (the demo caller takes the next one)`);
  const { DEMO_AGENT, demoBanner, startDemo } = await import('../../demo/allinone');
  const { DEMO_NUMBERS } = await import('../../demo/traffic');
  const { initLoggerFromArgs } = await import('../../shared/log/log');
  const root = initLoggerFromArgs(a, 'demo');
  const log = root.child({ component: 'demo' });
  let first = true;
  const demo = await startDemo({
    host,
    port,
    dataDir: a.dataDir as string,
    sipPort,
    resetAdmin: a.resetAdmin as boolean,
    staticDir: join(__dirname, '..', '..', '..', 'web'),
    version: agentVersion(),
    logger: root,
    onCall: (c) => {
      if (!first) return;
      first = false;
      log.info({ from: c.from, to: c.to, callId: c.callId }, 'DEMO TRAFFIC: first demo call finished; it can be traced now');
    },
  });
  // The examples run from wherever this was started: the path to bin/tracefleet from here.
  let cli = relative(process.cwd(), join(__dirname, '..', '..', '..', 'bin', 'tracefleet'));
  if (!cli.includes('/')) cli = `./${cli}`;
  process.stdout.write(demoBanner(demo, { cli, number: DEMO_NUMBERS[1], numbers: DEMO_NUMBERS }) + '\n');
  log.info({ callee: `127.0.0.1:${sipPort}`, caller: `127.0.0.1:${sipPort + 1}`, subject: 'tracefleet demo traffic' }, 'DEMO TRAFFIC: sipp started');
  const every = setInterval(() => {
    const s = demo.agent.engine.stats().interfaces.lo;
    log.info({ calls: demo.traffic.calls(), agent: DEMO_AGENT, packets: s?.packets ?? 0, dropped: s?.dropped ?? 0 }, 'DEMO TRAFFIC: demo calls so far');
  }, 60_000);
  await untilSignal();
  clearInterval(every);
  log.info('stopping sipp, the agent, the dispatcher and its store');
  await demo.stop();
  log.info('stopped');
}

export const demoCommand: CommandModule<object, Args> = {
  command: 'demo',
  describe: 'all-in-one demo (what npm start runs): dispatcher with its embedded store, an agent on lo, demo SIP calls from sipp, a first admin',
  builder: (y) =>
    y
      .option('listen', { type: 'string', default: '127.0.0.1:8060', describe: "HOST:PORT of the demo's dispatcher (web page, REST API, agents)" })
      .option('data-dir', { type: 'string', default: 'var/demo', describe: 'where the demo keeps its ring, store, spool and admin.txt' })
      .option('sip-port', { type: 'number', default: 5090, describe: 'UDP port of the demo SIP callee on 127.0.0.1 (the caller takes the next one)' })
      .option('reset-admin', { type: 'boolean', default: false, describe: 'give the existing admin a new generated password' })
      .options(LOG_CLI_OPTIONS) as unknown as Argv<Args>,
  handler: (a) => demoCmd(a).catch(fail),
};
