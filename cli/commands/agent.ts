import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Argv, CommandModule } from 'yargs';
import { LOG_CLI_OPTIONS } from '../../shared/log/options';
import { Args, UsageError, agentVersion, fail, parseSize, untilSignal } from './local';
import { statsConfigOf, statsOptions } from './stats';

/* `tracefleet agent`: capture into a ring with live indexing, reporting to a dispatcher when given one. */

function parsePortRanges(list: string[] | undefined): Array<[number, number]> {
  return (list ?? []).flatMap((s) => s.split(',')).filter(Boolean).map((r) => {
    const m = /^(\d+)-(\d+)$/.exec(r.trim());
    const lo = m ? Number(m[1]) : NaN;
    const hi = m ? Number(m[2]) : NaN;
    if (!m || lo < 1 || hi > 65535 || lo > hi) throw new UsageError(`bad RTP port range '${r}': give LOW-HIGH, e.g. 10000-20000`);
    return [lo, hi] as [number, number];
  });
}

/** The --hep-* flags, checked before capture starts. */
async function hepOptionsOf(a: Args, listenArgs: string[], name: string): Promise<{ listen?: import('../../agent/capture/capture').CaptureEngineOptions['hep']; out?: import('../../agent/hep/out').HepOutConfig }> {
  const outArg = a.hepOut as string | undefined;
  if (listenArgs.length === 0 && outArg === undefined) {
    if (a.hepPassword !== undefined) throw new UsageError('--hep-password needs --hep-listen');
    return {};
  }
  const { parseHepAddress } = await import('../../agent/hep/address');
  const listen = listenArgs.map((s) => {
    const l = parseHepAddress(s);
    if (!l) throw new UsageError(`bad --hep-listen '${s}': give udp:HOST:PORT or tcp:HOST:PORT (port 9060 when left out), e.g. udp:0.0.0.0:9060`);
    return l;
  });
  const rate = a.hepRate as number;
  if (!(Number.isInteger(rate) && rate >= 1)) throw new UsageError(`bad --hep-rate '${String(a.hepRate)}': give HEP packets per second per sender, at least 1`);
  if (a.hepPassword !== undefined && listen.length === 0) throw new UsageError('--hep-password needs --hep-listen');
  let out: import('../../agent/hep/out').HepOutConfig | undefined;
  if (outArg !== undefined) {
    const o = parseHepAddress(outArg, '');
    if (!o || o.host === '' || o.transport !== 'udp') throw new UsageError(`bad --hep-out '${outArg}': give udp:HOST:PORT (HEP out is UDP), e.g. udp:homer.example:9060`);
    const captureId = a.hepCaptureId as number;
    if (!(Number.isInteger(captureId) && captureId >= 0 && captureId <= 0xffffffff)) throw new UsageError(`bad --hep-capture-id '${String(a.hepCaptureId)}': give an integer from 0 to 4294967295`);
    out = { host: o.host, port: o.port, captureId, nodeName: (a.hepNodeName as string | undefined) ?? name, password: a.hepOutPassword as string | undefined, rtcp: a.hepOutRtcp as boolean };
  }
  return {
    listen: listen.length > 0 ? { listen, password: a.hepPassword as string | undefined, perSenderPerSecond: rate } : undefined,
    out,
  };
}

async function agentCmd(a: Args): Promise<void> {
  if (a.listInterfaces) {
    const { listInterfaces } = await import('../../agent/capture/interfaces');
    for (const i of listInterfaces()) process.stdout.write(`${i.name}${i.description ? `  (${i.description})` : ''}\n`);
    return;
  }
  const ifaces = ((a.interface as string[] | undefined) ?? []).flatMap((s) => s.split(',')).filter(Boolean);
  const hepListenArgs = ((a.hepListen as string[] | undefined) ?? []).flatMap((s) => s.split(',')).filter(Boolean);
  if (ifaces.length === 0 && hepListenArgs.length === 0) throw new UsageError('give at least one interface with -i (any, lo, eth0, ...) or --hep-listen; --list-interfaces shows them');
  const dispatcher = (a.dispatcher as string | undefined) ?? process.env.TRACEFLEET_DISPATCHER;
  const token = (a.token as string | undefined) ?? process.env.TRACEFLEET_TOKEN;
  const name = (a.name as string | undefined) ?? hostname();
  if (dispatcher && !token) throw new UsageError('--dispatcher needs a token: --token T or TRACEFLEET_TOKEN');
  if (dispatcher && !/^https?:\/\//.test(dispatcher)) throw new UsageError(`bad --dispatcher '${dispatcher}': give a URL like http://dispatcher:8060`);
  if (dispatcher && !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new UsageError(`bad agent name '${name}': 1-64 letters, digits, _, . or - (give --name)`);
  const caFile = (a.ca as string | undefined) ?? process.env.TRACEFLEET_CA;
  let ca: string | undefined;
  if (caFile) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read --ca ${caFile}: ${(e as Error).message}; give the PEM certificate of the CA (or the self-signed certificate) the dispatcher's --tls-cert is from`);
    }
  }
  const { defaultCaptureFilter } = await import('../../agent/capture/filter');
  const { startAgent } = await import('../../agent/daemon/run');
  const { agentStatusOf, connectDispatcher } = await import('../../agent/link/client');
  const { serveTraces } = await import('../../agent/trace/serve');
  const { legCallIdRulesOf } = await import('../../agent/query/legs');
  const { serveFollows } = await import('../../agent/follow/serve');
  const { initLoggerFromArgs } = await import('../../shared/log/log');
  const filter = (a.filter as string | undefined) ?? defaultCaptureFilter({
    rtpPortRanges: parsePortRanges(a.rtpPorts as string[] | undefined),
    // Linux cooked capture ("any") has no VLAN tags to match: the kernel strips them.
    vlan: !ifaces.includes('any'),
  });
  const metricsAt = a.metrics === undefined ? null : (await import('../../agent/metrics/metrics')).parseListen(a.metrics as string);
  if (a.metrics !== undefined && !metricsAt) throw new UsageError(`bad --metrics '${a.metrics as string}': give HOST:PORT, e.g. 0.0.0.0:9464 or [::1]:9464`);
  // Checked here, so a bad address or name is a usage error before capture starts; the indexer thread builds its own.
  const statsCfg = await statsConfigOf(a, 'stats-');
  const legCallIdRules = legCallIdRulesOf(a.legCallidRule);
  const hep = await hepOptionsOf(a, hepListenArgs, name);
  const root = initLoggerFromArgs(a, 'agent');
  const log = root.child({ component: 'agent' });
  const agent = await startAgent({
    logger: root,
    ringDir: a.ring as string,
    interfaces: ifaces,
    filter,
    ringMaxBytes: parseSize(a.ringSize as string, '--ring-size'),
    maxSegmentBytes: parseSize(a.segmentSize as string, '--segment-size'),
    maxSegmentSeconds: a.segmentSeconds as number,
    minFreeBytes: a.minFree === undefined ? undefined : parseSize(a.minFree as string, '--min-free'),
    promisc: a.promisc as boolean,
    correlationHeader: a.correlationHeader as string,
    hep: hep.listen,
    hepOut: hep.out,
    stats: {
      peers: { local: (a.statsLocal as string[] | undefined)?.flatMap((s) => s.split(',')).filter(Boolean), names: a.statsPeer as string[] | undefined },
      options: { windowSeconds: statsCfg.windowSeconds, shortCallSeconds: statsCfg.shortCallSeconds },
    },
  }).catch(async (e: Error & { code?: string }) => {
    if (e.code !== 'TF_HEP_LISTEN') throw e;
    const { TracefleetError } = await import('../../shared/errors/catalogue');
    throw new TracefleetError('TF_HEP_LISTEN', { message: `${e.message}; give a free address and port (is another HEP collector there?)` });
  });
  log.info({ interfaces: ifaces, ring: a.ring as string, filter }, 'capturing');
  if (hepListenArgs.length > 0) log.info({ hepListen: hepListenArgs, keyChecked: hep.listen?.password !== undefined }, 'listening for HEP');
  if (hep.out) log.info({ hepOut: `${hep.out.host}:${hep.out.port}`, captureId: hep.out.captureId, rtcp: hep.out.rtcp }, 'mirroring captured SIP as HEP');
  const ringDir = a.ring as string;
  let metrics: import('../../agent/metrics/metrics').AgentMetrics | null = null;
  let metricsServer: import('node:http').Server | null = null;
  if (metricsAt) {
    const { AgentMetrics, serveMetrics } = await import('../../agent/metrics/metrics');
    metrics = new AgentMetrics({ engine: agent.engine, indexer: agent.indexer, ringDir });
    try {
      metricsServer = await serveMetrics(metrics, metricsAt.host, metricsAt.port);
    } catch (e) {
      await agent.stop();
      throw new UsageError(`cannot serve --metrics on ${a.metrics as string}: ${(e as Error).message}`);
    }
    log.info({ metrics: `http://${a.metrics as string}/metrics` }, 'serving metrics');
  }
  const version = agentVersion();
  // The link only reads the engine's counters and the ring's names and sizes; a dispatcher away never touches capture.
  const link = dispatcher && token
    ? connectDispatcher({
        url: dispatcher,
        token,
        name,
        ca,
        hello: () => ({ version, hostname: hostname().slice(0, 255), interfaces: ifaces, ...agentStatusOf(agent.engine.stats(), ringDir, agent.indexer.errors) }),
        status: () => agentStatusOf(agent.engine.stats(), ringDir, agent.indexer.errors),
        stats: agent.stats ?? undefined,
        logger: root.child({ component: 'agent.link' }),
      })
    : null;
  // Traces only read the ring (the indexer thread owns its indexes); a failing trace ends in trace:error, never in capture.
  const traces = link ? serveTraces(link.socket, { ringDir, correlationHeader: a.correlationHeader as string | undefined, legCallIdRules, logger: root.child({ component: 'agent.trace' }), metrics: metrics?.trace }) : null;
  const follows = link ? serveFollows(link.socket, { follows: agent.follows, maxFollows: a.maxFollows as number, logger: root.child({ component: 'agent.follow' }) }) : null;
  const statsEvery = (a.statsInterval as number) * 1000;
  const statsLine = () => {
    const st = agent.engine.stats();
    const interfaces = Object.fromEntries(Object.entries(st.interfaces).map(([n, s]) => [n, { packets: s.packets, dropped: s.dropped, ifDropped: s.ifDropped }]));
    log.info({ interfaces, indexErrors: agent.indexer.errors }, 'capture stats');
  };
  const timer = statsEvery > 0 ? setInterval(statsLine, statsEvery) : null;
  await untilSignal();
  if (timer) clearInterval(timer);
  traces?.close();
  follows?.close();
  link?.close();
  metricsServer?.closeAllConnections();
  metricsServer?.close();
  await agent.stop();
  statsLine();
  log.info('stopped; ring indexes sealed');
}

export const agentCommand: CommandModule<object, Args> = {
  command: 'agent',
  describe: 'capture into a ring with live indexing (root, or CAP_NET_RAW + CAP_NET_ADMIN)',
  builder: (y) =>
    statsOptions(y, 'stats-')
      .option('ring', { type: 'string', default: '/var/lib/tracefleet/ring', describe: 'ring directory' })
      .option('interface', { alias: 'i', type: 'string', array: true, describe: 'interface to capture on (repeat; any for all)' })
      .option('list-interfaces', { type: 'boolean', default: false, describe: 'list capture interfaces and exit' })
      .option('filter', { type: 'string', describe: 'BPF capture filter (default: SIP ports 5060-5299, 15060-15299, ICMP, IP fragments)' })
      .option('rtp-ports', { type: 'string', array: true, describe: 'also capture these UDP port ranges (RTP), e.g. 10000-20000' })
      .option('ring-size', { type: 'string', default: '10G', describe: 'most bytes the ring keeps (segments and indexes)' })
      .option('segment-size', { type: 'string', default: '64M', describe: 'rotate segments at this size' })
      .option('segment-seconds', { type: 'number', default: 300, describe: 'rotate segments at this age' })
      .option('min-free', { type: 'string', describe: 'free disk space to keep (default 5% of the filesystem, at most 2G)' })
      .option('promisc', { type: 'boolean', default: false, describe: 'promiscuous mode' })
      .option('stats-interval', { type: 'number', default: 60, describe: 'seconds between stats lines (0: none)' })
      .option('correlation-header', { type: 'string', default: 'X-CID' })
      .option('leg-callid-rule', { type: 'string', array: true, describe: "for traces with legs: prefix:TEXT or suffix:TEXT a B2BUA adds to the other leg's Call-ID (repeat for several)" })
      .option('max-follows', { type: 'number', default: 4, describe: 'live follows this agent runs at once; more are refused' })
      .option('dispatcher', { type: 'string', describe: 'dispatcher URL to report to, e.g. http://dispatcher:8060 (env TRACEFLEET_DISPATCHER)' })
      .option('token', { type: 'string', describe: 'agent token for the dispatcher (env TRACEFLEET_TOKEN)' })
      .option('name', { type: 'string', describe: 'agent name at the dispatcher (default: the host name)' })
      .option('metrics', { type: 'string', describe: 'serve Prometheus /metrics on HOST:PORT, e.g. 0.0.0.0:9464' })
      .option('hep-listen', { type: 'string', array: true, describe: 'take HEP v2/v3 on udp:HOST:PORT or tcp:HOST:PORT (repeat; port 9060 when left out), e.g. udp:0.0.0.0:9060' })
      .option('hep-password', { type: 'string', describe: 'HEP packets taken must carry this auth key (HEP3 chunk 0x000e); others are dropped' })
      .option('hep-rate', { type: 'number', default: 50000, describe: 'HEP packets per second one sender may send; more are dropped (counted as a flood)' })
      .option('hep-out', { type: 'string', describe: 'mirror captured SIP as HEP3 to udp:HOST:PORT (HOMER, heplify-server, sngrep -L)' })
      .option('hep-capture-id', { type: 'number', default: 2001, describe: 'HEP capture agent id sent with --hep-out' })
      .option('hep-node-name', { type: 'string', describe: 'HEP node name sent with --hep-out (default: the agent name)' })
      .option('hep-out-password', { type: 'string', describe: 'auth key sent with --hep-out' })
      .option('hep-out-rtcp', { type: 'boolean', default: false, describe: 'mirror RTCP too (captured with --rtp-ports)' })
      .option('ca', { type: 'string', describe: 'PEM CA certificate to trust for an https dispatcher, e.g. its self-signed --tls-cert (env TRACEFLEET_CA)' })
      .options(LOG_CLI_OPTIONS) as unknown as Argv<Args>,
  handler: (a) => agentCmd(a).catch(fail),
};
