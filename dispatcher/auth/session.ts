/*
 * Session tokens for the web page and the CLI's login: stateless, so that any
 * dispatcher on the same database accepts a session another one issued.
 *
 *   ts1.<base64url(JSON {u, exp, v})>.<base64url(HMAC-SHA256(key, "ts1.<payload>"))>
 *
 * u: user name; exp: expiry, ms since the epoch; v: a stamp of the user's
 * password hash, so that changing the password ends every session of the old
 * one. The key lives in the CouchDB document config:secrets, made once by the
 * first dispatcher to need it.
 */

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { TraceStore } from '../store/store';

export const SESSION_PREFIX = 'ts1.';
/**
 * Download tokens: the same shape with {u, exp, v, p, j}, p the one download
 * path they open, j a random id by which the token is spent on its one
 * download (spent.ts). Their own prefix is inside the MAC, so neither kind of
 * token passes for the other.
 */
export const DOWNLOAD_PREFIX = 'td1.';
/** A download link lives this long: long enough to follow, short enough that a leaked one (history, proxy log) is soon worthless. */
export const DOWNLOAD_TOKEN_TTL_MS = 5 * 60_000;
const SECRETS_CONFIG = 'secrets';
const KEY_BYTES = 32;

export interface SessionClaims {
  u: string;
  exp: number;
  v: string;
}

const claimsSchema = z
  .object({
    u: z.string().min(1).max(200),
    exp: z.number().int().positive(),
    v: z.string().min(1).max(64),
  })
  .strict();

export interface DownloadClaims extends SessionClaims {
  p: string;
  j: string;
}

const downloadClaimsSchema = z
  .object({
    u: z.string().min(1).max(200),
    exp: z.number().int().positive(),
    v: z.string().min(1).max(64),
    p: z.string().min(1).max(1024),
    j: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  })
  .strict();

export class SessionKeys {
  private constructor(private readonly key: Buffer) {}

  /** The shared key from config:secrets, created there when missing. */
  static async load(store: TraceStore): Promise<SessionKeys> {
    const doc = await store.ensureConfig(SECRETS_CONFIG, { sessionKey: randomBytes(KEY_BYTES).toString('base64') });
    const stored = doc.data.sessionKey;
    const key = typeof stored === 'string' ? Buffer.from(stored, 'base64') : Buffer.alloc(0);
    if (key.length < KEY_BYTES) {
      throw new Error(
        `the session key in the store's config:secrets document is missing or shorter than ${KEY_BYTES} bytes: delete that document (every session ends) and restart the dispatchers to make a new one`,
      );
    }
    return new SessionKeys(key);
  }

  private mac(data: string): Buffer {
    return createHmac('sha256', this.key).update(data, 'utf8').digest();
  }

  /**
   * A short keyed digest of the password hash: it changes with every new
   * password (new salt), and, being keyed, tells a token holder nothing about
   * the stored hash.
   */
  passwordStamp(passwordHash: string): string {
    return this.mac(`password\0${passwordHash}`).subarray(0, 12).toString('base64url');
  }

  sign(claims: SessionClaims): string {
    return this.signAs(SESSION_PREFIX, claims);
  }

  signDownload(claims: DownloadClaims): string {
    return this.signAs(DOWNLOAD_PREFIX, claims);
  }

  private signAs(prefix: string, claims: object): string {
    const body = `${prefix}${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    return `${body}.${this.mac(body).toString('base64url')}`;
  }

  /**
   * The claims of a well-signed, unexpired token; null for anything else.
   * A token that claims to live longer than maxLifetimeMs from now is refused
   * too: whoever holds the key (or a dispatcher with a longer TTL) cannot mint
   * a session this dispatcher honours for years.
   */
  verify(token: string, maxLifetimeMs: number, now = Date.now()): SessionClaims | null {
    return this.verifyAs(SESSION_PREFIX, claimsSchema, token, maxLifetimeMs, now);
  }

  /** A download token's claims, if it is good for `path` (as requested, before decoding). */
  verifyDownload(token: string, path: string, now = Date.now()): DownloadClaims | null {
    const claims = this.verifyAs(DOWNLOAD_PREFIX, downloadClaimsSchema, token, DOWNLOAD_TOKEN_TTL_MS + 60_000, now);
    return claims && claims.p === path ? claims : null;
  }

  private verifyAs<T extends { exp: number }>(prefix: string, schema: z.ZodType<T>, token: string, maxLifetimeMs: number, now: number): T | null {
    if (typeof token !== 'string' || !token.startsWith(prefix) || token.length > 2048) return null;
    const dot = token.lastIndexOf('.');
    if (dot <= prefix.length) return null;
    const body = token.slice(0, dot);
    const sig = Buffer.from(token.slice(dot + 1), 'base64url');
    const want = this.mac(body);
    if (sig.length !== want.length || !timingSafeEqual(sig, want)) return null;
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(body.slice(prefix.length), 'base64url').toString('utf8'));
    } catch {
      return null;
    }
    const claims = schema.safeParse(parsed);
    if (!claims.success || claims.data.exp <= now || claims.data.exp > now + maxLifetimeMs) return null;
    return claims.data;
  }
}
