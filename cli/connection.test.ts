import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from './errors';
import { configPathOf, DEFAULT_URL, resolveConnection, saveSession } from './connection';

function withDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tf-conn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeConfig(path: string, body: unknown, mode = 0o600): void {
  writeFileSync(path, typeof body === 'string' ? body : JSON.stringify(body), { mode });
  chmodSync(path, mode);
}

test('url: flag, then environment, then config file, then the default', (t) => {
  const dir = withDir(t);
  const cfg = join(dir, 'c.json');
  writeConfig(cfg, { url: 'http://cfg.example:8060/' });
  const env = { HOME: dir, TRACEFLEET_CONFIG: cfg };
  assert.equal(resolveConnection({}, { HOME: dir }).url, DEFAULT_URL);
  assert.equal(resolveConnection({}, env).url, 'http://cfg.example:8060');
  assert.equal(resolveConnection({}, { ...env, TRACEFLEET_URL: 'https://env.example' }).url, 'https://env.example');
  assert.equal(resolveConnection({ url: 'http://flag.example:1/prefix/' }, { ...env, TRACEFLEET_URL: 'https://env.example' }).url, 'http://flag.example:1/prefix');
  assert.throws(() => resolveConnection({ url: 'dispatcher:8060' }, env), (e: Error) => e instanceof UsageError && e.exit === 2 && /bad --url 'dispatcher:8060'.*http:\/\/dispatcher:8060/.test(e.message));
  assert.throws(() => resolveConnection({ url: 'ftp://x' }, env), /http:\/\/ or https:\/\//);
  assert.throws(() => resolveConnection({ url: 'not a url' }, env), /bad --url 'not a url'/);
  assert.throws(() => resolveConnection({ url: 'http://u:p@x' }, env), /not in the URL/);
});

test('credentials come whole from the highest layer that has any', (t) => {
  const dir = withDir(t);
  const cfg = join(dir, 'c.json');
  writeConfig(cfg, { url: 'http://d:8060', token: 'cfg-token', user: 'cfguser', password: 'cfg-password' });
  const base = { HOME: dir, TRACEFLEET_CONFIG: cfg };
  const r = (flags: object, env: object) => {
    const c = resolveConnection(flags, { ...base, ...env });
    return { cred: c.credentials, from: c.credentialSource };
  };
  // Config: the token wins over the user in the same layer (it is what login saved).
  assert.deepEqual(r({}, {}), { cred: { token: 'cfg-token' }, from: `config file ${cfg}` });
  assert.deepEqual(r({}, { TRACEFLEET_TOKEN: 'env-token' }), { cred: { token: 'env-token' }, from: 'environment' });
  // A user in the environment beats the config's token; the password may come from a lower layer naming no other user.
  assert.deepEqual(r({}, { TRACEFLEET_USER: 'envuser' }), { cred: { user: 'envuser' }, from: 'environment' });
  assert.deepEqual(r({}, { TRACEFLEET_USER: 'cfguser' }), { cred: { user: 'cfguser', password: 'cfg-password' }, from: 'environment' });
  assert.deepEqual(r({}, { TRACEFLEET_USER: 'envuser', TRACEFLEET_PASSWORD: 'env-pw' }), { cred: { user: 'envuser', password: 'env-pw' }, from: 'environment' });
  assert.deepEqual(r({ token: 'flag-token' }, { TRACEFLEET_USER: 'envuser', TRACEFLEET_TOKEN: 'env-token' }), { cred: { token: 'flag-token' }, from: 'flags' });
  assert.deepEqual(r({ user: 'flaguser', password: 'flag-pw' }, { TRACEFLEET_TOKEN: 'env-token' }), { cred: { user: 'flaguser', password: 'flag-pw' }, from: 'flags' });
  // The config's password is its user's: never sent with another name.
  assert.deepEqual(r({ user: 'flaguser' }, {}), { cred: { user: 'flaguser' }, from: 'flags' });
  assert.deepEqual(r({ user: 'cfguser' }, {}), { cred: { user: 'cfguser', password: 'cfg-password' }, from: 'flags' });
  // Empty values count as not given.
  assert.deepEqual(r({ token: '' }, { TRACEFLEET_TOKEN: '' }), { cred: { token: 'cfg-token' }, from: `config file ${cfg}` });
});

test("the config file's credentials are never sent to another dispatcher", (t) => {
  const dir = withDir(t);
  const cfg = join(dir, 'c.json');
  writeConfig(cfg, { url: 'http://d:8060', token: 'cfg-token' });
  const c = resolveConnection({ url: 'http://elsewhere:8060' }, { HOME: dir, TRACEFLEET_CONFIG: cfg });
  assert.equal(c.credentials, null);
  assert.match(c.notes.join('\n'), /credentials in .* are for http:\/\/d:8060, not http:\/\/elsewhere:8060/);
  // Same dispatcher spelled with a trailing slash: used.
  assert.deepEqual(resolveConnection({ url: 'http://d:8060/' }, { HOME: dir, TRACEFLEET_CONFIG: cfg }).credentials, { token: 'cfg-token' });
  // A user without any password anywhere: asked later (or refused without a terminal).
  assert.deepEqual(resolveConnection({ user: 'bob' }, { HOME: dir, TRACEFLEET_CONFIG: join(dir, 'none.json') }, { login: true }).credentials, { user: 'bob' });
});

test('config file: default paths, clear errors, permission note', (t) => {
  const dir = withDir(t);
  assert.equal(configPathOf(undefined, { HOME: dir }).path, join(dir, '.config', 'tracefleet', 'config.json'));
  assert.equal(configPathOf(undefined, { HOME: dir, XDG_CONFIG_HOME: '/x/cfg' }).path, '/x/cfg/tracefleet/config.json');
  assert.equal(configPathOf(undefined, { HOME: dir, XDG_CONFIG_HOME: 'relative' }).path, join(dir, '.config', 'tracefleet', 'config.json'));
  assert.deepEqual(configPathOf('f.json', { TRACEFLEET_CONFIG: 'e.json' }), { path: 'f.json', explicit: true });

  // The default file is found under XDG_CONFIG_HOME.
  mkdirSync(join(dir, 'xdg', 'tracefleet'), { recursive: true });
  writeConfig(join(dir, 'xdg', 'tracefleet', 'config.json'), { url: 'http://xdg:1', token: 'x' });
  assert.equal(resolveConnection({}, { HOME: dir, XDG_CONFIG_HOME: join(dir, 'xdg') }).url, 'http://xdg:1');

  const cfg = join(dir, 'c.json');
  const bad = (body: unknown, re: RegExp) => {
    writeConfig(cfg, body);
    assert.throws(() => resolveConnection({ config: cfg }, { HOME: dir }), (e: Error) => e instanceof UsageError && e.exit === 2 && re.test(e.message), String(body));
  };
  bad('{"url": "http://d:1",', /not valid JSON/);
  bad({ url: 'http://d:1', tokn: 'x' }, /unrecognized key.*allowed: url, token, user, password, ca/i);
  bad({ token: 'x' }, /url: Required/);
  bad({ url: 'http://d:1', token: 5 }, /token: Expected string/);
  bad({ url: 'd:1' }, /bad url in config file/);
  assert.throws(() => resolveConnection({ config: join(dir, 'missing.json') }, { HOME: dir }), /does not exist: create it with tracefleet login/);
  assert.throws(() => resolveConnection({ config: dir }, { HOME: dir }), /is a directory/);

  writeConfig(cfg, { url: 'http://d:1', token: 'x' }, 0o644);
  assert.match(resolveConnection({ config: cfg }, { HOME: dir }).notes.join('\n'), /readable by others: chmod 600/);
  writeConfig(cfg, { url: 'http://d:1', token: 'x' }, 0o600);
  assert.deepEqual(resolveConnection({ config: cfg }, { HOME: dir }).notes, []);

  assert.throws(() => resolveConnection({ config: cfg, ca: join(dir, 'nope.pem') }, { HOME: dir }), /cannot read the CA file/);
  writeFileSync(join(dir, 'not.pem'), 'hello');
  assert.throws(() => resolveConnection({ config: cfg, ca: join(dir, 'not.pem') }, { HOME: dir }), /holds no PEM certificate/);
});

test('saveSession writes mode 0600, keeps the CA of the same dispatcher, drops another one', (t) => {
  const dir = withDir(t);
  const cfg = join(dir, 'sub', 'config.json');
  saveSession(cfg, { url: 'https://d:8060', token: 'tok1', user: 'alice', ca: 'ca.pem' });
  assert.equal(statSync(cfg).mode & 0o777, 0o600);
  const first = JSON.parse(readFileSync(cfg, 'utf8'));
  assert.equal(first.token, 'tok1');
  assert.equal(first.ca, join(process.cwd(), 'ca.pem'));
  writeConfig(cfg, { ...first, password: 'old-password' }, 0o644);
  saveSession(cfg, { url: 'https://d:8060', token: 'tok2', user: 'alice' });
  assert.deepEqual(JSON.parse(readFileSync(cfg, 'utf8')), { url: 'https://d:8060', token: 'tok2', user: 'alice', ca: first.ca });
  assert.equal(statSync(cfg).mode & 0o777, 0o600);
  saveSession(cfg, { url: 'http://other:1', token: 'tok3', user: 'bob' });
  assert.deepEqual(JSON.parse(readFileSync(cfg, 'utf8')), { url: 'http://other:1', token: 'tok3', user: 'bob' });
  // A broken file is replaced by a good one.
  writeConfig(cfg, 'not json');
  saveSession(cfg, { url: 'http://other:1', token: 'tok4', user: 'bob' });
  assert.equal(JSON.parse(readFileSync(cfg, 'utf8')).token, 'tok4');
  assert.throws(() => saveSession(join(dir, 'sub', 'config.json', 'x'), { url: 'http://d:1', token: 't', user: 'u' }), /cannot write config file/);
});
