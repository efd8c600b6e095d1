/**
 * Exit codes of the dispatcher commands (README "Exit codes"): scripts
 * branch on them, so each means one thing.
 */
export const CLI_EXIT = {
  /** The trace is done on every host; the command did what was asked. */
  OK: 0,
  /** Failed: the trace failed/was cancelled/interrupted, the dispatcher is unreachable or failed. */
  FAILED: 1,
  /** Bad input: flags, config, or a request the dispatcher refused as malformed (400). */
  BAD_INPUT: 2,
  /** The trace is partial: some hosts failed or did not finish. */
  PARTIAL: 3,
  /** Not logged in, wrong credentials (401) or not allowed (403). */
  UNAUTHORIZED: 4,
  /** Interrupted by Ctrl-C (128 + SIGINT). */
  INTERRUPTED: 130,
} as const;
export type CliExit = (typeof CLI_EXIT)[keyof typeof CLI_EXIT];

/** An error that ends the command with one stderr line and this exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: CliExit,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The exit code for an HTTP status the dispatcher answered with. */
export function exitOfStatus(status: number): CliExit {
  if (status === 400 || status === 409 || status === 413 || status === 422) return CLI_EXIT.BAD_INPUT;
  if (status === 401 || status === 403) return CLI_EXIT.UNAUTHORIZED;
  return CLI_EXIT.FAILED;
}

/** The exit code for a /client ack's error code (shared/protocol/wire.ts ClientAck). */
export function exitOfAckCode(code: string): CliExit {
  if (code === 'bad_request') return CLI_EXIT.BAD_INPUT;
  if (code === 'unauthorized' || code === 'forbidden') return CLI_EXIT.UNAUTHORIZED;
  return CLI_EXIT.FAILED;
}
