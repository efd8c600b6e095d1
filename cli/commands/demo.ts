import { join, relative } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { Args, UsageError, agentVersion, fail, parseListen, untilSignal } from './local';

/* `tracefleet demo` (what `npm start` runs): the app in demo/, loaded only when it runs. */

async function demoCmd(a: Args): Promise<void> {
  const { host, port } = parseListen(a.listen as string);
  const sipPort = a.sipPort as number;
  if (!Number.isInteger(sipPort) || sipPort < 1024 || sipPort > 65534) throw new UsageError(`bad --sip-port ${String(a.sipPort)}: give a UDP port from 1024 to 65534 (the demo caller takes the next one)`);
  const { DEMO_AGENT, demoBanner, startDemo } = await import('../../demo/allinone');
  const { DEMO_NUMBERS } = await import('../../demo/traffic');
  const log = (l: string) => process.stderr.write(`${l}\n`);
  let first = true;
  const demo = await startDemo({
    host,
    port,
    dataDir: a.dataDir as string,
    sipPort,
    resetAdmin: a.resetAdmin as boolean,
    staticDir: join(__dirname, '..', '..', '..', 'web'),
    version: agentVersion(),
    log,
    onCall: (c) => {
      if (!first) return;
      first = false;
      log(`tracefleet demo: DEMO TRAFFIC: first demo call finished: ${c.from} -> ${c.to}, Call-ID ${c.callId}; it can be traced now`);
    },
  });
  // The examples run from wherever this was started: the path to bin/tracefleet from here.
  let cli = relative(process.cwd(), join(__dirname, '..', '..', '..', 'bin', 'tracefleet'));
  if (!cli.includes('/')) cli = `./${cli}`;
  process.stdout.write(demoBanner(demo, { cli, number: DEMO_NUMBERS[1], numbers: DEMO_NUMBERS }) + '\n');
  log(`tracefleet demo: DEMO TRAFFIC: sipp on 127.0.0.1:${sipPort} (callee) and :${sipPort + 1} (caller), Subject "tracefleet demo traffic"`);
  const every = setInterval(() => {
    const s = demo.agent.engine.stats().interfaces.lo;
    log(`tracefleet demo: DEMO TRAFFIC: ${demo.traffic.calls()} demo calls so far; ${DEMO_AGENT} captured ${s?.packets ?? 0} packets on lo (${s?.dropped ?? 0} dropped)`);
  }, 60_000);
  await untilSignal();
  clearInterval(every);
  log('tracefleet demo: stopping sipp, the agent, the dispatcher and its store');
  await demo.stop();
  log('tracefleet demo: stopped');
}

export const demoCommand: CommandModule<object, Args> = {
  command: 'demo',
  describe: 'all-in-one demo (what npm start runs): dispatcher with its embedded store, an agent on lo, demo SIP calls from sipp, a first admin',
  builder: (y) =>
    y
      .option('listen', { type: 'string', default: '127.0.0.1:8060', describe: "HOST:PORT of the demo's dispatcher (web page, REST API, agents)" })
      .option('data-dir', { type: 'string', default: 'var/demo', describe: 'where the demo keeps its ring, store, spool and admin.txt' })
      .option('sip-port', { type: 'number', default: 5090, describe: 'UDP port of the demo SIP callee on 127.0.0.1 (the caller takes the next one)' })
      .option('reset-admin', { type: 'boolean', default: false, describe: 'give the existing admin a new generated password' }) as unknown as Argv<Args>,
  handler: (a) => demoCmd(a).catch(fail),
};
