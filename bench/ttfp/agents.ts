import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { connectDispatcher, readRingStatus } from '../../agent/link/client';
import { serveTraces } from '../../agent/trace/serve';
import { initProcessLogger } from '../../shared/log/log';

/*
 * Several agents' trace sides in one process, for bench/ttfp: each the real
 * dispatcher link (agent/link/client.ts) and trace server
 * (agent/trace/serve.ts) over its own imported ring (ringsDir/<name>), as
 * bench/stream/agent.ts runs one. A hundred agent processes would weigh on
 * a 2-core machine more than the traces being timed. The log is JSON lines
 * on stderr at debug level: 'trace begun' and 'trace done' are the agents'
 * part of each trace.
 *
 * Usage: node dist/bench/ttfp/agents.js '{"url":..., "token":..., "names":[...], "ringsDir":...}'
 */

const args = z
  .object({
    url: z.string().url(),
    token: z.string().min(16),
    names: z.array(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/)).min(1).max(1000),
    ringsDir: z.string().min(1),
  })
  .strict()
  .safeParse(JSON.parse(process.argv[2] ?? 'null'));
if (!args.success) {
  process.stderr.write(`bench ttfp agents: bad arguments: ${args.error.issues[0].path.join('.')}: ${args.error.issues[0].message}\n`);
  process.exit(2);
}
const { url, token, names, ringsDir } = args.data;
const logger = initProcessLogger({ level: 'debug', format: 'json', base: { process: 'bench-ttfp-agents' } });
const agents = names.map((name) => {
  const ringDir = join(ringsDir, name);
  const status = () => ({ ring: readRingStatus(ringDir), capture: {}, indexErrors: 0 });
  const link = connectDispatcher({
    url,
    token,
    name,
    hello: () => ({ version: 'bench-ttfp', hostname: hostname().slice(0, 255), interfaces: [], ...status() }),
    status,
    logger: logger.child({ component: 'agent.link', agent: name }),
  });
  return { link, traces: serveTraces(link.socket, { ringDir, logger: logger.child({ component: 'agent.trace', agent: name }) }) };
});

const stop = () => {
  for (const a of agents) {
    a.traces.close();
    a.link.close();
  }
  setTimeout(() => process.exit(0), 200).unref();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
// The bench is the parent: when it is gone there is no one to serve.
process.on('disconnect', stop);
