/*
 * Who may do what at the dispatcher: users with roles, passwords, API tokens
 * and sessions, all kept in the store's user documents (layout.ts) so that
 * every dispatcher on the same database agrees.
 *
 *   admin   everything, including managing users
 *   tracer  start and cancel traces, read everything
 *   viewer  read traces and agents
 */

import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ClientAuth, ROLES, Role, clientAuth } from '../../shared/protocol/client';
import type { UserDoc } from '../store/layout';
import { StoreError, TraceStore } from '../store/store';
import { AuthError } from './errors';
import { DUMMY_HASH, checkPasswordPolicy, hashPassword, verifyPassword } from './password';
import { FailureDelay, FailureDelayOptions, FailureLimitOptions, FailureLimiter } from './ratelimit';
import { DOWNLOAD_TOKEN_TTL_MS, SESSION_PREFIX, SessionKeys } from './session';
import { LocalSpentTokens, SpentTokens } from './spent';
import { isApiTokenId, newApiToken, parseApiToken, secretMatches } from './tokens';
import { TracefleetError } from '../../shared/errors/catalogue';

export { AuthError } from './errors';

export interface Principal {
  name: string;
  roles: Role[];
  via: 'password' | 'session' | 'token';
}

export type Action = 'trace' | 'read' | 'admin';

/**
 * What a principal's credential was checked against, so that current() can
 * tell a long-lived connection when it no longer holds: the keyed stamp of the
 * password hash (password and session logins; a session also its expiry), or
 * the API token's id.
 */
type Proof = { stamp: string; exp?: number } | { tokenId: string };

/** The socket handshake's auth, an HTTP `Authorization: Basic` value, or a `Bearer` one (session or API token). */
export type Credentials = ClientAuth | { basic: string } | { bearer: string };

export interface AuthContext {
  /** The client's address: failed logins are counted per user and address. */
  address?: string;
}

export interface LoginResult {
  /** The session token (Bearer, or the handshake's `token`). */
  token: string;
  user: string;
  roles: Role[];
  /** ISO 8601. */
  expiresAt: string;
}

export interface TokenInfo {
  id: string;
  createdAt: string;
}

export interface UserInfo {
  name: string;
  roles: Role[];
  tokens: TokenInfo[];
}

export interface AuthOptions {
  /** Session lifetime; default 12 h. */
  sessionTtlMs?: number;
  /** How long current() may use a user document it read (ms); default 2 s. Changes made here are seen at once. */
  userCacheMs?: number;
  /** Failures per user and address. */
  rateLimit?: FailureLimitOptions;
  /**
   * Failures per address whatever the user names (default 20 in 5 minutes):
   * a guesser trying made-up names is stopped too, without touching other
   * addresses' logins.
   */
  addressRateLimit?: FailureLimitOptions;
  /** The wait before a password check that grows with the user's failures from any address. */
  userDelay?: FailureDelayOptions;
  /** Logins waiting out that delay at once, beyond which more are refused as busy; default 1000. */
  maxDelayed?: number;
  /** Download tokens spent; default this dispatcher's own set (a Redis-shared one with several dispatchers). */
  spentTokens?: SpentTokens;
}

export const DEFAULT_SESSION_TTL_MS = 12 * 3600_000;
/** Keeps a user document (and its view rows) small. */
export const MAX_TOKENS_PER_USER = 100;

const USER_NAME = /^[A-Za-z0-9_.@-]{1,64}$/;

const credentials = z.union([
  clientAuth,
  z.object({ basic: z.string().max(4096) }).strict(),
  z.object({ bearer: z.string().max(4096) }).strict(),
]);

export function isValidUserName(name: unknown): name is string {
  return typeof name === 'string' && USER_NAME.test(name);
}

export function checkUserName(name: unknown): string {
  if (!isValidUserName(name)) {
    throw new AuthError('bad_request', `user name ${JSON.stringify(name)} is not valid: use 1-64 letters, digits, '_', '.', '@' or '-'`);
  }
  return name;
}

/** The roles, each once, in ROLES order; at least one. */
export function checkRoles(roles: unknown): Role[] {
  const list = Array.isArray(roles) ? roles : [roles];
  for (const r of list) {
    if (!(ROLES as readonly unknown[]).includes(r)) {
      throw new AuthError('bad_request', `role ${JSON.stringify(r)} is not one of ${ROLES.join(', ')}`);
    }
  }
  if (list.length === 0) throw new AuthError('bad_request', `give at least one role: ${ROLES.join(', ')}`);
  return ROLES.filter((r) => list.includes(r));
}

/** What a stored document grants: unknown role names (a newer dispatcher's?) grant nothing. */
function rolesOf(user: UserDoc): Role[] {
  return ROLES.filter((r) => Array.isArray(user.roles) && user.roles.includes(r));
}

function infoOf(user: UserDoc): UserInfo {
  return { name: user.name, roles: rolesOf(user), tokens: (user.tokens ?? []).map((t) => ({ id: t.id, createdAt: t.createdAt })) };
}

function decodeBasic(value: string): { user: string; password: string } | null {
  const b64 = value.replace(/^Basic\s+/i, '').trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return null;
  const text = Buffer.from(b64, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** Users current() remembers at most: a cache, not a copy of the user list. */
const USER_CACHE_MAX = 10_000;

export class Auth {
  readonly sessionTtlMs: number;
  private readonly limiter: FailureLimiter;
  private readonly addressLimiter: FailureLimiter;
  private readonly userDelay: FailureDelay;
  private readonly maxDelayed: number;
  /** Logins waiting out their user's delay now. */
  private delayed = 0;
  private readonly userCacheMs: number;
  private readonly spent: SpentTokens;
  /** Kept beside the principals this Auth made, not in them: a principal stays plain data for its users. */
  private readonly proofs = new WeakMap<Principal, Proof>();
  /** User documents read by current(), shared by the reads in flight. */
  private readonly users = new Map<string, { at: number; doc: Promise<UserDoc | null> }>();

  private constructor(
    readonly store: TraceStore,
    private readonly keys: SessionKeys,
    opts: AuthOptions,
  ) {
    this.sessionTtlMs = opts.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS;
    if (!(this.sessionTtlMs > 0)) throw new Error(`sessionTtlMs ${opts.sessionTtlMs} is not a positive number of milliseconds`);
    this.limiter = new FailureLimiter(opts.rateLimit);
    this.addressLimiter = new FailureLimiter({ maxFailures: 20, ...opts.addressRateLimit });
    this.userDelay = new FailureDelay(opts.userDelay);
    this.maxDelayed = Math.max(0, Math.floor(opts.maxDelayed ?? 1000));
    this.userCacheMs = Math.max(0, opts.userCacheMs ?? 2000);
    this.spent = opts.spentTokens ?? new LocalSpentTokens();
  }

  /** Reads (or makes, the first time on this database) the shared session key. */
  static async open(store: TraceStore, opts: AuthOptions = {}): Promise<Auth> {
    return new Auth(store, await SessionKeys.load(store), opts);
  }

  // ---- checking credentials ------------------------------------------------

  /**
   * Who these credentials belong to, or null when they are wrong, expired,
   * malformed or of a user who no longer exists. Throws AuthError
   * 'rate_limited' when this user and address failed too often of late, and
   * StoreError when the store cannot be read.
   */
  async authenticate(cred: Credentials, ctx: AuthContext = {}): Promise<Principal | null> {
    const parsed = credentials.safeParse(cred);
    if (!parsed.success) return null;
    const c = parsed.data;
    if ('user' in c) return this.byPassword(c.user, c.password, ctx);
    if ('basic' in c) {
      const b = decodeBasic(c.basic);
      return b ? this.byPassword(b.user, b.password, ctx) : null;
    }
    const token = ('token' in c ? c.token : c.bearer).replace(/^Bearer\s+/i, '').trim();
    if (token.startsWith(SESSION_PREFIX)) return this.checkSession(token);
    return this.checkApiToken(token);
  }

  /** A session for the user, or null when the password is wrong (rate limited like authenticate). */
  async login(user: string, password: string, ctx: AuthContext = {}): Promise<LoginResult | null> {
    const doc = await this.checkPassword(user, password, ctx);
    if (!doc) return null;
    // Stamped with the hash just checked: a password changed meanwhile ends this session too.
    const exp = Date.now() + this.sessionTtlMs;
    const token = this.keys.sign({ u: doc.name, exp, v: this.keys.passwordStamp(doc.passwordHash) });
    return { token, user: doc.name, roles: rolesOf(doc), expiresAt: new Date(exp).toISOString() };
  }

  can(p: Principal, action: Action): boolean {
    switch (action) {
      case 'admin':
        return p.roles.includes('admin');
      case 'trace':
        return p.roles.includes('admin') || p.roles.includes('tracer');
      case 'read':
        return p.roles.length > 0;
      default:
        return false;
    }
  }

  /** Who may cancel or delete a trace: its owner while they may still trace, or an admin. */
  canManage(p: Principal, owner: string): boolean {
    return this.can(p, 'admin') || (p.name === owner && this.can(p, 'trace'));
  }

  /**
   * The principal as the store has it now: null once the user is gone, their
   * password changed (password and session logins), their session expired or
   * their API token revoked; otherwise with their current roles. Reads the
   * user through a short cache: open connections call it for every message.
   * Users are changed straight in the store (`tracefleet user`), which every
   * dispatcher reads, so this needs no message between dispatchers.
   */
  async current(p: Principal, now = Date.now()): Promise<Principal | null> {
    const proof = this.proofs.get(p);
    if (!proof || !isValidUserName(p.name)) return null;
    const user = await this.cachedUser(p.name, now);
    if (!user) return null;
    const holds =
      'tokenId' in proof
        ? (user.tokens ?? []).some((t) => t.id === proof.tokenId)
        : this.keys.passwordStamp(user.passwordHash) === proof.stamp && (proof.exp === undefined || proof.exp > now);
    if (!holds) return null;
    const fresh = { ...p, roles: rolesOf(user) };
    this.proofs.set(fresh, proof);
    return fresh;
  }

  /** Forgets what current() read of a user (their document changed). */
  forget(name: string): void {
    this.users.delete(name);
  }

  private cachedUser(name: string, now: number): Promise<UserDoc | null> {
    const hit = this.users.get(name);
    if (hit && now - hit.at <= this.userCacheMs) return hit.doc;
    if (this.users.size >= USER_CACHE_MAX) this.users.delete(this.users.keys().next().value as string);
    const doc = this.store.getUser(name);
    const entry = { at: now, doc };
    this.users.set(name, entry);
    // A failed read is not remembered: the next message asks the store again.
    doc.catch(() => {
      if (this.users.get(name) === entry) this.users.delete(name);
    });
    return doc;
  }

  private principal(user: UserDoc, via: Principal['via'], proof: Proof): Principal {
    const p: Principal = { name: user.name, roles: rolesOf(user), via };
    this.proofs.set(p, proof);
    return p;
  }

  private async byPassword(name: string, password: string, ctx: AuthContext): Promise<Principal | null> {
    const user = await this.checkPassword(name, password, ctx);
    return user && this.principal(user, 'password', { stamp: this.keys.passwordStamp(user.passwordHash) });
  }

  /** The user document when the password is right. */
  private async checkPassword(name: string, password: string, ctx: AuthContext): Promise<UserDoc | null> {
    // Names no user can have share one count per address: a guesser cannot
    // fill the limiter's memory with long made-up names.
    const userKey = isValidUserName(name) ? name : '(invalid)';
    const key = `${userKey}\0${(ctx.address ?? '').slice(0, 100)}`;
    const wait = this.limiter.retryAfter(key);
    if (wait > 0) {
      throw new AuthError(
        'rate_limited',
        `too many failed logins for ${JSON.stringify(name.slice(0, 64))}${ctx.address ? ` from ${ctx.address}` : ''}: try again in ${Math.ceil(wait / 1000)} s`,
        wait,
      );
    }
    const address = (ctx.address ?? '').slice(0, 100);
    const addressWait = address ? this.addressLimiter.retryAfter(address) : 0;
    if (addressWait > 0) {
      throw new AuthError('rate_limited', `too many failed logins from ${address}: try again in ${Math.ceil(addressWait / 1000)} s`, addressWait);
    }
    // Made-up names are delayed like real ones: the wait tells no one which names exist.
    const delay = this.userDelay.delayFor(userKey);
    if (delay > 0) {
      if (this.delayed >= this.maxDelayed) {
        throw new AuthError('busy', `the dispatcher is holding ${this.delayed} logins back already: try again in a few seconds`, delay);
      }
      // Before the hashing queue, so a waiting login holds no hashing slot.
      this.delayed++;
      try {
        await new Promise((r) => setTimeout(r, delay));
      } finally {
        this.delayed--;
      }
    }
    const user = isValidUserName(name) ? await this.store.getUser(name) : null;
    let ok: boolean;
    if (user) {
      ok = await verifyPassword(password, user.passwordHash);
    } else {
      // As long as a wrong password for a real user: the answer's timing
      // does not tell which user names exist.
      await verifyPassword(password, DUMMY_HASH);
      ok = false;
    }
    if (!ok || !user) {
      this.limiter.fail(key);
      // Neither is cleared by a success: one right password must not reset a guesser's count.
      if (address) this.addressLimiter.fail(address);
      this.userDelay.fail(userKey);
      return null;
    }
    this.limiter.succeed(key);
    return user;
  }

  /**
   * A token that opens one download of one path within a few minutes, for a
   * link the browser follows (a link carries no header, and a session token
   * in a URL ends up in history and proxy logs).
   */
  async downloadToken(p: Principal, path: string): Promise<{ token: string; expiresAt: string }> {
    const user = await this.store.getUser(p.name);
    if (!user) throw noSuchUser(p.name);
    const exp = Date.now() + DOWNLOAD_TOKEN_TTL_MS;
    const j = randomBytes(12).toString('base64url');
    return { token: this.keys.signDownload({ u: user.name, exp, v: this.keys.passwordStamp(user.passwordHash), p: path, j }), expiresAt: new Date(exp).toISOString() };
  }

  /**
   * Whose download token this is, if it is good for `path`; with the user's
   * roles as they are now. `spend` (a GET): this use is its one download.
   * Throws TF_DOWNLOAD_LINK_USED for a token spent already.
   */
  async authenticateDownload(token: string, path: string, spend = true): Promise<Principal | null> {
    const claims = this.keys.verifyDownload(token, path);
    if (!claims || !isValidUserName(claims.u)) return null;
    const user = await this.store.getUser(claims.u);
    if (!user || this.keys.passwordStamp(user.passwordHash) !== claims.v) return null;
    const fresh = spend ? await this.spent.spend(claims.j, claims.exp) : !(await this.spent.isSpent(claims.j));
    if (!fresh) throw new TracefleetError('TF_DOWNLOAD_LINK_USED', {});
    return this.principal(user, 'session', { stamp: claims.v, exp: claims.exp });
  }

  private async checkSession(token: string): Promise<Principal | null> {
    // A minute's grace for clocks of dispatchers sharing the database.
    const claims = this.keys.verify(token, this.sessionTtlMs + 60_000);
    if (!claims || !isValidUserName(claims.u)) return null;
    const user = await this.store.getUser(claims.u);
    if (!user || this.keys.passwordStamp(user.passwordHash) !== claims.v) return null;
    return this.principal(user, 'session', { stamp: claims.v, exp: claims.exp });
  }

  private async checkApiToken(token: string): Promise<Principal | null> {
    const t = parseApiToken(token);
    if (!t) return null;
    const user = await this.store.findUserByTokenId(t.id);
    const stored = user?.tokens?.find((x) => x.id === t.id);
    if (!user || !stored || !secretMatches(t.secret, stored.hash)) return null;
    return this.principal(user, 'token', { tokenId: t.id });
  }

  // ---- managing users ------------------------------------------------------

  private async mustGet(name: string): Promise<UserDoc> {
    const user = await this.store.getUser(checkUserName(name));
    if (!user) throw noSuchUser(name);
    return user;
  }

  private async change(name: string, mutate: (d: UserDoc) => UserDoc | void | null): Promise<UserDoc> {
    try {
      return await this.store.updateUser(checkUserName(name), mutate);
    } catch (err) {
      if (err instanceof StoreError && err.statusCode === 404) throw noSuchUser(name);
      throw err;
    } finally {
      this.forget(name);
    }
  }

  async addUser(name: string, password: string, roles: Role[] | string[]): Promise<UserInfo> {
    checkUserName(name);
    const granted = checkRoles(roles);
    checkPasswordPolicy(password);
    const passwordHash = await hashPassword(password);
    try {
      return infoOf(await this.store.createUser({ name, roles: granted, passwordHash }));
    } catch (err) {
      if (err instanceof StoreError && err.statusCode === 409) {
        throw new AuthError('conflict', `user ${name} already exists: change it with \`tracefleet user passwd\` or \`tracefleet user role\``);
      }
      throw err;
    }
  }

  /** Also ends every session of the user (their stamp no longer matches); API tokens stay. */
  async setPassword(name: string, password: string): Promise<void> {
    checkUserName(name);
    checkPasswordPolicy(password);
    const passwordHash = await hashPassword(password);
    await this.change(name, (d) => {
      d.passwordHash = passwordHash;
    });
  }

  async setRoles(name: string, roles: Role[] | string[]): Promise<UserInfo> {
    const granted = checkRoles(roles);
    if (!granted.includes('admin')) await this.refuseLastAdmin(name, `taking admin from ${name}`);
    return infoOf(
      await this.change(name, (d) => {
        d.roles = granted;
      }),
    );
  }

  /** A new API token: the returned string is the only copy of it. */
  async createToken(name: string): Promise<string> {
    const t = newApiToken();
    const createdAt = new Date().toISOString();
    await this.change(name, (d) => {
      d.tokens ??= [];
      if (d.tokens.length >= MAX_TOKENS_PER_USER) {
        throw new AuthError('bad_request', `user ${name} has ${d.tokens.length} API tokens already: revoke unused ones first`);
      }
      d.tokens.push({ id: t.id, hash: t.hash, createdAt });
    });
    return t.token;
  }

  async listTokens(name: string): Promise<TokenInfo[]> {
    return infoOf(await this.mustGet(name)).tokens;
  }

  async revokeToken(name: string, id: string): Promise<void> {
    if (!isApiTokenId(id)) throw new AuthError('bad_request', `${JSON.stringify(id)} is not an API token id: \`tracefleet user token ${name} --list\` shows them`);
    let found = false;
    await this.change(name, (d) => {
      const kept = (d.tokens ?? []).filter((t) => t.id !== id);
      found = kept.length !== (d.tokens ?? []).length;
      if (!found) return null;
      d.tokens = kept;
    });
    if (!found) throw new AuthError('not_found', `user ${name} has no API token ${id}`);
  }

  async listUsers(): Promise<UserInfo[]> {
    return (await this.store.listUsers()).map(infoOf);
  }

  async removeUser(name: string): Promise<void> {
    checkUserName(name);
    await this.refuseLastAdmin(name, `removing ${name}`);
    const deleted = await this.store.deleteUser(name);
    this.forget(name);
    if (!deleted) throw noSuchUser(name);
  }

  /**
   * Nobody could manage users any more without an admin, short of the store
   * itself. Two admins demoting each other at the same moment can still both
   * pass; that takes two admins acting together.
   */
  private async refuseLastAdmin(name: string, what: string): Promise<void> {
    const admins = (await this.store.listUsers()).filter((u) => rolesOf(u).includes('admin'));
    if (admins.length === 1 && admins[0].name === name) {
      throw new AuthError('conflict', `${name} is the only admin, and ${what} would leave no one to manage users: make another user admin first (\`tracefleet user role OTHER --role admin\`)`);
    }
  }
}

function noSuchUser(name: string): AuthError {
  return new AuthError('not_found', `no user named ${name}: \`tracefleet user list\` shows them`);
}
