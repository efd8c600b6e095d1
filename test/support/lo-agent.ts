/**
 * A real agent capturing lo, linked to a test dispatcher the way the agent
 * daemon links it: for the tests that follow or trace live traffic.
 */

import { hostname } from 'node:os';
import { startAgent, RunningAgent } from '../../agent/daemon/run';
import { agentStatusOf, connectDispatcher, DispatcherLink } from '../../agent/link/client';
import { serveFollows, FollowServer } from '../../agent/follow/serve';
import { serveTraces, TraceServer } from '../../agent/trace/serve';
import { silentLogger } from '../../shared/log/log';
import { sleep } from './capture';
import { AGENT_TOKEN, TestDispatcher } from './dispatcher';

export interface LoAgent {
  agent: RunningAgent;
  link: DispatcherLink;
  follows: FollowServer;
  /** Set when asked for (`traces: true`). */
  traces: TraceServer | null;
  /** Closes the servers and the link, and stops the agent. */
  stop(): Promise<void>;
}

/** Starts the agent on lo with `filter`, links it as `name` and waits until the dispatcher lists it connected. */
export async function startLoAgent(d: TestDispatcher, o: { name: string; ring: string; filter: string; ringMaxBytes: number; traces?: boolean }): Promise<LoAgent> {
  const agent = await startAgent({ ringDir: o.ring, interfaces: ['lo'], filter: o.filter, ringMaxBytes: o.ringMaxBytes, maxSegmentBytes: 4 * 1024 * 1024, logger: silentLogger });
  const link = connectDispatcher({
    url: d.url,
    token: AGENT_TOKEN,
    name: o.name,
    hello: () => ({ version: 'test', hostname: hostname(), interfaces: ['lo'], ...agentStatusOf(agent.engine.stats(), o.ring, 0) }),
    status: () => agentStatusOf(agent.engine.stats(), o.ring, 0),
    logger: silentLogger,
  });
  const follows = serveFollows(link.socket, { follows: agent.follows, maxFollows: 2, logger: silentLogger });
  const traces = o.traces ? serveTraces(link.socket, { ringDir: o.ring, logger: silentLogger }) : null;
  for (let i = 0; i < 100 && !(await d.orchestrator.agents()).some((a) => a.name === o.name && a.connected); i++) await sleep(100);
  return {
    agent,
    link,
    follows,
    traces,
    async stop() {
      follows.close();
      traces?.close();
      link.close();
      await agent.stop();
    },
  };
}
