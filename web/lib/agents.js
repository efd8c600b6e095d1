/* Facts about an AgentView (shared/protocol/wire.ts) that more than one view shows. */

import { fmtDateTime } from './format.js';

/**
 * Why the agent's ring does not cover a window starting at startMs, or null
 * when it does (or when there is no window start to compare with).
 */
export function ringShortfall(agent, startMs) {
  if (startMs === null || startMs === undefined) return null;
  const oldest = agent.ring?.oldest ? Date.parse(agent.ring.oldest) : NaN;
  if (!agent.ring || !agent.ring.oldest || Number.isNaN(oldest)) return 'the ring holds no packets yet';
  if (oldest > startMs) return `the ring starts ${fmtDateTime(agent.ring.oldest)}, after the window's start ${fmtDateTime(new Date(startMs).toISOString())}`;
  return null;
}

/** Packets and drops summed over the agent's interfaces. */
export function captureTotals(agent) {
  let packets = 0;
  let dropped = 0;
  for (const c of Object.values(agent.capture ?? {})) {
    packets += c.packets ?? 0;
    dropped += (c.dropped ?? 0) + (c.ifDropped ?? 0);
  }
  return { packets, dropped };
}
