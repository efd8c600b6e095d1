import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TraceStore } from '../store/store';
import { TestCouch, openTestStore, startTestCouch } from '../../test/support/couch';
import { Auth, AuthError, Principal } from './auth';

const PW = 'correct horse';

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

async function refused(p: Promise<unknown>, code: AuthError['kind'], re: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AuthError, `not an AuthError: ${String(e)}`);
    assert.equal(e.kind, code, e.message);
    assert.match(e.message, re);
    return true;
  });
}

/** Flips one character of the part of a session token between `from` and `to`. */
function flip(token: string, at: number): string {
  const c = token[at] === 'A' ? 'B' : 'A';
  return token.slice(0, at) + c + token.slice(at + 1);
}

describe('auth against a real store', () => {
  let couch: TestCouch;
  const drops: (() => Promise<void>)[] = [];
  let store: TraceStore;
  let auth: Auth;

  async function freshStore(): Promise<TraceStore> {
    const t = await openTestStore(couch.url);
    drops.push(t.drop);
    return t.store;
  }

  before(async () => {
    couch = await startTestCouch();
    store = await freshStore();
    auth = await Auth.open(store);
    await auth.addUser('alice', PW, ['tracer']);
    await auth.addUser('root@ops', PW, ['admin']);
    await auth.addUser('vic', PW, ['viewer']);
  });

  after(async () => {
    for (const d of drops) await d();
    await couch?.stop();
  });

  test('a password, in every form, identifies the user; a wrong one or an unknown user does not', async () => {
    const want: Principal = { name: 'alice', roles: ['tracer'], via: 'password' };
    assert.deepEqual(await auth.authenticate({ user: 'alice', password: PW }), want);
    assert.deepEqual(await auth.authenticate({ basic: basic('alice', PW) }), want);
    assert.deepEqual(await auth.authenticate({ basic: basic('alice', PW).slice('Basic '.length) }), want);
    assert.equal(await auth.authenticate({ user: 'alice', password: 'correct horsE' }), null);
    assert.equal(await auth.authenticate({ basic: basic('alice', 'nope nope') }), null);
    assert.equal(await auth.authenticate({ user: 'mallory', password: PW }), null);
    assert.equal(await auth.authenticate({ user: 'not a valid name!', password: PW }), null);
    const doc = await store.getUser('alice');
    assert.match(doc!.passwordHash, /^scrypt\$/);
    assert.ok(!JSON.stringify(doc).includes(PW), 'the password is not stored');
  });

  test('malformed credentials are refused, not thrown', async () => {
    for (const c of [{}, { bearer: '' }, { bearer: 'garbage' }, { token: 'ts1.x.y' }, { basic: '!!!' }, { basic: Buffer.from('nocolon').toString('base64') }, { user: 'alice' }, { bearer: 42 }, null, 'alice']) {
      assert.equal(await auth.authenticate(c as never), null, JSON.stringify(c));
    }
  });

  test('an unknown user costs about what a wrong password does (no user-name probing by timing)', async () => {
    const time = async (user: string): Promise<number> => {
      const t = process.hrtime.bigint();
      for (let i = 0; i < 3; i++) assert.equal(await auth.authenticate({ user, password: 'wrong password' }, { address: 'timing' }), null);
      return Number(process.hrtime.bigint() - t) / 1e6;
    };
    await time('vic'); // warm-up
    const known = await time('vic');
    const unknown = await time('nobody-else');
    assert.ok(unknown > known * 0.4, `unknown user ${unknown.toFixed(0)} ms vs known ${known.toFixed(0)} ms`);
  });

  test('new users: names, roles and passwords are checked with clear errors', async () => {
    await refused(auth.addUser('alice', PW, ['viewer']), 'conflict', /alice already exists/);
    await refused(auth.addUser('bad name', PW, ['viewer']), 'bad_request', /user name "bad name" is not valid: use 1-64 letters/);
    await refused(auth.addUser('x'.repeat(65), PW, ['viewer']), 'bad_request', /not valid/);
    await refused(auth.addUser('', PW, ['viewer']), 'bad_request', /not valid/);
    await refused(auth.addUser('bob', PW, ['boss']), 'bad_request', /role "boss" is not one of admin, tracer, viewer/);
    await refused(auth.addUser('bob', PW, []), 'bad_request', /at least one role/);
    await refused(auth.addUser('bob', 'short', ['viewer']), 'bad_request', /too short \(5 characters\): use at least 8/);
    assert.equal(await store.getUser('bob'), null, 'nothing was written');
    const info = await auth.addUser('bob.b-1_@x', PW, ['viewer', 'tracer', 'viewer']);
    assert.deepEqual(info, { name: 'bob.b-1_@x', roles: ['tracer', 'viewer'], tokens: [] });
  });

  test('API tokens: made once, checked by hash, listed by id, revoked', async () => {
    const token = await auth.createToken('alice');
    assert.match(token, /^tf_[A-Za-z0-9_-]{12}_[A-Za-z0-9_-]{43}$/);
    const id = token.slice(3, 15);
    const doc = await store.getUser('alice');
    assert.equal(doc!.tokens.length, 1);
    assert.equal(doc!.tokens[0].id, id);
    assert.ok(!JSON.stringify(doc).includes(token.slice(16)), 'the secret is not stored');
    const want: Principal = { name: 'alice', roles: ['tracer'], via: 'token' };
    assert.deepEqual(await auth.authenticate({ bearer: token }), want);
    assert.deepEqual(await auth.authenticate({ bearer: `Bearer ${token}` }), want);
    assert.deepEqual(await auth.authenticate({ token }), want);
    assert.equal(await auth.authenticate({ bearer: flip(token, 30) }), null, 'a wrong secret');
    assert.equal(await auth.authenticate({ bearer: flip(token, 5) }), null, 'a wrong id');
    const second = await auth.createToken('alice');
    const listed = await auth.listTokens('alice');
    assert.deepEqual(listed.map((t) => t.id), [id, second.slice(3, 15)]);
    assert.ok(listed.every((t) => !Number.isNaN(Date.parse(t.createdAt))));
    await auth.revokeToken('alice', id);
    assert.equal(await auth.authenticate({ bearer: token }), null, 'revoked');
    assert.equal((await auth.authenticate({ bearer: second }))?.name, 'alice', 'the other token still works');
    await refused(auth.revokeToken('alice', id), 'not_found', /no API token/);
    await refused(auth.revokeToken('alice', 'nope'), 'bad_request', /not an API token id/);
    await refused(auth.createToken('mallory'), 'not_found', /no user named mallory/);
    await refused(auth.listTokens('mallory'), 'not_found', /no user named mallory/);
  });

  test('sessions: valid until expiry, refused when tampered with', async () => {
    const s = await auth.login('alice', PW);
    assert.ok(s);
    assert.equal(s.user, 'alice');
    assert.deepEqual(s.roles, ['tracer']);
    assert.match(s.token, /^ts1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    const ttl = Date.parse(s.expiresAt) - Date.now();
    assert.ok(ttl > 11.9 * 3600_000 && ttl <= 12 * 3600_000, `lifetime ${ttl} ms`);
    assert.deepEqual(await auth.authenticate({ bearer: s.token }), { name: 'alice', roles: ['tracer'], via: 'session' });
    assert.equal((await auth.authenticate({ token: s.token }))?.via, 'session');
    assert.equal(await auth.login('alice', 'wrong password'), null);
    assert.equal(await auth.login('mallory', PW), null);

    const [prefix, payload, sig] = s.token.split('.');
    // The payload rewritten to another user and a later expiry, signature kept.
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { u: string; exp: number; v: string };
    const forged = Buffer.from(JSON.stringify({ ...claims, u: 'root@ops', exp: claims.exp + 1e9 })).toString('base64url');
    assert.equal(await auth.authenticate({ bearer: `${prefix}.${forged}.${sig}` }), null, 'forged payload');
    assert.equal(await auth.authenticate({ bearer: `${prefix}.${payload}.${flip(sig, 3)}` }), null, 'bad signature');
    assert.equal(await auth.authenticate({ bearer: `${prefix}.${payload}.` }), null, 'no signature');
    assert.equal(await auth.authenticate({ bearer: `${prefix}.${payload}` }), null, 'no signature part');

    const short = await Auth.open(store, { sessionTtlMs: 300 });
    const brief = await short.login('alice', PW);
    assert.ok(brief);
    assert.equal((await short.authenticate({ bearer: brief.token }))?.name, 'alice');
    await sleep(400);
    assert.equal(await short.authenticate({ bearer: brief.token }), null, 'expired');
    assert.equal(await auth.authenticate({ bearer: brief.token }), null, 'expired for every instance');
  });

  test('a new password ends the old sessions; roles changes apply to live sessions and tokens', async () => {
    await auth.addUser('carol', PW, ['viewer']);
    const s = await auth.login('carol', PW);
    const token = await auth.createToken('carol');
    assert.ok(s);
    await auth.setRoles('carol', ['tracer', 'admin']);
    assert.deepEqual((await auth.authenticate({ bearer: s.token }))?.roles, ['admin', 'tracer']);
    assert.deepEqual((await auth.authenticate({ bearer: token }))?.roles, ['admin', 'tracer']);

    await auth.setPassword('carol', 'battery staple');
    assert.equal(await auth.authenticate({ bearer: s.token }), null, 'the old session ended');
    assert.equal(await auth.authenticate({ user: 'carol', password: PW }), null, 'the old password is gone');
    assert.equal((await auth.authenticate({ bearer: token }))?.name, 'carol', 'API tokens stay');
    const again = await auth.login('carol', 'battery staple');
    assert.equal((await auth.authenticate({ bearer: again!.token }))?.name, 'carol');
    // Setting the same password again is a new hash too: sessions end.
    await auth.setPassword('carol', 'battery staple');
    assert.equal(await auth.authenticate({ bearer: again!.token }), null);

    await refused(auth.setPassword('carol', 'short'), 'bad_request', /too short/);
    await refused(auth.setPassword('mallory', 'long enough'), 'not_found', /no user named mallory/);
    await refused(auth.setRoles('carol', ['root']), 'bad_request', /role "root"/);
    await refused(auth.setRoles('mallory', ['viewer']), 'not_found', /no user named mallory/);
  });

  test('removing a user ends their sessions and tokens; listing shows every user and nothing else', async () => {
    await auth.addUser('dave', PW, ['viewer']);
    const s = await auth.login('dave', PW);
    const token = await auth.createToken('dave');
    const names = (await auth.listUsers()).map((u) => u.name);
    assert.ok(['alice', 'dave', 'root@ops', 'vic'].every((n) => names.includes(n)), names.join());
    assert.deepEqual(names, [...names].sort(), 'by name');
    assert.ok(!names.some((n) => n === 'secrets' || n === undefined), 'the config document is not a user');
    const dave = (await auth.listUsers()).find((u) => u.name === 'dave');
    assert.deepEqual(dave, { name: 'dave', roles: ['viewer'], tokens: await auth.listTokens('dave') });
    assert.ok(!JSON.stringify(await auth.listUsers()).includes('scrypt'), 'no hashes in listings');

    await auth.removeUser('dave');
    assert.equal(await auth.authenticate({ bearer: s!.token }), null);
    assert.equal(await auth.authenticate({ bearer: token }), null);
    assert.equal(await auth.authenticate({ user: 'dave', password: PW }), null);
    assert.ok(!(await auth.listUsers()).some((u) => u.name === 'dave'));
    await refused(auth.removeUser('dave'), 'not_found', /no user named dave/);
  });

  test('the only admin can be neither removed nor demoted; with a second admin, either can', async () => {
    const own = await Auth.open(await freshStore());
    await own.addUser('boss', PW, ['admin']);
    await own.addUser('pat', PW, ['tracer']);
    await refused(own.removeUser('boss'), 'conflict', /boss is the only admin.*tracefleet user role OTHER --role admin/);
    await refused(own.setRoles('boss', ['tracer', 'viewer']), 'conflict', /boss is the only admin/);
    assert.deepEqual((await own.listUsers()).find((u) => u.name === 'boss')?.roles, ['admin'], 'nothing changed');
    await own.setRoles('boss', ['admin', 'viewer']);
    await own.removeUser('pat');

    await own.addUser('deputy', PW, ['admin']);
    await own.setRoles('boss', ['viewer']);
    await refused(own.removeUser('deputy'), 'conflict', /deputy is the only admin/);
    await own.setRoles('boss', ['admin']);
    await own.removeUser('deputy');
    assert.deepEqual((await own.listUsers()).map((u) => u.name), ['boss']);
    await refused(own.removeUser('nobody'), 'not_found', /no user named nobody/);
  });

  test('roles decide what a principal can do', async () => {
    const admin = await auth.authenticate({ user: 'root@ops', password: PW });
    const tracer = await auth.authenticate({ user: 'alice', password: PW });
    const viewer = await auth.authenticate({ user: 'vic', password: PW });
    assert.ok(admin && tracer && viewer);
    const table = [admin, tracer, viewer].map((p) => (['trace', 'read', 'admin'] as const).map((a) => auth.can(p, a)));
    assert.deepEqual(table, [
      [true, true, true],
      [true, true, false],
      [false, true, false],
    ]);
    assert.equal(auth.can({ name: 'x', roles: [], via: 'token' }, 'read'), false, 'no role, no access');
    // A role a newer dispatcher may have written grants nothing here.
    await store.updateUser('vic', (d) => {
      d.roles = ['viewer', 'superuser'];
    });
    assert.deepEqual((await auth.authenticate({ user: 'vic', password: PW }))?.roles, ['viewer']);
  });

  test('every dispatcher on a database signs with one key, made once even when they start together', async () => {
    const shared = await freshStore();
    const [a, b, c] = await Promise.all([Auth.open(shared), Auth.open(shared), Auth.open(shared)]);
    await a.addUser('erin', PW, ['viewer']);
    const s = await b.login('erin', PW);
    assert.ok(s);
    assert.equal((await a.authenticate({ bearer: s.token }))?.name, 'erin');
    assert.equal((await c.authenticate({ bearer: s.token }))?.name, 'erin');
    const reopened = await Auth.open(await TraceStore.open({ url: couch.url, db: shared.dbName }));
    assert.equal((await reopened.authenticate({ bearer: s.token }))?.name, 'erin');

    // Another database: another key, even for a user of the same name.
    const elsewhere = await Auth.open(await freshStore());
    await elsewhere.addUser('erin', PW, ['viewer']);
    assert.equal(await elsewhere.authenticate({ bearer: s.token }), null);
  });

  test('failed logins are limited per user and address, with a clear error', async () => {
    const limited = await Auth.open(store, { rateLimit: { maxFailures: 3, windowMs: 4000 } });
    const from = { address: '192.0.2.7' };
    for (let i = 0; i < 3; i++) assert.equal(await limited.authenticate({ user: 'vic', password: `wrong ${i} guess` }, from), null);
    // Even the right password is refused now, by authenticate and login alike.
    await refused(limited.authenticate({ user: 'vic', password: PW }, from), 'rate_limited', /too many failed logins for "vic" from 192\.0\.2\.7: try again in \d+ s/);
    await refused(limited.login('vic', PW, from), 'rate_limited', /too many failed logins/);
    await refused(limited.authenticate({ basic: basic('vic', PW) }, from), 'rate_limited', /too many/);
    await assert.rejects(limited.authenticate({ user: 'vic', password: PW }, from), (e: AuthError) => e.retryAfterMs! > 0 && e.retryAfterMs! <= 4000);
    // Another address, another user, and tokens are not affected.
    assert.equal((await limited.authenticate({ user: 'vic', password: PW }, { address: '192.0.2.8' }))?.name, 'vic');
    assert.equal((await limited.authenticate({ user: 'alice', password: PW }, from))?.name, 'alice');
    // Unknown users are counted too.
    for (let i = 0; i < 3; i++) await limited.authenticate({ user: 'ghost', password: 'guess guess' }, from);
    await refused(limited.authenticate({ user: 'ghost', password: 'guess guess' }, from), 'rate_limited', /"ghost"/);
    await sleep(4100);
    assert.equal((await limited.authenticate({ user: 'vic', password: PW }, from))?.name, 'vic', 'the window passed');
    // A success clears the count.
    for (let i = 0; i < 2; i++) await limited.authenticate({ user: 'vic', password: 'wrong again' }, from);
    assert.ok(await limited.login('vic', PW, from));
    for (let i = 0; i < 2; i++) await limited.authenticate({ user: 'vic', password: 'wrong again' }, from);
    assert.equal((await limited.authenticate({ user: 'vic', password: PW }, from))?.name, 'vic');
  });

  test('the session key document is made once and read back, not replaced', async () => {
    const s = await freshStore();
    const first = await s.ensureConfig('secrets', { sessionKey: 'one' });
    const second = await s.ensureConfig('secrets', { sessionKey: 'two' });
    assert.equal(second.data.sessionKey, 'one');
    assert.equal(second._rev, first._rev);
    // A key that is not one: a clear error, not a weak signature.
    await assert.rejects(Auth.open(s), /config:secrets document is missing or shorter than 32 bytes/);
  });
});
