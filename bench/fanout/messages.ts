import { z } from 'zod';

/** What one simulated agent did for one trace, as wall-clock ms (0: not reached). */
export interface AgentRecord {
  /** Agent index (its name is agentName(i)). */
  i: number;
  runAt: number;
  /** Its answer to trace:run sent (the ack, and trace:started unless it answers with trace:result). */
  startedAt: number;
  chunkAckAt: number;
  doneAt: number;
  error?: string;
}

export function agentName(i: number): string {
  return `bench-agent-${String(i).padStart(5, '0')}`;
}

/** Parent → worker (validated there: a worker takes nothing unchecked). */
export const toWorker = z.discriminatedUnion('type', [
  z.object({ type: z.literal('start'), url: z.string().url(), token: z.string().min(1), names: z.array(z.string()).max(100_000), firstIndex: z.number().int().nonnegative(), oldAgents: z.boolean() }),
  /** Before run `run`: prepare every agent's result for it (off the measured time), then say armed. */
  z.object({ type: z.literal('arm'), run: z.number().int().nonnegative() }),
  z.object({ type: z.literal('collect'), traceId: z.string(), expect: z.number().int().nonnegative(), timeoutMs: z.number().int().positive() }),
  z.object({ type: z.literal('stop') }),
]);
export type ToWorker = z.infer<typeof toWorker>;

/** Worker → parent. */
export type FromWorker =
  | { type: 'ready'; agents: number; ms: number }
  | { type: 'armed'; run: number }
  | { type: 'records'; traceId: string; records: AgentRecord[]; lagMaxMs: number; lagP99Ms: number }
  | { type: 'error'; message: string };
