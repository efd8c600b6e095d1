/*
 * The daemons' --log-level and --log-format flags, apart from the logger:
 * the CLI declares them for every command it wires, and loads pino only when
 * a daemon runs.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;

/** The `--log-level` and `--log-format` options of the daemons' commands (a yargs options record). */
export const LOG_CLI_OPTIONS = {
  'log-level': { type: 'string', choices: LOG_LEVELS, default: process.env.TRACEFLEET_LOG_LEVEL ?? 'info', describe: 'least severe records written (env TRACEFLEET_LOG_LEVEL)' },
  'log-format': {
    type: 'string',
    choices: LOG_FORMATS,
    default: process.env.TRACEFLEET_LOG_FORMAT ?? 'auto',
    describe: 'pretty: one short line per record; json: JSON lines (journald, containers); auto: pretty on a terminal (env TRACEFLEET_LOG_FORMAT)',
  },
} as const;
