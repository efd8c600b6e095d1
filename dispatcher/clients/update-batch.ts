import type { TraceUpdate } from '../../shared/protocol/client';

/** While a trace's hosts keep changing, their updates go out at most this often, together. */
export const UPDATE_WINDOW_MS = 50;
/** Updates in one trace:updates message at most; a fuller queue goes out at once. */
export const UPDATES_MAX = 1000;

interface Room {
  queue: TraceUpdate[];
  timer: NodeJS.Timeout | null;
}

/**
 * Gathers a trace's host updates for its room: a fleet-wide trace makes
 * three or more per host (queued, started, done), and one Socket.IO message
 * each (a write per watching socket, a publish each through the Redis
 * adapter) was a third of a 10,000-host trace's dispatcher CPU. The first
 * update after a quiet spell goes out on the next turn of the loop (a
 * one-host trace waits for nothing); those that follow within
 * UPDATE_WINDOW_MS go together, in their order. The trace's own updates
 * (host null) go out alone, right after what was gathered before them, so
 * `trace:update` still carries every state of the trace itself.
 */
export class UpdateBatcher {
  private readonly rooms = new Map<string, Room>();

  /** `send` gets one trace's updates in order: one (`trace:update`) or several (`trace:updates`). */
  constructor(private readonly send: (traceId: string, updates: TraceUpdate[]) => void) {}

  push(u: TraceUpdate): void {
    let r = this.rooms.get(u.traceId);
    if (u.host === null) {
      if (r) this.flush(u.traceId, r);
      this.send(u.traceId, [u]);
      return;
    }
    if (!r) this.rooms.set(u.traceId, (r = { queue: [], timer: null }));
    r.queue.push(u);
    if (r.queue.length >= UPDATES_MAX) this.flush(u.traceId, r);
    else if (!r.timer) this.arm(u.traceId, r, 0);
  }

  /** Rooms with a timer running; for tests. */
  get active(): number {
    return this.rooms.size;
  }

  /** Stops the timers; what is gathered is sent now. */
  close(): void {
    for (const [id, r] of this.rooms) {
      if (r.timer) clearTimeout(r.timer);
      this.flush(id, r);
    }
    this.rooms.clear();
  }

  private arm(traceId: string, r: Room, ms: number): void {
    r.timer = setTimeout(() => this.tick(traceId, r), ms);
    r.timer.unref();
  }

  /** Sends what was gathered and stays armed for one more window; a window with nothing in it ends the room. */
  private tick(traceId: string, r: Room): void {
    r.timer = null;
    if (r.queue.length === 0) {
      if (this.rooms.get(traceId) === r) this.rooms.delete(traceId);
      return;
    }
    this.flush(traceId, r);
    this.arm(traceId, r, UPDATE_WINDOW_MS);
  }

  private flush(traceId: string, r: Room): void {
    if (r.queue.length === 0) return;
    const q = r.queue;
    r.queue = [];
    this.send(traceId, q);
  }
}
