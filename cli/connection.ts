import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { UsageError } from './errors';

/**
 * Where the dispatcher is and who we are to it. Each setting comes from the
 * first of: command-line flags, environment variables, the config file,
 * the default. Credentials are taken whole from the highest layer that has
 * any, so a token in the config file never mixes with a user given by flag.
 */

export const DEFAULT_URL = 'http://127.0.0.1:8060';

export interface ConnectionFlags {
  url?: string;
  token?: string;
  user?: string;
  password?: string;
  config?: string;
  insecure?: boolean;
  ca?: string;
}

export type Credentials = { token: string } | { user: string; password?: string };

export interface Connection {
  /** Normalized base URL: scheme, host, port and an optional path prefix, no trailing slash. */
  url: string;
  /** null: none given anywhere; `password` missing: ask for it (or refuse without a terminal). */
  credentials: Credentials | null;
  /** Where the credentials came from, for error messages: "flags", "environment", "config file PATH". */
  credentialSource: string | null;
  tls: { insecure: boolean; ca?: Buffer };
  configPath: string;
  /** Things worth telling the user once (config file readable by others, config for another URL). */
  notes: string[];
}

const configSchema = z
  .object({
    url: z.string().max(2048),
    token: z.string().min(1).max(512).optional(),
    user: z.string().min(1).max(200).optional(),
    password: z.string().min(1).max(1024).optional(),
    /** PEM file of the CA that signed the dispatcher's certificate. */
    ca: z.string().min(1).max(4096).optional(),
  })
  .strict();
export type ConfigFile = z.infer<typeof configSchema>;

/** The config file: --config, TRACEFLEET_CONFIG, $XDG_CONFIG_HOME/tracefleet/config.json, ~/.config/tracefleet/config.json. */
export function configPathOf(flag: string | undefined, env: NodeJS.ProcessEnv): { path: string; explicit: boolean } {
  if (flag) return { path: flag, explicit: true };
  if (env.TRACEFLEET_CONFIG) return { path: env.TRACEFLEET_CONFIG, explicit: true };
  // The XDG spec says a relative XDG_CONFIG_HOME is to be ignored.
  const base = env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), '.config');
  return { path: join(base, 'tracefleet', 'config.json'), explicit: false };
}

/** Reads and validates the config file; null when it does not exist. */
export function readConfig(path: string): { config: ConfigFile; mode: number } | null {
  let text: string;
  let mode: number;
  try {
    text = readFileSync(path, 'utf8');
    mode = statSync(path).mode;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'EISDIR') throw new UsageError(`config file ${path} is a directory: give a JSON file (--config FILE)`);
    throw new UsageError(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`config file ${path} is not valid JSON (${(e as Error).message}): fix it, or remove it and run tracefleet login`);
  }
  const r = configSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i.path.join('.') || 'top level';
    const hint = i.code === 'unrecognized_keys' ? ' (allowed: url, token, user, password, ca)' : '';
    throw new UsageError(`config file ${path}: ${where}: ${i.message}${hint}; it holds {"url": "https://dispatcher:8060", "token": "..."}`);
  }
  normalizeUrl(r.data.url, `url in config file ${path}`);
  return { config: r.data, mode };
}

/** Checks a dispatcher URL and strips what does not matter (trailing slashes, query, fragment). */
export function normalizeUrl(input: string, what: string): string {
  let u: URL;
  try {
    u = new URL(input);
  } catch {
    throw new UsageError(`bad ${what} '${input}': give the dispatcher's URL like http://dispatcher:8060`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`bad ${what} '${input}': the dispatcher speaks http:// or https://, give its URL like http://dispatcher:8060`);
  if (u.username || u.password) throw new UsageError(`bad ${what} '${input}': put credentials in --user/--token or the config file, not in the URL`);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/**
 * Resolves the connection settings. `login` writes the config file rather
 * than needing one, so an explicitly named file may be missing then.
 */
export function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv, opts: { login?: boolean } = {}): Connection {
  const notes: string[] = [];
  const cfgPath = configPathOf(flags.config, env);
  const file = readConfig(cfgPath.path);
  if (!file && cfgPath.explicit && !opts.login) {
    throw new UsageError(`config file ${cfgPath.path} does not exist: create it with tracefleet login --config ${cfgPath.path}, or fix --config/TRACEFLEET_CONFIG`);
  }

  const flagUrl = nonEmpty(flags.url);
  const envUrl = nonEmpty(env.TRACEFLEET_URL);
  const url = flagUrl !== undefined
    ? normalizeUrl(flagUrl, '--url')
    : envUrl !== undefined
      ? normalizeUrl(envUrl, 'TRACEFLEET_URL')
      : file
        ? normalizeUrl(file.config.url, `url in config file ${cfgPath.path}`)
        : DEFAULT_URL;

  // The file's credentials are for the file's dispatcher: never send them elsewhere.
  let cfg: ConfigFile | null = null;
  if (file) {
    if (normalizeUrl(file.config.url, 'url') === url) cfg = file.config;
    else if (file.config.token || file.config.user) notes.push(`the credentials in ${cfgPath.path} are for ${file.config.url}, not ${url}: not used`);
  }
  if (cfg && (cfg.token || cfg.password) && (file!.mode & 0o077) !== 0) {
    notes.push(`config file ${cfgPath.path} holds secrets and is readable by others: chmod 600 ${cfgPath.path}`);
  }

  const layers: Array<{ name: string; token?: string; user?: string; password?: string }> = [
    { name: 'flags', token: nonEmpty(flags.token), user: nonEmpty(flags.user), password: flags.password },
    { name: 'environment', token: nonEmpty(env.TRACEFLEET_TOKEN), user: nonEmpty(env.TRACEFLEET_USER), password: env.TRACEFLEET_PASSWORD },
    { name: `config file ${cfgPath.path}`, token: cfg?.token, user: cfg?.user, password: cfg?.password },
  ];
  let credentials: Credentials | null = null;
  let credentialSource: string | null = null;
  for (const l of layers) {
    if (l.user !== undefined) {
      // A user given with a token in the same layer: the token wins (it is what login saved).
      if (l.token !== undefined) credentials = { token: l.token };
      else {
        // A lower layer's password goes with this user only if that layer names no other user.
        const password = layers.slice(layers.indexOf(l)).find((x) => x.password !== undefined && x.password !== '' && (x.user === undefined || x.user === l.user))?.password;
        credentials = password !== undefined ? { user: l.user, password } : { user: l.user };
      }
    } else if (l.token !== undefined) credentials = { token: l.token };
    if (credentials) {
      credentialSource = l.name;
      break;
    }
  }

  let ca: Buffer | undefined;
  const caPath = flags.ca ?? cfg?.ca;
  if (caPath) {
    try {
      ca = readFileSync(caPath);
    } catch (e) {
      throw new UsageError(`cannot read the CA file ${caPath} (--ca): ${(e as Error).message}`);
    }
    if (!ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`CA file ${caPath} holds no PEM certificate: give the PEM file of the CA that signed the dispatcher's certificate`);
  }
  return { url, credentials, credentialSource, tls: { insecure: flags.insecure === true, ...(ca ? { ca } : {}) }, configPath: cfgPath.path, notes };
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s;
}

/**
 * Saves a session token for `url` (what `tracefleet login` does). Keeps the
 * file's CA when it is for the same dispatcher and drops a stored password
 * (the token replaces it); the file is
 * written whole to a temporary name and renamed, mode 0600, so it never
 * holds half a token or is readable by others even for a moment.
 */
export function saveSession(path: string, session: { url: string; token: string; user: string; ca?: string }): void {
  let existing: ConfigFile | null = null;
  try {
    existing = readConfig(path)?.config ?? null;
  } catch {
    existing = null; // a broken file is replaced by a good one
  }
  const same = existing && normalizeUrl(existing.url, 'url') === session.url;
  const next: ConfigFile = {
    url: session.url,
    token: session.token,
    user: session.user,
    ...(session.ca ? { ca: resolve(session.ca) } : same && existing!.ca ? { ca: existing!.ca } : {}),
  };
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n', { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (e) {
    throw new UsageError(`cannot write config file ${path}: ${(e as Error).message} (give another with --config FILE)`);
  }
}
