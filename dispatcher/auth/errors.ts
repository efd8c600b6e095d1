/** What an access-control call refused, in terms the API can map to a status. */
export type AuthErrorCode = 'bad_request' | 'not_found' | 'conflict' | 'rate_limited' | 'busy';

export class AuthError extends Error {
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    /** For 'rate_limited' and 'busy': when trying again may succeed (Retry-After). */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'AuthError';
  }
}
