import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Auth } from '../../dispatcher/auth/auth';
import { StoreAccess, openStore } from '../../dispatcher/daemon/store-access';
import { TestCouch, startTestCouch, uniqueDbName } from '../../test/support/couch';
import { silentLogger } from '../../shared/log/log';

const ROOT = join(__dirname, '..', '..', '..');
const BIN = join(ROOT, 'bin', 'tracefleet');
const PW = 'correct horse';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The real CLI in a child process; stdin gets `input` (or is closed at once). */
function tracefleet(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  // The test decides where the store is, not the caller's environment.
  for (const k of ['COUCHDB_URL', 'TRACEFLEET_DATA_DIR', 'TRACEFLEET_DEBUG']) delete env[k];
  if (!opts.env?.TRACEFLEET_NEW_PASSWORD) delete env.TRACEFLEET_NEW_PASSWORD;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r;
}

/** Exit 2 and one `tracefleet: ...` line on stderr matching `re`. */
function badInput(r: Run, re: RegExp): void {
  assert.equal(r.code, 2, `exit ${r.code}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^tracefleet: /);
  assert.match(lines[0], re);
  assert.equal(r.stdout, '');
}

describe('tracefleet user (the real CLI on a temp data dir)', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tracefleet-user-'));
  const dir = ['--data-dir', dataDir];
  let firstToken = '';
  let couch: TestCouch | undefined;

  after(async () => {
    await couch?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('on its own: the first user makes the store; bad names, roles and passwords exit 2', async () => {
    badInput(await tracefleet(['user', 'passwd', 'alice', ...dir], { input: `${PW}\n` }), /no dispatcher store in .*--data-dir/);

    const added = ok(await tracefleet(['user', 'add', 'alice', '--role', 'tracer', '--password-stdin', ...dir], { input: `${PW}\n` }));
    assert.match(added.stderr, /new embedded store/);
    assert.match(added.stderr, /user alice added \(tracer\)/);

    badInput(await tracefleet(['user', 'add', 'alice', '--role', 'viewer', '--password-stdin', ...dir], { input: `${PW}\n` }), /user alice already exists/);
    badInput(await tracefleet(['user', 'add', 'bob', '--role', 'boss', '--password-stdin', ...dir], { input: `${PW}\n` }), /role "boss" is not one of admin, tracer, viewer/);
    badInput(await tracefleet(['user', 'add', 'bad name!', '--role', 'viewer', '--password-stdin', ...dir], { input: `${PW}\n` }), /user name "bad name!" is not valid/);
    badInput(await tracefleet(['user', 'add', 'bob', '--role', 'viewer', ...dir]), /no password given: use --password-stdin/);
    badInput(await tracefleet(['user', 'add', 'bob', '--role', 'viewer', '--password-stdin', ...dir]), /read an empty password/);
    badInput(await tracefleet(['user', 'add', 'bob', '--role', 'viewer', ...dir], { env: { TRACEFLEET_NEW_PASSWORD: 'short' } }), /too short \(5 characters\)/);
    badInput(await tracefleet(['user', 'token', 'nobody', ...dir]), /no user named nobody/);

    ok(await tracefleet(['user', 'add', 'bob', '--role', 'viewer', '--role', 'tracer', ...dir], { env: { TRACEFLEET_NEW_PASSWORD: 'battery staple' } }));
    const made = ok(await tracefleet(['user', 'token', 'alice', ...dir]));
    assert.match(made.stdout, /^tf_[A-Za-z0-9_-]{12}_[A-Za-z0-9_-]{43}\n$/);
    assert.match(made.stderr, /shown only now/);
    firstToken = made.stdout.trim();

    const listed = JSON.parse(ok(await tracefleet(['user', 'list', '--json', ...dir])).stdout) as unknown;
    assert.deepEqual(
      (listed as { name: string; roles: string[]; tokens: { id: string }[] }[]).map((u) => [u.name, u.roles, u.tokens.map((t) => t.id)]),
      [
        ['alice', ['tracer'], [firstToken.slice(3, 15)]],
        ['bob', ['tracer', 'viewer'], []],
      ],
    );
  });

  test("beside a running dispatcher: the CLI works in its store, and what it does applies at once", async () => {
    assert.ok(firstToken, 'the previous test made a token');
    // What the dispatcher daemon does: start the embedded store and publish its URL.
    const access: StoreAccess = await openStore({ dataDir, publish: true, logger: silentLogger });
    try {
      const auth = await Auth.open(access.store);
      assert.equal((await auth.authenticate({ user: 'alice', password: PW }))?.name, 'alice');
      assert.equal((await auth.authenticate({ user: 'bob', password: 'battery staple' }))?.name, 'bob');
      assert.deepEqual(await auth.authenticate({ bearer: firstToken }), { name: 'alice', roles: ['tracer'], via: 'token' });
      const session = await auth.login('alice', PW);
      assert.ok(session);

      ok(await tracefleet(['user', 'passwd', 'alice', '--password-stdin', ...dir], { input: 'new password 2\r\n' }));
      assert.equal(await auth.authenticate({ bearer: session.token }), null, 'the old session ended');
      assert.equal(await auth.authenticate({ user: 'alice', password: PW }), null);
      assert.equal((await auth.authenticate({ user: 'alice', password: 'new password 2' }))?.name, 'alice', 'one line, CRLF stripped');
      badInput(await tracefleet(['user', 'passwd', 'alice', '--password-stdin', ...dir], { input: 'short\n' }), /too short/);

      ok(await tracefleet(['user', 'role', 'alice', '--role', 'admin', ...dir]));
      assert.deepEqual((await auth.authenticate({ bearer: firstToken }))?.roles, ['admin']);
      badInput(await tracefleet(['user', 'role', 'alice', '--role', 'root', ...dir]), /role "root"/);
      badInput(await tracefleet(['user', 'role', 'nobody', '--role', 'viewer', ...dir]), /no user named nobody/);

      const id = firstToken.slice(3, 15);
      const plain = ok(await tracefleet(['user', 'token', 'alice', '--list', ...dir]));
      assert.match(plain.stdout, new RegExp(`^${id.replace(/-/g, '\\-')}  \\d{4}-\\d\\d-\\d\\dT`));
      const json = JSON.parse(ok(await tracefleet(['user', 'token', 'alice', '--list', '--json', ...dir])).stdout) as { id: string }[];
      assert.deepEqual(json.map((t) => t.id), [id]);
      ok(await tracefleet(['user', 'token', 'alice', '--revoke', id, ...dir]));
      assert.equal(await auth.authenticate({ bearer: firstToken }), null, 'revoked');
      badInput(await tracefleet(['user', 'token', 'alice', '--revoke', id, ...dir]), /has no API token/);
      badInput(await tracefleet(['user', 'token', 'alice', '--revoke', id, '--list', ...dir]), /not both/);

      const table = ok(await tracefleet(['user', 'list', ...dir])).stdout.split('\n');
      assert.match(table[0], /^NAME\s+ROLES\s+TOKENS$/);
      assert.match(table[1], /^alice\s+admin\s+0$/);
      assert.match(table[2], /^bob\s+tracer,viewer\s+0$/);

      ok(await tracefleet(['user', 'remove', 'bob', ...dir]));
      assert.equal(await auth.authenticate({ user: 'bob', password: 'battery staple' }), null);
      badInput(await tracefleet(['user', 'remove', 'bob', ...dir]), /no user named bob/);
      badInput(await tracefleet(['user', 'remove', 'alice', ...dir]), /alice is the only admin/);
      badInput(await tracefleet(['user', 'role', 'alice', '--role', 'viewer', ...dir]), /alice is the only admin/);
      assert.deepEqual((await auth.authenticate({ user: 'alice', password: 'new password 2' }))?.roles, ['admin'], 'the last admin stays');
    } finally {
      await access.close();
    }
  });

  test('--couchdb selects a CouchDB server and database instead of the data dir', async () => {
    couch = await startTestCouch();
    const db = uniqueDbName();
    const at = ['--couchdb', couch.url, '--db', db, '--data-dir', join(dataDir, 'unused')];
    try {
      ok(await tracefleet(['user', 'add', 'root', '--role', 'admin', '--password-stdin', ...at], { input: `${PW}\n` }));
      const users = JSON.parse(ok(await tracefleet(['user', 'list', '--json', ...at])).stdout) as { name: string }[];
      assert.deepEqual(users.map((u) => u.name), ['root']);
      const r = await tracefleet(['user', 'list', '--couchdb', 'http://127.0.0.1:1', '--db', db]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^tracefleet: .*unreachable/);
    } finally {
      const nano = (await import('nano')).default;
      await nano(couch.url).db.destroy(db).catch(() => {});
    }
  });
});
