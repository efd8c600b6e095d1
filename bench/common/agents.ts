import { hostname } from 'node:os';
import { z } from 'zod';
import { connectDispatcher, readRingStatus } from '../../agent/link/client';
import { serveTraces } from '../../agent/trace/serve';
import { initProcessLogger } from '../../shared/log/log';

/*
 * Agents' trace sides alone, one or several in one process, for the benches
 * that time a trace (bench/stream, bench/ttfp): each the real dispatcher
 * link (agent/link/client.ts) and trace server (agent/trace/serve.ts) over
 * an imported ring, without a capture engine. `tracefleet agent` would need
 * a capture interface, and its capture would own (and rotate) the ring;
 * what a trace costs is the same code either way. Several per process
 * because a hundred agent processes would weigh on a 2-core machine more
 * than the traces being timed. The log is JSON lines on stderr ('trace
 * begun' and 'trace done' at debug level are the agents' part of a trace).
 *
 * Usage: node dist/bench/common/agents.js '{"url":..., "token":..., "agents":[{"name":..., "ringDir":...}], "level":"info"}'
 */

const args = z
  .object({
    url: z.string().url(),
    token: z.string().min(16),
    agents: z
      .array(z.object({ name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), ringDir: z.string().min(1) }).strict())
      .min(1)
      .max(1000),
    level: z.enum(['debug', 'info']).default('info'),
  })
  .strict()
  .safeParse(JSON.parse(process.argv[2] ?? 'null'));
if (!args.success) {
  process.stderr.write(`bench agents: bad arguments: ${args.error.issues[0].path.join('.')}: ${args.error.issues[0].message}\n`);
  process.exit(2);
}
const { url, token, level } = args.data;
const logger = initProcessLogger({ level, format: 'json', base: { process: 'bench-agents' } });
const agents = args.data.agents.map(({ name, ringDir }) => {
  const status = () => ({ ring: readRingStatus(ringDir), capture: {}, indexErrors: 0 });
  const link = connectDispatcher({
    url,
    token,
    name,
    hello: () => ({ version: 'bench', hostname: hostname().slice(0, 255), interfaces: [], ...status() }),
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
