import { ErrorCode, TracefleetError } from '../../shared/errors/catalogue';

/** What an access-control call refused, in terms the API can map to a status. */
export type AuthErrorCode = 'bad_request' | 'not_found' | 'conflict' | 'rate_limited' | 'busy';

const CODE_OF_KIND: Record<AuthErrorCode, ErrorCode> = {
  bad_request: 'TF_AUTH_BAD_INPUT',
  not_found: 'TF_AUTH_NOT_FOUND',
  conflict: 'TF_AUTH_CONFLICT',
  rate_limited: 'TF_LOGIN_RATE_LIMITED',
  busy: 'TF_LOGIN_BUSY',
};

/** Kept as a class for its Retry-After; `kind` picks the catalogue code. */
export class AuthError extends TracefleetError {
  constructor(
    readonly kind: AuthErrorCode,
    message: string,
    /** For 'rate_limited' and 'busy': when trying again may succeed (Retry-After). */
    readonly retryAfterMs?: number,
  ) {
    super(CODE_OF_KIND[kind], { message });
    this.name = 'AuthError';
  }
}
