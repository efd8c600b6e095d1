import type { AgentHello, AgentStatus } from '../../shared/protocol/agent';
import type { AgentView } from '../../shared/protocol/client';

/** What the dispatcher knows of one agent: what clients are shown (shared/protocol/wire.ts). */
export type AgentEntry = AgentView;

/**
 * The agents seen since the dispatcher started. A disconnected agent stays
 * listed (connected: false) with the time it was last heard from.
 */
export class AgentRegistry {
  private readonly agents = new Map<string, AgentEntry & { socketId: string | null }>();

  /** A socket authenticated as `name`; returns the previous live socket id, if any. */
  connected(name: string, socketId: string, at = new Date()): string | null {
    const prev = this.agents.get(name);
    const previousSocket = prev?.connected ? prev.socketId : null;
    const iso = at.toISOString();
    if (prev) {
      prev.connected = true;
      prev.connectedAt = iso;
      prev.lastSeen = iso;
      prev.socketId = socketId;
    } else {
      this.agents.set(name, {
        name, connected: true, connectedAt: iso, lastSeen: iso, hostname: null, version: null,
        interfaces: [], ring: null, capture: {}, indexErrors: 0, socketId,
      });
    }
    return previousSocket;
  }

  /** Only the agent's current socket marks it disconnected (a replaced one does not). */
  disconnected(name: string, socketId: string, at = new Date()): void {
    const a = this.agents.get(name);
    if (!a || a.socketId !== socketId) return;
    a.connected = false;
    a.socketId = null;
    a.lastSeen = at.toISOString();
  }

  /** True when `socketId` is the agent's current connection. */
  isCurrent(name: string, socketId: string): boolean {
    return this.agents.get(name)?.socketId === socketId;
  }

  hello(name: string, h: AgentHello, at = new Date()): void {
    const a = this.agents.get(name);
    if (!a) return;
    a.hostname = h.hostname;
    a.version = h.version;
    a.interfaces = [...h.interfaces];
    this.status(name, h, at);
  }

  status(name: string, s: AgentStatus, at = new Date()): void {
    const a = this.agents.get(name);
    if (!a) return;
    a.ring = { ...s.ring };
    a.capture = structuredClone(s.capture);
    a.indexErrors = s.indexErrors;
    a.lastSeen = at.toISOString();
  }

  /** The current socket id of a connected agent. */
  socketIdOf(name: string): string | null {
    return this.agents.get(name)?.socketId ?? null;
  }

  get(name: string): AgentEntry | undefined {
    const a = this.agents.get(name);
    return a ? strip(a) : undefined;
  }

  /** Counted in place: a /metrics scrape once copied and sorted the whole list for this number. */
  connectedCount(): number {
    let n = 0;
    for (const a of this.agents.values()) if (a.connected) n++;
    return n;
  }

  /** Every agent's name and whether it is connected, uncopied and unsorted (list() copies each whole). */
  names(): Array<{ name: string; connected: boolean }> {
    const out: Array<{ name: string; connected: boolean }> = [];
    for (const a of this.agents.values()) out.push({ name: a.name, connected: a.connected });
    return out;
  }

  list(): AgentEntry[] {
    return [...this.agents.values()].map(strip).sort((x, y) => x.name.localeCompare(y.name));
  }
}

function strip(a: AgentEntry & { socketId: string | null }): AgentEntry {
  const { socketId: _s, ...rest } = a;
  return structuredClone(rest);
}
