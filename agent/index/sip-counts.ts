import type { MessageRecord } from './format';
import { methodLabel, statusClass } from '../../shared/sip/methods';

/**
 * SIP messages the live indexer has indexed since the agent started:
 * requests by method, responses by status class. Plain totals, sent to the
 * main thread in the indexer's status report (live-worker.ts), where
 * /metrics shows them.
 */
export interface SipCounts {
  requests: Record<string, number>;
  responses: Record<string, number>;
}

export function emptySipCounts(): SipCounts {
  return { requests: {}, responses: {} };
}

export function countSipMessage(c: SipCounts, m: MessageRecord): void {
  if (m.m !== null) {
    const k = methodLabel(m.m);
    c.requests[k] = (c.requests[k] ?? 0) + 1;
  } else if (m.s !== null) {
    const k = statusClass(m.s);
    c.responses[k] = (c.responses[k] ?? 0) + 1;
  }
}
