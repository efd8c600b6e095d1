import { answerOf, ErrorBody, errorBody, SaidCode, TracefleetError } from '../../shared/errors/catalogue';

/** A refusal of the REST layer itself (route, header, role) in its own words, with the headers it needs (a challenge). */
export class HttpError extends TracefleetError {
  constructor(
    code: SaidCode,
    message: string,
    readonly headers: Record<string, string> = {},
    field: string | null = null,
  ) {
    super(code as 'TF_BAD_REQUEST', { message }, field);
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
export function toHttp(err: unknown, bodyLimit: number): { status: number; body: ErrorBody; headers: Record<string, string>; internal: boolean } {
  const answer = (e: TracefleetError, headers: Record<string, string> = {}, internal = false) => ({ status: e.status ?? 500, body: errorBody(e), headers, internal });
  const bad = (message: string, code: SaidCode = 'TF_BAD_REQUEST') => answer(new TracefleetError(code as 'TF_BAD_REQUEST', { message }));
  if (err instanceof HttpError) return answer(err, err.headers);
  if (err instanceof TracefleetError) {
    if (err.code === 'TF_STORE_UNREACHABLE') return answer(err, { 'retry-after': '5' });
    if (err.code === 'TF_LOGIN_RATE_LIMITED' || err.code === 'TF_LOGIN_BUSY') {
      const secs = Math.max(1, Math.ceil(((err as { retryAfterMs?: number }).retryAfterMs ?? 1000) / 1000));
      return answer(err, { 'retry-after': String(secs) });
    }
  }
  const bp = err as BodyParserError;
  switch (bp?.type) {
    case 'entity.too.large':
      return answer(new TracefleetError('TF_BODY_TOO_LARGE', { limitKiB: bodyLimit / 1024 }));
    case 'entity.parse.failed':
      return bad(`the request body is not valid JSON (${bp.message ?? 'parse error'}): send a JSON object with Content-Type: application/json`, 'TF_BODY_NOT_JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return bad(`${bp.message ?? 'unsupported body encoding'}: send the body as plain UTF-8 JSON`, 'TF_BODY_NOT_JSON');
    case 'request.aborted':
    case 'request.size.invalid':
      return bad(`the request body was cut short (${bp.message ?? 'aborted'}): send it again`);
    default:
      break;
  }
  if (!(err instanceof TracefleetError) && bp?.expose && typeof bp.status === 'number' && bp.status >= 400 && bp.status < 500) {
    return { ...bad(bp.message ?? 'bad request'), status: bp.status };
  }
  const { error, internal } = answerOf(err);
  return answer(error, {}, internal);
}
