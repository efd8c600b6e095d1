/* User documents, and the lookup of a user by the id of one of their API tokens. */

import type { StoreClient, Mutation } from './client';
import { isConflict, StoreError } from './errors';
import { UserDoc, UserToken, userDocId } from './layout';

export interface NewUser {
  name: string;
  roles: string[];
  passwordHash: string;
  tokens?: UserToken[];
}

export async function getUser(c: StoreClient, name: string): Promise<UserDoc | null> {
  return c.getRaw<UserDoc>(userDocId(name));
}

/** Creates the user or replaces every field of it. */
export async function putUser(c: StoreClient, user: NewUser): Promise<UserDoc> {
  const id = userDocId(user.name);
  const fields = { name: user.name, roles: user.roles, passwordHash: user.passwordHash, tokens: user.tokens ?? [] };
  const created = await c.serial(id, async () => {
    try {
      return await c.create<UserDoc>({ _id: id, type: 'user', ...fields }, `creating user ${user.name}`);
    } catch (err) {
      if (isConflict(err)) return null;
      throw err;
    }
  });
  return created ?? c.update<UserDoc>(id, (d) => ({ ...d, ...fields }));
}

/** Creates the user; a StoreError 409 'conflict' when the name is taken. */
export async function createUser(c: StoreClient, user: NewUser): Promise<UserDoc> {
  const fields = { name: user.name, roles: user.roles, passwordHash: user.passwordHash, tokens: user.tokens ?? [] };
  try {
    return await c.create<UserDoc>({ _id: userDocId(user.name), type: 'user', ...fields }, `creating user ${user.name}`);
  } catch (err) {
    if (isConflict(err)) throw new StoreError(`user ${user.name} already exists`, 409, 'conflict');
    throw err;
  }
}

/** Every user, by name. */
export async function listUsers(c: StoreClient): Promise<UserDoc[]> {
  // Document ids sort by name after the prefix; ';' is the character after ':'.
  const res = await c.call('listing users', () => c.db.list({ startkey: 'user:', endkey: 'user;', inclusive_end: false, include_docs: true }));
  return res.rows.filter((r) => r.doc && (r.doc as UserDoc).type === 'user').map((r) => r.doc as UserDoc);
}

/** True when the user existed and was deleted. */
export async function deleteUser(c: StoreClient, name: string): Promise<boolean> {
  return (await c.deleteDocs([userDocId(name)])) === 1;
}

export async function updateUser(c: StoreClient, name: string, mutate: Mutation<UserDoc>): Promise<UserDoc> {
  return c.update(userDocId(name), mutate);
}

/** The user holding the API token with this id, if any. */
export async function findUserByTokenId(c: StoreClient, tokenId: string): Promise<UserDoc | null> {
  const res = await c.queryView('users_by_token', { key: tokenId, include_docs: true, limit: 1 });
  return (res.rows[0]?.doc as UserDoc | undefined) ?? null;
}
