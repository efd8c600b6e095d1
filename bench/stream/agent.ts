import { hostname } from 'node:os';
import { z } from 'zod';
import { connectDispatcher, readRingStatus } from '../../agent/link/client';
import { serveTraces } from '../../agent/trace/serve';

/*
 * The agent's trace side alone, for bench/stream: the real dispatcher link
 * (agent/link/client.ts) and the real trace server (agent/trace/serve.ts)
 * over an imported ring, without a capture engine. `tracefleet agent` would
 * need a capture interface, and its capture would own (and rotate) the
 * ring; what a trace costs is the same code either way.
 *
 * Usage: node dist/bench/stream/agent.js '{"url":..., "token":..., "name":..., "ringDir":...}'
 */

const args = z
  .object({ url: z.string().url(), token: z.string().min(16), name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), ringDir: z.string().min(1) })
  .strict()
  .safeParse(JSON.parse(process.argv[2] ?? 'null'));
if (!args.success) {
  process.stderr.write(`bench stream agent: bad arguments: ${args.error.issues[0].path.join('.')}: ${args.error.issues[0].message}\n`);
  process.exit(2);
}
const { url, token, name, ringDir } = args.data;
const status = () => ({ ring: readRingStatus(ringDir), capture: {}, indexErrors: 0 });
const link = connectDispatcher({
  url,
  token,
  name,
  hello: () => ({ version: 'bench-stream', hostname: hostname().slice(0, 255), interfaces: [], ...status() }),
  status,
});
const traces = serveTraces(link.socket, { ringDir });

const stop = () => {
  traces.close();
  link.close();
  setTimeout(() => process.exit(0), 200).unref();
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
// The bench is the parent: when it is gone there is no one to serve.
process.on('disconnect', stop);
