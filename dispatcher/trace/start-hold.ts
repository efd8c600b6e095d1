import { setImmediate as yieldLoop } from 'node:timers/promises';

/** One agent message about a trace, as the fleet hands it over. */
export interface HeldEvent {
  agent: string;
  socketId: string;
  event: string;
  data: unknown;
  ack: (r: unknown) => void;
}

/** Chunk bytes held across all traces starting; past it everything held is handled at once. */
const HELD_BYTES = 64 * 1024 * 1024;
/** Messages held per host asked (started, progress, a few chunks, done), plus some slack; past it, the same. */
const HELD_PER_HOST = 8;
/** Held messages handled per turn of the loop once the trace's hosts are all asked. */
const RELEASE_SLICE = 500;

/**
 * Holds the agents' answers about a trace while its hosts are still being
 * asked, and hands them on, in the order they came, once every host is: at
 * 10,000 hosts the first agents' answers (their chunks spooled, finals
 * written, updates published) took the dispatcher's time between the slices
 * of trace:run, and the last host was asked seconds late (bench:fanout's
 * started p99). The messages are already in memory when they get here; the
 * bounds (bytes of chunks, messages per host) cap how much more is kept, and
 * past them what is held is handled at once, in order, as before.
 */
export class StartHold {
  /** Per trace: its messages in arrival order (null once handed on out of turn), and the next to hand on. */
  private readonly held = new Map<string, { events: Array<HeldEvent | null>; next: number; max: number }>();
  private bytes = 0;

  constructor(private readonly handle: (e: HeldEvent) => void) {}

  /** The trace's hosts are about to be asked: its answers are held until release(). */
  hold(traceId: string, hosts: number): void {
    this.held.set(traceId, { events: [], next: 0, max: hosts * HELD_PER_HOST + 1000 });
  }

  /** True when the message was held (handled later, in order); false: handle it now. */
  offer(traceId: string, e: HeldEvent): boolean {
    const h = this.held.get(traceId);
    if (!h) return false;
    const size = chunkBytes(e);
    if (h.events.length >= h.max || this.bytes + size > HELD_BYTES) {
      // Everything held first, so that no host's messages overtake each other.
      this.flush(traceId);
      return false;
    }
    h.events.push(e);
    this.bytes += size;
    return true;
  }

  /** Hands on the trace's held messages, RELEASE_SLICE a turn; what arrives meanwhile queues behind them. */
  async release(traceId: string): Promise<void> {
    const h = this.held.get(traceId);
    // Bounded: the queue grows to h.max messages at most (offer() flushes past it).
    while (h && this.held.get(traceId) === h && h.next < h.events.length) {
      if (h.next > 0) await yieldLoop();
      // A flush meanwhile (the bounds) handled the rest.
      if (this.held.get(traceId) !== h) return;
      const end = Math.min(h.next + RELEASE_SLICE, h.events.length);
      while (h.next < end) this.take(h);
    }
    if (h && this.held.get(traceId) === h) this.held.delete(traceId);
  }

  /** An agent's connection ended: its held messages are handled now, before its runs learn it is gone. */
  flushAgent(agent: string, socketId: string): void {
    for (const h of this.held.values()) {
      for (let i = h.next; i < h.events.length; i++) {
        const e = h.events[i];
        if (e && e.agent === agent && e.socketId === socketId) {
          h.events[i] = null;
          this.pass(e);
        }
      }
    }
  }

  /** Handles everything held for the trace now, and stops holding its messages. */
  flush(traceId: string): void {
    const h = this.held.get(traceId);
    if (!h) return;
    this.held.delete(traceId);
    while (h.next < h.events.length) this.take(h);
  }

  /** Traces whose answers are held now; for tests. */
  get holding(): number {
    return this.held.size;
  }

  /** The next held message, let go of here (a long queue keeps no chunk it handed on). */
  private take(h: { events: Array<HeldEvent | null>; next: number }): void {
    const e = h.events[h.next];
    h.events[h.next++] = null;
    this.pass(e);
  }

  private pass(e: HeldEvent | null): void {
    if (!e) return;
    this.bytes -= chunkBytes(e);
    this.handle(e);
  }
}

/** The bytes a chunk or a whole result carries (it is validated when handled; here only its size counts). */
function chunkBytes(e: HeldEvent): number {
  const d = (e.data as { data?: unknown } | null)?.data;
  return (e.event === 'trace:chunk' || e.event === 'trace:result') && Buffer.isBuffer(d) ? d.length : 0;
}
