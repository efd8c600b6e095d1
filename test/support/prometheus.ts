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
