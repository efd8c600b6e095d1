/** Any failure of the store, with CouchDB's status and error when it gave them. */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly statusCode?: number,
    readonly error?: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

/** The store could not be reached at all: nothing was read or written. */
export class StoreUnreachableError extends StoreError {
  readonly code = 'ESTOREUNREACHABLE';
  constructor(message: string) {
    super(message);
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
