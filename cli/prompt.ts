import { EXIT } from '../shared/errors/catalogue';
import { CliError } from './errors';

const MAX_SECRET = 1024;

/**
 * Asks for a password on the terminal without echoing it. stdin must be a
 * TTY (the caller checks and says what to do otherwise). Ctrl-C aborts
 * with exit 130, Ctrl-D on an empty line aborts; backspace works.
 */
export function readSecret(prompt: string, input: NodeJS.ReadStream = process.stdin, output: NodeJS.WritableStream = process.stderr): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let value = '';
    const wasRaw = input.isRaw;
    const finish = (err: Error | null) => {
      input.off('data', onData);
      try {
        input.setRawMode(wasRaw);
      } catch {
        /* the terminal is gone */
      }
      input.pause();
      output.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish(null);
        if (ch === '\u0003') return finish(new CliError('interrupted', EXIT.INTERRUPTED));
        if (ch === '\u0004') {
          if (value === '') return finish(new CliError('no password given', EXIT.BAD_INPUT));
          return finish(null);
        }
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
        else if (ch === '\u0015') value = ''; // Ctrl-U: erase the line
        else if (ch >= ' ') {
          if (value.length >= MAX_SECRET) return finish(new CliError(`the password is over ${MAX_SECRET} characters`, EXIT.BAD_INPUT));
          value += ch;
        }
      }
    };
    // Raw before the question shows: whatever is typed after it is not echoed.
    input.setRawMode(true);
    output.write(prompt);
    input.resume();
    input.on('data', onData);
  });
}

/** The first line of stdin (what `--password-stdin` reads): a pipe from a password manager, a file. */
export async function readFirstLine(input: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of input as AsyncIterable<Buffer>) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(c as string);
    parts.push(b);
    n += b.length;
    if (b.includes(0x0a) || n > MAX_SECRET + 2) break;
  }
  const text = Buffer.concat(parts).toString('utf8');
  const line = text.split(/\r?\n/)[0];
  if (line.length > MAX_SECRET) throw new CliError(`the password on stdin is over ${MAX_SECRET} characters`, EXIT.BAD_INPUT);
  if (line === '') throw new CliError('--password-stdin read an empty password: pipe the password in on one line, e.g. pass show tracefleet | tracefleet login --user U --password-stdin', EXIT.BAD_INPUT);
  return line;
}
