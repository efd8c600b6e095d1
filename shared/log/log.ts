/**
 * The one logger of every tracefleet process (agent, dispatcher, demo, the
 * embedded store's child, the capture worker): pino, a root per process and a
 * child per component (`log.child({ component: 'dispatcher.fleet' })`).
 * Records are JSON lines on stderr, or a short human form on a terminal, and
 * pass through `scrub` so that no secret is ever written.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { z } from 'zod';
import { LOG_FORMATS, LOG_LEVELS } from './options';

export type { Logger };
export { LOG_CLI_OPTIONS, LOG_FORMATS, LOG_LEVELS } from './options';

export const logLevelSchema = z.enum(LOG_LEVELS);
export const logFormatSchema = z.enum(LOG_FORMATS);
export type LogLevel = z.infer<typeof logLevelSchema>;
export type LogFormat = z.infer<typeof logFormatSchema>;

/** What a child process or worker thread needs to log like its parent. */
export interface LogSettings {
  level: LogLevel;
  format: LogFormat;
}

// Keys whose values are secrets wherever they sit in a record (any depth, any case).
const SECRET_KEY = /pass(word|wd)?$|token|secret|session|cookie|authorization|credential|api[-_]?key/i;
// scheme://user:password@host, or scheme://token@host: the part before @ goes.
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)[^/\s@'"]+@/gi;
// A header line or value such as "Authorization: Basic dG9t..." in free text.
const AUTH_IN_TEXT = /\b(authorization|cookie)(["']?\s*[:=]\s*["']?)[^\s"',;]+(\s+[^\s"',;]+)?/gi;
export const REDACTED = '[redacted]';

export function scrubText(s: string): string {
  return s.replace(URL_CREDENTIALS, `$1${REDACTED}@`).replace(AUTH_IN_TEXT, `$1$2${REDACTED}`);
}

/** A copy of `v` with secret-named keys censored and credentials cut out of strings. */
export function scrub(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return scrubText(v);
  // An Error goes to the err serializer, which scrubs what it makes of it.
  if (v instanceof Error) return v;
  if (v === null || typeof v !== 'object' || depth > 8) return v;
  if (Array.isArray(v)) return v.map((x) => scrub(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = SECRET_KEY.test(k) && x !== undefined && x !== null && x !== '' ? REDACTED : scrub(x, depth + 1);
  return out;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const OWN_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'component', 'process']);

/** Text from a capture or a peer may carry control characters: escaped so they cannot move a terminal's cursor. */
function plain(s: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x1f\x7f-\x9f]/.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

/** One JSON record as `12:04:05.123 INFO  dispatcher.fleet: msg key=value ...`. */
export function prettyLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return plain(json.trimEnd());
  }
  const t = typeof r.time === 'number' ? new Date(r.time).toISOString().slice(11, 23) : '';
  const fields = Object.entries(r)
    .filter(([k]) => !OWN_KEYS.has(k))
    .map(([k, v]) => {
      if (k === 'err' && v && typeof v === 'object') {
        const e = v as { message?: string; stack?: string };
        return `err=${JSON.stringify(e.stack ?? e.message ?? '')}`;
      }
      return `${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? plain(v) : JSON.stringify(v)}`;
    });
  const level = (LEVEL_NAMES[r.level as number] ?? String(r.level)).padEnd(5);
  const who = typeof r.component === 'string' ? `${r.component}: ` : '';
  return `${t} ${level} ${who}${plain(String(r.msg ?? ''))}${fields.length ? `  ${fields.join(' ')}` : ''}\n`;
}

/** A destination that writes each record in its short human form: loading pino-pretty 13 measured ~110 ms of start-up here (pino itself ~15 ms), this nothing. */
export function prettyDestination(out: { write(s: string): unknown }): DestinationStream {
  return { write: (line: string) => void out.write(prettyLine(line)) };
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Fields on every record of this process, e.g. `{ process: 'agent' }`. */
  base?: Record<string, unknown>;
  /** Where records go (default: stderr). Tests give an in-memory one. */
  destination?: DestinationStream;
  /** Whether the destination is a terminal, for `auto` (default: stderr's). */
  isTTY?: boolean;
}

const FORMAT = Symbol('tracefleet.logFormat');

/** The level and (resolved) format of `l`, for a child process or thread to log the same way. Children inherit it. */
export function logSettingsOf(l: Logger): LogSettings {
  const format = (l as unknown as Record<symbol, LogFormat | undefined>)[FORMAT] ?? 'json';
  return { level: logLevelSchema.catch('info').parse(l.level), format };
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const format = opts.format ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && (opts.isTTY ?? process.stderr.isTTY === true));
  // Synchronous writes to fd 2: a record written just before a crash or exit is never lost.
  const raw = opts.destination ?? pino.destination({ fd: 2, sync: true });
  const dest = pretty ? prettyDestination(raw as unknown as { write(s: string): unknown }) : raw;
  const logger = pino(
    {
      level: opts.level ?? 'info',
      base: { pid: process.pid, ...opts.base },
      serializers: { err: (e: Error) => scrub(pino.stdSerializers.err(e)) },
      formatters: { log: (o) => scrub(o) as Record<string, unknown>, bindings: (b) => scrub(b) as Record<string, unknown> },
      hooks: {
        // The message is free text and may quote a URL with its credentials.
        logMethod(args, method) {
          const i = typeof args[0] === 'string' ? 0 : 1;
          if (typeof args[i] === 'string') args[i] = scrubText(args[i] as string);
          return method.apply(this, args as Parameters<typeof method>);
        },
      },
    },
    dest,
  );
  // pino's children are made with Object.create(parent): they see both of these too.
  Object.defineProperty(logger, FORMAT, { value: pretty ? 'pretty' : 'json' });
  // pino gives children a pass-through bindings formatter, so a child's bindings are scrubbed here.
  const child = logger.child;
  Object.defineProperty(logger, 'child', {
    value(this: Logger, bindings: Record<string, unknown>, options?: Parameters<Logger['child']>[1]) {
      return child.call(this, scrub(bindings) as Record<string, unknown>, options);
    },
  });
  return logger;
}

let root: Logger | undefined;

/** Sets this process's root logger (from --log-level/--log-format); call once at start-up, before any component logs. */
export function initProcessLogger(opts: LoggerOptions): Logger {
  root = createLogger(opts);
  return root;
}

/** The root logger of this process: the one `initProcessLogger` made, else info-level records on stderr. */
export function processLogger(): Logger {
  root ??= createLogger();
  return root;
}

/** The logger a component uses when its caller gave none: a child of the process's root. */
export function componentLogger(component: string, given?: Logger): Logger {
  return given ?? processLogger().child({ component });
}

const logArgs = z.object({ logLevel: logLevelSchema, logFormat: logFormatSchema });

/** The root logger of a daemon from its parsed `--log-level`/`--log-format` (yargs' camel-case keys). */
export function initLoggerFromArgs(a: Record<string, unknown>, processName: string): Logger {
  const r = logArgs.safeParse(a);
  if (!r.success) throw new Error(`bad --log-level or --log-format: give ${LOG_LEVELS.join('|')} and ${LOG_FORMATS.join('|')}`);
  return initProcessLogger({ level: r.data.logLevel, format: r.data.logFormat, base: { process: processName } });
}

/** Writes nothing: for tests and callers that want a component quiet. */
export const silentLogger: Logger = pino({ level: 'silent' });
