/*
 * API tokens for scripts: `tf_<id>_<secret>`, id 12 base64url characters
 * (found through the users_by_token view), secret 32 random bytes base64url.
 * The user document keeps only sha256(secret).
 *
 * A fast hash is the right one here, unlike for passwords: the secret is 256
 * random bits, so nobody holding the stored hash can search for it, and a
 * slow hash would only make every API request cost scrypt's 50-100 ms.
 *
 * New ids are letters and digits only: an id starting with '-' was taken for
 * options by the command line (`tracefleet user token NAME --revoke ID`).
 * Ids made before may hold '_' or '-' (base64url) and are still accepted, so
 * tokens are split by position, not by separator.
 */

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const PREFIX = 'tf_';
const ID_CHARS = 12;
const SECRET_BYTES = 32;
/** base64url of 32 bytes, unpadded. */
const SECRET_CHARS = 43;
const B64URL = /^[A-Za-z0-9_-]+$/;

export const API_TOKEN_LENGTH = PREFIX.length + ID_CHARS + 1 + SECRET_CHARS;

export interface NewApiToken {
  /** Shown to the user once, never stored. */
  token: string;
  id: string;
  /** What the user document keeps. */
  hash: string;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('base64url');
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function newTokenId(): string {
  let id = '';
  while (id.length < ID_CHARS) {
    for (const b of randomBytes(ID_CHARS * 2)) {
      // 248 = 4 × 62: bytes above it are dropped so every character is equally likely.
      if (b < 248 && id.length < ID_CHARS) id += ID_ALPHABET[b % ID_ALPHABET.length];
    }
  }
  return id;
}

export function newApiToken(): NewApiToken {
  const id = newTokenId();
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { token: `${PREFIX}${id}_${secret}`, id, hash: hashSecret(secret) };
}

/** The id and secret of something shaped like an API token, else null. */
export function parseApiToken(token: string): { id: string; secret: string } | null {
  if (typeof token !== 'string' || token.length !== API_TOKEN_LENGTH || !token.startsWith(PREFIX)) return null;
  const id = token.slice(PREFIX.length, PREFIX.length + ID_CHARS);
  const sep = token[PREFIX.length + ID_CHARS];
  const secret = token.slice(PREFIX.length + ID_CHARS + 1);
  if (sep !== '_' || !B64URL.test(id) || !B64URL.test(secret)) return null;
  return { id, secret };
}

export function isApiTokenId(id: string): boolean {
  return typeof id === 'string' && id.length === ID_CHARS && B64URL.test(id);
}

/** Constant-time comparison of the secret's hash with the stored one. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret));
  const b = Buffer.from(storedHash);
  return a.length === b.length && timingSafeEqual(a, b);
}
