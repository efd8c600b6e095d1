import { createLogger, type Logger, type LogLevel } from '../../shared/log/log';

/** One record as the logger wrote it (JSON), with the fields it was given. */
export interface LogRecord {
  level: number;
  msg: string;
  component?: string;
  [field: string]: unknown;
}

export interface MemoryLog {
  logger: Logger;
  /** Every record so far, oldest first. */
  records: LogRecord[];
  /** The raw lines, exactly as they would reach stderr (for "never in a line" checks). */
  lines: string[];
}

/** The real logger (levels, redaction, JSON) writing to memory instead of stderr, for tests that read what was logged. */
export function memoryLogger(level: LogLevel = 'debug'): MemoryLog {
  const records: LogRecord[] = [];
  const lines: string[] = [];
  const logger = createLogger({
    level,
    format: 'json',
    destination: {
      write(line: string) {
        lines.push(line);
        records.push(JSON.parse(line) as LogRecord);
      },
    },
  });
  return { logger, records, lines };
}

/** Parses the JSON records among a process's stderr lines (anything else is skipped). */
export function recordsOf(stderr: string): LogRecord[] {
  const out: LogRecord[] = [];
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const r = JSON.parse(line) as LogRecord;
      if (typeof r.level === 'number' && typeof r.msg === 'string') out.push(r);
    } catch {
      /* a partial line: the rest has not arrived yet */
    }
  }
  return out;
}

/** The part of a started process's handle that waitForRecord reads (test/support/proc.ts's DaemonHandle has it). */
interface LoggingProcess {
  stderr(): string;
  exitStatus(): unknown;
}

/** Resolves with the first record of `p`'s stderr that `match` accepts; rejects on timeout or when the process exits first. */
export async function waitForRecord(p: LoggingProcess, match: (r: LogRecord) => boolean, timeoutMs: number, what = 'the record'): Promise<LogRecord> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = recordsOf(p.stderr()).find(match);
    if (r) return r;
    if (p.exitStatus()) throw new Error(`the process exited before logging ${what}; stderr: ${p.stderr().slice(-2000)}`);
    if (Date.now() > until) throw new Error(`no ${what} within ${timeoutMs} ms; stderr: ${p.stderr().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
