import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { FleetToken } from '../../dispatcher/fleet/server';
import { LOG_CLI_OPTIONS } from '../../shared/log/options';
import { Args, UsageError, fail, parseListen, untilSignal } from './local';

/* `tracefleet dispatcher`: the fleet's server, loaded (express, Socket.IO, the store) only when it runs. */

/** `NAME=TOKEN` (good for that agent only) or `TOKEN` (shared by any agent). */
export function parseAgentTokens(list: string[]): FleetToken[] {
  return list.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^([A-Za-z0-9_.-]{1,64})=(.+)$/.exec(s);
    const t = m ? { agent: m[1], token: m[2] } : { token: s };
    if (t.token.length < 16) throw new UsageError('agent tokens must have at least 16 characters: make one with `openssl rand -hex 24`');
    return t;
  });
}

async function dispatcherCmd(a: Args): Promise<void> {
  const { host, port } = parseListen(a.listen as string);
  const agentTokens = parseAgentTokens([...((a.agentToken as string[] | undefined) ?? []), ...(process.env.TRACEFLEET_AGENT_TOKENS ?? '').split(',')]);
  if (agentTokens.length === 0) {
    throw new UsageError('give the agents\' token(s): --agent-token TOKEN (shared) or --agent-token NAME=TOKEN (one agent), or TRACEFLEET_AGENT_TOKENS; make one with `openssl rand -hex 24`');
  }
  const cert = a.tlsCert as string | undefined;
  const key = a.tlsKey as string | undefined;
  if (Boolean(cert) !== Boolean(key)) throw new UsageError('HTTPS needs both --tls-cert and --tls-key');
  const webhook = (a.alertWebhook as string | undefined) || undefined;
  if (webhook !== undefined && !/^https?:\/\/[^\s]+$/.test(webhook)) throw new UsageError(`bad --alert-webhook '${webhook}': give an http(s) URL, e.g. http://alertmanager-relay:9099/hook`);
  const { startDispatcher } = await import('../../dispatcher/daemon/run');
  const { initLoggerFromArgs } = await import('../../shared/log/log');
  const root = initLoggerFromArgs(a, 'dispatcher');
  const d = await startDispatcher({
    logger: root,
    host,
    port,
    couchdbUrl: (a.couchdb as string | undefined) || undefined,
    db: a.db as string,
    dataDir: a.dataDir as string,
    agentTokens,
    tls: cert && key ? { cert, key } : undefined,
    redisUrl: (a.redis as string | undefined) || undefined,
    retentionDays: a.retentionDays as number,
    timeouts: { runAckMs: (a.runTimeout as number) * 1000, idleMs: (a.idleTimeout as number) * 1000 },
    trustProxy: ((a.trustProxy as string[] | undefined) ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean),
    staticDir: join(__dirname, '..', '..', '..', 'web'),
    alertWebhook: webhook,
  });
  await untilSignal();
  root.child({ component: 'dispatcher' }).info('stopping; unfinished results stay in the spool and are stored on the next start');
  await d.close();
}

export const dispatcherCommand: CommandModule<object, Args> = {
  command: 'dispatcher',
  describe: 'run the dispatcher: agents connect to /agent, people and scripts use the web page, REST API and /client',
  builder: (y) =>
    y
      .option('listen', { type: 'string', default: process.env.TRACEFLEET_LISTEN ?? '127.0.0.1:8060', describe: 'HOST:PORT to listen on (env TRACEFLEET_LISTEN)' })
      .option('couchdb', { type: 'string', default: process.env.COUCHDB_URL, describe: 'Apache CouchDB URL, http://user:password@host:5984 (env COUCHDB_URL); unset: the embedded store in --data-dir' })
      .option('db', { type: 'string', default: 'tracefleet', describe: 'CouchDB database name' })
      .option('data-dir', { type: 'string', default: process.env.TRACEFLEET_DATA_DIR ?? 'var/dispatcher', describe: 'spool and embedded store (env TRACEFLEET_DATA_DIR)' })
      .option('agent-token', { type: 'string', array: true, describe: 'token agents present: TOKEN (any agent) or NAME=TOKEN (repeat; env TRACEFLEET_AGENT_TOKENS, comma-separated)' })
      .option('tls-cert', { type: 'string', describe: 'PEM certificate: serve HTTPS/WSS' })
      .option('tls-key', { type: 'string', describe: 'PEM private key for --tls-cert' })
      .option('trust-proxy', { type: 'string', array: true, describe: 'reverse proxy addresses or CIDRs whose X-Forwarded-For names the client (repeat or comma-separate); default none' })
      .option('redis', { type: 'string', default: process.env.REDIS_URL, describe: 'Redis URL shared by several dispatchers (env REDIS_URL)' })
      .option('alert-webhook', { type: 'string', default: process.env.TRACEFLEET_ALERT_WEBHOOK, describe: "URL alerts are POSTed to, in Prometheus Alertmanager's webhook JSON (env TRACEFLEET_ALERT_WEBHOOK)" })
      .option('retention-days', { type: 'number', default: 30, describe: 'purge traces older than this' })
      .option('run-timeout', { type: 'number', default: 10, describe: 'seconds an agent has to accept a trace before it is marked unreachable' })
      .option('idle-timeout', { type: 'number', default: 30, describe: 'seconds an agent may stay silent mid-trace before it is marked lost' })
      .options(LOG_CLI_OPTIONS) as unknown as Argv<Args>,
  handler: (a) => dispatcherCmd(a).catch(fail),
};
