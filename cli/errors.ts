import { EXIT, Exit, TracefleetError } from '../shared/errors/catalogue';

/** The catalogue's code for the CLI's own failures, by how they end the command. */
const CODE_OF_EXIT = {
  [EXIT.FAILED]: 'TF_FAILED',
  [EXIT.BAD_INPUT]: 'TF_USAGE',
  [EXIT.UNAUTHORIZED]: 'TF_UNAUTHENTICATED',
  [EXIT.INTERRUPTED]: 'TF_INTERRUPTED',
} as const;

/** A failure of the CLI itself (flags, files, the connection): one stderr line and this exit code. */
export class CliError extends TracefleetError {
  constructor(message: string, exit: keyof typeof CODE_OF_EXIT & Exit) {
    super(CODE_OF_EXIT[exit] as 'TF_FAILED', { message }, null, message);
    this.name = 'CliError';
  }
}

/** The exit code for anything a command threw: a catalogue error's own, else a failure. */
export function exitOf(err: unknown): Exit {
  return err instanceof TracefleetError ? err.exit : EXIT.FAILED;
}

/** What `--json` prints on stdout when a command fails: `{code, field, message}` (and `error`, as the dispatcher sends). */
export function jsonOfError(err: unknown): string {
  const e = err instanceof TracefleetError ? err : new CliError(String((err as Error)?.message ?? err), EXIT.FAILED);
  return JSON.stringify({ code: e.code, field: e.field, message: e.message, error: e.message });
}

/** Bad flags, environment or config file: the user's to fix, exit 2. */
export class UsageError extends TracefleetError {
  constructor(message: string) {
    super('TF_USAGE', { message });
    this.name = 'UsageError';
  }
}
