/*
 * `tracefleet user ...`: the dispatcher's users, straight in its store (a
 * running dispatcher's embedded store, an embedded store started here for the
 * time of the command, or CouchDB), so that the first admin can be made
 * before anything else runs.
 *
 * Exit codes: 0 done, 2 bad input (name, role, password, unknown user), 1
 * anything else (store unreachable, ...).
 */

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { Auth, UserInfo } from '../../dispatcher/auth';
import type { StoreAccess } from '../../dispatcher/daemon/store-access';
import { EXIT } from '../../shared/errors/catalogue';
import { CliError, exitOf, UsageError } from '../errors';
import { readFirstLine, readSecret } from '../prompt';

// Loaded when a sub-command runs: the store brings PouchDB and express, which no other command should pay for at start-up.
const authModule = () => require('../../dispatcher/auth') as typeof import('../../dispatcher/auth');
const storeAccess = () => require('../../dispatcher/daemon/store-access') as typeof import('../../dispatcher/daemon/store-access');
const clientProtocol = () => require('../../shared/protocol/client') as typeof import('../../shared/protocol/client');


interface StoreArgs {
  couchdb?: string;
  db: string;
  'data-dir': string;
}

interface NameArgs extends StoreArgs {
  name: string;
}

interface PasswordArgs extends NameArgs {
  'password-stdin': boolean;
}

function debug(line: string): void {
  if (process.env.TRACEFLEET_DEBUG) process.stderr.write(`${line}\n`);
}

function note(line: string): void {
  process.stderr.write(`tracefleet: ${line}\n`);
}

// ---- passwords -------------------------------------------------------------

/** From --password-stdin, else TRACEFLEET_NEW_PASSWORD, else asked twice on a terminal; checked against the policy. */
async function newPassword(a: PasswordArgs): Promise<string> {
  let password: string;
  if (a['password-stdin']) {
    password = await readFirstLine();
  } else if (process.env.TRACEFLEET_NEW_PASSWORD) {
    password = process.env.TRACEFLEET_NEW_PASSWORD;
  } else if (process.stdin.isTTY) {
    password = await readSecret(`new password for ${a.name}: `);
    authModule().checkPasswordPolicy(password);
    if ((await readSecret('again: ')) !== password) throw new UsageError('the two passwords differ: nothing changed, try again');
  } else {
    throw new UsageError('no password given: use --password-stdin (one line on stdin), set TRACEFLEET_NEW_PASSWORD, or run on a terminal to be asked');
  }
  authModule().checkPasswordPolicy(password);
  return password;
}

// ---- the store ---------------------------------------------------------------

/**
 * Only `user add` may start a store where there was none: anything else on an
 * empty data dir is a wrong --data-dir, and would answer "no such user" from a
 * store nobody uses. Checked before a password is asked for.
 */
function checkStoreDir(a: StoreArgs, mayCreate: boolean): void {
  const dataDir = a['data-dir'];
  if (a.couchdb) return;
  if (existsSync(join(dataDir, 'store')) || existsSync(storeAccess().embeddedUrlFile(dataDir))) return;
  if (!mayCreate) {
    throw new UsageError(`no dispatcher store in ${dataDir}: give the dispatcher's --data-dir (env TRACEFLEET_DATA_DIR) or --couchdb URL (env COUCHDB_URL)`);
  }
  note(`note: making a new embedded store in ${join(dataDir, 'store')} (start the dispatcher with --data-dir ${dataDir} to use it)`);
}

async function withAuth(a: StoreArgs, fn: (auth: Auth) => Promise<void>): Promise<void> {
  let access: StoreAccess | null = null;
  try {
    const { createLogger } = require('../../shared/log/log') as typeof import('../../shared/log/log');
    access = await storeAccess().openStore({ couchdbUrl: a.couchdb || undefined, dataDir: a['data-dir'], db: a.db, logger: createLogger({ level: process.env.TRACEFLEET_DEBUG ? 'debug' : 'silent' }) });
    await fn(await authModule().Auth.open(access.store));
  } finally {
    await access?.close().catch((err: unknown) => debug(`closing the store: ${String(err)}`));
  }
}

// ---- output ------------------------------------------------------------------

function usersTable(users: UserInfo[]): string {
  const rows = [['NAME', 'ROLES', 'TOKENS'], ...users.map((u) => [u.name, u.roles.join(',') || '-', String(u.tokens.length)])];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

// ---- commands ----------------------------------------------------------------

/** Runs a sub-command to its end, store closed, then exits with its code. */
function run<A>(fn: (a: A) => Promise<void>): (a: A) => Promise<void> {
  return async (a) => {
    let code: number = EXIT.OK;
    try {
      await fn(a);
    } catch (err) {
      const e = err as Error;
      process.stderr.write(`tracefleet: ${e.message}\n`);
      if (process.env.TRACEFLEET_DEBUG) process.stderr.write(`${e.stack}\n`);
      code = exitOf(err);
    }
    // nano's keep-alive sockets would hold the process open for seconds.
    process.exit(code);
  };
}

function storeOptions<T>(y: Argv<T>): Argv<T & StoreArgs> {
  return y
    .option('couchdb', { type: 'string', default: process.env.COUCHDB_URL, describe: 'Apache CouchDB URL (env COUCHDB_URL); unset: the embedded store in --data-dir' })
    .option('db', { type: 'string', default: 'tracefleet', describe: 'CouchDB database name' })
    .option('data-dir', { type: 'string', default: process.env.TRACEFLEET_DATA_DIR ?? 'var/dispatcher', describe: "the dispatcher's data dir (env TRACEFLEET_DATA_DIR)" }) as Argv<T & StoreArgs>;
}

function nameArg<T>(y: Argv<T>): Argv<T & { name: string }> {
  return y.positional('name', { type: 'string', demandOption: true, describe: 'user name (1-64 letters, digits, _ . @ -)' }) as Argv<T & { name: string }>;
}

function passwordOption<T>(y: Argv<T>): Argv<T & { 'password-stdin': boolean }> {
  return y.option('password-stdin', {
    type: 'boolean',
    default: false,
    describe: 'read the password as one line from stdin (else env TRACEFLEET_NEW_PASSWORD, else asked on the terminal)',
  }) as Argv<T & { 'password-stdin': boolean }>;
}

function roleOption<T>(y: Argv<T>): Argv<T & { role: string[] }> {
  return y.option('role', {
    type: 'string',
    array: true,
    demandOption: true,
    describe: `${clientProtocol().ROLES.join(' | ')}: admin does everything, tracer runs traces, viewer reads; repeat for several`,
  }) as Argv<T & { role: string[] }>;
}

async function addUser(a: PasswordArgs & { role: string[] }): Promise<void> {
  authModule().checkUserName(a.name);
  const roles = authModule().checkRoles(a.role);
  checkStoreDir(a, true);
  const password = await newPassword(a);
  await withAuth(a, async (auth) => {
    await auth.addUser(a.name, password, roles);
    note(`user ${a.name} added (${roles.join(', ')})`);
  });
}

async function passwd(a: PasswordArgs): Promise<void> {
  authModule().checkUserName(a.name);
  checkStoreDir(a, false);
  const password = await newPassword(a);
  await withAuth(a, async (auth) => {
    await auth.setPassword(a.name, password);
    note(`password of ${a.name} changed; their sessions have ended`);
  });
}

async function role(a: NameArgs & { role: string[] }): Promise<void> {
  authModule().checkUserName(a.name);
  const roles = authModule().checkRoles(a.role);
  checkStoreDir(a, false);
  await withAuth(a, async (auth) => {
    await auth.setRoles(a.name, roles);
    note(`${a.name} now has role ${roles.join(', ')}`);
  });
}

async function token(a: NameArgs & { revoke?: string; list: boolean; json: boolean }): Promise<void> {
  authModule().checkUserName(a.name);
  if (a.revoke !== undefined && a.list) throw new UsageError('give --revoke ID or --list, not both');
  checkStoreDir(a, false);
  await withAuth(a, async (auth) => {
    if (a.revoke !== undefined) {
      await auth.revokeToken(a.name, a.revoke);
      note(`API token ${a.revoke} of ${a.name} revoked`);
    } else if (a.list) {
      const tokens = await auth.listTokens(a.name);
      if (a.json) process.stdout.write(JSON.stringify(tokens, null, 2) + '\n');
      else for (const t of tokens) process.stdout.write(`${t.id}  ${t.createdAt}\n`);
    } else {
      const t = await auth.createToken(a.name);
      process.stdout.write(`${t}\n`);
      note(`API token ${authModule().parseApiToken(t)?.id} for ${a.name}: shown only now, keep it (send it as "Authorization: Bearer ...")`);
    }
  });
}

async function list(a: StoreArgs & { json: boolean }): Promise<void> {
  checkStoreDir(a, false);
  await withAuth(a, async (auth) => {
    const users = await auth.listUsers();
    process.stdout.write(a.json ? JSON.stringify(users, null, 2) + '\n' : usersTable(users));
  });
}

async function remove(a: NameArgs): Promise<void> {
  authModule().checkUserName(a.name);
  checkStoreDir(a, false);
  await withAuth(a, async (auth) => {
    await auth.removeUser(a.name);
    note(`user ${a.name} removed, with their API tokens`);
  });
}

export const userCommand: CommandModule<object, StoreArgs> = {
  command: 'user',
  describe: "manage the dispatcher's users: passwords, roles, API tokens",
  builder: (y) =>
    storeOptions(y)
      .command('add <name>', 'add a user', (y2) => roleOption(passwordOption(nameArg(y2))), run(addUser))
      .command('passwd <name>', "change a user's password (ends their sessions)", (y2) => passwordOption(nameArg(y2)), run(passwd))
      .command('role <name>', "set a user's roles", (y2) => roleOption(nameArg(y2)), run(role))
      .command(
        'token <name>',
        'make an API token (printed once on stdout), or --list or --revoke them',
        (y2) =>
          nameArg(y2)
            .option('list', { type: 'boolean', default: false, describe: "list the user's token ids" })
            .option('revoke', { type: 'string', describe: 'revoke the token with this id (an older id starting with "-": --revoke=ID)' })
            .option('json', { type: 'boolean', default: false, describe: 'with --list: as JSON' }),
        run(token),
      )
      .command('list', 'list users', (y2) => y2.option('json', { type: 'boolean', default: false, describe: 'as JSON' }), run(list))
      .command('remove <name>', 'remove a user and their API tokens', (y2) => nameArg(y2), run(remove))
      .demandCommand(1, 'give a user sub-command: add, passwd, role, token, list or remove'),
  handler: () => {},
};
