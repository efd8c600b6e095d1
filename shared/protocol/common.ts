import { z } from 'zod';
import { ErrorBody, errorBody, receivedError, SaidCode, TracefleetError } from '../errors/catalogue';

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

/**
 * A refusal in an /agent ack: shared/errors' `{code, field, message}` and
 * `error`, the same sentence, which is all a peer from before the codes
 * sends or reads. Each is optional so that an ack from either age parses;
 * this code always sends all four (refusal()).
 */
export const refusalFields = {
  code: z.string().max(64).optional(),
  field: z.string().max(64).nullable().optional(),
  message: z.string().max(4096).optional(),
  error: z.string().max(4096).optional(),
};
type Refusal = { code?: string; field?: string | null; message?: string; error?: string };

/** The fields of a refusing ack, from a catalogue code and the site's sentence. */
export function refusal(code: SaidCode, message: string, field: string | null = null): ErrorBody {
  return errorBody(new TracefleetError(code as 'TF_FAILED', { message }, field));
}

/** A refusing ack as the receiver raises it: its code and field as sent, `what` before its sentence. */
export function refusedError(ack: Refusal, what: string): TracefleetError {
  return receivedError(ack, `${what}: ${ack.message ?? ack.error ?? 'no reason given'}`);
}
