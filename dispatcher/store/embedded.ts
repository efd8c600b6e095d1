/*
 * The embedded store: when no COUCHDB_URL is given the dispatcher runs a
 * CouchDB-compatible server (express-pouchdb over PouchDB's LevelDB adapter)
 * on loopback and talks to it through the same nano code as to Apache
 * CouchDB.
 *
 * It runs in a child process, not in the dispatcher's: express-pouchdb reads
 * a whole attachment body into memory before storing it, and the dispatcher
 * promises to stream a host's result into the store without its own memory
 * growing by the result's size. In a child process that buffering is the
 * store's cost, as it would be Apache CouchDB's, and a crash of either side
 * does not take the other down.
 *
 * It holds the session signing key (config:secrets) and every password hash,
 * so nobody but the dispatcher may talk to it: it demands HTTP Basic
 * credentials made here once and kept in a 0600 file in its 0700 data dir
 * (a Unix socket would do as much, but nano, the dispatcher's own fetch of
 * attachments and the documented curl downloads all speak TCP URLs, and a
 * credentials URL works with every CouchDB client unchanged).
 */

import { ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import type { ChildMessage, EmbeddedServerArgs, ParentMessage } from './embedded-server';
import { type Logger, componentLogger, logSettingsOf } from '../../shared/log/log';

export interface EmbeddedCouchOptions {
  dataDir: string;
  host?: string;
  port?: number;
  /** The store's logger; the child process logs at its level and in its format. */
  logger?: Logger;
  /** How long the server may take to come up (ms). */
  startTimeoutMs?: number;
}

export interface EmbeddedCouch {
  /** With the store's credentials in it (http://user:password@127.0.0.1:port): never log it, log redactedUrl. */
  url: string;
  /** The same without the credentials. */
  redactedUrl: string;
  dataDir: string;
  /** Process id of the server, for logs and health checks. */
  pid: number;
  stop(): Promise<void>;
}

/** The one user of an embedded store. */
export const EMBEDDED_USER = 'tracefleet';

const credentialsSchema = z.object({ user: z.literal(EMBEDDED_USER), password: z.string().min(32).max(200) }).strict();
export type EmbeddedCredentials = z.infer<typeof credentialsSchema>;

/** Where an embedded store keeps its credentials: a name no CouchDB database can have (they start with a-z). */
export function credentialsFile(dataDir: string): string {
  return join(dataDir, '.credentials.json');
}

/**
 * The data dir, 0700 (also when an older version made it 0755), and its
 * credentials, made on first use and kept 0600.
 */
export function prepareDataDir(dataDir: string): EmbeddedCredentials {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const file = credentialsFile(dataDir);
  let text: string | null = null;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text === null) {
    const made: EmbeddedCredentials = { user: EMBEDDED_USER, password: randomBytes(24).toString('base64url') };
    // wx: two processes starting at once must not each believe their own password.
    try {
      writeFileSync(file, JSON.stringify(made) + '\n', { mode: 0o600, flag: 'wx' });
      return made;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      text = readFileSync(file, 'utf8');
    }
  }
  chmodSync(file, 0o600);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  const creds = credentialsSchema.safeParse(parsed);
  if (!creds.success) {
    throw new Error(`the embedded store's credentials file ${file} is damaged: delete it (a new password is made at the next start)`);
  }
  return creds.data;
}

/**
 * glibc's allocator for the store process, unless the environment says
 * otherwise (ignored by other C libraries). Every part of an attachment
 * passes through a few buffers of PART_BYTES (PouchDB's copy, LevelDB's
 * write batch): by default glibc gives each from fresh mmap()ed pages and
 * hands them back when freed, so every byte stored cost page faults and
 * zeroing, and freed heap was trimmed and faulted in again. From the heap,
 * kept for reuse: the store's CPU for a 200 MiB upload fell 2.95/2.81 s →
 * 2.41/2.35 s (its first) and 1.39/1.57 → 1.29/1.10 s (the next), store
 * alone, paired, load 12-15. At most 64 MiB freed stays with the process
 * for the next upload: with 256 MiB the CPU was the same and the store
 * ended two uploads 30-50 MiB bigger (peak growth 197-222 MiB either way,
 * under the 256 MiB bound, which the 160 MiB attachment test holds).
 */
const STORE_MALLOC = {
  MALLOC_MMAP_THRESHOLD_: String(64 * 1024 * 1024),
  MALLOC_TRIM_THRESHOLD_: String(64 * 1024 * 1024),
  MALLOC_TOP_PAD_: String(64 * 1024 * 1024),
};

const LOOPBACK = /^(127(\.\d{1,3}){3}|::1|\[::1\]|localhost)$/;

function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function startEmbeddedCouch(opts: EmbeddedCouchOptions): Promise<EmbeddedCouch> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  const log = componentLogger('dispatcher.store', opts.logger);
  // Its credentials travel in clear over plain HTTP, so it never listens beyond this machine.
  if (!LOOPBACK.test(host)) {
    throw new Error(`the embedded store listens on loopback only, not on ${host}: use 127.0.0.1 or ::1, or set COUCHDB_URL to a real CouchDB`);
  }
  const dataDir = resolvePath(opts.dataDir);
  const creds = prepareDataDir(dataDir);

  const args: EmbeddedServerArgs = { dataDir, credentialsFile: credentialsFile(dataDir), host: host.replace(/^\[|\]$/g, ''), port, log: logSettingsOf(log) };
  const child = fork(require.resolve('./embedded-server'), [JSON.stringify(args)], {
    // Not the parent's flags (node --test, --inspect...) but a CPU profile's,
    // so that profiling the dispatcher profiles its store too; the deprecation
    // warnings are express-pouchdb's use of `new Buffer`, nothing we can fix.
    execArgv: ['--no-deprecation', ...cpuProfileFlags(process.execArgv)],
    // fd 2 twice: the dispatcher's stdout may be a PCAP going to Wireshark.
    stdio: ['ignore', 2, 2, 'ipc'],
    cwd: dataDir,
    env: { ...STORE_MALLOC, ...process.env },
  });

  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // Failures to signal the child are handled where it is signalled; an 'error' with no listener would throw.
  child.on('error', (e) => log.error({ err: e, storePid: child.pid }, 'embedded store process error'));
  const readyPort = await waitReady(child, exited, opts.startTimeoutMs ?? 30_000);
  const redactedUrl = `http://${urlHost(args.host)}:${readyPort}`;
  const url = `http://${creds.user}:${encodeURIComponent(creds.password)}@${urlHost(args.host)}:${readyPort}`;

  let stopping: Promise<void> | undefined;
  void exited.then((code) => {
    if (!stopping) log.fatal({ storePid: child.pid, code, url: redactedUrl }, 'the embedded store exited unexpectedly; the store is unreachable until the dispatcher restarts');
  });
  log.info({ url: redactedUrl, dataDir, storePid: child.pid }, 'embedded CouchDB-compatible store (express-pouchdb, LevelDB), data and credentials in dataDir; set COUCHDB_URL to use Apache CouchDB');

  return {
    url,
    redactedUrl,
    dataDir,
    pid: child.pid ?? -1,
    stop(): Promise<void> {
      stopping ??= stopChild(child, exited);
      return stopping;
    },
  };
}

function waitReady(child: ChildProcess, exited: Promise<number | null>, timeoutMs: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the embedded store did not start within ${timeoutMs} ms`));
    }, timeoutMs);
    let failure: string | undefined;
    const onMessage = (msg: ChildMessage): void => {
      if (msg.type === 'ready') {
        clearTimeout(timer);
        child.off('message', onMessage);
        resolve(msg.port);
      } else if (msg.type === 'error') {
        failure = msg.message;
      }
    };
    child.on('message', onMessage);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(failure ?? `the embedded store exited during start with code ${code}`));
    });
  });
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const msg: ParentMessage = { type: 'stop' };
  // The child may be exiting already (a Ctrl-C reaches the whole process group): a send then fails
  // with EPIPE, which without this callback is an 'error' event that would crash the dispatcher.
  if (child.connected) child.send(msg, (err) => err && child.exitCode === null && child.signalCode === null && child.kill('SIGTERM'));
  else child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The --cpu-prof* flags of argv, each with its value when given as the next argument (`--cpu-prof-dir DIR`). */
export function cpuProfileFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--cpu-prof')) continue;
    out.push(a);
    // --cpu-prof alone takes no value; the others (-dir, -name, -interval) do, unless given with '='.
    if (a !== '--cpu-prof' && !a.includes('=') && i + 1 < argv.length) out.push(argv[++i]);
  }
  return out;
}
