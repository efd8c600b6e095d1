import { run } from './proc';

/**
 * A strict reader of Prometheus text exposition 0.0.4, for tests: every line
 * must be HELP, TYPE, or a sample of a family whose TYPE came before it.
 * Throws on the first line that is none of these. prom-client writes NaN as
 * `Nan`; Prometheus reads numbers with Go's ParseFloat, which takes either.
 */
export interface Exposition {
  /** By `name{labels}` as written (labels in the order printed). */
  values: Map<string, number>;
  types: Map<string, string>;
  help: Map<string, string>;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';

export function parseExposition(text: string): Exposition {
  const out: Exposition = { values: new Map(), types: new Map(), help: new Map() };
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line);
    if (t) {
      out.types.set(t[1], t[2]);
      continue;
    }
    const h = new RegExp(`^# HELP (${NAME}) (.+)$`).exec(line);
    if (h) {
      out.help.set(h[1], h[2]);
      continue;
    }
    const m = new RegExp(`^(${NAME})(\\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\.)*",?)*\\})? (-?[0-9.e+-]+|NaN|Nan|[+-]Inf)$`).exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    // A histogram's or summary's samples carry suffixes on the family's name.
    const family = [m[1], m[1].replace(/_(bucket|sum|count)$/, '')].find((n) => out.types.has(n));
    if (!family) throw new Error(`${m[1]} has no TYPE line before it`);
    out.values.set(`${m[1]}${m[2] ?? ''}`, m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]));
  }
  return out;
}

export interface PromtoolVerdict {
  /** promtool's parse error (it stops at the first), or null when the exposition parsed. */
  error: string | null;
  /** Its lint findings, one per metric and rule broken. */
  problems: Array<{ metric: string; problem: string }>;
}

/**
 * Prometheus' own text-format parser and linter as the judge of an
 * exposition: `promtool check metrics` (Debian's prometheus package), which
 * exits 0 when clean, 3 with lint findings (on stderr, "NAME problem"), 1
 * with a parse error.
 */
export async function promtoolCheck(text: string): Promise<PromtoolVerdict> {
  const r = await run('promtool', ['check', 'metrics'], { input: text, check: false, timeoutMs: 20_000 });
  if (r.code === 1) return { error: (r.stderr || r.stdout).trim(), problems: [] };
  if (r.code !== 0 && r.code !== 3) throw new Error(`promtool check metrics exited with ${r.code ?? r.signal}: ${r.stderr}`);
  const problems = r.stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const sp = l.indexOf(' ');
      return { metric: l.slice(0, sp), problem: l.slice(sp + 1) };
    });
  if (r.code === 3 && problems.length === 0) throw new Error(`promtool check metrics found lint problems it did not print: ${r.stdout}`);
  return { error: null, problems };
}
