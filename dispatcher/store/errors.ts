import { ErrorCode, TracefleetError } from '../../shared/errors/catalogue';

/** CouchDB's refusals that are the asker's (passed on with their status); anything else is the store failing. */
const CODE_OF_STATUS: Record<number, ErrorCode> = { 400: 'TF_STORE_BAD_REQUEST', 404: 'TF_STORE_NOT_FOUND', 409: 'TF_STORE_CONFLICT' };

/** Any failure of the store, with CouchDB's status and error when it gave them. */
export class StoreError extends TracefleetError {
  constructor(
    message: string,
    readonly statusCode?: number,
    readonly error?: string,
    code: ErrorCode = CODE_OF_STATUS[statusCode ?? 0] ?? 'TF_STORE_FAILED',
  ) {
    super(code, { message });
    this.name = 'StoreError';
  }
}

/** The store could not be reached at all: nothing was read or written. */
export class StoreUnreachableError extends StoreError {
  constructor(message: string) {
    super(message, undefined, undefined, 'TF_STORE_UNREACHABLE');
    this.name = 'StoreUnreachableError';
  }
}

/** What nano rejects with (and what CouchDB answers in a failed response's body). */
export interface NanoError {
  statusCode?: number;
  error?: string;
  reason?: string;
  message?: string;
}

export function isConflict(err: unknown): boolean {
  return err instanceof StoreError && err.statusCode === 409;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof StoreError && err.statusCode === 404;
}

/** The URL as it may appear in logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) {
      u.username = '***';
      u.password = '';
    }
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(invalid URL)';
  }
}
