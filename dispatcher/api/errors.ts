import { StoreError, StoreUnreachableError } from '../store/store';
import { TraceRequestError } from '../trace/types';

/** A refusal the client can act on: the status and the sentence sent as `{ error }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** What body-parser attaches to the errors it raises. */
interface BodyParserError {
  type?: string;
  status?: number;
  expose?: boolean;
  limit?: number;
  message?: string;
}

/**
 * The answer for anything a handler threw. `internal` marks the dispatcher's
 * own failures (500), which are logged; everything else is the client's to fix
 * or the store's absence (503).
 */
export function toHttp(err: unknown, bodyLimit: number): { status: number; error: string; headers: Record<string, string>; internal: boolean } {
  const plain = (status: number, error: string) => ({ status, error, headers: {}, internal: false });
  if (err instanceof HttpError) return { status: err.status, error: err.message, headers: err.headers, internal: false };
  if (err instanceof TraceRequestError) {
    return plain(err.code === 'not_found' ? 404 : err.code === 'conflict' ? 409 : err.code === 'forbidden' ? 403 : 400, err.message);
  }
  if (err instanceof StoreUnreachableError) return { status: 503, error: err.message, headers: { 'retry-after': '5' }, internal: false };
  if (err instanceof StoreError && (err.statusCode === 400 || err.statusCode === 404 || err.statusCode === 409)) {
    return plain(err.statusCode, err.message);
  }
  // dispatcher/auth's AuthError, known by shape so the API does not depend on that module.
  const ae = err as { name?: string; code?: string; message?: string; retryAfterMs?: number };
  if (err instanceof Error && ae.name === 'AuthError') {
    if (ae.code === 'rate_limited' || ae.code === 'busy') {
      const secs = Math.max(1, Math.ceil((ae.retryAfterMs ?? 1000) / 1000));
      return { status: 429, error: ae.message ?? 'too many failed logins: wait, then try again', headers: { 'retry-after': String(secs) }, internal: false };
    }
    const status = ae.code === 'not_found' ? 404 : ae.code === 'conflict' ? 409 : ae.code === 'bad_request' ? 400 : 0;
    if (status) return plain(status, ae.message ?? 'refused');
  }
  const bp = err as BodyParserError;
  switch (bp?.type) {
    case 'entity.too.large':
      return plain(413, `the request body is larger than the ${bodyLimit / 1024} KiB allowed: a trace request is a few filters, send less`);
    case 'entity.parse.failed':
      return plain(400, `the request body is not valid JSON (${bp.message ?? 'parse error'}): send a JSON object with Content-Type: application/json`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return plain(400, `${bp.message ?? 'unsupported body encoding'}: send the body as plain UTF-8 JSON`);
    case 'request.aborted':
    case 'request.size.invalid':
      return plain(400, `the request body was cut short (${bp.message ?? 'aborted'}): send it again`);
    default:
      break;
  }
  if (bp?.expose && typeof bp.status === 'number' && bp.status >= 400 && bp.status < 500) return plain(bp.status, bp.message ?? 'bad request');
  return { status: 500, error: `the dispatcher failed: ${(err as Error)?.message ?? String(err)}; see the dispatcher's log`, headers: {}, internal: true };
}
