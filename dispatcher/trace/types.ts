import type { AgentView, TraceUpdate, TraceView } from '../../shared/protocol/client';
import type { TraceRequest } from '../../shared/query/query';

/**
 * What the REST API and the /client namespace need of the trace machinery
 * (dispatcher/trace/orchestrator.ts implements it).
 */
export interface Traces {
  /**
   * Validates, stores and sends a trace; resolves once it is stored and sent (not finished).
   * `created` runs once the trace has its id, before any agent is asked: a client joins the
   * trace's room there so that it misses none of its updates.
   */
  start(req: TraceRequest, user: string, created?: (id: string) => void | Promise<void>): Promise<TraceView>;
  /**
   * Stops a running trace: hosts not finished become `cancelled`, with what they sent kept.
   * `may` is asked with the trace's owner; false refuses it ('forbidden') before anything stops.
   */
  cancel(id: string, may?: (owner: string) => boolean): Promise<TraceView>;
  /** The trace with every host's state; null when unknown. */
  view(id: string): Promise<TraceView | null>;
  /** Every agent known to this dispatcher (and, with Redis, to its peers). */
  agents(): Promise<AgentView[]>;
  /** Called for every change of a host's or a trace's state. Returns an unsubscribe function. */
  onUpdate(listener: (u: TraceUpdate) => void): () => void;
}

/** What a dispatcher owning a trace keeps until it is finished. */
export interface Owned {
  id: string;
  hosts: string[];
  /** Hosts whose final result is in the store. */
  stored: Set<string>;
  /** Hosts run by a peer dispatcher, with the id of the agent's connection that was asked. */
  remote: Map<string, string>;
  /** Remote hosts the watchdog found without that connection (or final without their PCAP), and since when. */
  missing: Map<string, number>;
  finalizing: boolean;
  interrupted: boolean;
}
