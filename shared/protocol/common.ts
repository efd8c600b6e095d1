import { z } from 'zod';

/*
 * The names every side checks: one rule each. Trace ids are made by the
 * dispatcher (20240612T104233-3f9a1c, 22 characters); 64 leaves room for
 * ids given by scripts and tests and is what the agent accepted from the
 * start. They become file names in the spool and URL path segments.
 */
export const TRACE_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$';
export const traceId = z.string().regex(new RegExp(TRACE_ID_PATTERN), 'trace ids are 1-64 letters, digits, _ or -');

/** Agent names are also host names in a trace and file names in the spool. */
export const AGENT_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
export const agentName = z.string().regex(new RegExp(AGENT_NAME_PATTERN), 'agent names are 1-64 letters, digits, _, . or -');

/** Parses a received message; on failure says which field was wrong (`field`: its top-level key, null for the whole body). */
export function parseMessage<T>(
  schema: z.ZodType<T>,
  event: string,
  data: unknown,
): { ok: true; value: T } | { ok: false; error: string; field: string | null } {
  const r = schema.safeParse(data);
  if (r.success) return { ok: true, value: r.data };
  const i = r.error.issues[0];
  return { ok: false, error: `bad ${event} message: ${i.path.join('.') || 'body'}: ${i.message}`, field: typeof i.path[0] === 'string' ? i.path[0] : null };
}

export const traceRef = z.object({ traceId }).strict();
export type TraceRef = z.infer<typeof traceRef>;
