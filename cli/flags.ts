import { parseArgs } from 'node:util';
import type { CommandModule } from 'yargs';

/*
 * The flags of a hot command (`tracefleet query`) read without yargs.
 * Loading yargs (with cliui, y18n, yargs-parser and their helpers) costs
 * more than the rest of a `query` on a small ring put together, and a
 * script may run `query` thousands of times (docs/ARCHITECTURE.md, "The
 * CLI"). The flags are still defined once, in a table that yargs reads for
 * --help and for every other command; this reads the same table with
 * node:util parseArgs, and only for the plain forms whose meaning is not in
 * doubt. For anything else it answers undefined and the caller hands argv
 * to yargs, so help, every error message and every edge case stay yargs'.
 */

/** One flag as yargs' `.options()` takes it: the subset both parsers read alike. */
export interface FlagSpec {
  type: 'string' | 'boolean' | 'number';
  describe: string;
  array?: boolean;
  /** A one-letter alias is the short form (`-o`). */
  alias?: string;
  default?: string | boolean | number;
  demandOption?: boolean;
  /** The heading yargs shows the flag under in --help. */
  group?: string;
}

export type FlagTable = Readonly<Record<string, Readonly<FlagSpec>>>;

const camel = (s: string) => s.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

/** The long and the short name of a flag (a table key or alias of one letter is the short). */
function namesOf(key: string, f: FlagSpec): { long: string; short?: string } {
  const names = f.alias === undefined ? [key] : [key, f.alias];
  const long = names.find((n) => n.length > 1);
  if (long === undefined) throw new Error(`flag -${key} has no long name`);
  return { long, short: names.find((n) => n.length === 1) };
}

/**
 * `argv` (after the command's name) as yargs would give it to the handler,
 * each flag under its name, its alias and their camelCase forms, defaults
 * filled in; or undefined where yargs must decide: help, an unknown,
 * repeated, negated (`--no-x`) or missing required flag, a positional, a
 * value that looks like a flag (or `--x -`, `-o=x`), a list given as
 * `--x a b`, a number that is not plain digits. `positionals`: the name of
 * the command's one variadic positional (`import <files..>`), which must
 * then be given at least once, and never after `--`.
 */
export function parseFlagsFast(table: FlagTable, argv: string[], positionals?: string): Record<string, unknown> | undefined {
  const options: Record<string, { type: 'string' | 'boolean'; multiple: true; short?: string }> = {};
  for (const [key, f] of Object.entries(table)) {
    const { long, short } = namesOf(key, f);
    options[long] = { type: f.type === 'boolean' ? 'boolean' : 'string', multiple: true, ...(short ? { short } : {}) };
  }
  let values: Record<string, (string | boolean)[] | undefined>;
  try {
    const parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: positionals !== undefined, tokens: true });
    // Where the two read a value differently: yargs takes `--output -` for an unknown argument `-` (only `-o -` and
    // `--output=-` mean stdout), and `-o=x` for x where parseArgs keeps the `=`. Their answer, not ours.
    const long = (t: { rawName: string }) => t.rawName.startsWith('--');
    if (parsed.tokens.some((t) => t.kind === 'option' && t.value !== undefined && (t.inlineValue ? !long(t) : t.value === '-' && long(t)))) return undefined;
    if (positionals !== undefined && (parsed.positionals.length === 0 || parsed.tokens.some((t) => t.kind === 'option-terminator'))) return undefined;
    values = parsed.values as typeof values;
    if (positionals !== undefined) values = { ...values, [positionals]: parsed.positionals };
  } catch {
    return undefined;
  }
  const a: Record<string, unknown> = positionals === undefined ? {} : { [positionals]: values[positionals] };
  for (const [key, f] of Object.entries(table)) {
    const { long } = namesOf(key, f);
    const got = values[long];
    let v: unknown;
    if (got === undefined) {
      if (f.demandOption) return undefined;
      v = f.default;
    } else if (f.array) {
      v = got;
    } else if (got.length !== 1) {
      return undefined;
    } else {
      v = got[0];
    }
    if (f.type === 'number' && v !== undefined && typeof v !== 'number') {
      if (!/^\d{1,15}$/.test(String(v))) return undefined;
      v = Number(v);
    }
    if (v === undefined) continue;
    for (const n of f.alias === undefined ? [key] : [key, f.alias]) {
      a[n] = v;
      a[camel(n)] = v;
    }
  }
  return a;
}

/**
 * Runs a hot command (cli/hot.ts, cli/hot-trace.ts) on flags read by
 * parseFlagsFast; false, with nothing run, when yargs must read argv.
 */
export function runFast<A>(table: FlagTable, command: CommandModule<object, A>, argv: string[]): boolean {
  const a = parseFlagsFast(table, argv.slice(1));
  if (!a) return false;
  void command.handler({ ...a, _: [argv[0]], $0: 'tracefleet' } as Parameters<CommandModule<object, A>['handler']>[0]);
  return true;
}
