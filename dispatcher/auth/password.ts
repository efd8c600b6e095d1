/*
 * Password hashing: salted scrypt, stored as a self-describing string
 * `scrypt$N$r$p$salt$hash` (salt and hash base64) so that the cost can be
 * raised later without breaking the hashes already stored.
 */

import { randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthError } from './errors';
import { hashPool } from './hash-pool';

/** N=2^15, r=8: 32 MiB and some 50-100 ms per hash on a server core. */
const COST = { N: 32768, r: 8, p: 1 } as const;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/**
 * A stored hash is read from the database: its parameters are bounded so that
 * a damaged or hostile document cannot make one login take gigabytes.
 */
const MAX = { memory: 256 * 1024 * 1024, r: 32, p: 16, keyBytes: 64, saltBytes: 64 } as const;

export const MIN_PASSWORD_LENGTH = 8;
/** As the client handshake allows (shared/protocol/wire.ts clientAuth). */
export const MAX_PASSWORD_LENGTH = 1024;

/** Throws AuthError 'bad_request' saying what is wrong with the new password. */
export function checkPasswordPolicy(password: string): void {
  if (typeof password !== 'string') throw new AuthError('bad_request', 'the password must be a string');
  const chars = [...password].length;
  if (chars < MIN_PASSWORD_LENGTH) {
    throw new AuthError('bad_request', `the password is too short (${chars} characters): use at least ${MIN_PASSWORD_LENGTH}`);
  }
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new AuthError('bad_request', `the password is too long: use at most ${MAX_PASSWORD_LENGTH} characters`);
  }
  if (password.trim() !== password) {
    // Almost always a copy-paste accident, and invisible at the login prompt.
    throw new AuthError('bad_request', 'the password starts or ends with white space: remove it');
  }
}

interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

function scryptMemory({ N, r, p }: ScryptParams): number {
  return 128 * r * (N + 2) + 128 * r * p;
}

function derive(password: string, salt: Buffer, keyBytes: number, params: ScryptParams): Promise<Buffer> {
  // Node's default maxmem (32 MiB) is just short of what N=2^15, r=8 needs
  // with OpenSSL's bookkeeping; this is OpenSSL's own sum, with a margin.
  const maxmem = scryptMemory(params) + (1 << 20);
  // On the hashing threads (hash-pool.ts), not libuv's pool, which the traces' file I/O needs.
  return hashPool.derive(password.normalize('NFC'), salt, keyBytes, { N: params.N, r: params.r, p: params.p, maxmem });
}

/** The encoded hash of `password` (no policy check: see checkPasswordPolicy). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, KEY_BYTES, COST);
  return ['scrypt', COST.N, COST.r, COST.p, salt.toString('base64'), key.toString('base64')].join('$');
}

/**
 * Checked when the user does not exist, so that the answer takes as long as
 * for a wrong password (the cost depends only on the parameters). An all-zero
 * key: no password derives it.
 */
export const DUMMY_HASH = ['scrypt', COST.N, COST.r, COST.p, Buffer.alloc(SALT_BYTES).toString('base64'), Buffer.alloc(KEY_BYTES).toString('base64')].join('$');

interface Decoded extends ScryptParams {
  salt: Buffer;
  key: Buffer;
}

function decode(encoded: string): Decoded | null {
  const parts = typeof encoded === 'string' ? encoded.split('$') : [];
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [N, r, p] = parts.slice(1, 4).map((s) => (/^\d{1,8}$/.test(s) ? Number(s) : NaN));
  const salt = Buffer.from(parts[4], 'base64');
  const key = Buffer.from(parts[5], 'base64');
  const powerOfTwo = N > 1 && (N & (N - 1)) === 0;
  if (!powerOfTwo || !(r >= 1 && r <= MAX.r) || !(p >= 1 && p <= MAX.p) || scryptMemory({ N, r, p }) > MAX.memory) return null;
  if (salt.length < 8 || salt.length > MAX.saltBytes || key.length < 16 || key.length > MAX.keyBytes) return null;
  return { N, r, p, salt, key };
}

/** Whether `password` matches; false for a hash that cannot be read. */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const d = decode(encoded);
  if (!d || typeof password !== 'string' || password.length > MAX_PASSWORD_LENGTH) return false;
  const key = await derive(password, d.salt, d.key.length, d);
  return timingSafeEqual(key, d.key);
}
